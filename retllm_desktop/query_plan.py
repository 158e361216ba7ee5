"""Query planning: the dates, places and people a query names become filters (allowed photo ids) before search.

"beach in Lisbon last summer" searches "beach" among the photos taken in Lisbon in that date range; "Anna
at the beach" searches "at the beach" among the photos showing Anna. When the filters leave no photo at
all, the words are searched as typed and the result says so.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from datetime import date
from typing import TYPE_CHECKING, Any

from . import people as people_mod
from .catalog import Catalog
from .search import Query

if TYPE_CHECKING:
    from .understand import Understanding

log = logging.getLogger(__name__)


def _chips_text(u: Understanding) -> str:
    return " / ".join(c.label for c in u.chips)


def understand_query(
    catalog: Catalog,
    text: str,
    today: date,
    week_start: int | None,
    ignore: tuple[str, ...] | list[str] = (),
) -> Understanding:
    """Dates, places and named people in ``text``; places resolve to where the library has photos. Without
    a usable gazetteer only dates and people are understood."""
    from .understand import understand

    try:
        from .places import gazetteer

        gaz = gazetteer()
    except Exception as e:  # optional data: dates still work
        log.warning("place names not available: %s", e)
        gaz = None
    counts = {c.key: c.photos for c in catalog.place_counts()} if gaz is not None else {}
    return understand(
        text,
        gaz,
        today=today,
        week_start=week_start,
        library_places=counts,
        ignore=ignore,
        people=catalog.person_names(),
    )


def place_ids(catalog: Catalog, places: list[Any]) -> set[int]:
    """Photos from any of ``places`` (keys or places.PlaceName): the stored place, and for a city also
    every fix within the distance at which that city names a photo (so "Manhattan" finds photos labelled
    "New York City")."""
    from .places import absorb_km, haversine_km

    ids: set[int] = set()
    for p in places:
        key = p if isinstance(p, str) else p.key
        ids |= catalog.ids_in_place(key)
        if isinstance(p, str) or p.kind != "city" or p.lat is None:
            continue
        km = float(absorb_km(p.population))
        dlat = km / 111.0
        dlon = km / (111.0 * max(math.cos(math.radians(p.lat)), 0.01))
        near = catalog.gps_in_box(p.lat - dlat, p.lat + dlat, p.lon - dlon, p.lon + dlon)
        for pid, lat, lon in near:
            if haversine_km(p.lat, p.lon, lat, lon) <= km:
                ids.add(pid)
    return ids


def person_filter(catalog: Catalog, groups: list[list[int]]) -> set[int]:
    """Photos showing someone of every group (a group: the person ids one name stands for)."""
    allowed: set[int] | None = None
    for ids in groups:
        found: set[int] = set()
        for pid in ids:
            found |= catalog.ids_with_person(pid)
        allowed = found if allowed is None else allowed & found
    return allowed or set()


def _people_words(catalog: Catalog, query: Query) -> str:
    """Words for CLIP when a query is only people: their names (or "a person")."""
    names = list(query.people)
    for pid in query.person_ids:
        p = catalog.person(int(pid))
        names.append(p.name if p is not None and p.name else "a person")
    return " and ".join(names) or "a person"


def apply_understanding(
    catalog: Catalog, query: Query, understood: Understanding | None
) -> tuple[Query, set[int] | None, Understanding | None]:
    """The query with its dates and places turned into filters, the allowed ids, and what was understood.

    ``understood`` is what ``understand_query`` made of the query's text (None for a literal query or one
    without text). When the filters leave no photo at all, the literal text is searched instead (and the
    returned understanding says so).
    """
    explicit = place_ids(catalog, list(query.places)) if query.places else None
    if query.people or query.person_ids:  # `search --person NAME`: an unknown name is an error
        groups = people_mod.people_named(catalog, list(query.people)) + [[int(i)] for i in query.person_ids]
        found = person_filter(catalog, groups)
        explicit = found if explicit is None else explicit & found
        if not query.text and not query.image:  # only people: CLIP still needs words to rank by
            query = dataclasses.replace(query, text=_people_words(catalog, query), literal=True)
    u = understood
    if u is None or not u.changed:
        return query, explicit, u
    date_from = max(filter(None, [query.date_from, u.date_from and u.date_from.isoformat()]), default=None)
    date_to = min(filter(None, [query.date_to, u.date_to and u.date_to.isoformat()]), default=None)
    allowed = explicit
    if u.places:
        found = place_ids(catalog, u.places)
        allowed = found if allowed is None else allowed & found
    if u.people:
        found = person_filter(catalog, [p["ids"] for p in u.people])
        allowed = found if allowed is None else allowed & found
    candidates = allowed
    if date_from or date_to:
        dated = catalog.ids_in_date_range(date_from, date_to)
        candidates = dated if candidates is None else candidates & dated
    if not candidates:
        message = f"no photos from {_chips_text(u)}; searched for the words as typed"
        return query, explicit, dataclasses.replace(u, literal=True, message=message)
    text = u.text or query.text  # nothing left but filters: the whole phrase still guides the ranking
    new = dataclasses.replace(query, text=text, date_from=date_from, date_to=date_to)
    return new, allowed, u
