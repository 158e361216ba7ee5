"""CLIP replicas: random-init towers with exactly the ONNX interface of the registry's Xenova files.

The registry's CLIP entries download ``onnx/vision_model[_quantized].onnx`` and
``onnx/text_model[_quantized].onnx`` from ``Xenova/clip-vit-*``: Hugging Face ``transformers``
``CLIPVisionModelWithProjection`` / ``CLIPTextModelWithProjection`` exported by optimum with
transformers.js's configs (``scripts/extra/clip.py``), which keep only the projected output:

* vision: ``pixel_values`` float32 ``[batch_size, num_channels, height, width]`` (all four dynamic, from
  optimum's ``ViTOnnxConfig``) -> ``image_embeds`` float32 ``[batch_size, D]``;
* text: ``input_ids`` int64 ``[batch_size, sequence_length]`` (``CLIPTextOnnxConfig``, no attention mask)
  -> ``text_embeds`` float32 ``[batch_size, D]``.

The graphs follow HF's CLIP modules (patch Conv without bias, class token, ``pre_layrnorm``, pre-LN blocks
with quick-GELU MLPs, ``post_layernorm`` on the class token, ``visual_projection`` without bias; text:
causal blocks, ``final_layer_norm``, pooling at ``argmax(input_ids)``, ``text_projection``), at opset 14
with LayerNorm spelled out as torch exports it there. The ``*_quantized`` variants are made the way
transformers.js's ``scripts/convert.py`` makes them (``quantize_dynamic``, per-channel, reduce-range, all
op types; uint8 weights where the graph has a Conv, int8 otherwise).

Sizes: ``full`` has the real widths/depths; ``tiny`` keeps everything that is visible from outside
(image size, patch size, context length, vocabulary, ``embed_dim``) and shrinks widths and depths.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 14
VOCAB_SIZE = 49408
CONTEXT_LENGTH = 77


@dataclass(frozen=True)
class ClipShape:
    image_size: int
    patch_size: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    text_width: int
    text_layers: int
    text_heads: int
    embed_dim: int


# Real shapes of the OpenAI checkpoints (HF config.json of openai/clip-vit-*).
FULL = {
    "ViT-B-32": ClipShape(224, 32, 768, 12, 12, 512, 12, 8, 512),
    "ViT-B-16": ClipShape(224, 16, 768, 12, 12, 512, 12, 8, 512),
    "ViT-L-14": ClipShape(224, 14, 1024, 24, 16, 768, 12, 12, 768),
}


def tiny(shape: ClipShape) -> ClipShape:
    """Same interface, small compute: narrow, two layers each."""
    return ClipShape(shape.image_size, shape.patch_size, 32, 2, 2, 32, 2, 2, shape.embed_dim)


class _G:
    """Graph builder: unique names, weights from one RNG."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"/{prefix}/{self._n}"

    def const(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.require(array, requirements="C"), name))
        return name

    def weight(self, name: str, shape: tuple[int, ...], std: float) -> str:
        return self.const(name, (self.rng.standard_normal(shape, dtype=np.float32) * np.float32(std)))

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        out = out or self.name(op_type)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out + "_node", **attrs))
        return out

    def scalar(self, value: float) -> str:
        return self.const(self.name("c"), np.array(value, np.float32))

    def layer_norm(self, x: str, width: int, prefix: str) -> str:
        """LayerNorm as torch.onnx spells it below opset 17."""
        axes = {"axes": [-1]}
        mean = self.op("ReduceMean", [x], **axes)
        d = self.op("Sub", [x, mean])
        var = self.op("ReduceMean", [self.op("Pow", [d, self.scalar(2.0)])], **axes)
        y = self.op("Div", [d, self.op("Sqrt", [self.op("Add", [var, self.scalar(1e-5)])])])
        y = self.op("Mul", [y, self.const(f"{prefix}.weight", np.ones(width, np.float32))])
        return self.op("Add", [y, self.const(f"{prefix}.bias", np.zeros(width, np.float32))])

    def linear(self, x: str, d_in: int, d_out: int, prefix: str, std: float, bias: bool = True) -> str:
        y = self.op("MatMul", [x, self.weight(f"{prefix}.weight", (d_in, d_out), std)])
        if bias:
            y = self.op("Add", [y, self.const(f"{prefix}.bias", np.zeros(d_out, np.float32))])
        return y

    def quick_gelu(self, x: str) -> str:
        return self.op("Mul", [x, self.op("Sigmoid", [self.op("Mul", [x, self.scalar(1.702)])])])

    def attention(self, x: str, width: int, heads: int, prefix: str, mask: str | None) -> str:
        dh = width // heads
        q = self.linear(x, width, width, f"{prefix}.q_proj", width**-0.5)
        k = self.linear(x, width, width, f"{prefix}.k_proj", width**-0.5)
        v = self.linear(x, width, width, f"{prefix}.v_proj", width**-0.5)
        split = self.const(self.name("shape"), np.array([0, 0, heads, dh], np.int64))
        q = self.op("Transpose", [self.op("Reshape", [q, split])], perm=[0, 2, 1, 3])
        k = self.op("Transpose", [self.op("Reshape", [k, split])], perm=[0, 2, 3, 1])
        v = self.op("Transpose", [self.op("Reshape", [v, split])], perm=[0, 2, 1, 3])
        s = self.op("Mul", [self.op("MatMul", [q, k]), self.scalar(dh**-0.5)])
        if mask is not None:
            s = self.op("Add", [s, mask])
        ctx = self.op(
            "Transpose", [self.op("MatMul", [self.op("Softmax", [s], axis=-1), v])], perm=[0, 2, 1, 3]
        )
        ctx = self.op("Reshape", [ctx, self.const(self.name("shape"), np.array([0, 0, width], np.int64))])
        return self.linear(ctx, width, width, f"{prefix}.out_proj", width**-0.5 / 2)

    def block(self, x: str, width: int, heads: int, prefix: str, mask: str | None) -> str:
        h = self.attention(
            self.layer_norm(x, width, f"{prefix}.layer_norm1"), width, heads, f"{prefix}.self_attn", mask
        )
        x = self.op("Add", [x, h])
        h = self.linear(
            self.layer_norm(x, width, f"{prefix}.layer_norm2"),
            width,
            4 * width,
            f"{prefix}.mlp.fc1",
            width**-0.5,
        )
        h = self.linear(self.quick_gelu(h), 4 * width, width, f"{prefix}.mlp.fc2", (4 * width) ** -0.5 / 2)
        return self.op("Add", [x, h])

    def slice0(self, x: str, axis: int, end: str) -> str:
        zero = self.const(self.name("i"), np.array([0], np.int64))
        ax = self.const(self.name("i"), np.array([axis], np.int64))
        return self.op("Slice", [x, zero, end, ax])

    def dim(self, x: str, i: int) -> str:
        """Shape(x)[i:i+1] as a 1-D int64 tensor."""
        lo = self.const(self.name("i"), np.array([i], np.int64))
        hi = self.const(self.name("i"), np.array([i + 1], np.int64))
        return self.op("Slice", [self.op("Shape", [x]), lo, hi])


