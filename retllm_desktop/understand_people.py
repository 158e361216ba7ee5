"""People's names in a query ("Anna at the beach", "me and Tom Baker in Paris") for :mod:`.understand`.

A named person matches by their full name, or by a first name that only one name in the library starts
with; case and accents are folded ("zoe" finds "Zoë"), a possessive is allowed ("Anna's birthday"). A name
that is also an ordinary English word ("Rose", "Bill", "Will") counts only when written capitalised.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from .places import normalize_name

MAX_NAME_WORDS = 4
_WORD_RE = re.compile(r"[^\W\d_][\w'’.-]*", re.UNICODE)


def fold(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.replace("’", "'"))
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    return " ".join(text.split())


@dataclass(frozen=True)
class PersonMatch:
    ids: tuple[int, ...]  # the people this name stands for (several when two people share a name)
    name: str  # as the library writes it
    start: int
    end: int


def _strip_possessive(word: str) -> str:
    w = word.rstrip(".,")
    for suffix in ("'s", "’s", "'", "’"):
        if w.lower().endswith(suffix) and len(w) > len(suffix) + 1:
            return w[: -len(suffix)]
    return w


def find_people(
    text: str,
    people: Sequence[tuple[int, str, str]],
    *,
    taken: Collection[tuple[int, int]] = (),
    ignored: Collection[str] = (),
    ordinary: Collection[str] = (),
) -> list[PersonMatch]:
    """Names of ``people`` ((id, name, folded name)) in ``text``, longest match first, left to right."""
    if not people:
        return []
    full: dict[str, list[tuple[int, str]]] = {}
    firsts: dict[str, set[str]] = {}
    for pid, name, folded in people:
        full.setdefault(folded, []).append((pid, name))
        firsts.setdefault(folded.split(" ")[0], set()).add(folded)
    words = [
        (m.start(), m.start() + len(_strip_possessive(m.group(0))), _strip_possessive(m.group(0)))
        for m in _WORD_RE.finditer(text)
    ]
    words = [w for w in words if not any(a <= w[0] < b for a, b in taken)]
    out: list[PersonMatch] = []
    i = 0
    while i < len(words):
        hit = None
        for n in range(min(MAX_NAME_WORDS, len(words) - i), 0, -1):
            span = words[i : i + n]
            if any(span[k + 1][0] - span[k][1] > 2 for k in range(n - 1)):
                continue
            phrase = text[span[0][0] : span[-1][1]]
            key = fold(phrase)
            if key in ignored or normalize_name(phrase) in ignored:
                continue
            folded = None
            if key in full:
                folded = key
            elif n == 1 and len(firsts.get(key, ())) == 1:
                folded = next(iter(firsts[key]))
            if folded is None:
                continue
            if all(w in ordinary for w in key.split()) and not (phrase[:1].isupper() and not text.isupper()):
                continue  # "rose garden" is not Rose
            hit = (n, folded, span[0][0], span[-1][1])
            break
        if hit is None:
            i += 1
            continue
        n, folded, a, b = hit
        members = full[folded]
        out.append(PersonMatch(tuple(pid for pid, _ in members), members[0][1], a, b))
        i += n
    return out
