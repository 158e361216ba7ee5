"""Fine-rerank latency (multimodal LLM, RetLLM) for k = 5 / 10 / 20 candidates, cold vs cached.

Uses the "realistic" synthetic GGUF pair (random weights, real shapes: Qwen2-0.5B-like text model
n_embd 896 x 24 layers, GQA 14/2, 32k vocab, f16 + ViT-B/16 @ 224 mmproj -> 196 image tokens),
generated once under bench/.cache/models-realistic. Photos are 1024x768 JPEGs.

Per k, in one run:
  cold        fresh scorer + empty embedding cache (model load and a warm-up call excluded)
  repeat      same query again, same scorer          (KV snapshots + embedding cache)
  new_query   different query text, same scorer      (KV snapshots: only the question tokens run)
  restart     new scorer on the same disk caches     (image embeddings + KV snapshots from disk)

    python bench/bench_rerank.py [--ks 5,10,20] [--threads N] [--ve off|auto|always]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE, peak_rss_mb, percentiles, quiet_start, save  # noqa: E402

from retllm_desktop.config import default_threads  # noqa: E402
from retllm_desktop.devtools.synthetic_mllm import write_synthetic_mllm  # noqa: E402
from retllm_desktop.models.llm.cache import EmbeddingCache  # noqa: E402
from retllm_desktop.models.llm.scorer import MllmScorer, find_mllm_model  # noqa: E402
from retllm_desktop.rerank import RerankOptions, rerank  # noqa: E402

Q1 = "a dog running on the beach at sunset"
Q2 = "a red car parked in front of a blue house"


def photos(n: int) -> list[Path]:
    from PIL import Image

    d = CACHE / "photos-rerank"
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n + 1):
        p = d / f"photo_{i:03d}.jpg"
        if not p.exists():
            rng = np.random.default_rng(i)
            yy, xx = np.mgrid[0:768, 0:1024].astype(np.float32)
            base = np.stack(
                [np.sin(xx / rng.uniform(20, 200) + c) * np.cos(yy / rng.uniform(20, 200)) for c in range(3)],
                -1,
            )
            img = (base * 90 + 128 + rng.normal(0, 12, base.shape)).clip(0, 255).astype(np.uint8)
            Image.fromarray(img).save(p, quality=90)
        out.append(p)
    return out  # the last one is only used for warm-up


def run(scorer: MllmScorer, cands: list[Path], query: str, k: int, ve: str) -> dict:
    t0 = time.perf_counter()
    final = rerank(
        cands, lambda p: scorer.score(p, text=query, candidate_key=p.name, ve=ve), RerankOptions(k=k, ve=ve)
    )
    total = time.perf_counter() - t0
    per = [f.seconds for _, f in final.pairs if f is not None]
    return {
        "total_s": round(total, 3),
        "per_candidate": percentiles(per),
        "scores": [f.score for _, f in final.pairs if f],
    }


def new_scorer(model_dir: Path, cache_dir: Path, threads: int, warm: Path) -> MllmScorer:
    s = MllmScorer(
        model_dir,
        threads=threads,
        n_ctx=2048,
        cache=EmbeddingCache(cache_dir, 2 * 1024**3),
        state_disk_cache=EmbeddingCache(cache_dir / "kv", 2 * 1024**3),
    )
    t = time.perf_counter()
    s.load()
    s.score(warm, text="warm up", candidate_key="warm", ve="off")  # graph allocation, first-call costs
    s.stats_load_s = time.perf_counter() - t  # type: ignore[attr-defined]
    return s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ks", default="5,10,20")
    ap.add_argument("--threads", type=int, default=default_threads())
    ap.add_argument("--ve", default="off", choices=["off", "auto", "always"])
    args = ap.parse_args(argv)
    quiet_start()
    ks = [int(x) for x in args.ks.split(",")]

    models = CACHE / "models-realistic"
    t = time.perf_counter()
    write_synthetic_mllm(models, "realistic")
    gen_s = time.perf_counter() - t
    model_dir = find_mllm_model(models, "synthetic-realistic")
    pics = photos(max(ks))
    warm = pics[-1]

    results = {}
    for k in ks:
        with tempfile.TemporaryDirectory() as tmp:
            cache_dir = Path(tmp) / "emb"
            s = new_scorer(model_dir, cache_dir, args.threads, warm)
            cold = run(s, pics[:k], Q1, k, args.ve)
            enc_cold = s.stats["encode"]
            repeat = run(s, pics[:k], Q1, k, args.ve)
            new_q = run(s, pics[:k], Q2, k, args.ve)
            enc_cached = s.stats["encode"] - enc_cold
            s.close()
            s2 = new_scorer(model_dir, cache_dir, args.threads, warm)
            restart = run(s2, pics[:k], Q1, k, args.ve)
            enc_restart = s2.stats["encode"]  # warm-up photo is already on disk too
            s2.close()
        identical = bool(np.allclose(cold["scores"], repeat["scores"], rtol=1e-5, atol=1e-9)) and bool(
            np.allclose(cold["scores"], restart["scores"], rtol=1e-5, atol=1e-9)
        )
        res = {
            "cold": cold,
            "repeat": repeat,
            "new_query": new_q,
            "restart": restart,
            "speedup_repeat": round(cold["total_s"] / repeat["total_s"], 2),
            "speedup_new_query": round(cold["total_s"] / new_q["total_s"], 2),
            "speedup_restart": round(cold["total_s"] / restart["total_s"], 2),
            "image_encodes": {"cold": enc_cold - 1, "cached": enc_cached, "restart": enc_restart},
            "scores_identical": identical,
        }
        for r in (cold, repeat, new_q, restart):
            r.pop("scores")
        results[f"k={k}"] = res
        print(
            f"k={k:>2}: cold {cold['total_s']:.2f}s ({cold['per_candidate']['mean_ms']:.0f} ms/cand) | "
            f"repeat {repeat['total_s']:.2f}s x{res['speedup_repeat']} | new query {new_q['total_s']:.2f}s "
            f"x{res['speedup_new_query']} | restart {restart['total_s']:.2f}s x{res['speedup_restart']} | "
            f"identical={identical}",
            flush=True,
        )
    save(
        "rerank",
        {
            "model": "synthetic-realistic (text 896x24 GQA14/2 vocab 32k f16; mmproj ViT-B/16@224, 196 tokens)",
            "threads": args.threads,
            "ve": args.ve,
            "generate_model_s": round(gen_s, 2),
            "results": results,
            "peak_rss_mb": peak_rss_mb(),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
