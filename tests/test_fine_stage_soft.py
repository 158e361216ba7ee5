"""The fine stage can only add, never take away: bad photos, bad LLM files and long queries with the real
llama.cpp stack (synthetic GGUF models). Every test here failed before the fine stage failed soft."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest

from retllm_desktop.eval import load_eval_set, run_eval
from retllm_desktop.library import Library
from retllm_desktop.models.llm.check import GGUFError, check_mllm_files, read_gguf
from retllm_desktop.rerank import FineScore, RerankOptions, rerank
from retllm_desktop.search import Query

from .conftest import make_photo
from .test_cli import run


def _models_copy(src: Path, dst: Path) -> Path:
    """A private models folder (the CLIP shared by symlink, the LLM copied so it can be damaged)."""
    (dst / "mllm").mkdir(parents=True)
    (dst / "clip").symlink_to(src / "clip")
    shutil.copytree(src / "mllm" / "synthetic-tiny", dst / "mllm" / "synthetic-tiny")
    return dst / "mllm" / "synthetic-tiny"


def _set_projection_dim(mmproj: Path, value: int) -> None:
    """Patch the mmproj's clip.vision.projection_dim (uint32) in place: a projector for another model."""
    data = bytearray(mmproj.read_bytes())
    key = b"clip.vision.projection_dim"
    at = data.index(key) + len(key)
    assert struct.unpack_from("<I", data, at)[0] == 4  # GGUF value type uint32
    struct.pack_into("<I", data, at + 4, value)
    mmproj.write_bytes(bytes(data))


def test_a_failing_candidate_is_marked_and_the_rest_are_checked() -> None:
    def score(c: str) -> FineScore:
        if c == "c1":
            raise OSError("disk went away")
        s = {"c0": 0.2, "c2": 0.9, "c3": 0.5}[c]
        return FineScore(s, 1 - s, 0.5, False, s, s)

    final = rerank(["c0", "c1", "c2", "c3", "c4"], score, RerankOptions(k=4))
    assert final.finished and final.done == 4
    assert [it.candidate for it in final.items] == ["c2", "c3", "c0", "c1", "c4"]
    failed = final.items[3]
    assert failed.fine is None and failed.error == "OSError: disk went away"
    assert all(it.error is None for it in final.items if it.candidate != "c1")


@pytest.fixture
def indexed(tmp_path: Path, full_models_dir: Path, photo_tree: Path) -> Path:
    with Library(tmp_path / "lib", models_dir=full_models_dir, threads=1) as lib:
        lib.index_roots([str(photo_tree)])
    return tmp_path / "lib"


def test_a_damaged_photo_among_the_candidates(indexed: Path, full_models_dir: Path) -> None:
    with Library(indexed, models_dir=full_models_dir, threads=1) as lib:
        coarse = lib.search_coarse(Query(text="a red car"), top=6)
        bad = Path(coarse.results[1].path)
        bad.write_bytes(b"\xff\xd8\xff not a jpeg any more")  # damaged after indexing
        last = list(lib.search(Query(text="a red car"), top=6, rerank=RerankOptions(k=4, ve="off")))[-1]
    assert last.phase == "done" and last.done == 4 and len(last.results) == 6
    checked = [r for r in last.results if r.fine is not None]
    assert len(checked) == 3 and last.results[:3] == checked  # the checked ones first
    failed = last.results[3]
    assert failed.path == str(bad) and failed.fine is None and failed.check_error
    assert failed.check.startswith("could not check: ") and "could not be checked" in last.message
    assert [r.coarse_rank for r in last.results[4:]] == [5, 6]  # then the unchecked tail
    d = failed.as_dict()
    assert d["check"] == "failed" and d["check_error"] == failed.check_error
    assert (
        last.results[0].as_dict()["check"] == "checked" and last.results[5].as_dict()["check"] == "unchecked"
    )


def test_cli_search_with_a_damaged_candidate(indexed: Path, full_models_dir: Path) -> None:
    args = ["--library", str(indexed), "--models", str(full_models_dir), "--threads", "1"]
    first = json.loads(run("search", *args, "--json", "--no-rerank", "--top", "3", "boats").stdout)
    bad = first["results"][0]["path"]
    Path(bad).write_bytes(b"garbage")
    r = run("search", *args, "--json", "--top", "3", "--rerank-k", "3", "--ve", "off", "boats")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [x["check"] for x in out["results"]] == ["checked", "checked", "failed"]
    assert out["results"][2]["path"] == bad
    r = run("search", *args, "--top", "3", "--rerank-k", "3", "--ve", "off", "boats")
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and lines[0].split() == ["#", "check", "score", "taken", "photo"]
    assert "? could not check" in lines[3] and "could not check: " in lines[4]
    assert r.stderr.strip() == "1 photo could not be checked"


