"""The README's command line is the real one: every documented command parses, every documented option and
JSON key exists (in the spirit of sqlite-utils' documentation tests)."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from retllm_desktop.cli import build_parser

from .conftest import make_photo

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def parsers(p: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    out = [p]
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for child in a.choices.values():
                out += parsers(child)
    return out


def documented_commands() -> list[list[str]]:
    """Every ``retllm-desktop …`` line of the README's bash blocks, as argv (comments and continuations joined)."""
    lines: list[list[str]] = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            for i, word in enumerate(argv):  # a shell redirection or pipe ends the command
                if word in (">", ">>", "|", "2>", "&&"):
                    argv = argv[:i]
                    break
            if argv and argv[0] == "retllm-desktop":
                lines.append(argv[1:])
    return lines


def test_every_documented_command_line_parses() -> None:
    commands = documented_commands()
    assert len(commands) >= 15, commands  # the CLI block is found (the test is not vacuous)
    for argv in commands:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as e:  # our parser exits 1 with a one-line error on a bad line
            pytest.fail(f"README command does not parse: retllm-desktop {shlex.join(argv)} ({e})")
        assert args.command is not None


def test_every_inline_command_exists() -> None:
    names = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    mentioned = set(re.findall(r"`retllm-desktop ([a-z][a-z-]*)", README))
    assert mentioned and mentioned <= names, mentioned - names


def test_every_documented_option_exists() -> None:
    known = {o for p in parsers(build_parser()) for a in p._actions for o in a.option_strings}
    for script in [*(ROOT / "bench").glob("*.py"), *(ROOT / "scripts").glob("*.py"),
                   *(ROOT / "retllm_desktop" / "devtools").rglob("*.py")]:  # fmt: skip
        known |= set(re.findall(r"add_argument\(\s*\"(--[a-z0-9-]+)\"", script.read_text(encoding="utf-8")))
    documented = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", README))
    assert len(documented) > 20 and documented <= known, sorted(documented - known)


def documented_json(after: str) -> set[str]:
    """The "quoted" key names of the JSON sketch that follows ``after`` in the README (up to its closing backtick)."""
    start = README.index(after) + len(after)
    sketch = README[start : README.index("`", start)]
    return set(re.findall(r'"([a-z_]+)"', sketch))


@pytest.fixture(scope="module")
def search_json(tmp_path_factory: pytest.TempPathFactory, full_models_dir: Path) -> dict:
    tmp = tmp_path_factory.mktemp("readme")
    for i in range(6):
        make_photo(tmp / "photos" / f"p{i}.jpg", seed=i)
    common = ["--library", str(tmp / "lib"), "--models", str(full_models_dir), "--threads", "1", "--json"]
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "retllm_desktop", *a], capture_output=True, text=True, timeout=300
    )
    r = run("index", *common, str(tmp / "photos"))
    assert r.returncode == 0, r.stderr
    index = json.loads(r.stdout)
    r = run("search", *common, "--rerank-k", "2", "a red photo from 2019")
    assert r.returncode == 0, r.stderr
    return {"index": index, "search": json.loads(r.stdout)}


def test_documented_search_json_keys_exist(search_json: dict) -> None:
    out = search_json["search"]
    keys = documented_json("`search --json`\nprints `")
    assert {"query", "results", "path", "p_true", "vocab_entropy", "understood"} <= keys  # found the sketch
    checked = [r for r in out["results"] if r["check"] == "checked"]
    assert checked, out["results"]
    present = set(out) | set(out["understood"]) | set().union(*(set(r) for r in out["results"]))
    # keys that appear only on some results (see the README: copies, RAW twins, bursts, an image query)
    conditional = {"duplicates", "files", "similar", "in_library", "fused_score"}
    assert keys - conditional <= present, sorted(keys - conditional - present)
    assert out["typed"] == "a red photo from 2019"  # as typed (no photo is from 2019: searched as typed)
    assert all(r["verdict"] in ("match", "no match") and r["score"] == r["match"] for r in checked)
    # the tie order's entropy is shown: full-vocabulary entropy (nats) beside the top-10 one
    assert all(isinstance(r["vocab_entropy"], float) and r["vocab_entropy"] >= 0 for r in checked)


def test_documented_index_json_keys_exist(search_json: dict) -> None:
    start = README.index("`index --json` prints the counts `") + len("`index --json` prints the counts `")
    keys = set(re.findall(r"[a-z_]+", README[start : README.index("`", start)]))  # up to the closing backtick
    assert {"added", "total", "seconds"} <= keys
    assert keys <= set(search_json["index"]), sorted(keys - set(search_json["index"]))
