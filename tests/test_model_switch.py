"""Switching the CLIP model keeps the old embeddings; search uses a complete model until the new one is filled."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from retllm_desktop.library import Library

from .conftest import make_photo


def _named_clip(models: Path, name: str, seed: int) -> Path:
    """A tiny synthetic CLIP under <models>/clip/<name>/ whose clip.json name (the embeddings key) is ``name``."""
    from retllm_desktop.devtools.synthetic_clip import write_synthetic_clip

    d = write_synthetic_clip(models / f".tmp-{name}", "tiny", seed=seed, check=False)
    dest = models / "clip" / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    d.rename(dest)
    cfg = json.loads((dest / "clip.json").read_text())
    cfg["name"] = name
    (dest / "clip.json").write_text(json.dumps(cfg))
    return dest


@pytest.fixture(scope="module")
def two_models(tmp_path_factory) -> Path:
    models = tmp_path_factory.mktemp("models-two")
    _named_clip(models, "clip-a", seed=0)
    _named_clip(models, "clip-b", seed=1)
    return models


def _open(lib_dir: Path, models: Path, clip: str) -> Library:
    return Library(lib_dir, models_dir=models, clip_model=clip, threads=1, decode_workers=1, batch_size=2)


def _counts(lib: Library) -> dict[str, int]:
    """Stored vectors per model name (keys are ``name#fingerprint``; one model per name here)."""
    from retllm_desktop.models.clip.identity import display_name

    return {display_name(k): n for k, n in lib.catalog.embedding_models().items()}


def _top(lib: Library, text: str = "a red square") -> list[tuple[str, float]]:
    (update,) = list(lib.search(text, top=8))
    return [(r.path, round(r.score, 5)) for r in update.results]


def test_switching_keeps_old_embeddings_and_searches_the_complete_model(tmp_path, two_models):
    photos = tmp_path / "photos"
    for i in range(6):
        make_photo(photos / f"p{i}.jpg", seed=100 + i)
    lib_dir = tmp_path / "lib"
    with _open(lib_dir, two_models, "clip-a") as lib:
        lib.index_roots([str(photos)])
        assert lib.search_model == "clip-a"
        before = _top(lib)

    with _open(lib_dir, two_models, "clip-b") as lib:
        # switched, nothing embedded with clip-b yet: clip-a's vectors are kept and used
        assert _counts(lib) == {"clip-a": 6}
        assert lib.search_model == "clip-a"
        assert _top(lib) == before
        st = lib.status()
        assert (st.clip_model, st.search_model, st.missing_embeddings) == ("clip-b", "clip-a", 6)

        # fill clip-b, interrupted after the first batch: still incomplete -> still clip-a
        cancel = threading.Event()

        def progress(stage: str, done: int, total: int) -> None:
            if stage == "embedding" and done >= 2:
                cancel.set()

        summary = lib.index_roots(progress=progress, cancel=cancel)
        assert summary.cancelled
        counts = _counts(lib)
        assert counts["clip-a"] == 6 and 0 < counts["clip-b"] < 6
        assert lib.search_model == "clip-a" and _top(lib) == before

        # finish filling: now the selected model is complete and used; clip-a's vectors are still stored
        lib.index_roots()
        assert _counts(lib) == {"clip-a": 6, "clip-b": 6}
        assert lib.search_model == "clip-b"
        after = _top(lib)
        assert after != before
        # the scores are clip-b's: text vector . stored clip-b image vectors
        q = lib.clip.encode_texts(["a red square"])[0]
        photo = lib.catalog.photo_by_path(after[0][0])
        assert np.isclose(float(q @ lib.catalog.embedding(photo.id, lib.clip.key)), after[0][1], atol=1e-4)
        assert lib.status().search_model == "clip-b"

    # switching back needs no re-embedding at all
    with _open(lib_dir, two_models, "clip-a") as lib:
        assert lib.search_model == "clip-a"
        assert _top(lib) == before
        summary = lib.index_roots()
        assert summary.added == summary.updated == 0


def test_new_photos_go_to_the_selected_model(tmp_path, two_models):
    photos = tmp_path / "photos"
    for i in range(3):
        make_photo(photos / f"p{i}.jpg", seed=200 + i)
    with _open(tmp_path / "lib", two_models, "clip-b") as lib:
        lib.index_roots([str(photos)])
        assert _counts(lib) == {"clip-b": 3}
        assert lib.search_model == "clip-b"


def test_status_says_how_far_a_switch_is(tmp_path, two_models, capsys):
    from retllm_desktop.cli import main

    photos = tmp_path / "photos"
    for i in range(4):
        make_photo(photos / f"p{i}.jpg", seed=300 + i)
    lib_dir = tmp_path / "lib"
    with _open(lib_dir, two_models, "clip-a") as lib:
        lib.index_roots([str(photos)])
    common = ["--library", str(lib_dir), "--models", str(two_models), "--clip-model", "clip-b"]
    assert main(["status", *common]) == 0
    out = capsys.readouterr().out
    assert "switching the search model to clip-b: 0 of 4 photos ready (0%); search uses clip-a" in out
    with _open(lib_dir, two_models, "clip-b") as lib:
        lib.index_roots()
    assert main(["status", *common]) == 0
    assert "switching" not in capsys.readouterr().out


def test_a_switch_that_would_not_fit_on_disk_starts_nothing(tmp_path, two_models, monkeypatch):
    """A full disk cannot be made here on purpose; the free-space figure is the one thing replaced."""
    import shutil

    from retllm_desktop import model_switch

    photos = tmp_path / "photos"
    for i in range(3):
        make_photo(photos / f"p{i}.jpg", seed=400 + i)
    lib_dir = tmp_path / "lib"
    with _open(lib_dir, two_models, "clip-a") as lib:
        lib.index_roots([str(photos)])
        before = _top(lib)
    real = shutil.disk_usage(lib_dir)
    monkeypatch.setattr(model_switch.shutil, "disk_usage", lambda p: real._replace(free=1000))
    with _open(lib_dir, two_models, "clip-b") as lib:
        with pytest.raises(model_switch.NotEnoughSpaceError, match="not enough free disk space.*clip-b"):
            lib.index_roots()
        assert _counts(lib) == {"clip-a": 3}  # nothing of clip-b was written
        assert lib.search_model == "clip-a" and _top(lib) == before  # search is unaffected
    monkeypatch.undo()
    with _open(lib_dir, two_models, "clip-b") as lib:
        lib.index_roots()
        assert _counts(lib) == {"clip-a": 3, "clip-b": 3}


def test_space_estimate_grows_with_photos_and_width():
    from retllm_desktop.model_switch import space_needed

    assert space_needed(1000, 768) > space_needed(1000, 512) > space_needed(10, 512)
    assert space_needed(100_000, 768) > 100_000 * 768 * 4  # at least the raw vectors
