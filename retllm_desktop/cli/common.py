"""What every command shares: exit codes, the library options, opening the library, JSON and text output."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable

from ..config import max_threads
from ..library import Library

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130


class Parser(argparse.ArgumentParser):
    """argparse with the CLI's error contract: one line on stderr, exit code 1 (not usage + exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(EXIT_ERROR)


def bounded(kind: type, lo: float, hi: float) -> Callable[[str], float]:
    """An argparse ``type``: a number of ``kind`` in [lo, hi], else a one-line error saying the range."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"not a{'n integer' if kind is int else ' number'}: {text!r}"
            ) from None
        if (kind is float and not math.isfinite(value)) or not lo <= value <= hi:
            shown = (lo, hi) if kind is float else (int(lo), int(hi))
            raise argparse.ArgumentTypeError(f"must be between {shown[0]} and {shown[1]} (got {text})")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in some messages
    return parse


def add_common_args(p: argparse.ArgumentParser) -> None:
    """--library/--models/--clip-model/--threads/--int8/--json, shared by every command that opens a library.

    The top-level parser has them too (see :func:`retllm_desktop.cli.build_parser`), so they can come before
    the command as in git or docker: ``retllm-desktop --threads 1 search cat``.
    """
    p.add_argument(
        "--library", metavar="DIR", help="library folder (default: $RETLLM_LIBRARY or the user data dir)"
    )
    p.add_argument(
        "--models", metavar="DIR", help="models folder (default: $RETLLM_MODELS, ./models, user data dir)"
    )
    p.add_argument("--clip-model", metavar="NAME", help="CLIP model name under <models>/clip/")
    p.add_argument(
        "--threads",
        metavar="N",
        type=bounded(int, 1, max_threads()),
        help=f"CPU threads for the models (default: all cores; at most {max_threads()})",
    )
    p.add_argument("--int8", action="store_true", help="int8-quantized CLIP (faster; its own embeddings)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def open_library(args: argparse.Namespace, **extra: object) -> Library:
    """The library the common options name (bad numbers are a one-line error, not a traceback)."""
    return Library(
        args.library,
        models_dir=args.models,
        clip_model=getattr(args, "clip_model", None),
        mllm_model=getattr(args, "mllm_model", None),
        threads=args.threads,
        clip_int8=getattr(args, "int8", False),
        **({"llm_detail": args.detail} if getattr(args, "detail", None) else {}),
        **extra,  # type: ignore[arg-type]
    )


def print_json(obj: object) -> None:
    """One JSON object on one line (what scripts parse)."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=None) + "\n")


def one_line(path: str) -> str:
    """A path shown on one line: control characters (a newline in a file name) escaped as in Python."""
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        return repr(path)[1:-1]
    return path
