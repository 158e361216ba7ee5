"""The catalog: one SQLite file per library, the source of truth, and the only module that speaks SQL.

Photos, roots, per-file failures and per-model embeddings live here; the hnswlib index is derived
from the ``embeddings`` table and can always be rebuilt from it. Every multi-row change runs in one
transaction so a crash leaves either the old or the new state, never half of it. The connection is
private: other modules ask ``Catalog`` methods, so every write goes through its lock. sqlite-utils
does only schema work that never commits on its own (introspection, ``create_index``); CASCADE tables,
FTS5 tables with triggers and every query stay plain ``sqlite3``: sqlite-utils can't express cascades, and
its write helpers commit by themselves (``with conn:`` / ``executescript``), which the connection refuses.
Over 600 lines because it is, by design, the only room with SQL: every query of every pass is here.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from .errors import RetllmError

SCHEMA_VERSION = 4

PHOTO_COLUMNS = (
    "id",
    "root_id",
    "path",
    "size",
    "mtime_ns",
    "hash",
    "width",
    "height",
    "format",
    "taken_at",
    "camera_make",
    "camera_model",
    "gps_lat",
    "gps_lon",
    "orientation",
    "status",
    "added_at",
    "updated_at",
)


def _schema(db: Any) -> sqlite_utils.Database:
    """sqlite-utils over the open connection, for transaction-neutral calls only (see module docstring).

    No ``recursive_triggers`` pragma (it would change how REPLACE fires delete triggers) and no plugins:
    wrapping the connection executes nothing, so a read-only open stays read-only."""
    return sqlite_utils.Database(db, recursive_triggers=False, execute_plugins=False)


def _migration_1(db: sqlite3.Connection) -> None:
    db.execute(
        """CREATE TABLE roots (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,
            added_at REAL NOT NULL,
            online INTEGER NOT NULL DEFAULT 1,
            last_scan_at REAL
        )"""
    )
    db.execute(
        """CREATE TABLE photos (
            id INTEGER PRIMARY KEY,
            root_id INTEGER NOT NULL REFERENCES roots(id) ON DELETE CASCADE,
            path TEXT NOT NULL UNIQUE,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            hash TEXT NOT NULL,
            width INTEGER, height INTEGER, format TEXT,
            taken_at TEXT, camera_make TEXT, camera_model TEXT,
            gps_lat REAL, gps_lon REAL, orientation INTEGER,
            status TEXT NOT NULL DEFAULT 'ok',
            added_at REAL NOT NULL,
            updated_at REAL NOT NULL
        )"""
    )
    db.execute("CREATE INDEX photos_root ON photos(root_id)")
    db.execute("CREATE INDEX photos_hash ON photos(hash)")
    db.execute("CREATE INDEX photos_taken ON photos(taken_at)")
    db.execute(
        """CREATE TABLE embeddings (
            photo_id INTEGER NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
            model TEXT NOT NULL,
            dim INTEGER NOT NULL,
            vector BLOB NOT NULL,
            PRIMARY KEY (photo_id, model)
        )"""
    )
    db.execute("CREATE INDEX embeddings_model ON embeddings(model)")
    db.execute(
        """CREATE TABLE failures (
            path TEXT PRIMARY KEY,
            root_id INTEGER REFERENCES roots(id) ON DELETE CASCADE,
            size INTEGER, mtime_ns INTEGER,
            reason TEXT NOT NULL,
            failed_at REAL NOT NULL
        )"""
    )


def _migration_2(db: sqlite3.Connection) -> None:
    # Vectors written since the model's index file was last saved (see Library._load_index).
    db.execute(
        "CREATE TABLE index_journal (photo_id INTEGER NOT NULL, model TEXT NOT NULL, "
        "PRIMARY KEY (photo_id, model)) WITHOUT ROWID"
    )


def _migration_places(db: sqlite3.Connection) -> None:
    # Where each photo with GPS was taken (places.py); lat/lon/gazetteer say what it was computed from, so a
    # changed fix or a new gazetteer is redone. A row with no country: the fix is at sea / at a pole.
    db.execute(
        """CREATE TABLE IF NOT EXISTS photo_places (
            photo_id INTEGER PRIMARY KEY REFERENCES photos(id) ON DELETE CASCADE,
            lat REAL NOT NULL, lon REAL NOT NULL, gazetteer TEXT NOT NULL,
            city_id INTEGER, city TEXT, region_code TEXT, region TEXT,
            country_code TEXT, country TEXT, distance_km REAL
        )"""
    )
    schema = _schema(db)
    places = schema.table("photo_places")
    for name, column in (("city", "city_id"), ("region", "region_code"), ("country", "country_code")):
        places.create_index([column], index_name=f"photo_places_{name}", if_not_exists=True)
    schema.table("photos").create_index(["gps_lat", "gps_lon"], index_name="photos_gps", if_not_exists=True)


def _migration_text(db: sqlite3.Connection) -> None:
    # The text pass (OCR). Keyed by content hash: a moved or copied photo keeps its text, a changed one
    # (new hash) is read again. ``lines`` is JSON (text, confidence, box and words with boxes per line).
    # The FTS5 index folds case and diacritics ("cafe" finds "Café") and supports prefix queries. A
    # trigram index over ``squashed`` (folded, without spaces and punctuation) finds words inside
    # run-together text ("exit" in "EMERGENCYEXIT": OCR often drops the space between capitals).
    db.execute(
        """CREATE TABLE IF NOT EXISTS photo_text (
            hash TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            has_text INTEGER NOT NULL,
            text TEXT NOT NULL,
            squashed TEXT NOT NULL,
            lines TEXT NOT NULL,
            read_at REAL NOT NULL
        )"""
    )
    db.execute(
        "CREATE VIRTUAL TABLE IF NOT EXISTS photo_text_fts USING fts5(text, content='photo_text', "
        "content_rowid='rowid', tokenize='unicode61 remove_diacritics 2')"
    )
    db.execute(
        "CREATE VIRTUAL TABLE IF NOT EXISTS photo_text_sub USING fts5(squashed, content='photo_text', "
        "content_rowid='rowid', tokenize='trigram')"
    )
    db.execute(
        "CREATE TRIGGER IF NOT EXISTS photo_text_ai AFTER INSERT ON photo_text BEGIN "
        "INSERT INTO photo_text_fts(rowid, text) VALUES (new.rowid, new.text); "
        "INSERT INTO photo_text_sub(rowid, squashed) VALUES (new.rowid, new.squashed); END"
    )
    db.execute(
        "CREATE TRIGGER IF NOT EXISTS photo_text_ad AFTER DELETE ON photo_text BEGIN "
        "INSERT INTO photo_text_fts(photo_text_fts, rowid, text) VALUES ('delete', old.rowid, old.text); "
        "INSERT INTO photo_text_sub(photo_text_sub, rowid, squashed) VALUES ('delete', old.rowid, old.squashed); END"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS text_failures (hash TEXT PRIMARY KEY, path TEXT NOT NULL, "
        "reason TEXT NOT NULL, failed_at REAL NOT NULL)"
    )


MIGRATIONS = [_migration_1, _migration_2, _migration_places, _migration_text]


@dataclass
class Root:
    id: int
    path: str
    online: bool
    last_scan_at: float | None


@dataclass
class Photo:
    id: int
    root_id: int
    path: str
    size: int
    mtime_ns: int
    hash: str
    width: int | None = None
    height: int | None = None
    format: str | None = None
    taken_at: str | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    gps_lat: float | None = None
    gps_lon: float | None = None
    orientation: int | None = None
    status: str = "ok"
    added_at: float = 0.0
    updated_at: float = 0.0

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in PHOTO_COLUMNS}


@dataclass
class PlaceCount:
    """One entry of the Places list: a city, region or country and how many photos were taken there."""

    key: str  # "city:<geonameid>", "region:US.TX", "country:PT" (what search filters on)
    kind: str
    name: str
    country: str | None
    region: str | None
    photos: int


@dataclass
class Failure:
    path: str
    reason: str
    size: int | None
    mtime_ns: int | None
    failed_at: float


SKIPPED_PREFIX = "skipped: "  # failures rows for special files the scanner passes over on purpose


def _skipped_filter(skipped: bool | None) -> str:
    if skipped is None:
        return ""
    return f" WHERE reason {'' if skipped else 'NOT '}LIKE '{SKIPPED_PREFIX}%'"


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


class _GuardedConnection:
    """The catalog's connection, with corruption reported as :class:`CatalogDamagedError` wherever it shows."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.raw, self._path = conn, path

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        try:
            return self.raw.execute(sql, params)
        except sqlite3.DatabaseError as e:
            if is_damage(e):
                raise CatalogDamagedError(self._path, e) from e
            raise

    def executemany(self, sql: str, rows: Any) -> sqlite3.Cursor:
        try:
            return self.raw.executemany(sql, rows)
        except sqlite3.DatabaseError as e:
            if is_damage(e):
                raise CatalogDamagedError(self._path, e) from e
            raise

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