def _model(g: _G, name: str, inputs, outputs) -> onnx.ModelProto:
    graph = helper.make_graph(g.nodes, name, inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="pytorch")
    model.ir_version = 8
    return model


def vision_model(s: ClipShape, rng: np.random.Generator) -> onnx.ModelProto:
    g = _G(rng)
    w, p, grid = s.vision_width, s.patch_size, s.image_size // s.patch_size
    prefix = "vision_model.embeddings"
    conv = g.weight(f"{prefix}.patch_embedding.weight", (w, 3, p, p), (3 * p * p) ** -0.5)
    x = g.op("Conv", ["pixel_values", conv], kernel_shape=[p, p], strides=[p, p])
    x = g.op("Reshape", [x, g.const(g.name("shape"), np.array([0, w, -1], np.int64))])
    x = g.op("Transpose", [x], perm=[0, 2, 1])
    cls = g.weight(f"{prefix}.class_embedding", (1, 1, w), w**-0.5)
    cls_shape = g.op("Concat", [g.dim(x, 0), g.const(g.name("shape"), np.array([1, w], np.int64))], axis=0)
    x = g.op("Concat", [g.op("Expand", [cls, cls_shape]), x], axis=1)
    x = g.op("Add", [x, g.weight(f"{prefix}.position_embedding.weight", (grid * grid + 1, w), w**-0.5)])
    x = g.layer_norm(x, w, "vision_model.pre_layrnorm")
    for i in range(s.vision_layers):
        x = g.block(x, w, s.vision_heads, f"vision_model.encoder.layers.{i}", None)
    pooled = g.op("Gather", [x, g.const("cls_index", np.array(0, np.int64))], axis=1)
    pooled = g.layer_norm(pooled, w, "vision_model.post_layernorm")
    proj = g.weight("visual_projection.weight", (w, s.embed_dim), w**-0.5)
    g.op("MatMul", [pooled, proj], out="image_embeds")
    dims = ["batch_size", "num_channels", "height", "width"]
    return _model(
        g,
        "main_graph",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["batch_size", s.embed_dim])],
    )


