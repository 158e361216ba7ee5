"""The SQLite catalog: schema versions and migrations, WAL, atomic transactions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from retllm_desktop.catalog import MIGRATIONS, SCHEMA_VERSION, Catalog, CatalogError, Photo


def test_new_catalog_is_current_and_in_wal_mode(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "c.db")
    assert cat.get_meta("schema_version") == str(SCHEMA_VERSION) == str(len(MIGRATIONS))
    assert cat.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {"roots", "photos", "embeddings", "failures", "index_journal"} <= set(cat.db.table_names())
    cat.close()


def test_old_catalog_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.commit()
    conn.close()
    import sqlite_utils

    db = sqlite_utils.Database(path)
    MIGRATIONS[0](db)  # a version-1 catalog with one photo
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.execute("INSERT INTO roots (path, added_at) VALUES ('/p', 0)")
    db.execute(
        "INSERT INTO photos (root_id, path, size, mtime_ns, hash, added_at, updated_at) VALUES (1, '/p/a.jpg', 1, 1, 'h', 0, 0)"
    )
    db.conn.commit()
    db.close()
    cat = Catalog(path)
    assert cat.get_meta("schema_version") == str(SCHEMA_VERSION)
    assert "index_journal" in cat.db.table_names()
    assert cat.photo_by_path("/p/a.jpg").hash == "h"
    cat.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "c.db")
    cat.set_meta("schema_version", str(SCHEMA_VERSION + 1))
    cat.close()
    with pytest.raises(CatalogError, match="newer"):
        Catalog(tmp_path / "c.db")


def test_transaction_is_all_or_nothing(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "c.db")
    root = cat.add_root("/photos")
    with pytest.raises(RuntimeError):
        with cat.transaction():
            pid = cat.insert_photo(Photo(0, root.id, "/photos/a.jpg", 1, 1, "h1"))
            cat.put_embedding(pid, "m", np.ones(4, np.float32))
            raise RuntimeError("crash mid-batch")
    assert cat.count_photos() == 0 and cat.embedding_ids("m") == set()
    with cat.transaction():
        pid = cat.insert_photo(Photo(0, root.id, "/photos/a.jpg", 1, 1, "h1"))
        cat.put_embedding(pid, "m", np.arange(4, dtype=np.float32))
    np.testing.assert_array_equal(cat.embedding(pid, "m"), np.arange(4, dtype=np.float32))
    # Deleting a root cascades to its photos and their vectors.
    cat.remove_root(root.id)
    assert cat.count_photos() == 0 and cat.embedding_models() == {}
    assert cat.integrity_check() == "ok"
    cat.close()
