"""Hostile command lines and names: every numeric option is bounded, argument errors are one line with exit
code 1, and `status` shows names from the disk escaped (a newline or an ANSI escape cannot forge a line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from retllm_desktop.errors import RetllmError
from retllm_desktop.library import Library

from .conftest import make_photo
from .test_cli import run


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["search", "--threads", "100000", "x"], "--threads: must be between 1 and"),
        (["search", "--threads", "0", "x"], "--threads: must be between 1 and"),
        (["search", "--top", "10000000", "x"], "--top: must be between 1 and 10000"),
        (["search", "--rerank-k", "1000000", "x"], "--rerank-k: must be between 0 and 1000"),
        (["search", "--min-match", "nan", "x"], "--min-match: must be between 0 and 1"),
        (["search", "--image-weight", "inf", "x"], "--image-weight: must be between 0 and 1"),
        (["index", "--batch-size", "99999999"], "--batch-size: must be between 1 and 1024"),
        (["index", "--workers", "5000"], "--workers: must be between 1 and 64"),
        (["index", "--workers", "two"], "--workers: not an integer: 'two'"),
        (["status", "--failures", "-5"], "--failures: must be between 0 and"),
        (["watch", "--debounce", "1e9"], "--debounce: must be between 0 and 3600"),
        (["eval", "--images", "x", "--captions", "y", "--k", "0"], "--k: must be between 1 and 1000"),
        (["search", "--no-such-option", "x"], "unrecognized arguments: --no-such-option"),
        (["search", "--ve", "sometimes", "x"], "invalid choice: 'sometimes'"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_1(tmp_path: Path, argv: list[str], fragment: str) -> None:
    r = run(*argv, "--library", str(tmp_path / "lib"))
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert r.stdout == "" and len(r.stderr.strip().splitlines()) == 1 and fragment in r.stderr, r.stderr
    assert not (tmp_path / "lib").exists()  # rejected before anything was opened


def test_the_engine_bounds_threads_too(tmp_path: Path) -> None:
    with pytest.raises(RetllmError, match="threads must be between 1 and"):
        Library(tmp_path / "lib", threads=100_000)


def test_status_escapes_names_from_the_disk(tmp_path: Path, clip_models_dir: Path) -> None:
    photos = tmp_path / "ph\x1b[31motos"
    make_photo(photos / "ok.jpg", seed=1)
    (photos / "bad\nfailed: forged.jpg").write_bytes(b"not an image")
    (photos / "red\x1b[2J.jpg").write_bytes(b"not an image either")
    args = ["--library", str(tmp_path / "lib"), "--models", str(clip_models_dir), "--threads", "1"]
    assert run("index", *args, str(photos)).returncode == 0
    r = run("status", *args)
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout
    failed = [line for line in r.stdout.splitlines() if "failed:" in line]
    assert len(failed) == 2 and all(line.startswith("  failed: ") for line in failed), r.stdout
    assert any("bad\\nfailed: forged.jpg" in line for line in failed)
    assert any("red\\x1b[2J.jpg" in line for line in failed)


def test_app_settings_bound_threads(tmp_path: Path) -> None:
    import json

    from retllm_desktop.config import max_threads
    from retllm_desktop.gui.settings import Settings

    (tmp_path / "gui.json").write_text(json.dumps({"threads": 100_000}))
    assert Settings.load(tmp_path / "gui.json").threads == max_threads()
