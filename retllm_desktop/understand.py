"""Query understanding, rule based (English): time and place phrases become filters, the rest is for CLIP.

"beach in Lisbon summer 2019" → text "beach", place Lisbon, 2019-06-01 … 2019-08-31. No model: regular
expressions for dates (absolute, relative to an injectable "today", holidays, seasons, decades, ranges) and
the gazetteer's names for places. A place name that is also an ordinary word ("Nice", "Orange", "Reading")
counts only with a cue (capitalised mid-query, or "in"/"at" … and photos there); a name with several places
("Paris") means the one the library has photos of, else the most populous. Seasons are the northern
hemisphere's meteorological ones (winter 2019 = Dec 2019 – Feb 2020); a weekend is Saturday–Sunday; weeks
start on the locale's first day (CLDR week data).
"""

from __future__ import annotations

import calendar
import locale
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

from . import config
from .places import PlaceName, normalize_name
from .understand_people import find_people

# CLDR supplemental weekData "firstDay": territories whose week does not start on Monday.
_SUNDAY_FIRST = set(
    "AG AS BD BR BS BT BW BZ CA CN CO DM DO ET GT GU HK HN ID IL IN JM JP KE KH KR LA MH MM MO MT MX MZ NI NP "
    "PA PE PH PK PR PT PY SA SG SV TH TT TW UM US VE VI WS YE ZA ZW".split()
)
_SATURDAY_FIRST = set("AE AF BH DJ DZ EG IQ IR JO KW LY OM QA SD SY".split())


def locale_week_start(territory: str | None = None) -> int:
    """First day of the week (0 = Monday … 6 = Sunday) for a territory, or for the user's locale."""
    if territory is None:
        name = os.environ.get("LC_ALL") or os.environ.get("LC_TIME") or os.environ.get("LANG") or ""
        if not name:
            try:
                name = locale.getlocale(locale.LC_TIME)[0] or ""
            except (ValueError, TypeError):
                name = ""
        m = re.match(r"[a-z]{2,3}[_-]([A-Z]{2})", name)
        territory = m.group(1) if m else ""
    territory = territory.upper()
    if territory in _SUNDAY_FIRST:
        return 6
    if territory in _SATURDAY_FIRST:
        return 5
    return 0


@lru_cache(maxsize=1)
def ordinary_words() -> frozenset[str]:
    text = config.resource_path("ordinary_words.txt").read_text(encoding="utf-8")
    return frozenset(w for line in text.splitlines() if not line.startswith("#") for w in line.split())


# -- dates -----------------------------------------------------------------------------------------------
_MONTHS = {
    m: i
    for i, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sept", "sep"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        1,
    )
    for m in names
}
_DECADE_WORDS = {
    "twenties": 2,
    "thirties": 3,
    "forties": 4,
    "fifties": 5,
    "sixties": 6,
    "seventies": 7,
    "eighties": 8,
    "nineties": 9,
}
_NUM_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "ten": 10}

Y = r"(?:19|20)\d\d"
MONTH_FULL = r"(?:january|february|march|april|may|june|july|august|september|october|november|december)"
MONTH_ANY = MONTH_FULL + r"|(?:jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)\.?"
DAY = r"(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?"
SEASON = r"(?:spring|summer|autumn|fall|winter)"
HOLIDAY = (
    r"(?:christmas eve|christmas day|christmas|xmas|new year'?s eve|new year'?s day|new year'?s|new year"
    r"|easter|halloween|valentine'?s day|thanksgiving|(?:4th|fourth) of july)"
)
UNIT = r"(?:day|week|month|year)s?"
NUM = r"(?:\d{1,2}|a|an|one|two|three|four|five|six|ten)"

