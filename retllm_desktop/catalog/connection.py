"""The catalog's one SQLite connection: opened in WAL mode, guarded, committed only through ``transaction()``.

Corruption shows as :class:`CatalogDamagedError` wherever SQLite reports it; a full or read-only disk as a
clear :class:`CatalogError` with the last committed state kept. Every group of catalog queries builds on
:class:`CatalogConnection`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import RetllmError


class CatalogError(RetllmError):
    pass


class CatalogDamagedError(CatalogError):
    """The catalog file is corrupt (a damaged page); ``retllm-desktop repair`` restores it."""

    def __init__(self, path: Path, detail: object):
        super().__init__(
            f"the library catalog {path} is damaged ({detail}); run `retllm-desktop repair --library "
            f"{path.parent}` to restore it from its backup (your photos are not affected)"
        )
        self.path = path


def is_damage(e: BaseException) -> bool:
    """SQLite's words for a corrupt file (SQLITE_CORRUPT / SQLITE_NOTADB), not for a busy or full disk."""
    if not isinstance(e, sqlite3.DatabaseError) or isinstance(e, sqlite3.IntegrityError):
        return False
    text = str(e).lower()
    return "malformed" in text or "not a database" in text or "corrupt" in text


class GuardedConnection:
    """The catalog's connection, with corruption reported as :class:`CatalogDamagedError` wherever it shows."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.raw, self._path = conn, path
        # Statements running on other threads: closing under one of them frees what its C code still
        # uses (a segfault, not an exception), so close() waits for them and later statements are refused.
        self._in_use = threading.Condition()
        self._running = 0
        self._closed = False

    @contextmanager
    def _statement(self) -> Iterator[None]:
        with self._in_use:
            if self._closed:
                raise CatalogError("the library was closed")
            self._running += 1
        try:
            yield
        except sqlite3.DatabaseError as e:
            if is_damage(e):
                raise CatalogDamagedError(self._path, e) from e
            raise
        finally:
            with self._in_use:
                self._running -= 1
                self._in_use.notify_all()

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        with self._statement():
            return self.raw.execute(sql, params)

    def executemany(self, sql: str, rows: Any) -> sqlite3.Cursor:
        with self._statement():
            return self.raw.executemany(sql, rows)

    def close(self, timeout_s: float = 60.0) -> None:
        """Refuse new statements, wait for the running ones (other threads), then close the file."""
        with self._in_use:
            self._closed = True
            self._in_use.wait_for(lambda: self._running == 0, timeout_s)
        self.raw.close()

    # Refused so that nothing (a sqlite-utils helper included) can commit half of a transaction:
    # ``with conn:`` commits on exit and ``executescript`` commits before it runs.
    def commit(self) -> None:
        raise CatalogError("the catalog commits only through Catalog.transaction()")

    def executescript(self, sql: str) -> None:
        raise CatalogError("the catalog commits only through Catalog.transaction(), not executescript")

    def __enter__(self) -> None:
        raise CatalogError("the catalog commits only through Catalog.transaction(), not `with conn:`")

    def __exit__(self, *exc: object) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


class CatalogConnection:
    """The open catalog file, its write lock and transactions (safe to share between threads)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(
                str(self.path), check_same_thread=False, timeout=30.0, isolation_level=None
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as e:
            if is_damage(e):
                raise CatalogDamagedError(self.path, e) from e
            raise CatalogError(f"cannot open catalog {self.path}: {e}") from e
        self._conn = GuardedConnection(conn, self.path)
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            try:
                wrote = self._conn.total_changes
            except sqlite3.ProgrammingError:  # closed already
                return
            if self._conn._closed:
                return
            if wrote:  # only a connection that wrote moves its WAL into the file
                try:
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:
                    pass
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit of change (BEGIN IMMEDIATE: writers queue instead of failing mid-way)."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                raise (self._storage_error(e) or e) from e
            try:
                yield
            except BaseException as e:
                if self._conn.in_transaction:  # SQLite may already have rolled back (disk full)
                    self._conn.execute("ROLLBACK")
                if isinstance(e, sqlite3.OperationalError) and (err := self._storage_error(e)):
                    raise err from e
                raise
            else:
                try:
                    self._conn.execute("COMMIT")
                except sqlite3.OperationalError as e:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise (self._storage_error(e) or e) from e

    def _storage_error(self, e: sqlite3.OperationalError) -> CatalogError | None:
        """Disk full / read-only / I/O errors become a clear message; the last committed state is kept."""
        text = str(e).lower()
        if "full" in text:
            why = "the disk is full"
        elif "readonly" in text or "read-only" in text:
            why = "the library folder is read-only"
        elif "disk i/o error" in text:
            why = "the disk could not be written (full or failing?)"
        else:
            return None
        return CatalogError(
            f"cannot save the library catalog {self.path}: {why} ({e}); the previous saved state is kept"
        )

    def change_token(self) -> tuple[int, int]:
        """Changes when anything was committed, by this connection or another process (cheap to ask)."""
        with self._lock:
            return self._conn.total_changes, self._conn.execute("PRAGMA data_version").fetchone()[0]

    def data_version(self) -> int:
        """Changes when another connection (process, or another Library) committed to the catalog."""
        with self._lock:
            return self._conn.execute("PRAGMA data_version").fetchone()[0]

    def integrity_check(self) -> str:
        return self._conn.execute("PRAGMA integrity_check").fetchone()[0]

    def journal_mode(self) -> str:
        return self._conn.execute("PRAGMA journal_mode").fetchone()[0]

    # -- meta ------------------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
