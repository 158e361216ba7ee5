"""Walk the library roots and diff the disk against the catalog.

Produces a :class:`ScanPlan` (what is new, changed, moved, deleted, unchanged) without decoding any
pixels: unchanged files (same size and mtime) are not even opened, and new files are only hashed so
that a moved or renamed photo is recognised by content and keeps its embedding.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .catalog import Catalog, Root
from .imaging import file_hash, is_supported
from .progress import Progress


@dataclass
class FileStat:
    path: str
    root_id: int
    size: int
    mtime_ns: int
    hash: str | None = None
    photo_id: int | None = None  # set when the path is already in the catalog (a changed file)
    old_hash: str | None = None  # the catalog's hash for that path


@dataclass
class Move:
    photo_id: int
    old_path: str
    new: FileStat


@dataclass
class ScanPlan:
    new: list[FileStat] = field(default_factory=list)  # needs an embedding, not in the catalog
    changed: list[FileStat] = field(default_factory=list)  # in the catalog, content changed: re-embed
    touched: list[FileStat] = field(default_factory=list)  # stat changed, same content: update stat only
    moved: list[Move] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    unchanged: int = 0
    skipped_failed: int = 0  # files that failed before and have not changed since
    failed: list[tuple[FileStat, str]] = field(default_factory=list)  # unreadable during the scan itself
    skipped: list[tuple[FileStat, str]] = field(default_factory=list)  # special files passed over on purpose
    offline_roots: list[Root] = field(default_factory=list)
    stale_failures: list[str] = field(default_factory=list)  # failed files that are gone from disk
    online_roots: list[Root] = field(default_factory=list)

    @property
    def to_embed(self) -> list[FileStat]:
        return self.new + self.changed


def _special(entry: os.DirEntry) -> str | None:
    """Why a photo-named entry that is not a regular file is skipped (None: not worth a word)."""
    try:
        if entry.is_symlink() and not os.path.exists(entry.path):
            return f"skipped: dangling symlink (points to {os.readlink(entry.path)})"
        st = os.stat(entry.path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "skipped: symlink loop"
        return f"skipped: cannot read ({e.strerror or e})"
    for test, what in (
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
    ):
        if test(st.st_mode):
            return f"skipped: {what}, not a photo file"
    return None


def walk_photos(
    root: str | Path,
    on_error: Callable[[str, str], None] | None = None,
    on_skip: Callable[[str, str], None] | None = None,
) -> Iterator[os.DirEntry]:
    """Yield supported image files under ``root``; skips hidden entries and symlink loops.

    ``on_skip(path, reason)`` hears about what is passed over on purpose: photo-named FIFOs, sockets,
    devices, dangling symlinks and symlink loops (so ``status`` can list them instead of staying silent).
    """
    stack = [str(root)]
    seen: set[tuple[int, int]] = set()
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
        except OSError as e:
            if on_error:
                on_error(folder, f"cannot read folder: {e.strerror or e}")
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:  # symlink loop or a folder reached twice
            if on_skip and os.path.islink(folder):
                on_skip(folder, "skipped: symlink to a folder already scanned (a loop?)")
            continue
        seen.add(key)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            if on_error:
                on_error(folder, f"cannot list folder: {e.strerror or e}")
            continue
        subdirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=True):
                    subdirs.append(entry.path)
                elif entry.is_file(follow_symlinks=True):
                    if is_supported(entry.name):
                        yield entry
                elif on_skip and (is_supported(entry.name) or entry.is_symlink()):
                    why = _special(entry)
                    if why:
                        on_skip(entry.path, why)
            except OSError as e:
                if on_skip and e.errno == errno.ELOOP:
                    on_skip(entry.path, "skipped: symlink loop")
                continue
        stack.extend(reversed(subdirs))


def utf8_safe(path: str) -> bool:
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:  # undecodable bytes in the name (os.fsdecode's surrogate escapes)
        return False


def display_path(path: str) -> str:
    """``path`` with bytes that are not UTF-8 shown as \\xNN escapes (safe to store and print)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace") if not utf8_safe(path) else path