# One point in time (a day, month, season, year, decade …), most specific alternatives first.
POINT = (
    rf"(?:{Y}-[01]\d-[0-3]\d|{Y}-[01]\d"
    rf"|(?:{MONTH_ANY})\s+{DAY},?\s+{Y}|{DAY}\s+(?:of\s+)?(?:{MONTH_ANY}),?\s+{Y}|(?:{MONTH_ANY}),?\s+{Y}"
    rf"|(?:early|mid|late)[\s-]+{Y}"
    rf"|(?:{SEASON})(?:\s+of)?\s+{Y}|(?:last|this|past)\s+{SEASON}"
    rf"|{HOLIDAY}(?:\s+of)?\s+{Y}|(?:last|this)\s+{HOLIDAY}"
    rf"|(?:the\s+)?(?:early\s+|late\s+|mid\s+)?(?:(?:19|20)?\d0'?s|'\d0s|(?:{'|'.join(_DECADE_WORDS)}))"
    rf"|{Y}"
    rf"|today|yesterday|(?:this|last|past|previous)\s+(?:week(?:end)?|month|year)"
    rf"|{NUM}\s+{UNIT}\s+ago|(?:the\s+)?(?:last|past)\s+{NUM}\s+{UNIT}"
    rf"|(?:{MONTH_ANY})\s+{DAY}|{DAY}\s+(?:of\s+)?(?:{MONTH_ANY}))"
)
_PREP = r"(?:(?:taken\s+)?(?:in|during|on|from|of|at|around)\s+)?"
_DATE_RE = re.compile(
    rf"\b(?:(?P<range>(?:from|between)\s+(?P<a>{POINT})\s+(?:to|and|until|till|through|-)\s+(?P<b>{POINT}))"
    rf"|(?P<span>(?P<c>{POINT})\s*(?:-|–|to|until|through)\s*(?P<d>{POINT}))"
    rf"|(?P<open>(?P<op>since|after|before|until)\s+(?P<e>{POINT}))"
    rf"|{_PREP}(?P<point>{POINT})"
    rf"|(?P<bare_month>(?:in|during)\s+(?:{MONTH_FULL})))(?![\w'])",
    re.IGNORECASE,
)


def _month_range(y: int, m: int) -> tuple[date, date]:
    return date(y, m, 1), date(y, m, calendar.monthrange(y, m)[1])


def _easter(y: int) -> date:
    """Gregorian Easter Sunday (anonymous Gregorian algorithm)."""
    a, b, c = y % 19, y // 100, y % 100
    d, e = b // 4, b % 4
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 19 * l_) // 433
    month = (h + l_ - 7 * m + 90) // 25
    return date(y, month, (h + l_ - 7 * m + 33 * month + 19) % 32)


def _holiday(name: str, y: int) -> tuple[date, date]:
    name = name.replace("'", "").replace("’", "")
    if name.startswith("christmas eve"):
        return date(y, 12, 24), date(y, 12, 24)
    if name.startswith(("christmas", "xmas")):
        return (date(y, 12, 24), date(y, 12, 26)) if name in ("christmas", "xmas") else (date(y, 12, 25),) * 2
    if name.startswith("new years eve"):
        return date(y, 12, 31), date(y, 12, 31)
    if name.startswith("new year"):
        return (
            (date(y, 1, 1), date(y, 1, 1)) if name.endswith("day") else (date(y - 1, 12, 31), date(y, 1, 1))
        )
    if name == "easter":
        e = _easter(y)
        return e - timedelta(days=2), e + timedelta(days=1)  # Good Friday … Easter Monday
    if name == "halloween":
        return date(y, 10, 31), date(y, 10, 31)
    if name.startswith("valentine"):
        return date(y, 2, 14), date(y, 2, 14)
    if name == "thanksgiving":  # the US one: fourth Thursday of November
        first = date(y, 11, 1)
        d = first + timedelta(days=(3 - first.weekday()) % 7 + 21)
        return d, d
    return date(y, 7, 4), date(y, 7, 4)  # 4th of July


def _season(name: str, y: int) -> tuple[date, date]:
    if name == "winter":
        return date(y, 12, 1), _month_range(y + 1, 2)[1]
    start = {"spring": 3, "summer": 6, "autumn": 9, "fall": 9}[name]
    return date(y, start, 1), _month_range(y, start + 2)[1]


def _recent(make, today: date, strictly_past: bool) -> tuple[date, date]:
    """The latest occurrence of a yearly period that has begun (``strictly_past``: that has ended)."""
    for y in (today.year + 1, today.year, today.year - 1, today.year - 2):
        a, b = make(y)
        if (b < today) if strictly_past else (a <= today):
            return a, b
    return make(today.year - 1)


