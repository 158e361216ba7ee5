"""Pure ranking logic of the fine stage: ordering, tie-break, cut-off, streaming, cancellation."""

from __future__ import annotations

import threading

import pytest

from retllm_desktop.errors import CancelledError
from retllm_desktop.rerank import (
    FineScore,
    RankedItem,
    RerankOptions,
    order_by_fine,
    rerank,
    rerank_stream,
)


def fs(score: float, entropy: float = 0.5) -> FineScore:
    return FineScore(
        p_true=score, p_false=1 - score, entropy=entropy, ve_used=False, score=score, first_pass_score=score
    )


def test_order_by_score_desc():
    out = order_by_fine([("a", fs(0.2), 0), ("b", fs(0.9), 1), ("c", fs(0.5), 2)])
    assert [it.candidate for it in out] == ["b", "c", "a"]


def test_tie_after_truncation_goes_to_lower_entropy():
    # 0.818 and 0.812 both truncate to 0.81 -> lower entropy wins although its raw score is lower
    out = order_by_fine([("hi", fs(0.818, entropy=0.6), 0), ("lo", fs(0.812, entropy=0.2), 1)])
    assert [it.candidate for it in out] == ["lo", "hi"]
    # no tie after truncation: raw order decides, entropy ignored
    out = order_by_fine([("a", fs(0.80, entropy=0.1), 0), ("b", fs(0.83, entropy=0.9), 1)])
    assert [it.candidate for it in out] == ["b", "a"]


def test_full_tie_keeps_coarse_rank():
    out = order_by_fine([("x", fs(0.5, 0.3), 3), ("y", fs(0.5, 0.3), 1), ("z", fs(0.5, 0.3), 2)])
    assert [it.candidate for it in out] == ["y", "z", "x"]


def test_order_by_fine_rejects_unscored():
    with pytest.raises(ValueError):
        order_by_fine([RankedItem("a", None, 0)])


def test_options_validation():
    with pytest.raises(ValueError):
        RerankOptions(ve="sometimes")
    with pytest.raises(ValueError):
        RerankOptions(k=-1)


SCORES = {"c0": 0.1, "c1": 0.7, "c2": 0.4, "c3": 0.9, "c4": 0.3, "c5": 0.8}


def test_stream_updates_and_layout():
    cands = list(SCORES)  # coarse order c0..c5
    calls = []

    def score_fn(c):
        calls.append(c)
        return fs(SCORES[c])

    ups = list(rerank_stream(cands, score_fn, RerankOptions(k=4)))
    assert len(ups) == 5  # initial coarse snapshot + one per scored candidate
    assert calls == ["c0", "c1", "c2", "c3"]  # only top-k, in coarse order
    assert [u.done for u in ups] == [0, 1, 2, 3, 4]
    assert all(u.total == 4 for u in ups)
    assert [u.finished for u in ups] == [False, False, False, False, True]
    # initial = coarse order, nothing scored
    assert [c for c, f in ups[0].pairs] == cands and all(f is None for _, f in ups[0].pairs)
    # after two: scored in fine order, then the unscored rest of top-k, then the tail (coarse)
    assert [c for c, _ in ups[2].pairs] == ["c1", "c0", "c2", "c3", "c4", "c5"]
    assert [f is not None for _, f in ups[2].pairs] == [True, True, False, False, False, False]
    # final: top-4 reranked, tail unchanged even though c5 would score high
    assert [c for c, _ in ups[-1].pairs] == ["c3", "c1", "c2", "c0", "c4", "c5"]
    assert [it.coarse_rank for it in ups[-1].items] == [3, 1, 2, 0, 4, 5]


def test_k_larger_than_candidates_and_zero():
    final = rerank(["c0", "c1"], lambda c: fs(SCORES[c]), RerankOptions(k=10))
    assert final.total == 2 and final.done == 2 and final.finished
    assert [c for c, _ in final.pairs] == ["c1", "c0"]
    ups = list(rerank_stream(["c0", "c1"], lambda c: pytest.fail("must not score"), RerankOptions(k=0)))
    assert len(ups) == 1 and ups[0].finished and [c for c, _ in ups[0].pairs] == ["c0", "c1"]


def test_min_match_hides_scored_below_threshold():
    cands = list(SCORES)
    ups = list(rerank_stream(cands, lambda c: fs(SCORES[c]), RerankOptions(k=4, min_match=0.35)))
    final = ups[-1]
    assert [c for c, _ in final.pairs] == ["c3", "c1", "c2", "c4", "c5"]  # c0 (0.1) hidden
    assert [h.candidate for h in final.hidden] == ["c0"] and final.hidden[0].hidden
    # unscored candidates are never hidden, even if they would score low later
    assert "c0" in [c for c, _ in ups[0].pairs]
    # hidden as soon as it is scored
    assert [h.candidate for h in ups[1].hidden] == ["c0"]


def test_cancel_stops_promptly():
    cancel = threading.Event()
    calls = []

    def score_fn(c):
        calls.append(c)
        if len(calls) == 2:
            cancel.set()
        return fs(SCORES[c])

    got = []
    with pytest.raises(CancelledError):
        for u in rerank_stream(list(SCORES), score_fn, RerankOptions(k=6), cancel):
            got.append(u)
    assert calls == ["c0", "c1"]  # nothing scored after the event was set
    assert got[-1].done == 2  # the last update received is a consistent partial ranking
    assert [c for c, _ in got[-1].pairs][:2] == ["c1", "c0"]


def test_cancel_before_start():
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CancelledError):
        next(rerank_stream(["a"], lambda c: pytest.fail("must not score"), RerankOptions(), cancel))


def test_score_fn_cancellation_propagates():
    def score_fn(c):
        raise CancelledError("stop")

    it = rerank_stream(["a", "b"], score_fn, RerankOptions(k=2))
    next(it)
    with pytest.raises(CancelledError):
        next(it)


def test_generic_candidates():
    class Photo:
        def __init__(self, n):
            self.n = n

    photos = [Photo(i) for i in range(3)]
    final = rerank(photos, lambda p: fs(p.n / 10), RerankOptions(k=3))
    assert [p.n for p, _ in final.pairs] == [2, 1, 0]


def test_scores_compare_truncated_like_the_paper():
    """The paper compares int(p * 100) / 100: 0.816 and 0.811 tie at 0.81 (rounding would split them)."""
    out = order_by_fine([("hi", fs(0.816, entropy=0.6), 0), ("lo", fs(0.811, entropy=0.2), 1)])
    assert [it.candidate for it in out] == ["lo", "hi"]


def test_ties_go_to_the_lower_full_vocabulary_entropy():
    """The paper breaks ties by the entropy of the whole next-token distribution, not the top-10 one."""
    a = FineScore(p_true=0.5, p_false=0.4, entropy=0.1, ve_used=False, score=0.5, first_pass_score=0.5,
                  vocab_entropy=3.0)  # fmt: skip
    b = FineScore(p_true=0.5, p_false=0.4, entropy=0.9, ve_used=False, score=0.5, first_pass_score=0.5,
                  vocab_entropy=1.0)  # fmt: skip
    assert [it.candidate for it in order_by_fine([("a", a, 0), ("b", b, 1)])] == ["b", "a"]


def test_paper_score_is_exactly_the_papers_arithmetic():
    from retllm_desktop.models.llm.answer import paper_score

    assert paper_score(0.816) == 0.81 and paper_score(0.999) == 0.99 and paper_score(1.0) == 1.0
    assert paper_score(0.29) == int(0.29 * 100) / 100 == 0.28  # float quirk kept, as in the paper