class Scanner:
    def __init__(self, catalog: Catalog, hash_workers: int = 2):
        self.catalog = catalog
        self.hash_workers = hash_workers

    def plan(
        self,
        roots: list[Root] | None = None,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
        only_paths: set[str] | None = None,
    ) -> ScanPlan:
        """Diff roots against the catalog. ``only_paths`` limits the diff to those paths (watcher batches)."""
        plan = ScanPlan()
        roots = roots if roots is not None else self.catalog.roots()
        seen_hashes_missing: dict[str, list[tuple[int, str]]] = {}
        candidates: list[FileStat] = []
        all_missing: list[tuple[int, str, str]] = []  # (photo id, path, hash)

        for root in roots:
            if not os.path.isdir(root.path):
                plan.offline_roots.append(root)
                continue
            if not root.online:
                plan.online_roots.append(root)
            known = self.catalog.stat_map(root.id)
            failed_before = self.catalog.failure_map(root.id)
            on_disk: set[str] = set()

            def record_dir_error(path: str, reason: str, _root: Root = root) -> None:
                plan.failed.append((FileStat(display_path(path), _root.id, 0, 0), reason))

            def record_skip(path: str, reason: str, _root: Root = root) -> None:
                plan.skipped.append((FileStat(display_path(path), _root.id, 0, 0), reason))

            for entry in self._entries(root, only_paths, record_dir_error, record_skip):
                if cancel is not None and cancel.is_set():
                    return plan
                path = entry if isinstance(entry, str) else entry.path
                try:
                    st = os.stat(path)
                except OSError:
                    continue  # vanished between listing and stat: it will be seen as removed
                if not stat.S_ISREG(st.st_mode):
                    continue
                if not utf8_safe(path):  # SQLite text cannot hold it: record it under a readable name
                    shown = display_path(path)
                    on_disk.add(shown)
                    if failed_before.get(shown) == (st.st_size, st.st_mtime_ns):
                        plan.skipped_failed += 1
                    else:
                        fs = FileStat(shown, root.id, st.st_size, st.st_mtime_ns)
                        plan.failed.append((fs, "file name is not valid UTF-8; rename the file to index it"))
                    continue
                on_disk.add(path)
                fs = FileStat(path, root.id, st.st_size, st.st_mtime_ns)
                row = known.get(path)
                if row is not None:
                    fs.photo_id = row[0]
                    if row[1] == st.st_size and row[2] == st.st_mtime_ns:
                        plan.unchanged += 1
                        continue
                    fs.old_hash = row[3]
                    candidates.append(fs)
                    continue
                prev = failed_before.get(path)
                if prev is not None and prev == (st.st_size, st.st_mtime_ns):
                    plan.skipped_failed += 1
                    continue
                candidates.append(fs)
                if progress and len(candidates) % 200 == 0:
                    progress("scanning", len(candidates), 0)

            scope = known.keys() if only_paths is None else (p for p in known if p in only_paths)
            for path in scope:
                if path not in on_disk:
                    pid, _, _, h = known[path]
                    all_missing.append((pid, path, h))
            failed_scope = (
                failed_before if only_paths is None else (p for p in failed_before if p in only_paths)
            )
            plan.stale_failures.extend(p for p in failed_scope if p not in on_disk)

        # New files are hashed now only when some catalog paths vanished (a move is possible); otherwise the
        # indexer hashes them from the same read that decodes them, so a first import reads each file once.
        to_hash = candidates if all_missing else [fs for fs in candidates if fs.photo_id is not None]
        self._hash(to_hash, plan, progress, cancel)
        hashed = {id(fs) for fs in to_hash}
        for pid, path, h in all_missing:
            seen_hashes_missing.setdefault(h, []).append((pid, path))

        for fs in candidates:
            if fs.hash is None and id(fs) not in hashed:
                plan.new.append(fs)
                continue
            if fs.hash is None:
                continue  # failed to hash: recorded in plan.failed
            if fs.photo_id is not None:
                (plan.touched if fs.hash == fs.old_hash else plan.changed).append(fs)
                continue
            gone = seen_hashes_missing.get(fs.hash)
            if gone:
                pid, old = gone.pop(0)
                plan.moved.append(Move(pid, old, fs))
            else:
                plan.new.append(fs)
        moved_ids = {m.photo_id for m in plan.moved}
        plan.removed = [pid for pid, _, _ in all_missing if pid not in moved_ids]
        return plan

    def _entries(
        self, root: Root, only_paths: set[str] | None, on_error, on_skip=None
    ) -> Iterator[os.DirEntry | str]:
        if only_paths is None:
            yield from walk_photos(root.path, on_error, on_skip)
            return
        prefix = root.path.rstrip(os.sep) + os.sep
        for p in sorted(only_paths):
            if p.startswith(prefix) and is_supported(p) and os.path.isfile(p):
                rel = p[len(prefix) :]
                if not any(part.startswith(".") for part in rel.split(os.sep)):
                    yield p

    def _hash(self, files: list[FileStat], plan: ScanPlan, progress: Progress | None, cancel) -> None:
        def work(fs: FileStat) -> tuple[FileStat, str | None, str | None]:
            if cancel is not None and cancel.is_set():
                return fs, None, None
            try:
                return fs, file_hash(fs.path), None
            except OSError as e:
                return fs, None, f"cannot read file: {e.strerror or e}"

        with ThreadPoolExecutor(max_workers=self.hash_workers) as pool:
            for n, (fs, h, err) in enumerate(pool.map(work, files), 1):
                fs.hash = h
                if err:
                    plan.failed.append((fs, err))
                if progress and (n % 50 == 0 or n == len(files)):
                    progress("hashing", n, len(files))
