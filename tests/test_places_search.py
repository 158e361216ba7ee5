"""Index → search end to end with places and dates understood: engine, CLI (subprocess) and JSON contract."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from retllm_desktop.search import Query

from . import helpers_places as hp
from .test_cli import run

LISBON_KEY = "city:2267057"


@pytest.fixture
def lib_args(tmp_path: Path, clip_models_dir: Path) -> list[str]:
    return ["--library", str(tmp_path / "lib"), "--models", str(clip_models_dir), "--threads", "1"]


@pytest.fixture
def trip(tmp_path: Path) -> Path:
    return hp.write_trip(tmp_path / "trips")


def _names(update) -> set[str]:
    return {Path(r.path).name for r in update.visible}


def _last(library, query) -> object:
    return list(library.search(query, top=20))[-1]


def test_place_and_date_filters(library, trip: Path) -> None:
    library.index_roots([str(trip)])
    library.today_override = date(2026, 11, 26)
    lisbon = _last(library, "beach in Lisbon")
    assert _names(lisbon) == {f"lisbon{i}.jpg" for i in range(4)}
    assert lisbon.query.text == "beach"  # what CLIP (and the LLM prompt) got
    assert lisbon.understood.places[0].key == LISBON_KEY and lisbon.understood.literal is False
    xmas = _last(library, "dinner at Christmas 2021")
    assert _names(xmas) == {f"paris{i}.jpg" for i in range(3)}
    assert (xmas.understood.date_from.isoformat(), xmas.understood.date_to.isoformat()) == (
        "2021-12-24",
        "2021-12-26",
    )
    both = _last(library, "Portugal summer 2019")
    assert _names(both) == {f"lisbon{i}.jpg" for i in range(4)}
    assert both.query.text == "Portugal summer 2019"  # nothing but filters left: the phrase still ranks


def test_a_filter_that_matches_nothing_falls_back_to_the_words(library, trip: Path) -> None:
    library.index_roots([str(trip)])
    u = _last(library, "Paris in summer 2019")  # Paris photos exist, none from summer 2019
    assert len(u.visible) == 9  # literal search over everything
    assert u.understood.literal is True and "searched for the words as typed" in u.understood.message
    assert u.query.text == "Paris in summer 2019"


def test_literal_and_explicit_place_filter(library, trip: Path) -> None:
    library.index_roots([str(trip)])
    literal = _last(library, Query(text="beach in Lisbon", literal=True))
    assert literal.understood is None and len(literal.visible) == 9
    picked = _last(library, Query(text="a photo", places=("country:FR",)))  # from the Places list
    assert _names(picked) == {f"paris{i}.jpg" for i in range(3)}


def test_removed_chip_keeps_the_phrase(library, trip: Path) -> None:
    library.index_roots([str(trip)])
    u = _last(library, Query(text="beach in Lisbon", ignore=("Lisbon",)))
    assert u.understood.places == [] and len(u.visible) == 9 and u.query.text == "beach in Lisbon"


def test_manhattan_finds_photos_labelled_new_york_city(library, tmp_path: Path) -> None:
    root = tmp_path / "nyc"
    hp.gps_photo(root / "ts.jpg", *hp.TIMES_SQUARE, seed=1)
    hp.gps_photo(root / "syd.jpg", *hp.SYDNEY_OPERA, seed=2)
    library.index_roots([str(root)])
    assert [c.name for c in library.places() if c.kind == "city"][0] in ("New York City", "Sydney")
    assert _names(_last(library, "skyline in Manhattan")) == {"ts.jpg"}


def test_cli_prints_and_returns_what_it_understood(lib_args: list[str], trip: Path) -> None:
    env = {"RETLLM_TODAY": "2026-11-26"}
    r = run("index", *lib_args, str(trip))
    assert r.returncode == 0, r.stderr
    assert "7 photos placed" in r.stdout
    r = run("search", *lib_args, "--no-rerank", "--json", "beach in Lisbon summer 2019", env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    u = out["understood"]
    assert (u["text"], u["from"], u["to"]) == ("beach", "2019-06-01", "2019-08-31")
    assert [p["label"] for p in u["places"]] == ["Lisbon, Portugal"]
    assert {Path(x["path"]).name for x in out["results"]} == {f"lisbon{i}.jpg" for i in range(4)}
    r = run("search", *lib_args, "--no-rerank", "beach in Lisbon last year", env=env)
    assert r.returncode == 0, r.stderr
    first = r.stdout.splitlines()[0]
    assert first.startswith("understood: no photos from") and "searched for the words as typed" in first
    r = run("search", *lib_args, "--no-rerank", "beach in Lisbon", env=env)
    assert r.stdout.splitlines()[0] == (
        'understood: text "beach"; Lisbon, Portugal (--literal to search the words as typed)'
    )
    assert len(r.stdout.splitlines()) == 1 + 1 + 4  # understood, the header, the results
    r = run("search", *lib_args, "--no-rerank", "--literal", "--json", "beach in Lisbon", env=env)
    out = json.loads(r.stdout)
    assert out["understood"] is None and len(out["results"]) == 9
    r = run("places", *lib_args)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["4", "city", "Lisbon,", "Portugal"]
    assert any(line.split()[:2] == ["3", "country"] and "France" in line for line in lines)
