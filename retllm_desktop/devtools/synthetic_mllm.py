"""Random-weight multimodal GGUF pairs (text model + mmproj) for tests and benchmarks.

No pretrained weights exist on the build machines, so tests exercise the real llama.cpp / libmtmd code
paths on synthetic models: a llama-architecture text model with an SPM vocabulary (byte fallback) and a
chat template, plus a CLIP ViT mmproj with a LLaVA "mlp" projector whose output width equals the text
model's ``n_embd``. The answers are meaningless, but shapes, tokenisation, image encoding, KV handling
and timing are those of a real model of the same size.

    python -m retllm_desktop.devtools.synthetic_mllm OUT_MODELS_DIR [--size tiny|realistic] [--seed N]

writes ``OUT_MODELS_DIR/mllm/synthetic-<size>/{mllm.json, model.gguf, mmproj.gguf}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Chat template stored in the GGUF (``tokenizer.chat_template``); the llama-cpp-python handlers render
# templates with trim_blocks=True, so newlines are written as {{ '\n' }} expressions.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant' + '\\n' }}{% endif %}"
)

_SPECIAL = ["<unk>", "<s>", "</s>"]
_CONTROL = ["<|im_start|>", "<|im_end|>"]
# Words whose every prefix goes into the vocabulary so that SPM merges reach the whole word.
_WORDS = (
    "True False true false TRUE Does Do does the image images match matches caption Please directly "
    "output or and Query query text Candidate candidate show same subject Look at again carefully it "
    "In one short sentence explain why not a an of in on with photo picture dog cat beach sunset "
    "mountain car red blue green people person user assistant system is are this that"
).split()


@dataclass(frozen=True)
class _Size:
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_vocab: int  # minimum; the fixed pieces come first
    v_image: int
    v_patch: int
    v_embd: int
    v_ff: int
    v_layer: int
    v_head: int
    dtype: type


SIZES: dict[str, _Size] = {
    # ~0.1 MB each, loads in milliseconds
    "tiny": _Size(64, 2, 4, 4, 128, 0, 32, 8, 48, 96, 2, 4, np.float32),
    # Qwen2-0.5B-like text model (GQA 14/2) + ViT-B/16 @ 224 (196 image tokens), f16
    "realistic": _Size(896, 24, 14, 2, 4864, 32000, 224, 16, 768, 3072, 12, 12, np.float16),
}


def _vocab(n_min: int, rng: np.random.Generator) -> tuple[list[str], list[float], list[int]]:
    tokens: list[str] = []
    types: list[int] = []
    seen: set[str] = set()

    def add(piece: str, ttype: int) -> None:
        if piece not in seen:
            seen.add(piece)
            tokens.append(piece)
            types.append(ttype)

    add("<unk>", 2)
    add("<s>", 3)
    add("</s>", 3)
    for c in _CONTROL:
        add(c, 3)
    for b in range(256):
        add(f"<0x{b:02X}>", 6)
    chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:;?!'\"()-_/<>|"
    add("\u2581", 1)
    for ch in chars:
        add(ch, 1)
        add("\u2581" + ch, 1)
    for w in _WORDS:
        for piece in (w, "\u2581" + w):
            for i in range(1, len(piece) + 1):
                add(piece[:i], 1)
    # random filler pieces (only for the realistic vocab size)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    while len(tokens) < n_min:
        n = int(rng.integers(2, 9))
        piece = ("\u2581" if rng.random() < 0.5 else "") + "".join(rng.choice(letters, n))
        add(piece, 1)
    n_fixed = 3 + len(_CONTROL) + 256
    # SPM merges prefer higher scores: longer pieces score higher so words merge fully.
    scores = [0.0] * n_fixed + [-1000.0 + 10.0 * len(t) - 1e-3 * i for i, t in enumerate(tokens[n_fixed:])]
    return tokens, scores, types


TensorSpec = tuple[str, tuple[int, ...], Callable[[], np.ndarray]]


def _write_gguf(path: Path, arch: str, kv: Callable[[object], None], specs: list[TensorSpec]) -> None:
    """Stream tensors one at a time (the realistic model does not need to fit in memory twice)."""
    import gguf

    tmp = path.with_name(path.name + ".tmp")
    w = gguf.GGUFWriter(tmp, arch)
    kv(w)
    arrays: list[Callable[[], np.ndarray]] = []
    for name, shape, make in specs:
        arrays.append(make)
        probe_dtype = make.dtype  # type: ignore[attr-defined]
        nbytes = int(np.prod(shape)) * np.dtype(probe_dtype).itemsize
        w.add_tensor_info(name, shape, np.dtype(probe_dtype), nbytes)
    w.write_header_to_file(tmp)
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for make in arrays:
        w.write_tensor_data(make())
    w.close()
    os.replace(tmp, path)


class _Gen:
    """Deterministic lazy tensor factory: tensor ``i`` uses its own seed derived from (seed, i)."""

    def __init__(self, seed: int):
        self.seed = seed
        self.count = 0

    def normal(self, shape: tuple[int, ...], std: float, dtype: type) -> Callable[[], np.ndarray]:
        idx = self.count
        self.count += 1

        def make() -> np.ndarray:
            rng = np.random.default_rng([self.seed, idx])
            return (rng.standard_normal(shape, dtype=np.float32) * std).astype(dtype)

        make.dtype = dtype  # type: ignore[attr-defined]
        return make

    @staticmethod
    def const(shape: tuple[int, ...], value: float) -> Callable[[], np.ndarray]:
        def make() -> np.ndarray:
            return np.full(shape, value, dtype=np.float32)

        make.dtype = np.float32  # type: ignore[attr-defined]
        return make


def _text_specs(s: _Size, n_vocab: int, g: _Gen) -> Iterator[TensorSpec]:
    d, ff, hd = s.n_embd, s.n_ff, s.n_embd // s.n_head
    kvd = hd * s.n_head_kv
    w = s.dtype
    a = 1.0 / math.sqrt(d)  # fan-in scaled, so every layer (and the image tokens) really moves the output
    yield "token_embd.weight", (n_vocab, d), g.normal((n_vocab, d), 0.5, w)
    for i in range(s.n_layer):
        p = f"blk.{i}."
        yield p + "attn_norm.weight", (d,), g.const((d,), 1.0)
        yield p + "attn_q.weight", (d, d), g.normal((d, d), 2 * a, w)
        yield p + "attn_k.weight", (kvd, d), g.normal((kvd, d), 2 * a, w)
        yield p + "attn_v.weight", (kvd, d), g.normal((kvd, d), a, w)
        yield p + "attn_output.weight", (d, d), g.normal((d, d), a, w)
        yield p + "ffn_norm.weight", (d,), g.const((d,), 1.0)
        yield p + "ffn_gate.weight", (ff, d), g.normal((ff, d), a, w)
        yield p + "ffn_up.weight", (ff, d), g.normal((ff, d), a, w)
        yield p + "ffn_down.weight", (d, ff), g.normal((d, ff), 1.0 / math.sqrt(ff), w)
    yield "output_norm.weight", (d,), g.const((d,), 1.0)
    # logit std ~3: the next-token distribution is neither flat nor one-hot
    yield "output.weight", (n_vocab, d), g.normal((n_vocab, d), 3 * a, w)


def _vision_specs(s: _Size, g: _Gen) -> Iterator[TensorSpec]:
    e, ff, p, t = s.v_embd, s.v_ff, s.v_patch, s.n_embd
    n_pos = (s.v_image // p) ** 2 + 1
    w = s.dtype
    a = 1.0 / math.sqrt(e)
    yield "v.patch_embd.weight", (e, 3, p, p), g.normal((e, 3, p, p), 1.0 / math.sqrt(3 * p * p), w)
    yield "v.class_embd", (e,), g.normal((e,), 0.5, np.float32)
    yield "v.position_embd.weight", (n_pos, e), g.normal((n_pos, e), 0.5, np.float32)
    yield "v.pre_ln.weight", (e,), g.const((e,), 1.0)
    yield "v.pre_ln.bias", (e,), g.const((e,), 0.0)
    for i in range(s.v_layer):
        b = f"v.blk.{i}."
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            yield b + name + ".weight", (e, e), g.normal((e, e), a, w)
            yield b + name + ".bias", (e,), g.const((e,), 0.0)
        yield b + "ln1.weight", (e,), g.const((e,), 1.0)
        yield b + "ln1.bias", (e,), g.const((e,), 0.0)
        yield b + "ffn_up.weight", (ff, e), g.normal((ff, e), a, w)
        yield b + "ffn_up.bias", (ff,), g.const((ff,), 0.0)
        yield b + "ffn_down.weight", (e, ff), g.normal((e, ff), 1.0 / math.sqrt(ff), w)
        yield b + "ffn_down.bias", (e,), g.const((e,), 0.0)
        yield b + "ln2.weight", (e,), g.const((e,), 1.0)
        yield b + "ln2.bias", (e,), g.const((e,), 0.0)
    yield "v.post_ln.weight", (e,), g.const((e,), 1.0)
    yield "v.post_ln.bias", (e,), g.const((e,), 0.0)
    # projector: image tokens land at roughly the scale of the text token embeddings
    yield "mm.0.weight", (t, e), g.normal((t, e), 0.5 * a, w)
    yield "mm.0.bias", (t,), g.const((t,), 0.0)
    yield "mm.2.weight", (t, t), g.normal((t, t), 2.0 / math.sqrt(t), w)
    yield "mm.2.bias", (t,), g.const((t,), 0.0)


def write_synthetic_mllm(out_models_dir: Path, size: str = "tiny", seed: int = 0) -> Path:
    """Write ``<out>/mllm/synthetic-<size>/`` (mllm.json, model.gguf, mmproj.gguf); return that dir.

    Deterministic per (size, seed). An existing complete directory with the same seed is reused.
    """
    if size not in SIZES:
        raise ValueError(f"unknown synthetic size {size!r}; choose from {sorted(SIZES)}")
    s = SIZES[size]
    name = f"synthetic-{size}"
    out = Path(out_models_dir) / "mllm" / name
    meta_path = out / "mllm.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
            if (
                meta.get("synthetic_seed") == seed
                and (out / "model.gguf").is_file()
                and (out / "mmproj.gguf").is_file()
            ):
                return out
        except (OSError, ValueError):
            pass
    out.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng([seed, 12345])
    tokens, scores, types = _vocab(s.n_vocab, rng)
    n_vocab = len(tokens)

    def text_kv(w) -> None:  # type: ignore[no-untyped-def]
        import gguf

        w.add_name(name)
        w.add_context_length(4096)
        w.add_embedding_length(s.n_embd)
        w.add_block_count(s.n_layer)
        w.add_feed_forward_length(s.n_ff)
        w.add_head_count(s.n_head)
        w.add_head_count_kv(s.n_head_kv)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_rope_dimension_count(s.n_embd // s.n_head)
        w.add_rope_freq_base(10000.0)
        w.add_vocab_size(n_vocab)
        w.add_file_type(
            gguf.LlamaFileType.MOSTLY_F16 if s.dtype == np.float16 else gguf.LlamaFileType.ALL_F32
        )
        w.add_tokenizer_model("llama")
        w.add_tokenizer_pre("default")
        w.add_token_list(tokens)
        w.add_token_scores(scores)
        w.add_token_types(types)
        w.add_unk_token_id(0)
        w.add_bos_token_id(1)
        w.add_eos_token_id(tokens.index("<|im_end|>"))
        w.add_add_bos_token(True)
        w.add_add_eos_token(False)
        w.add_chat_template(CHAT_TEMPLATE)

    g = _Gen(seed)
    _write_gguf(out / "model.gguf", "llama", text_kv, list(_text_specs(s, n_vocab, g)))

    def vision_kv(w) -> None:  # type: ignore[no-untyped-def]
        w.add_name(name + "-mmproj")
        w.add_bool("clip.has_vision_encoder", True)
        w.add_bool("clip.has_text_encoder", False)
        w.add_bool("clip.use_gelu", True)
        w.add_string("clip.projector_type", "mlp")
        w.add_uint32("general.file_type", 1 if s.dtype == np.float16 else 0)
        w.add_uint32("clip.vision.image_size", s.v_image)
        w.add_uint32("clip.vision.patch_size", s.v_patch)
        w.add_uint32("clip.vision.embedding_length", s.v_embd)
        w.add_uint32("clip.vision.feed_forward_length", s.v_ff)
        w.add_uint32("clip.vision.block_count", s.v_layer)
        w.add_uint32("clip.vision.attention.head_count", s.v_head)
        w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-5)
        w.add_uint32("clip.vision.projection_dim", s.n_embd)
        w.add_array("clip.vision.image_mean", [0.48145466, 0.4578275, 0.40821073])
        w.add_array("clip.vision.image_std", [0.26862954, 0.26130258, 0.27577711])

    g2 = _Gen(seed + 1_000_003)
    _write_gguf(out / "mmproj.gguf", "clip", vision_kv, list(_vision_specs(s, g2)))

    meta = {
        "name": name,
        "handler": "gguf-template",
        "model": "model.gguf",
        "mmproj": "mmproj.gguf",
        "chat_format": None,
        "synthetic_seed": seed,
        "licence": "synthetic random weights (no licence needed)",
    }
    tmp = meta_path.with_name("mllm.json.tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, meta_path)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_models_dir", type=Path)
    ap.add_argument("--size", default="tiny", choices=sorted(SIZES))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(write_synthetic_mllm(args.out_models_dir, args.size, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
