"""Folder watching with real file-system events in temp folders (no mocked observer)."""

from __future__ import annotations

import errno
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from retllm_desktop.watcher import LibraryWatcher
from tests.helpers_watch import REPO, check_consistent, make_models, open_library, wait_for, write_photo

FAST = dict(debounce_s=0.1, stable_checks=2, batch_window_s=0.2, root_check_s=0.3)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return make_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def env(tmp_path, models):
    root = tmp_path / "photos"
    root.mkdir()
    lib = open_library(tmp_path / "lib", models)
    lib.add_root(root)
    yield root, lib
    lib.close()


class Recorder:
    def __init__(self):
        self.batches: list[tuple[str, object]] = []
        self.statuses: list[str] = []
        self.watcher: LibraryWatcher | None = None

    def on_update(self, summary) -> None:
        assert self.watcher is not None and self.watcher.last_batch is not None
        self.batches.append((self.watcher.last_batch.kind, summary))

    def total(self, field: str, kind: str | None = None) -> int:
        return sum(getattr(s, field) for k, s in self.batches if kind is None or k == kind)


def start(lib, polling=None, **kw) -> tuple[LibraryWatcher, Recorder]:
    rec = Recorder()
    w = LibraryWatcher(
        lib,
        **{**FAST, **kw},
        use_polling=polling,
        on_update=rec.on_update,
        on_status=rec.statuses.append,
    )
    rec.watcher = w
    w.start()
    assert w.wait_idle(20)
    return w, rec


def settle(w: LibraryWatcher, s: float = 0.5) -> None:
    assert w.wait_idle(30, settle_s=s), "watcher did not become idle"


def ids_by_path(lib) -> dict[str, int]:
    return lib.catalog.photo_ids_by_path()


def test_catch_up_scan_on_start_reconciles_changes_made_while_not_watching(env):
    root, lib = env
    for i in range(5):
        write_photo(root / f"p{i}.jpg", i)
    lib.index_roots()
    before = ids_by_path(lib)
    # While nothing watches: add 2, delete 1, rename 1, change the content of 1.
    write_photo(root / "new1.jpg", 100)
    write_photo(root / "new2.jpg", 101)
    (root / "p0.jpg").unlink()
    os.rename(root / "p1.jpg", root / "renamed.jpg")
    write_photo(root / "p2.jpg", 200)
    w, rec = start(lib)
    try:
        kind, s = rec.batches[0]
        assert kind == "catch-up"
        assert (s.added, s.removed, s.moved, s.updated) == (2, 1, 1, 1)
        assert ids_by_path(lib)[str(root / "renamed.jpg")] == before[str(root / "p1.jpg")]
        assert w.status_text == "watching 1 folder" and w.watching == 1 and w.mode == "native"
        check_consistent(lib)
    finally:
        w.stop()


def test_create_modify_rename_delete_single_files(env):
    root, lib = env
    w, rec = start(lib)
    try:
        write_photo(root / "a.jpg", 1)
        (root / "notes.txt").write_text("not a photo")
        settle(w)
        pid = ids_by_path(lib)[str(root / "a.jpg")]
        assert len(ids_by_path(lib)) == 1 and rec.total("added") == 1

        write_photo(root / "a.jpg", 2)  # new content
        settle(w)
        assert rec.total("updated") == 1 and ids_by_path(lib)[str(root / "a.jpg")] == pid

        os.rename(root / "a.jpg", root / "b.jpg")
        settle(w)
        assert ids_by_path(lib) == {str(root / "b.jpg"): pid}
        assert rec.total("moved") == 1 and rec.total("added") == 1  # re-pathed, not re-embedded

        (root / "b.jpg").unlink()
        settle(w)
        assert ids_by_path(lib) == {} and rec.total("removed") == 1
        check_consistent(lib)
    finally:
        w.stop()


