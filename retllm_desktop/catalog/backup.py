"""Catalog backups and salvage: a checked online copy, a file check, and the folders a damaged file still shows.

``repair.py`` decides when and which generation; this module only speaks SQLite to make and read copies.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from .connection import CatalogConnection, CatalogDamagedError, is_damage


class CatalogBackup(CatalogConnection):
    """The online backup of the open catalog (readers and this connection keep working meanwhile)."""

    def backup_to(self, dest: Path) -> None:
        """A consistent copy of the catalog at ``dest`` (SQLite's online backup API: readers and this
        connection keep working); checked before it replaces ``dest``, so a bad copy never does."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.unlink(missing_ok=True)
        target = sqlite3.connect(str(tmp))
        try:
            with self._lock:
                self._conn.raw.backup(target)
            target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            ok = target.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as e:
            target.close()
            tmp.unlink(missing_ok=True)
            if is_damage(e):
                raise CatalogDamagedError(self.path, e) from e
            raise (self._storage_error(e) if isinstance(e, sqlite3.OperationalError) else None) or e from e
        target.close()
        if ok != "ok":
            tmp.unlink(missing_ok=True)
            raise CatalogDamagedError(self.path, f"the backup copy failed its check: {ok}")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)


def check_file(path: Path, readonly: bool = True) -> str | None:
    """None when the SQLite file at ``path`` passes ``PRAGMA quick_check``, else why not.

    ``readonly=False`` for a live WAL catalog (its -shm may need creating; the caller holds the lock).
    """
    if not Path(path).is_file():
        return "missing"
    try:
        uri = Path(path).resolve().as_uri() + ("?mode=ro" if readonly else "")
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as e:
        return str(e)
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
        bad = [r[0] for r in rows if r[0] != "ok"]
        if bad:
            return "; ".join(bad[:3])
        conn.execute("SELECT count(*) FROM photos").fetchone()
        return None
    except sqlite3.Error as e:
        return str(e)
    finally:
        conn.close()


def salvage_roots(path: Path) -> list[str]:
    """The folder paths a damaged catalog still shows (its roots table), for a rebuild from the photos."""
    try:
        conn = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error:
        return []
    try:
        return [r[0] for r in conn.execute("SELECT path FROM roots ORDER BY path")]
    except sqlite3.Error:
        return []
    finally:
        conn.close()
