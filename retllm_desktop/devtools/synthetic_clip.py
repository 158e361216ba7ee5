"""Random-weight CLIP towers built directly as ONNX graphs (``onnx`` helper API, no torch).

The graphs have the real CLIP ViT structure, so tests and benchmarks exercise the same operators,
shapes and (for ``realistic``) the same compute as a real model:

* image tower: patch-embedding Conv, class token, position embeddings, ``ln_pre``, pre-LN transformer
  blocks (multi-head attention via MatMul/Softmax, MLP with exact GELU), ``ln_post`` on the class token,
  projection;
* text tower: the full 49408-token embedding table, position embeddings, causal transformer blocks,
  ``ln_final``, features taken at ``argmax(input_ids)`` (the end-of-text token has the highest id, as in
  open_clip), projection.

Outputs are unnormalized embeddings; :class:`retllm_desktop.models.clip.ClipModel` normalizes them.
Weights come from ``numpy.random.default_rng(seed)``, so a seed always gives byte-identical files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
VOCAB_SIZE = 49408
CONTEXT_LENGTH = 77
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class SyntheticSpec:
    image_size: int
    patch_size: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    text_width: int
    text_layers: int
    text_heads: int
    embed_dim: int
    mlp_ratio: int = 4
    context_length: int = CONTEXT_LENGTH
    vocab_size: int = VOCAB_SIZE


SIZES: dict[str, SyntheticSpec] = {
    # ~0.5 MB image tower; the text tower is dominated by the 49408 x 64 embedding table (~12.6 MB).
    "tiny": SyntheticSpec(
        image_size=64,
        patch_size=16,
        vision_width=64,
        vision_layers=2,
        vision_heads=4,
        text_width=64,
        text_layers=2,
        text_heads=4,
        embed_dim=64,
    ),
    # ViT-B/32 shapes: ~350 MB image tower, ~250 MB text tower.
    "realistic": SyntheticSpec(
        image_size=224,
        patch_size=32,
        vision_width=768,
        vision_layers=12,
        vision_heads=12,
        text_width=512,
        text_layers=12,
        text_heads=8,
        embed_dim=512,
    ),
}


class _GraphBuilder:
    """Tiny helper that names nodes/initializers uniquely and draws weights from one RNG."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def _name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n}"

    def const(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.require(array, requirements="C"), name))
        return name

    def weight(self, name: str, shape: tuple[int, ...], std: float) -> str:
        w = self.rng.standard_normal(shape, dtype=np.float32)
        w *= np.float32(std)
        return self.const(name, w)

    def op(self, op_type: str, inputs: list[str], prefix: str | None = None, **attrs) -> str:
        out = self._name(prefix or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out + "_node", **attrs))
        return out

    def layer_norm(self, x: str, width: int, prefix: str) -> str:
        g = self.const(f"{prefix}.weight", np.ones(width, np.float32))
        b = self.const(f"{prefix}.bias", np.zeros(width, np.float32))
        return self.op("LayerNormalization", [x, g, b], prefix, axis=-1, epsilon=1e-5)

    def linear(self, x: str, d_in: int, d_out: int, prefix: str, std: float, bias: bool = True) -> str:
        w = self.weight(f"{prefix}.weight", (d_in, d_out), std)
        y = self.op("MatMul", [x, w], prefix + "_mm")
        if bias:
            b = self.const(f"{prefix}.bias", np.zeros(d_out, np.float32))
            y = self.op("Add", [y, b], prefix + "_add")
        return y

    def gelu(self, x: str) -> str:
        inv_sqrt2 = self.const(self._name("inv_sqrt2"), np.array(1 / np.sqrt(2.0), np.float32))
        half = self.const(self._name("half"), np.array(0.5, np.float32))
        one = self.const(self._name("one"), np.array(1.0, np.float32))
        e = self.op("Erf", [self.op("Mul", [x, inv_sqrt2])])
        return self.op("Mul", [self.op("Mul", [x, half]), self.op("Add", [e, one])], "gelu")

    def attention(self, x: str, width: int, heads: int, prefix: str, mask: str | None) -> str:
        dh = width // heads
        std = width**-0.5
        q = self.linear(x, width, width, f"{prefix}.q_proj", std)
        k = self.linear(x, width, width, f"{prefix}.k_proj", std)
        v = self.linear(x, width, width, f"{prefix}.v_proj", std)
        split_shape = self.const(self._name("heads_shape"), np.array([0, 0, heads, dh], np.int64))
        q = self.op("Transpose", [self.op("Reshape", [q, split_shape])], perm=[0, 2, 1, 3])  # N,H,T,dh
        k = self.op("Transpose", [self.op("Reshape", [k, split_shape])], perm=[0, 2, 3, 1])  # N,H,dh,T
        v = self.op("Transpose", [self.op("Reshape", [v, split_shape])], perm=[0, 2, 1, 3])  # N,H,T,dh
        scale = self.const(self._name("attn_scale"), np.array(dh**-0.5, np.float32))
        scores = self.op("Mul", [self.op("MatMul", [q, k]), scale], "scores")
        if mask is not None:
            scores = self.op("Add", [scores, mask], "masked_scores")
        probs = self.op("Softmax", [scores], "probs", axis=-1)
        ctx = self.op("Transpose", [self.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])  # N,T,H,dh
        merge_shape = self.const(self._name("merge_shape"), np.array([0, 0, width], np.int64))
        ctx = self.op("Reshape", [ctx, merge_shape])
        return self.linear(ctx, width, width, f"{prefix}.out_proj", std / np.sqrt(2.0))

    def block(self, x: str, width: int, heads: int, mlp_ratio: int, prefix: str, mask: str | None) -> str:
        h = self.attention(self.layer_norm(x, width, f"{prefix}.ln_1"), width, heads, f"{prefix}.attn", mask)
        x = self.op("Add", [x, h], "resid")
        h = self.layer_norm(x, width, f"{prefix}.ln_2")
        h = self.linear(h, width, width * mlp_ratio, f"{prefix}.mlp.c_fc", width**-0.5)
        h = self.gelu(h)
        h = self.linear(h, width * mlp_ratio, width, f"{prefix}.mlp.c_proj", (width * mlp_ratio) ** -0.5 / 2)
        return self.op("Add", [x, h], "resid")


