"""kill -9 at many moments of indexing, restart: the library is whole and resumes without redoing work.

Each run is a real subprocess killed with SIGKILL: from outside at a moment chosen by the catalog's progress,
or from inside at a precise point (mid-transaction, right after a commit, between the two renames of an
index save, while hashing). The child slows the model a little so outside kills land mid-run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers_watch import REPO, check_consistent, make_models, open_library, write_photo

N = 120

CHILD = textwrap.dedent(
    """
    import json, os, signal, sys, time
    from contextlib import contextmanager
    lib_dir, models, root, kill = sys.argv[1:5]
    what, _, n = kill.partition(":")
    n = int(n or 0)
    calls = {"n": 0}

    def tick(name):
        if what == name:
            calls["n"] += 1
            if calls["n"] == n:
                os.kill(os.getpid(), signal.SIGKILL)

    from retllm_desktop import catalog, indexer, vector_index
    from retllm_desktop.library import Library

    indexer.Indexer.__init__.__kwdefaults__["save_every_s"] = 0.05  # periodic index saves mid-run

    put = catalog.Catalog.put_embedding
    def put_embedding(self, *a, **k):
        put(self, *a, **k)
        tick("mid-transaction")
    catalog.Catalog.put_embedding = put_embedding

    tx = catalog.Catalog.transaction
    @contextmanager
    def transaction(self):
        with tx(self):
            yield
        tick("after-commit")
    catalog.Catalog.transaction = transaction

    real_replace = os.replace
    def replace(a, b):
        tick("before-rename")
        real_replace(a, b)
        tick("between-renames")
    vector_index.os = type("os", (), {**{k: getattr(os, k) for k in dir(os) if not k.startswith("__")},
                                      "replace": staticmethod(replace)})

    prep = indexer.Indexer._prepare
    def _prepare(self, fs):
        tick("decode")
        return prep(self, fs)
    indexer.Indexer._prepare = _prepare

    lib = Library(lib_dir, models_dir=models, threads=1, decode_workers=1, batch_size=4)
    enc = lib.clip.encode_images
    def slow(batch):
        time.sleep(0.02)
        return enc(batch)
    lib.clip.encode_images = slow
    s = lib.index_roots([root])
    lib.close()
    print(json.dumps(s.as_dict()))
    """
)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return make_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def child_script(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("child") / "child.py"
    p.write_text(CHILD)
    return p


def photos(root: Path, n: int = N, seed0: int = 0) -> None:
    for i in range(n):
        write_photo(root / f"d{i % 3}" / f"p{i:03d}.jpg", seed0 + i)


def catalog_count(lib_dir: Path) -> int:
    db = lib_dir / "catalog.db"
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(str(db), timeout=5)
        try:
            return con.execute("SELECT count(*) FROM photos").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def run_child(script, lib_dir, models, root, kill="none", kill_at_count: int | None = None) -> dict | None:
    """Run one indexing process; returns its summary, or None when it was killed."""
    cmd = [sys.executable, str(script), str(lib_dir), str(models), str(root), kill]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    if kill_at_count is not None:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if catalog_count(lib_dir) >= kill_at_count:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
    out, err = proc.communicate(timeout=120)
    if proc.returncode == -signal.SIGKILL:
        return None
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def resume_and_check(script, lib_dir, models, root, expect_total: int) -> dict:
    done_before = catalog_count(lib_dir)
    with open_library(lib_dir, models) as lib:  # a fresh process state: reconcile repairs the index
        check_consistent(lib)
    s = run_child(script, lib_dir, models, root)
    assert s is not None
    assert s["total"] == expect_total and s["failed"] == 0
    assert s["added"] + s["reused"] == expect_total - done_before, "finished work was redone"
    with open_library(lib_dir, models) as lib:
        check_consistent(lib)
        assert lib.index.loaded_from_disk
        assert lib.catalog.count_photos() == expect_total
    return s


@pytest.mark.parametrize(
    "kill",
    [
        "decode:30",  # while decoding the first batches
        "mid-transaction:30",  # inside a batch's transaction (rows written, not committed)
        "after-commit:12",  # a batch committed to the catalog, the index not yet updated/saved
        "before-rename:3",  # an index save written to the temp file, not yet renamed
        "between-renames:3",  # the index file renamed, its sidecar not
    ],
)
def test_sigkill_at_a_precise_point_then_resume(tmp_path, models, child_script, kill):
    root, lib_dir = tmp_path / "photos", tmp_path / "lib"
    photos(root)
    assert run_child(child_script, lib_dir, models, root, kill) is None, "the kill point was not reached"
    assert catalog_count(lib_dir) < N, "the kill should land mid-run"
    resume_and_check(child_script, lib_dir, models, root, N)


def test_sigkill_from_outside_several_times_in_a_row(tmp_path, models, child_script):
    root, lib_dir = tmp_path / "photos", tmp_path / "lib"
    photos(root)
    killed_at = []
    for k in (20, 50, 90):
        s = run_child(child_script, lib_dir, models, root, kill_at_count=k)
        killed_at.append(catalog_count(lib_dir))
        if s is None:
            with open_library(lib_dir, models) as lib:
                check_consistent(lib)
    assert any(0 < c < N for c in killed_at), f"no kill landed mid-run: {killed_at}"
    resume_and_check(child_script, lib_dir, models, root, N)


def test_sigkill_while_updating_changed_photos_leaves_no_stale_vectors(tmp_path, models, child_script):
    """Re-embedded photos keep their ids: after a kill the index must not keep their old vectors."""
    root, lib_dir = tmp_path / "photos", tmp_path / "lib"
    photos(root, 40)
    assert run_child(child_script, lib_dir, models, root)["added"] == 40
    for i in range(0, 40, 2):  # new content for half of them (same paths, same ids)
        p = root / f"d{i % 3}" / f"p{i:03d}.jpg"
        write_photo(p, 5000 + i)
        os.utime(p, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    assert run_child(child_script, lib_dir, models, root, "after-commit:3") is None
    with open_library(lib_dir, models) as lib:
        check_consistent(lib)
    s = run_child(child_script, lib_dir, models, root)
    assert s["added"] == 0 and s["updated"] + s["unchanged"] == 40
    with open_library(lib_dir, models) as lib:
        check_consistent(lib)


# -- disk full / read-only library: a clear error, the previous good state kept ---------------------------
# The tests run as root in CI containers, where chmod does not stop writes and mounting a tiny filesystem is
# not available: disk full is produced for real with RLIMIT_FSIZE in a subprocess (writes past the limit fail
# with EFBIG, SIGXFSZ ignored), read-only is simulated (SQLite's query_only pragma, EROFS from os.replace).

FSIZE_CHILD = textwrap.dedent(
    """
    import os, resource, signal, sys
    lib_dir = sys.argv[1]
    limit = max(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(lib_dir) for f in fs) + 24 * 1024
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    from retllm_desktop.cli import main
    sys.exit(main(sys.argv[2:]))
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE (POSIX)")
def test_disk_full_while_indexing_is_a_clear_error_and_keeps_the_last_good_state(tmp_path, models):
    root, lib_dir = tmp_path / "photos", tmp_path / "lib"
    photos(root, 20)
    with open_library(lib_dir, models) as lib:
        lib.index_roots([str(root)])
        before = {p.path: p.id for p in lib.catalog.photos_in_root(lib.roots()[0].id)}
    for i in range(300):
        write_photo(root / "more" / f"m{i:03d}.jpg", 10_000 + i)
    script = tmp_path / "fsize.py"
    script.write_text(FSIZE_CHILD)
    args = [
        "index",
        "--library",
        str(lib_dir),
        "--models",
        str(models),
        "--threads",
        "1",
        "--batch-size",
        "8",
    ]
    r = subprocess.run(
        [sys.executable, str(script), str(lib_dir), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert re.search(r"retllm-desktop: error: cannot save the (library catalog|search index).*disk", r.stderr)
    assert "previous saved state is kept" in r.stderr
    with open_library(lib_dir, models) as lib:
        check_consistent(lib)
        now = {p.path: p.id for p in lib.catalog.photos_in_root(lib.roots()[0].id)}
        assert all(now.get(p) == i for p, i in before.items()), "the photos indexed before are intact"
        s = lib.index_roots()  # space is back: the run completes, without redoing what was committed
        assert s.added == 320 - len(now) and lib.catalog.count_photos() == 320
        check_consistent(lib)


INDEX_FSIZE_CHILD = textwrap.dedent(
    """
    import os, resource, signal, sys
    import numpy as np
    from retllm_desktop.errors import RetllmError
    from retllm_desktop.vector_index import VectorIndex
    path = sys.argv[1]
    rng = np.random.default_rng(0)
    idx = VectorIndex(path, dim=64)
    idx.add(range(1, 11), rng.standard_normal((10, 64)))
    idx.save()
    limit = os.path.getsize(path) + 4096
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    idx.add(range(11, 511), rng.standard_normal((500, 64)))
    try:
        idx.save()
    except RetllmError as e:
        print(e)
        sys.exit(3)
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE (POSIX)")
def test_index_save_on_a_full_disk_keeps_the_previous_index_file(tmp_path):
    """hnswlib does not report short writes itself: the size check must catch them."""
    from retllm_desktop.vector_index import VectorIndex

    path = tmp_path / "index" / "m.hnsw"
    script = tmp_path / "child.py"
    script.write_text(INDEX_FSIZE_CHILD)
    r = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3, r.stderr
    assert "disk is full" in r.stdout and "previous saved state is kept" in r.stdout
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.hnsw", "m.hnsw.json"], "temp files removed"
    idx = VectorIndex(path, dim=64)
    assert idx.loaded_from_disk and idx.ids() == set(range(1, 11))


def test_read_only_catalog_simulated_is_a_clear_error(tmp_path, models):
    from retllm_desktop.errors import RetllmError

    root, lib_dir = tmp_path / "photos", tmp_path / "lib"
    photos(root, 8)
    with open_library(lib_dir, models) as lib:
        lib.index_roots([str(root)])
        write_photo(root / "new.jpg", 777)
        lib.catalog._conn.execute("PRAGMA query_only = 1")  # every write now fails as on a read-only folder
        with pytest.raises(RetllmError, match=r"catalog .*read-only.*previous saved state is kept"):
            lib.index_roots()
        lib.catalog._conn.execute("PRAGMA query_only = 0")
        check_consistent(lib)
        assert lib.index_roots().added == 1


def test_read_only_index_folder_simulated_is_a_clear_error(tmp_path, monkeypatch):
    import errno

    import numpy as np

    from retllm_desktop import vector_index
    from retllm_desktop.errors import RetllmError

    path = tmp_path / "m.hnsw"
    idx = vector_index.VectorIndex(path, dim=8)
    idx.add([1, 2], np.eye(2, 8))
    idx.save()

    def erofs(a, b):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(vector_index.os, "replace", erofs)
    idx.add([3], np.eye(1, 8))
    with pytest.raises(RetllmError, match=r"read-only.*previous saved state is kept"):
        idx.save()
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.hnsw", "m.hnsw.json"]
    assert vector_index.VectorIndex(path, dim=8).ids() == {1, 2}
