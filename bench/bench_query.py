"""Coarse query latency at 10k / 100k / 1M photos: hnswlib vs numpy exact, recall@10, index memory.

Vectors are clustered (photo libraries are: bursts, trips, the same cat), not uniform noise. The
end-to-end number includes CLIP text encoding with the ViT-B/32-size synthetic text tower.

    python bench/bench_query.py [--sizes 10000,100000,1000000] [--queries 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import percentiles, quiet_start, save, synthetic_models  # noqa: E402

from retllm_desktop.models.clip.towers import ClipModel, find_clip_model  # noqa: E402
from retllm_desktop.vector_index import VectorIndex  # noqa: E402


def clustered(n: int, dim: int, rng: np.random.Generator, clusters: int = 2000) -> np.ndarray:
    centers = rng.normal(size=(clusters, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    out = np.empty((n, dim), dtype=np.float32)
    step = 100_000
    for s in range(0, n, step):
        m = min(step, n - s)
        c = rng.integers(0, clusters, m)
        # Within-cluster spread comparable to the centre (cosine to centre ~0.6-0.8), like bursts/trips.
        x = centers[c] + rng.normal(scale=0.6 / np.sqrt(dim), size=(m, dim)).astype(np.float32)
        out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


HNSW = {"M": 24, "ef_construction": 200, "ef_search": 256}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    quiet_start()
    cores = os.cpu_count() or 1
    clip = ClipModel(find_clip_model(synthetic_models("realistic")), threads=cores)
    dim = clip.embed_dim
    rng = np.random.default_rng(0)
    texts = [f"photo {i} of a dog on a beach at sunset" for i in range(args.queries)]
    clip.encode_texts(texts[:2])
    enc = []
    for t in texts[:50]:
        s = time.perf_counter()
        clip.encode_texts([t])
        enc.append(time.perf_counter() - s)
    results: dict = {"dim": dim, "hnsw_params": HNSW, "text_encode": percentiles(enc), "sizes": {}}
    for n in [int(x) for x in args.sizes.split(",")]:
        base_rss = rss_mb()
        vecs = clustered(n, dim, rng)
        queries = clustered(args.queries, dim, rng)
        vec_mb = rss_mb() - base_rss
        with tempfile.TemporaryDirectory() as tmp:
            before = rss_mb()
            idx = VectorIndex(Path(tmp) / "i.hnsw", dim, threads=cores, exact_threshold=0, **HNSW)
            t = time.perf_counter()
            for s in range(0, n, 50_000):
                idx.add(range(s, min(n, s + 50_000)), vecs[s : s + 50_000])
            build_s = time.perf_counter() - t
            index_mb = rss_mb() - before
            t = time.perf_counter()
            idx.save()
            save_s = time.perf_counter() - t
            file_mb = (Path(tmp) / "i.hnsw").stat().st_size / 2**20
            approx, exact, recall = [], [], []
            for q in queries:
                s = time.perf_counter()
                ids_a, _ = idx.search(q, 10, exact=False)
                approx.append(time.perf_counter() - s)
                s = time.perf_counter()
                scores = vecs @ q
                top = np.argpartition(-scores, 10)[:10]
                exact.append(time.perf_counter() - s)
                recall.append(len(set(ids_a.tolist()) & set(top.tolist())) / 10)
            e2e = []
            for t_ in texts[:100]:
                s = time.perf_counter()
                qv = clip.encode_texts([t_])[0]
                idx.search(qv, 50, exact=False)
                e2e.append(time.perf_counter() - s)
            results["sizes"][str(n)] = {
                "build_s": round(build_s, 1),
                "save_s": round(save_s, 2),
                "hnsw_query": percentiles(approx),
                "numpy_exact_query": percentiles(exact),
                "hnsw_recall_at_10": round(float(np.mean(recall)), 4),
                "speedup_hnsw_vs_exact_p50": round(
                    percentiles(exact)["p50_ms"] / max(percentiles(approx)["p50_ms"], 1e-6), 1
                ),
                "end_to_end_text_query": percentiles(e2e),
                "index_memory_mb": round(index_mb, 1),
                "index_file_mb": round(file_mb, 1),
                "raw_vectors_mb": round(vec_mb, 1),
            }
            print(n, results["sizes"][str(n)], flush=True)
            del idx
        del vecs
    r100 = results["sizes"].get("100000")
    if r100:
        results["target_p50_ms_at_100k_incl_text"] = 50
        results["met_target"] = r100["end_to_end_text_query"]["p50_ms"] <= 50
    save("query", results)


if __name__ == "__main__":
    main()
