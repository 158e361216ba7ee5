"""Places: GPS EXIF written by Pillow → imaging → the real GeoNames gazetteer → the catalog."""

from __future__ import annotations

from pathlib import Path

import pytest

from retllm_desktop import imaging
from retllm_desktop.places import Gazetteer, gazetteer, haversine_km, normalize_name

from . import helpers_places as hp


@pytest.fixture(scope="module")
def gaz() -> Gazetteer:
    return gazetteer()


@pytest.mark.parametrize(
    "where, city, region, country",
    [
        (hp.LISBON, "Lisbon", None, "PT"),
        (hp.EIFFEL_TOWER, "Paris", None, "FR"),  # not "Paris 16 Passy": the city absorbs its arrondissements
        (hp.TIMES_SQUARE, "New York City", "New York", "US"),  # not "Times Square" / "Manhattan"
        (hp.SYDNEY_OPERA, "Sydney", None, "AU"),
        (hp.BUENOS_AIRES, "Buenos Aires", None, "AR"),
        (hp.REYKJAVIK, "Reykjavík", None, "IS"),
        (hp.PARIS_TEXAS, "Paris", "Texas", "US"),
        (hp.LONGYEARBYEN, "Longyearbyen", None, "SJ"),
    ],
)
def test_exif_gps_to_city(tmp_path: Path, gaz: Gazetteer, where, city, region, country) -> None:
    photo = hp.gps_photo(tmp_path / "p.jpg", *where)
    meta = imaging.read_metadata(photo)
    assert meta.gps_lat == pytest.approx(where[0], abs=1e-5)
    assert meta.gps_lon == pytest.approx(where[1], abs=1e-5)
    place = gaz.reverse(meta.gps_lat, meta.gps_lon)
    assert place is not None
    assert (place.city, place.region, place.country_code) == (city, region, country)
    assert place.distance_km is not None and place.distance_km < 25


@pytest.mark.parametrize(
    "where, city, country",
    [
        (hp.KEHL, "Kehl", "DE"),  # Strasbourg (275k people) is 5 km away, but across the border
        (hp.STRASBOURG, "Strasbourg", "FR"),
        (hp.EL_PASO, "El Paso", "US"),
        (hp.CIUDAD_JUAREZ, "Ciudad Juárez", "MX"),
    ],
)
def test_borders_are_not_crossed(gaz: Gazetteer, where, city, country) -> None:
    place = gaz.reverse(*where)
    assert place is not None and (place.city, place.country_code) == (city, country)


def test_sea_near_a_coast_is_the_country_without_a_city(gaz: Gazetteer) -> None:
    place = gaz.reverse(*hp.OFF_PORTUGAL)
    assert place is not None
    assert place.city is None and place.country == "Portugal" and place.label == "Portugal"


@pytest.mark.parametrize(
    "where", [hp.MID_ATLANTIC, hp.NORTH_POLE, hp.SOUTH_POLE, (0.0, -150.0), (-60.0, 0.0)]
)
def test_open_ocean_and_poles_are_nowhere(gaz: Gazetteer, where) -> None:
    assert gaz.reverse(*where) is None


def test_reverse_many_matches_one_by_one(gaz: Gazetteer) -> None:
    points = [hp.LISBON, hp.MID_ATLANTIC, hp.KEHL, (float("nan"), 3.0), (200.0, 10.0), hp.SYDNEY_OPERA]
    many = gaz.reverse_many([p[0] for p in points], [p[1] for p in points])
    assert many == [gaz.reverse(*p) for p in points]
    assert many[1] is None and many[3] is None and many[4] is None


def test_nearest_place_is_the_true_nearest_when_no_big_city_is_near(gaz: Gazetteer) -> None:
    """A village in the Alentejo: the KD-tree answer equals a brute-force scan of all 170k places."""
    lat, lon = 38.05, -7.90
    place = gaz.reverse(lat, lon)
    d = haversine_km(lat, lon, gaz.lat, gaz.lon)
    nearest = int(d.argmin())
    assert place is not None and place.city_id == int(gaz.geonameid[nearest])
    assert place.distance_km == pytest.approx(float(d[nearest]), abs=0.01)


@pytest.mark.parametrize(
    "gps",
    [
        {},  # no GPS IFD entries
        {1: "N", 2: (38.0, 42.0, 0.0)},  # latitude only
        {1: "N", 2: (200.0, 0.0, 0.0), 3: "E", 4: (10.0, 0.0, 0.0)},  # out of range
        {1: "N", 2: (0.0, 0.0, 0.0), 3: "E", 4: (0.0, 0.0, 0.0)},  # (0, 0): camera without a fix
        {1: "N", 2: (38.0, 42.0), 3: "E", 4: (10.0, 0.0, 0.0)},  # two numbers, not three
    ],
)
def test_missing_or_garbage_gps_is_no_position(tmp_path: Path, gps: dict) -> None:
    photo = hp.gps_photo(tmp_path / "g.jpg", None, None, gps_ifd=gps)
    meta = imaging.read_metadata(photo)
    assert (meta.gps_lat, meta.gps_lon) == (None, None)
    assert meta.width > 0  # the photo itself is fine


def test_zero_denominator_rational_is_no_position(tmp_path: Path) -> None:
    from PIL.TiffImagePlugin import IFDRational

    gps = {1: "N", 2: (IFDRational(38, 0), IFDRational(0, 1), IFDRational(0, 1)), 3: "E", 4: (1.0, 0.0, 0.0)}
    meta = imaging.read_metadata(hp.gps_photo(tmp_path / "z.jpg", None, None, gps_ifd=gps))
    assert (meta.gps_lat, meta.gps_lon) == (None, None)


