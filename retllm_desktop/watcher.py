"""Folder watching: keep the catalog and the vector index following the disk while the app runs.

Every library root is watched recursively with watchdog (inotify / FSEvents / ReadDirectoryChangesW),
falling back to polling when native watching is unavailable or the OS watch limit is hit. The observer
thread only queues raw events; one worker thread turns them into a pending set of paths, waits until each
file's size and mtime are stable (a photo still being copied is not indexed half-written), and hands a
whole batch to :meth:`Library.index_roots` with ``only_paths``. A moved file or album arrives as its old
paths plus its new paths in the same batch, so the scanner recognises the content (hash) and re-paths the
photos instead of re-embedding them.

Roots are checked every few seconds: a root that disappears (unplugged drive) is marked offline — its
photos are kept — and a root that comes back is watched again and reconciled with a full (stat-only) scan.
On start a catch-up scan reconciles whatever changed while nothing was watching.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import LibraryLockedError, RetllmError
from .imaging import is_supported
from .indexer import IndexSummary
from .scanner import utf8_safe, walk_photos

log = logging.getLogger(__name__)

_NATIVE_LIMIT_ERRNOS = {errno.ENOSPC, errno.EMFILE, errno.ENFILE, errno.ENOMEM}
# watchdog's inotify backend holds an unpaired IN_MOVED_FROM for 0.5 s before reporting it (a folder moved
# into a folder created just before arrives as "created" first, "deleted" up to 0.5 s later): a batch waits
# this long after the last event so both sides of a move land in it (re-pathed, not re-embedded).
_MOVE_PAIRING_S = 0.6


@dataclass
class _Pending:
    first_seen: float
    last_event: float
    sig: tuple[int, int] | None | bool = False  # False: not checked yet; None: missing
    stable: int = 0


@dataclass
class WatchBatch:
    """What the last call to the engine was about (the CLI prints it next to the summary)."""

    kind: str  # "catch-up", "batch", "root-offline", "root-online"
    paths: int
    summary: IndexSummary
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class _Handler:
    """watchdog handler: runs on the observer thread, so it only queues (never touches the engine)."""

    def __init__(self, q: queue.Queue):
        self._q = q

    def dispatch(self, event: Any) -> None:
        kind = event.event_type
        if kind in ("opened", "closed_no_write"):
            return
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(getattr(event, "dest_path", "") or "")
        self._q.put((kind, bool(event.is_directory), src, dest))


class LibraryWatcher:
    """Watch a library's roots and index what changes. ``start()`` returns at once; work runs on a thread."""

    def __init__(
        self,
        library: Any,
        *,
        debounce_s: float = 0.5,
        stable_checks: int = 2,
        batch_window_s: float = 1.0,
        max_batch: int = 5000,
        max_latency_s: float = 30.0,
        root_check_s: float = 2.0,
        use_polling: bool | None = None,
        polling_interval_s: float = 1.0,
        catch_up: bool = True,
        on_update: Callable[[IndexSummary], None] | None = None,
        on_status: Callable[[str], None] | None = None,
    ):
        self.library = library
        self.debounce_s = max(0.01, debounce_s)
        self.stable_checks = max(1, stable_checks)
        self.batch_window_s = max(0.0, batch_window_s)
        self.max_batch = max(1, max_batch)
        self.max_latency_s = max_latency_s
        self.root_check_s = root_check_s
        self.use_polling = use_polling
        self.polling_interval_s = polling_interval_s
        self.catch_up = catch_up
        self.on_update = on_update
        self.on_status = on_status

        self.mode: str = "polling" if use_polling else "native"
        self.fallback_reason: str | None = None
        self.last_batch: WatchBatch | None = None
        self.last_error: str | None = None
        self.batches = 0

        self._q: queue.Queue = queue.Queue()
        self._handler = _Handler(self._q)
        self._observer: Any = None
        self._watches: dict[str, Any] = {}  # root path -> ObservedWatch
        self._roots_online: dict[str, bool] = {}
        self._pending: dict[str, _Pending] = {}
        self._stop = threading.Event()
        self._cancel = threading.Event()
        self._idle = threading.Event()
        self._scan_due: str | None = None  # a full scan that still has to run (see _run)
        self._busy = False
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._status_text = ""
        self._force_root_check = True
        self._last_event = 0.0

    # -- public ----------------------------------------------------------------------------------
    @property
    def watching(self) -> int:
        """How many folders are being watched right now (offline roots are not)."""
        return len(self._watches)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def status_text(self) -> str:
        return self._status_text

    def start(self) -> LibraryWatcher:
        if self.running:
            return self
        self._stop.clear()
        self._cancel.clear()
        self._idle.clear()
        self._start_observer()
        self._thread = threading.Thread(target=self._run, name="retllm-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop watching; an index batch in flight finishes its current chunk and is saved."""
        self._stop.set()
        self._cancel.set()
        self._q.put(None)  # wake the worker
        if self._observer is not None:
            try:
                self._observer.stop()
                self._observer.join(timeout=5)
            except Exception:  # stopping must not raise
                log.debug("observer stop failed", exc_info=True)
            self._observer = None
        self._watches.clear()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None
        self._set_status("stopped watching")

    def __enter__(self) -> LibraryWatcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_idle(self, timeout: float = 30.0, settle_s: float = 0.0) -> bool:
        """Block until no event is queued or pending and no batch is running (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            idle = self._idle.is_set() and self._q.empty() and not self._pending and not self._busy
            now = time.monotonic()
            if idle:
                quiet_since = quiet_since or now
                if now - quiet_since >= settle_s:
                    return True
            else:
                quiet_since = None
            time.sleep(0.02)
        return False

    # -- observer --------------------------------------------------------------------------------
    def _new_observer(self, polling: bool) -> Any:
        if polling:
            from watchdog.observers.polling import PollingObserver

            obs = PollingObserver(timeout=self.polling_interval_s)
        else:
            from watchdog.observers import Observer

            obs = Observer()
        obs.daemon = True
        obs.start()
        return obs

    def _start_observer(self) -> None:
        polling = bool(self.use_polling)
        if not polling:
            try:
                self._observer = self._new_observer(False)
                self.mode = "native"
                return
            except Exception as e:  # no native backend on this platform
                self._fall_back(f"native watching unavailable ({e})")
                return
        self._observer = self._new_observer(True)
        self.mode = "polling"

    def _fall_back(self, reason: str) -> None:
        """Switch every watch to polling (inotify watch limit hit, no native backend)."""
        log.warning("folder watching falls back to polling: %s", reason)
        self.fallback_reason = reason
        old, roots = self._observer, list(self._watches)
        if old is not None:
            try:
                old.stop()
                old.join(timeout=5)
            except Exception:
                pass
        self._watches.clear()
        self._observer = self._new_observer(True)
        self.mode = "polling"
        for r in roots:
            self._schedule(r)

    def _schedule(self, root: str) -> bool:
        if root in self._watches or self._observer is None:
            return root in self._watches
        try:
            self._watches[root] = self._observer.schedule(self._handler, root, recursive=True)
            return True
        except OSError as e:
            if self.mode == "native" and (e.errno in _NATIVE_LIMIT_ERRNOS or "limit" in str(e)):
                self._fall_back(f"the system's limit on watched folders was reached ({e.strerror or e})")
                return self._schedule(root)
            if not os.path.isdir(root):
                return False
            raise

    def _unschedule(self, root: str) -> None:
        watch = self._watches.pop(root, None)
        if watch is not None and self._observer is not None:
            try:
                self._observer.unschedule(watch)
            except Exception:  # the watch may already be gone with its folder
                pass

    def _sync_roots(self, initial: bool = False) -> list[tuple[str, str]]:
        """Schedule/unschedule watches to match the roots that exist; returns (root, change) pairs."""
        changes: list[tuple[str, str]] = []
        paths = [r.path for r in self.library.catalog.roots()]
        for p in list(self._watches):
            if p not in paths:
                self._unschedule(p)
                self._roots_online.pop(p, None)
        for p in paths:
            online = os.path.isdir(p)
            before = self._roots_online.get(p)
            self._roots_online[p] = online
            if online:
                if not self._schedule(p):
                    self._roots_online[p] = online = False
            else:
                self._unschedule(p)
            if not initial and before is not None and before != online:
                changes.append((p, "online" if online else "offline"))
            elif not initial and before is None:
                changes.append((p, "added"))
        self._update_status()
        return changes

    # -- status ----------------------------------------------------------------------------------
    def _update_status(self) -> None:
        n = self.watching
        text = f"watching {n} folder{'s' if n != 1 else ''}"
        if self.mode == "polling":
            text += f" (polling: {self.fallback_reason})" if self.fallback_reason else " (polling)"
        offline = sum(1 for v in self._roots_online.values() if not v)
        if offline:
            text += f", {offline} offline"
        self._set_status(text)

    def _set_status(self, text: str) -> None:
        if text != self._status_text:
            self._status_text = text
            if self.on_status:
                try:
                    self.on_status(text)
                except Exception:  # a callback bug must not stop watching
                    log.exception("on_status callback failed")

    # -- worker ----------------------------------------------------------------------------------
    def _run(self) -> None:
        try:  # recursive native watches of a big tree take a while: never on the caller's (UI) thread
            self._sync_roots(initial=True)
        except Exception as e:
            log.exception("cannot watch library folders")
            self._report_error(f"cannot watch library folders: {e}")
        next_check = time.monotonic() + self.debounce_s
        next_roots = time.monotonic() + self.root_check_s
        retry_at = 0.0
        # A full scan that could not run (another process held the library: `index` running) is retried
        # until it runs: the files that changed meanwhile are only found by a full scan.
        self._scan_due = "catch-up" if self.catch_up else None
        scan_at = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if self._scan_due and now >= scan_at:
                self._idle.clear()
                if self._index(self._scan_due, None):
                    self._scan_due = None
                else:
                    scan_at = now + max(1.0, self.batch_window_s)
                now = time.monotonic()
            if not self._pending and self._q.empty() and not self._scan_due:
                self._idle.set()
            wake = min(next_check, next_roots, scan_at if self._scan_due else next_check)
            wait = max(0.0, wake - now)
            try:
                item = self._q.get(timeout=wait)
            except queue.Empty:
                item = None
            if self._stop.is_set():
                break
            if item is not None:
                self._idle.clear()
                self._absorb_safely(item)
                while True:  # drain what else is queued without sleeping
                    try:
                        item = self._q.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        self._absorb_safely(item)
            now = time.monotonic()
            if now >= next_roots or self._force_root_check:
                self._force_root_check = False
                next_roots = now + self.root_check_s
                self._check_roots()
            if now >= next_check:
                next_check = now + self.debounce_s
                if self._pending and now >= retry_at:
                    ready = self._stability_pass(now)
                    if ready and not self._flush(ready, now):
                        retry_at = now + max(1.0, self.batch_window_s)
        self._idle.set()

    def _root_of(self, path: str) -> str | None:
        for r in self._roots_online:
            if path == r or path.startswith(r.rstrip(os.sep) + os.sep):
                return r
        return None

    def _absorb_safely(self, item: tuple[str, bool, str, str]) -> None:
        try:
            self._absorb(item)
        except Exception:  # one odd event (a vanished folder, a strange name) is skipped
            log.exception("cannot handle file-system event %r", item)

    def _absorb(self, item: tuple[str, bool, str, str]) -> None:
        kind, is_dir, src, dest = item
        now = time.monotonic()
        if is_dir and kind == "modified":
            return
        if is_dir and src in self._roots_online and kind in ("deleted", "moved"):
            self._force_root_check = True  # the root itself went away
        paths: set[str] = set()
        if kind == "moved":
            paths |= self._expand(src, is_dir, gone=True)
            paths |= self._expand(dest, is_dir, gone=False)
        elif kind == "deleted":
            paths |= self._expand(src, is_dir, gone=True)
        else:
            paths |= self._expand(src, is_dir, gone=False)
        for p in paths:
            entry = self._pending.get(p)
            if entry is None:
                self._pending[p] = _Pending(first_seen=now, last_event=now)
            else:
                entry.last_event = now
                entry.stable = 0
        self._last_event = now

    def _expand(self, path: str, is_dir: bool, gone: bool) -> set[str]:
        if not path or self._root_of(path) is None:
            return set()
        if not is_dir:
            return {path} if is_supported(path) else set()
        out: set[str] = set()
        # Photos the catalog knows under this folder (deleted or moved away: they may be gone).
        if utf8_safe(path):  # the catalog holds no names that are not UTF-8
            out.update(self.library.catalog.paths_under(path))
        if not gone and os.path.isdir(path):
            out.update(e.path for e in walk_photos(path))
        return out

    def _stability_pass(self, now: float) -> list[str]:
        ready: list[str] = []
        for path, entry in self._pending.items():
            try:
                st = os.stat(path)
                sig: tuple[int, int] | None = (st.st_size, st.st_mtime_ns)
            except OSError:
                sig = None
            if sig == entry.sig:
                entry.stable += 1
            else:
                entry.sig = sig
                entry.stable = 1
            if entry.stable >= self.stable_checks and now - entry.last_event >= self.debounce_s:
                ready.append(path)
        return ready

    def _flush(self, ready: list[str], now: float) -> bool:
        """Index the ready paths when the burst is over (or the batch is big / old enough)."""
        window = self.batch_window_s
        if self.mode == "native" and sys.platform.startswith("linux"):
            window = max(window, _MOVE_PAIRING_S)
        quiet = now - self._last_event >= window
        all_ready = len(ready) == len(self._pending)
        oldest = min(self._pending[p].first_seen for p in ready)
        if not ((quiet and all_ready) or len(ready) >= self.max_batch or now - oldest >= self.max_latency_s):
            return True
        batch = set(ready)
        ok = self._index("batch", batch)
        if ok:
            for p in batch:
                self._pending.pop(p, None)
        return ok

    def _check_roots(self) -> None:
        try:
            changes = self._sync_roots()
        except Exception as e:
            self._report_error(f"cannot watch library folders: {e}")
            return
        for root, change in changes:
            if change == "offline":
                # Drop pending paths under it: the scanner marks the root offline, nothing is deleted.
                for p in [p for p in self._pending if p.startswith(root.rstrip(os.sep) + os.sep)]:
                    self._pending.pop(p, None)
                self._index("root-offline", set())
            else:  # back online or newly added: reconcile everything that changed meanwhile
                kind = "root-online" if change == "online" else "root-added"
                if not self._index(kind, None):
                    self._scan_due = kind  # retried from the loop until it runs

    def _index(self, kind: str, only_paths: set[str] | None) -> bool:
        """One engine call; returns False when it should be retried later (library busy, disk full)."""
        self._busy = True
        try:
            summary = self.library.index_roots(only_paths=only_paths, cancel=self._cancel)
        except LibraryLockedError as e:
            self._report_error(str(e))
            return False
        except RetllmError as e:
            self._report_error(str(e))
            return False
        except Exception as e:  # the watcher thread must survive anything
            log.exception("watcher batch failed")
            self._report_error(f"{type(e).__name__}: {e}")
            return False
        finally:
            self._busy = False
        self.last_error = None
        self.batches += 1
        self.last_batch = WatchBatch(kind, len(only_paths) if only_paths is not None else -1, summary)
        self._update_status()
        if self.on_update:
            try:
                self.on_update(summary)
            except Exception:
                log.exception("on_update callback failed")
        return True

    def _report_error(self, message: str) -> None:
        self.last_error = message
        self._set_status(f"{self._status_text.split(' — ')[0]} — {message}")
