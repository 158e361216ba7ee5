"""Write a replica's text GGUF and mmproj GGUF directly with gguf-py.

Why not llama.cpp's ``convert_hf_to_gguf.py``: it needs the Hugging Face tokenizer files of each model
(and ``transformers`` to hash their pre-tokenizer), which are not reachable offline. So the files are
written with the same gguf-py the converter uses, with the keys and tensor names its model classes write
(``conversion/{llama,qwenvl,gemma,smolvlm}.py``) and the tensor shapes llama.cpp's loaders require
(``src/models/<arch>.cpp``, ``tools/mtmd/clip.cpp``). Weights are random; norms are 1, biases 0.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .specs import ReplicaSpec, TextSpec, VisionSpec
from .tokenizer import Vocab

Make = Callable[[], np.ndarray]
TensorSpec = tuple[str, tuple[int, ...], Make]


class _Rand:
    """Lazy deterministic tensors: tensor ``i`` draws from its own seed (files stream, nothing is held)."""

    def __init__(self, seed: int, dtype: type):
        self.seed, self.dtype, self.count = seed, dtype, 0

    def normal(self, shape: tuple[int, ...], std: float, dtype: type | None = None) -> Make:
        idx, dt = self.count, dtype or self.dtype
        self.count += 1

        def make() -> np.ndarray:
            rng = np.random.default_rng([self.seed, idx])
            return (rng.standard_normal(shape, dtype=np.float32) * std).astype(dt)

        make.dtype = dt  # type: ignore[attr-defined]
        return make

    @staticmethod
    def const(shape: tuple[int, ...], value: float) -> Make:
        def make() -> np.ndarray:
            return np.full(shape, value, dtype=np.float32)

        make.dtype = np.float32  # type: ignore[attr-defined]
        return make


def write_gguf(path: Path, arch: str, kv: Callable[[Any], None], specs: list[TensorSpec]) -> None:
    """Header first, then one tensor at a time (a 3B model never sits in memory)."""
    import gguf

    tmp = path.with_name(path.name + ".tmp")
    w = gguf.GGUFWriter(tmp, arch)
    kv(w)
    for name, shape, make in specs:
        raw = getattr(make, "raw_dtype", None)
        if raw is not None:  # pre-quantized: nbytes of the packed blocks
            block, type_size = gguf.GGML_QUANT_SIZES[raw]
            nbytes = int(np.prod(shape)) // block * type_size
            w.add_tensor_info(name, shape, np.dtype(np.float32), nbytes, raw_dtype=raw)
            continue
        dt = np.dtype(make.dtype)  # type: ignore[attr-defined]
        w.add_tensor_info(name, shape, dt, int(np.prod(shape)) * dt.itemsize)
    w.write_header_to_file(tmp)
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for _, _, make in specs:
        w.write_tensor_data(make())
    w.close()
    os.replace(tmp, path)


def _add(w: Any, key: str, value: Any) -> None:
    if isinstance(value, bool):
        w.add_bool(key, value)
    elif isinstance(value, int):
        w.add_uint32(key, value)
    elif isinstance(value, float):
        w.add_float32(key, value)
    elif isinstance(value, str):
        w.add_string(key, value)
    else:
        w.add_array(key, list(value))


# ------------------------------------------------------------------------------------------ text model
def text_tensors(t: TextSpec, n_vocab: int, r: _Rand) -> Iterator[TensorSpec]:
    d, ff = t.n_embd, t.n_ff
    hd = t.head_dim or d // t.n_head
    q, kv = t.n_head * hd, t.n_head_kv * hd
    a = 1.0 / math.sqrt(d)
    one = _Rand.const
    # gemma3's post-norms set each block's output scale: 4 lets the blocks outweigh the (sqrt(n_embd)-scaled)
    # input embedding in the residual stream, else the random model mostly repeats its last input token
    post = 4.0
    # tied output: the same table makes the logits, so scale it for logit std ~3 (gemma3 also multiplies
    # the input embeddings by sqrt(n_embd), which then land at std ~3 before the first RMS norm)
    yield "token_embd.weight", (n_vocab, d), r.normal((n_vocab, d), 3 * a if t.tied else 0.5)
    for i in range(t.n_layer):
        p = f"blk.{i}."
        yield p + "attn_norm.weight", (d,), one((d,), 1.0)
        yield p + "attn_q.weight", (q, d), r.normal((q, d), 2 * a)
        yield p + "attn_k.weight", (kv, d), r.normal((kv, d), 2 * a)
        yield p + "attn_v.weight", (kv, d), r.normal((kv, d), a)
        if t.arch == "qwen2vl":
            for n, size in (("attn_q", q), ("attn_k", kv), ("attn_v", kv)):
                yield p + n + ".bias", (size,), one((size,), 0.0)
        if t.arch == "gemma3":
            yield p + "attn_q_norm.weight", (hd,), one((hd,), 1.0)
            yield p + "attn_k_norm.weight", (hd,), one((hd,), 1.0)
        yield p + "attn_output.weight", (d, q), r.normal((d, q), 1.0 / math.sqrt(q))
        if t.arch == "gemma3":
            yield p + "post_attention_norm.weight", (d,), one((d,), post)
        yield p + "ffn_norm.weight", (d,), one((d,), 1.0)
        yield p + "ffn_gate.weight", (ff, d), r.normal((ff, d), a)
        yield p + "ffn_up.weight", (ff, d), r.normal((ff, d), a)
        yield p + "ffn_down.weight", (d, ff), r.normal((d, ff), 1.0 / math.sqrt(ff))
        if t.arch == "gemma3":
            yield p + "post_ffw_norm.weight", (d,), one((d,), post)
    yield "output_norm.weight", (d,), one((d,), 1.0)
    if not t.tied:  # logit std ~3: neither flat nor one-hot
        yield "output.weight", (n_vocab, d), r.normal((n_vocab, d), 3 * a)


def write_text(path: Path, spec: ReplicaSpec, vocab: Vocab, template: str | None, seed: int) -> None:
    import gguf

    t = spec.text
    hd = t.head_dim or t.n_embd // t.n_head
    dtype = np.float16

    def kv(w: Any) -> None:
        w.add_type(gguf.GGUFType.MODEL)
        w.add_name(spec.gguf_name)
        w.add_context_length(t.ctx)
        w.add_embedding_length(t.n_embd)
        w.add_block_count(t.n_layer)
        w.add_feed_forward_length(t.n_ff)
        w.add_head_count(t.n_head)
        w.add_head_count_kv(t.n_head_kv)
        w.add_layer_norm_rms_eps(t.rms_eps)
        w.add_rope_freq_base(t.rope_base)
        if t.arch == "llama":
            w.add_rope_dimension_count(hd)
            w.add_vocab_size(len(vocab.tokens))
        if t.head_dim:
            w.add_key_length(hd)
            w.add_value_length(hd)
        for key, value in t.extra.items():
            _add(w, f"{t.arch}.{key}", value)
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        vocab.write(w)
        if template is not None:
            w.add_chat_template(template)

    write_gguf(path, t.arch, kv, list(text_tensors(t, len(vocab.tokens), _Rand(seed, dtype))))


# ------------------------------------------------------------------------------------------ mmproj
def _vit_blocks(v: VisionSpec, r: _Rand, rms: bool) -> Iterator[TensorSpec]:
    e, ff = v.n_embd, v.n_ff
    a = 1.0 / math.sqrt(e)
    one = _Rand.const
    for i in range(v.n_layer):
        b = f"v.blk.{i}."
        for n in ("attn_q", "attn_k", "attn_v", "attn_out"):
            yield b + n + ".weight", (e, e), r.normal((e, e), a)
            yield b + n + ".bias", (e,), one((e,), 0.0)
        for n in ("ln1", "ln2"):
            yield b + n + ".weight", (e,), one((e,), 1.0)
            if not rms:
                yield b + n + ".bias", (e,), one((e,), 0.0)
        ups = ("ffn_gate", "ffn_up") if v.act == "silu" else ("ffn_up",)
        for n in ups:
            yield b + n + ".weight", (ff, e), r.normal((ff, e), a)
            yield b + n + ".bias", (ff,), one((ff,), 0.0)
        yield b + "ffn_down.weight", (e, ff), r.normal((e, ff), 1.0 / math.sqrt(ff))
        yield b + "ffn_down.bias", (e,), one((e,), 0.0)


def vision_tensors(v: VisionSpec, n_text: int, r: _Rand) -> Iterator[TensorSpec]:
    e, p = v.n_embd, v.patch_size
    grid = v.image_size // p
    one = _Rand.const
    f32 = np.float32
    patch = (e, 3, p, p)
    yield "v.patch_embd.weight", patch, r.normal(patch, 1.0 / math.sqrt(3 * p * p))
    if v.projector == "qwen2.5vl_merger":
        # Conv3D (temporal patch 2) split into two Conv2Ds, as the converter does
        yield "v.patch_embd.weight.1", patch, r.normal(patch, 1.0 / math.sqrt(3 * p * p))
        yield from _vit_blocks(v, r, rms=True)
        yield "v.post_ln.weight", (e,), one((e,), 1.0)
        m = 4 * e  # 2x2 spatial merge
        yield "mm.0.weight", (m, m), r.normal((m, m), 1.0 / math.sqrt(m))
        yield "mm.0.bias", (m,), one((m,), 0.0)
        yield "mm.2.weight", (n_text, m), r.normal((n_text, m), 0.5 / math.sqrt(m))
        yield "mm.2.bias", (n_text,), one((n_text,), 0.0)
        return
    if v.projector == "mlp":  # LLaVA-1.5: CLIP ViT-L/14-336 with class token, pre-LN, no post-LN
        yield "v.class_embd", (e,), r.normal((e,), 0.5, f32)
        yield "v.position_embd.weight", (grid * grid + 1, e), r.normal((grid * grid + 1, e), 0.5, f32)
        yield "v.pre_ln.weight", (e,), one((e,), 1.0)
        yield "v.pre_ln.bias", (e,), one((e,), 0.0)
        yield from _vit_blocks(v, r, rms=False)
        yield "mm.0.weight", (n_text, e), r.normal((n_text, e), 0.5 / math.sqrt(e))
        yield "mm.0.bias", (n_text,), one((n_text,), 0.0)
        yield "mm.2.weight", (n_text, n_text), r.normal((n_text, n_text), 2.0 / math.sqrt(n_text))
        yield "mm.2.bias", (n_text,), one((n_text,), 0.0)
        return
    # SigLIP (idefics3, gemma3): patch bias, learned positions, post-LN
    yield "v.patch_embd.bias", (e,), one((e,), 0.0)
    yield "v.position_embd.weight", (grid * grid, e), r.normal((grid * grid, e), 0.5, f32)
    yield from _vit_blocks(v, r, rms=False)
    yield "v.post_ln.weight", (e,), one((e,), 1.0)
    yield "v.post_ln.bias", (e,), one((e,), 0.0)
    if v.projector == "idefics3":
        s = int(v.extra["clip.vision.projector.scale_factor"])
        m = e * s * s
        yield "mm.model.fc.weight", (n_text, m), r.normal((n_text, m), 0.5 / math.sqrt(m))
    elif v.projector == "gemma3":
        yield "mm.input_projection.weight", (e, n_text), r.normal((e, n_text), 0.5 / math.sqrt(e))
        yield "mm.soft_emb_norm.weight", (e,), one((e,), 1.0)
    else:
        raise ValueError(f"unknown projector {v.projector!r}")


def _q8_0(specs: list[TensorSpec]) -> list[TensorSpec]:
    """Matrices as Q8_0 (numpy, gguf-py's reference quantiser), as in the published Q8_0 mmproj files;
    convolutions, position embeddings, norms and biases stay as they are (the converter keeps them)."""
    import gguf

    out: list[TensorSpec] = []
    for name, shape, make in specs:
        if len(shape) != 2 or shape[-1] % 32 or "position_embd" in name:
            out.append((name, shape, make))
            continue

        def quantized(make: Make = make) -> np.ndarray:
            return gguf.quants.quantize(make().astype(np.float32), gguf.GGMLQuantizationType.Q8_0)

        quantized.raw_dtype = gguf.GGMLQuantizationType.Q8_0  # type: ignore[attr-defined]
        out.append((name, shape, quantized))
    return out


def write_mmproj(path: Path, spec: ReplicaSpec, seed: int, q8: bool = False) -> None:
    import gguf

    v = spec.vision
    n_text = spec.text.n_embd

    def kv(w: Any) -> None:
        w.add_type(gguf.GGUFType.MMPROJ)
        w.add_name(spec.gguf_name)
        w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if q8 else gguf.LlamaFileType.MOSTLY_F16)
        w.add_clip_has_vision_encoder(True)
        if v.projector == "mlp":
            w.add_bool("clip.has_text_encoder", False)
        w.add_clip_projector_type(v.projector)
        w.add_vision_projection_dim(int(v.extra.get("clip.vision.projection_dim", n_text)))
        w.add_vision_image_size(v.image_size)
        w.add_vision_patch_size(v.patch_size)
        w.add_vision_embedding_length(v.n_embd)
        w.add_vision_feed_forward_length(v.n_ff)
        w.add_vision_block_count(v.n_layer)
        w.add_vision_head_count(v.n_head)
        w.add_vision_attention_layernorm_eps(v.eps)
        w.add_vision_image_mean(v.mean)
        w.add_vision_image_std(v.std)
        if v.act == "gelu":
            w.add_vision_use_gelu(True)
        elif v.act == "silu":
            w.add_vision_use_silu(True)
        else:  # LLaVA's quick-GELU: the old files say use_gelu = false
            w.add_vision_use_gelu(False)
        for key, value in v.extra.items():
            if key != "clip.vision.projection_dim":
                _add(w, key, value)

    specs = list(vision_tensors(v, n_text, _Rand(seed + 1_000_003, np.float16)))
    write_gguf(path, "clip", kv, _q8_0(specs) if q8 else specs)


def quantize_text(src: Path, dst: Path, ftype_name: str, threads: int = 2) -> None:
    """llama.cpp's own quantiser (``llama_model_quantize``), e.g. F16 -> Q4_K_M as the published file."""
    import llama_cpp

    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype_name}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = threads
    params.ftype = ftype
    tmp = dst.with_name(dst.name + ".tmp")
    if llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), params) != 0:
        raise RuntimeError(f"llama_model_quantize failed for {src}")
    os.replace(tmp, dst)
