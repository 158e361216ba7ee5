"""A CLIP model's identity is its content: a different model under an old name is a new model, never a
traceback; vectors stored before fingerprints existed are adopted when they fit."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from retllm_desktop.devtools import synthetic_clip
from retllm_desktop.library import Library
from retllm_desktop.models.clip.identity import display_name

from .conftest import make_photo
from .test_cli import run


def _clip_as(models: Path, name: str, *, seed: int = 0, dim: int = 64) -> Path:
    """A tiny synthetic CLIP (``dim``-sized embeddings) installed as <models>/clip/<name>, replacing what was there."""
    size = f"tiny{dim}"
    synthetic_clip.SIZES.setdefault(size, dataclasses.replace(synthetic_clip.SIZES["tiny"], embed_dim=dim))
    d = synthetic_clip.write_synthetic_clip(
        models / f".tmp-{name}-{seed}-{dim}", size, seed=seed, check=False
    )
    dest = models / "clip" / name
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(d), dest)
    cfg = json.loads((dest / "clip.json").read_text())
    cfg["name"] = name
    (dest / "clip.json").write_text(json.dumps(cfg))
    return dest


def _by_name(lib: Library) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for key, n in lib.catalog.embedding_models().items():
        out.setdefault(display_name(key), []).append(n)
    return {k: sorted(v) for k, v in out.items()}


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    for i in range(6):
        make_photo(tmp_path / "photos" / f"p{i}.jpg", seed=300 + i)
    return tmp_path / "photos"


def test_a_model_of_another_size_under_the_old_name(tmp_path: Path, photos: Path) -> None:
    models = tmp_path / "models"
    _clip_as(models, "m", dim=64)
    args = ["--library", str(tmp_path / "lib"), "--models", str(models), "--threads", "1"]
    assert run("index", *args, str(photos)).returncode == 0
    _clip_as(models, "m", dim=32)  # another model copied over the old folder

    r = run("status", *args)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    r = run("search", *args, "a red square")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "run `retllm-desktop index`" in r.stdout
    r = run("rebuild", *args)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    r = run("index", *args, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["updated"] == 6  # embedded with the new model, nothing lost
    with Library(tmp_path / "lib", models_dir=models, threads=1) as lib:
        assert _by_name(lib) == {"m": [6, 6]}  # the old vectors are kept beside the new ones
        assert lib.clip.embed_dim == 32 and len(lib.index) == 6
        (update,) = list(lib.search("a red square", top=3))
        assert len(update.results) == 3
        q = lib.clip.encode_texts(["a red square"])[0]
        top = update.results[0]
        assert np.isclose(float(q @ lib.catalog.embedding(top.photo.id, lib.clip.key)), top.score, atol=1e-4)


def test_other_weights_of_the_same_size_are_a_new_model(tmp_path: Path, photos: Path) -> None:
    models = tmp_path / "models"
    _clip_as(models, "m", seed=0)
    with Library(tmp_path / "lib", models_dir=models, threads=1) as lib:
        lib.index_roots([str(photos)])
        old_key = lib.clip.key
    _clip_as(models, "m", seed=1)  # same name, same size, other weights: vectors must not be mixed
    with Library(tmp_path / "lib", models_dir=models, threads=1) as lib:
        assert lib.clip.key != old_key and lib.status().missing_embeddings == 6
        summary = lib.index_roots()
        assert summary.updated == 6
        assert lib.catalog.embedding_models() == {old_key: 6, lib.clip.key: 6}


def test_vectors_stored_under_the_plain_name_are_adopted(tmp_path: Path, photos: Path) -> None:
    models = tmp_path / "models"
    _clip_as(models, "m")
    with Library(tmp_path / "lib", models_dir=models, threads=1) as lib:
        lib.index_roots([str(photos)])
        key = lib.clip.key
        (before,) = list(lib.search("a red square", top=6))
        lib.catalog.rename_embedding_model(key, "m")  # as an older version stored them
    for f in (tmp_path / "lib" / "index").iterdir():
        f.rename(f.with_name(f.name.replace(key.replace("#", "_"), "m")))
    with Library(tmp_path / "lib", models_dir=models, threads=1) as lib:
        (after,) = list(lib.search("a red square", top=6))
        assert [(r.path, round(r.score, 5)) for r in after.results] == [
            (r.path, round(r.score, 5)) for r in before.results
        ]
        assert lib.catalog.embedding_models() == {"m": 6}  # a reader uses them in place, writes nothing
        assert lib.index_roots().unchanged == 6  # the writer moves them to the key: nothing re-embedded
        assert lib.catalog.embedding_models() == {key: 6}
        (again,) = list(lib.search("a red square", top=6))
        assert [r.path for r in again.results] == [r.path for r in before.results]

    # plain-name vectors of another size are another model's: kept, and this model fills its own key
    with Library(tmp_path / "lib", models_dir=models, threads=1) as lib:
        lib.catalog.rename_embedding_model(key, "m")
    _clip_as(models, "m", dim=32)
    with Library(tmp_path / "lib", models_dir=models, threads=1) as lib:
        assert lib.status().missing_embeddings == 6
        assert lib.index_roots().updated == 6
        assert lib.catalog.embedding_models() == {"m": 6, lib.clip.key: 6}
