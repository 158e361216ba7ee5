"""Real-size cost of the `fast` and `balanced` presets' LLMs, on full-size random-weight replicas.

Replicas (``python -m retllm_desktop.devtools.replicas --size full``: real architecture, shapes, tokenizer,
template and mmproj, text model quantised by llama.cpp's own quantiser as published: SmolVLM-500M Q8_0,
Qwen2.5-VL-3B Q4_K_M; mmproj Q8_0) are generated once under bench/.cache/replicas (not in CI).

Per model and configuration (threads 1 or 2; quiet, or with one core kept busy by a spinning process, as
while the app indexes), in a fresh process each (so peak RSS is that configuration's):

  image_tokens   image tokens per photo (4:3 photo downscaled to the registry's image_max_side)
  cold           per candidate, photo never seen (vision encoder + image tokens + question)
  warm           per candidate, same photos, a new query (KV snapshot after the image: question only)
  rerank         k candidates end to end, cold and warm (k = --k, 10 by default)
  peak_rss_mb    of the worker process

    python bench/bench_replicas.py [--models smolvlm-500m,qwen2.5-vl-3b] [--k 10] [--threads 1,2] [--busy 0,1]
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
from _common import CACHE, peak_rss_mb, save  # noqa: E402

Q1 = "a dog running on the beach at sunset"
Q2 = "a red car parked in front of a blue house"
PRESETS = {"smolvlm-500m": "fast", "qwen2.5-vl-3b": "balanced"}


def photos(n: int) -> list[Path]:
    """4:3 camera-like JPEGs (2048x1536), larger than every image_max_side."""
    from PIL import Image

    d = CACHE / "photos-replicas"
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = d / f"photo_{i:03d}.jpg"
        if not p.exists():
            rng = np.random.default_rng(100 + i)
            yy, xx = np.mgrid[0:1536, 0:2048].astype(np.float32)
            base = np.stack(
                [np.sin(xx / rng.uniform(40, 400) + c) * np.cos(yy / rng.uniform(40, 400)) for c in range(3)],
                -1,
            )
            img = (base * 90 + 128 + rng.normal(0, 12, base.shape)).clip(0, 255).astype(np.uint8)
            Image.fromarray(img).save(p, quality=90)
        out.append(p)
    return out


def model_dir(name: str) -> Path:
    from retllm_desktop.devtools.replicas import write_replica

    t0 = time.perf_counter()
    d = write_replica(name, CACHE / "replicas", "full")
    print(f"{name}: {d} ready in {time.perf_counter() - t0:.0f} s", flush=True)
    return d


def image_tokens(d: Path, photo: Path, threads: int) -> dict:
    """What mtmd makes of one photo at the registry's image_max_side: image chunks and tokens."""
    import ctypes

    import llama_cpp
    from llama_cpp import mtmd_cpp
    from PIL import Image

    meta = json.loads((d / "mllm.json").read_text())
    side = int(meta.get("image_max_side") or 768)
    img = Image.open(photo).convert("RGB")
    img.thumbnail((side, side), Image.Resampling.BICUBIC)
    llm = llama_cpp.Llama(
        str(d / "model.gguf"), n_ctx=512, n_threads=threads, verbose=False, vocab_only=False
    )
    params = mtmd_cpp.mtmd_context_params_default()
    params.use_gpu, params.print_timings, params.n_threads, params.warmup = False, False, threads, False
    ctx = mtmd_cpp.mtmd_init_from_file(str(d / "mmproj.gguf").encode(), llm.model, params)
    try:
        data = img.tobytes()
        bmp = mtmd_cpp.mtmd_bitmap_init(
            img.width, img.height, (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        )
        text = mtmd_cpp.mtmd_input_text()
        raw = mtmd_cpp.mtmd_default_marker()
        text.text, text.text_len, text.add_special, text.parse_special = raw, len(raw), False, True
        chunks = mtmd_cpp.mtmd_input_chunks_init()
        arr = (mtmd_cpp.mtmd_bitmap_p_ctypes * 1)(bmp)
        if mtmd_cpp.mtmd_tokenize(ctx, chunks, ctypes.byref(text), arr, 1) != 0:
            raise RuntimeError("mtmd_tokenize failed")
        n_img = n_tok = n_text = 0
        for i in range(mtmd_cpp.mtmd_input_chunks_size(chunks)):
            c = mtmd_cpp.mtmd_input_chunks_get(chunks, i)
            if mtmd_cpp.mtmd_input_chunk_get_type(c) == mtmd_cpp.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                n_img += 1
                n_tok += int(mtmd_cpp.mtmd_input_chunk_get_n_tokens(c))
            else:
                n_text += int(mtmd_cpp.mtmd_input_chunk_get_n_tokens(c))
        mtmd_cpp.mtmd_input_chunks_free(chunks)
        mtmd_cpp.mtmd_bitmap_free(bmp)
        return {"image_max_side": side, "bitmap": [img.width, img.height], "image_chunks": n_img,
                "image_tokens": n_tok, "wrapper_text_tokens": n_text}  # fmt: skip
    finally:
        mtmd_cpp.mtmd_free(ctx)
        llm.close()


def worker(model: str, threads: int, k: int, warmup: bool = True) -> dict:
    from retllm_desktop.models.llm.scorer import MllmScorer

    d = model_dir(model)
    cands = photos(k + 1)
    out: dict = {"model": model, "threads": threads}
    t0 = time.perf_counter()
    with MllmScorer(d, threads=threads, n_ctx=4096) as s:
        s.load()
        out["load_s"] = round(time.perf_counter() - t0, 2)
        try:
            if warmup:
                s.score(cands[-1], text=Q1, ve="off")  # warm-up (first graph allocation), not counted
            cold, warm = [], []
            for p in cands[:k]:
                t = time.perf_counter()
                s.score(p, text=Q1, ve="off")
                cold.append(time.perf_counter() - t)
            for p in cands[:k]:
                t = time.perf_counter()
                s.score(p, text=Q2, ve="off")
                warm.append(time.perf_counter() - t)
            out["engine"] = "MllmScorer"
        except Exception as e:  # noqa: BLE001 - report what a user would hit, then time the model without it
            out["scorer_error"] = f"{type(e).__name__}: {e}"
            cold, warm = _handler_cold(d, cands, threads, k, warmup), []
            out["engine"] = "llama-cpp-python MTMDChatHandler (MllmScorer fails on this model)"
    out["cold_s"] = [round(x, 2) for x in cold]
    out["cold_mean_s"] = round(float(np.mean(cold)), 2)
    if warm:
        out["warm_s"] = [round(x, 3) for x in warm]
        out["warm_mean_s"] = round(float(np.mean(warm)), 3)
        out[f"rerank{k}_warm_s"] = round(float(np.sum(warm)), 2)
    out[f"rerank{k}_cold_s"] = round(float(np.sum(cold)), 2)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def _handler_cold(d: Path, cands: list[Path], threads: int, k: int, warmup: bool) -> list[float]:
    """Cold cost per candidate through llama-cpp-python's own pipeline (same prompt, one forward pass)."""
    import base64

    import llama_cpp
    from llama_cpp.llama_chat_format import MTMDChatHandler
    from PIL import Image

    side = int(json.loads((d / "mllm.json").read_text()).get("image_max_side") or 768)
    handler = MTMDChatHandler(clip_model_path=str(d / "mmproj.gguf"), verbose=False, use_gpu=False)
    llm = llama_cpp.Llama(
        str(d / "model.gguf"), n_ctx=4096, n_threads=threads, verbose=False, chat_handler=handler
    )
    times = []
    try:
        for i, p in enumerate(([cands[-1]] if warmup else []) + cands[:k], start=0 if warmup else 1):
            img = Image.open(p).convert("RGB")
            img.thumbnail((side, side), Image.Resampling.BICUBIC)
            small = CACHE / "photos-replicas" / f"small-{side}-{p.stem}.png"
            img.save(small)
            uri = "data:image/png;base64," + base64.b64encode(small.read_bytes()).decode()
            msg = [{"type": "image_url", "image_url": {"url": uri}},
                   {"type": "text", "text": f"Does the image match the caption: {Q1}? Please directly output True or False"}]  # fmt: skip
            llm.reset()
            t = time.perf_counter()
            llm.create_chat_completion(
                messages=[{"role": "user", "content": msg}], max_tokens=1, temperature=0.0
            )
            if i:  # the first is the warm-up
                times.append(time.perf_counter() - t)
    finally:
        llm.close()
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="smolvlm-500m,qwen2.5-vl-3b")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--busy", default="0,1", help="0 = quiet, 1 = one core kept busy")
    ap.add_argument(
        "--warmup", type=int, default=1, help="1 = one uncounted candidate first (0: reduced runs)"
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        cfg = json.loads(args.worker)
        res = image_tokens(model_dir(cfg["model"]), photos(1)[0], 2) if cfg.get("tokens") else worker(**cfg)
        print("RESULT " + json.dumps(res), flush=True)
        return 0

    runs = []
    for name in args.models.split(","):
        model_dir(name)
        tok = _spawn({"model": name, "tokens": True})
        for busy in (int(b) for b in args.busy.split(",")):
            for threads in (int(t) for t in args.threads.split(",")):
                spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
                try:
                    load0 = os.getloadavg()[0]
                    res = _spawn(
                        {"model": name, "threads": threads, "k": args.k, "warmup": bool(args.warmup)}
                    )
                    res["load_average_1min"] = [round(load0, 1), round(os.getloadavg()[0], 1)]
                finally:
                    if spinner is not None:
                        spinner.kill()
                        spinner.wait()
                res.update(busy_core=bool(busy), preset=PRESETS.get(name), **tok)
                print(json.dumps(res), flush=True)
                runs.append(res)
    best = {}
    for name in args.models.split(","):
        mine = [r for r in runs if r["model"] == name]
        # the thread policy that wins in both conditions: lowest worst-case cold mean
        by_threads: dict[int, float] = {}
        for r in mine:
            by_threads[r["threads"]] = max(by_threads.get(r["threads"], 0.0), r["cold_mean_s"])
        best[name] = min(by_threads, key=by_threads.get) if by_threads else None
    save("replicas", {"k": args.k, "warmup": bool(args.warmup), "runs": runs, "best_threads_worst_case": best,
                      "note": "random weights at real size; timings on a 2-core machine shared with other jobs"})  # fmt: skip
    return 0


def _spawn(cfg: dict) -> dict:
    p = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(cfg)], capture_output=True, text=True, check=False
    )
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"worker {cfg} failed:\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")


if __name__ == "__main__":
    raise SystemExit(main())
