"""``Catalog``: the library's SQLite file with typed methods; roots, photos and per-file failures are here,
vectors, places, text and backups in their own modules (each a part of the one class)."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from .backup import CatalogBackup
from .faces import FaceTables
from .places import PlaceTables
from .records import PHOTO_COLUMNS, SKIPPED_PREFIX, Failure, Photo, Root
from .schema import migrate, schema_db
from .text import TextTables
from .vectors import VectorTables


def _local_ns(iso: str) -> int:
    """An ISO date or date-time (local time, as file dates are shown) as nanoseconds since the epoch."""
    return int(datetime.fromisoformat(iso).timestamp() * 1e9)


def _skipped_filter(skipped: bool | None) -> str:
    if skipped is None:
        return ""
    return f" WHERE reason {'' if skipped else 'NOT '}LIKE '{SKIPPED_PREFIX}%'"


class Catalog(VectorTables, PlaceTables, TextTables, FaceTables, CatalogBackup):
    """Typed access to the library's SQLite file. Safe to share between threads (one lock for writes)."""

    def __init__(self, path: str | Path):
        super().__init__(path)
        migrate(self)

    def table_names(self) -> set[str]:
        return set(schema_db(self._conn).table_names())

    # -- roots -----------------------------------------------------------------------------------
    def add_root(self, path: str) -> Root:
        with self.transaction():
            self._conn.execute(
                "INSERT OR IGNORE INTO roots (path, added_at) VALUES (?, ?)", (path, time.time())
            )
        root = self.root_by_path(path)
        assert root is not None
        return root

    def remove_root(self, root_id: int) -> list[int]:
        """Forget a root and its photos; returns the removed photo ids (for the vector index)."""
        with self.transaction():
            ids = [r[0] for r in self._conn.execute("SELECT id FROM photos WHERE root_id = ?", (root_id,))]
            self._conn.execute("DELETE FROM roots WHERE id = ?", (root_id,))
        return ids

    def roots(self) -> list[Root]:
        rows = self._conn.execute("SELECT id, path, online, last_scan_at FROM roots ORDER BY path").fetchall()
        return [Root(r[0], r[1], bool(r[2]), r[3]) for r in rows]

    def root_by_path(self, path: str) -> Root | None:
        r = self._conn.execute(
            "SELECT id, path, online, last_scan_at FROM roots WHERE path = ?", (path,)
        ).fetchone()
        return Root(r[0], r[1], bool(r[2]), r[3]) if r else None

    def set_root_online(self, root_id: int, online: bool) -> None:
        """An unplugged drive marks its photos offline instead of deleting them."""
        with self.transaction():
            self._conn.execute("UPDATE roots SET online = ? WHERE id = ?", (int(online), root_id))
            self._conn.execute(
                "UPDATE photos SET status = ? WHERE root_id = ?", ("ok" if online else "offline", root_id)
            )

    def merge_root(self, child_id: int, into_id: int) -> None:
        """Fold a root into another that contains it: its photos keep their ids and vectors."""
        with self.transaction():
            self._conn.execute("UPDATE photos SET root_id = ? WHERE root_id = ?", (into_id, child_id))
            self._conn.execute("UPDATE failures SET root_id = ? WHERE root_id = ?", (into_id, child_id))
            self._conn.execute("DELETE FROM roots WHERE id = ?", (child_id,))

    def root_photo_counts(self) -> dict[int, int]:
        """root id -> number of photos (roots without photos are absent)."""
        rows = self._conn.execute("SELECT root_id, count(*) FROM photos GROUP BY root_id")
        return {r[0]: r[1] for r in rows}

    def mark_root_scanned(self, root_id: int) -> None:
        with self._lock:
            self._conn.execute("UPDATE roots SET last_scan_at = ? WHERE id = ?", (time.time(), root_id))

    # -- photos ----------------------------------------------------------------------------------
    def _photo(self, row: sqlite3.Row | tuple) -> Photo:
        return Photo(*row)

    _SELECT = "SELECT " + ", ".join(PHOTO_COLUMNS) + " FROM photos"

    def photo(self, photo_id: int) -> Photo | None:
        r = self._conn.execute(self._SELECT + " WHERE id = ?", (photo_id,)).fetchone()
        return self._photo(r) if r else None

    def photo_by_path(self, path: str) -> Photo | None:
        r = self._conn.execute(self._SELECT + " WHERE path = ?", (path,)).fetchone()
        return self._photo(r) if r else None

    def photos_by_ids(self, ids: Iterable[int]) -> dict[int, Photo]:
        ids = list(ids)
        out: dict[int, Photo] = {}
        for start in range(0, len(ids), 900):
            chunk = ids[start : start + 900]
            q = self._SELECT + f" WHERE id IN ({','.join('?' * len(chunk))})"
            for r in self._conn.execute(q, chunk):
                p = self._photo(r)
                out[p.id] = p
        return out

    def photos_by_hash(self, content_hash: str) -> list[Photo]:
        return [self._photo(r) for r in self._conn.execute(self._SELECT + " WHERE hash = ?", (content_hash,))]

    def photos_by_hashes(self, hashes: Iterable[str]) -> dict[str, list[Photo]]:
        """hash -> its photos (lowest id first): the copies of each content."""
        hashes = list(hashes)
        out: dict[str, list[Photo]] = {}
        for start in range(0, len(hashes), 900):
            chunk = hashes[start : start + 900]
            q = self._SELECT + f" WHERE hash IN ({','.join('?' * len(chunk))}) ORDER BY id"
            for r in self._conn.execute(q, chunk):
                p = self._photo(r)
                out.setdefault(p.hash, []).append(p)
        return out

    def photos_in_root(self, root_id: int) -> list[Photo]:
        return [self._photo(r) for r in self._conn.execute(self._SELECT + " WHERE root_id = ?", (root_id,))]

    def stat_map(self, root_id: int) -> dict[str, tuple[int, int, int, str]]:
        """path -> (id, size, mtime_ns, hash): what the scanner diffs the disk against, in one query."""
        rows = self._conn.execute(
            "SELECT path, id, size, mtime_ns, hash FROM photos WHERE root_id = ?", (root_id,)
        )
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}

    def paths_under(self, folder: str) -> list[str]:
        """Paths of known photos anywhere below ``folder`` (a range scan on the path index, no LIKE)."""
        prefix = folder.rstrip(os.sep) + os.sep
        upper = prefix[:-1] + chr(ord(os.sep) + 1)
        q = "SELECT path FROM photos WHERE path >= ? AND path < ?"
        return [r[0] for r in self._conn.execute(q, (prefix, upper))]

    def paths_with_stem(self, stem: str) -> list[str]:
        """Paths ``stem.<ext>`` (one extension, any case): the files of one camera shot (a range scan)."""
        q = "SELECT path FROM photos WHERE path >= ? AND path < ?"
        rows = self._conn.execute(q, (stem + ".", stem + "/"))
        return [r[0] for r in rows if os.path.splitext(r[0])[0] == stem]

    def photo_ids(self) -> set[int]:
        return {r[0] for r in self._conn.execute("SELECT id FROM photos")}

    def photo_ids_by_path(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self._conn.execute("SELECT path, id FROM photos")}

    def insert_photo(self, photo: Photo) -> int:
        data = photo.as_dict()
        data.pop("id")
        cols = ", ".join(data)
        cur = self._conn.execute(
            f"INSERT INTO photos ({cols}) VALUES ({', '.join('?' * len(data))})", list(data.values())
        )
        return int(cur.lastrowid)

    def update_photo(self, photo_id: int, **fields: object) -> None:
        fields["updated_at"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._conn.execute(f"UPDATE photos SET {sets} WHERE id = ?", [*fields.values(), photo_id])

    def delete_photos(self, ids: Iterable[int]) -> None:
        ids = list(ids)
        for start in range(0, len(ids), 900):
            chunk = ids[start : start + 900]
            self._conn.execute(f"DELETE FROM photos WHERE id IN ({','.join('?' * len(chunk))})", chunk)

    def insert_photos(self, photos: Iterable[Photo]) -> None:
        """Bulk insert (seeding large benchmark libraries); ids are assigned by SQLite."""
        cols = [c for c in PHOTO_COLUMNS if c != "id"]
        q = f"INSERT INTO photos ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        self._conn.executemany(q, ([getattr(p, c) for c in cols] for p in photos))

    def count_photos(self, status: str | None = None) -> int:
        if status:
            return self._conn.execute("SELECT count(*) FROM photos WHERE status = ?", (status,)).fetchone()[0]
        return self._conn.execute("SELECT count(*) FROM photos").fetchone()[0]

    def ids_in_date_range(self, date_from: str | None = None, date_to: str | None = None) -> set[int]:
        """Photos taken in [date_from, date_to] (ISO strings; a bare date is a whole day).

        A photo without an EXIF capture time counts by its file date (local time), as the grid shows and
        sorts it: a date filter never hides such photos just because their camera wrote no date.
        """
        q = "SELECT id FROM photos WHERE taken_at IS NOT NULL"
        f = "SELECT id FROM photos WHERE taken_at IS NULL AND mtime_ns > 0"
        args: list[object] = []
        fargs: list[object] = []
        if date_from:
            q += " AND taken_at >= ?"
            args.append(date_from)
            f += " AND mtime_ns >= ?"
            fargs.append(_local_ns(date_from))
        if date_to:
            end = date_to + "T23:59:59.999999" if len(date_to) == 10 else date_to
            q += " AND taken_at <= ?"
            args.append(end)
            f += " AND mtime_ns <= ?"
            fargs.append(_local_ns(end))
        ids = {r[0] for r in self._conn.execute(q, args)}
        return ids | {r[0] for r in self._conn.execute(f, fargs)}

    def timeline(self) -> list[tuple[int, str]]:
        """(id, day) of every photo, newest first: the capture day, else the file's local date ("" if none)."""
        q = (
            "SELECT id, COALESCE(substr(taken_at, 1, 10), "
            "date(mtime_ns / 1000000000, 'unixepoch', 'localtime'), '') AS day FROM photos "
            "ORDER BY day DESC, taken_at DESC, id DESC"
        )
        return [(r[0], r[1]) for r in self._conn.execute(q)]

    def date_range(self, file_dates: bool = False) -> tuple[str | None, str | None]:
        """Earliest and latest EXIF capture time in the library (None, None without any); with
        ``file_dates`` photos without one count by their file date (the span a date filter should cover)."""
        q = "SELECT min(taken_at), max(taken_at) FROM photos WHERE taken_at IS NOT NULL"
        row = self._conn.execute(q).fetchone()
        lo, hi = row[0], row[1]
        if file_dates:
            q = "SELECT min(mtime_ns), max(mtime_ns) FROM photos WHERE taken_at IS NULL AND mtime_ns > 0"
            frow = self._conn.execute(q).fetchone()
            if frow[0] is not None:
                flo = datetime.fromtimestamp(frow[0] / 1e9).isoformat(timespec="seconds")
                fhi = datetime.fromtimestamp(frow[1] / 1e9).isoformat(timespec="seconds")
                lo = flo if lo is None else min(lo, flo)
                hi = fhi if hi is None else max(hi, fhi)
        return lo, hi

    # -- failures --------------------------------------------------------------------------------
    def record_failure(
        self, path: str, root_id: int | None, reason: str, size: int | None, mtime_ns: int | None
    ):
        self._conn.execute(
            "INSERT OR REPLACE INTO failures (path, root_id, size, mtime_ns, reason, failed_at) VALUES (?,?,?,?,?,?)",
            (path, root_id, size, mtime_ns, reason, time.time()),
        )

    def clear_failure(self, path: str) -> None:
        self._conn.execute("DELETE FROM failures WHERE path = ?", (path,))

    def failure_map(self, root_id: int) -> dict[str, tuple[int | None, int | None]]:
        rows = self._conn.execute("SELECT path, size, mtime_ns FROM failures WHERE root_id = ?", (root_id,))
        return {r[0]: (r[1], r[2]) for r in rows}

    def failures(self, limit: int | None = None, skipped: bool | None = None) -> list[Failure]:
        """Failed files; ``skipped`` True/False: only / no special files passed over on purpose."""
        q = "SELECT path, reason, size, mtime_ns, failed_at FROM failures" + _skipped_filter(skipped)
        q += " ORDER BY path"
        if limit:
            q += f" LIMIT {int(limit)}"
        return [Failure(*r) for r in self._conn.execute(q)]

    def count_failures(self, skipped: bool | None = None) -> int:
        return self._conn.execute("SELECT count(*) FROM failures" + _skipped_filter(skipped)).fetchone()[0]
