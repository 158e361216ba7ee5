"""One ``Model`` shape (load / loaded / close) for CLIP, OCR, the LLM and the faces: nothing is read on construction,
``load()`` reads the weights, ``close()`` frees them; the library closes every model it opened."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from retllm_desktop.models.base import Model


def _lifecycle(model: Model) -> None:
    assert isinstance(model, Model)
    assert not model.loaded, "constructing a model must not read its weights"
    model.load()
    assert model.loaded
    model.close()
    assert not model.loaded
    model.close()  # twice is fine


def test_clip_towers_follow_the_model_shape(clip_models_dir: Path) -> None:
    from retllm_desktop.models.clip.towers import ClipModel, find_clip_model

    clip = ClipModel(find_clip_model(clip_models_dir), threads=1)
    _lifecycle(clip)
    clip.encode_texts(["a red car"])  # first use loads lazily, after a close too
    assert clip.loaded
    clip.close()


def test_ocr_follows_the_model_shape() -> None:
    from retllm_desktop.models.ocr import OcrModel

    _lifecycle(OcrModel(threads=1))


def test_the_reranking_llm_follows_the_model_shape(full_models_dir: Path) -> None:
    from retllm_desktop.errors import RetllmError
    from retllm_desktop.models.llm.scorer import MllmScorer, find_mllm_model

    scorer = MllmScorer(find_mllm_model(full_models_dir), threads=1)
    _lifecycle(scorer)
    with pytest.raises(RetllmError, match="closed"):  # a closed scorer stays closed (its caches are gone)
        scorer.load()


def test_the_face_model_follows_the_model_shape() -> None:
    from retllm_desktop.models.faces import FaceModel

    pytest.importorskip("dlib")
    _lifecycle(FaceModel())


def test_the_library_closes_every_model_it_opened(
    tmp_path: Path, full_models_dir: Path, photo_tree: Path
) -> None:
    from retllm_desktop.library import Library

    lib = Library(tmp_path / "lib", models_dir=full_models_dir, threads=1, read_text=False)
    lib.index_roots([str(photo_tree)])
    models = [lib.clip, lib.mllm, lib.ocr, *([lib.faces_model] if importlib.util.find_spec("dlib") else [])]
    for m in models:
        m.load()
    assert all(m.loaded for m in models)
    lib.close()
    assert not any(m.loaded for m in models)
