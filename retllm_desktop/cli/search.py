"""`search`: text, image or composed queries; coarse results, then the LLM's rerank when installed."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import RetllmError
from ..rerank import RerankOptions
from ..search import Query, SearchUpdate, resolve_query_image
from ..verdict import verdict
from .common import EXIT_OK, add_common_args, bounded, one_line, open_library, print_json

if TYPE_CHECKING:
    from ..understand import Understanding


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search the library by text, image, or both")
    add_common_args(p)
    p.add_argument("query", nargs="?", default="", metavar="QUERY")
    p.add_argument("--image", metavar="PATH", help="query by example image (with QUERY: a composed query)")
    p.add_argument(
        "--image-weight",
        type=bounded(float, 0, 1),
        default=0.5,
        help="image share in a composed query (0..1)",
    )
    p.add_argument("--top", type=bounded(int, 1, 10000), default=20, help="number of results")
    p.add_argument(
        "--from", dest="date_from", metavar="DATE", help="only photos taken on/after DATE (YYYY-MM-DD)"
    )
    p.add_argument("--to", dest="date_to", metavar="DATE", help="only photos taken on/before DATE")
    p.add_argument(
        "--literal",
        action="store_true",
        help="search the text as typed (dates and places in it are not turned into filters)",
    )
    p.add_argument(
        "--no-text", action="store_true", help="ignore the words read in photos (rank by CLIP alone)"
    )
    p.add_argument(
        "--person",
        action="append",
        default=[],
        metavar="NAME",
        help="only photos showing this named person (repeat: photos showing all of them)",
    )
    add_rerank_args(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("places", help="cities, regions and countries of your photos, with photo counts")
    add_common_args(p)
    p.set_defaults(func=cmd_places)


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
    from .prepare import add_detail_arg

    add_detail_arg(p)
    p.add_argument(
        "--rerank-k", type=bounded(int, 0, 1000), default=10, help="how many top candidates the LLM checks"
    )
    p.add_argument(
        "--ve",
        choices=["off", "auto", "always", "retrace"],
        default="auto",
        help="visual enhancement: prompt-level second look (auto: when unsure, always) or the paper's "
        "in-layer visual retracing (retrace)",
    )
    p.add_argument(
        "--min-match",
        type=bounded(float, 0, 1),
        default=None,
        metavar="P",
        help="the match cutoff: hide checked candidates whose match share is not above P "
        "(match share = P(True) / (P(True) + P(False)); default 0.5 for the verdict)",
    )
    p.add_argument(
        "--rerank-offset",
        type=int,
        default=0,
        metavar="N",
        help="let the LLM check the candidates after the first N (e.g. 10: the next 10 after a first run)",
    )
    p.add_argument(
        "--only-matches",
        action="store_true",
        help="only photos the LLM checked and judged a match (match share above the cutoff: P(True) > P(False))",
    )


def rerank_options(args: argparse.Namespace) -> RerankOptions:
    offset = getattr(args, "rerank_offset", 0)
    if offset < 0:
        raise RetllmError("--rerank-offset must be 0 or more")
    return RerankOptions(
        k=args.rerank_k,
        ve=args.ve,
        min_match=args.min_match,
        offset=offset,
        only_true=bool(getattr(args, "only_matches", False)),
    )


def cmd_search(args: argparse.Namespace) -> int:
    if args.image and not Path(args.image).is_file():
        raise RetllmError(f"query image not found: {args.image}")
    query = Query(
        text=args.query,
        image=resolve_query_image(args.image),
        image_weight=args.image_weight,
        date_from=args.date_from,
        date_to=args.date_to,
        literal=args.literal,
        use_text=not args.no_text,
        people=tuple(args.person),
    )
    with open_library(args) as lib:
        rerank = None
        if args.rerank is not False:
            rerank = rerank_options(args)
            if args.rerank is None and not lib.mllm_available():
                rerank = None
        if args.rerank:
            lib.require_mllm()  # raises: what is missing, how to get it
        last = None
        for update in lib.search(query, top=args.top, rerank=rerank):
            last = update
            if not args.json and update.phase == "coarse" and rerank is not None and sys.stderr.isatty():
                n = max(0, min(args.rerank_k, len(update.results) - rerank.offset))
                print(f"checking the top {n} with the LLM…", file=sys.stderr)
    assert last is not None
    last = dataclasses.replace(last, cutoff=rerank.cutoff if rerank is not None else None)
    if args.json:
        print_json(last.as_dict())
        return EXIT_OK
    if last.understood:
        _print_understood(last.understood)
    if not last.visible:
        print(last.message or "no results")
    else:
        print_results(last, cutoff=rerank.cutoff if rerank is not None else None)
    if last.missing:
        n = len(last.missing)
        print(
            f"{n} photo{'s' if n != 1 else ''} no longer on disk left out "
            "(`retllm-desktop index` updates the library)",
            file=sys.stderr,
        )
    if last.message and last.visible:  # without results it was printed above already
        print(last.message, file=sys.stderr)
    return EXIT_OK


def print_results(update: SearchUpdate, cutoff: float | None = None) -> None:
    """A table with a header: rank, the model's verdict (when it checked any), the score the order uses,
    the capture date, the path. Checked photos come first, by their match share; the rest follow by
    their similarity (look, and words when the query's words were found in photos)."""
    rows = update.visible
    checking = any(r.fine is not None or r.check_error for r in rows)
    head = f"{'#':>3}  " + (f"{'check':<14}  " if checking else "") + f"{'score':>7}  {'taken':<10}  photo"
    print(head)
    for r in rows:
        check = ""
        if checking:
            if r.fine is not None:
                v = verdict(r.fine, cutoff)
                check = f"{v.mark} {v.words.lower()}" + (" (2nd look)" if r.fine.ve_used else "")
            elif r.check_error:
                check = "? could not check"
            else:
                check = "not checked"
            check = f"{check:<14}  "
        score = f"{r.order_score:7.4f}"
        date = (r.photo.taken_at or "")[:10] or "-"
        mine = "  (in your library: the query photo)" if r.in_library else ""
        print(f"{r.rank:3d}. {check}{score}  {date:<10}  {one_line(r.path)}{mine}")
        if r.check_error:
            print(f"       could not check: {one_line(r.check_error)}")
        if r.text is not None:
            print(f"       text: {one_line(r.text.snippet)}")


def _print_understood(u: Understanding) -> None:
    """One line saying which dates and places were taken out of the query (and what is left for CLIP)."""
    if u.literal and u.message:
        print(f"understood: {u.message}")
        return
    if not u.chips:
        return
    parts = [f'text "{u.text}"' if u.text else "no text left"]
    parts += [p["name"] for p in u.people]
    parts += [u.place_label(p) for p in u.places]
    if u.date_from or u.date_to:
        start = u.date_from.isoformat() if u.date_from else "…"
        end = u.date_to.isoformat() if u.date_to else "…"
        parts.append(f"{start} to {end}")
    print("understood: " + "; ".join(parts) + " (--literal to search the words as typed)")


def cmd_places(args: argparse.Namespace) -> int:
    with open_library(args) as lib:
        places = lib.places()
    if args.json:
        print_json({"places": [dataclasses.asdict(p) for p in places]})
        return EXIT_OK
    if not places:
        print("no places yet: photos need GPS positions (run `retllm-desktop index` after adding some)")
    for p in places:
        where = ", ".join(x for x in (p.name, p.region, p.country) if x)
        print(f"{p.photos:6d}  {p.kind:<7}  {where}")
    return EXIT_OK
