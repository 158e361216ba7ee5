"""`retllm-desktop eval`: paper-style Recall@K, coarse vs fine vs fine+VE (see retllm_desktop.eval)."""

from __future__ import annotations

import argparse

from ..config import max_threads
from ..errors import RetllmError
from ..eval import load_eval_set, run_eval
from ..progress import ProgressBar
from .common import EXIT_OK, bounded, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="measure text→image / image→text Recall@1/5/10 on a captioned image set (throwaway library)",
        description=(
            "Index IMAGES into a temporary library and report Recall@1/5/10 for CLIP alone (coarse), "
            "with the LLM rerank (fine) and with our prompt-level second look (fine+second-look; not the "
            "paper's in-layer visual enhancement), with per-stage times. "
            "Flickr30k/COCO protocol: 5 captions per image, caption j belongs to image j//5."
        ),
    )
    p.add_argument(
        "--models", metavar="DIR", help="models folder (default: $RETLLM_MODELS, ./models, user dir)"
    )
    p.add_argument("--clip-model", metavar="NAME", help="CLIP model name under <models>/clip/")
    p.add_argument("--mllm-model", metavar="NAME", help="LLM name under <models>/mllm/")
    p.add_argument(
        "--images", required=True, metavar="DIR", help="folder the caption file's image names are relative to"
    )
    p.add_argument(
        "--captions",
        required=True,
        metavar="FILE",
        help="Karpathy split JSON (test split), JSON [{image, caption}], or 'image<TAB>caption' lines",
    )
    p.add_argument("--protocol", choices=["flickr30k", "coco", "pairs"], default="flickr30k")
    p.add_argument(
        "--k", type=bounded(int, 1, 1000), default=5, help="how many top CLIP candidates the LLM reranks"
    )
    p.add_argument(
        "--modes",
        default="coarse,fine,fine+second-look,fine+retrace",
        help="comma-separated: coarse, fine, fine+second-look (old name: fine+ve), fine+retrace",
    )
    p.add_argument(
        "--second-look",
        "--ve",
        dest="second_look",
        choices=["auto", "always"],
        default="auto",
        help="when fine+second-look shows the photo again: after uncertain answers (auto) or always",
    )
    p.add_argument(
        "--limit",
        type=bounded(int, 1, 10**8),
        metavar="N",
        help="only the first N images (and their captions)",
    )
    p.add_argument("--threads", type=bounded(int, 1, max_threads()), help="CPU threads for the models")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes:
        raise RetllmError("--modes is empty")
    dataset = load_eval_set(args.images, args.captions, protocol=args.protocol, limit=args.limit)
    bar = ProgressBar(enabled=None if not args.json else False)
    report = run_eval(
        dataset,
        models_dir=args.models,
        clip_model=args.clip_model,
        mllm_model=args.mllm_model,
        k=args.k,
        modes=modes,
        threads=args.threads,
        progress=bar,
        second_look=args.second_look,
    )
    bar.finish()
    if args.json:
        print_json(report.as_dict())
    else:
        print(report.table())
    return EXIT_OK
