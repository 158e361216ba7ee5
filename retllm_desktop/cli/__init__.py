"""Command-line shell over :class:`retllm_desktop.library.Library` (headless; also what the tests drive)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from .. import __version__
from ..errors import RetllmError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130


def add_common_args(p: argparse.ArgumentParser) -> None:
    """--library/--models/--clip-model/--threads/--json, shared by every command that opens a library."""
    p.add_argument(
        "--library", metavar="DIR", help="library folder (default: $RETLLM_LIBRARY or the user data dir)"
    )
    p.add_argument(
        "--models", metavar="DIR", help="models folder (default: $RETLLM_MODELS, ./models, user data dir)"
    )
    p.add_argument("--clip-model", metavar="NAME", help="CLIP model name under <models>/clip/")
    p.add_argument("--threads", type=int, help="CPU threads for the models (default: all cores)")
    p.add_argument("--int8", action="store_true", help="int8-quantized CLIP (faster; its own embeddings)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retllm-desktop",
        description="Private natural-language search over your own photo folders. Without a command, opens the app.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("index", help="add folders to the library and index them")
    add_common_args(p)
    p.add_argument(
        "paths", nargs="*", metavar="PATH", help="folders to add (default: re-scan the library's folders)"
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, help="parallel image decoders")

    p = sub.add_parser("search", help="search the library by text, image, or both")
    add_common_args(p)
    p.add_argument("query", nargs="?", default="", metavar="QUERY")
    p.add_argument("--image", metavar="PATH", help="query by example image (with QUERY: a composed query)")
    p.add_argument("--image-weight", type=float, default=0.5, help="image share in a composed query (0..1)")
    p.add_argument("--top", type=int, default=20, help="number of results")
    p.add_argument(
        "--from", dest="date_from", metavar="DATE", help="only photos taken on/after DATE (YYYY-MM-DD)"
    )
    p.add_argument("--to", dest="date_to", metavar="DATE", help="only photos taken on/before DATE")
    add_rerank_args(p)

    p = sub.add_parser("status", help="library folders, counts, failures, models, index health")
    add_common_args(p)
    p.add_argument("--failures", type=int, default=20, help="how many failed files to list")

    p = sub.add_parser("rebuild", help="rebuild the vector index from the catalog (no re-embedding)")
    add_common_args(p)

    p = sub.add_parser("remove", help="remove folders from the library (photos on disk are untouched)")
    add_common_args(p)
    p.add_argument("paths", nargs="+", metavar="PATH")

    for module_name in EXTENSION_MODULES:
        _register_extension(sub, module_name)
    return parser


# Commands that live in their own modules; each module has ``register(subparsers)`` which adds its parsers
# with ``set_defaults(func=handler)``; a handler takes the parsed args and returns an exit code.
EXTENSION_MODULES = (
    "retllm_desktop.cli.models",  # models list/download/verify/remove/path/add/export-clip
    "retllm_desktop.cli.watch",  # watch
    "retllm_desktop.cli.eval",  # eval
    "retllm_desktop.cli.explain",  # explain
)


def _register_extension(sub, module_name: str) -> None:
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name != module_name:
            raise
        return
    module.register(sub)


def add_rerank_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--rerank",
        dest="rerank",
        action="store_true",
        default=None,
        help="rerank the top candidates with the multimodal LLM (default: on when an LLM is installed)",
    )
    p.add_argument("--no-rerank", dest="rerank", action="store_false")
    p.add_argument("--mllm-model", metavar="NAME", help="LLM name under <models>/mllm/")
    p.add_argument("--rerank-k", type=int, default=10, help="how many top candidates the LLM checks")
    p.add_argument(
        "--ve", choices=["off", "auto", "always"], default="auto", help="visual enhancement (second look)"
    )
    p.add_argument(
        "--min-match",
        type=float,
        default=None,
        metavar="P",
        help="hide checked candidates whose P(True) is below P",
    )


def open_library(args: argparse.Namespace, **extra):
    from ..library import Library

    if args.threads is not None and args.threads < 1:
        raise RetllmError("--threads must be at least 1")
    return Library(
        args.library,
        models_dir=args.models,
        clip_model=getattr(args, "clip_model", None),
        mllm_model=getattr(args, "mllm_model", None),
        threads=args.threads,
        clip_int8=getattr(args, "int8", False),
        **extra,
    )


def print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=None) + "\n")


def cmd_index(args: argparse.Namespace) -> int:
    from ..progress import ProgressBar

    if args.batch_size < 1:
        raise RetllmError("--batch-size must be at least 1")
    if args.workers is not None and args.workers < 1:
        raise RetllmError("--workers must be at least 1")
    for p in args.paths:
        if not Path(p).exists():
            raise RetllmError(f"folder not found: {p}")
        if not Path(p).is_dir():
            raise RetllmError(f"not a folder: {p}")
    cancel = threading.Event()
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):  # first Ctrl+C: finish the batch, save, exit cleanly
        cancel.set()
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, on_sigint)
    bar = ProgressBar(enabled=None if not args.json else False)
    with open_library(args, batch_size=args.batch_size, decode_workers=args.workers) as lib:
        if not args.paths and not lib.roots():
            raise RetllmError("no folders to index: pass one or more folder paths")
        summary = lib.index_roots(args.paths, progress=bar, cancel=cancel)
    bar.finish()
    if args.json:
        print_json(summary.as_dict())
    else:
        s = summary
        print(
            f"{s.total} photos indexed ({s.added} added, {s.updated} updated, {s.moved} moved, "
            f"{s.removed} removed, {s.failed} failed, {s.unchanged} unchanged) in {s.seconds:.1f}s"
            + (" — cancelled, run again to resume" if s.cancelled else "")
        )
        if s.failed:
            print("run `retllm-desktop status` to see which files failed and why")
    return EXIT_CANCELLED if summary.cancelled else EXIT_OK


def rerank_options(args: argparse.Namespace):
    from ..rerank import RerankOptions

    if args.rerank_k < 0:
        raise RetllmError("--rerank-k must be 0 or more")
    if args.min_match is not None and not 0.0 <= args.min_match <= 1.0:
        raise RetllmError("--min-match must be between 0 and 1")
    return RerankOptions(k=args.rerank_k, ve=args.ve, min_match=args.min_match)


def cmd_search(args: argparse.Namespace) -> int:
    from ..search import Query, resolve_query_image

    if args.image and not Path(args.image).is_file():
        raise RetllmError(f"query image not found: {args.image}")
    query = Query(
        text=args.query,
        image=resolve_query_image(args.image),
        image_weight=args.image_weight,
        date_from=args.date_from,
        date_to=args.date_to,
    )
    if args.top < 1:
        raise RetllmError("--top must be at least 1")
    with open_library(args) as lib:
        rerank = None
        if args.rerank is not False:
            rerank = rerank_options(args)
            if args.rerank is None and not lib.mllm_available():
                rerank = None
        if args.rerank and not lib.mllm_available():
            from ..models.llm.scorer import find_mllm_model

            find_mllm_model(lib.models_dir, args.mllm_model)  # raises: what is missing, how to get it
        last = None
        for update in lib.search(query, top=args.top, rerank=rerank):
            last = update
            if not args.json and update.phase == "coarse" and rerank is not None and sys.stderr.isatty():
                n = min(args.rerank_k, len(update.results))
                print(f"checking the top {n} with the LLM…", file=sys.stderr)
    assert last is not None
    if args.json:
        print_json(last.as_dict())
    else:
        if not last.visible:
            print(last.message or "no results")
        for r in last.visible:
            extra = ""
            if r.fine is not None:
                extra = f"  match {r.fine.score:.2f}" + (" (2nd look)" if r.fine.ve_used else "")
            elif r.check_error:
                extra = f"  could not check: {_one_line(r.check_error)}"
            date = f"  {r.photo.taken_at[:10]}" if r.photo.taken_at else ""
            print(f"{r.rank:3d}. {r.score:.3f}{extra}{date}  {_one_line(r.path)}")
        if last.message and last.visible:  # without results it was printed above already
            print(last.message, file=sys.stderr)
    return EXIT_OK


def _one_line(path: str) -> str:
    """A path shown on one line: control characters (a newline in a file name) escaped as in Python."""
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        return repr(path)[1:-1]
    return path


def cmd_status(args: argparse.Namespace) -> int:
    with open_library(args) as lib:
        st = lib.status(failures_limit=args.failures)
    if args.json:
        print_json(st.as_dict())
        return EXIT_OK
    print(f"library: {st.library}")
    print(f"models:  {st.models_dir}")
    for r in st.roots:
        print(f"  folder {r['path']}: {r['photos']} photos" + ("" if r["online"] else " (offline)"))
    print(f"photos: {st.photos} ({st.offline} offline), failed files: {st.failures}")
    if st.clip_error:
        print(f"CLIP model: not available — {st.clip_error}")
    else:
        health = "ok" if st.index_healthy else "needs repair (run `retllm-desktop rebuild`)"
        print(f"CLIP model: {st.clip_model}; index: {st.indexed} vectors, {health}")
    print(
        f"LLM for reranking: {st.mllm_model or 'not installed'}"
        + (f" — {st.mllm_error}" if st.mllm_error else "")
    )
    for f in st.failed_files:
        print(f"  failed: {f['path']}: {f['reason']}")
    return EXIT_OK


def cmd_rebuild(args: argparse.Namespace) -> int:
    with open_library(args) as lib:
        n = lib.rebuild_index()
    if args.json:
        print_json({"indexed": n})
    else:
        print(f"index rebuilt: {n} vectors")
    return EXIT_OK


def cmd_remove(args: argparse.Namespace) -> int:
    removed = 0
    with open_library(args) as lib:
        for p in args.paths:
            removed += lib.remove_root(p)
    if args.json:
        print_json({"removed": removed})
    else:
        print(f"removed {len(args.paths)} folder(s), {removed} photos left the library (files untouched)")
    return EXIT_OK


COMMANDS = {
    "index": cmd_index,
    "search": cmd_search,
    "status": cmd_status,
    "rebuild": cmd_rebuild,
    "remove": cmd_remove,
}


def launch_gui(argv: Sequence[str] = ()) -> int:
    try:
        from ..gui.app import run_app
    except ImportError as e:
        print(
            f"retllm-desktop: the desktop app is not available ({e}); see --help for commands",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return run_app(list(argv))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        return launch_gui(argv)  # the app, with its own options (--library, --models, --settings)
    args = parser.parse_args(argv)
    from ..logs import setup_logging

    setup_logging()
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    handler = getattr(args, "func", None) or COMMANDS[args.command]
    try:
        return handler(args)
    except RetllmError as e:
        print(f"retllm-desktop: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("retllm-desktop: cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    except BrokenPipeError:  # e.g. `search ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
