"""One verdict per checked photo: the order, the ✓/✗ mark, the words, the percentage and the cutoff.

The checking model answers "True" or "False". Its verdict is the **match share**: of the probability
it puts on the two answers, the part on "True" — ``P(True) / (P(True) + P(False))``. Everything a person
sees derives from that one number:

* the order of checked photos: the share truncated to 2 decimals (the RetLLM paper's comparison), ties
  to the lower full-vocabulary entropy, then the coarse order (``rerank.fine_sort_key``);
* the mark and the words: a match (✓ "Likely match") when the share is above the cutoff (0.5 = more
  likely True than False, unless the user set another), else ✗ "Unlikely";
* the percentage (only behind a details toggle): the share, rounded;
* "Only true matches" and ``--min-match``: the same share against the same cutoff.

With real weights P(True) + P(False) is close to 1, so the share is P(True) as the paper reads it. When
both are tiny (the model wanted to say something else), the share still says which answer it leaned to,
and the mark, the words and the place in the order agree; when both are zero it is 0.5: not a match.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

DEFAULT_CUTOFF = 0.5  # a match: more likely "True" than "False"


def match_share(fine: Any) -> float:
    """P(True) / (P(True) + P(False)) of a FineScore (0.5 when the model put nothing on either answer)."""
    p_true, p_false = max(float(fine.p_true), 0.0), max(float(fine.p_false), 0.0)
    total = p_true + p_false
    if not total > 0.0:
        return 0.5
    return min(max(p_true / total, 0.0), 1.0)


@dataclass(frozen=True)
class Verdict:
    share: float  # match share, 0..1
    is_match: bool  # share above the cutoff
    cutoff: float

    @property
    def words(self) -> str:
        """What a person reads: "Likely match" or "Unlikely"."""
        return "Likely match" if self.is_match else "Unlikely"

    @property
    def mark(self) -> str:
        return "✓" if self.is_match else "✗"

    @property
    def percent(self) -> str:
        """The share as a percentage (details only), on the same side of the cutoff as the mark."""
        pct = round(self.share * 100)
        edge = self.cutoff * 100
        if self.is_match and pct <= edge:
            pct = math.floor(edge) + 1
        elif not self.is_match and pct > edge:
            pct = math.floor(edge)
        return f"{min(max(pct, 0), 100)}%"


def verdict(fine: Any, cutoff: float | None = None) -> Verdict:
    """The verdict of one FineScore under ``cutoff`` (None: the default, 0.5)."""
    c = DEFAULT_CUTOFF if cutoff is None else float(cutoff)
    share = match_share(fine)
    return Verdict(share=share, is_match=share > c, cutoff=c)
