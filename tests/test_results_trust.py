"""Results a person can trust (engine and CLI): one verdict per mark, results true to the disk,
date filters that keep file-dated photos, CLI columns that say what they are and ``typed`` in --json."""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from retllm_desktop.catalog import Photo
from retllm_desktop.models.llm.fine_score import FineScore
from retllm_desktop.rerank import RerankOptions, rerank
from retllm_desktop.search import SearchResult
from retllm_desktop.verdict import match_share, verdict

from .conftest import make_photo
from .test_cli import run


def fine(p_true: float, p_false: float, entropy: float = 0.3) -> FineScore:
    return FineScore(
        p_true=p_true, p_false=p_false, entropy=entropy, ve_used=False, score=p_true, first_pass_score=p_true
    )


# The corner the issue saw with random weights: both answers get almost nothing. "tiny" leans to True
# (the model prefers True 4:1), "clear_no" is a clear "False" with a larger P(True).
TINY = {"tiny": (0.004, 0.001), "clear_no": (0.3, 0.6), "zero": (0.0, 0.0), "yes": (0.9, 0.05)}


def test_order_mark_percentage_and_cutoff_come_from_one_verdict() -> None:
    last = rerank(list(TINY), lambda c: fine(*TINY[c]), RerankOptions(k=4))
    order = [it.candidate for it in last.items]
    assert order == ["yes", "tiny", "zero", "clear_no"]  # by match share: 0.95, 0.8, 0.5, 0.33
    shares = [match_share(it.fine) for it in last.items]
    assert shares == sorted(shares, reverse=True)
    v = {c: verdict(fine(*TINY[c])) for c in TINY}
    assert v["tiny"].is_match and v["tiny"].mark == "✓" and v["tiny"].words == "Likely match"
    assert v["tiny"].percent == "80%"  # never "✓ 0%"
    assert not v["clear_no"].is_match and v["clear_no"].words == "Unlikely" and v["clear_no"].percent == "33%"
    assert not v["zero"].is_match and v["zero"].percent == "50%"  # nothing on either answer: not a match
    # the cutoff ("Only true matches", --min-match) reads the same share: what is shown is what is ticked
    only = rerank(list(TINY), lambda c: fine(*TINY[c]), RerankOptions(k=4, only_true=True))
    assert [it.candidate for it in only.items] == [c for c in order if v[c].is_match] == ["yes", "tiny"]
    cut = rerank(list(TINY), lambda c: fine(*TINY[c]), RerankOptions(k=4, min_match=0.5))
    assert [it.candidate for it in cut.items] == ["yes", "tiny"]
    strict = rerank(
        list(TINY), lambda c: fine(*TINY[c]), RerankOptions(k=4, only_true=True, match_cutoff=0.9)
    )
    assert [it.candidate for it in strict.items] == ["yes"]
    assert verdict(fine(*TINY["tiny"]), 0.9).mark == "✗"  # the mark follows the same cutoff
    # a share right above the cutoff never reads as the cutoff itself
    assert verdict(fine(0.5021, 0.4979)).percent == "51%" and verdict(fine(0.4979, 0.5021)).percent == "50%"


def test_json_score_is_the_score_the_order_uses() -> None:
    photo = Photo(1, 1, "/p/a.jpg", 1, 1, "h")
    checked = SearchResult(photo=photo, score=0.21, coarse_rank=2, rank=1, fine=fine(*TINY["tiny"]))
    d = checked.as_dict()
    assert d["score"] == pytest.approx(0.8) and d["match"] == pytest.approx(0.8) and d["verdict"] == "match"
    assert d["p_true"] == pytest.approx(0.004) and d["coarse_score"] == pytest.approx(0.21)
    fused = SearchResult(photo=photo, score=0.001, coarse_rank=1, fused=0.03)
    assert fused.as_dict()["score"] == pytest.approx(0.03) == fused.order_score


@pytest.fixture
def indexed(tmp_path: Path, clip_models_dir: Path) -> tuple[Path, list[str]]:
    photos = tmp_path / "photos"
    for i in range(8):
        make_photo(photos / f"p{i}.jpg", seed=100 + i)
    lib = ["--library", str(tmp_path / "lib"), "--models", str(clip_models_dir), "--threads", "1"]
    assert run("index", *lib, str(photos)).returncode == 0
    return photos, lib


def test_search_never_shows_a_deleted_photo_and_records_it_for_the_next_index(
    indexed: tuple[Path, list[str]], clip_models_dir: Path
) -> None:
    photos, lib = indexed
    first = json.loads(run("search", *lib, "--json", "--no-rerank", "--top", "5", "a photo").stdout)
    shown = [x["path"] for x in first["results"]]
    for p in shown[:3]:  # deleted in a file manager while nothing watches
        os.unlink(p)
    r = run("search", *lib, "--json", "--no-rerank", "--top", "5", "a photo")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    paths = [x["path"] for x in out["results"]]
    assert all(Path(p).is_file() for p in paths) and len(paths) == 5  # the page stays full
    assert sorted(out["missing"]) == sorted(shown[:3])
    assert [x["rank"] for x in out["results"]] == [1, 2, 3, 4, 5]
    text = run("search", *lib, "--no-rerank", "--top", "8", "a photo")
    assert text.returncode == 0 and not any(p in text.stdout for p in shown[:3])
    assert "3 photos no longer on disk left out" in text.stderr

    from retllm_desktop.library import Library

    with Library(lib[1], models_dir=clip_models_dir, threads=1) as library:
        assert library.disk.recorded() == set(shown[:3])  # for the next index
        summary = library.index_roots(only_paths=set())  # e.g. a watcher batch about something else
        assert summary.removed == 3
        assert library.disk.recorded() == set()
        assert all(library.catalog.photo_by_path(p) is None for p in shown[:3])


