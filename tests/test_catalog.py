"""The SQLite catalog: schema versions and migrations, WAL, atomic transactions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
import sqlite_utils

from retllm_desktop.catalog import Catalog, CatalogError, Photo, schema
from retllm_desktop.catalog.schema import MIGRATIONS, SCHEMA_VERSION, schema_db


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


def _schema_2_catalog(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    MIGRATIONS[0](conn)
    MIGRATIONS[1](conn)
    conn.execute("INSERT INTO meta VALUES ('schema_version', '2')")
    conn.commit()
    conn.close()


def test_a_fault_after_a_sqlite_utils_migration_step_leaves_the_old_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The places step builds its indexes with sqlite-utils (``create_index``): a crash right after it must
    roll the whole migration back, i.e. sqlite-utils ran inside the migration's transaction."""
    path = tmp_path / "c.db"
    _schema_2_catalog(path)
    places_step = MIGRATIONS[2]

    def places_then_crash(db: object) -> None:
        places_step(db)
        assert "photos_gps" in {i.name for i in schema_db(db).table("photos").indexes}  # the step did run
        raise OSError("power cut mid-migration")

    monkeypatch.setattr(schema, "MIGRATIONS", [*MIGRATIONS[:2], places_then_crash, *MIGRATIONS[3:]])
    with pytest.raises(OSError, match="power cut"):
        Catalog(path)
    on_disk = sqlite_utils.Database(sqlite3.connect(path), recursive_triggers=False)  # what was committed
    assert "photo_places" not in on_disk.table_names()
    assert "photos_gps" not in {i.name for i in on_disk.table("photos").indexes}
    assert on_disk.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "2"
    on_disk.close()
    monkeypatch.undo()
    cat = Catalog(path)  # the next start migrates for real
    assert cat.get_meta("schema_version") == str(SCHEMA_VERSION)
    indexes = {i.name: i.columns for i in schema_db(cat._conn).table("photo_places").indexes}
    assert indexes["photo_places_city"] == ["city_id"] and indexes["photo_places_country"] == ["country_code"]
    cat.close()


@pytest.mark.parametrize("helper", ["enable_fts", "insert_all", "upsert", "create"])
def test_sqlite_utils_helpers_that_commit_on_their_own_are_refused(tmp_path: Path, helper: str) -> None:
    """``enable_fts`` runs executescript (sqlite3 COMMITs first); ``insert_all``/``upsert``/``Table.create``
    wrap ``with conn:`` (commits on exit). On the catalog's connection they fail and the transaction rolls
    back whole, instead of committing its first half."""
    cat = Catalog(tmp_path / "c.db")
    db = schema_db(cat._conn)
    calls = {
        "enable_fts": lambda: db.table("roots").enable_fts(["path"]),
        "insert_all": lambda: db.table("roots").insert_all([{"path": "/b", "added_at": 0.0}]),
        "upsert": lambda: db.table("meta").upsert({"key": "k", "value": "v"}, pk="key"),
        "create": lambda: db.table("extra").create({"id": int}, pk="id"),
    }
    with pytest.raises(CatalogError, match="only through Catalog.transaction"):
        with cat.transaction():
            cat.set_meta("probe", "written before the helper")
            calls[helper]()
    assert cat.get_meta("probe") is None and cat.roots() == []
    assert not {"roots_fts", "extra"} & cat.table_names()
    cat.close()
