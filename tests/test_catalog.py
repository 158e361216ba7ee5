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
    assert cat.journal_mode() == "wal"
    assert {"roots", "photos", "embeddings", "failures", "index_journal"} <= cat.table_names()
    cat.close()


def test_old_catalog_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    MIGRATIONS[0](conn)  # a version-1 catalog with one photo
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.execute("INSERT INTO roots (path, added_at) VALUES ('/p', 0)")
    conn.execute(
        "INSERT INTO photos (root_id, path, size, mtime_ns, hash, added_at, updated_at) VALUES (1, '/p/a.jpg', 1, 1, 'h', 0, 0)"
    )
    conn.commit()
    conn.close()
    cat = Catalog(path)
    assert cat.get_meta("schema_version") == str(SCHEMA_VERSION)
    assert "index_journal" in cat.table_names()
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


def test_queries_other_modules_ask_for(tmp_path: Path) -> None:
    """Paths under a folder, root merging and counts, date range, embedding completeness: all via the API."""
    cat = Catalog(tmp_path / "c.db")
    outer, inner = cat.add_root("/p"), cat.add_root("/p/in")
    with cat.transaction():
        a = cat.insert_photo(Photo(0, outer.id, "/p/a.jpg", 1, 1, "ha", taken_at="2021-05-01T10:00:00"))
        b = cat.insert_photo(Photo(0, inner.id, "/p/in/b.jpg", 1, 1, "hb", taken_at="2023-01-02T08:00:00"))
        cat.insert_photos([Photo(0, inner.id, "/p/in-x/c.jpg", 1, 1, "hc", status="offline")])
        cat.record_failure("/p/in/bad.jpg", inner.id, "broken", 1, 1)
        cat.put_embeddings([a, b], "m", np.eye(2, 4, dtype=np.float32))
    assert sorted(cat.paths_under("/p/in")) == ["/p/in/b.jpg"]  # not the sibling /p/in-x
    assert sorted(cat.paths_under("/p/")) == ["/p/a.jpg", "/p/in-x/c.jpg", "/p/in/b.jpg"]
    assert cat.root_photo_counts() == {outer.id: 1, inner.id: 2}
    assert cat.date_range() == ("2021-05-01T10:00:00", "2023-01-02T08:00:00")
    np.testing.assert_array_equal(cat.embedding(b, "m"), [0, 1, 0, 0])
    assert cat.embeddings_complete("m")  # the photo without a vector is offline
    assert not cat.embeddings_complete("other")
    cat.merge_root(inner.id, into_id=outer.id)
    assert [r.path for r in cat.roots()] == ["/p"]
    assert cat.root_photo_counts() == {outer.id: 3}
    assert cat.failure_map(outer.id) == {"/p/in/bad.jpg": (1, 1)}
    assert cat.photo_ids_by_path()["/p/in/b.jpg"] == b == cat.photo(b).id
    assert cat.photo_ids() == set(cat.photo_ids_by_path().values())
    cat.close()
    assert Catalog(tmp_path / "empty.db").date_range() == (None, None)
