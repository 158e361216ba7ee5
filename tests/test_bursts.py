"""Bursts and near-duplicates fold into one result (search, JSON, rerank: one LLM check per group)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from retllm_desktop import near_duplicates
from retllm_desktop.devtools.bursts import burst, real_photos, shot_set
from retllm_desktop.library import Library
from retllm_desktop.search import Query

from .conftest import make_photo

T0 = datetime(2024, 6, 1, 12, 0, 0)


def save_jpeg(img: Image.Image, path: Path, taken: datetime | None) -> Path:
    exif = Image.Exif()
    if taken is not None:
        exif.get_ifd(0x8769)[0x9003] = taken.strftime("%Y:%m:%d %H:%M:%S")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", quality=90, exif=exif)
    return path


def unit(v: list[float]) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def test_fold_needs_both_the_look_and_the_time() -> None:
    a, a2, b = unit([1, 0, 0]), unit([1, 0.05, 0]), unit([0, 1, 0])
    vectors = np.stack([a, a2, b, a2, a2, a2])
    times = [0.0, 1.0, 1.5, 3600.0, None, 2.0]
    assert near_duplicates.fold(vectors, times, threshold=0.99, window_s=5) == [0, 0, 2, 3, 4, 0]
    # above the look threshold only identical looks fold; a zero window folds only simultaneous shots
    assert near_duplicates.fold(vectors, times, threshold=0.9999, window_s=5) == [0, 1, 2, 3, 4, 1]
    assert near_duplicates.fold(vectors, [0.0] * 6, threshold=0.99, window_s=0) == [0, 0, 2, 0, 0, 0]


def test_a_long_burst_stays_one_group_but_does_not_drift_into_the_next_scene() -> None:
    # shots 2 s apart over 20 s, each a little further from the first look
    vectors = np.stack([unit([1, 0.01 * i, 0]) for i in range(10)] + [unit([1, 0.6, 0])])
    times = [2.0 * i for i in range(11)]
    heads = near_duplicates.fold(vectors, times, threshold=0.99, window_s=3)
    assert heads[:10] == [0] * 10  # the time chain holds the burst together
    assert heads[10] == 10  # the look is compared with the leader, so the drift stops


def test_seconds_parses_the_catalog_format() -> None:
    assert (
        near_duplicates.seconds("2024-06-01T12:00:05") - near_duplicates.seconds("2024-06-01T12:00:00") == 5
    )
    assert near_duplicates.seconds(None) is None and near_duplicates.seconds("garbage") is None


def test_generated_bursts_come_from_real_photographs() -> None:
    photos = real_photos()
    pytest.importorskip("skimage")
    assert len(photos) >= 10 and all(img.mode == "RGB" for _, img in photos)
    shots = burst(photos[0][1], np.random.default_rng(0), n=6)
    assert [k for k, _ in shots][:3] == ["base", "shift", "exposure"]
    assert all(
        s.size != photos[0][1].size or k in ("base", "exposure", "zoom", "recompress") for k, s in shots
    )
    assert len({s.scene for s in shot_set(burst_size=3)}) > len(photos)  # halves are scenes too


@pytest.fixture
def burst_library(tmp_path: Path, library: Library) -> tuple[Library, Path, list[Path]]:
    """A burst of five near-identical shots 0.4 s apart, the same view a day later, and other photos."""
    pytest.importorskip("skimage")
    base = dict(real_photos())["chelsea"].resize((300, 200))
    root = tmp_path / "photos"
    shots = []
    for i in range(5):
        img = (
            base.crop((i, 0, 300 - 4 + i, 200))
            if i % 2
            else ImageEnhance.Brightness(base).enhance(1 + 0.02 * i)
        )
        shots.append(save_jpeg(img, root / f"burst_{i}.jpg", T0 + timedelta(seconds=0.4 * i)))
    save_jpeg(base, root / "next_day.jpg", T0 + timedelta(days=1))
    save_jpeg(base, root / "undated.jpg", None)
    for i in range(6):
        make_photo(root / f"other{i}.jpg", seed=200 + i)
    library.index_roots([str(root)])
    return library, root, shots


def test_a_burst_is_one_result_listing_the_others(burst_library, tmp_path: Path) -> None:
    lib, root, shots = burst_library
    query = tmp_path / "query.png"
    Image.open(shots[0]).save(query)
    res = lib.search_coarse(Query(image=str(query)), top=20).results
    names = [Path(r.path).name for r in res]
    burst_results = [r for r in res if Path(r.path).name.startswith("burst_")]
    assert len(burst_results) == 1, names
    group = burst_results[0]
    assert sorted(Path(p.path).name for p in [group, *group.similar]) == [s.name for s in shots]
    # the folded shots really are as alike as the threshold says (the test is not vacuous)
    vec = {
        p.id: lib.catalog.embedding(p.id, lib.clip.key)
        for p in [group.photo, *(s.photo for s in group.similar)]
    }
    lead = vec[group.photo.id] / np.linalg.norm(vec[group.photo.id])
    assert all(
        float(lead @ (v / np.linalg.norm(v))) >= near_duplicates.DEFAULT_THRESHOLD for v in vec.values()
    )
    # the same view a day later and an undated copy are their own results
    assert "next_day.jpg" in names and "undated.jpg" in names
    assert group.as_dict()["similar"] == [s.path for s in group.similar]
    # without folding, every shot is a result of its own
    unfolded = lib.search_coarse(Query(image=str(query), fold_similar=False), top=20).results
    assert sum(Path(r.path).name.startswith("burst_") for r in unfolded) == 5


def test_search_json_lists_similar(burst_library, clip_models_dir: Path, tmp_path: Path) -> None:
    lib, root, shots = burst_library
    lib_dir = lib.path
    lib.close()
    r = subprocess.run(
        [sys.executable, "-m", "retllm_desktop", "search", "--library", str(lib_dir), "--models",
         str(clip_models_dir), "--image", str(shots[2]), "--json", "--no-rerank", "--top", "20"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)["results"]
    groups = [x for x in results if Path(x["path"]).name.startswith("burst_")]
    # the query shot itself is left out; the other four are one result
    assert len(groups) == 1 and len(groups[0]["similar"]) == 3


def test_the_llm_checks_one_photo_per_group(tmp_path: Path, full_models_dir: Path) -> None:
    pytest.importorskip("skimage")
    from retllm_desktop.rerank import RerankOptions

    base = dict(real_photos())["coffee"].resize((200, 150))
    root = tmp_path / "photos"
    for i in range(4):
        save_jpeg(base.crop((i, 0, 196 + i, 150)), root / f"b{i}.jpg", T0 + timedelta(seconds=i))
    for i in range(3):
        make_photo(root / f"o{i}.jpg", seed=300 + i)
    lib = Library(tmp_path / "lib", models_dir=full_models_dir, threads=1, decode_workers=1, batch_size=4)
    try:
        lib.index_roots([str(root)])
        final = list(lib.search(Query(text="a cup of coffee"), top=10, rerank=RerankOptions(k=10)))[-1]
    finally:
        lib.close()
    assert final.total == 4  # 3 other photos + 1 burst group, not 7 photos
    group = [r for r in final.results if Path(r.path).name.startswith("b")]
    assert len(group) == 1 and len(group[0].similar) == 3 and group[0].fine is not None
    assert all(s.fine is None for s in group[0].similar)


def test_shots_that_cannot_be_one_sequence_never_fold() -> None:
    a = unit([1, 0, 0])
    vectors = np.stack([a] * 7)
    W = near_duplicates.Where
    lisbon, lisbon_10m = W(38.7107, -9.1365, "eos r6"), W(38.71079, -9.1365, "eos r6")
    wheres = [
        lisbon,
        lisbon_10m,  # a step away, same camera: one burst
        W(35.0116, 135.7681, "eos r6"),  # Kyoto at the same second
        W(38.7107, -9.1365, "iphone 15 pro"),  # another camera beside the first
        W(None, None, "eos r6"),  # no GPS: the place cannot separate it
        W(38.7107, -9.1365, None),  # no camera model: only the place counts
        W(38.7127, -9.1365, "eos r6"),  # 220 m away: not one spot
    ]
    heads = near_duplicates.fold(vectors, [0.0] * 7, threshold=0.99, window_s=5, wheres=wheres)
    assert heads == [0, 0, 2, 3, 0, 0, 6]
    # the Kyoto shot and the other camera's shot each lead a group that their own next shots join
    heads = near_duplicates.fold(
        np.stack([a] * 4), [0.0, 0.0, 0.5, 0.5], 0.99, 5, [wheres[0], wheres[2], wheres[2], wheres[3]]
    )
    assert heads == [0, 1, 1, 3]
    # unknowns never separate; what the catalog holds is read the way the search reads it
    assert near_duplicates.could_be_one_sequence(W(), lisbon)
    photo = type(
        "P", (), {"gps_lat": 0.0, "gps_lon": 0.0, "camera_model": "  EOS  R6 ", "camera_make": "Canon"}
    )
    assert near_duplicates.Where.of(photo) == W(None, None, "eos r6")  # (0, 0) is no fix


def save_shot(
    img: Image.Image, path: Path, taken: datetime, gps: tuple[float, float] | None, model: str
) -> Path:
    from .helpers_places import _dms

    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon" if model.startswith("EOS") else "Apple", model
    exif.get_ifd(0x8769)[0x9003] = taken.strftime("%Y:%m:%d %H:%M:%S")
    if gps is not None:
        g = exif.get_ifd(0x8825)
        g[1], g[2] = ("N" if gps[0] >= 0 else "S"), _dms(gps[0])
        g[3], g[4] = ("E" if gps[1] >= 0 else "W"), _dms(gps[1])
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, "JPEG", quality=90, exif=exif)
    return path


def test_same_second_in_four_cities_or_two_cameras_are_separate_results(
    tmp_path: Path, library: Library
) -> None:
    pytest.importorskip("skimage")
    base = dict(real_photos())["chelsea"].resize((300, 200))
    root = tmp_path / "photos"
    cities = {"lisbon": (38.7107, -9.1365), "kyoto": (35.0116, 135.7681), "nairobi": (-1.2921, 36.8219),
              "valparaiso": (-33.0472, -71.6127)}  # fmt: skip
    for i, (name, gps) in enumerate(cities.items()):
        save_shot(base.crop((i, 0, 296 + i, 200)), root / f"{name}.jpg", T0, gps, "EOS R6")
    # the Lisbon shot's own burst: a step away, a second later, same camera; and a phone beside it
    save_shot(base.crop((5, 0, 301, 200)), root / "lisbon_next.jpg", T0 + timedelta(seconds=1),
              (38.71072, -9.13652), "EOS R6")  # fmt: skip
    save_shot(base.crop((6, 1, 302, 200)), root / "lisbon_phone.jpg", T0, (38.7107, -9.1365), "iPhone 15 Pro")
    for i in range(4):
        make_photo(root / f"other{i}.jpg", seed=400 + i)
    library.index_roots([str(root)])
    res = library.search_coarse(Query(text="a cat"), top=20).results
    shown = sorted(Path(r.path).name for r in res)
    assert len(res) == 9, shown  # 10 photos; only lisbon_next folds into lisbon
    lisbon = next(r for r in res if Path(r.path).name in ("lisbon.jpg", "lisbon_next.jpg"))
    assert sorted(Path(s.path).name for s in [lisbon, *lisbon.similar]) == ["lisbon.jpg", "lisbon_next.jpg"]
    # the test is not vacuous: without the place and camera test they all look alike enough to fold
    vecs = [library.catalog.embedding(r.photo.id, library.clip.key) for r in res if "other" not in r.path]
    vecs = [v / np.linalg.norm(v) for v in vecs]
    assert min(float(vecs[0] @ v) for v in vecs) >= near_duplicates.DEFAULT_THRESHOLD
