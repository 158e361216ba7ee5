"""Write random-weight test models: ``python -m retllm_desktop.devtools.synthetic_models OUT``.

OUT becomes a models folder (``OUT/clip/synthetic-<size>/`` and, unless ``--no-mllm``, the synthetic
multimodal LLM written by ``retllm_desktop.devtools.synthetic_mllm``). Needs no torch and no download.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .synthetic_clip import SIZES, write_synthetic_clip


def _describe(path: Path) -> str:
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    total = sum(p.stat().st_size for p in files)
    names = ", ".join(p.name for p in files)
    return f"{path} ({total / 1e6:.1f} MB: {names})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m retllm_desktop.devtools.synthetic_models",
        description="Write random-weight CLIP (and multimodal LLM) models for tests and benchmarks.",
    )
    parser.add_argument("out", type=Path, help="models folder to write into (e.g. models/ or a temp dir)")
    parser.add_argument(
        "--size", choices=sorted(SIZES), default="tiny", help="tiny (default) or realistic (ViT-B/32 shapes)"
    )
    parser.add_argument("--seed", type=int, default=0, help="weights RNG seed (same seed -> same files)")
    parser.add_argument("--no-mllm", action="store_true", help="only write the CLIP model")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    clip_dir = write_synthetic_clip(args.out, size=args.size, seed=args.seed)
    print(f"CLIP: {_describe(clip_dir)} in {time.perf_counter() - t0:.1f}s")

    if not args.no_mllm:
        try:
            from .synthetic_mllm import write_synthetic_mllm
        except ImportError as e:
            print(f"note: synthetic multimodal LLM not written ({e})", file=sys.stderr)
        else:
            t0 = time.perf_counter()
            result = write_synthetic_mllm(args.out, size=args.size, seed=args.seed)
            where = _describe(Path(result)) if isinstance(result, (str, Path)) else repr(result)
            print(f"MLLM: {where} in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
