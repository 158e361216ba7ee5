"""Coarse search: text, image, composed and filtered queries through the real models and index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retllm_desktop.errors import QueryError
from retllm_desktop.library import Library
from retllm_desktop.search import Query

from .conftest import make_photo


@pytest.fixture
def indexed(library: Library, photo_tree: Path) -> Library:
    library.index_roots([str(photo_tree)])
    return library


def test_text_search_matches_bruteforce_cosine(indexed: Library) -> None:
    lib = indexed
    updates = list(lib.search(Query(text="a red car"), top=5))
    assert [u.phase for u in updates] == ["done"]
    res = updates[0].results
    assert [r.rank for r in res] == [1, 2, 3, 4, 5]
    q = lib.clip.encode_texts(["a red car"])[0]
    ids = sorted(lib.catalog.embedding_ids(lib.clip.key))
    mat = np.stack([lib.catalog.embedding(i, lib.clip.key) for i in ids])
    expected = [ids[i] for i in np.argsort(-(mat @ q))[:5]]
    assert [r.photo.id for r in res] == expected
    assert res[0].score == pytest.approx(float(mat[ids.index(expected[0])] @ q), abs=1e-5)
    assert {"encode", "search", "fetch"} <= set(updates[0].timings_ms)  # each stage reports its time


def test_image_query_finds_its_copy_and_excludes_itself(
    indexed: Library, photo_tree: Path, tmp_path: Path
) -> None:
    target = photo_tree / "album-a" / "img03.jpg"
    res = indexed.search_coarse(Query(image=str(target)), top=3).results
    assert str(target) not in [r.path for r in res]
    outside = tmp_path / "elsewhere.jpg"  # a query image outside the library: same pixels, other file
    outside.write_bytes(target.read_bytes())
    res = indexed.search_coarse(Query(image=str(outside)), top=3).results
    assert res[0].path == str(target) and res[0].score > 0.999


def test_composed_query_is_between_text_and_image(indexed: Library, photo_tree: Path) -> None:
    img = str(photo_tree / "album-b" / "img04.jpg")
    lib = indexed
    t = lib.clip.encode_texts(["sunset"])[0]
    v = lib.catalog.embedding(lib.catalog.photo_by_path(img).id, lib.clip.key)
    expected = 0.3 * v + 0.7 * t
    expected /= np.linalg.norm(expected)
    vec, self_id = (
        __import__("retllm_desktop.search", fromlist=["CoarseSearcher"])
        .CoarseSearcher(lib.catalog, lib.index, lib.clip)
        .embed_query(Query(text="sunset", image=img, image_weight=0.3))
    )
    np.testing.assert_allclose(vec, expected, atol=1e-5)
    assert self_id == lib.catalog.photo_by_path(img).id


def test_date_filter(library: Library, tmp_path: Path) -> None:
    from PIL import Image

    root = tmp_path / "dated"
    for i, day in enumerate(["2020:01:05", "2021:06:01", "2021:06:30", "2023:12:31"]):
        p = make_photo(root / f"d{i}.jpg", seed=i)
        img = Image.open(p)
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0x9003] = f"{day} 12:00:00"
        img.save(p, exif=exif)
    make_photo(root / "undated.jpg", seed=9)
    library.index_roots([str(root)])
    res = library.search_coarse(Query(text="x", date_from="2021-06-01", date_to="2021-06-30"), top=10).results
    assert sorted(Path(r.path).name for r in res) == ["d1.jpg", "d2.jpg"]
    assert all(r.photo.taken_at.startswith("2021-06") for r in res)


def test_bad_queries(indexed: Library, tmp_path: Path) -> None:
    with pytest.raises(QueryError, match="empty"):
        Query(text="   ")
    with pytest.raises(QueryError, match="not found"):
        Query(image=str(tmp_path / "nope.jpg"))


def test_empty_library_says_so(library: Library) -> None:
    update = library.search_coarse(Query(text="anything"))
    assert update.results == [] and "no indexed photos" in update.message


def test_identical_copies_fold_into_one_result(library: Library, photo_tree: Path) -> None:
    import shutil

    original = photo_tree / "album-a" / "img05.jpg"
    backups = [photo_tree / "backup" / f"img05-{i}.jpg" for i in range(3)]
    for b in backups:
        b.parent.mkdir(exist_ok=True)
        shutil.copy2(original, b)
    library.index_roots([str(photo_tree)])
    assert library.catalog.count_photos() == 15
    # A query whose nearest photo is that picture: it appears once, its copies listed with it.
    vec = library.catalog.embedding(library.catalog.photo_by_path(str(original)).id, library.clip.key)
    from retllm_desktop.search import CoarseSearcher

    res = CoarseSearcher(library.catalog, library.index, library.clip)._collapse(
        vec, 12, None, None, {"search": 0, "fetch": 0}
    )
    assert len(res) == 12  # all 12 distinct pictures, although 15 files
    top = res[0]
    assert sorted([top.path, *top.duplicates]) == sorted([str(original), *map(str, backups)])
    assert len({r.photo.hash for r in res}) == 12
    # An image query leaves out the query photo and its copies; JSON lists the copies.
    res = library.search_coarse(Query(image=str(original)), top=20).results
    assert all(r.photo.hash != top.photo.hash for r in res) and len(res) == 11
    d = library.search_coarse(Query(text="x"), top=12).results
    assert any("duplicates" in r.as_dict() for r in d)


def test_date_bounds_are_validated_and_normalised(tmp_path: Path) -> None:
    with pytest.raises(QueryError, match="date"):
        Query(text="x", date_from="last summer")
    with pytest.raises(QueryError, match="date"):
        Query(text="x", date_to="2021-02-30")
    q = Query(text="x", date_from=" 2021-06-01 ", date_to="2021-06-30 18:00")
    assert (q.date_from, q.date_to) == ("2021-06-01", "2021-06-30T18:00:00")
