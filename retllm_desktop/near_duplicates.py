"""Bursts and near-duplicates: photos that look the same and were taken seconds apart are one result.

A camera's burst of twenty shots would otherwise fill the first screen and take the LLM's checks. Two
photos are near-duplicates when their CLIP embeddings are nearly identical (cosine >= a threshold measured
by ``bench/bench_bursts.py``) *and* their capture times are at most a few seconds apart — the time test is
what keeps two photos of the same view taken on different days apart. Photos without a capture time are
never folded. A shot sequence is one camera in one spot, so when both photos know where they were taken
they must be at most ``MAX_APART_M`` metres apart (GPS error plus walking a few steps; not photos of one
second in Lisbon and Kyoto), and when both know their camera model it must be the same one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from .places import haversine_km, valid_gps

# Measured by bench/bench_bursts.py on generated bursts of real photographs (README "Bursts"): the threshold
# with the most folding at <= 1 % false folds for the ViT-B/32-size CLIP available here — a random-weight
# (synthetic) one. A trained CLIP spreads embeddings differently: re-measure with the bench for it.
DEFAULT_THRESHOLD = 0.885
DEFAULT_WINDOW_S = 5.0  # between neighbouring shots of one group
# Phone GPS is good to ~5-30 m outdoors; a burst's shooter walks a few steps at most within the window.
MAX_APART_M = 150.0


@dataclass(frozen=True)
class Where:
    """Where and with what a photo was taken, as far as it knows (None = unknown, which never separates)."""

    lat: float | None = None
    lon: float | None = None
    camera: str | None = None  # the camera model, case and spacing folded

    @classmethod
    def of(cls, photo: object) -> Where:
        """From a catalog photo (anything with gps_lat/gps_lon/camera_make/camera_model attributes)."""
        model = " ".join((getattr(photo, "camera_model", None) or "").split()).casefold() or None
        lat, lon = getattr(photo, "gps_lat", None), getattr(photo, "gps_lon", None)
        if not valid_gps(lat, lon):
            return cls(None, None, model)
        return cls(float(lat), float(lon), model)  # type: ignore[arg-type]


UNKNOWN = Where()


def could_be_one_sequence(a: Where, b: Where, max_apart_m: float = MAX_APART_M) -> bool:
    """False when what both photos know says they cannot be shots of one sequence."""
    if a.camera is not None and b.camera is not None and a.camera != b.camera:
        return False
    if a.lat is not None and b.lat is not None and a.lon is not None and b.lon is not None:
        return haversine_km(a.lat, a.lon, b.lat, b.lon) * 1000.0 <= max_apart_m
    return True


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

    A photo joins the first earlier group that has a shot taken within ``window_s`` seconds of it, whose
    leading photo's embedding has cosine >= ``threshold`` with it (vectors L2-normalised), and whose every
    shot :func:`could_be_one_sequence` with it (same spot, same camera, where both know). Comparing looks
    with the leader only keeps a group from drifting from one scene into the next; the time test with any
    member lets a long burst stay one group.
    """

    def __init__(
        self,
        threshold: float = DEFAULT_THRESHOLD,
        window_s: float = DEFAULT_WINDOW_S,
        max_apart_m: float = MAX_APART_M,
    ):
        self.threshold = threshold
        self.window_s = window_s
        self.max_apart_m = max_apart_m
        # (key, leader vector, shot times, where each shot was taken)
        self._groups: list[tuple[object, np.ndarray, list[float], list[Where]]] = []

    def place(
        self, key: object, vector: np.ndarray | None, t: float | None, where: Where = UNKNOWN
    ) -> object | None:
        """The key of the group this photo joins, or None when it leads a new group (then it is one)."""
        if vector is None or t is None:
            return None
        for gkey, lead, group_times, group_where in self._groups:
            if (
                min(abs(g - t) for g in group_times) <= self.window_s
                and float(lead @ vector) >= self.threshold
                and all(could_be_one_sequence(w, where, self.max_apart_m) for w in group_where)
            ):
                group_times.append(t)
                group_where.append(where)
                return gkey
        self._groups.append((key, vector, [t], [where]))
        return None


def fold(
    vectors: np.ndarray,
    times: Sequence[float | None],
    threshold: float = DEFAULT_THRESHOLD,
    window_s: float = DEFAULT_WINDOW_S,
    wheres: Sequence[Where] | None = None,
    max_apart_m: float = MAX_APART_M,
) -> list[int]:
    """For each photo (in rank order), the index of the photo leading its group (itself when it leads)."""
    folder = Folder(threshold, window_s, max_apart_m)
    heads: list[int] = []
    for i, t in enumerate(times):
        joined = folder.place(i, vectors[i], t, wheres[i] if wheres is not None else UNKNOWN)
        heads.append(i if joined is None else int(joined))  # type: ignore[call-overload]
    return heads