@pytest.mark.parametrize(
    "damage",
    ["truncated model", "garbage model", "truncated mmproj", "foreign mmproj"],
)
def test_an_llm_that_cannot_load_leaves_the_coarse_results(
    tmp_path: Path, full_models_dir: Path, photo_tree: Path, damage: str
) -> None:
    mllm = _models_copy(full_models_dir, tmp_path / "models")
    model, mmproj = mllm / "model.gguf", mllm / "mmproj.gguf"
    if damage == "truncated model":
        model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])  # an interrupted copy
    elif damage == "garbage model":
        model.write_bytes(b"\0" * 4096)
    elif damage == "truncated mmproj":
        mmproj.write_bytes(mmproj.read_bytes()[:-100])
    else:
        _set_projection_dim(mmproj, 96)
    args = ["--library", str(tmp_path / "lib"), "--models", str(tmp_path / "models"), "--threads", "1"]
    assert run("index", *args, str(photo_tree)).returncode == 0
    r = run("status", *args)
    assert r.returncode == 0
    line = next(x for x in r.stdout.splitlines() if x.startswith("LLM for reranking"))
    assert "synthetic-tiny — broken: " in line, line
    r = run("search", *args, "--top", "4", "a dog")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 1 + 4  # the header, the coarse results
    warning = r.stderr.strip()
    assert "\n" not in warning and "could not be loaded" in warning, warning
    out = json.loads(run("search", *args, "--json", "--top", "4", "a dog").stdout)
    assert len(out["results"]) == 4 and out["llm_error"] and out["reranked"] == 0


def test_file_checks_name_what_is_wrong(tmp_path: Path, full_models_dir: Path) -> None:
    mllm = _models_copy(full_models_dir, tmp_path / "models")
    model, mmproj = mllm / "model.gguf", mllm / "mmproj.gguf"
    info = read_gguf(model)
    assert info.data_end == info.file_size and info.architecture == "llama"
    check_mllm_files(model, mmproj)
    with pytest.raises(GGUFError, match="vision projector"):
        check_mllm_files(mmproj, mmproj)
    with pytest.raises(GGUFError, match="not a vision projector"):
        check_mllm_files(model, model)
    _set_projection_dim(mmproj, 96)
    with pytest.raises(GGUFError, match="does not belong to model.gguf"):
        check_mllm_files(model, mmproj)
    for cut in (3, 40, 5000, info.file_size - 1):
        model.write_bytes(model.read_bytes()[:cut] if cut < model.stat().st_size else model.read_bytes())
        with pytest.raises(GGUFError, match="not a GGUF|truncated"):
            read_gguf(model)


def test_a_query_too_long_for_the_context_is_shortened(indexed: Path, full_models_dir: Path) -> None:
    words = ("a red car parked next to a small dog on the beach at night " * 500).split()
    with Library(indexed, models_dir=full_models_dir, threads=1) as lib:
        last = list(lib.search(Query(text=" ".join(words)), top=3, rerank=RerankOptions(k=3, ve="off")))[-1]
    assert last.phase == "done" and last.done == 3
    assert all(r.fine is not None for r in last.results)
    assert last.llm_query and " ".join(words).startswith(last.llm_query)
    assert len(last.llm_query.split()) < len(words)
    assert "too long for the LLM" in last.message


def test_eval_keeps_going_with_a_caption_too_long(tmp_path: Path, full_models_dir: Path) -> None:
    imgs = tmp_path / "imgs"
    for i in range(2):
        make_photo(imgs / f"{i}.jpg", seed=30 + i)
    long = " ".join(["a small red boat on a lake"] * 1200)
    caps = tmp_path / "caps.tsv"
    caps.write_text(f"0.jpg\t{long}\n1.jpg\ta dog\n")
    ds = load_eval_set(imgs, caps, "pairs")
    report = run_eval(ds, models_dir=full_models_dir, modes=["coarse", "fine"], k=2, threads=1)
    fine = {m.mode: m for m in report.modes}["fine"]
    assert fine.status == "ok", fine.reason
    assert fine.queries == 2 and fine.shortened_queries == 1 and fine.could_not_check == 0
    assert "shortened for its prompt" in report.table()
