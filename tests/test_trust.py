"""Results a person can trust: only true matches, checking the next candidates, the query photo's library copy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retllm_desktop.library import Library
from retllm_desktop.models.llm.fine_score import FineScore
from retllm_desktop.rerank import RerankOptions, rerank
from retllm_desktop.search import Query

from .test_cli import run


def verdict(p_true: float, p_false: float) -> FineScore:
    return FineScore(
        p_true=p_true, p_false=p_false, entropy=0.3, ve_used=False, score=p_true, first_pass_score=p_true
    )


# candidate -> (P(True), P(False)); "c" says False more than True although P(True) is 0.45 (> a 0.4 cutoff)
VERDICTS = {
    "a": (0.9, 0.05),
    "b": (0.3, 0.6),
    "c": (0.45, 0.5),
    "d": (0.6, 0.3),
    "e": (0.8, 0.1),
    "f": (0.7, 0.2),
}


def score(c: str) -> FineScore:
    return verdict(*VERDICTS[c])


def test_only_true_matches_keeps_true_over_false_and_hides_the_unchecked() -> None:
    cands = list("abcdef")
    last = rerank(cands, score, RerankOptions(k=4, only_true=True))
    assert [it.candidate for it in last.items] == ["a", "d"]  # checked and P(True) > P(False)
    assert sorted(it.candidate for it in last.hidden) == ["b", "c", "e", "f"]  # judged false, or unchecked
    assert all(it.fine is None for it in last.hidden if it.candidate in "ef")
    # a plain P(True) cutoff would have kept "c"
    assert "c" in [it.candidate for it in rerank(cands, score, RerankOptions(k=4, min_match=0.4)).items]


def test_offset_checks_the_next_candidates_and_known_verdicts_join_the_order() -> None:
    cands = list("abcdef")
    asked: list[str] = []

    def counting(c: str) -> FineScore:
        asked.append(c)
        return score(c)

    last = rerank(cands, counting, RerankOptions(k=2, offset=2))
    assert asked == ["c", "d"] and last.total == 2
    # the first two keep their place above the checked window, the rest follows in coarse order
    assert [it.candidate for it in last.items] == ["a", "b", "d", "c", "e", "f"]
    asked.clear()
    prior = {0: score("a"), 1: score("b")}
    last = rerank(cands, counting, RerankOptions(k=2, offset=2), prior=prior)
    assert asked == ["c", "d"]  # known verdicts are not asked again
    assert [it.candidate for it in last.items] == ["a", "d", "c", "b", "e", "f"]
    with pytest.raises(ValueError):
        RerankOptions(offset=-1)


@pytest.fixture
def lib(tmp_path: Path, full_models_dir: Path, photo_tree: Path):
    lib = Library(tmp_path / "lib", models_dir=full_models_dir, threads=1)
    lib.index_roots([str(photo_tree)])
    yield lib
    lib.close()


def test_check_the_next_ten_with_the_real_llm(lib: Library) -> None:
    q = Query(text="a red car")
    first = list(lib.search(q, top=8, rerank=RerankOptions(k=3, ve="off")))[-1]
    checked = {r.photo.id: r.fine for r in first.results if r.fine is not None}
    assert len(checked) == 3
    nxt = list(lib.search(q, top=8, rerank=RerankOptions(k=3, ve="off", offset=3, known=checked)))[-1]
    assert nxt.total == 3 and nxt.done == 3
    judged = [r for r in nxt.results if r.fine is not None]
    assert len(judged) == 6 and checked.keys() < {r.photo.id for r in judged}
    assert [r.photo.id for r in nxt.results[:6]] == [r.photo.id for r in judged]  # one order over both rounds
    assert all(nxt.results[i].fine.score >= nxt.results[i + 1].fine.score - 0.005 for i in range(5))
    only = list(lib.search(q, top=8, rerank=RerankOptions(k=4, ve="off", only_true=True)))[-1]
    assert all(r.fine is not None and r.fine.p_true > r.fine.p_false for r in only.visible)
    assert len(only.visible) + len([r for r in only.results if r.hidden]) == 8


def test_cli_rerank_offset_and_only_matches(lib: Library, full_models_dir: Path) -> None:
    lib_dir = str(lib.path)
    lib.close()
    args = ["--library", lib_dir, "--models", str(full_models_dir), "--json", "--top", "6", "--ve", "off"]
    r = run("search", "a dog", *args, "--rerank-offset", "2", "--rerank-k", "2")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)["results"]
    assert [x["check"] for x in res] == [
        "unchecked",
        "unchecked",
        "checked",
        "checked",
        "unchecked",
        "unchecked",
    ]
    r = run("search", "a dog", *args, "--rerank-k", "3", "--only-matches")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)["results"]
    assert all(x["check"] == "checked" and x["p_true"] > x["p_false"] for x in res) and len(res) <= 3
    r = run("search", "a dog", *args, "--rerank-offset", "-1")
    assert r.returncode == 1 and "--rerank-offset" in r.stderr


def test_outside_copy_of_a_library_photo_comes_first_marked(
    lib: Library, photo_tree: Path, tmp_path: Path
) -> None:
    target = photo_tree / "album-a" / "img03.jpg"
    outside = tmp_path / "from-my-phone.jpg"
    outside.write_bytes(target.read_bytes())
    # a composed query: the words alone would rank other photos first
    upd = lib.search_coarse(
        Query(image=str(outside), text="a snowy mountain at night", image_weight=0.1), top=5
    )
    assert upd.results[0].path == str(target) and upd.results[0].in_library
    assert upd.results[0].as_dict()["in_library"] is True
    assert sum(r.path == str(target) for r in upd.results) == 1 and len(upd.results) == 5
    assert not any(r.in_library for r in upd.results[1:])
    # the LLM does not move it: it is the photo itself
    last = list(lib.search(Query(image=str(outside)), top=5, rerank=RerankOptions(k=3, ve="off")))[-1]
    assert last.results[0].path == str(target) and last.results[0].in_library and last.results[0].fine is None
    assert last.total == 3 and sum(r.fine is not None for r in last.results) == 3
    # a photo that is not in the library is not marked
    other = tmp_path / "new.jpg"
    other.write_bytes(target.read_bytes() + b"\0")
    assert not any(r.in_library for r in lib.search_coarse(Query(image=str(other)), top=5).results)
