"""Pure ranking logic of the fine stage (RetLLM): ordering, cut-off and streaming, no llama here.

The multimodal LLM scores each of the top-k coarse (CLIP) candidates with P(True) to a
"does it match?" question (see ``retllm_desktop.models.llm.scorer``). The order, the cutoff and every
mark the shells show come from one verdict, the match share P(True) / (P(True) + P(False)) (``verdict.py``;
with real weights it is P(True)). As in the paper's code, it is compared truncated to 2 decimals
(``int(p * 100) / 100``) and ties go to the lower full-vocabulary entropy (the more confident answer);
remaining ties keep the coarse order. Everything past k keeps its
coarse order after the reranked block. (Where we differ from the paper: see ``models/llm/answer.py``.)

The fine stage can only add, never take away: a candidate the LLM could not check (a damaged photo, an
error inside llama.cpp) is kept with the reason, ranked after the checked ones and before the unchecked
rest, and the remaining candidates are still checked.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .errors import CancelledError, RetllmError
from .models.llm.answer import VE_BAND, VE_THRESHOLD, paper_score
from .models.llm.fine_score import VE_MODES, FineScore
from .verdict import DEFAULT_CUTOFF, match_share

__all__ = [
    "VE_BAND",
    "VE_MODES",
    "VE_THRESHOLD",
    "FineScore",
    "RerankOptions",
    "RankedItem",
    "RerankUpdate",
    "order_by_fine",
    "rerank",
    "rerank_stream",
]

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass
class RerankOptions:
    k: int = 10
    ve: str = "auto"  # "off" | "auto" | "always" (second look) | "retrace" (in-layer, see retrace.py)
    min_match: float | None = None  # hide checked candidates whose match share is not above this
    ve_threshold: float = VE_THRESHOLD  # second look when the first look's normalised top-10 entropy is above
    ve_band: tuple[float, float] | None = VE_BAND  # ... or its P(True) is inside this band
    # "Only true matches": keep checked candidates judged a match (share above the cutoff, by default
    # P(True) > P(False)); hide the unchecked ones
    only_true: bool = False
    # Check the k candidates from this coarse position on ("check the next 10"); earlier ones keep their
    # place, or take part in the ordering with their earlier verdict from ``known``.
    offset: int = 0
    known: dict[int, FineScore] = field(default_factory=dict)  # photo id -> an earlier verdict (search layer)
    match_cutoff: float | None = None  # the verdict's cutoff (None: ``min_match``, else 0.5), verdict.py

    @property
    def cutoff(self) -> float:
        """The verdict's cutoff on the match share (``verdict.py``)."""
        if self.match_cutoff is not None:
            return float(self.match_cutoff)
        return DEFAULT_CUTOFF if self.min_match is None else float(self.min_match)

    def __post_init__(self) -> None:
        if self.k < 0:
            raise ValueError("k must be >= 0")
        if self.offset < 0:
            raise ValueError("offset must be >= 0")
        if self.ve not in VE_MODES:
            raise ValueError(f"ve must be one of {VE_MODES}, got {self.ve!r}")


@dataclass(frozen=True)
class RankedItem(Generic[T]):
    candidate: T
    fine: FineScore | None  # None = not (yet) scored by the LLM
    coarse_rank: int  # 0-based position in the coarse list
    hidden: bool = False  # scored and below min_match
    error: str | None = None  # why the LLM could not check this candidate (then ``fine`` is None)


@dataclass(frozen=True)
class RerankUpdate(Generic[T]):
    """Snapshot after each scored candidate.

    ``items``: scored top-k candidates in fine order, then those the LLM could not check (``error`` set)
    in coarse order, then the not-yet-scored rest of the top-k in coarse order, then everything past k in
    coarse order. Hidden items (below ``min_match``) are left out of
    ``items`` and listed in ``hidden``.
    """

    items: list[RankedItem[T]]
    done: int  # candidates the LLM was asked about so far (checked or not checkable)
    total: int  # number of candidates that will be scored (= min(k, len(candidates)))
    hidden: list[RankedItem[T]] = field(default_factory=list)
    finished: bool = False

    @property
    def pairs(self) -> list[tuple[T, FineScore | None]]:
        return [(it.candidate, it.fine) for it in self.items]


def fine_sort_key(fine: FineScore, coarse_rank: int) -> tuple[float, float, int]:
    """The paper's order on the verdict: match share truncated to 2 decimals (desc), full-vocabulary
    entropy (asc), coarse rank.

    A score without a full-vocabulary entropy (an older caller) falls back to its top-10 entropy.
    """
    tie = fine.vocab_entropy if fine.vocab_entropy is not None else fine.entropy
    return (-paper_score(match_share(fine)), tie, coarse_rank)


def order_by_fine(items: Iterable[tuple[T, FineScore, int] | RankedItem[T]]) -> list[RankedItem[T]]:
    """Sort scored items: accepts ``RankedItem`` or ``(candidate, FineScore, coarse_rank)`` tuples."""
    ranked: list[RankedItem[T]] = []
    for it in items:
        if isinstance(it, RankedItem):
            ranked.append(it)
        else:
            cand, fine, rank = it
            ranked.append(RankedItem(cand, fine, rank))
    for it in ranked:
        if it.fine is None:
            raise ValueError("order_by_fine needs scored items")
    return sorted(ranked, key=lambda it: fine_sort_key(it.fine, it.coarse_rank))  # type: ignore[arg-type]


