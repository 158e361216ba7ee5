"""Bursts and near-duplicates: photos that look the same and were taken seconds apart are one result.

A camera's burst of twenty shots would otherwise fill the first screen and take the LLM's checks. Two
photos are near-duplicates when their CLIP embeddings are nearly identical (cosine >= a threshold measured
by ``bench/bench_bursts.py``) *and* their capture times are at most a few seconds apart — the time test is
what keeps two photos of the same view taken on different days apart. Photos without a capture time are
never folded.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np

# Measured by bench/bench_bursts.py on generated bursts of real photographs (README "Bursts"): the threshold
# with the most folding at <= 1 % false folds for the ViT-B/32-size CLIP available here — a random-weight
# (synthetic) one. A trained CLIP spreads embeddings differently: re-measure with the bench for it.
DEFAULT_THRESHOLD = 0.885
DEFAULT_WINDOW_S = 5.0  # between neighbouring shots of one group


def seconds(taken_at: str | None) -> float | None:
    """An ISO capture time as seconds (naive, as the camera wrote it), or None."""
    if not taken_at:
        return None
    try:
        return datetime.fromisoformat(taken_at).replace(tzinfo=None).timestamp()
    except ValueError:
        return None


class Folder:
    """Incremental folding in rank order: :meth:`place` says which earlier group a photo joins, if any.

    A photo joins the first earlier group that has a shot taken within ``window_s`` seconds of it and whose
    leading photo's embedding has cosine >= ``threshold`` with it (vectors L2-normalised). Comparing looks
    with the leader only keeps a group from drifting from one scene into the next; the time test with any
    member lets a long burst stay one group.
    """

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, window_s: float = DEFAULT_WINDOW_S):
        self.threshold = threshold
        self.window_s = window_s
        self._groups: list[tuple[object, np.ndarray, list[float]]] = []  # (key, leader vector, shot times)

    def place(self, key: object, vector: np.ndarray | None, t: float | None) -> object | None:
        """The key of the group this photo joins, or None when it leads a new group (then it is one)."""
        if vector is None or t is None:
            return None
        for gkey, lead, group_times in self._groups:
            if (
                min(abs(g - t) for g in group_times) <= self.window_s
                and float(lead @ vector) >= self.threshold
            ):
                group_times.append(t)
                return gkey
        self._groups.append((key, vector, [t]))
        return None


def fold(
    vectors: np.ndarray,
    times: Sequence[float | None],
    threshold: float = DEFAULT_THRESHOLD,
    window_s: float = DEFAULT_WINDOW_S,
) -> list[int]:
    """For each photo (in rank order), the index of the photo leading its group (itself when it leads)."""
    folder = Folder(threshold, window_s)
    heads: list[int] = []
    for i, t in enumerate(times):
        joined = folder.place(i, vectors[i], t)
        heads.append(i if joined is None else int(joined))  # type: ignore[call-overload]
    return heads
