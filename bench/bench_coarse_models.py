"""CPU cost of each registry search (CLIP-family) model: per photo indexed and per query, on full-size replicas.

Replicas have random weights but the published files' format, interface, sizes and compute (see
``devtools/replicas``), so time and memory are the real models'; the results are meaningless, the speed
is not. Each model runs in its own process (its own peak RSS); ratios are against ``clip-vit-b32`` (the
paper's coarse model) measured in the same run. The 1-minute load average is recorded before and after
each model; with ``--max-load`` the run waits (up to ``--wait`` s) for a quiet machine first.

    python bench/bench_coarse_models.py [--names a,b] [--photos 16] [--queries 40] [--size full|tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE, MAX_LOAD, peak_rss_mb, percentiles, quiet_start, save  # noqa: E402

BASELINE = "clip-vit-b32"
QUERIES = [
    "a dog on the beach", "two red cars at night", "birthday cake with candles", "snowy mountain at sunrise",
    "a child on a bicycle", "people at a wedding dinner", "a cat sleeping on a sofa", "boats in a harbour",
    "chien sur la plage", "Hund am Strand", "perro en la playa", "собака на пляже", "海滩上的狗",
    "a receipt from a restaurant", "the eiffel tower in the rain", "fireworks over a city",
]  # fmt: skip


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def wait_quiet(max_load: float | None, wait_s: float) -> float:
    t0 = time.monotonic()
    while max_load is not None and _load() > max_load and time.monotonic() - t0 < wait_s:
        time.sleep(10)
    return _load()


def worker(name: str, size: str, photos: int, queries: int, threads: int) -> dict:
    from bench_indexing import make_12mp_jpegs

    from retllm_desktop.devtools.replicas import write_replica
    from retllm_desktop.models.clip.towers import ClipModel

    d = write_replica(name, CACHE / "replicas", size)
    files = {p.name: p.stat().st_size for p in d.iterdir() if p.is_file() and p.suffix in (".onnx", ".json")}
    paths = make_12mp_jpegs(CACHE / "photos-12mp", photos)
    clip = ClipModel(d, threads=threads)
    t = time.perf_counter()
    clip.load()
    clip.tokenizer  # noqa: B018 - loaded now, not inside the first query
    load_s = time.perf_counter() - t
    rng = np.random.default_rng(1)
    batch = rng.normal(size=(8, 3, clip.image_size, clip.image_size)).astype(np.float32)
    clip.encode_images(batch[:2])  # warm-up
    t = time.perf_counter()
    reps = max(1, photos // 8)
    for _ in range(reps):
        clip.encode_images(batch)
    model_ms = (time.perf_counter() - t) / (reps * 8) * 1000
    t = time.perf_counter()
    clip.encode_image_paths(paths, batch_size=8)
    e2e_ms = (time.perf_counter() - t) / len(paths) * 1000
    clip.encode_texts(QUERIES[:1])
    samples = []
    for i in range(queries):
        t = time.perf_counter()
        clip.encode_texts([QUERIES[i % len(QUERIES)]])
        samples.append(time.perf_counter() - t)
    clip.close()
    return {
        "model": name,
        "embed_dim": clip.embed_dim,
        "image_size": clip.image_size,
        "download_bytes": sum(v for k, v in files.items() if k != "clip.json"),
        "load_s": round(load_s, 2),
        "image_model_ms_per_photo": round(model_ms, 1),
        "photo_end_to_end_ms": round(e2e_ms, 1),
        "photos_per_s": round(1000 / e2e_ms, 2),
        "query_text": percentiles(samples),
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--names", default="")
    ap.add_argument("--size", default="full")
    ap.add_argument("--photos", type=int, default=16)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--max-load", type=float, default=None, help="wait for the 1-min load to drop below this")
    ap.add_argument("--wait", type=float, default=300)
    ap.add_argument("--out", default="coarse_models")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.size, args.photos, args.queries, args.threads)))
        return
    quiet_start(args.max_load or MAX_LOAD, args.wait)
    from retllm_desktop.devtools.replicas import registry_names

    names = [n for n in (args.names.split(",") if args.names else registry_names("clip")) if n]
    if BASELINE not in names:
        names.insert(0, BASELINE)
    rows = []
    for name in names:
        before = wait_quiet(args.max_load, args.wait)
        cmd = [sys.executable, __file__, "--worker", name, "--size", args.size, "--photos", str(args.photos),
               "--queries", str(args.queries), "--threads", str(args.threads)]  # fmt: skip
        p = subprocess.run(cmd, capture_output=True, text=True)
        line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            rows.append({"model": name, "error": (p.stderr or p.stdout).strip().splitlines()[-1:]})
            continue
        row = json.loads(line[7:])
        row["load_average_1min"] = [before, _load()]
        rows.append(row)
        print(json.dumps(row), flush=True)
    base = next((r for r in rows if r.get("model") == BASELINE and "error" not in r), None)
    for r in rows:
        if base and "error" not in r:
            r["photo_cost_vs_b32"] = round(r["photo_end_to_end_ms"] / base["photo_end_to_end_ms"], 2)
            r["query_cost_vs_b32"] = round(r["query_text"]["p50_ms"] / base["query_text"]["p50_ms"], 2)
    save(args.out, {"size": args.size, "photos": args.photos, "photo_size": "4000x3000 JPEG q90",
                    "threads": args.threads, "max_load": args.max_load, "models": rows})  # fmt: skip


if __name__ == "__main__":
    main()