class _DateParser:
    def __init__(self, today: date, week_start: int):
        self.today, self.week_start = today, week_start

    def week_of(self, d: date) -> tuple[date, date]:
        start = d - timedelta(days=(d.weekday() - self.week_start) % 7)
        return start, start + timedelta(days=6)

    def point(self, s: str) -> tuple[date, date] | None:
        s = " ".join(s.lower().replace("’", "'").split())
        t = self.today
        try:
            return self._point(s, t)
        except ValueError:  # February 30th and friends
            return None

    def _point(self, s: str, t: date) -> tuple[date, date] | None:
        if m := re.fullmatch(rf"({Y})-([01]\d)-([0-3]\d)", s):
            d = date(int(m[1]), int(m[2]), int(m[3]))
            return d, d
        if m := re.fullmatch(rf"({Y})-([01]\d)", s):
            return _month_range(int(m[1]), int(m[2]))
        day = r"(\d{1,2})(?:st|nd|rd|th)?"
        if m := re.fullmatch(rf"([a-z]+)\.?\s+{day},?\s+({Y})", s):
            d = date(int(m[3]), _MONTHS[m[1]], int(m[2]))
            return d, d
        if m := re.fullmatch(rf"{day}\s+(?:of\s+)?([a-z]+)\.?,?\s+({Y})", s):
            d = date(int(m[3]), _MONTHS[m[2]], int(m[1]))
            return d, d
        if m := re.fullmatch(rf"([a-z]+)\.?,?\s+({Y})", s):
            if m[1] in _MONTHS:
                return _month_range(int(m[2]), _MONTHS[m[1]])
        if m := re.fullmatch(rf"(early|mid|late)[\s-]+({Y})", s):
            y, lo = int(m[2]), {"early": 1, "mid": 5, "late": 9}[m[1]]
            return date(y, lo, 1), _month_range(y, lo + 3)[1]
        if m := re.fullmatch(rf"({SEASON})(?:\s+of)?\s+({Y})", s):
            return _season(m[1], int(m[2]))
        if m := re.fullmatch(rf"(last|this|past)\s+({SEASON})", s):
            return _recent(lambda y: _season(m[2], y), t, strictly_past=m[1] != "this")
        if m := re.fullmatch(rf"({HOLIDAY})(?:\s+of)?\s+({Y})", s):
            return _holiday(m[1], int(m[2]))
        if m := re.fullmatch(rf"(last|this)\s+({HOLIDAY})", s):
            return _recent(lambda y: _holiday(m[2], y), t, strictly_past=m[1] == "last")
        m = re.fullmatch(r"(?:the\s+)?(?:(early|late|mid)\s+)?(?:(19|20)?(\d)0'?s|'(\d)0s|([a-z]+))", s)
        if m and (decade := self._decade(m)):
            return decade
        if re.fullmatch(Y, s):
            return date(int(s), 1, 1), date(int(s), 12, 31)
        return self._relative(s, t) or self._month_day(s, t)

    def _decade(self, m: re.Match) -> tuple[date, date] | None:
        if m[5] is not None:
            if m[5] not in _DECADE_WORDS:
                return None
            digit, century = _DECADE_WORDS[m[5]], None
        else:
            digit, century = int(m[3] if m[3] is not None else m[4]), m[2]
        if century is None:  # "the 90s": the most recent such decade that has begun
            century = (
                "19"
                if 1900 + digit * 10 > self.today.year - 100 and 2000 + digit * 10 > self.today.year
                else "20"
            )
        start = int(century) * 100 + digit * 10
        lo, hi = {"early": (0, 3), "mid": (3, 6), "late": (6, 9), None: (0, 9)}[m[1]]
        return date(start + lo, 1, 1), date(start + hi, 12, 31)

    def _relative(self, s: str, t: date) -> tuple[date, date] | None:
        if s == "today":
            return t, t
        if s == "yesterday":
            return t - timedelta(days=1), t - timedelta(days=1)
        if m := re.fullmatch(r"(this|last|past|previous)\s+(week|weekend|month|year)", s):
            return self._this_last(m[1] == "this", m[2], t)
        if m := re.fullmatch(rf"({NUM})\s+(day|week|month|year)s?\s+ago", s):
            n = int(m[1]) if m[1].isdigit() else _NUM_WORDS[m[1]]
            return self._ago(n, m[2], t)
        if m := re.fullmatch(rf"(?:the\s+)?(?:last|past)\s+({NUM})\s+(day|week|month|year)s?", s):
            n = int(m[1]) if m[1].isdigit() else _NUM_WORDS[m[1]]
            days = {"day": 1, "week": 7, "month": 30, "year": 365}[m[2]] * n
            return t - timedelta(days=days), t
        return None

    def _this_last(self, this: bool, unit: str, t: date) -> tuple[date, date]:
        if unit == "week":
            a, _ = self.week_of(t if this else t - timedelta(days=7))
            return (a, t) if this else (a, a + timedelta(days=6))
        if unit == "weekend":
            if this:
                sat = t - timedelta(days=1) if t.weekday() == 6 else t + timedelta(days=(5 - t.weekday()) % 7)
                return sat, sat + timedelta(days=1)
            sun = t - timedelta(days=(t.weekday() - 6) % 7 or 7)
            return sun - timedelta(days=1), sun
        if unit == "month":
            if this:
                return date(t.year, t.month, 1), t
            prev = date(t.year, t.month, 1) - timedelta(days=1)
            return _month_range(prev.year, prev.month)
        return (date(t.year, 1, 1), t) if this else (date(t.year - 1, 1, 1), date(t.year - 1, 12, 31))

    def _ago(self, n: int, unit: str, t: date) -> tuple[date, date]:
        if unit == "day":
            d = t - timedelta(days=n)
            return d, d
        if unit == "week":
            return self.week_of(t - timedelta(days=7 * n))
        if unit == "month":
            y, m = divmod(t.year * 12 + t.month - 1 - n, 12)
            return _month_range(y, m + 1)
        return date(t.year - n, 1, 1), date(t.year - n, 12, 31)

    def _month_day(self, s: str, t: date) -> tuple[date, date] | None:
        m = re.fullmatch(r"(?:in\s+|during\s+)?([a-z]+)\.?(?:\s+(\d{1,2})(?:st|nd|rd|th)?)?", s)
        m2 = re.fullmatch(r"(\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?([a-z]+)\.?", s)
        if m and m[1] in _MONTHS:
            month, day = _MONTHS[m[1]], int(m[2]) if m[2] else None
        elif m2 and m2[2] in _MONTHS:
            month, day = _MONTHS[m2[2]], int(m2[1])
        else:
            return None
        if day is None:
            return _recent(lambda y: _month_range(y, month), t, strictly_past=False)
        return _recent(lambda y: (date(y, month, day),) * 2, t, strictly_past=False)


