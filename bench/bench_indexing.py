"""End-to-end indexing throughput vs. its two parts, measured in the same run.

Decoding 12 MP JPEGs and running CLIP share the same cores, so the best a pipeline can do is
1 / (1/decode_only + 1/model_only) (both measured with all cores). We report end-to-end throughput
as a fraction of that bound (target >= 0.8).

    python bench/bench_indexing.py [--photos 48] [--size realistic|tiny]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE, peak_rss_mb, quiet_start, save, synthetic_models  # noqa: E402

from retllm_desktop.imaging import load_rgb  # noqa: E402
from retllm_desktop.library import Library  # noqa: E402
from retllm_desktop.models.clip.towers import ClipModel, find_clip_model  # noqa: E402


def make_12mp_jpegs(folder: Path, n: int) -> list[Path]:
    """Camera-like 4000x3000 JPEGs (smooth gradients + noise + shapes), cached between runs."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    rng = np.random.default_rng(0)
    base = None
    for i in range(n):
        p = folder / f"IMG_{i:04d}.jpg"
        paths.append(p)
        if p.exists():
            continue
        if base is None:
            y, x = np.mgrid[0:3000, 0:4000].astype(np.float32)
            base = np.stack([x / 4000 * 255, y / 3000 * 255, (x + y) / 7000 * 255], axis=2)
        noise = rng.normal(0, 12, size=(3000, 4000, 1)).astype(np.float32)
        arr = np.clip(np.roll(base, i * 97, axis=1) + noise, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr)
        d = ImageDraw.Draw(img)
        for _ in range(6):
            x0, y0 = int(rng.integers(0, 3500)), int(rng.integers(0, 2500))
            d.ellipse((x0, y0, x0 + 500, y0 + 400), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        img.save(p, quality=90)
    return paths


def decode_only(paths: list[Path], size: int, preprocess, workers: int) -> float:
    t = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda p: preprocess(load_rgb(p, min_side=size)), paths))
    return len(paths) / (time.perf_counter() - t)


def model_only(clip: ClipModel, n: int, batch: int) -> float:
    x = np.random.default_rng(1).normal(size=(batch, 3, clip.image_size, clip.image_size)).astype(np.float32)
    clip.encode_images(x)  # warm-up
    t = time.perf_counter()
    done = 0
    while done < n:
        clip.encode_images(x)
        done += batch
    return done / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=48)
    ap.add_argument("--size", default="realistic")
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    quiet_start()
    cores = os.cpu_count() or 1
    models = synthetic_models(args.size)
    photos = make_12mp_jpegs(CACHE / "photos-12mp", args.photos)
    clip = ClipModel(find_clip_model(models), threads=cores)
    clip.load()

    t = time.perf_counter()  # the naive way, for reference: full-resolution decode, one core

    for p in photos[:4]:
        clip.preprocess(load_rgb(p))
    full_decode_ms = (time.perf_counter() - t) / 4 * 1000
    dec = decode_only(photos, clip.image_size, clip.preprocess, cores)
    mod = model_only(clip, args.photos, args.batch)
    clip.close()
    bound = 1.0 / (1.0 / dec + 1.0 / mod)

    tmp = Path(tempfile.mkdtemp(prefix="bench-index-"))
    try:
        lib = Library(
            tmp / "lib", models_dir=models, threads=cores, decode_workers=cores, batch_size=args.batch
        )
        lib.clip.load()
        t = time.perf_counter()
        summary = lib.index_roots([str(photos[0].parent)])
        e2e_s = time.perf_counter() - t
        lib.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    e2e = summary.added / e2e_s
    save(
        "indexing",
        {
            "photos": args.photos,
            "photo_size": "4000x3000 JPEG q90",
            "model": f"synthetic-{args.size}",
            "cores": cores,
            "decode_only_per_s": round(dec, 2),
            "decode_full_resolution_ms_per_photo": round(full_decode_ms, 1),
            "decode_draft_ms_per_photo_all_cores": round(1000 / dec, 1),
            "model_only_per_s": round(mod, 2),
            "pipeline_bound_per_s": round(bound, 2),
            "end_to_end_per_s": round(e2e, 2),
            "efficiency_vs_bound": round(e2e / bound, 3),
            "target_efficiency": 0.8,
            "indexed": summary.added,
            "peak_rss_mb": peak_rss_mb(),
        },
    )


if __name__ == "__main__":
    main()
