"""What each registry MLLM looks like from outside: GGUF architecture, hyper-parameters, tokenizer, projector.

Numbers are those of the published checkpoints (``config.json`` / ``preprocessor_config.json`` of the HF
repos the ggml-org GGUFs were converted from, and the keys llama.cpp's converter writes for them: see
``conversion/{llama,qwenvl,gemma,smolvlm}.py`` in the llama-cpp-python sdist). ``tiny`` keeps every key
that changes behaviour outside the weights (architecture, vocabulary, template, projector type, image
size, patch size, merge/scale factor, mean/std, window pattern, GQA ratio, tied output) and shrinks widths
and depths.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]
HALF = [0.5, 0.5, 0.5]


@dataclass(frozen=True)
class TextSpec:
    arch: str  # GGUF general.architecture
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    ctx: int
    rope_base: float
    rms_eps: float
    tied: bool  # no output.weight (token_embd reused)
    head_dim: int | None = None  # gemma3 key/value length
    extra: dict[str, Any] = field(default_factory=dict)  # arch-specific keys (without the arch prefix)


@dataclass(frozen=True)
class VisionSpec:
    projector: str  # clip.projector_type
    image_size: int
    patch_size: int
    n_embd: int
    n_layer: int
    n_head: int
    n_ff: int
    eps: float
    mean: list[float]
    std: list[float]
    act: str  # "gelu" | "silu" | "quick_gelu"
    extra: dict[str, Any] = field(default_factory=dict)  # projector-specific keys (full GGUF key names)


@dataclass(frozen=True)
class TokenizerSpec:
    vocab_file: str  # ggml-vocab-*.gguf of the llama.cpp sources
    recipe: str  # how the real vocabulary is rebuilt from it (see tokenizer.py)
    note: str


@dataclass(frozen=True)
class ReplicaSpec:
    text: TextSpec
    vision: VisionSpec
    tokenizer: TokenizerSpec
    template: (
        str | None
    )  # devtools/templates stem stored as tokenizer.chat_template (None: the file has none)
    gguf_name: str  # general.name of the published file
    text_ftype: str  # quantisation of the published text GGUF
    mmproj_ftype: str


_SIGLIP_B16_512 = dict(image_size=512, patch_size=16, n_embd=768, n_layer=12, n_head=12, n_ff=3072, eps=1e-6)
_SMOLVLM_VISION = VisionSpec(
    "idefics3",
    **_SIGLIP_B16_512,
    mean=HALF,
    std=HALF,
    act="gelu",
    extra={"clip.vision.projector.scale_factor": 4, "clip.vision.preproc_image_size": 2048},
)
_SMOL_TOK = TokenizerSpec(
    "ggml-vocab-starcoder.gguf",
    "smolvlm",
    "SmolLM2's own 49152-token BPE vocabulary is not in the llama.cpp sources; this replica uses the closest "
    "real one, StarCoder's (same size, same GPT-2 byte-level BPE family, the special-token block SmolLM2 "
    "inherited), with SmolLM2's specials at ids 0-16, SmolVLM's 128 added tokens at 49152-49279 and the "
    "'smollm' pre-tokenizer. Token ids of ordinary words differ from the real model.",
)


def _qwen_vision() -> VisionSpec:
    return VisionSpec(
        "qwen2.5vl_merger",
        image_size=560,
        patch_size=14,
        n_embd=1280,
        n_layer=32,
        n_head=16,
        n_ff=3420,
        eps=1e-6,
        mean=OPENAI_MEAN,
        std=OPENAI_STD,
        act="silu",
        extra={"clip.vision.n_wa_pattern": 8},  # fullatt_block_indexes [7, 15, 23, 31]
    )


_QWEN_TOK = TokenizerSpec(
    "ggml-vocab-qwen2.gguf",
    "qwen2.5-vl",
    "Qwen2's 151643-token byte-level BPE (identical in Qwen2.5) from llama.cpp's ggml-vocab-qwen2.gguf, with "
    "Qwen2.5-VL's added special tokens at their real ids 151646-151664.",
)

SPECS: dict[str, ReplicaSpec] = {
    "smolvlm-500m": ReplicaSpec(
        TextSpec("llama", 960, 32, 15, 5, 2560, 8192, 100000.0, 1e-5, tied=False),
        _SMOLVLM_VISION,
        _SMOL_TOK,
        "smolvlm",
        "SmolVLM 500M Instruct",
        "Q8_0",
        "Q8_0",
    ),
    "smolvlm-256m": ReplicaSpec(
        TextSpec("llama", 576, 30, 9, 3, 1536, 8192, 100000.0, 1e-5, tied=False),
        _SMOLVLM_VISION,
        _SMOL_TOK,
        "smolvlm",
        "SmolVLM 256M Instruct",
        "Q8_0",
        "Q8_0",
    ),
    "qwen2.5-vl-3b": ReplicaSpec(
        TextSpec(
            "qwen2vl",
            2048,
            36,
            16,
            2,
            11008,
            128000,
            1000000.0,
            1e-6,
            tied=True,
            extra={"rope.dimension_sections": [16, 24, 24, 0]},
        ),  # fmt: skip
        _qwen_vision(),
        _QWEN_TOK,
        "qwen2.5-vl",
        "Qwen2.5 VL 3B Instruct",
        "Q4_K_M",
        "Q8_0",
    ),
    "qwen2.5-vl-7b": ReplicaSpec(
        TextSpec(
            "qwen2vl",
            3584,
            28,
            28,
            4,
            18944,
            128000,
            1000000.0,
            1e-6,
            tied=False,
            extra={"rope.dimension_sections": [16, 24, 24, 0]},
        ),  # fmt: skip
        _qwen_vision(),
        _QWEN_TOK,
        "qwen2.5-vl",
        "Qwen2.5 VL 7B Instruct",
        "Q4_K_M",
        "Q8_0",
    ),
    "gemma-3-4b": ReplicaSpec(
        TextSpec(
            "gemma3",
            2560,
            34,
            8,
            4,
            10240,
            131072,
            1000000.0,
            1e-6,
            tied=True,
            head_dim=256,
            extra={
                "attention.sliding_window": 1024,
                "rope.scaling.type": "linear",
                "rope.scaling.factor": 8.0,
            },
        ),  # fmt: skip
        VisionSpec(
            "gemma3",
            image_size=896,
            patch_size=14,
            n_embd=1152,
            n_layer=27,
            n_head=16,
            n_ff=4304,
            eps=1e-6,
            mean=HALF,
            std=HALF,
            act="gelu",
        ),  # fmt: skip
        TokenizerSpec(
            "ggml-vocab-gemma-4.gguf",
            "gemma-3",
            "Gemma 3's 262144-token vocabulary as stored in llama.cpp's ggml-vocab-gemma-4.gguf (the same pieces "
            "at the same ids; Gemma 4 renamed the turn and image specials, which are renamed back to Gemma 3's "
            "<start_of_turn>/<end_of_turn>/<start_of_image>/<end_of_image>; <image_soft_token> appended at "
            "262144 and padding to 262208). Tokenised by llama.cpp's 'gemma4' BPE (merges) rather than the "
            "SentencePiece model of the real file, which is not in the llama.cpp sources.",
        ),
        "gemma-3",
        "Gemma 3 4b It",
        "Q4_K_M",
        "F16",
    ),
    "llava-1.5-7b": ReplicaSpec(
        TextSpec("llama", 4096, 32, 32, 32, 11008, 4096, 10000.0, 1e-5, tied=False),
        VisionSpec(
            "mlp",
            image_size=336,
            patch_size=14,
            n_embd=1024,
            n_layer=23,
            n_head=16,
            n_ff=4096,
            eps=1e-5,
            mean=OPENAI_MEAN,
            std=OPENAI_STD,
            act="quick_gelu",
            extra={"clip.has_llava_projector": True, "clip.vision.projection_dim": 768},
        ),  # fmt: skip
        TokenizerSpec(
            "ggml-vocab-llama-spm.gguf",
            "llama-spm",
            "LLaMA's own 32000-token SentencePiece vocabulary (llama.cpp's ggml-vocab-llama-spm.gguf), as used by "
            "Vicuna / LLaVA-1.5.",
        ),
        None,  # mys/ggml_llava-v1.5-7b has no tokenizer.chat_template; the llava15 handler supplies the format
        "LLaMA v2",
        "Q4_K_M",  # ggml-model-q4_k.gguf
        "F16",
    ),
}


def tiny(spec: ReplicaSpec) -> ReplicaSpec:
    """Small widths and depths; every outside-visible key kept (GQA ratio, head layout, window pattern)."""
    t = spec.text
    # 4 heads of 16 (MHA stays MHA, GQA stays GQA); M-RoPE sections scaled to the smaller head
    n_head_kv = 4 // min(t.n_head // t.n_head_kv, 4)
    extra = dict(t.extra)
    if "rope.dimension_sections" in extra:
        real = extra["rope.dimension_sections"]
        extra["rope.dimension_sections"] = [x * 8 // sum(real) for x in real]
    text = replace(
        t, n_embd=64, n_layer=2, n_head=4, n_head_kv=n_head_kv, n_ff=128,
        head_dim=16 if t.head_dim else None, extra=extra,
    )  # fmt: skip
    v = spec.vision
    extra = dict(v.extra)
    n_layer = 2
    if "clip.vision.n_wa_pattern" in extra:
        extra["clip.vision.n_wa_pattern"] = 2  # one windowed and one full-attention block
    vision = replace(v, n_embd=32, n_layer=n_layer, n_head=2, n_ff=64, extra=extra)
    return replace(spec, text=text, vision=vision)