# -- the result ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Chip:
    """One understood phrase: shown as a removable chip; ``source`` is the query text it came from."""

    kind: str  # "date" | "place" | "person"
    label: str
    source: str


@dataclass
class Understanding:
    """What a query was understood as: the dates and places taken out of it, and the text left."""

    original: str
    text: str  # what is left for CLIP and the LLM prompt
    places: list[PlaceName] = field(default_factory=list)
    date_from: date | None = None
    date_to: date | None = None
    chips: list[Chip] = field(default_factory=list)
    place_labels: dict[str, str] = field(default_factory=dict)  # key → "Paris, Texas, United States"
    people: list[dict[str, Any]] = field(default_factory=list)  # {"ids": [person ids], "name": str}
    # The filters left no photo, so the words were searched as typed; ``message`` says so to the user.
    literal: bool = False
    message: str | None = None

    @property
    def changed(self) -> bool:
        return bool(self.chips)

    def place_label(self, p: PlaceName) -> str:
        return self.place_labels.get(p.key, p.name)

    def as_dict(self) -> dict[str, Any]:
        """The ``understood`` object of ``search --json``."""
        out: dict[str, Any] = {
            "text": self.text,
            "places": [
                {"key": p.key, "name": p.name, "kind": p.kind, "label": self.place_label(p)}
                for p in self.places
            ],
            "from": self.date_from.isoformat() if self.date_from else None,
            "to": self.date_to.isoformat() if self.date_to else None,
            "people": [{"ids": list(p["ids"]), "name": p["name"]} for p in self.people],
            "chips": [{"kind": c.kind, "label": c.label, "source": c.source} for c in self.chips],
            "literal": self.literal,
        }
        if self.message is not None:
            out["message"] = self.message
        return out


