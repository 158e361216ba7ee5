"""Benchmark folder watching: landing → searchable latency, and the catch-up scan of an unchanged library.

    .venv/bin/python bench/bench_watch.py [--files 100000] [--landings 30] [--out bench/results/watch.json]

1. Latency: a photo is renamed into a watched folder (an atomic "landing") and we poll until it is in the
   vector index (searchable). p50/p95 over ``--landings`` photos, with the default watcher settings
   (debounce 0.5 s x 2 stable checks, 1 s batch window) and with fast settings.
2. Catch-up: ``--files`` tiny files whose catalog rows (size, mtime, vector) are seeded directly, then the
   start-up catch-up scan (``Library.index_roots()``) is timed against a plain os.walk + stat of the same tree
   (the floor for any scan that must notice changes). Unchanged files are never opened.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import load_average, quiet_start  # noqa: E402

from retllm_desktop.catalog import Photo  # noqa: E402
from retllm_desktop.library import Library  # noqa: E402
from retllm_desktop.watcher import LibraryWatcher  # noqa: E402
from tests.helpers_watch import make_models, write_photo  # noqa: E402


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def bench_latency(work: Path, models: Path, n: int, settings: dict) -> dict:
    root, staging = work / "photos", work / "staging"
    for d in (root, staging):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    shutil.rmtree(work / "lib", ignore_errors=True)
    lib = Library(work / "lib", models_dir=models, threads=1)
    lib.add_root(root)
    w = LibraryWatcher(lib, **settings).start()
    assert w.wait_idle(30)
    lat = []
    try:
        for i in range(n):
            src = write_photo(staging / f"p{i}.jpg", i, size=(640, 480))
            dest = root / f"p{i}.jpg"
            t0 = time.perf_counter()
            os.replace(src, dest)
            while True:
                p = lib.catalog.photo_by_path(str(dest))
                if p is not None and p.id in lib.index:
                    break
                time.sleep(0.002)
            lat.append(time.perf_counter() - t0)
            w.wait_idle(10)
    finally:
        w.stop()
        lib.close()
    return {
        "settings": settings,
        "n": n,
        "p50_s": round(statistics.median(lat), 3),
        "p95_s": round(pct(lat, 95), 3),
        "max_s": round(max(lat), 3),
    }


def bench_catch_up(work: Path, models: Path, n: int) -> dict:
    root = work / "big"
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(work / "biglib", ignore_errors=True)
    t = time.perf_counter()
    per_dir = 1000
    for d in range(0, n, per_dir):
        folder = root / f"d{d // per_dir:04d}"
        folder.mkdir(parents=True)
        for i in range(d, min(n, d + per_dir)):
            with open(folder / f"img{i:06d}.jpg", "wb") as f:
                f.write(i.to_bytes(4, "little"))
    create_s = time.perf_counter() - t

    lib = Library(work / "biglib", models_dir=models, threads=os.cpu_count() or 1)
    r = lib.add_root(root)
    dim, name = lib.clip.embed_dim, lib.clip.name
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    now = time.time()
    photos, vecs = [], []
    for dirpath, _, files in os.walk(root):
        for fn in files:
            p = os.path.join(dirpath, fn)
            st = os.stat(p)
            pid = len(photos) + 1  # ids assigned in insertion order in the empty catalog
            photos.append(
                Photo(pid, r.id, p, st.st_size, st.st_mtime_ns, f"h{pid}", added_at=now, updated_at=now)
            )
            v = rng.standard_normal(dim).astype(np.float32)
            vecs.append(v / np.linalg.norm(v))
    with lib.catalog.transaction():
        lib.catalog.insert_photos(photos)
        lib.catalog.put_embeddings(range(1, len(photos) + 1), name, np.stack(vecs))
    _ = lib.index  # builds the vector index once from the seeded vectors (not part of the timing)
    seed_s = time.perf_counter() - t
    lib.close()

    def walk_stat() -> int:
        k = 0
        for dirpath, _, files in os.walk(root):
            for fn in files:
                os.stat(os.path.join(dirpath, fn))
                k += 1
        return k

    walk_stat()  # warm the OS caches the same way for both measurements
    t = time.perf_counter()
    assert walk_stat() == n
    walk_s = time.perf_counter() - t

    t = time.perf_counter()
    lib = Library(work / "biglib", models_dir=models, threads=os.cpu_count() or 1)
    s = lib.index_roots()  # what LibraryWatcher.start() runs first (fresh process: opens catalog + index)
    catch_up_s = time.perf_counter() - t
    lib.close()
    assert s.unchanged == n and s.added == s.updated == s.failed == 0, s
    return {
        "files": n,
        "create_files_s": round(create_s, 1),
        "seed_catalog_and_index_s": round(seed_s, 1),
        "walk_stat_baseline_s": round(walk_s, 3),
        "catch_up_s": round(catch_up_s, 3),
        "catch_up_over_walk_ratio": round(catch_up_s / walk_s, 2),
        "files_per_s": round(n / catch_up_s),
        "summary": s.as_dict(),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--landings", type=int, default=30)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "watch.json"))
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    start_load = quiet_start()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_watch_"))
    models = make_models(work / "models")
    result = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "latency_default": bench_latency(
            work, models, args.landings, dict(debounce_s=0.5, stable_checks=2, batch_window_s=1.0)
        ),
        "latency_fast": bench_latency(
            work, models, args.landings, dict(debounce_s=0.1, stable_checks=2, batch_window_s=0.2)
        ),
        "catch_up": bench_catch_up(work, models, args.files),
    }
    result["load_average"] = {"start": start_load, "end": load_average()}
    print(json.dumps(result, indent=2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
