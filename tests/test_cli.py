"""The CLI's JSON contracts and exit codes, run as a real subprocess like a user or script would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = {**os.environ, **(env or {})}
    e.pop("RETLLM_LIBRARY", None)
    return subprocess.run(
        [sys.executable, "-m", "retllm_desktop", *args], capture_output=True, text=True, timeout=120, env=e
    )


@pytest.fixture
def lib_args(tmp_path: Path, clip_models_dir: Path) -> list[str]:
    return ["--library", str(tmp_path / "lib"), "--models", str(clip_models_dir), "--threads", "1"]


def test_index_search_status_json(lib_args: list[str], photo_tree: Path) -> None:
    r = run("index", *lib_args, "--json", str(photo_tree))
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert {
        k: summary[k] for k in ("added", "updated", "moved", "removed", "failed", "unchanged", "total")
    } == {
        "added": 12,
        "updated": 0,
        "moved": 0,
        "removed": 0,
        "failed": 0,
        "unchanged": 0,
        "total": 12,
    }
    assert isinstance(summary["seconds"], float)

    r = run("search", *lib_args, "--json", "--top", "4", "--no-rerank", "a dog on the beach")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["query"] == "a dog on the beach" and out["image"] is None
    assert [x["rank"] for x in out["results"]] == [1, 2, 3, 4]
    assert all(Path(x["path"]).is_file() for x in out["results"])
    scores = [x["score"] for x in out["results"]]
    assert scores == sorted(scores, reverse=True)
    assert {"encode", "search", "fetch"} <= set(out["timings_ms"])

    img = out["results"][0]["path"]
    r = run("search", *lib_args, "--json", "--no-rerank", "--image", img, "--top", "3")
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["image"] == img and img not in [x["path"] for x in out["results"]]

    r = run("status", *lib_args, "--json")
    st = json.loads(r.stdout)
    assert st["photos"] == 12 and st["indexed"] == 12 and st["index_healthy"] is True
    assert st["roots"][0]["path"] == str(photo_tree.resolve())


def test_text_output_and_incremental(lib_args: list[str], photo_tree: Path) -> None:
    assert run("index", *lib_args, str(photo_tree)).returncode == 0
    (photo_tree / "album-a" / "img01.jpg").unlink()
    r = run("index", *lib_args)
    assert r.returncode == 0 and "1 removed" in r.stdout and "11 photos indexed" in r.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["index", "/definitely/not/here"], "folder not found"),
        (["search", ""], "empty query"),
        (["search", "--image", "/no/such.jpg"], "query image not found"),
        (["search", "--top", "0", "cats"], "--top"),
    ],
)
def test_bad_input_exit_codes(lib_args: list[str], args: list[str], message: str) -> None:
    r = run(args[0], *lib_args, *args[1:])
    assert r.returncode == 1
    assert message in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_missing_models_is_a_clear_error(tmp_path: Path, photo_tree: Path) -> None:
    r = run(
        "index",
        "--library",
        str(tmp_path / "lib"),
        "--models",
        str(tmp_path / "empty-models"),
        str(photo_tree),
    )
    assert r.returncode == 1
    assert "CLIP" in r.stderr and "Traceback" not in r.stderr


def test_rebuild_and_remove(lib_args: list[str], photo_tree: Path) -> None:
    run("index", *lib_args, str(photo_tree))
    r = run("rebuild", *lib_args, "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"indexed": 12}
    r = run("remove", *lib_args, "--json", str(photo_tree))
    assert r.returncode == 0 and json.loads(r.stdout) == {"removed": 12}
    assert all(p.exists() for p in photo_tree.rglob("*.jpg"))
    st = json.loads(run("status", *lib_args, "--json").stdout)
    assert st["photos"] == 0 and st["indexed"] == 0


def test_app_without_a_display_says_so(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    r = subprocess.run(
        [sys.executable, "-m", "retllm_desktop", "--library", str(tmp_path / "lib")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert r.returncode == 1 and "no display" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["index", "--workers", "-3"], "--workers: must be between 1 and 64"),
        (["index", "--batch-size", "0"], "--batch-size: must be between 1 and 1024"),
        (["status", "--threads", "0"], "--threads: must be between 1 and"),
        (["search", "cats", "--from", "garbage"], "invalid 'from' date"),
        (["search", "cats", "--to", "2020-13-45"], "invalid 'to' date"),
    ],
)
def test_bad_numbers_and_dates_are_one_line_errors(
    lib_args: list[str], photo_tree: Path, args: list[str], message: str
) -> None:
    assert run("index", *lib_args, str(photo_tree)).returncode == 0
    r = run(args[0], *lib_args, *args[1:])
    assert r.returncode == 1
    assert message in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_empty_library_search_says_so_once(lib_args: list[str]) -> None:
    r = run("search", *lib_args, "cats", "--no-rerank")
    assert r.returncode == 0
    assert "no indexed photos" in r.stdout and "no indexed photos" not in r.stderr


def test_text_output_keeps_one_line_per_result(lib_args: list[str], tmp_path: Path) -> None:
    from .conftest import make_photo

    root = tmp_path / "odd"
    make_photo(root / "line\nbreak.jpg", seed=1)
    make_photo(root / "plain.jpg", seed=2)
    assert run("index", *lib_args, str(root)).returncode == 0
    r = run("search", *lib_args, "--no-rerank", "--top", "2", "anything")
    lines = r.stdout.strip().splitlines()
    assert r.returncode == 0 and len(lines) == 1 + 2  # the header, one line per result
    assert lines[0].split() == ["#", "score", "taken", "photo"]
    assert any(line.endswith("line\\nbreak.jpg") for line in lines)


def test_help_lists_every_command_group(capsys: pytest.CaptureFixture[str]) -> None:
    from retllm_desktop.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    listed = capsys.readouterr().out
    for command in ("index", "search", "status", "rebuild", "remove", "explain", "watch", "models", "eval"):
        assert f"\n    {command} " in listed, command
