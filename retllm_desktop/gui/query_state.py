"""What the next search is made of, in one place: typed words, filters, the example photo, the dates.

Every part that narrows or steers a search is shown as a chip and can be removed one by one; nothing is
applied that the window does not show. The rules a person can predict:

* clear (×, Esc) clears everything: words, chips, the example photo, the date range;
* new typed words drop the example photo (Find similar, a dropped photo) unless it is kept ("Keep");
* picking a place in Places replaces a place the typed words name (the words' other parts stay), and
  Find similar starts over from the photo (no words, no place), keeping only the date range;
* with no words and no example photo the window browses the filters' photos, newest first: no model
  check (it would judge photos against a place's name, which says nothing about what is in them).

Filters are generic (``Filter(kind, key, label)``): "place" today; another kind (people) maps to its
Query field in ``FILTER_FIELDS``. Qt-free, so the rules are tested without widgets too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FILTER_FIELDS = {"place": "places"}  # Filter.kind -> the Query field (a tuple of keys) it fills
FILTER_ICONS = {"place": "In ", "person": "With "}


@dataclass(frozen=True)
class Filter:
    kind: str  # "place", "person", ...
    key: str  # the engine's key ("city:2267057", ...)
    label: str  # what the chip says ("Lisbon, Portugal")

    @property
    def chip_id(self) -> str:
        return f"filter:{self.kind}:{self.key}"


@dataclass(frozen=True)
class Chip:
    """One removable part of the query as the window shows it."""

    id: str  # "image", "dates", "filter:<kind>:<key>", or an understood phrase ("understood:<source>")
    label: str
    icon: str = ""
    tooltip: str = ""


@dataclass
class QueryState:
    text: str = ""  # the words submitted last
    image: str | None = None  # the example photo
    keep_image: bool = False  # the user asked to keep the example photo with new words
    image_text: str = ""  # the words the example photo was searched with
    filters: list[Filter] = field(default_factory=list)
    dates: tuple[str, str] | None = None  # the "Taken between" range when ticked
    ignored: list[str] = field(default_factory=list)  # understood phrases the user removed (kept as words)
    ignored_for: str = ""  # ... for these words (new words start over)

    # -- changes -----------------------------------------------------------------------------------
    def submit(self, text: str) -> None:
        """The user searched for ``text`` (Enter, the Search button)."""
        text = text.strip()
        if self.image is not None and not self.keep_image and text != self.image_text:
            self.image = None  # new words are a new search, not words added to the photo
        if text != self.ignored_for:
            self.ignored, self.ignored_for = [], text
        self.text = text
        if self.image is not None:
            self.image_text = text

    def set_image(self, path: str, fresh: bool = False) -> None:
        """An example photo. ``fresh`` (Find similar): a new search from it, without words or filters."""
        if fresh:
            self.text, self.ignored, self.ignored_for = "", [], ""
            self.filters = []
        self.image, self.image_text, self.keep_image = path, self.text, False

    def set_filter(self, f: Filter) -> None:
        """One filter per kind (a second place replaces the first)."""
        self.filters = [x for x in self.filters if x.kind != f.kind] + [f]

    def remove(self, chip_id: str) -> None:
        if chip_id == "image":
            self.image, self.keep_image, self.image_text = None, False, ""
        elif chip_id == "dates":
            self.dates = None
        elif chip_id.startswith("filter:"):
            self.filters = [f for f in self.filters if f.chip_id != chip_id]
        elif chip_id.startswith("understood:"):
            source = chip_id.split(":", 1)[1]
            if source not in self.ignored:
                self.ignored.append(source)

    def clear(self) -> None:
        self.text, self.image, self.keep_image, self.image_text = "", None, False, ""
        self.filters, self.dates, self.ignored, self.ignored_for = [], None, [], ""

    # -- reading -----------------------------------------------------------------------------------
    @property
    def empty(self) -> bool:
        return not self.text and self.image is None and not self.filters

    @property
    def browsing(self) -> bool:
        """No words and no example photo: the filters' photos are shown as they are (no model check)."""
        return not self.text and self.image is None

    def filter_values(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, list[str]] = {}
        for f in self.filters:
            name = FILTER_FIELDS.get(f.kind)
            if name is not None:
                out.setdefault(name, []).append(f.key)
        return {k: tuple(v) for k, v in out.items()}

    def chips(self) -> list[Chip]:
        """The state's own chips, in reading order: filters, then the date range (the photo has its own)."""
        out = [
            Chip(
                f.chip_id,
                f.label,
                FILTER_ICONS.get(f.kind, ""),
                f"Only photos {FILTER_ICONS.get(f.kind, '').strip().lower()} {f.label}",
            )
            for f in self.filters
        ]
        if self.dates is not None:
            a, b = self.dates
            out.append(Chip("dates", f"{a} – {b}", "Taken ", "Only photos taken between these dates"))
        return out
