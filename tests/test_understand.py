"""Query understanding: a table of phrases → (text left for CLIP, places, from, to), on the real gazetteer.

"Today" is Thursday 26 November 2026 throughout; weeks start on Monday unless a case says otherwise.
"""

from __future__ import annotations

from datetime import date

import pytest

from retllm_desktop.places import gazetteer
from retllm_desktop.understand import locale_week_start, understand

TODAY = date(2026, 11, 26)
LISBON, PARIS, PARIS_TX, NYC, NICE = (
    "city:2267057",
    "city:2988507",
    "city:4717560",
    "city:5128581",
    "city:2990440",
)
SYDNEY, ISTANBUL, MUNICH = "city:2147714", "city:745044", "city:2867714"

CASES = [
    # the examples
    ("beach in Lisbon", "beach", [LISBON], None, None),
    ("snow last winter", "snow", [], "2025-12-01", "2026-02-28"),
    ("birthday 2021", "birthday", [], "2021-01-01", "2021-12-31"),
    ("Paris in summer 2019", "", [PARIS], "2019-06-01", "2019-08-31"),
    ("2019", "", [], "2019-01-01", "2019-12-31"),
    ("snow in December", "snow", [], "2025-12-01", "2025-12-31"),
    ("summer 2019", "", [], "2019-06-01", "2019-08-31"),
    ("last year", "", [], "2025-01-01", "2025-12-31"),
    ("last weekend", "", [], "2026-11-21", "2026-11-22"),
    ("Christmas 2021", "", [], "2021-12-24", "2021-12-26"),
    ("from 2020 to 2022", "", [], "2020-01-01", "2022-12-31"),
    ("in the 90s", "", [], "1990-01-01", "1999-12-31"),
    # years, months, days
    ("dog in 2019", "dog", [], "2019-01-01", "2019-12-31"),
    ("photos taken in 2015 of a cat", "photos of a cat", [], "2015-01-01", "2015-12-31"),
    ("March 2020 protest", "protest", [], "2020-03-01", "2020-03-31"),
    ("december 2019 snow", "snow", [], "2019-12-01", "2019-12-31"),
    ("sept 2018 wedding", "wedding", [], "2018-09-01", "2018-09-30"),
    ("may 5 2021", "", [], "2021-05-05", "2021-05-05"),
    ("5th of may 2021 party", "party", [], "2021-05-05", "2021-05-05"),
    ("July 4th, 2019 fireworks", "fireworks", [], "2019-07-04", "2019-07-04"),
    ("photos from 2019-06-15", "photos", [], "2019-06-15", "2019-06-15"),
    ("2019-06 hike", "hike", [], "2019-06-01", "2019-06-30"),
    ("in may", "", [], "2026-05-01", "2026-05-31"),
    ("bbq on june 21", "bbq", [], "2026-06-21", "2026-06-21"),
    ("early 2020", "", [], "2020-01-01", "2020-04-30"),
    ("late 2019 concert", "concert", [], "2019-09-01", "2019-12-31"),
    ("mid 2021", "", [], "2021-05-01", "2021-08-31"),
    # ranges and open ranges
    ("between 2018 and 2020", "", [], "2018-01-01", "2020-12-31"),
    ("2019-2021 trips", "trips", [], "2019-01-01", "2021-12-31"),
    ("2016 to 2017", "", [], "2016-01-01", "2017-12-31"),
    ("from march 2019 to june 2019", "", [], "2019-03-01", "2019-06-30"),
    ("since 2020", "", [], "2020-01-01", "2026-11-26"),
    ("after 2024", "", [], "2025-01-01", "2026-11-26"),
    ("before 2015", "", [], "1900-01-01", "2014-12-31"),
    # decades
    ("the 80s", "", [], "1980-01-01", "1989-12-31"),
    ("1990s fashion", "fashion", [], "1990-01-01", "1999-12-31"),
    ("the 2010s", "", [], "2010-01-01", "2019-12-31"),
    ("in the nineties", "", [], "1990-01-01", "1999-12-31"),
    ("late 90s", "", [], "1996-01-01", "1999-12-31"),
    ("the 20s", "", [], "2020-01-01", "2029-12-31"),
    # seasons and holidays
    ("summer of 2019", "", [], "2019-06-01", "2019-08-31"),
    ("winter 2019", "", [], "2019-12-01", "2020-02-29"),
    ("fall 2018 leaves", "leaves", [], "2018-09-01", "2018-11-30"),
    ("autumn 2020", "", [], "2020-09-01", "2020-11-30"),
    ("last summer", "", [], "2026-06-01", "2026-08-31"),
    ("this winter", "", [], "2025-12-01", "2026-02-28"),
    ("easter 2020", "", [], "2020-04-10", "2020-04-13"),
    ("halloween 2019 costumes", "costumes", [], "2019-10-31", "2019-10-31"),
    ("new year's eve 2019 fireworks", "fireworks", [], "2019-12-31", "2019-12-31"),
    ("New Year 2020", "", [], "2019-12-31", "2020-01-01"),
    ("christmas eve 2022", "", [], "2022-12-24", "2022-12-24"),
    ("thanksgiving 2021", "", [], "2021-11-25", "2021-11-25"),
    ("4th of july 2019", "", [], "2019-07-04", "2019-07-04"),
    ("last christmas", "", [], "2025-12-24", "2025-12-26"),
    # relative to today
    ("yesterday", "", [], "2026-11-25", "2026-11-25"),
    ("today", "", [], "2026-11-26", "2026-11-26"),
    ("this week", "", [], "2026-11-23", "2026-11-26"),
    ("last week", "", [], "2026-11-16", "2026-11-22"),
    ("last month", "", [], "2026-10-01", "2026-10-31"),
    ("this year", "", [], "2026-01-01", "2026-11-26"),
    ("2 years ago", "", [], "2024-01-01", "2024-12-31"),
    ("a month ago", "", [], "2026-10-01", "2026-10-31"),
    ("3 days ago", "", [], "2026-11-23", "2026-11-23"),
    ("the last 7 days", "", [], "2026-11-19", "2026-11-26"),
    # places
    ("sunset in Nice", "sunset", [NICE], None, None),
    ("Paris, Texas", "", [PARIS_TX], None, None),
    ("paris texas rodeo", "rodeo", [PARIS_TX], None, None),
    ("new york at night", "at night", [NYC], None, None),
    ("Istanbul", "", [ISTANBUL], None, None),
    ("Lisboa tram", "tram", [LISBON], None, None),  # an alternate name
    ("München beer", "beer", [MUNICH], None, None),
    ("portugal beach", "beach", ["country:PT"], None, None),
    ("road trip in Texas", "road trip", ["region:US.TX"], None, None),
    ("Thanksgiving turkey in Turkey", "Thanksgiving turkey", ["country:TR"], None, None),
    ("sunrise over Sydney", "sunrise over", [SYDNEY], None, None),
    ("beach in Lisbon summer 2019", "beach", [LISBON], "2019-06-01", "2019-08-31"),
    ("Lisbon or Paris", "or", [LISBON, PARIS], None, None),
    ("USA", "", ["country:US"], None, None),
    # ordinary words that are also places: left alone
    ("nice sunset", "nice sunset", [], None, None),
    ("Nice beach", "Nice beach", [], None, None),  # first word: capitalised anyway
    ("orange car", "orange car", [], None, None),
    ("turkey dinner", "turkey dinner", [], None, None),
    ("reading a book", "reading a book", [], None, None),
    ("in reading", "in reading", [], None, None),
    ("a long beach walk", "a long beach walk", [], None, None),
    ("march in the street", "march in the street", [], None, None),
    ("christmas tree", "christmas tree", [], None, None),
    ("summer dress", "summer dress", [], None, None),
    ("dog on the beach", "dog on the beach", [], None, None),
    ("man with a mobile phone", "man with a mobile phone", [], None, None),
    ("victoria sponge cake", "victoria sponge cake", [], None, None),
    (
        "2000 balloons",
        "balloons",
        [],
        "2000-01-01",
        "2000-12-31",
    ),  # a year by the rules: the fallback saves it
]