def _date_label(a: date, b: date) -> str:
    if a == b:
        return a.strftime("%-d %b %Y")
    if a.day == 1 and b == _month_range(b.year, b.month)[1]:
        if a.year == b.year and a.month == b.month:
            return a.strftime("%B %Y")
        if (a.month, b.month) == (1, 12):
            return str(a.year) if a.year == b.year else f"{a.year}–{b.year}"
        return f"{a.strftime('%b %Y')} – {b.strftime('%b %Y')}"
    return f"{a.isoformat()} – {b.isoformat()}"


_WORD_RE = re.compile(r"[^\W\d_][\w'’.-]*", re.UNICODE)
_CUES = {"in", "at", "near", "around", "from", "visiting", "to"}
_GLUE = {"in", "at", "near", "around", "from", "of", "during", "on", "taken", "visiting", "and", "to", ","}
MAX_NAME_WORDS = 4


def understand(
    text: str,
    gazetteer: Any = None,
    *,
    today: date | None = None,
    week_start: int | None = None,
    library_places: Mapping[str, int] | None = None,
    ignore: Collection[str] = (),
    people: Collection[tuple[int, str, str]] = (),
) -> Understanding:
    """Split a query into filters and the text left for CLIP.

    ``gazetteer`` (places.Gazetteer) enables place names; ``library_places`` (key → photo count) makes names
    resolve to where the library has photos; phrases in ``ignore`` (a chip's ``source``) stay literal;
    ``people`` ((id, name, folded name) of the named people) turns their names into person filters.
    """
    today = today or date.today()
    ws = locale_week_start() if week_start is None else week_start
    parser = _DateParser(today, ws)
    ignored = {normalize_name(s) for s in ignore}
    taken: list[tuple[int, int]] = []
    chips: list[Chip] = []
    lo = hi = None
    for m in _DATE_RE.finditer(text):
        rng = _resolve_date(m, parser)
        if rng is None or normalize_name(m.group(0)) in ignored or normalize_name(_core(m)) in ignored:
            continue
        a, b = rng
        if a > b:
            continue
        lo = a if lo is None else max(lo, a)
        hi = b if hi is None else min(hi, b)
        taken.append(m.span())
        chips.append(Chip("date", _date_label(a, min(b, today) if a <= today else b), _core(m)))
    out = Understanding(original=text, text=text, date_from=lo, date_to=hi, chips=chips)
    for m in find_people(text, list(people), taken=taken, ignored=ignored, ordinary=ordinary_words()):
        taken.append((m.start, m.end))
        out.people.append({"ids": list(m.ids), "name": m.name})
        out.chips.append(Chip("person", m.name, text[m.start : m.end]))
    if gazetteer is not None:
        _find_places(text, gazetteer, library_places or {}, ignored, taken, out)
    out.text = _remaining(text, taken)
    out.chips.sort(key=lambda c: text.find(c.source))  # in the order the query says them
    return out


def _core(m: re.Match) -> str:
    """The phrase a chip names (without a leading "in"/"during")."""
    for g in ("range", "span", "open", "point"):
        if m.group(g):
            return m.group(g)
    s = m.group(0)
    return re.sub(r"^(?:in|during)\s+", "", s, flags=re.IGNORECASE)


def _resolve_date(m: re.Match, p: _DateParser) -> tuple[date, date] | None:
    if m.group("range") or m.group("span"):
        a = p.point(m.group("a") or m.group("c"))
        b = p.point(m.group("b") or m.group("d"))
        return (a[0], b[1]) if a and b else None
    if m.group("open"):
        e = p.point(m.group("e"))
        if e is None:
            return None
        op = m.group("op").lower()
        if op == "since":
            return e[0], p.today
        if op == "after":
            return e[1] + timedelta(days=1), p.today
        if op == "before":
            return date(1900, 1, 1), e[0] - timedelta(days=1)
        return date(1900, 1, 1), e[1]
    s = m.group("point") or m.group("bare_month")
    return p.point(s) if s else None


