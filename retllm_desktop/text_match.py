"""Words of a query matched against the text read from photos, and its fusion with the CLIP ranking.

A query's words (minus filler words such as "the", "that", "says") are looked up in the catalog's FTS5
index as prefixes, a quoted phrase as that exact phrase. Photos whose text matches are fused with the
CLIP ranking by weighted reciprocal-rank fusion: ``1/(k + clip_rank) + w * coverage²/(k + text_rank)``,
where coverage is the share of the query's words found (words for things that carry text, such as "sign"
or "receipt", count only when the query has nothing else). A query without any text match keeps exactly
the CLIP order (the fused score is then monotone in the CLIP rank).
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field

RRF_K = 60
TEXT_WEIGHT = 2.0  # times coverage squared: a photo holding only some of the query's words counts little
# Words that say *that* a photo shows text, or glue words: they never decide a text match.
STOPWORDS = frozenset(
    """a an and are as at be by for from has have in is it its of on or the to with this that these those
    photo photos picture pictures image images says say saying said reads read reading written writing word
    words text letters where which who what my our your me i""".split()
)
# Things that carry text: "the sign that says EXIT", "receipt from Lidl". They are matched, but when the
# query has other words, only those decide how much of it a photo's text covers.
CARRIERS = frozenset(
    """sign signs label labels receipt receipts ticket tickets poster posters menu menus board boards
    whiteboard screenshot screenshots document documents page pages note notes card cards banner plate
    invoice bill paper book cover""".split()
)
PREFIX_MIN = 4  # shorter words match whole words only ("cat" is not "catalogue")
_WORD = re.compile(r"\w+")
_QUOTED = re.compile(r'"([^"]+)"|“([^”]+)”')


def fold(text: str) -> str:
    """Lower case without diacritics ("Café" → "cafe"), as the FTS5 index compares."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def words(text: str) -> list[str]:
    return _WORD.findall(fold(text))


def squash(text: str) -> str:
    """Folded text without spaces and punctuation, line by line: what the substring (trigram) index holds."""
    return "\n".join("".join(words(line)) for line in text.splitlines())


@dataclass(frozen=True)
class TextQuery:
    terms: tuple[str, ...]  # single words, matched as prefixes when 3+ characters long
    phrases: tuple[tuple[str, ...], ...]  # quoted phrases, matched exactly

    @property
    def units(self) -> int:
        return len(self.terms) + len(self.phrases)

    def fts(self) -> str:
        parts = [f'"{t}"*' if len(t) >= PREFIX_MIN else f'"{t}"' for t in self.terms]
        parts += ['"' + " ".join(p) + '"' for p in self.phrases]
        return " OR ".join(parts)

    def substrings(self) -> list[str]:
        """What to look for inside run-together text: words of 4+ characters, phrases without spaces."""
        return [t for t in self.terms if len(t) >= 4] + ["".join(p) for p in self.phrases]

    def _term_hits(self, term: str, tokens: list[str]) -> bool:
        return any(tok == term or (len(term) >= PREFIX_MIN and tok.startswith(term)) for tok in tokens)

    def coverage(self, text: str) -> float:
        """Share of the query's words and phrases found in ``text``. A word found only inside another
        (run-together text) counts fully from five letters on, half when shorter ("gate" in "investigate")."""
        tokens = words(text)
        squashed = squash(text)
        found = 0.0
        hard = [t for t in self.terms if t not in CARRIERS]
        terms = hard if (hard or self.phrases) else list(self.terms)
        units = len(terms) + len(self.phrases)
        for t in terms:
            if self._term_hits(t, tokens):
                found += 1.0
            elif len(t) >= 4 and t in squashed:
                found += 1.0 if len(t) >= 5 else 0.5
        found += sum("".join(p) in squashed for p in self.phrases)
        return found / units if units else 0.0

    def word_matches(self, word: str) -> bool:
        """Whether a word read in a photo is one the query asked for (to highlight it)."""
        tokens = words(word)
        if any(self._term_hits(t, tokens) for t in self.terms):
            return True
        joined = "".join(tokens)
        if any(len(t) >= 4 and t in joined for t in self.terms):
            return True
        return any(tok in p for p in self.phrases for tok in tokens)


def parse_text_query(query: str | None) -> TextQuery | None:
    """The words of ``query`` worth looking up in photos' text (None when there are none)."""
    if not query:
        return None
    phrases = []
    for m in _QUOTED.finditer(query):
        p = tuple(words(m.group(1) or m.group(2)))
        if p:
            phrases.append(p)
    rest = _QUOTED.sub(" ", query)
    terms: list[str] = []
    for w in words(rest):
        if w in STOPWORDS or (len(w) < 2 and not w.isdigit()):
            continue
        if w not in terms:
            terms.append(w)
    if not terms and not phrases:
        return None
    return TextQuery(tuple(terms), tuple(dict.fromkeys(phrases)))


@dataclass
class TextMatch:
    """Why a photo matched the query's words: for the JSON output, the snippet and the highlights."""

    coverage: float
    rank: int  # 1-based among the text matches
    snippet: str
    words: list[dict] = field(default_factory=list)  # {"text", "box"} of each matched word (fractions)

    def as_dict(self) -> dict:
        return {"coverage": round(self.coverage, 4), "rank": self.rank, "snippet": self.snippet}


def describe_match(query: TextQuery, text: str, lines_json: str, rank: int, coverage: float) -> TextMatch:
    """The matched lines as a short snippet and the matched words' boxes."""
    try:
        lines = json.loads(lines_json) if lines_json else []
    except ValueError:
        lines = []
    matched_words: list[dict] = []
    matched_lines: list[str] = []
    for line in lines:
        hits = [w for w in line.get("words", []) if query.word_matches(w.get("text", ""))]
        if hits:
            matched_lines.append(line.get("text", ""))
            matched_words.extend({"text": w["text"], "box": w["box"]} for w in hits)
    if not matched_lines:  # e.g. a phrase split across lines: show the start of the text
        matched_lines = [t for t in text.splitlines() if t.strip()][:2]
    return TextMatch(coverage, rank, snippet(matched_lines), matched_words)


def snippet(lines: list[str], width: int = 90) -> str:
    out = " … ".join(line.strip() for line in lines if line.strip())
    return out if len(out) <= width else out[: width - 1].rstrip() + "…"


def fused_scores(clip_ranks: dict, text_ranks: dict, coverage: dict) -> dict:
    """Weighted reciprocal-rank fusion of two rankings (keys → 1-based ranks); higher is better."""
    keys = set(clip_ranks) | set(text_ranks)
    worst = len(clip_ranks) + len(text_ranks) + 1
    out = {}
    for key in keys:
        score = 1.0 / (RRF_K + clip_ranks.get(key, worst))
        if key in text_ranks:
            score += TEXT_WEIGHT * coverage.get(key, 1.0) ** 2 / (RRF_K + text_ranks[key])
        out[key] = score
    return out
