"""The vector index at 100k / 300k / 1M photos: recall@10 vs exact, latency, memory, disk, build time.

Compares today's index (hnswlib, float32 vectors inside the graph) with compact candidates from faiss-cpu:
HNSW over 8-bit scalar-quantised codes and IVF over 8-bit codes, each optionally followed by exact
rescoring of the top few hundred candidates against fp16 copies of the vectors kept in a memory-mapped file.

Vectors are synthetic but shaped like CLIP image embeddings, not uniform random: a shared mean direction
(random photo pairs have cosine ~0.4), a power-law spectrum (low intrinsic dimension), topics → events →
photos (hierarchical clusters, like trips and bursts), all L2-normalised. Queries are held-out vectors from
the same generator. ``--data isotropic`` uses bench_query.py's older isotropic clusters (much harder).

Each configuration is built in one subprocess (saved to disk) and queried in a fresh one that only loads the
saved files, so the memory numbers are what the app pays after opening a library: RSS growth over the
process before loading (anonymous memory and mapped file pages separately) and its peak.

One command (quiet machine, 2 cores, default sizes, 512-d, today's index vs the library's compact one;
about 30-40 min, most of it building hnswlib at 1M and generating the 1M vectors, cached for re-runs):
    PYTHONPATH=$PWD .venv/bin/python bench/bench_ann.py
``--sizes 100000,300000`` takes ~10 min; ``--configs`` adds faiss_hnsw_sq8_M32 (HNSW over 8-bit codes);
``--dims 768`` measures SigLIP 2's size. Waits for load ≤ 1.5 (``_common.quiet_start``) unless ``--force``.
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
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE, MAX_LOAD, percentiles, quiet_start, save  # noqa: E402

K = 10
RESCORE = 200  # candidates rescored exactly (fp16) when a config rescores


# -- data ------------------------------------------------------------------------------------------
def clip_like(n: int, dim: int, seed: int) -> np.ndarray:
    """CLIP-shaped unit vectors: mean direction + power-law spectrum + topics → events → photos."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    spectrum = (np.arange(1, dim + 1) ** -0.6).astype(np.float32)
    spectrum /= np.linalg.norm(spectrum) / np.sqrt(dim)
    mean = basis[:, 0].astype(np.float32)
    rot = (basis * spectrum).astype(np.float32).T  # row-space: z @ rot
    topics = rng.normal(size=(1000, dim)).astype(np.float32)
    n_events = max(100, n // 40)
    ev_topic = rng.integers(0, len(topics), n_events)
    events = topics[ev_topic] + 0.7 * rng.normal(size=(n_events, dim)).astype(np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    step = 50_000
    for s in range(0, n, step):
        m = min(step, n - s)
        e = rng.integers(0, n_events, m)
        z = events[e] + 0.6 * rng.normal(size=(m, dim)).astype(np.float32)
        x = z @ rot
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        x += 0.8 * mean
        out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def isotropic(n: int, dim: int, seed: int) -> np.ndarray:
    from bench_query import clustered

    return clustered(n, dim, np.random.default_rng(seed))


def dataset(kind: str, n: int, dim: int, queries: int) -> tuple[Path, Path, Path]:
    """Base vectors, queries and exact top-K ground truth, cached as .npy under bench/.cache/ann."""
    d = CACHE / "ann" / f"{kind}-{dim}-{n}"
    base, qs, gt = d / "base.npy", d / f"queries{queries}.npy", d / f"gt{queries}.npy"
    if not gt.exists():
        d.mkdir(parents=True, exist_ok=True)
        gen = clip_like if kind == "clip" else isotropic
        both = gen(n + queries, dim, seed=dim)
        np.save(base, both[:n])
        np.save(qs, both[n:])
        b, q = both[:n], both[n:]
        top = np.empty((queries, K), dtype=np.int64)
        for s in range(0, queries, 100):
            sc = q[s : s + 100] @ b.T
            part = np.argpartition(-sc, K, axis=1)[:, :K]
            order = np.argsort(-np.take_along_axis(sc, part, 1), axis=1)
            top[s : s + 100] = np.take_along_axis(part, order, 1)
        np.save(gt, top)
        del both
    return base, qs, gt


# -- configurations --------------------------------------------------------------------------------
def nlist_for(n: int) -> int:
    return int(2 ** round(np.log2(4 * np.sqrt(n))))


CONFIGS = {
    # today's library: hnswlib float32, M 24, ef_construction 200, ef = max(256, n // 300) capped at 2048
    "hnswlib_f32_M24": {"kind": "hnswlib", "M": 24, "efc": 200},
    "faiss_hnsw_sq8_M32": {"kind": "faiss_hnsw", "M": 32, "efc": 200},
    "faiss_ivf_sq8": {"kind": "faiss_ivf"},
}


def rss() -> dict[str, float]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key = line.split(":")[0]
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(line.split()[1]) / 1024.0
    return out


def build(name: str, base_path: Path, out: Path, threads: int) -> dict:
    cfg = CONFIGS[name]
    base = np.load(base_path, mmap_mode="r")
    n, dim = base.shape
    t0 = time.perf_counter()
    files = []
    if cfg["kind"] == "hnswlib":
        import hnswlib

        idx = hnswlib.Index(space="ip", dim=dim)
        idx.init_index(max_elements=n, ef_construction=cfg["efc"], M=cfg["M"])
        for s in range(0, n, 100_000):
            chunk = np.ascontiguousarray(base[s : s + 100_000])
            idx.add_items(chunk, np.arange(s, s + len(chunk)), num_threads=threads)
        idx.save_index(str(out / "index.hnsw"))
        files.append(out / "index.hnsw")
    else:
        import faiss

        faiss.omp_set_num_threads(threads)
        if cfg["kind"] == "faiss_hnsw":
            idx = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, cfg["M"], faiss.METRIC_INNER_PRODUCT)
            idx.hnsw.efConstruction = cfg["efc"]
            train = np.ascontiguousarray(base[: min(n, 100_000)])
        else:
            nlist = nlist_for(n)
            quant = faiss.IndexFlatIP(dim)
            idx = faiss.IndexIVFScalarQuantizer(
                quant, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
            )
            rng = np.random.default_rng(1)
            train = np.ascontiguousarray(base[np.sort(rng.choice(n, min(n, 40 * nlist), replace=False))])
        idx.train(train)
        for s in range(0, n, 100_000):
            chunk = np.ascontiguousarray(base[s : s + 100_000])
            if cfg["kind"] == "faiss_ivf":
                idx.add_with_ids(chunk, np.arange(s, s + len(chunk), dtype=np.int64))
            else:
                idx.add(chunk)  # positions are labels here; the library keeps a position → id table
        faiss.write_index(idx, str(out / "index.faiss"))
        files.append(out / "index.faiss")
        # The exact-rescoring store: fp16 vectors in label order, memory-mapped at query time.
        store = np.lib.format.open_memmap(out / "vectors.f16", mode="w+", dtype=np.float16, shape=(n, dim))
        for s in range(0, n, 100_000):
            store[s : s + 100_000] = base[s : s + 100_000]
        store.flush()
        del store
        files.append(out / "vectors.f16")
    secs = time.perf_counter() - t0
    return {
        "build_s": round(secs, 1),
        "disk_mb": {f.name: round(f.stat().st_size / 2**20, 1) for f in files},
        "build_peak_rss_mb": round(rss()["VmHWM"], 1),
    }


def sweep_for(kind: str, n: int) -> list[int]:
    if kind == "hnswlib":
        return sorted({min(2048, max(256, n // 300)), 2048})
    if kind == "faiss_hnsw":
        return [128, 256, 512, 1024]
    nlist = nlist_for(n)  # the library probes max(32, nlist // 64) (vector_index.NPROBE_SHARE)
    return sorted({16, 32, 64, 128, nlist // 64, nlist // 16})


def query(name: str, out: Path, q_path: Path, gt_path: Path) -> dict:
    cfg = CONFIGS[name]
    qs = np.load(q_path)
    gt = np.load(gt_path)
    import faiss  # both imported before the memory baseline: library code is not index memory
    import hnswlib

    faiss.omp_set_num_threads(1)  # the app runs one query at a time
    before = rss()
    t0 = time.perf_counter()
    store = None
    if cfg["kind"] == "hnswlib":
        idx = hnswlib.Index(space="ip", dim=qs.shape[1])
        idx.load_index(str(out / "index.hnsw"))
        idx.set_num_threads(1)
        n = idx.get_current_count()
    else:
        idx = faiss.read_index(str(out / "index.faiss"))
        store = np.load(out / "vectors.f16", mmap_mode="r")
        n = idx.ntotal
    load_s = time.perf_counter() - t0
    results = {}
    for param in sweep_for(cfg["kind"], n):
        for rescore in [False, True] if store is not None else [False]:
            want = RESCORE if rescore else K
            if cfg["kind"] == "hnswlib":
                idx.set_ef(param)
            elif cfg["kind"] == "faiss_hnsw":
                idx.hnsw.efSearch = max(param, want)
            else:
                idx.nprobe = param
            times, hits = [], 0
            for i, q in enumerate(qs):
                q1 = q.reshape(1, -1)
                s = time.perf_counter()
                if cfg["kind"] == "hnswlib":
                    labels, _ = idx.knn_query(q1, k=K)
                    top = labels[0]
                else:
                    _, labels = idx.search(q1, want)
                    cand = labels[0][labels[0] >= 0]
                    if rescore:
                        order = np.argsort(-(store[np.sort(cand)].astype(np.float32) @ q))
                        top = np.sort(cand)[order[:K]]
                    else:
                        top = cand[:K]
                times.append(time.perf_counter() - s)
                hits += len(set(top.tolist()) & set(gt[i].tolist()))
            key = f"{'ef' if cfg['kind'] != 'faiss_ivf' else 'nprobe'}={param}" + (
                f"+rescore{RESCORE}" if rescore else ""
            )
            results[key] = {"recall_at_10": round(hits / (K * len(qs)), 4), **percentiles(times)}
    after = rss()
    return {
        "load_s": round(load_s, 2),
        "rss_growth_mb": round(after["VmRSS"] - before["VmRSS"], 1),
        "anon_growth_mb": round(after["RssAnon"] - before["RssAnon"], 1),
        "mapped_file_mb": round(after["RssFile"] - before["RssFile"], 1),
        "peak_rss_mb": round(after["VmHWM"], 1),
        "settings": results,
    }


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def worker(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if args.worker == "build":
        res = build(args.config, Path(args.base), out, args.threads)
    else:
        res = query(args.config, out, Path(args.q), Path(args.gt))
    print("RESULT " + json.dumps(res))


def run(*cmd: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, *cmd], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"worker failed: {cmd}\n{proc.stderr[-3000:]}")
    return json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))[7:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,300000,1000000")
    ap.add_argument("--dims", default="512")
    ap.add_argument("--data", choices=["clip", "isotropic"], default="clip")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--configs", default="hnswlib_f32_M24,faiss_ivf_sq8", help=f"of {','.join(CONFIGS)}")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument(
        "--force", action="store_true", help=f"run above load {MAX_LOAD} (recall/memory stay valid)"
    )
    ap.add_argument("--name", default="ann")
    ap.add_argument("--worker", choices=["build", "query"], help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--base", help=argparse.SUPPRESS)
    ap.add_argument("--q", help=argparse.SUPPRESS)
    ap.add_argument("--gt", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    # Waits for load ≤ 1.5 (up to 3 min), else exits 3; --force measures anyway (recall, memory stay valid).
    start_load = load1() if args.force else quiet_start()[0]
    result: dict = {
        "data": args.data,
        "queries": args.queries,
        "k": K,
        "rescore_candidates": RESCORE,
        "load_average_start": start_load,
        "runs": {},
    }
    for dim in [int(x) for x in args.dims.split(",")]:
        for n in [int(x) for x in args.sizes.split(",")]:
            base, qs, gt = dataset(args.data, n, dim, args.queries)
            row: dict = {}
            for name in args.configs.split(","):
                with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
                    b = run("--worker", "build", "--config", name, "--base", str(base), "--out", tmp,
                            "--threads", str(args.threads))  # fmt: skip
                    la = load1()
                    qr = run("--worker", "query", "--config", name, "--q", str(qs), "--gt", str(gt),
                             "--out", tmp)  # fmt: skip
                    row[name] = {**b, **qr, "load_average_at_query": la}
                    print(f"{dim}-d {n}: {name}: {json.dumps(row[name])}", flush=True)
            base_p50 = None
            for name, r in row.items():
                if name.startswith("hnswlib"):
                    base_p50 = min(s["p50_ms"] for s in r["settings"].values())
            if base_p50:
                for r in row.values():
                    for s in r["settings"].values():
                        s["p50_vs_hnswlib_best"] = round(s["p50_ms"] / base_p50, 2)
            result["runs"][f"{dim}d_{n}"] = row
            result["load_average_end"] = load1()
            save(args.name, result)  # after every size, so a long run keeps what it measured


if __name__ == "__main__":
    main()
