"""The catalog's schema: one migration per version, run in one transaction when a catalog is opened."""

from __future__ import annotations

import sqlite3
from typing import Any

import sqlite_utils

from .connection import CatalogConnection, CatalogError

SCHEMA_VERSION = 5


def schema_db(db: Any) -> sqlite_utils.Database:
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
    # Vectors written since the model's index file was last saved (see IndexKeeper._load_index).
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
    schema = schema_db(db)
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


def _migration_faces(db: sqlite3.Connection) -> None:
    # Faces and people (catalog/faces.py): faces per content hash, people with AUTOINCREMENT ids (never
    # reused), the faces the user said are not a person, and the face pass's failures.
    db.execute(
        """CREATE TABLE IF NOT EXISTS people (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT, folded TEXT,
            hidden INTEGER NOT NULL DEFAULT 0,
            centroid BLOB,
            created_at REAL NOT NULL, updated_at REAL NOT NULL
        )"""
    )
    db.execute(
        """CREATE TABLE IF NOT EXISTS faces (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            hash TEXT NOT NULL,
            x0 REAL NOT NULL, y0 REAL NOT NULL, x1 REAL NOT NULL, y1 REAL NOT NULL,
            score REAL NOT NULL, size_px INTEGER NOT NULL,
            embedding BLOB,
            person_id INTEGER REFERENCES people(id) ON DELETE SET NULL,
            by_user INTEGER NOT NULL DEFAULT 0
        )"""
    )
    db.execute("CREATE INDEX IF NOT EXISTS faces_hash ON faces(hash)")
    db.execute("CREATE INDEX IF NOT EXISTS faces_person ON faces(person_id)")
    db.execute(
        "CREATE TABLE IF NOT EXISTS face_scans (hash TEXT PRIMARY KEY, model TEXT NOT NULL, "
        "faces INTEGER NOT NULL, scanned_at REAL NOT NULL)"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS face_rejects (face_id INTEGER NOT NULL REFERENCES faces(id) ON DELETE CASCADE, "
        "person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE, PRIMARY KEY (face_id, person_id)) "
        "WITHOUT ROWID"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS face_failures (hash TEXT PRIMARY KEY, path TEXT NOT NULL, "
        "reason TEXT NOT NULL, failed_at REAL NOT NULL)"
    )


MIGRATIONS = [_migration_1, _migration_2, _migration_places, _migration_text, _migration_faces]


def migrate(catalog: CatalogConnection) -> None:
    """Bring ``catalog`` to ``SCHEMA_VERSION``; a crash mid-way leaves the old schema (one transaction)."""
    try:  # a current catalog is only read: opening never writes (a full disk must not stop a search)
        row = catalog._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is not None and int(row[0]) == SCHEMA_VERSION:
            return
    except sqlite3.OperationalError:  # no meta table yet: a new catalog
        pass
    with catalog.transaction():
        catalog._conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        version = int(catalog.get_meta("schema_version", "0"))
        if version > SCHEMA_VERSION:
            raise CatalogError(
                f"catalog {catalog.path} was written by a newer RetLLM Desktop (schema {version}); please upgrade"
            )
        for i in range(version, SCHEMA_VERSION):
            MIGRATIONS[i](catalog._conn)
        catalog.set_meta("schema_version", str(SCHEMA_VERSION))