def text_model(s: ClipShape, rng: np.random.Generator) -> onnx.ModelProto:
    g = _G(rng)
    w = s.text_width
    table = g.weight("text_model.embeddings.token_embedding.weight", (VOCAB_SIZE, w), 0.02)
    x = g.op("Gather", [table, "input_ids"], axis=0)
    seq = g.dim(x, 1)
    pos = g.weight("text_model.embeddings.position_embedding.weight", (CONTEXT_LENGTH, w), 0.01)
    x = g.op("Add", [x, g.slice0(pos, 0, seq)])
    full = g.const("causal_mask", np.triu(np.full((CONTEXT_LENGTH, CONTEXT_LENGTH), -3.4e38, np.float32), 1))
    mask = g.slice0(g.slice0(full, 0, seq), 1, seq)
    for i in range(s.text_layers):
        x = g.block(x, w, s.text_heads, f"text_model.encoder.layers.{i}", mask)
    x = g.layer_norm(x, w, "text_model.final_layer_norm")
    eot = g.op("ArgMax", ["input_ids"], axis=-1, keepdims=1)
    pooled = g.op("GatherND", [x, eot], batch_dims=1)
    proj = g.weight("text_projection.weight", (w, s.embed_dim), w**-0.5)
    g.op("MatMul", [pooled, proj], out="text_embeds")
    return _model(
        g,
        "main_graph",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"])],
        [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["batch_size", s.embed_dim])],
    )


def quantize_like_transformers_js(src: Path, dst: Path) -> None:
    """``quantize_dynamic`` with transformers.js's Q8 settings (uint8 weights when the graph has a Conv)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    ops = {n.op_type for n in onnx.load(str(src), load_external_data=False).graph.node}
    tmp = dst.with_name(dst.name + ".tmp.onnx")
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime's "consider pre-processing" hint
    try:
        quantize_dynamic(
            str(src),
            str(tmp),
            weight_type=QuantType.QUInt8 if "Conv" in ops else QuantType.QInt8,
            per_channel=True,
            reduce_range=True,
            extra_options={"EnableSubgraph": True},
        )
    finally:
        root.setLevel(level)
    tmp.replace(dst)


def write_clip_files(out_dir: Path, arch: str, size: str, quantized: bool, seed: int) -> dict[str, Path]:
    """Write ``image.onnx`` + ``text.onnx`` (the registry's file names) into ``out_dir``."""
    shape = FULL[arch] if size == "full" else tiny(FULL[arch])
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 7])
    written = {}
    for fname, build in (("image.onnx", vision_model), ("text.onnx", text_model)):
        model = build(shape, rng)
        onnx.checker.check_model(model)
        dst = out_dir / fname
        src = dst.with_name(dst.stem + ".fp32.onnx") if quantized else dst
        tmp = src.with_name(src.name + ".tmp")
        tmp.write_bytes(model.SerializeToString())
        tmp.replace(src)
        if quantized:
            quantize_like_transformers_js(src, dst)
            src.unlink()
        written[fname] = dst
    return written
