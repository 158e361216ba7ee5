"""`retllm-desktop watch`: keep the library following its folders until Ctrl+C (headless)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from ..errors import RetllmError
from ..indexer import IndexSummary
from ..watcher import LibraryWatcher
from .common import EXIT_OK, add_common_args, bounded, open_library, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "watch",
        help="watch the library's folders and index changes as they happen (Ctrl+C stops)",
        description="Catch up with what changed since the last run, then index new, changed, moved and "
        "deleted photos as they happen. Prints one line per batch (--json: one JSON object per line).",
    )
    add_common_args(p)
    p.add_argument("paths", nargs="*", metavar="PATH", help="folders to add to the library first")
    p.add_argument("--polling", action="store_true", help="poll instead of using native file-system events")
    p.add_argument(
        "--debounce",
        type=bounded(float, 0, 3600),
        default=0.5,
        metavar="S",
        help="seconds a file must stay unchanged",
    )
    p.add_argument(
        "--batch-window",
        type=bounded(float, 0, 3600),
        default=1.0,
        metavar="S",
        help="quiet time that ends a burst",
    )
    p.add_argument("--batch-size", type=bounded(int, 1, 1024), default=16)
    p.add_argument("--no-catch-up", dest="catch_up", action="store_false", help="skip the initial scan")
    p.set_defaults(func=cmd_watch)


def _line(kind: str, s: IndexSummary) -> str:
    label = {"catch-up": "catch-up scan", "batch": "changes"}.get(kind, kind.replace("-", " "))
    return (
        f"{label}: {s.added} added, {s.updated} updated, {s.moved} moved, {s.removed} removed, "
        f"{s.failed} failed; {s.total} photos ({s.offline} offline) in {s.seconds:.2f}s"
    )


def cmd_watch(args: argparse.Namespace) -> int:
    for p in args.paths:
        if not Path(p).is_dir():
            raise RetllmError(f"folder not found: {p}")
    stop = threading.Event()

    def on_signal(signum, frame):  # Ctrl+C / SIGTERM: finish the chunk in flight, save, exit 0
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with open_library(args, batch_size=args.batch_size) as lib:
            if args.paths:
                with lib.lock:
                    for p in args.paths:
                        lib.add_root(p)
            if not lib.roots():
                raise RetllmError("no folders to watch: pass folder paths or run `retllm-desktop index PATH`")
            lib.clip  # noqa: B018 - fail now (missing model) rather than on the first batch

            watcher: LibraryWatcher

            def on_update(summary: IndexSummary) -> None:
                kind = watcher.last_batch.kind if watcher.last_batch else "batch"
                if args.json:
                    print_json({"kind": kind, **summary.as_dict()})
                else:
                    print(_line(kind, summary))
                sys.stdout.flush()

            def on_status(text: str) -> None:
                print(f"retllm-desktop: {text}", file=sys.stderr, flush=True)

            watcher = LibraryWatcher(
                lib,
                debounce_s=args.debounce,
                batch_window_s=args.batch_window,
                use_polling=True if args.polling else None,
                catch_up=args.catch_up,
                on_update=on_update,
                on_status=on_status,
            )
            watcher.start()
            try:
                while not stop.wait(0.5):
                    pass
            finally:
                watcher.stop()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    return EXIT_OK