def test_folder_moves_are_repathed_not_reembedded(env, tmp_path):
    root, lib = env
    for i in range(6):
        write_photo(root / "album" / f"p{i}.jpg", i)
    w, rec = start(lib)
    try:
        before = ids_by_path(lib)
        assert len(before) == 6
        (root / "2024").mkdir()
        os.rename(root / "album", root / "2024" / "summer")  # move + rename a whole folder
        settle(w)
        after = ids_by_path(lib)
        assert sorted(after.values()) == sorted(before.values())
        assert all(p.startswith(str(root / "2024" / "summer") + os.sep) for p in after)
        assert rec.total("moved") == 6 and rec.total("added", "batch") == 0

        os.rename(root / "2024", root / "years")  # the parent folder is renamed
        settle(w)
        assert sorted(ids_by_path(lib).values()) == sorted(before.values())
        assert rec.total("added", "batch") == 0 and rec.total("moved") == 12

        outside = tmp_path / "outside"
        outside.mkdir()
        shutil.move(str(root / "years"), str(outside / "years"))  # moved out of the library: removed
        settle(w)
        assert ids_by_path(lib) == {} and rec.total("removed") == 6

        for i in range(3):
            write_photo(outside / "incoming" / f"q{i}.jpg", 50 + i)
        shutil.move(str(outside / "incoming"), str(root / "incoming"))  # moved in: added
        settle(w)
        assert len(ids_by_path(lib)) == 3 and rec.total("added", "batch") == 3

        shutil.rmtree(root / "incoming")  # a whole folder deleted
        settle(w)
        assert ids_by_path(lib) == {}
        check_consistent(lib)
    finally:
        w.stop()


def test_burst_of_500_files_is_batched(env):
    root, lib = env
    w, rec = start(lib, batch_window_s=0.5)
    try:
        for i in range(500):
            write_photo(root / f"d{i // 100}" / f"img{i:03d}.jpg", 1000 + i, size=(24, 16))
        settle(w, 1.0)
        assert lib.catalog.count_photos() == 500
        batches = [s for k, s in rec.batches if k == "batch"]
        assert sum(s.added for s in batches) == 500
        assert len(batches) <= 5, f"a 500-file burst took {len(batches)} batches"
        check_consistent(lib)
    finally:
        w.stop()


def test_file_still_being_copied_is_indexed_once_when_its_size_is_stable(env, tmp_path):
    root, lib = env
    src = write_photo(tmp_path / "big.png", 7, size=(256, 256), fmt="PNG")
    data = src.read_bytes()
    w, rec = start(lib, debounce_s=0.15, batch_window_s=0.2)
    try:
        target = root / "copying.png"
        with open(target, "wb") as f:  # a slow copy: 10 chunks, 0.08 s apart
            step = len(data) // 10 + 1
            for off in range(0, len(data), step):
                f.write(data[off : off + step])
                f.flush()
                time.sleep(0.08)
        settle(w)
        assert lib.catalog.count_failures() == 0, lib.catalog.failures()
        assert rec.total("added") == 1 and rec.total("updated") == 0 and rec.total("failed") == 0
        photo = lib.catalog.photo_by_path(str(target))
        assert photo is not None and photo.size == len(data)
    finally:
        w.stop()


def test_unplugged_root_goes_offline_and_returns_without_reembedding(env, tmp_path):
    root, lib = env
    for i in range(4):
        write_photo(root / f"p{i}.jpg", i)
    w, rec = start(lib)
    try:
        before = ids_by_path(lib)
        os.rename(root, tmp_path / "unplugged")  # the drive goes away
        assert wait_for(lambda: lib.catalog.count_photos("offline") == 4, 10)
        assert ids_by_path(lib) == before, "photos of an offline root are kept"
        assert wait_for(lambda: "1 offline" in w.status_text, 5) and w.watching == 0
        assert lib.status().roots[0]["online"] is False

        os.rename(tmp_path / "unplugged", root)  # ... and comes back
        assert wait_for(lambda: lib.catalog.count_photos("offline") == 0, 10)
        settle(w)
        assert ids_by_path(lib) == before
        assert rec.total("added") == 4, "nothing re-embedded after the drive came back"
        assert w.watching == 1 and w.status_text == "watching 1 folder"

        write_photo(root / "after.jpg", 99)  # the returned root is watched again
        settle(w)
        assert lib.catalog.photo_by_path(str(root / "after.jpg")) is not None
        check_consistent(lib)
    finally:
        w.stop()


