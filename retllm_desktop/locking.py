"""One writer per library: an OS file lock that dies with its process (no stale lock after kill -9)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from .errors import LibraryLockedError

if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


class WriterLock:
    """Re-entrant within a thread; a second process gets :class:`LibraryLockedError` with the holder's pid.

    Threads of one process (GUI indexing + folder watcher) take turns: ``acquire()`` waits for the other
    thread, ``acquire(blocking=False)`` raises :class:`LibraryLockedError` instead.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd: int | None = None
        self._depth = 0
        self._thread_lock = threading.RLock()

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, blocking: bool = True) -> None:
        if not self._thread_lock.acquire(blocking=blocking):
            raise LibraryLockedError("this library is being updated by another task of this app; try again")
        try:
            self._acquire_file()
        except BaseException:
            self._thread_lock.release()
            raise

    def _acquire_file(self) -> None:
        if self._fd is not None:
            self._depth += 1
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            try:
                holder = os.read(fd, 32).decode(errors="ignore").strip() or "?"
            finally:
                os.close(fd)
            who = (
                "another open copy of this library in this program"
                if holder == str(os.getpid())
                else f"another RetLLM Desktop process (pid {holder})"
            )
            raise LibraryLockedError(
                f"{who} is updating this library; searching still works — try indexing again when it has finished"
            )
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        self._depth = 1

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self._depth -= 1
            if self._depth > 0:
                return
            fd, self._fd = self._fd, None
            try:
                _unlock(fd)
            finally:
                os.close(fd)
        finally:
            self._thread_lock.release()

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
