"""Incremental indexing through the real pipeline: SQLite catalog, onnxruntime CLIP, hnswlib index."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from retllm_desktop.library import Library

from .conftest import make_photo


def _vectors(lib: Library) -> dict[str, np.ndarray]:
    out = {}
    for p in lib.catalog.photos_by_ids(lib.catalog.embedding_ids(lib.clip.key)).values():
        out[p.path] = lib.catalog.embedding(p.id, lib.clip.key)
    return out


def _assert_consistent(lib: Library) -> None:
    assert lib.catalog.integrity_check() == "ok"
    photo_ids = {p.id for r in lib.roots() for p in lib.catalog.photos_in_root(r.id)}
    assert lib.catalog.embedding_ids(lib.clip.key) == photo_ids
    assert lib.index.ids() == photo_ids


def test_first_index_then_nothing_to_do(library: Library, photo_tree: Path) -> None:
    s = library.index_roots([str(photo_tree)])
    assert (s.added, s.failed, s.total) == (12, 0, 12)
    _assert_consistent(library)
    again = library.index_roots()
    assert (again.added, again.updated, again.moved, again.removed, again.unchanged) == (0, 0, 0, 0, 12)


def test_unchanged_files_are_not_reopened(library: Library, photo_tree: Path, monkeypatch) -> None:
    library.index_roots([str(photo_tree)])
    import retllm_desktop.imaging as imaging
    import retllm_desktop.indexer as indexer
    import retllm_desktop.scanner as scanner

    def boom(*a, **k):
        raise AssertionError("an unchanged photo was read")

    for mod in (imaging, indexer, scanner):
        for name in ("file_hash", "load_rgb", "read_metadata", "load_photo"):
            if hasattr(mod, name):
                monkeypatch.setattr(mod, name, boom)
    assert library.index_roots().unchanged == 12


def test_change_move_delete_copy(library: Library, photo_tree: Path) -> None:
    library.index_roots([str(photo_tree)])
    before = _vectors(library)
    ids_before = {p: library.catalog.photo_by_path(p).id for p in before}
    a = photo_tree / "album-a"
    b = photo_tree / "album-b"

    moved_src, moved_dst = a / "img01.jpg", b / "renamed.jpg"
    os.rename(moved_src, moved_dst)
    (b / "img00.jpg").unlink()
    make_photo(a / "img03.jpg", seed=99)  # same path, new content
    shutil.copy2(a / "img05.jpg", a / "copy-of-5.jpg")
    make_photo(a / "new.png", seed=100, fmt="PNG")
    # Touch without changing content: only the stat is updated.
    os.utime(b / "img02.jpg", ns=(1_000_000_000, 1_000_000_000))

    s = library.index_roots()
    assert (s.moved, s.removed, s.updated, s.added, s.reused) == (1, 1, 1, 2, 1)
    assert s.total == 13
    _assert_consistent(library)
    after = _vectors(library)
    # The moved photo kept its id and its vector (it was not re-embedded).
    moved = library.catalog.photo_by_path(str(moved_dst))
    assert moved.id == ids_before[str(moved_src)]
    np.testing.assert_array_equal(after[str(moved_dst)], before[str(moved_src)])
    assert library.catalog.photo_by_path(str(moved_src)) is None
    assert str(b / "img00.jpg") not in after
    assert not np.allclose(after[str(a / "img03.jpg")], before[str(a / "img03.jpg")])
    np.testing.assert_array_equal(after[str(a / "copy-of-5.jpg")], before[str(a / "img05.jpg")])
    assert library.catalog.photo_by_path(str(b / "img02.jpg")).mtime_ns == 1_000_000_000


def test_moved_folder_is_repathed_not_reembedded(library: Library, photo_tree: Path, monkeypatch) -> None:
    library.index_roots([str(photo_tree)])
    os.rename(photo_tree / "album-a", photo_tree / "holiday-2024")
    import retllm_desktop.indexer as indexer

    monkeypatch.setattr(
        indexer, "load_photo", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-decoded"))
    )
    s = library.index_roots()
    assert (s.moved, s.added, s.removed) == (6, 0, 0)
    assert all("holiday-2024" in p.path or "album-b" in p.path for p in library.catalog.photos_in_root(1))
    _assert_consistent(library)


def test_bad_files_are_recorded_not_fatal(library: Library, photo_tree: Path) -> None:
    (photo_tree / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 garbage")
    (photo_tree / "zero.png").write_bytes(b"")
    (photo_tree / "notes.txt").write_text("not a photo, not even tried")
    s = library.index_roots([str(photo_tree)])
    assert (s.added, s.failed) == (12, 2)
    reasons = {Path(f.path).name: f.reason for f in library.catalog.failures()}
    assert set(reasons) == {"broken.jpg", "zero.png"}
    assert "empty" in reasons["zero.png"]
    # Unchanged failures are not retried; a fixed file is picked up and its failure cleared.
    assert library.index_roots().failed == 0
    make_photo(photo_tree / "zero.png", seed=5, fmt="PNG")
    s = library.index_roots()
    assert s.added == 1
    assert {Path(f.path).name for f in library.catalog.failures()} == {"broken.jpg"}
    # A failed file that is deleted leaves the failure list too.
    (photo_tree / "broken.jpg").unlink()
    library.index_roots()
    assert library.catalog.failures() == []


def test_hidden_folders_and_symlink_loops_skipped(library: Library, photo_tree: Path) -> None:
    make_photo(photo_tree / ".thumbnails" / "t.jpg", seed=50)
    make_photo(photo_tree / "album-a" / ".hidden.jpg", seed=51)
    os.symlink(photo_tree, photo_tree / "album-a" / "loop")
    s = library.index_roots([str(photo_tree)])
    assert s.added == 12 and s.failed == 0


def test_offline_root_keeps_photos(library: Library, photo_tree: Path, tmp_path: Path) -> None:
    library.index_roots([str(photo_tree)])
    parked = tmp_path / "unplugged"
    os.rename(photo_tree, parked)
    s = library.index_roots()
    assert s.removed == 0 and s.offline == 12 and s.total == 12
    assert library.status().roots[0]["online"] is False
    os.rename(parked, photo_tree)
    s = library.index_roots()
    assert (s.added, s.removed, s.offline) == (0, 0, 0)
    _assert_consistent(library)


def test_index_survives_reopen_and_repairs_itself(
    tmp_path: Path, clip_models_dir: Path, photo_tree: Path
) -> None:
    lib = Library(tmp_path / "lib", models_dir=clip_models_dir, threads=1)
    lib.index_roots([str(photo_tree)])
    name = lib.clip.key
    lib.close()
    index_file = next((tmp_path / "lib" / "index").glob("*.hnsw"))
    index_file.write_bytes(b"corrupt")
    lib = Library(tmp_path / "lib", models_dir=clip_models_dir, threads=1)
    assert len(lib.index) == 12
    assert lib.status().index_healthy
    # A vector the index lacks (e.g. a crash between catalog commit and index save) is added back.
    pid = next(iter(lib.catalog.embedding_ids(name)))
    lib.index.remove([pid])
    lib.index.save()
    lib.close()
    lib = Library(tmp_path / "lib", models_dir=clip_models_dir, threads=1)
    assert pid in lib.index and len(lib.index) == 12
    lib.close()


def test_cancel_then_resume(library: Library, tmp_path: Path) -> None:
    import threading

    root = tmp_path / "many"
    for i in range(40):
        make_photo(root / f"p{i:02d}.jpg", seed=i)
    cancel = threading.Event()

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "embedding" and done >= 8:
            cancel.set()

    s = library.index_roots([str(root)], progress=progress, cancel=cancel)
    assert s.cancelled and 8 <= s.added < 40
    first = s.added
    s2 = library.index_roots()
    assert s2.added == 40 - first and not s2.cancelled
    _assert_consistent(library)


def test_nested_root_is_merged(library: Library, photo_tree: Path) -> None:
    library.index_roots([str(photo_tree / "album-a")])
    ids = {p.path: p.id for p in library.catalog.photos_in_root(library.roots()[0].id)}
    library.index_roots([str(photo_tree)])
    assert [r.path for r in library.roots()] == [str(photo_tree.resolve())]
    assert library.catalog.count_photos() == 12
    for path, pid in ids.items():
        assert library.catalog.photo_by_path(path).id == pid


def test_int8_clip_has_its_own_embeddings(tmp_path: Path, clip_models_dir: Path, photo_tree: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(clip_models_dir, models)
    with Library(tmp_path / "lib", models_dir=models, threads=1) as lib:
        lib.index_roots([str(photo_tree)])
        fp32 = lib.clip.key
        name = lib.clip.name
    with Library(tmp_path / "lib", models_dir=models, threads=1, clip_int8=True) as lib:
        assert lib.clip.name == name + "-int8"
        int8 = lib.clip.key
        assert int8.startswith(name + "-int8#") and int8 != fp32
        s = lib.index_roots()
        assert (s.updated, s.unchanged, s.total) == (12, 0, 12)  # each photo counted once: re-embedded
        assert lib.catalog.embedding_models() == {fp32: 12, int8: 12}
        pid = lib.catalog.photo_by_path(str(photo_tree / "album-a" / "img01.jpg")).id
        a, b = lib.catalog.embedding(pid, fp32), lib.catalog.embedding(pid, int8)
        assert float(a @ b) > 0.9


def _index_vector(lib: Library, path: str) -> np.ndarray:
    pid = lib.catalog.photo_by_path(path).id
    return np.asarray(lib.index._index.get_items([pid], return_type="numpy"), dtype=np.float32)[0]


def test_open_library_sees_another_writers_changes(
    library: Library, photo_tree: Path, tmp_path: Path, clip_models_dir: Path
) -> None:
    """A long-lived Library (the app) must not search, or later save, a stale copy of the index."""
    library.index_roots([str(photo_tree)])
    assert len(library.index) == 12  # loaded now, before the other writer runs
    changed = str(photo_tree / "album-a" / "img01.jpg")
    make_photo(Path(changed), seed=501)  # re-embedded by the other writer: same id, new vector
    make_photo(photo_tree / "album-a" / "new.jpg", seed=502)
    (photo_tree / "album-b" / "img00.jpg").unlink()
    with Library(tmp_path / "lib", models_dir=clip_models_dir, threads=1, batch_size=4) as other:
        s = other.index_roots()
        assert (s.added, s.updated, s.removed) == (1, 1, 1)

    found = {r.path for r in next(library.search("anything", top=50)).results}
    assert str(photo_tree / "album-a" / "new.jpg") in found
    assert str(photo_tree / "album-b" / "img00.jpg") not in found
    assert library.status().index_healthy
    stored = library.catalog.embedding(library.catalog.photo_by_path(changed).id, library.clip.key)
    assert float(_index_vector(library, changed) @ stored) > 0.999

    make_photo(photo_tree / "album-b" / "later.jpg", seed=503)  # our own run then saves the index
    library.index_roots()
    library.close()
    with Library(tmp_path / "lib", models_dir=clip_models_dir, threads=1) as again:
        _assert_consistent(again)
        stored = again.catalog.embedding(again.catalog.photo_by_path(changed).id, again.clip.key)
        assert float(_index_vector(again, changed) @ stored) > 0.999
