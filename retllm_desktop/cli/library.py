"""`index`, `status`, `rebuild`, `remove`: a library's folders, catalog and vector index."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from ..errors import RetllmError
from ..progress import ProgressBar
from .common import EXIT_CANCELLED, EXIT_OK, add_common_args, bounded, one_line, open_library, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="add folders to the library and index them")
    add_common_args(p)
    p.add_argument(
        "paths", nargs="*", metavar="PATH", help="folders to add (default: re-scan the library's folders)"
    )
    p.add_argument("--batch-size", type=bounded(int, 1, 1024), default=16)
    p.add_argument("--workers", type=bounded(int, 1, 64), help="parallel image decoders")
    p.add_argument("--no-text", action="store_true", help="skip the text pass (reading words in photos)")
    p.add_argument("--no-faces", action="store_true", help="skip the face pass (finding people in photos)")
    p.add_argument(
        "--face-detector",
        choices=("hog", "cnn"),
        default="hog",
        help="hog: faces turned towards the camera, fast; cnn: also turned and smaller faces, ~5x slower "
        "(photos not scanned before only)",
    )
    p.set_defaults(func=cmd_index)

    p = sub.add_parser("status", help="library folders, counts, failures, models, index health")
    add_common_args(p)
    p.add_argument(
        "--failures", type=bounded(int, 0, 10**6), default=20, help="how many failed files to list"
    )
    from .prepare import add_detail_arg

    add_detail_arg(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("rebuild", help="rebuild the vector index from the catalog (no re-embedding)")
    add_common_args(p)
    p.set_defaults(func=cmd_rebuild)

    p = sub.add_parser(
        "repair",
        help="restore a damaged catalog from its backup (or rebuild it from the photos) and re-index",
    )
    add_common_args(p)
    p.add_argument(
        "--folder", action="append", default=[], metavar="DIR", help="photo folder to rebuild from"
    )
    p.add_argument(
        "--force", action="store_true", help="restore from the backup even if the catalog looks fine"
    )
    p.set_defaults(func=cmd_repair)

    p = sub.add_parser("remove", help="remove folders from the library (photos on disk are untouched)")
    add_common_args(p)
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.set_defaults(func=cmd_remove)


def cmd_index(args: argparse.Namespace) -> int:
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
    with open_library(
        args, batch_size=args.batch_size, decode_workers=args.workers, face_detector=args.face_detector
    ) as lib:
        if not args.paths and not lib.roots():
            raise RetllmError("no folders to index: pass one or more folder paths")
        summary = lib.index_roots(
            args.paths, progress=bar, cancel=cancel, text=not args.no_text, faces=not args.no_faces
        )
    bar.finish()
    if args.json:
        print_json(summary.as_dict())
    else:
        s = summary
        print(
            f"{s.total} photos indexed ({s.added} added, {s.updated} updated, {s.moved} moved, "
            f"{s.removed} removed, {s.failed} failed, {s.unchanged} unchanged"
            + (f", {s.skipped} skipped" if s.skipped else "")
            + f") in {s.seconds:.1f}s"
            + (" — cancelled, run again to resume" if s.cancelled else "")
        )
        if s.text is not None:
            t = s.text
            if t["error"]:
                print(f"text pass skipped: {t['error']}")
            else:
                print(
                    f"text: {t['read']} photos read, {t['with_text']} with text, {t['failed']} failed"
                    + (f", {t['pending']} left" if t["pending"] else "")
                    + f" in {t['seconds']:.1f}s"
                )
        if s.faces is not None:
            f = s.faces
            if f["error"]:
                print(f"face pass skipped: {f['error']}")
            else:
                print(
                    f"faces: {f['scanned']} photos scanned, {f['faces']} faces in {f['with_faces']} photos"
                    + (f", {f['remade']} updated" if f.get("remade") else "")
                    + (f", {f['failed']} failed" if f["failed"] else "")
                    + (f", {f['pending']} left" if f["pending"] else "")
                    + (f"; {f['new_people']} new people" if f["new_people"] else "")
                    + f" in {f['seconds']:.1f}s"
                )
        if s.failed:
            print("run `retllm-desktop status` to see which files failed and why")
        if s.places:
            print(f"{s.places} photos placed on the map (see `retllm-desktop places`)")
        if s.places_error:
            print(s.places_error, file=sys.stderr)
    return EXIT_CANCELLED if summary.cancelled else EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    with open_library(args) as lib:
        st = lib.status(failures_limit=args.failures)
    if args.json:
        print_json(st.as_dict())
        return EXIT_OK
    # Names come from the disk: control characters (a newline, an ANSI escape) are shown escaped.
    print(f"library: {one_line(st.library)}")
    print(f"models:  {one_line(st.models_dir)}")
    for r in st.roots:
        print(f"  folder {one_line(r['path'])}: {r['photos']} photos" + ("" if r["online"] else " (offline)"))
    print(f"photos: {st.photos} ({st.offline} offline), failed files: {st.failures}")
    if st.clip_error:
        print(f"CLIP model: not available — {st.clip_error}")
    else:
        health = "ok" if st.index_healthy else "needs repair (run `retllm-desktop rebuild`)"
        print(f"CLIP model: {st.clip_model}; index: {st.indexed} vectors, {health}")
        if st.search_model and st.search_model != st.clip_model:
            from ..model_switch import switch_progress

            online = st.photos - st.offline
            print(
                switch_progress(
                    st.clip_model, st.search_model, online - st.missing_embeddings, online
                ).describe()
            )
    t = st.text
    print(
        f"text: {t.get('read', 0)} photos read, {t.get('with_text', 0)} with text"
        + (f", {t['failed']} failed" if t.get("failed") else "")
        + (f", {t['pending']} to read (run `retllm-desktop index`)" if t.get("pending") else "")
    )
    fc = st.faces
    if fc.get("error") and not fc.get("faces"):
        print(f"faces: not available — {fc['error']}")
    else:
        print(
            f"faces: {fc.get('faces', 0)} in {fc.get('scanned', 0)} photos scanned "
            f"({fc.get('faces', 0) - fc.get('recognisable', 0)} too small to recognise); "
            f"people: {fc.get('people', 0)} ({fc.get('named', 0)} named)"
            + (f", {fc['failed']} photos failed" if fc.get("failed") else "")
            + (f", {fc['pending']} to scan (run `retllm-desktop index`)" if fc.get("pending") else "")
        )
    print(
        f"LLM for reranking: {st.mllm_model or 'not installed'}"
        + (f" — {st.mllm_error}" if st.mllm_error else "")
        + (
            f"; {st.prepared_photos} photos prepared ({st.prepared_bytes / 1024**2:.1f} MB)"
            if st.mllm_ready
            else ""
        )
    )
    for f in st.failed_files:
        print(f"  failed: {one_line(f['path'])}: {one_line(f['reason'])}")
    if st.skipped:
        print(f"skipped (not photo files): {st.skipped}")
    for f in st.skipped_files:
        reason = f["reason"].removeprefix("skipped: ")
        print(f"  skipped: {one_line(f['path'])}: {one_line(reason)}")
    for f in st.text_failed_files:
        print(f"  text not read: {one_line(f['path'])}: {one_line(f['reason'])}")
    for f in st.face_failed_files:
        print(f"  faces not scanned: {one_line(f['path'])}: {one_line(f['reason'])}")
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


def cmd_repair(args: argparse.Namespace) -> int:
    from .. import config
    from ..repair import repair_library

    bar = ProgressBar(enabled=None if not args.json else False)
    report = repair_library(
        config.library_dir(args.library),
        folders=args.folder,
        force=args.force,
        open_library=lambda path: open_library(args),
        progress=bar,
    )
    bar.finish()
    if args.json:
        print_json(report.as_dict())
        return EXIT_OK
    if report.damage is None and report.moved_to is None and report.index is None:
        print(f"the catalog {report.catalog} is healthy; nothing to repair")
        return EXIT_OK
    if report.moved_to:
        print(f"damaged catalog ({report.damage}) moved to {report.moved_to}")
    if report.restored_from:
        print(f"restored from the backup {report.restored_from}")
    elif report.moved_to:
        print("no usable backup: rebuilt from the photos in " + ", ".join(report.folders))
    s = report.index or {}
    print(
        f"re-indexed: {s.get('total', 0)} photos ({s.get('added', 0)} added, {s.get('updated', 0)} updated, "
        f"{s.get('removed', 0)} removed, {s.get('failed', 0)} failed, {s.get('unchanged', 0)} unchanged)"
    )
    return EXIT_OK
