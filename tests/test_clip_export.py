"""open_clip -> ONNX export parity (needs the export extra; run with .venv-export/bin/pytest -m export)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.export

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")

from retllm_desktop.models.clip.export import PARITY_TEXTS, export_clip, parity_images  # noqa: E402
from retllm_desktop.models.clip.tokenizer import ClipTokenizer  # noqa: E402
from retllm_desktop.models.clip.towers import ClipConfig, ClipModel, preprocess_image  # noqa: E402

ARCH = "ViT-S-32"  # smallest plain ViT + OpenAI-BPE text tower in open_clip's model_configs


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    result = export_clip(ARCH, None, out, check=True, verbose=False)
    model, _, preprocess = open_clip.create_model_and_transforms(ARCH, pretrained=None)
    return result, preprocess


def test_export_layout_and_config(exported):
    result, _ = exported
    d = result["model_dir"]
    assert d.name == f"{ARCH}-random" and d.parent.name == "clip"
    for f in ("clip.json", "image.onnx", "text.onnx", "bpe_simple_vocab_16e6.txt.gz"):
        assert (d / f).is_file(), f
    cfg = ClipConfig.load(d)
    assert (cfg.embed_dim, cfg.image_size, cfg.context_length) == (384, 224, 77)
    assert cfg.resize_mode == "shortest" and cfg.interpolation == "bicubic"
    np.testing.assert_allclose(cfg.mean, open_clip.OPENAI_DATASET_MEAN)
    assert json.loads((d / "clip.json").read_text())["source"]["arch"] == ARCH


def test_onnx_matches_torch(exported):
    result, _ = exported
    assert result["image_max_abs_diff"] < 1e-4, result
    assert result["text_max_abs_diff"] < 1e-4, result
    assert result["image_raw_max_abs_diff"] < 1e-3, result
    assert result["tokenizer_equal"] and result["ok"]


def test_numpy_preprocess_matches_open_clip(exported):
    result, preprocess = exported
    cfg = ClipConfig.load(result["model_dir"])
    from PIL import Image

    imgs = parity_images(6, seed=1) + [
        Image.new("RGB", (1, 500), (10, 200, 30)),
        parity_images(1, seed=2)[0].convert("L"),
        parity_images(1, seed=3)[0].resize((3000, 2000)),
    ]
    for img in imgs:
        ref = preprocess(img).numpy()
        ours = preprocess_image(img, cfg)
        assert ours.shape == ref.shape
        assert np.abs(ours - ref).max() < 1e-5, img.size
    assert result["preprocess_max_abs_diff"] < 1e-5


def test_dynamic_batch_and_tokenizer(exported):
    result, preprocess = exported
    with ClipModel(result["model_dir"], threads=2) as m:
        pix = np.stack([m.preprocess(img) for img in parity_images(3, seed=4)])
        np.testing.assert_allclose(m.encode_images(pix[:1]), m.encode_images(pix)[:1], atol=1e-5)
        ids = open_clip.get_tokenizer(ARCH)(PARITY_TEXTS).numpy()
        np.testing.assert_array_equal(m.tokenizer(PARITY_TEXTS), ids)
        np.testing.assert_array_equal(ClipTokenizer()(PARITY_TEXTS), ids)
