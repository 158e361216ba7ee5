"""Replicas of the newer coarse models: SigLIP 2 (transformers.js), MobileCLIP (Xenova), Immich's exports.

The outside of each graph is the published file's: input and output names, element types, which axes
are dynamic and the output shapes, and for fp16 exports float32 inputs/outputs around fp16 weights (what
``onnxconverter_common``'s ``keep_io_types=True`` conversion, used by transformers.js, produces). Inside,
the layers follow each family's modules at real widths and depths (``full``), so compute and size are
the real models'; numerical details that only matter with real weights (exact GELU form, epsilons) are
approximated.

* ``siglip-tjs``: ``onnx-community/siglip2-*-ONNX`` — vision ``pixel_values`` float32
  ``[batch_size, num_channels, height, width]`` -> ``last_hidden_state``, ``pooler_output`` (MAP head);
  text ``input_ids`` int64 ``[batch_size, sequence_length]`` -> ``last_hidden_state``, ``pooler_output``
  (last position through the head). Published as ``*_fp16.onnx``.
* ``xenova``: ``Xenova/mobileclip_*`` — the Xenova CLIP interface (``clip_onnx``), MobileCLIP-S0 sizes
  approximated by a ViT of the same parameter count and compute (its image tower is a conv/attention
  hybrid, MCi0, not a ViT).
* ``immich-xlmr``: ``immich-app/XLM-Roberta-Base-ViT-B-32__*`` — torch.onnx exports without dynamic axes:
  vision ``image`` float32 ``[1, 3, 224, 224]`` -> ``embedding`` ``[1, 512]`` (L2-normalised); text
  ``text`` int32 ``[1, 77]`` -> ``embedding`` (XLM-R encoder, padding mask from ``<pad>`` = 1, mean
  pooling, open_clip's two-layer MLP projection, L2-normalised).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .clip_onnx import _G, FULL, ClipShape, _model, text_model, vision_model


@dataclass(frozen=True)
class TowerShape:
    width: int
    layers: int
    heads: int
    mlp: int


@dataclass(frozen=True)
class FamilySpec:
    family: str  # "siglip-tjs" | "xenova" | "immich-xlmr"
    image_size: int
    patch_size: int
    vision: TowerShape
    text: TowerShape
    vocab_size: int
    context_length: int
    embed_dim: int
    tokenizer: str | None  # hf_tokenizers kind (None: the CLIP BPE)


# Real sizes: google/siglip2-base-patch16-224 config.json; MobileCLIP-S0 (11.4M + 42.4M parameters, 256 px);
# open_clip xlm-roberta-base-ViT-B-32 (ViT-B/32 + xlm-roberta-base, 250,002 tokens, 512-d).
SPECS: dict[str, FamilySpec] = {
    "siglip2-b16": FamilySpec(
        "siglip-tjs",
        224,
        16,
        TowerShape(768, 12, 12, 3072),
        TowerShape(768, 12, 12, 3072),
        256000,
        64,
        768,
        "gemma-standin",
    ),  # fmt: skip
    "mobileclip-s0": FamilySpec(
        "xenova", 256, 32, TowerShape(384, 6, 6, 1536), TowerShape(512, 6, 8, 2048), 49408, 77, 512, None
    ),
    "clip-multilingual-b32": FamilySpec(
        "immich-xlmr",
        224,
        32,
        TowerShape(768, 12, 12, 3072),
        TowerShape(768, 12, 12, 3072),
        250002,
        77,
        512,
        "xlm-roberta",
    ),  # fmt: skip
}


def tiny_spec(spec: FamilySpec) -> FamilySpec:
    """Every outside-visible size kept (image, patch, vocabulary, context, embedding); narrow and shallow."""
    return replace(spec, vision=TowerShape(32, 2, 2, 64), text=TowerShape(32, 2, 2, 64))


class _F(_G):
    def gelu_tanh(self, x: str) -> str:
        c = self.scalar(float(np.sqrt(2 / np.pi)))
        x3 = self.op("Mul", [self.op("Mul", [x, x]), x])
        inner = self.op("Mul", [self.op("Add", [x, self.op("Mul", [x3, self.scalar(0.044715)])]), c])
        t = self.op("Add", [self.op("Tanh", [inner]), self.scalar(1.0)])
        return self.op("Mul", [self.op("Mul", [x, t]), self.scalar(0.5)])

    def mlp(self, x: str, t: TowerShape, prefix: str) -> str:
        h = self.linear(x, t.width, t.mlp, f"{prefix}.fc1", t.width**-0.5)
        return self.linear(self.gelu_tanh(h), t.mlp, t.width, f"{prefix}.fc2", t.mlp**-0.5 / 2)

    def pre_ln_block(self, x: str, t: TowerShape, prefix: str, mask: str | None = None) -> str:
        h = self.attention(
            self.layer_norm(x, t.width, f"{prefix}.layer_norm1"),
            t.width,
            t.heads,
            f"{prefix}.self_attn",
            mask,
        )
        x = self.op("Add", [x, h])
        return self.op(
            "Add", [x, self.mlp(self.layer_norm(x, t.width, f"{prefix}.layer_norm2"), t, f"{prefix}.mlp")]
        )

    def post_ln_block(self, x: str, t: TowerShape, prefix: str, mask: str | None) -> str:
        """BERT/RoBERTa layer: attention, add & norm, feed-forward, add & norm."""
        x = self.layer_norm(
            self.op("Add", [x, self.attention(x, t.width, t.heads, f"{prefix}.attention", mask)]),
            t.width,
            f"{prefix}.ln1",
        )
        return self.layer_norm(self.op("Add", [x, self.mlp(x, t, f"{prefix}.ffn")]), t.width, f"{prefix}.ln2")

    def l2_normalize(self, x: str, out: str) -> str:
        return self.op("Div", [x, self.op("ReduceL2", [x], axes=[-1], keepdims=1)], out=out)

    def map_head(self, x: str, t: TowerShape, prefix: str) -> str:
        """SigLIP's multihead attention pooling: a learned probe attends over the tokens, then an MLP."""
        w, dh = t.width, t.width // t.heads
        probe = self.weight(f"{prefix}.probe", (1, 1, w), w**-0.5)
        probe = self.op(
            "Expand",
            [
                probe,
                self.op(
                    "Concat", [self.dim(x, 0), self.const(self.name("s"), np.array([1, w], np.int64))], axis=0
                ),
            ],
        )
        q = self.linear(probe, w, w, f"{prefix}.q", w**-0.5)
        k = self.linear(x, w, w, f"{prefix}.k", w**-0.5)
        v = self.linear(x, w, w, f"{prefix}.v", w**-0.5)
        split = self.const(self.name("shape"), np.array([0, 0, t.heads, dh], np.int64))
        q = self.op("Transpose", [self.op("Reshape", [q, split])], perm=[0, 2, 1, 3])
        k = self.op("Transpose", [self.op("Reshape", [k, split])], perm=[0, 2, 3, 1])
        v = self.op("Transpose", [self.op("Reshape", [v, split])], perm=[0, 2, 1, 3])
        a = self.op("Softmax", [self.op("Mul", [self.op("MatMul", [q, k]), self.scalar(dh**-0.5)])], axis=-1)
        ctx = self.op("Transpose", [self.op("MatMul", [a, v])], perm=[0, 2, 1, 3])
        ctx = self.op("Reshape", [ctx, self.const(self.name("shape"), np.array([0, 0, w], np.int64))])
        h = self.linear(ctx, w, w, f"{prefix}.out_proj", w**-0.5 / 2)
        h = self.op("Add", [h, self.mlp(self.layer_norm(h, w, f"{prefix}.layernorm"), t, f"{prefix}.mlp")])
        return self.op("Gather", [h, self.const(self.name("i"), np.array(0, np.int64))], axis=1)