def _snapshot(
    candidates: Sequence[T],
    scored: list[RankedItem[T]],
    total: int,
    opts: RerankOptions,
    finished: bool,
    prior: dict[int, FineScore] | None = None,
) -> RerankUpdate[T]:
    prior = prior or {}
    known = [RankedItem(candidates[i], f, i) for i, f in prior.items()]
    ordered = order_by_fine([it for it in scored if it.fine is not None] + known)
    failed = [it for it in scored if it.fine is None]  # already in coarse order

    def below(it: RankedItem[T]) -> bool:
        fine = it.fine
        assert fine is not None
        if opts.only_true:
            return not match_share(fine) > opts.cutoff
        return opts.min_match is not None and not match_share(fine) > opts.min_match

    visible = [it for it in ordered if not below(it)]
    hidden = [RankedItem(it.candidate, it.fine, it.coarse_rank, hidden=True) for it in ordered if below(it)]
    done = {it.coarse_rank for it in scored} | set(prior)
    unscored = [RankedItem(candidates[i], None, i) for i in range(len(candidates)) if i not in done]
    head = [
        it for it in unscored if it.coarse_rank < opts.offset
    ]  # above the checked window: keep their place
    rest = [it for it in unscored if it.coarse_rank >= opts.offset]
    if opts.only_true:  # only what the LLM checked and judged as matching
        hidden += [RankedItem(it.candidate, None, it.coarse_rank, hidden=True) for it in failed + head + rest]
        return RerankUpdate(visible, len(scored), total, hidden, finished)
    return RerankUpdate(head + visible + failed + rest, len(scored), total, hidden, finished)


def _reason(e: Exception) -> str:
    """A one-line reason for a candidate that could not be checked."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if isinstance(e, RetllmError):
        return text or type(e).__name__
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def rerank_stream(
    candidates: Sequence[T],
    score_fn: Callable[[T], FineScore],
    options: RerankOptions | None = None,
    cancel: threading.Event | None = None,
    prior: dict[int, FineScore] | None = None,
    first: Callable[[T], bool] | None = None,
) -> Iterator[RerankUpdate[T]]:
    """Score the top-k ``candidates`` (given in coarse order) one by one, yielding a snapshot after each.

    ``first(candidate)`` True marks candidates that are quick to check (prepared): they are checked
    before the others (each group in coarse order), so the first verdicts come sooner; the final
    ranking does not depend on the order of the checks.

    With ``options.offset`` the k candidates from that position are scored instead; ``prior`` (candidate
    index -> an earlier verdict) joins the ordering without being scored again.

    The first update (``done == 0``) is the plain coarse order, so a UI can show results immediately;
    the last one has ``finished=True``. ``score_fn`` is called with a candidate and must return a
    ``FineScore`` (it usually closes over the query and the VE mode from ``options``).

    Any other exception from ``score_fn`` marks that candidate as not checkable (``RankedItem.error``,
    logged with its traceback) and the stream goes on with the next one.

    Cancellation: ``cancel`` is checked before every candidate; when set, ``CancelledError`` is raised
    (the caller keeps the last update it received, which is a consistent partial ranking). A
    ``score_fn`` may itself raise ``CancelledError``; it propagates unchanged.
    """
    opts = options or RerankOptions()
    cands = list(candidates)
    prior = {i: f for i, f in (prior or {}).items() if 0 <= i < len(cands)}
    window = [i for i in range(opts.offset, min(opts.offset + opts.k, len(cands))) if i not in prior]
    if first is not None:
        quick = {i for i in window if first(cands[i])}
        window.sort(key=lambda i: i not in quick)
    total = len(window)
    scored: list[RankedItem[T]] = []
    if cancel is not None and cancel.is_set():
        raise CancelledError("Rerank cancelled.")
    yield _snapshot(cands, scored, total, opts, total == 0, prior)
    for n, i in enumerate(window):
        if cancel is not None and cancel.is_set():
            raise CancelledError("Rerank cancelled.")
        try:
            scored.append(RankedItem(cands[i], score_fn(cands[i]), i))
        except CancelledError:
            raise
        except Exception as e:  # one bad candidate must not take the others down
            if cancel is not None and cancel.is_set():
                raise CancelledError("Rerank cancelled.") from e
            log.warning("could not check candidate %d: %s", i, e, exc_info=not isinstance(e, RetllmError))
            scored.append(RankedItem(cands[i], None, i, error=_reason(e)))
        yield _snapshot(cands, scored, total, opts, n == total - 1, prior)


def rerank(
    candidates: Sequence[T],
    score_fn: Callable[[T], FineScore],
    options: RerankOptions | None = None,
    cancel: threading.Event | None = None,
    prior: dict[int, FineScore] | None = None,
) -> RerankUpdate[T]:
    """Run ``rerank_stream`` to the end and return the final update."""
    last: RerankUpdate[T] | None = None
    for update in rerank_stream(candidates, score_fn, options, cancel, prior):
        last = update
    assert last is not None
    return last
