"""One writer at a time (GUI + CLI on one library): a clear message for the second writer; readers work."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from retllm_desktop.errors import LibraryLockedError
from retllm_desktop.search import Query
from retllm_desktop.watcher import LibraryWatcher
from tests.helpers_watch import (
    REPO,
    check_consistent,
    make_models,
    open_library,
    run_cli,
    wait_for,
    write_photo,
)

# Prints "started" once it holds the write lock, then waits before its first CLIP batch until the test
# writes a line to its stdin: it is still indexing for as long as the test needs, however loaded the machine.
WRITER = textwrap.dedent(
    """
    import sys
    from retllm_desktop.library import Library
    lib_dir, models, root = sys.argv[1:4]
    lib = Library(lib_dir, models_dir=models, threads=1, decode_workers=1, batch_size=2)
    enc = lib.clip.encode_images
    held = []
    def held_until_released(batch):
        if not held:
            held.append(1)
            sys.stdin.readline()  # the test's "go"
        return enc(batch)
    lib.clip.encode_images = held_until_released
    said = []
    def progress(stage, done, total):
        if not said:
            said.append(1)
            print("started", flush=True)
    s = lib.index_roots([root], progress=progress)
    lib.close()
    print("done", s.added, flush=True)
    """
)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return make_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def busy_library(tmp_path, models):
    """A library that another process is indexing (until the test writes "go" to it), with 10 photos
    already searchable."""
    root = tmp_path / "photos"
    for i in range(10):
        write_photo(root / "old" / f"p{i}.jpg", i)
    lib_dir = tmp_path / "lib"
    with open_library(lib_dir, models) as lib:
        lib.index_roots([str(root)])
    for i in range(40):
        write_photo(root / "new" / f"q{i}.jpg", 100 + i)
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(lib_dir), str(models), str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert proc.stdout.readline().strip() == "started", proc.stderr.read()
        yield root, lib_dir, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_second_writer_gets_a_clear_error_while_readers_keep_working(busy_library, models):
    root, lib_dir, proc = busy_library
    # Python API: a clear LibraryLockedError naming the holder.
    with open_library(lib_dir, models) as lib:
        with pytest.raises(LibraryLockedError, match=rf"another RetLLM Desktop process \(pid {proc.pid}\)"):
            lib.index_roots()
        # ... while searching still works in this (reader) process.
        res = lib.search_coarse(Query(text="a dog"), top=5)
        assert len(res.results) == 5
    # CLI: exit 1 with a one-line message; search from the CLI works meanwhile.
    r = run_cli("index", "--library", str(lib_dir), "--models", str(models), "--threads", "1")
    assert r.returncode == 1 and "another RetLLM Desktop process" in r.stderr and "Traceback" not in r.stderr
    r = run_cli(
        "search", "a dog", "--library", str(lib_dir), "--models", str(models), "--json", "--no-rerank"
    )
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["results"]) >= 5
    assert proc.poll() is None, "the first writer was still indexing during all of this"
    out, err = proc.communicate(input="go\n", timeout=60)
    assert proc.returncode == 0 and out.strip() == "done 40", err
    with open_library(lib_dir, models) as lib:
        check_consistent(lib)
        assert lib.catalog.count_photos() == 50


def test_watcher_waits_for_the_other_writer_and_then_catches_up(busy_library, models):
    root, lib_dir, proc = busy_library
    statuses: list[str] = []
    with open_library(lib_dir, models) as lib:
        w = LibraryWatcher(
            lib, debounce_s=0.1, batch_window_s=0.2, root_check_s=0.3, on_status=statuses.append
        )
        w.start()
        try:
            assert wait_for(lambda: w.last_error is not None, 10)
            assert "another RetLLM Desktop process" in w.last_error
            assert any("another RetLLM Desktop process" in s for s in statuses)
            write_photo(root / "during.jpg", 999)  # an event while the library is locked: kept, retried
            proc.communicate(input="go\n", timeout=60)
            assert wait_for(lambda: lib.catalog.photo_by_path(str(root / "during.jpg")) is not None, 20)
            assert w.wait_idle(20, settle_s=0.5)
            assert w.last_error is None
        finally:
            w.stop()
        check_consistent(lib)
        assert lib.catalog.count_photos() == 51


def test_threads_of_one_process_take_turns(tmp_path, models, monkeypatch):
    """GUI-triggered indexing and the watcher share one Library: their runs must not interleave."""
    from retllm_desktop.scanner import Scanner

    roots = [tmp_path / "a", tmp_path / "b"]
    for n, r in enumerate(roots):
        for i in range(20):
            write_photo(r / f"p{i}.jpg", 1000 * n + i)
    overlaps, active = [], threading.Semaphore(1)
    someone_else_entered = threading.Event()
    real_plan = Scanner.plan

    def plan(self, *a, **k):
        # Inside a run, wait for another run to enter too: without the lock one does at once (an overlap);
        # with it none can, and the wait ends after its timeout.
        if not active.acquire(blocking=False):
            overlaps.append(True)
            someone_else_entered.set()
            return real_plan(self, *a, **k)
        try:
            someone_else_entered.wait(0.5)
            return real_plan(self, *a, **k)
        finally:
            active.release()

    monkeypatch.setattr(Scanner, "plan", plan)
    errors: list[Exception] = []
    with open_library(tmp_path / "lib", models) as lib:
        for r in roots:
            lib.add_root(r)
        threads_n = 2 * len(roots)
        start = threading.Barrier(threads_n)

        def run(paths):
            try:
                start.wait(30)  # all runs ask for the library at the same moment
                lib.index_roots(only_paths=paths)
            except Exception as e:
                errors.append(e)

        threads = [threading.Thread(target=run, args=({str(p) for p in r.iterdir()},)) for r in roots * 2]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors and not overlaps, (errors, overlaps)
        assert lib.catalog.count_photos() == 40
        check_consistent(lib)