class Catalog:
    """Typed access to the library's SQLite file. Safe to share between threads (one lock for writes)."""

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
        self._conn: Any = _GuardedConnection(conn, self.path)
        self._lock = threading.RLock()
        self._migrate()

    # -- lifecycle -------------------------------------------------------------------------------
    def _migrate(self) -> None:
        try:  # a current catalog is only read: opening never writes (a full disk must not stop a search)
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is not None and int(row[0]) == SCHEMA_VERSION:
                return
        except sqlite3.OperationalError:  # no meta table yet: a new catalog
            pass
        with self.transaction():
            self._conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            version = int(self.get_meta("schema_version", "0"))
            if version > SCHEMA_VERSION:
                raise CatalogError(
                    f"catalog {self.path} was written by a newer RetLLM Desktop (schema {version}); please upgrade"
                )
            for i in range(version, SCHEMA_VERSION):
                MIGRATIONS[i](self._conn)
            self.set_meta("schema_version", str(SCHEMA_VERSION))

    def close(self) -> None:
        with self._lock:
            try:
                wrote = self._conn.total_changes
            except sqlite3.ProgrammingError:  # closed already
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

    # -- backups ---------------------------------------------------------------------------------
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

    @staticmethod
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

    @staticmethod
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

    def integrity_check(self) -> str:
        return self._conn.execute("PRAGMA integrity_check").fetchone()[0]

    def journal_mode(self) -> str:
        return self._conn.execute("PRAGMA journal_mode").fetchone()[0]

    def table_names(self) -> set[str]:
        return set(_schema(self._conn).table_names())

    # -- meta ------------------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

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
        """Photos whose EXIF capture time lies in [date_from, date_to] (ISO strings; a bare date is a whole day)."""
        q = "SELECT id FROM photos WHERE taken_at IS NOT NULL"
        args: list[object] = []
        if date_from:
            q += " AND taken_at >= ?"
            args.append(date_from)
        if date_to:
            q += " AND taken_at <= ?"
            args.append(date_to + "T23:59:59.999999" if len(date_to) == 10 else date_to)
        return {r[0] for r in self._conn.execute(q, args)}

    def timeline(self) -> list[tuple[int, str]]:
        """(id, day) of every photo, newest first: the capture day, else the file's local date ("" if none)."""
        q = (
            "SELECT id, COALESCE(substr(taken_at, 1, 10), "
            "date(mtime_ns / 1000000000, 'unixepoch', 'localtime'), '') AS day FROM photos "
            "ORDER BY day DESC, taken_at DESC, id DESC"
        )
        return [(r[0], r[1]) for r in self._conn.execute(q)]

    def date_range(self) -> tuple[str | None, str | None]:
        """Earliest and latest EXIF capture time in the library (None, None without any)."""
        q = "SELECT min(taken_at), max(taken_at) FROM photos WHERE taken_at IS NOT NULL"
        row = self._conn.execute(q).fetchone()
        return row[0], row[1]

    # -- embeddings ------------------------------------------------------------------------------
    def put_embedding(self, photo_id: int, model: str, vector: np.ndarray) -> None:
        v = np.ascontiguousarray(vector, dtype=np.float32)
        self._conn.execute(
            "INSERT OR REPLACE INTO embeddings (photo_id, model, dim, vector) VALUES (?, ?, ?, ?)",
            (photo_id, model, int(v.shape[0]), v.tobytes()),
        )

    def put_embeddings(self, ids: Iterable[int], model: str, vectors: np.ndarray) -> None:
        """Bulk form of ``put_embedding`` (one row of ``vectors`` per id)."""
        v = np.ascontiguousarray(vectors, dtype=np.float32)
        rows = ((int(i), model, int(v.shape[1]), v[n].tobytes()) for n, i in enumerate(ids))
        self._conn.executemany(
            "INSERT OR REPLACE INTO embeddings (photo_id, model, dim, vector) VALUES (?, ?, ?, ?)", rows
        )

    def embedding(self, photo_id: int, model: str) -> np.ndarray | None:
        r = self._conn.execute(
            "SELECT vector FROM embeddings WHERE photo_id = ? AND model = ?", (photo_id, model)
        ).fetchone()
        return np.frombuffer(r[0], dtype=np.float32).copy() if r else None

    def embedding_ids(self, model: str) -> set[int]:
        return {r[0] for r in self._conn.execute("SELECT photo_id FROM embeddings WHERE model = ?", (model,))}

    def iter_embeddings(self, model: str, ids: Iterable[int] | None = None, batch: int = 4096):
        """Yield (ids array, vectors matrix) chunks: rebuilding the index never loads everything at once."""
        if ids is None:
            cur = self._conn.execute("SELECT photo_id, vector FROM embeddings WHERE model = ?", (model,))
            rows_iter: Iterable = iter(lambda: cur.fetchmany(batch), [])
        else:
            id_list = list(ids)

            def gen():
                for s in range(0, len(id_list), 900):
                    chunk = id_list[s : s + 900]
                    q = f"SELECT photo_id, vector FROM embeddings WHERE model = ? AND photo_id IN ({','.join('?' * len(chunk))})"
                    yield self._conn.execute(q, [model, *chunk]).fetchall()

            rows_iter = gen()
        for rows in rows_iter:
            if not rows:
                continue
            yield (
                np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
                np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows]),
            )

    def journal_add(self, ids: Iterable[int], model: str) -> None:
        """Note vectors the on-disk index does not have yet (call inside the transaction that writes them)."""
        self._conn.executemany(
            "INSERT OR IGNORE INTO index_journal (photo_id, model) VALUES (?, ?)",
            [(int(i), model) for i in ids],
        )

    def journal_ids(self, model: str) -> set[int]:
        q = "SELECT photo_id FROM index_journal WHERE model = ?"
        return {r[0] for r in self._conn.execute(q, (model,))}

    def clear_journal(self, model: str) -> None:
        with self.transaction():  # a full disk here is the same clear error as anywhere else
            self._conn.execute("DELETE FROM index_journal WHERE model = ?", (model,))

    def embedding_models(self) -> dict[str, int]:
        return dict(self._conn.execute("SELECT model, count(*) FROM embeddings GROUP BY model").fetchall())

    def embedding_dims(self, model: str) -> set[int]:
        return {
            r[0] for r in self._conn.execute("SELECT DISTINCT dim FROM embeddings WHERE model = ?", (model,))
        }

    def rename_embedding_model(self, old: str, new: str) -> int:
        """Move ``old``'s vectors (and index journal) to the key ``new`` in one transaction; returns how many."""
        with self.transaction():
            n = self._conn.execute("UPDATE embeddings SET model = ? WHERE model = ?", (new, old)).rowcount
            self._conn.execute("UPDATE OR IGNORE index_journal SET model = ? WHERE model = ?", (new, old))
            self._conn.execute("DELETE FROM index_journal WHERE model = ?", (old,))
        return n

    def embeddings_complete(self, model: str) -> bool:
        """Every online photo has a ``model`` vector (offline photos cannot be embedded now)."""
        have = self._conn.execute("SELECT count(*) FROM embeddings WHERE model = ?", (model,)).fetchone()[0]
        if have >= self.count_photos():
            return True
        q = (
            "SELECT 1 FROM photos p WHERE p.status = 'ok' AND NOT EXISTS "
            "(SELECT 1 FROM embeddings e WHERE e.photo_id = p.id AND e.model = ?) LIMIT 1"
        )
        return self._conn.execute(q, (model,)).fetchone() is None

    def ids_missing_embedding(self, model: str) -> list[int]:
        q = "SELECT id FROM photos WHERE id NOT IN (SELECT photo_id FROM embeddings WHERE model = ?)"
        return [r[0] for r in self._conn.execute(q, (model,))]

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

    # -- places ----------------------------------------------------------------------------------
    def photos_needing_places(self, gazetteer_version: str) -> list[tuple[int, float, float]]:
        """(id, lat, lon) of photos with GPS but no place yet, or one computed from another fix or gazetteer."""
        q = (
            "SELECT p.id, p.gps_lat, p.gps_lon FROM photos p LEFT JOIN photo_places pl ON pl.photo_id = p.id "
            "WHERE p.gps_lat IS NOT NULL AND p.gps_lon IS NOT NULL AND (pl.photo_id IS NULL "
            "OR pl.lat IS NOT p.gps_lat OR pl.lon IS NOT p.gps_lon OR pl.gazetteer IS NOT ?)"
        )
        return [(r[0], r[1], r[2]) for r in self._conn.execute(q, (gazetteer_version,))]

    def put_places(
        self, rows: Iterable[tuple[int, float, float, object | None]], gazetteer_version: str
    ) -> int:
        """Store ``(photo_id, lat, lon, places.Place | None)`` rows in one transaction; drops places of photos
        whose GPS is gone. Returns how many rows were written."""
        data = []
        for pid, lat, lon, p in rows:
            fields = (
                (p.city_id, p.city, p.region_code, p.region, p.country_code, p.country, p.distance_km)  # type: ignore[attr-defined]
                if p is not None
                else (None,) * 7
            )
            data.append((pid, lat, lon, gazetteer_version, *fields))
        with self.transaction():
            self._conn.executemany(
                "INSERT OR REPLACE INTO photo_places (photo_id, lat, lon, gazetteer, city_id, city, region_code, "
                "region, country_code, country, distance_km) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                data,
            )
            self._conn.execute(
                "DELETE FROM photo_places WHERE photo_id IN (SELECT id FROM photos WHERE gps_lat IS NULL)"
            )
        return len(data)

    def place_of(self, photo_id: int) -> dict | None:
        r = self._conn.execute(
            "SELECT city, region, country, country_code, city_id, region_code FROM photo_places "
            "WHERE photo_id = ? AND country_code IS NOT NULL",
            (photo_id,),
        ).fetchone()
        if r is None:
            return None
        keys = ("city", "region", "country", "country_code", "city_id", "region_code")
        return dict(zip(keys, r, strict=True))

    def place_counts(self) -> list[PlaceCount]:
        """Cities, regions and countries with photos, most photos first (for the Places list and queries)."""
        out: list[PlaceCount] = []
        q = (
            "SELECT city_id, city, region, country, count(*) FROM photo_places WHERE city_id IS NOT NULL "
            "GROUP BY city_id ORDER BY count(*) DESC, city"
        )
        for cid, city, region, country, n in self._conn.execute(q):
            out.append(PlaceCount(f"city:{cid}", "city", city, country, region, n))
        q = (
            "SELECT region_code, region, country, count(*) FROM photo_places WHERE region IS NOT NULL "
            "GROUP BY region_code ORDER BY count(*) DESC, region"
        )
        for code, region, country, n in self._conn.execute(q):
            out.append(PlaceCount(f"region:{code}", "region", region, country, None, n))
        q = (
            "SELECT country_code, country, count(*) FROM photo_places WHERE country_code IS NOT NULL "
            "GROUP BY country_code ORDER BY count(*) DESC, country"
        )
        for code, country, n in self._conn.execute(q):
            out.append(PlaceCount(f"country:{code}", "country", country, None, None, n))
        return out

    def ids_in_place(self, key: str) -> set[int]:
        """Photos whose stored place is ``key`` ("city:<id>", "region:<CC.code>", "country:<CC>")."""
        kind, _, value = key.partition(":")
        column = {"city": "city_id", "region": "region_code", "country": "country_code"}.get(kind)
        if column is None or not value:
            return set()
        arg: object = int(value) if kind == "city" else value
        return {
            r[0] for r in self._conn.execute(f"SELECT photo_id FROM photo_places WHERE {column} = ?", (arg,))
        }

    def gps_in_box(
        self, lat0: float, lat1: float, lon0: float, lon1: float
    ) -> list[tuple[int, float, float]]:
        """(id, lat, lon) of photos whose GPS lies in the box (the caller refines by exact distance)."""
        q = "SELECT id, gps_lat, gps_lon FROM photos WHERE gps_lat BETWEEN ? AND ? AND gps_lon BETWEEN ? AND ?"
        return [(r[0], r[1], r[2]) for r in self._conn.execute(q, (lat0, lat1, lon0, lon1))]

    # -- text (the OCR pass) ---------------------------------------------------------------------
    def text_pending(self, limit: int | None = None) -> list[tuple[str, str]]:
        """(hash, path) of online photos whose content has not been read yet (one path per content)."""
        q = (
            "SELECT p.hash, min(p.path) FROM photos p WHERE p.status = 'ok' AND p.hash != '' "
            "AND NOT EXISTS (SELECT 1 FROM photo_text t WHERE t.hash = p.hash) "
            "AND NOT EXISTS (SELECT 1 FROM text_failures f WHERE f.hash = p.hash) "
            "GROUP BY p.hash ORDER BY min(p.id)"
        )
        if limit:
            q += f" LIMIT {int(limit)}"
        return [(r[0], r[1]) for r in self._conn.execute(q)]

    def put_text(self, content_hash: str, model: str, text: str, squashed: str, lines_json: str) -> None:
        """Store one photo's text (call inside a transaction; the FTS indexes follow by trigger)."""
        self._conn.execute("DELETE FROM photo_text WHERE hash = ?", (content_hash,))
        self._conn.execute(
            "INSERT INTO photo_text (hash, model, has_text, text, squashed, lines, read_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (content_hash, model, int(bool(text.strip())), text, squashed, lines_json, time.time()),
        )
        self._conn.execute("DELETE FROM text_failures WHERE hash = ?", (content_hash,))

    def record_text_failure(self, content_hash: str, path: str, reason: str) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO text_failures (hash, path, reason, failed_at) VALUES (?, ?, ?, ?)",
            (content_hash, path, reason, time.time()),
        )

    def prune_texts(self) -> int:
        """Forget text and failures of content no photo has any more (deleted or changed photos)."""
        with self.transaction():
            n = self._conn.execute(
                "DELETE FROM photo_text WHERE hash NOT IN (SELECT hash FROM photos)"
            ).rowcount
            self._conn.execute("DELETE FROM text_failures WHERE hash NOT IN (SELECT hash FROM photos)")
        return n

    def text_counts(self) -> dict[str, int]:
        """Photos read, photos holding text, photos whose reading failed, photos still to read."""
        row = self._conn.execute(
            "SELECT count(t.hash), coalesce(sum(t.has_text), 0), count(f.hash), "
            "sum(CASE WHEN t.hash IS NULL AND f.hash IS NULL AND p.status = 'ok' THEN 1 ELSE 0 END) "
            "FROM photos p LEFT JOIN photo_text t ON t.hash = p.hash "
            "LEFT JOIN text_failures f ON f.hash = p.hash"
        ).fetchone()
        return {"read": row[0], "with_text": row[1], "failed": row[2], "pending": row[3] or 0}

    def text_failures(self, limit: int | None = None) -> list[tuple[str, str]]:
        q = "SELECT path, reason FROM text_failures ORDER BY path"
        if limit:
            q += f" LIMIT {int(limit)}"
        return [(r[0], r[1]) for r in self._conn.execute(q)]

    def search_text(
        self, fts_query: str, substrings: Iterable[str] = (), limit: int = 200
    ) -> list[tuple[str, float, str]]:
        """(hash, bm25 — lower is better, text) of contents matching an FTS5 query, best first; then
        contents whose squashed text contains one of ``substrings`` (bm25 0.0)."""
        q = (
            "SELECT t.hash, bm25(photo_text_fts), t.text FROM photo_text_fts "
            "JOIN photo_text t ON t.rowid = photo_text_fts.rowid "
            "WHERE photo_text_fts MATCH ? ORDER BY bm25(photo_text_fts) LIMIT ?"
        )
        out: dict[str, tuple[str, float, str]] = {}
        try:
            for r in self._conn.execute(q, (fts_query, int(limit))):
                out[r[0]] = (r[0], float(r[1]), r[2])
        except sqlite3.OperationalError:  # a query FTS5 cannot parse: no text matches, never an error
            pass
        subs = [x for x in substrings if len(x) >= 3]
        if subs:
            sub_query = " OR ".join('"' + x.replace('"', "") + '"' for x in subs)
            q = (
                "SELECT t.hash, t.text FROM photo_text_sub JOIN photo_text t ON t.rowid = photo_text_sub.rowid "
                "WHERE photo_text_sub MATCH ? LIMIT ?"
            )
            try:
                for r in self._conn.execute(q, (sub_query, int(limit))):
                    out.setdefault(r[0], (r[0], 0.0, r[1]))
            except sqlite3.OperationalError:
                pass
        return list(out.values())

    def texts(self, hashes: Iterable[str]) -> dict[str, tuple[str, str]]:
        """hash -> (text, lines JSON) for the given contents (those that were read)."""
        hashes = list(hashes)
        out: dict[str, tuple[str, str]] = {}
        for start in range(0, len(hashes), 900):
            chunk = hashes[start : start + 900]
            q = f"SELECT hash, text, lines FROM photo_text WHERE hash IN ({','.join('?' * len(chunk))})"
            for r in self._conn.execute(q, chunk):
                out[r[0]] = (r[1], r[2])
        return out

    def text_bytes(self) -> int:
        """Bytes the text tables and their FTS index take in the catalog (dbstat when available)."""
        try:
            q = "SELECT sum(pgsize) FROM dbstat WHERE name LIKE 'photo_text%' OR name LIKE 'text_failures%'"
            return int(self._conn.execute(q).fetchone()[0] or 0)
        except sqlite3.OperationalError:
            return 0
