"""``python -m retllm_desktop.devtools.replicas OUT [--name NAME | --all] [--size tiny|full]``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import SIZES, registry_names, write_replica
from .sources import SourcesMissing, default_sources_dir, fetch_sources


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m retllm_desktop.devtools.replicas",
        description="Random-weight replicas of the registry's models (real formats, tokenizers, templates).",
    )
    ap.add_argument("out", type=Path, nargs="?", help="models folder to write into")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--name", action="append", help="registry model name (repeatable)")
    which.add_argument("--all", action="store_true", help="every registry entry (default)")
    ap.add_argument("--size", choices=SIZES, default="tiny", help="tiny (tests) or full (real shapes)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--fetch-sources",
        action="store_true",
        help=f"pip-download the llama-cpp-python sdist and extract its vocab files into {default_sources_dir()}",
    )
    args = ap.parse_args(argv)
    if args.fetch_sources:
        print(f"vocab sources: {fetch_sources()}")
    if args.out is None:
        if not args.fetch_sources:
            ap.error("OUT is required")
        return 0
    names = args.name or registry_names()
    try:
        for name in names:
            t0 = time.perf_counter()
            d = write_replica(name, args.out, args.size, args.seed)
            mb = sum(p.stat().st_size for p in d.iterdir() if p.is_file()) / 1e6
            print(f"{name}: {d} ({mb:.1f} MB, {time.perf_counter() - t0:.1f} s)")
    except SourcesMissing as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
