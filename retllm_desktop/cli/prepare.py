"""`prepare`: run the LLM's vision tower over the library ahead of searches (the prepare pass)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .. import config
from ..models.llm.images import DETAIL_CHOICES
from ..progress import ProgressBar
from .common import EXIT_CANCELLED, EXIT_OK, add_common_args, bounded, open_library, print_json

MB = 1024**2


def add_detail_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--detail",
        choices=list(DETAIL_CHOICES),
        default=config.LLM_DETAIL,
        help="how much of each photo the LLM sees: auto (default: quick for SmolVLM, standard for "
        "Qwen2.5-VL), quick (fewest image tokens), standard, full (the model's own tiling; several "
        "times slower per new photo)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare",
        help="prepare photos for the LLM ahead of searches (newest first; Ctrl+C, then resume)",
    )
    add_common_args(p)
    p.add_argument("--mllm-model", metavar="NAME", help="LLM name under <models>/mllm/")
    add_detail_arg(p)
    p.add_argument(
        "--budget-mb",
        type=bounded(int, 0, 10**8),
        default=config.PREPARE_BUDGET_BYTES // MB,
        help="disk space for prepared photos, in MB (default %(default)s)",
    )
    p.set_defaults(func=cmd_prepare)


def cmd_prepare(args: argparse.Namespace) -> int:
    cancel = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):  # first Ctrl+C: finish the photo in flight, exit cleanly
        cancel.set()
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, on_sigint)
    bar = ProgressBar(enabled=None if not args.json else False)
    try:
        with open_library(args, prepare_budget_bytes=args.budget_mb * MB) as lib:
            s = lib.prepare(progress=bar, cancel=cancel)
    finally:
        signal.signal(signal.SIGINT, previous)
    bar.finish()
    if args.json:
        print_json(s.as_dict())
    elif s.error:
        print(f"nothing prepared: {s.error}")
    else:
        print(
            f"{s.photos} photos prepared for the LLM ({s.bytes / MB:.1f} MB): {s.prepared} new, "
            f"{s.kept} kept, {s.failed} failed"
            + (f", {s.removed} removed" if s.removed else "")
            + (f", {s.over_budget} over the {args.budget_mb} MB budget" if s.over_budget else "")
            + f" in {s.seconds:.1f}s"
            + (" — cancelled, run again to resume" if s.cancelled else "")
        )
    if s.stopped:
        print(
            f"retllm-desktop: error: preparing stopped: {s.stopped} ({s.photos} photos are prepared, "
            "nothing half-written; run again when there is room)",
            file=sys.stderr,
        )
    if s.error or s.stopped:
        return 1
    return EXIT_CANCELLED if s.cancelled else EXIT_OK