def _remaining(text: str, taken: list[tuple[int, int]]) -> str:
    """The query without the understood spans and the little words left dangling around them."""
    keep = []
    last = 0
    for a, b in sorted(taken):
        keep.append(text[last:a])
        keep.append(" \x00 ")
        last = b
    keep.append(text[last:])
    words = "".join(keep).split()
    out: list[str] = []
    for i, w in enumerate(words):
        if w == "\x00":
            while out and out[-1].lower().strip(",") in _GLUE:
                out.pop()
            continue
        if w.lower().strip(",") in _GLUE and i + 1 < len(words) and words[i + 1] == "\x00":
            continue
        if w.lower() in _GLUE - {","} and (i + 1 == len(words)):
            continue
        out.append(w)
    return " ".join(out).strip(" ,")


def _find_places(
    text: str,
    gaz: Any,
    library: Mapping[str, int],
    ignored: set[str],
    taken: list[tuple[int, int]],
    out: Understanding,
) -> None:
    words = [(m.start(), m.end(), m.group(0).rstrip(".,'’")) for m in _WORD_RE.finditer(text)]
    words = [w for w in words if not any(a <= w[0] < b for a, b in taken)]
    ordinary = ordinary_words()
    i = 0
    while i < len(words):
        hit = None
        for n in range(min(MAX_NAME_WORDS, len(words) - i), 0, -1):
            span = words[i : i + n]
            if any(span[k + 1][0] - span[k][1] > 2 for k in range(n - 1)):
                continue  # the words must be adjacent ("New York", "Rio de Janeiro")
            phrase = text[span[0][0] : span[-1][0] + len(span[-1][2])]
            key = normalize_name(phrase)
            if len(key) < 3 or key in ignored:
                continue
            cands = _eligible(gaz.lookup(phrase), library)
            if cands and _accept(phrase, key, i, words, text, cands, library, ordinary):
                hit = (n, phrase, cands)
                break
        if hit is None:
            i += 1
            continue
        n, phrase, cands = hit
        end = words[i + n - 1][0] + len(words[i + n - 1][2])
        chosen, end = _qualify(cands, words, i + n, text, end, gaz, library)
        taken.append((words[i][0], end))
        out.places.append(chosen)
        out.place_labels[chosen.key] = gaz.describe(chosen)
        out.chips.append(Chip("place", gaz.describe(chosen), text[words[i][0] : end]))
        while i < len(words) and words[i][0] < end:
            i += 1


def _eligible(cands: list[PlaceName], library: Mapping[str, int]) -> list[PlaceName]:
    from .places import QUERY_MIN_POPULATION

    return [
        c for c in cands if c.kind != "city" or c.population >= QUERY_MIN_POPULATION or library.get(c.key)
    ]


def _accept(phrase, key, i, words, text, cands, library, ordinary) -> bool:
    """Whether a name in the query is meant as a place (see the module docstring)."""
    if not all(w in ordinary for w in key.split()):
        return True
    capitalised = phrase[:1].isupper() and i > 0 and not text.isupper()
    prev = words[i - 1][2].lower() if i > 0 else ""
    gap = text[words[i - 1][0] + len(words[i - 1][2]) : words[i][0]] if i > 0 else ""
    cue = prev in _CUES and gap.strip() == ""
    in_library = any(library.get(c.key) for c in cands)
    return capitalised and (cue or in_library or len(key.split()) > 1) or (cue and in_library)


def _qualify(cands, words, j, text, end, gaz, library) -> tuple[PlaceName, int]:
    """Pick among same-named places: "Paris, Texas" / "Paris France" by a following qualifier, else the one
    with photos in the library, else the most populous."""
    for n in (3, 2, 1):
        if j + n > len(words):
            continue
        between = text[end : words[j][0]]
        if between.strip() not in ("", ","):
            break
        q_phrase = text[words[j][0] : words[j + n - 1][0] + len(words[j + n - 1][2])]
        quals = [q for q in gaz.lookup(q_phrase) if q.kind in ("country", "region")]
        for q in quals:
            match = [
                c
                for c in cands
                if c.kind == "city"
                and (
                    c.country_code == q.country_code
                    if q.kind == "country"
                    else c.region_code == q.region_code
                )
            ]
            if match:
                return _best(match, library), words[j + n - 1][0] + len(words[j + n - 1][2])
    return _best(cands, library), end


def _best(cands: list[PlaceName], library: Mapping[str, int]) -> PlaceName:
    with_photos = [c for c in cands if library.get(c.key)]
    if with_photos:
        return max(with_photos, key=lambda c: library[c.key])
    return cands[0]  # lookup() sorts countries first, then by population