@pytest.fixture(scope="module")
def gaz():
    return gazetteer()


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 60


@pytest.mark.parametrize("query, text, places, date_from, date_to", CASES, ids=[c[0] for c in CASES])
def test_phrase(gaz, query, text, places, date_from, date_to) -> None:
    u = understand(query, gaz, today=TODAY, week_start=0)
    assert u.text == text
    assert [p.key for p in u.places] == places
    assert (u.date_from and u.date_from.isoformat(), u.date_to and u.date_to.isoformat()) == (
        date_from,
        date_to,
    )
    assert u.changed == bool(places or date_from or date_to)


def test_week_start_follows_the_locale(gaz) -> None:
    sunday_first = understand("last week", gaz, today=TODAY, week_start=locale_week_start("US"))
    monday_first = understand("last week", gaz, today=TODAY, week_start=locale_week_start("DE"))
    assert (sunday_first.date_from, sunday_first.date_to) == (date(2026, 11, 15), date(2026, 11, 21))
    assert (monday_first.date_from, monday_first.date_to) == (date(2026, 11, 16), date(2026, 11, 22))
    assert locale_week_start("EG") == 5


def test_ambiguous_names_resolve_to_the_library(gaz) -> None:
    assert understand("Paris", gaz, today=TODAY).places[0].key == PARIS  # most populous
    u = understand("Paris", gaz, today=TODAY, library_places={PARIS_TX: 3})
    assert u.places[0].key == PARIS_TX
    assert u.place_labels[PARIS_TX] == "Paris, Texas, United States"
    # an ordinary word: lowercase after "in" only when the library has photos there
    assert understand("beach in nice", gaz, today=TODAY).places == []
    assert [
        p.key for p in understand("beach in nice", gaz, today=TODAY, library_places={NICE: 2}).places
    ] == [NICE]
    # a small town is a name only when the library has photos there
    assert understand("Lobuche", gaz, today=TODAY).places == []
    assert (
        understand("Lobuche", gaz, today=TODAY, library_places={"city:1283119": 1}).places[0].name
        == "Lobuche"
    )


def test_ignored_phrases_stay_literal(gaz) -> None:
    u = understand("beach in Lisbon summer 2019", gaz, today=TODAY)
    assert [(c.kind, c.label, c.source) for c in u.chips] == [
        ("place", "Lisbon, Portugal", "Lisbon"),
        ("date", "Jun 2019 – Aug 2019", "summer 2019"),
    ]
    kept = understand("beach in Lisbon summer 2019", gaz, today=TODAY, ignore=["Lisbon"])
    assert kept.text == "beach in Lisbon" and kept.places == [] and kept.date_from == date(2019, 6, 1)


def test_dates_without_a_gazetteer() -> None:
    u = understand("beach in Lisbon 2019", None, today=TODAY)
    assert u.text == "beach in Lisbon" and u.date_from == date(2019, 1, 1)
