"""Shared helpers for the benchmark scripts: cached synthetic models, timing stats, JSON output."""

from __future__ import annotations

import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
CACHE = BENCH_DIR / ".cache"
RESULTS = BENCH_DIR / "results"


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
    import os

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def save(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    result = {"benchmark": name, "machine": machine(), **result}
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"saved {path}")
    return path