def _image_graph(spec: SyntheticSpec, rng: np.random.Generator) -> onnx.ModelProto:
    b = _GraphBuilder(rng)
    s, p, w = spec.image_size, spec.patch_size, spec.vision_width
    grid = s // p
    conv_w = b.weight("visual.conv1.weight", (w, 3, p, p), (3 * p * p) ** -0.5)
    x = b.op("Conv", ["pixel_values", conv_w], "patch_embed", kernel_shape=[p, p], strides=[p, p])  # N,W,g,g
    x = b.op("Reshape", [x, b.const("patch_flat_shape", np.array([0, w, grid * grid], np.int64))])
    x = b.op("Transpose", [x], "patches", perm=[0, 2, 1])  # N,L,W
    # class token broadcast to the batch: Expand(cls, [N, 1, W]).
    cls = b.weight("visual.class_embedding", (1, 1, w), w**-0.5)
    n = b.op(
        "Slice",
        [b.op("Shape", [x]), b.const("i0", np.array([0], np.int64)), b.const("i1", np.array([1], np.int64))],
    )
    cls_shape = b.op("Concat", [n, b.const("cls_tail", np.array([1, w], np.int64))], axis=0)
    x = b.op("Concat", [b.op("Expand", [cls, cls_shape]), x], "tokens", axis=1)
    x = b.op("Add", [x, b.weight("visual.positional_embedding", (grid * grid + 1, w), w**-0.5)])
    x = b.layer_norm(x, w, "visual.ln_pre")
    for i in range(spec.vision_layers):
        x = b.block(x, w, spec.vision_heads, spec.mlp_ratio, f"visual.blocks.{i}", None)
    pooled = b.op("Gather", [x, b.const("cls_index", np.array(0, np.int64))], "pooled", axis=1)  # N,W
    pooled = b.layer_norm(pooled, w, "visual.ln_post")
    out_w = b.weight("visual.proj", (w, spec.embed_dim), w**-0.5)
    b.nodes.append(helper.make_node("MatMul", [pooled, out_w], ["image_embeds"], name="image_embeds_node"))
    graph = helper.make_graph(
        b.nodes,
        "synthetic_clip_image",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, s, s])],
        [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["batch", spec.embed_dim])],
        b.inits,
    )
    return _model(graph)


