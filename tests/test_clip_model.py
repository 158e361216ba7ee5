"""ClipModel end to end on the synthetic tiny model (real onnxruntime sessions, real files)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retllm_desktop.devtools.synthetic_clip import OPENAI_MEAN, OPENAI_STD, write_synthetic_clip
from retllm_desktop.errors import ModelLoadError, ModelNotFoundError
from retllm_desktop.models.clip.towers import (
    ClipConfig,
    ClipModel,
    find_clip_model,
    preprocess_image,
    quantize_dynamic_int8,
    resize_shortest_size,
)

S = 64  # tiny image size


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models")
    write_synthetic_clip(out, size="tiny", seed=0)
    return out


@pytest.fixture(scope="module")
def model_dir(models_dir) -> Path:
    return models_dir / "clip" / "synthetic-tiny"


@pytest.fixture(scope="module")
def model(model_dir):
    with ClipModel(model_dir, threads=1) as m:
        yield m


@pytest.fixture
def model_copy(model_dir, tmp_path) -> Path:
    dst = tmp_path / "clip" / "copy"
    shutil.copytree(model_dir, dst)
    return dst


def _rand_image(w: int, h: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
    return img if mode == "RGB" else img.convert(mode)


def _normalize_ref(rgb: np.ndarray) -> np.ndarray:
    x = rgb.astype(np.float32) / np.float32(255)
    x = (x - np.array(OPENAI_MEAN, np.float32)) / np.array(OPENAI_STD, np.float32)
    return x.transpose(2, 0, 1)


# ------------------------------------------------------------------------------------------ layout


def test_written_layout_and_config(model_dir):
    assert sorted(p.name for p in model_dir.iterdir()) == ["clip.json", "image.onnx", "text.onnx"]
    cfg = ClipConfig.load(model_dir)
    assert (cfg.name, cfg.embed_dim, cfg.image_size, cfg.context_length) == ("synthetic-tiny", 64, S, 77)
    assert cfg.resize_mode == "shortest" and cfg.interpolation == "bicubic"
    assert cfg.mean == OPENAI_MEAN and cfg.std == OPENAI_STD
    assert (model_dir / "image.onnx").stat().st_size < 1_000_000
    assert (model_dir / "text.onnx").stat().st_size > 49408 * 64 * 4  # full token table


def test_synthetic_is_deterministic_per_seed(tmp_path, model_dir):
    a = write_synthetic_clip(tmp_path / "a", seed=0, check=False)
    b = write_synthetic_clip(tmp_path / "b", seed=1, check=False)
    for f in ("image.onnx", "text.onnx"):
        assert (a / f).read_bytes() == (model_dir / f).read_bytes()
        assert (b / f).read_bytes() != (model_dir / f).read_bytes()


# ---------------------------------------------------------------------------------------- encoding


def test_lazy_sessions_and_properties(model_dir):
    m = ClipModel(model_dir, threads=1)
    assert m._image_session is None and m._text_session is None
    assert m.name == "synthetic-tiny" and m.config.embed_dim == 64 and m.embed_dim == 64
    m.encode_texts(["x"])
    assert m._text_session is not None and m._image_session is None
    m.close()
    assert m._text_session is None


def test_image_embeddings_shape_norm_determinism(model, model_dir):
    batch = np.stack([model.preprocess(_rand_image(90, 50, seed=i)) for i in range(5)])
    assert batch.shape == (5, 3, S, S) and batch.dtype == np.float32
    emb = model.encode_images(batch)
    assert emb.shape == (5, 64) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(emb).all()
    # a fresh model object gives the same vectors; single == batched
    with ClipModel(model_dir, threads=2) as other:
        np.testing.assert_allclose(other.encode_images(batch), emb, atol=1e-5)
    for i in range(5):
        np.testing.assert_allclose(model.encode_images(batch[i : i + 1])[0], emb[i], atol=1e-5)
    np.testing.assert_allclose(model.encode_images(batch[2]), emb[2:3], atol=1e-5)  # (3,S,S) accepted
    # different images -> different vectors
    assert not np.allclose(emb[0], emb[1], atol=1e-4)
    assert model.encode_images(np.zeros((0, 3, S, S), np.float32)).shape == (0, 64)


def test_bad_pixel_batch_shape(model):
    with pytest.raises(ValueError, match="3, 64, 64"):
        model.encode_images(np.zeros((1, 3, 32, 32), np.float32))


def test_text_embeddings(model):
    texts = ["a photo of a dog", "a photo of a cat", "sunset over the sea", "a photo of a dog"]
    emb = model.encode_texts(texts)
    assert emb.shape == (4, 64) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(emb[0], emb[3], atol=1e-6)
    assert not np.allclose(emb[0], emb[1], atol=1e-4)
    for i, t in enumerate(texts):
        np.testing.assert_allclose(model.encode_texts(t)[0], emb[i], atol=1e-5)
    assert model.encode_texts([]).shape == (0, 64)


def test_encode_image_paths(model, tmp_path):
    paths = []
    for i, (w, h) in enumerate([(80, 60), (64, 64), (40, 100)]):
        p = tmp_path / f"img{i}.png"
        _rand_image(w, h, seed=10 + i).save(p)
        paths.append(p)
    emb = model.encode_image_paths(paths, batch_size=2)
    ref = model.encode_images(np.stack([model.preprocess(Image.open(p)) for p in paths]))
    np.testing.assert_allclose(emb, ref, atol=1e-5)
    assert model.encode_image_paths([]).shape == (0, 64)


# ------------------------------------------------------------------------------------ preprocessing


def test_resize_rule_matches_torchvision_truncation():
    # torchvision Resize(int): long side = int(size * long / short), truncated, not rounded.
    assert resize_shortest_size(80, 50, 64) == (102, 64)
    assert resize_shortest_size(97, 63, 64) == (98, 64)  # 98.54 -> 98
    assert resize_shortest_size(63, 97, 64) == (64, 98)
    assert resize_shortest_size(64, 64, 64) == (64, 64)
    assert resize_shortest_size(224, 225, 224) == (224, 225)


def test_preprocess_square_is_plain_normalize(model):
    img = _rand_image(S, S, seed=3)
    np.testing.assert_array_equal(model.preprocess(img), _normalize_ref(np.asarray(img)))


@pytest.mark.parametrize(
    ("w", "h", "resized", "box"),
    [
        (80, 50, (102, 64), (19, 0, 83, 64)),  # landscape: crop left = round(38 / 2) = 19
        (50, 81, (64, 103), (0, 20, 64, 84)),  # portrait: top = int(round(39 / 2)) = round(19.5) = 20
        (65, 64, (65, 64), (0, 0, 64, 64)),  # no resize, crop offset round(0.5) = 0 (banker's)
        (64, 69, (64, 69), (0, 2, 64, 66)),  # no resize, top = round(2.5) = 2 (banker's)
        (200, 67, (191, 64), (64, 0, 128, 64)),  # 64 * 200 / 67 = 191.04 -> 191, left = round(63.5) = 64
    ],
)
def test_preprocess_non_square_hand_reference(model, w, h, resized, box):
    img = _rand_image(w, h, seed=w * h)
    ref = img if resized == (w, h) else img.resize(resized, Image.Resampling.BICUBIC)
    ref = np.asarray(ref.crop(box))
    out = model.preprocess(img)
    assert out.shape == (3, S, S) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, _normalize_ref(ref))


def test_preprocess_converts_modes(model):
    rgb = _rand_image(70, 90, seed=5)
    gray = rgb.convert("L")
    np.testing.assert_array_equal(model.preprocess(gray), model.preprocess(gray.convert("RGB")))
    assert model.preprocess(rgb.convert("RGBA")).shape == (3, S, S)


def test_preprocess_squash_and_longest():
    img = _rand_image(100, 50, seed=7)
    squash = ClipConfig(name="t", embed_dim=4, image_size=32, resize_mode="squash")
    ref = np.asarray(img.resize((32, 32), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(preprocess_image(img, squash), _normalize_ref(ref))

    longest = ClipConfig(name="t", embed_dim=4, image_size=32, resize_mode="longest")
    out = preprocess_image(img, longest)  # -> 32 x 16 content, padded 8 rows top and bottom
    content = np.asarray(img.resize((32, 16), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(out[:, 8:24, :], _normalize_ref(content))
    pad_value = -np.array(OPENAI_MEAN, np.float32) / np.array(OPENAI_STD, np.float32)
    np.testing.assert_allclose(
        out[:, :8, :], np.broadcast_to(pad_value[:, None, None], (3, 8, 32)), rtol=1e-6
    )
    np.testing.assert_allclose(
        out[:, 24:, :], np.broadcast_to(pad_value[:, None, None], (3, 8, 32)), rtol=1e-6
    )


# ------------------------------------------------------------------------------------------ errors


def test_missing_model_dir_and_files(tmp_path, model_copy):
    with pytest.raises(ModelNotFoundError, match="synthetic_models"):
        ClipModel(tmp_path / "nowhere")
    (model_copy / "text.onnx").unlink()
    with pytest.raises(ModelNotFoundError, match=r"text\.onnx") as exc:
        ClipModel(model_copy)
    assert "retllm-desktop models download" in str(exc.value)
    (model_copy / "clip.json").unlink()
    with pytest.raises(ModelNotFoundError, match=r"clip\.json"):
        ClipModel(model_copy)
    # quantized=True without int8 files names the int8 file
    src = tmp_path / "q"
    write_synthetic_clip(src, check=False)
    with pytest.raises(ModelNotFoundError, match=r"image_int8\.onnx"):
        ClipModel(src / "clip" / "synthetic-tiny", quantized=True)


def test_corrupt_onnx_raises_model_load_error(model_copy):
    (model_copy / "image.onnx").write_bytes(b"this is not a protobuf" * 10)
    m = ClipModel(model_copy)  # lazy: constructing does not load
    with pytest.raises(ModelLoadError, match=r"image\.onnx"):
        m.encode_images(np.zeros((1, 3, S, S), np.float32))
    assert m.encode_texts(["still works"]).shape == (1, 64)  # the other tower is independent


def test_config_mismatch_raises_model_load_error(model_copy):
    cfg = json.loads((model_copy / "clip.json").read_text())
    cfg["embed_dim"] = 128
    (model_copy / "clip.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="embed_dim"):
        ClipModel(model_copy).encode_texts(["a"])
    cfg["embed_dim"], cfg["image_size"] = 64, 224
    (model_copy / "clip.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="224"):
        ClipModel(model_copy).load()
    (model_copy / "clip.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"clip\.json"):
        ClipModel(model_copy)
    (model_copy / "clip.json").write_text(json.dumps({"name": "x", "image_size": 64}))
    with pytest.raises(ModelLoadError, match="embed_dim"):
        ClipModel(model_copy)


def test_find_clip_model(tmp_path, models_dir):
    with pytest.raises(ModelNotFoundError, match="no CLIP model found"):
        find_clip_model(tmp_path)
    assert find_clip_model(models_dir) == models_dir / "clip" / "synthetic-tiny"
    assert find_clip_model(models_dir, "synthetic-tiny") == models_dir / "clip" / "synthetic-tiny"
    with pytest.raises(ModelNotFoundError, match="'ViT-B-32'.*installed: synthetic-tiny"):
        find_clip_model(models_dir, "ViT-B-32")
    # first sorted wins; dirs without clip.json are ignored
    for name in ("b-model", "a-model"):
        shutil.copytree(models_dir / "clip" / "synthetic-tiny", tmp_path / "clip" / name)
    (tmp_path / "clip" / "0-empty").mkdir()
    assert find_clip_model(tmp_path).name == "a-model"


# -------------------------------------------------------------------------------------------- int8


def test_int8_quantization_correlates(model_copy):
    written = quantize_dynamic_int8(model_copy)
    assert {p.name for p in written.values()} == {"image_int8.onnx", "text_int8.onnx"}
    assert written["text"].stat().st_size < (model_copy / "text.onnx").stat().st_size / 2
    assert ClipConfig.load(model_copy).quantized_image_model == "image_int8.onnx"
    fp = ClipModel(model_copy, threads=1)
    q = ClipModel(model_copy, threads=1, quantized=True)
    batch = np.stack([fp.preprocess(_rand_image(70, 50, seed=100 + i)) for i in range(6)])
    texts = ["a dog", "a red car in the snow", "birthday cake", "mountains at night"]
    img_cos = (fp.encode_images(batch) * q.encode_images(batch)).sum(1)
    txt_cos = (fp.encode_texts(texts) * q.encode_texts(texts)).sum(1)
    assert img_cos.mean() > 0.9 and txt_cos.mean() > 0.9, (img_cos, txt_cos)
    np.testing.assert_allclose(np.linalg.norm(q.encode_texts(texts), axis=1), 1.0, atol=1e-5)