def _vi(name: str, elem: int, dims: list) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, dims)


def siglip_vision(s: FamilySpec, rng: np.random.Generator) -> onnx.ModelProto:
    g, t = _F(rng), s.vision
    w, p, n = t.width, s.patch_size, (s.image_size // s.patch_size) ** 2
    conv = g.weight("vision_model.embeddings.patch_embedding.weight", (w, 3, p, p), (3 * p * p) ** -0.5)
    bias = g.const("vision_model.embeddings.patch_embedding.bias", np.zeros(w, np.float32))
    x = g.op("Conv", ["pixel_values", conv, bias], kernel_shape=[p, p], strides=[p, p])
    x = g.op(
        "Transpose",
        [g.op("Reshape", [x, g.const(g.name("shape"), np.array([0, w, -1], np.int64))])],
        perm=[0, 2, 1],
    )
    x = g.op("Add", [x, g.weight("vision_model.embeddings.position_embedding.weight", (n, w), w**-0.5)])
    for i in range(t.layers):
        x = g.pre_ln_block(x, t, f"vision_model.encoder.layers.{i}")
    x = g.layer_norm(x, w, "vision_model.post_layernorm")
    g.op("Identity", [x], out="last_hidden_state")
    pooled = g.map_head(x, t, "vision_model.head")
    if w != s.embed_dim:  # tiny replicas only: the real head output is the embedding
        pooled = g.linear(pooled, w, s.embed_dim, "tiny.proj", w**-0.5)
    g.op("Identity", [pooled], out="pooler_output")
    return _model(
        g, "main_graph",
        [_vi("pixel_values", TensorProto.FLOAT, ["batch_size", "num_channels", "height", "width"])],
        [_vi("last_hidden_state", TensorProto.FLOAT, ["batch_size", n, w]),
         _vi("pooler_output", TensorProto.FLOAT, ["batch_size", s.embed_dim])],
    )  # fmt: skip


def siglip_text(s: FamilySpec, rng: np.random.Generator) -> onnx.ModelProto:
    g, t = _F(rng), s.text
    w = t.width
    x = g.op(
        "Gather",
        [g.weight("text_model.embeddings.token_embedding.weight", (s.vocab_size, w), 0.02), "input_ids"],
        axis=0,
    )
    pos = g.weight("text_model.embeddings.position_embedding.weight", (s.context_length, w), 0.01)
    x = g.op("Add", [x, g.slice0(pos, 0, g.dim(x, 1))])
    for i in range(t.layers):
        x = g.pre_ln_block(x, t, f"text_model.encoder.layers.{i}")
    x = g.layer_norm(x, w, "text_model.final_layer_norm")
    g.op("Identity", [x], out="last_hidden_state")
    last = g.op("Gather", [x, g.const("last_index", np.array(-1, np.int64))], axis=1)
    g.linear(last, w, s.embed_dim, "text_model.head", w**-0.5)
    g.nodes[-1].output[0] = "pooler_output"
    return _model(
        g, "main_graph",
        [_vi("input_ids", TensorProto.INT64, ["batch_size", "sequence_length"])],
        [_vi("last_hidden_state", TensorProto.FLOAT, ["batch_size", "sequence_length", w]),
         _vi("pooler_output", TensorProto.FLOAT, ["batch_size", s.embed_dim])],
    )  # fmt: skip


def immich_vision(s: FamilySpec, rng: np.random.Generator) -> onnx.ModelProto:
    t = s.vision
    shape = ClipShape(s.image_size, s.patch_size, t.width, t.layers, t.heads, 32, 1, 1, s.embed_dim)
    m = vision_model(shape, rng)
    graph = m.graph
    for node in graph.node:  # Immich's names: image -> embedding (normalised inside the graph)
        node.input[:] = ["image" if i == "pixel_values" else i for i in node.input]
        node.output[:] = ["raw_embedding" if o == "image_embeds" else o for o in node.output]
    graph.node.append(helper.make_node("ReduceL2", ["raw_embedding"], ["norm"], axes=[-1], keepdims=1))
    graph.node.append(helper.make_node("Div", ["raw_embedding", "norm"], ["embedding"]))
    del graph.input[:], graph.output[:]
    graph.input.append(_vi("image", TensorProto.FLOAT, [1, 3, s.image_size, s.image_size]))
    graph.output.append(_vi("embedding", TensorProto.FLOAT, [1, s.embed_dim]))
    return m


def xlmr_text(s: FamilySpec, rng: np.random.Generator) -> onnx.ModelProto:
    g, t = _F(rng), s.text
    w, n = t.width, s.context_length
    ids = g.op("Cast", ["text"], to=TensorProto.INT64)
    keep = g.op(
        "Cast",
        [g.op("Not", [g.op("Equal", [ids, g.const("pad_id", np.array(1, np.int64))])])],
        to=TensorProto.INT64,
    )
    pos_ids = g.op(
        "Add",
        [
            g.op("Mul", [g.op("CumSum", [keep, g.const("axis1", np.array(1, np.int64))]), keep]),
            g.const("pad_offset", np.array(1, np.int64)),
        ],
    )
    x = g.op("Gather", [g.weight("embeddings.word_embeddings.weight", (s.vocab_size, w), 0.02), ids], axis=0)
    x = g.op(
        "Add",
        [
            x,
            g.op(
                "Gather",
                [g.weight("embeddings.position_embeddings.weight", (n + 2, w), 0.02), pos_ids],
                axis=0,
            ),
        ],
    )
    x = g.op("Add", [x, g.weight("embeddings.token_type_embeddings.weight", (w,), 0.02)])
    x = g.layer_norm(x, w, "embeddings.LayerNorm")
    keep_f = g.op("Cast", [keep], to=TensorProto.FLOAT)
    mask = g.op("Mul", [g.op("Sub", [g.scalar(1.0), keep_f]), g.scalar(-10000.0)])
    mask = g.op("Reshape", [mask, g.const("mask_shape", np.array([1, 1, 1, n], np.int64))])
    for i in range(t.layers):
        x = g.post_ln_block(x, t, f"encoder.layer.{i}", mask)
    m3 = g.op("Reshape", [keep_f, g.const("keep_shape", np.array([1, n, 1], np.int64))])
    summed = g.op("ReduceSum", [g.op("Mul", [x, m3]), g.const("axes1", np.array([1], np.int64))], keepdims=0)
    pooled = g.op(
        "Div", [summed, g.op("ReduceSum", [m3, g.const("axes1b", np.array([1], np.int64))], keepdims=0)]
    )
    hidden = (w + s.embed_dim) // 2  # open_clip's hf_proj_type "mlp"
    h = g.linear(pooled, w, hidden, "proj.0", w**-0.5, bias=False)
    h = g.linear(g.gelu_tanh(h), hidden, s.embed_dim, "proj.2", hidden**-0.5, bias=False)
    g.l2_normalize(h, "embedding")
    return _model(
        g,
        "main_graph",
        [_vi("text", TensorProto.INT32, [1, n])],
        [_vi("embedding", TensorProto.FLOAT, [1, s.embed_dim])],
    )


def to_fp16_keep_io(model: onnx.ModelProto) -> onnx.ModelProto:
    """float32 weights -> float16 with float32 inputs/outputs (Casts at the edges), like keep_io_types=True."""
    graph = model.graph
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    casts = []
    for inp in graph.input:
        if inp.type.tensor_type.elem_type == TensorProto.FLOAT:
            half = inp.name + "_fp16"
            for node in graph.node:
                node.input[:] = [half if i == inp.name else i for i in node.input]
            casts.append(
                helper.make_node("Cast", [inp.name], [half], to=TensorProto.FLOAT16, name=half + "_cast")
            )
    for out in graph.output:
        half = out.name + "_fp16"
        for node in graph.node:
            node.output[:] = [half if o == out.name else o for o in node.output]
            node.input[:] = [half if i == out.name else i for i in node.input]
        graph.node.append(
            helper.make_node("Cast", [half], [out.name], to=TensorProto.FLOAT, name=out.name + "_cast")
        )
    for node in graph.node:  # Cast(to=float) inside the graph (the padding mask) now feeds fp16 ops
        if (
            node.op_type == "Cast"
            and node.attribute[0].i == TensorProto.FLOAT
            and node.output[0] not in {o.name for o in graph.output}
        ):
            node.attribute[0].i = TensorProto.FLOAT16
    for c in reversed(casts):
        graph.node.insert(0, c)
    return model


def write_family_files(
    out_dir: Path, name: str, size: str, seed: int, fp16: bool, sources: Path | None = None
) -> dict[str, str]:
    """``image.onnx`` + ``text.onnx`` (+ ``tokenizer.json``) of registry entry ``name``; returns notes."""
    from .hf_tokenizers import write_tokenizer

    spec = SPECS[name] if size == "full" else tiny_spec(SPECS[name])
    rng = np.random.default_rng([seed, 11])
    if spec.family == "siglip-tjs":
        models = {"image.onnx": siglip_vision(spec, rng), "text.onnx": siglip_text(spec, rng)}
    elif spec.family == "immich-xlmr":
        models = {"image.onnx": immich_vision(spec, rng), "text.onnx": xlmr_text(spec, rng)}
    else:
        v, t = spec.vision, spec.text
        shape = ClipShape(
            spec.image_size,
            spec.patch_size,
            v.width,
            v.layers,
            v.heads,
            t.width,
            t.layers,
            t.heads,
            spec.embed_dim,
        )
        models = {"image.onnx": vision_model(shape, rng), "text.onnx": text_model(shape, rng)}
    out_dir.mkdir(parents=True, exist_ok=True)
    for fname, model in models.items():
        if fp16:
            model = to_fp16_keep_io(model)
        onnx.checker.check_model(model)
        tmp = out_dir / (fname + ".tmp")
        tmp.write_bytes(model.SerializeToString())
        tmp.replace(out_dir / fname)
    notes = {"interface": spec.family}
    if spec.tokenizer:
        notes["tokenizer"] = write_tokenizer(spec.tokenizer, out_dir / "tokenizer.json", sources)
    return notes


__all__ = ["FULL", "SPECS", "FamilySpec", "TowerShape", "tiny_spec", "to_fp16_keep_io", "write_family_files"]