def _text_graph(spec: SyntheticSpec, rng: np.random.Generator) -> onnx.ModelProto:
    b = _GraphBuilder(rng)
    w, c = spec.text_width, spec.context_length
    table = b.weight("token_embedding.weight", (spec.vocab_size, w), 0.02)
    x = b.op("Gather", [table, "input_ids"], "tok_emb", axis=0)  # N,C,W
    x = b.op("Add", [x, b.weight("positional_embedding", (c, w), 0.01)])
    mask = np.triu(np.full((c, c), -1e9, np.float32), k=1)  # large negative above the diagonal
    mask_name = b.const("causal_mask", mask)
    for i in range(spec.text_layers):
        x = b.block(x, w, spec.text_heads, spec.mlp_ratio, f"transformer.blocks.{i}", mask_name)
    x = b.layer_norm(x, w, "ln_final")
    eot = b.op("ArgMax", ["input_ids"], "eot_index", axis=-1, keepdims=1)  # N,1
    pooled = b.op("GatherND", [x, eot], "pooled", batch_dims=1)  # N,W
    out_w = b.weight("text_projection", (w, spec.embed_dim), w**-0.5)
    b.nodes.append(helper.make_node("MatMul", [pooled, out_w], ["text_embeds"], name="text_embeds_node"))
    graph = helper.make_graph(
        b.nodes,
        "synthetic_clip_text",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", c])],
        [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["batch", spec.embed_dim])],
        b.inits,
    )
    return _model(graph)


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="retllm-desktop-synthetic"
    )
    model.ir_version = 8  # readable by every onnxruntime >= 1.14
    return model


def clip_json(name: str, spec: SyntheticSpec, size: str, seed: int) -> dict:
    return {
        "name": name,
        "embed_dim": spec.embed_dim,
        "image_size": spec.image_size,
        "mean": list(OPENAI_MEAN),
        "std": list(OPENAI_STD),
        "resize_mode": "shortest",
        "interpolation": "bicubic",
        "context_length": spec.context_length,
        "image_model": "image.onnx",
        "text_model": "text.onnx",
        "source": {"kind": "synthetic", "size": size, "seed": seed, "note": "random weights, for tests only"},
    }


def write_synthetic_clip(out_models_dir: Path, size: str = "tiny", seed: int = 0, check: bool = True) -> Path:
    """Write ``<out_models_dir>/clip/synthetic-<size>/`` (clip.json, image.onnx, text.onnx); return the dir.

    ``check`` runs ``onnx.checker`` and one onnxruntime inference per tower (dynamic batch of 2).
    """
    if size not in SIZES:
        raise ValueError(f"unknown synthetic size {size!r}; choose one of {sorted(SIZES)}")
    spec = SIZES[size]
    name = f"synthetic-{size}"
    model_dir = Path(out_models_dir) / "clip" / name
    model_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for filename, build in (("image.onnx", _image_graph), ("text.onnx", _text_graph)):
        model = build(spec, rng)
        if check:
            onnx.checker.check_model(model, full_check=True)
        tmp = model_dir / (filename + ".tmp")
        tmp.write_bytes(model.SerializeToString())
        tmp.replace(model_dir / filename)
        del model
    (model_dir / "clip.json").write_text(json.dumps(clip_json(name, spec, size, seed), indent=2) + "\n")
    if check:
        _smoke_test(model_dir, spec)
    return model_dir


def _smoke_test(model_dir: Path, spec: SyntheticSpec) -> None:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    rng = np.random.default_rng(123)
    img = ort.InferenceSession(str(model_dir / "image.onnx"), opts, providers=["CPUExecutionProvider"])
    pix = rng.standard_normal((2, 3, spec.image_size, spec.image_size), dtype=np.float32)
    (emb,) = img.run(["image_embeds"], {"pixel_values": pix})
    if emb.shape != (2, spec.embed_dim) or not np.isfinite(emb).all():
        raise RuntimeError(f"synthetic image tower gave bad output {emb.shape}")
    txt = ort.InferenceSession(str(model_dir / "text.onnx"), opts, providers=["CPUExecutionProvider"])
    ids = np.zeros((2, spec.context_length), np.int64)
    ids[:, 0] = 49406
    ids[0, 1:4] = [320, 1929, 49407]
    ids[1, 1:3] = [1125, 49407]
    (emb,) = txt.run(["text_embeds"], {"input_ids": ids})
    if emb.shape != (2, spec.embed_dim) or not np.isfinite(emb).all():
        raise RuntimeError(f"synthetic text tower gave bad output {emb.shape}")
