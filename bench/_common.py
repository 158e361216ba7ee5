"""Shared helpers for the benchmark scripts: a quiet machine, cached synthetic models, timing stats, JSON.

Every benchmark calls :func:`quiet_start` first: on a machine busy with other work the numbers mean little,
so it waits for the 1-minute load average to drop to ``MAX_LOAD`` (1.5; ``RETLLM_BENCH_MAX_LOAD`` changes
it) and refuses to run when it does not within ``RETLLM_BENCH_WAIT_S`` seconds (default 180). The load at
the start and at the end is saved with the results.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
CACHE = BENCH_DIR / ".cache"
RESULTS = BENCH_DIR / "results"
MAX_LOAD = float(os.environ.get("RETLLM_BENCH_MAX_LOAD", "1.5"))
WAIT_S = float(os.environ.get("RETLLM_BENCH_WAIT_S", "180"))
EXIT_BUSY = 3

_start_load: list[float] | None = None


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def quiet_start(max_load: float = MAX_LOAD, wait_s: float = WAIT_S, poll_s: float = 5.0) -> list[float]:
    """Wait until the 1-minute load average is at most ``max_load``; exit with ``EXIT_BUSY`` when it is not
    within ``wait_s``. Returns the load averages at the start (also saved by :func:`save`)."""
    global _start_load
    deadline = time.monotonic() + wait_s
    while (load := load_average())[0] > max_load:
        if time.monotonic() >= deadline:
            print(
                f"refusing to benchmark: the 1-minute load average is {load[0]:.2f} (> {max_load}) after "
                f"waiting {wait_s:.0f} s; other work would distort the numbers",
                file=sys.stderr,
            )
            raise SystemExit(EXIT_BUSY)
        print(f"waiting for a quiet machine: load {load[0]:.2f} > {max_load}", file=sys.stderr, flush=True)
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
    _start_load = load
    return load


def synthetic_models(size: str = "realistic", mllm: bool = False) -> Path:
    """Random-weight models in the real layout, generated once and kept under bench/.cache."""
    out = CACHE / f"models-{size}"
    clip_dir = out / "clip" / f"synthetic-{size}"
    if not (clip_dir / "clip.json").exists():
        from retllm_desktop.devtools.synthetic_clip import write_synthetic_clip

        write_synthetic_clip(out, size)
    if mllm and not (out / "mllm" / f"synthetic-{size}" / "mllm.json").exists():
        from retllm_desktop.devtools.synthetic_mllm import write_synthetic_mllm

        write_synthetic_mllm(out, size)
    return out


def percentiles(samples_s: list[float]) -> dict[str, float]:
    a = np.asarray(samples_s) * 1000.0
    return {
        "n": int(a.size),
        "mean_ms": round(float(a.mean()), 3),
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p95_ms": round(float(np.percentile(a, 95)), 3),
        "max_ms": round(float(a.max()), 3),
    }


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def machine() -> dict:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def save(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    loads = {"start": _start_load, "end": load_average(), "max_allowed": MAX_LOAD}
    if _start_load is None:
        print("warning: this benchmark did not wait for a quiet machine (quiet_start)", file=sys.stderr)
    result = {"benchmark": name, "machine": machine(), "load_average": loads, **result}
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"saved {path}")
    return path
