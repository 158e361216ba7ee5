"""Catalog backups and `retllm-desktop repair`, tested by damaging pages of a real catalog file."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from .conftest import make_photo
from .test_cli import run


def _count(db: Path) -> int:
    with sqlite3.connect(db) as c:
        return c.execute("SELECT count(*) FROM photos").fetchone()[0]


def _damage(db: Path, table: str | None) -> None:
    """Overwrite the root page of ``table`` (None: the file header page) with noise, as a bad sector would."""
    with sqlite3.connect(db) as c:
        page_size = c.execute("PRAGMA page_size").fetchone()[0]
        page = (
            1
            if table is None
            else c.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", [table]).fetchone()[0]
        )
    with open(db, "r+b") as f:
        f.seek((page - 1) * page_size + (100 if page == 1 else 0))
        f.write(os.urandom(page_size // 2))


@pytest.fixture
def setup(tmp_path: Path, clip_models_dir: Path):
    photos = tmp_path / "photos"
    for i in range(20):
        make_photo(photos / f"p{i:02d}.jpg", seed=500 + i)
    lib = tmp_path / "lib"
    args = ["--library", str(lib), "--models", str(clip_models_dir), "--threads", "1"]
    assert run("index", *args, str(photos)).returncode == 0
    return lib, photos, args


def test_two_rolling_generations_after_runs_that_changed_something(setup) -> None:
    lib, photos, args = setup
    b1, b2 = lib / "backups" / "catalog.1.db", lib / "backups" / "catalog.2.db"
    assert _count(b1) == 20 and not b2.exists()
    before = b1.stat().st_mtime_ns
    assert run("index", *args).returncode == 0  # nothing changed: no new backup
    assert b1.stat().st_mtime_ns == before and not b2.exists()
    make_photo(photos / "new.jpg", seed=999)
    assert run("index", *args).returncode == 0
    assert (_count(b1), _count(b2)) == (21, 20)
    (photos / "p00.jpg").unlink()
    assert run("index", *args).returncode == 0
    assert (_count(b1), _count(b2)) == (20, 21)  # the oldest generation dropped out
    with sqlite3.connect(b1) as c:
        assert c.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # self-contained
    assert sorted(p.name for p in (lib / "backups").iterdir()) == ["catalog.1.db", "catalog.2.db"]


@pytest.mark.parametrize("table", [None, "photos", "embeddings"])
def test_a_damaged_page_names_repair_and_repair_restores(setup, table: str | None) -> None:
    lib, photos, args = setup
    make_photo(photos / "after-backup.jpg", seed=1234)  # on disk, not in the backup
    (photos / "p03.jpg").unlink()  # in the backup, gone from disk
    _damage(lib / "catalog.db", table)

    r = run("search", *args, "a red square")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "retllm-desktop repair" in r.stderr, r.stderr
    r = run("status", *args)
    assert "Traceback" not in r.stderr and "retllm-desktop repair" in r.stdout + r.stderr

    r = run("repair", *args, "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert "malformed" in report["damage"] and report["restored_from"].endswith("catalog.1.db")
    assert Path(report["moved_to"]).is_file()  # the damaged file is kept, never deleted
    s = report["index"]
    assert (s["added"], s["removed"], s["updated"], s["unchanged"]) == (
        1,
        1,
        0,
        19,
    )  # only the new photo embedded

    st = json.loads(run("status", *args, "--json").stdout)
    assert st["photos"] == 20 and st["index_healthy"] and st["indexed"] == 20
    out = json.loads(run("search", *args, "--json", "--top", "30", "x").stdout)
    paths = {x["path"] for x in out["results"]}
    assert str(photos / "after-backup.jpg") in paths and str(photos / "p03.jpg") not in paths
    r = run("repair", *args)
    assert r.returncode == 0 and "healthy" in r.stdout


def test_without_a_backup_repair_rebuilds_from_the_photos(setup) -> None:
    lib, photos, args = setup
    for b in (lib / "backups").iterdir():
        b.unlink()
    _damage(lib / "catalog.db", "embeddings")  # the roots table is still readable
    r = run("repair", *args, "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["restored_from"] is None and report["folders"] == [str(photos)]
    assert report["index"]["added"] == 20  # everything re-embedded from the photos
    assert json.loads(run("status", *args, "--json").stdout)["index_healthy"]


def test_without_backup_or_readable_folders_repair_asks_for_them(setup) -> None:
    lib, photos, args = setup
    for b in (lib / "backups").iterdir():
        b.unlink()
    _damage(lib / "catalog.db", None)
    r = run("repair", *args)
    assert r.returncode == 1 and "--folder" in r.stderr and "Traceback" not in r.stderr
    r = run("repair", *args, "--folder", str(photos), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["index"]["added"] == 20