def test_a_photo_on_an_unplugged_drive_is_not_called_deleted(
    indexed: tuple[Path, list[str]], tmp_path: Path
) -> None:
    photos, lib = indexed
    away = tmp_path / "unplugged"
    shutil.move(str(photos), str(away))  # the whole folder is gone: a drive that is not mounted
    try:
        out = json.loads(run("search", *lib, "--json", "--no-rerank", "--top", "5", "a photo").stdout)
        assert out["missing"] == [] and len(out["results"]) == 5
    finally:
        shutil.move(str(away), str(photos))


def _set_file_date(path: Path, when: str) -> None:
    t = datetime.fromisoformat(when).timestamp()
    os.utime(path, (t, t))


def test_date_filters_keep_file_dated_photos_and_json_keeps_what_was_typed(
    tmp_path: Path, clip_models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = tmp_path / "photos"
    for i in range(4):  # no EXIF capture date: only the file's date says when
        _set_file_date(make_photo(photos / f"summer{i}.jpg", seed=i), f"2019-07-0{i + 1}T12:00:00")
    for i in range(3):
        _set_file_date(make_photo(photos / f"winter{i}.jpg", seed=10 + i), f"2021-01-0{i + 1}T12:00:00")
    lib = ["--library", str(tmp_path / "lib"), "--models", str(clip_models_dir), "--threads", "1"]
    assert run("index", *lib, str(photos)).returncode == 0
    r = run("search", *lib, "--json", "--no-rerank", "--from", "2019-06-01", "--to", "2019-08-31", "a photo")
    assert r.returncode == 0, r.stderr
    names = {Path(x["path"]).name for x in json.loads(r.stdout)["results"]}
    assert names == {f"summer{i}.jpg" for i in range(4)}
    # the words' dates are understood the same way; --json says what was typed and what was searched
    monkeypatch.setenv("RETLLM_TODAY", "2026-11-26")
    out = json.loads(run("search", *lib, "--json", "--no-rerank", "a dog in summer 2019").stdout)
    assert out["typed"] == "a dog in summer 2019" and out["query"] == "a dog"
    assert {Path(x["path"]).name for x in out["results"]} == {f"summer{i}.jpg" for i in range(4)}
    plain = json.loads(run("search", *lib, "--json", "--no-rerank", "a dog").stdout)
    assert plain["typed"] == plain["query"] == "a dog"


def test_cli_text_output_labels_its_columns_and_prints_the_order_score(
    indexed: tuple[Path, list[str]],
) -> None:
    photos, lib = indexed
    r = run("search", *lib, "--no-rerank", "--top", "5", "a photo")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["#", "score", "taken", "photo"]
    printed = [float(line.split()[1]) for line in lines[1:6]]
    out = json.loads(run("search", *lib, "--json", "--no-rerank", "--top", "5", "a photo").stdout)
    assert printed == pytest.approx([x["score"] for x in out["results"]], abs=1e-4)
    assert printed == sorted(printed, reverse=True)  # the order, in the numbers printed


def test_the_fused_score_is_printed_when_the_words_joined_the_ranking(
    indexed: tuple[Path, list[str]], clip_models_dir: Path
) -> None:
    """A photo found by its words ranks by the fusion of look and words; that number is printed, not the
    cosine (which put a 0.001 above a 0.006 before)."""
    photos, lib = indexed
    from retllm_desktop.library import Library

    with Library(lib[1], models_dir=clip_models_dir, threads=1) as library:
        target = library.catalog.photo_by_path(str(photos / "p5.jpg"))
        with library.catalog.transaction():
            library.catalog.put_text(target.hash, "test", "GATE 42 BOARDING", "gate42boarding", "[]")
    lines = run("search", *lib, "--no-rerank", "--top", "8", "gate boarding").stdout.splitlines()
    scores = [float(line.split()[1]) for line in lines[1:] if line[:4].strip().rstrip(".").isdigit()]
    assert scores == sorted(scores, reverse=True)
    out = json.loads(run("search", *lib, "--json", "--no-rerank", "--top", "8", "gate boarding").stdout)
    top = out["results"][0]
    assert top["path"].endswith("p5.jpg") and top["score"] == top["fused_score"] != top["coarse_score"]
    assert [x["score"] for x in out["results"]] == sorted((x["score"] for x in out["results"]), reverse=True)
