"""Global options before or after the command mean the same (git/docker style); only no command opens the app."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from retllm_desktop.cli import main


def cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse errors and --help
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def indexed(tmp_path: Path, clip_models_dir: Path, photo_tree: Path, capsys) -> list[str]:
    opts = ["--library", str(tmp_path / "lib"), "--models", str(clip_models_dir)]
    code, _, err = cli(capsys, "index", *opts, "--threads", "1", str(photo_tree))
    assert code == 0, err
    return opts


def paths(stdout: str) -> list[str]:
    return [r["path"] for r in json.loads(stdout)["results"]]


def test_options_before_the_command_mean_what_they_mean_after_it(indexed: list[str], capsys) -> None:
    query = ["search", "a dog on the beach", "--no-rerank", "--top", "5"]
    code, after, err = cli(capsys, *query, *indexed, "--threads", "1", "--json")
    assert code == 0, err
    code, before, err = cli(capsys, *indexed, "--threads", "1", "--json", *query)
    assert code == 0, err
    assert paths(before) == paths(after) and len(paths(after)) == 5
    # mixed: some before, some after
    code, mixed, err = cli(capsys, "--library", indexed[1], *query, "--models", indexed[3], "--json")
    assert code == 0, err
    assert paths(mixed) == paths(after)
    # status reads the same library whichever side --library is on
    code, out, _ = cli(capsys, *indexed, "status", "--json")
    assert code == 0 and json.loads(out)["photos"] == 12


def test_the_option_after_the_command_wins(indexed: list[str], tmp_path: Path, capsys) -> None:
    code, out, _ = cli(capsys, "--library", str(tmp_path / "other"), "status", "--json", *indexed)
    assert code == 0 and json.loads(out)["photos"] == 12


@pytest.mark.parametrize("position", ["before", "after"])
def test_bad_values_are_the_same_one_line_error_either_side(position: str, tmp_path: Path, capsys) -> None:
    opts = ["--library", str(tmp_path / "lib"), "--threads", "0"]
    argv = [*opts, "status"] if position == "before" else ["status", *opts]
    code, _, err = cli(capsys, *argv)
    assert code == 1 and "--threads: must be between 1 and" in err and len(err.strip().splitlines()) == 1


def test_a_command_that_does_not_take_an_option_says_so(capsys, tmp_path: Path) -> None:
    code, _, err = cli(capsys, "--int8", "models", "path")
    assert code == 1 and "models path does not take --int8" in err
    code, _, err = cli(capsys, "--settings", str(tmp_path / "gui.json"), "status")
    assert code == 1 and "status does not take --settings (it is for the app)" in err
    code, _, err = cli(capsys, "status", "--bogus")
    assert code == 1 and "unrecognized arguments: --bogus" in err
    # --models before `models path` is the models command's own --models
    code, out, err = cli(capsys, "--models", str(tmp_path / "m"), "models", "path")
    assert code == 0 and out.strip() == str(tmp_path / "m"), err


def test_top_level_help_lists_the_global_options(capsys) -> None:
    code, out, _ = cli(capsys, "--help")
    assert code == 0
    for option in (
        "--library DIR",
        "--models DIR",
        "--threads N",
        "--int8",
        "--clip-model NAME",
        "--json",
    ):
        assert option in out, option
    assert "before or after the command" in out and "GLOBAL_" not in out


def test_only_no_command_opens_the_app(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "retllm_desktop", *a], capture_output=True, text=True, timeout=60, env=env
    )
    # a command after global options runs the command, display or not
    r = run("--library", str(tmp_path / "lib"), "--threads", "1", "status", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["photos"] == 0, r.stderr
    # no command: the app (here without a display, so it says so)
    r = run("--library", str(tmp_path / "lib"))
    assert r.returncode == 1 and "no display" in r.stderr
    # an option only commands take, without a command, is an error, not a silent app launch
    r = run("--threads", "1")
    assert r.returncode == 1 and "--threads needs a command" in r.stderr and "Traceback" not in r.stderr
