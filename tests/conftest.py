"""Shared fixtures: synthetic models (generated, never downloaded), generated photo sets, libraries."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Tests never see the user's real library or models.
os.environ.pop("RETLLM_LIBRARY", None)
os.environ.pop("RETLLM_MODELS", None)
# Diagnostics of the CLI subprocesses the tests start go to a throwaway log, not the user's.
os.environ["RETLLM_LOG"] = os.path.join(
    os.environ.get("TMPDIR", "/tmp"), f"retllm-test-{os.getpid()}", "retllm-desktop.log"
)


@pytest.fixture(scope="session")
def clip_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with only the tiny random-weight CLIP (fast; for engine tests)."""
    from retllm_desktop.devtools.synthetic_clip import write_synthetic_clip

    out = tmp_path_factory.mktemp("models-clip")
    write_synthetic_clip(out, "tiny", seed=0)
    return out


def make_photo(
    path: Path, seed: int, size: tuple[int, int] = (160, 120), fmt: str | None = None, **save_kw
) -> Path:
    """A small photo with random coloured shapes (distinct embeddings per seed)."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    img = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x0, y0 = rng.randrange(size[0]), rng.randrange(size[1])
        x1, y1 = x0 + rng.randrange(10, size[0]), y0 + rng.randrange(10, size[1])
        colour = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt, **save_kw)
    return path


@pytest.fixture
def photo_tree(tmp_path: Path) -> Path:
    """Twelve JPEGs in two albums."""
    root = tmp_path / "photos"
    for i in range(12):
        make_photo(root / ("album-a" if i % 2 else "album-b") / f"img{i:02d}.jpg", seed=i)
    return root


@pytest.fixture
def library(tmp_path: Path, clip_models_dir: Path) -> Iterator:
    from retllm_desktop.library import Library

    lib = Library(tmp_path / "lib", models_dir=clip_models_dir, threads=1, decode_workers=2, batch_size=4)
    yield lib
    lib.close()


@pytest.fixture(scope="session")
def full_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny random-weight CLIP + tiny GGUF multimodal LLM pair: the whole two-stage pipeline."""
    from retllm_desktop.devtools.synthetic_clip import write_synthetic_clip
    from retllm_desktop.devtools.synthetic_mllm import write_synthetic_mllm

    out = tmp_path_factory.mktemp("models-full")
    write_synthetic_clip(out, "tiny", seed=0)
    write_synthetic_mllm(out, "tiny", seed=0)
    return out
