"""Cost per candidate of each visual-enhancement mode: off, second look (always), retrace.

Uses the "realistic" synthetic GGUF pair (Qwen2-0.5B-like text model, 24 layers, 32k vocab, f16 +
ViT-B/16 mmproj -> 196 image tokens; random weights), generated once under bench/.cache. Per mode,
the same photos are scored twice: ``cold`` (image encoded, KV snapshot written) and ``new_query``
(another query: embeddings and KV snapshots cached, the everyday case in search). Baseline in the same
run: ``off``. ``retrace-fired`` forces the edit on every candidate (threshold 0: the FFN edit always
happens at the first trigger layer) so the cost of the edit itself shows; ``retrace`` uses the paper's
settings (entropy 0.75, ratio 0.12). ``off_after_retrace`` scores with ``off`` again after the
retracing context exists: the eval callback lives only on that context, so ordinary scoring must not
slow down (overhead reported in percent).

    python bench/bench_ve_modes.py [--n 8] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE, peak_rss_mb, percentiles, quiet_start, save  # noqa: E402
from bench_rerank import Q1, Q2, photos  # noqa: E402

from retllm_desktop.config import default_threads  # noqa: E402
from retllm_desktop.devtools.synthetic_mllm import write_synthetic_mllm  # noqa: E402
from retllm_desktop.models.llm.answer import SecondLook  # noqa: E402
from retllm_desktop.models.llm.cache import EmbeddingCache  # noqa: E402
from retllm_desktop.models.llm.scorer import MllmScorer, find_mllm_model  # noqa: E402

MODES = {
    "off": "off",
    "second-look": "always",
    "retrace": SecondLook("retrace"),
    "retrace-fired": SecondLook("retrace", entropy_threshold=0.0),
}


def score_all(s: MllmScorer, pics: list[Path], query: str, ve) -> dict:  # noqa: ANN001
    per, fired = [], 0
    for p in pics:
        t = time.perf_counter()
        fs = s.score(p, text=query, candidate_key=p.name, ve=ve)
        per.append(time.perf_counter() - t)
        fired += int(fs.ve_used)
    return {**percentiles(per), "enhanced": fired}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8, help="photos per mode")
    ap.add_argument("--threads", type=int, default=default_threads())
    args = ap.parse_args(argv)
    quiet_start()
    models = CACHE / "models-realistic"
    write_synthetic_mllm(models, "realistic")
    model_dir = find_mllm_model(models, "synthetic-realistic")
    pics = photos(args.n)
    warm, pics = pics[-1], pics[: args.n]
    results: dict[str, dict] = {}
    for name, ve in MODES.items():
        with tempfile.TemporaryDirectory() as tmp:
            s = MllmScorer(
                model_dir,
                threads=args.threads,
                n_ctx=2048,
                cache=EmbeddingCache(Path(tmp) / "emb", 2 * 1024**3),
                state_disk_cache=EmbeddingCache(Path(tmp) / "kv", 2 * 1024**3),
            )
            s.score(warm, text="warm up", candidate_key="warm", ve=ve)  # load, graphs, head
            cold = score_all(s, pics, Q1, ve)
            new_q = score_all(s, pics, Q2, ve)
            results[name] = {"cold": cold, "new_query": new_q}
            if name == "retrace":
                again = score_all(s, pics, "a third query about a cat", "off")
                results["off_after_retrace"] = {"new_query": again}
            s.close()
        print(f"{name:>14}: cold {cold['mean_ms']:.0f} ms/cand, new query {new_q['mean_ms']:.0f} ms/cand")
    base = results["off"]["new_query"]["mean_ms"]
    summary = {
        name: round(r["new_query"]["mean_ms"] / base, 2) for name, r in results.items() if "new_query" in r
    }
    overhead = 100.0 * (results["off_after_retrace"]["new_query"]["mean_ms"] / base - 1.0)
    save(
        "ve_modes",
        {
            "model": "synthetic-realistic",
            "threads": args.threads,
            "photos": args.n,
            "modes": results,
            "new_query_cost_vs_off": summary,
            "off_overhead_after_retrace_context_pct": round(overhead, 1),
            "peak_rss_mb": peak_rss_mb(),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