def test_names_with_alternates_and_ambiguity(gaz: Gazetteer) -> None:
    assert normalize_name("São  Paulo") == normalize_name("sao paulo")
    assert [p.name for p in gaz.lookup("Lisboa")] == ["Lisbon"]
    paris = gaz.lookup("paris")
    assert paris[0].key == "city:2988507" and paris[0].country_code == "FR"  # the most populous first
    assert any(p.country_code == "US" and p.region_code == "US.TX" for p in paris)
    assert gaz.describe(next(p for p in paris if p.region_code == "US.TX")) == "Paris, Texas, United States"
    assert [p.key for p in gaz.lookup("Texas")] == ["region:US.TX"]
    assert gaz.lookup("USA")[0].key == "country:US"
    assert gaz.lookup("Portugal")[0].key == "country:PT"
    assert gaz.lookup("Netherlands")[0].key == "country:NL"
    assert gaz.lookup("Mnichov")[0].name == "Munich"  # an alternate name (Czech)
    assert gaz.lookup("xyzzy") == []


def test_index_stores_places_and_counts(library, tmp_path: Path) -> None:
    root = tmp_path / "trip"
    hp.gps_photo(root / "a.jpg", *hp.LISBON, seed=1)
    hp.gps_photo(root / "b.jpg", *hp.LISBON, seed=2)
    hp.gps_photo(root / "c.jpg", *hp.EIFFEL_TOWER, seed=3)
    hp.gps_photo(root / "d.jpg", *hp.MID_ATLANTIC, seed=4)
    hp.gps_photo(root / "e.jpg", None, None, seed=5)
    summary = library.index_roots([str(root)])
    assert summary.added == 5 and summary.places == 4 and summary.places_error is None
    counts = {(c.key, c.name): c.photos for c in library.places()}
    assert counts == {
        ("city:2267057", "Lisbon"): 2,
        ("city:2988507", "Paris"): 1,
        ("country:PT", "Portugal"): 2,
        ("country:FR", "France"): 1,
    }
    a = library.catalog.photo_by_path(str((root / "a.jpg").resolve()))
    assert library.catalog.place_of(a.id)["city"] == "Lisbon"
    assert library.catalog.ids_in_place("country:PT") == {
        a.id,
        library.catalog.photo_by_path(str((root / "b.jpg").resolve())).id,
    }
    # nothing to do the second time
    assert library.index_roots().places == 0


def test_existing_library_gets_places_without_reembedding(library, tmp_path: Path) -> None:
    root = tmp_path / "old"
    for i, where in enumerate([hp.LISBON, hp.SYDNEY_OPERA, hp.TIMES_SQUARE]):
        hp.gps_photo(root / f"{i}.jpg", *where, seed=i)
    library.index_roots([str(root)])
    # A library from before places existed: no place rows (same as schema 2 plus an empty table).
    with library.catalog.transaction():
        library.catalog._conn.execute("DELETE FROM photo_places")
    assert library.places() == []
    vectors_before = library.catalog.embedding_models()
    summary = library.index_roots()
    assert (summary.unchanged, summary.updated, summary.added, summary.places) == (3, 0, 0, 3)
    assert library.catalog.embedding_models() == vectors_before
    assert {c.name for c in library.places() if c.kind == "city"} == {"Lisbon", "Sydney", "New York City"}
    assert {c.name for c in library.places() if c.kind == "region"} == {"New York"}


def test_changed_gps_moves_the_photo(library, tmp_path: Path) -> None:
    import os

    root = tmp_path / "moving"
    p = hp.gps_photo(root / "x.jpg", *hp.LISBON, seed=7)
    library.index_roots([str(root)])
    hp.gps_photo(p, *hp.REYKJAVIK, seed=7)
    os.utime(p, ns=(os.stat(p).st_atime_ns, os.stat(p).st_mtime_ns + 10**9))
    summary = library.index_roots()
    assert summary.updated == 1 and summary.places == 1
    assert [c.name for c in library.places() if c.kind == "city"] == ["Reykjavík"]
    hp.gps_photo(p, None, None, seed=7)  # GPS stripped: the place goes too
    os.utime(p, ns=(os.stat(p).st_atime_ns, os.stat(p).st_mtime_ns + 2 * 10**9))
    library.index_roots()
    assert library.places() == []


def test_a_schema_2_catalog_is_migrated_and_backfilled(tmp_path: Path, clip_models_dir: Path) -> None:
    """A library written before places existed (schema 2, no photo_places table) gets places on `index`."""
    import sqlite3

    from retllm_desktop.library import Library

    root = tmp_path / "old"
    hp.gps_photo(root / "a.jpg", *hp.REYKJAVIK, seed=1)
    hp.gps_photo(root / "b.jpg", *hp.BUENOS_AIRES, seed=2)
    with Library(tmp_path / "lib", models_dir=clip_models_dir, threads=1) as lib:
        lib.index_roots([str(root)])
        vectors = lib.catalog.embedding_models()
    db = sqlite3.connect(tmp_path / "lib" / "catalog.db")
    db.execute("DROP TABLE photo_places")
    db.execute("DROP INDEX photos_gps")
    db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with Library(tmp_path / "lib", models_dir=clip_models_dir, threads=1) as lib:
        assert lib.places() == []  # migrated: the table exists, empty
        summary = lib.index_roots()
        assert (summary.unchanged, summary.added, summary.updated, summary.places) == (2, 0, 0, 2)
        assert lib.catalog.embedding_models() == vectors
        assert {c.name for c in lib.places() if c.kind == "country"} == {"Iceland", "Argentina"}
