"""Opening a library to search never writes: an index repaired on open stays in memory until a writer (index,
rebuild, watch) holds the lock, so a full disk or a read-only library folder cannot stop a search."""

from __future__ import annotations

import hashlib
from pathlib import Path

from retllm_desktop.library import Library
from retllm_desktop.search import Query


def _snapshot(lib_dir: Path) -> dict[str, tuple[str, int]]:
    """Content hash and inode of every file of the library except SQLite's shared-memory index."""
    out = {}
    for p in sorted(lib_dir.rglob("*")):
        if p.is_file() and not p.name.endswith("-shm"):
            out[str(p.relative_to(lib_dir))] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_ino)
    return out


def test_a_search_writes_nothing_even_when_it_repairs_the_index(
    tmp_path: Path, clip_models_dir: Path, photo_tree: Path
) -> None:
    with Library(tmp_path / "lib", models_dir=clip_models_dir, threads=1) as lib:
        lib.index_roots([str(photo_tree)])
        dropped = sorted(lib.index.ids())[:3]
        with lib.lock:  # as a crash between catalog commit and index save leaves it
            lib.index.remove(dropped)
            lib.index.save()
    before = _snapshot(tmp_path / "lib")

    with Library(tmp_path / "lib", models_dir=clip_models_dir, threads=1) as lib:
        assert all(i in lib.index for i in dropped)  # repaired in memory
        (update,) = list(lib.search(Query(text="a red car"), top=12))
        assert len(update.results) == 12
        st = lib.status()
        assert st.index_healthy and st.indexed == 12
    assert _snapshot(tmp_path / "lib") == before  # not a byte written, no file replaced

    with Library(tmp_path / "lib", models_dir=clip_models_dir, threads=1) as lib:
        assert lib.index_roots().unchanged == 12  # a writer saves the repaired index
    with Library(tmp_path / "lib", models_dir=clip_models_dir, threads=1) as lib:
        assert not lib.index.dirty and len(lib.index) == 12