def test_polling_mode_sees_creates_and_folder_moves(env):
    root, lib = env
    write_photo(root / "album" / "a.jpg", 1)
    write_photo(root / "album" / "b.jpg", 2)
    w, rec = start(lib, polling=True, polling_interval_s=0.2)
    try:
        assert w.mode == "polling"
        before = ids_by_path(lib)
        write_photo(root / "c.jpg", 3)
        os.rename(root / "album", root / "album2")
        settle(w, 0.8)
        after = ids_by_path(lib)
        assert len(after) == 3 and set(before.values()) <= set(after.values())
        assert rec.total("moved") == 2 and rec.total("added", "batch") == 1
    finally:
        w.stop()


def test_falls_back_to_polling_when_the_inotify_watch_limit_is_hit(env, monkeypatch):
    if sys.platform != "linux":
        pytest.skip("inotify only")
    from watchdog.observers.inotify import InotifyObserver

    def limit_hit(self, *a, **k):  # what watchdog raises when max_user_watches is exhausted
        raise OSError(errno.ENOSPC, "inotify watch limit reached")

    monkeypatch.setattr(InotifyObserver, "schedule", limit_hit, raising=False)
    root, lib = env
    w, rec = start(lib, polling_interval_s=0.2)
    try:
        assert w.mode == "polling" and w.watching == 1
        assert "polling" in w.status_text and "limit" in w.status_text
        write_photo(root / "x.jpg", 5)
        settle(w, 0.8)
        assert lib.catalog.photo_by_path(str(root / "x.jpg")) is not None
    finally:
        w.stop()


def _reader(proc: subprocess.Popen) -> queue.Queue:
    q: queue.Queue = queue.Queue()

    def pump():
        for line in proc.stdout:
            q.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return q


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cli_watch_prints_one_json_line_per_batch_and_stops_cleanly(tmp_path, models, sig):
    root = tmp_path / "photos"
    write_photo(root / "a.jpg", 1)
    cmd = [sys.executable, "-m", "retllm_desktop", "watch", str(root), "--library", str(tmp_path / "lib")]
    cmd += ["--models", str(models), "--threads", "1", "--json", "--debounce", "0.1", "--batch-window", "0.2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        lines = _reader(proc)
        first = json.loads(lines.get(timeout=30))
        assert first["kind"] == "catch-up" and first["added"] == 1
        write_photo(root / "b.jpg", 2)
        second = json.loads(lines.get(timeout=15))
        assert second["kind"] == "batch" and second["added"] == 1 and second["total"] == 2
        proc.send_signal(sig)
        assert proc.wait(timeout=15) == 0
        assert "watching 1 folder" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cli_watch_without_folders_is_a_clear_error(tmp_path, models):
    from tests.helpers_watch import run_cli

    r = run_cli("watch", "--library", str(tmp_path / "lib"), "--models", str(models))
    assert r.returncode == 1 and "no folders to watch" in r.stderr


def test_catch_up_is_retried_until_it_runs(env):
    """`watch` started while `index` (another process) holds the library: the catch-up runs once it is free."""
    root, lib = env
    write_photo(root / "before.jpg", 1)
    lib.index_roots()
    write_photo(root / "while-locked.jpg", 2)  # changed while nothing watched: only a full scan finds it
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from retllm_desktop.locking import WriterLock; lock = WriterLock(sys.argv[1]); "
            "lock.acquire(); print('held', flush=True); sys.stdin.read()",
            str(lib.path / "write.lock"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        rec = Recorder()
        w = LibraryWatcher(lib, **FAST, on_update=rec.on_update, on_status=rec.statuses.append)
        rec.watcher = w
        w.start()
        try:
            assert wait_for(lambda: w.last_error is not None, timeout=30), (
                "the catch-up did not meet the lock"
            )
            assert "updating this library" in w.last_error and not rec.batches
            assert lib.catalog.photo_by_path(str(root / "while-locked.jpg")) is None
            holder.stdin.close()  # `index` finishes: the lock is free
            holder.wait(timeout=30)
            assert wait_for(lambda: rec.batches, timeout=30), "the catch-up was never retried"
            assert rec.batches[0][0] == "catch-up" and rec.batches[0][1].added == 1
            assert lib.catalog.photo_by_path(str(root / "while-locked.jpg")) is not None
            settle(w)
            check_consistent(lib)
        finally:
            w.stop()
    finally:
        holder.kill()
        holder.wait()
