"""The app on replicas of every registry model: random weights, real formats (issue 9).

Replicas are generated once per run into the gitignored ``.cache/replicas/v<generator version>/`` (tiny
sizes). The MLLM replicas need llama.cpp's vocab files (``make replica-sources``); without them those
tests skip, unless ``RETLLM_REQUIRE_REPLICAS=1`` (set by ``make test``), where they fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from retllm_desktop.devtools.replicas import GENERATOR_VERSION, registry_names, write_replica
from retllm_desktop.devtools.replicas.sources import REPO_ROOT, default_sources_dir, have_sources

CACHE = (
    Path(os.environ.get("RETLLM_REPLICA_CACHE") or REPO_ROOT / ".cache" / "replicas")
    / f"v{GENERATOR_VERSION}"
)
CLIP_NAMES = registry_names("clip")
MLLM_NAMES = registry_names("mllm")


def replica(name: str) -> Path:
    """The tiny replica's model folder (written on first use in this cache, reused after)."""
    return write_replica(name, CACHE, "tiny")


@pytest.fixture(scope="session")
def mllm_sources() -> None:
    if not have_sources():
        msg = f"llama.cpp vocab files missing in {default_sources_dir()} (run `make replica-sources`)"
        if os.environ.get("RETLLM_REQUIRE_REPLICAS") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


# ------------------------------------------------------------------------------------------------ CLIP
# The interface of Xenova/clip-vit-*'s onnx/{vision,text}_model[_quantized].onnx: optimum's ViTOnnxConfig /
# CLIPTextOnnxConfig inputs, transformers.js's scripts/extra/clip.py outputs (projected embeddings only).
XENOVA_IMAGE_IO = ([("pixel_values", 1, ["batch_size", "num_channels", "height", "width"])], "image_embeds")
XENOVA_TEXT_IO = ([("input_ids", 7, ["batch_size", "sequence_length"])], "text_embeds")


def _io(path: Path) -> tuple[list[tuple[str, int, list]], list[tuple[str, int, list]]]:
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph

    def desc(v) -> tuple[str, int, list]:
        t = v.type.tensor_type
        return v.name, t.elem_type, [d.dim_param or d.dim_value for d in t.shape.dim]

    return [desc(v) for v in g.input], [desc(v) for v in g.output]


@pytest.mark.parametrize("name", CLIP_NAMES)
def test_clip_replica_has_the_xenova_interface(name):
    from retllm_desktop.models.hub.registry import load_registry

    entry = load_registry().get(name)
    d = replica(name)
    dim = entry.config["embed_dim"]
    for fname, (inputs, out_name) in (("image.onnx", XENOVA_IMAGE_IO), ("text.onnx", XENOVA_TEXT_IO)):
        got_in, got_out = _io(d / fname)
        assert got_in == inputs
        assert got_out == [(out_name, 1, ["batch_size", dim])]
    quantized = "_quantized" in entry.files[0].path
    import onnx

    ops = {n.op_type for n in onnx.load(str(d / "image.onnx")).graph.node}
    text_ops = {n.op_type for n in onnx.load(str(d / "text.onnx")).graph.node}
    if quantized:  # transformers.js Q8: uint8 ConvInteger where there is a Conv, int8 MatMulInteger elsewhere
        assert {"ConvInteger", "MatMulInteger"} <= ops and "MatMulInteger" in text_ops
    else:
        assert "Conv" in ops and not any("Integer" in o for o in ops | text_ops)


def _ort_embed(path: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, feed)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.mark.parametrize("name", CLIP_NAMES)
def test_clip_replica_through_clipmodel_matches_onnxruntime(name, tmp_path):
    """ClipModel fp32 and int8 (the registry's int8 file, or our own int8 of an fp32 file) vs a bare session."""
    import shutil

    from PIL import Image

    from retllm_desktop.models.clip.towers import ClipModel, quantize_dynamic_int8

    d = tmp_path / name
    shutil.copytree(replica(name), d)
    rng = np.random.default_rng(5)
    photos = [Image.fromarray(rng.integers(0, 256, (90 + 20 * i, 120, 3), dtype=np.uint8)) for i in range(3)]
    texts = ["a dog on the beach", "two red cars at night", "x"]
    variants = [False]
    if "_int8" not in name:
        quantize_dynamic_int8(d)
        variants.append(True)
    for quantized in variants:
        with ClipModel(d, threads=1, quantized=quantized) as model:
            pix = np.stack([model.preprocess(p) for p in photos])
            got_img = model.encode_images(pix)
            got_txt = model.encode_texts(texts)
            ids = model.tokenizer(texts)
            ref_img = _ort_embed(model.image_path, {"pixel_values": pix})
            ref_txt = _ort_embed(model.text_path, {"input_ids": ids.astype(np.int64)})
        assert got_img.shape == (3, model.embed_dim) and got_txt.shape == (3, model.embed_dim)
        np.testing.assert_allclose(got_img, ref_img, atol=1e-5)
        np.testing.assert_allclose(got_txt, ref_txt, atol=1e-5)
        # distinct inputs give distinct unit vectors (the towers really use their input)
        assert np.allclose(np.linalg.norm(got_img, axis=1), 1, atol=1e-5)
        assert np.abs(got_img[0] - got_img[1]).max() > 1e-3 and np.abs(got_txt[0] - got_txt[1]).max() > 1e-3
