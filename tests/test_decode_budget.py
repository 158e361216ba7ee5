"""Decoding is bounded by one memory budget shared by all decoding threads, not by a per-image pixel count:
a small file that decodes huge is refused with a reason, and parallel workers wait for each other."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from retllm_desktop import memory_budget
from retllm_desktop.imaging import decode_peak_bytes, load_photo
from retllm_desktop.library import Library

from .conftest import make_photo

MB = 1024 * 1024


@pytest.fixture
def budget():
    saved = memory_budget._shared
    yield memory_budget.set_decode_budget
    memory_budget._shared = saved


def _flat_png(path: Path, side: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (side, side), (40, 90, 160)).save(path, optimize=False, compress_level=1)
    return path


def test_a_small_file_that_decodes_huge_is_refused_with_a_reason(tmp_path, clip_models_dir, budget):
    budget(64 * MB)
    photos = tmp_path / "photos"
    big = _flat_png(photos / "bomb-ish.png", 4000)  # 16 MP: far under the 300 MP guard, a small file
    assert big.stat().st_size < 2 * MB
    for i in range(3):
        make_photo(photos / f"ok{i}.jpg", seed=40 + i)
    with Library(tmp_path / "lib", models_dir=clip_models_dir, threads=1, decode_workers=2) as lib:
        s = lib.index_roots([str(photos)])
        assert (s.added, s.failed) == (3, 1)
        (failure,) = lib.catalog.failures()
        assert (
            failure.path == str(big) and "too large to decode" in failure.reason and "64 MB" in failure.reason
        )


def test_parallel_decoders_share_one_budget(tmp_path, clip_models_dir, budget):
    photos = tmp_path / "photos"
    paths = [_flat_png(photos / f"p{i}.png", 1500 + i) for i in range(6)]
    with Image.open(paths[-1]) as img:
        need = decode_peak_bytes(img)
    shared = budget(int(need * 1.5))  # each one fits, two at once do not
    with Library(tmp_path / "lib", models_dir=clip_models_dir, threads=1, decode_workers=4) as lib:
        s = lib.index_roots([str(photos)])
    assert (s.added, s.failed) == (6, 0)
    assert need <= shared.peak <= shared.capacity and shared.in_use == 0


def test_the_budget_applies_to_every_decode(tmp_path, budget):
    path = _flat_png(tmp_path / "wide.png", 3000)
    budget(8 * MB)
    with pytest.raises(Exception, match="too large to decode"):
        load_photo(path)
    budget(200 * MB)
    assert load_photo(path).image.size == (3000, 3000)
