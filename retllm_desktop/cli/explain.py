"""`retllm-desktop explain --image PATH QUERY`: the LLM's one-sentence reason, streamed to stdout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import RetllmError
from ..search import Query, resolve_query_image
from .common import EXIT_OK, add_common_args, open_library, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="ask the LLM why a photo does or does not match a query")
    add_common_args(p)
    p.add_argument("--image", required=True, metavar="PATH", help="the photo to explain")
    p.add_argument("--query-image", metavar="PATH", help="query image, for image or composed queries")
    p.add_argument("--mllm-model", metavar="NAME", help="LLM name under <models>/mllm/")
    p.add_argument("query", nargs="?", default="", metavar="QUERY")
    p.set_defaults(func=cmd_explain)


def cmd_explain(args: argparse.Namespace) -> int:
    if not Path(args.image).is_file():
        raise RetllmError(f"photo not found: {args.image}")
    query = Query(text=args.query, image=resolve_query_image(args.query_image))
    photo = str(Path(args.image).expanduser().resolve())
    with open_library(args) as lib:
        pieces = []
        for piece in lib.explain(photo, query):
            pieces.append(piece)
            if not args.json:
                sys.stdout.write(piece)
                sys.stdout.flush()
    if args.json:
        print_json({"image": photo, "query": query.text, "explanation": "".join(pieces).strip()})
    else:
        sys.stdout.write("\n")
    return EXIT_OK
