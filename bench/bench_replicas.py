"""Real-size cost of each preset's LLM check, on full-size random-weight replicas (issue 18).

Replicas (``python -m retllm_desktop.devtools.replicas --size full``: real architecture, shapes, tokenizer,
template and mmproj, text model quantised by llama.cpp's own quantiser as published: SmolVLM-500M Q8_0,
Qwen2.5-VL-3B / 7B Q4_K_M; mmproj Q8_0 / F16) are generated once under bench/.cache/replicas (not in CI).

Per model, in a fresh process per configuration (threads; quiet or with one core kept busy by a spinning
process, as while the app indexes; photo detail; flash attention), so peak RSS is that configuration's:

  layout         image chunks and tokens per 4:3 photo at each detail level (quick / standard / full)
  cold           per candidate, photo never seen: vision tower + image prefill + question
  prepare        the prepare pass per photo: vision tower only -> photos/hour, bytes per photo (fp16)
  prepared       per candidate, photo prepared, fresh process state (no KV snapshot): image prefill + question
  warm           per candidate, same photos, a new query (KV snapshot after the image: question only)
  rerank_k       k candidates end to end for each of the three, and the first verdict (first candidate)
  p_true         largest |P(True) prepared - P(True) cold| over the photos, fp16 and int8 rows
  peak_rss_mb    of the worker process

The 1-minute load average is recorded before and after every run; a run does not start above
``--max-load`` (it waits up to ``--wait`` seconds, then is recorded as refused).

    python bench/bench_replicas.py [--models smolvlm-500m,qwen2.5-vl-3b] [--k 10] [--threads 2]
        [--busy 0,1] [--details auto] [--flash 0,1] [--max-load 1.5] [--out replicas]
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE, peak_rss_mb, quiet_start, save  # noqa: E402

Q1 = "a dog running on the beach at sunset"
Q2 = "a red car parked in front of a blue house"
PRESETS = {"smolvlm-500m": "fast", "qwen2.5-vl-3b": "balanced", "qwen2.5-vl-7b": "best"}


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


def model_dir(name: str, size: str) -> Path:
    from retllm_desktop.devtools.replicas import write_replica

    t0 = time.perf_counter()
    d = write_replica(name, CACHE / "replicas", size)
    print(f"{name}: {d} ready in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return d


def layouts(d: Path, photo: Path) -> dict:
    from retllm_desktop.models.llm.images import DETAIL_LEVELS
    from retllm_desktop.models.llm.scorer import MllmScorer

    out = {}
    for detail in DETAIL_LEVELS:
        with MllmScorer(d, threads=2, detail=detail) as s:
            chunks, tokens = s.image_layout(photo)
        out[detail] = {"image_chunks": chunks, "image_tokens": tokens}
    return out


def _times(fn, items) -> list[float]:
    out = []
    for x in items:
        t = time.perf_counter()
        fn(x)
        out.append(time.perf_counter() - t)
    return out


def worker(
    model: str,
    size: str,
    threads: int,
    k: int,
    detail: str,
    flash: bool | None,
    single_view: bool | None = None,
) -> dict:
    from retllm_desktop.models.llm.scorer import MllmScorer

    d = model_dir(model, size)
    cands = photos(k + 1)
    warmup, cands = cands[-1], cands[:k]
    keys = [f"bench-{p.stem}" for p in cands]
    out: dict = {"model": model, "size": size, "threads": threads, "detail": detail, "flash_attn": flash}
    opts = {"single_view": single_view}  # None: the app's rule (one view of a photo that fits one tile)
    with tempfile.TemporaryDirectory() as tmp:
        prep_dir = Path(tmp) / "prepared"
        t0 = time.perf_counter()
        with MllmScorer(
            d, threads=threads, detail=detail, flash_attn=flash, prepared_dir=prep_dir, **opts
        ) as s:
            s.load()
            out["load_s"] = round(time.perf_counter() - t0, 2)
            out["detail_used"] = s.detail  # what "auto" became for this projector
            out["single_view"] = s.single_view
            out["flash_attn"] = s.session.flash_attn  # None asked: the model entry's
            s.score(warmup, text=Q1, ve="off", candidate_key="warmup")  # first graph allocation, not counted
            cold_p: list[float] = []
            cold = _times(lambda i: cold_p.append(s.score(cands[i], text=Q1, ve="off", candidate_key=keys[i]).p_true), range(k))  # fmt: skip
            warm = _times(lambda i: s.score(cands[i], text=Q2, ve="off", candidate_key=keys[i]), range(k))
            sizes: list[int] = []
            prep = _times(lambda i: sizes.append(s.prepare_photo(cands[i], keys[i])), range(k))
            out["image_tokens"] = s.image_layout(cands[0])[1]
        diffs = {}
        for codec in ("f16", "i8"):
            if codec == "i8":  # the same photos stored as int8 rows: re-encode from the fp16 store's rows
                _recode(prep_dir, "i8")
            with MllmScorer(d, threads=threads, detail=detail, flash_attn=flash, prepared_dir=prep_dir,
                            prepared_codec=codec, **opts) as s2:  # fmt: skip
                s2.load()
                s2.score(warmup, text=Q2, ve="off", candidate_key="warmup")
                enc0 = s2.stats["encode"]
                got: list[float] = []
                t = _times(lambda i, got=got: got.append(s2.score(cands[i], text=Q1, ve="off", candidate_key=keys[i]).p_true), range(k))  # fmt: skip
                assert s2.stats["encode"] == enc0, "prepared photos went through the vision tower"
            diffs[codec] = round(float(np.max(np.abs(np.array(got) - np.array(cold_p)))), 5)
            if codec == "f16":
                prepared = t
    out.update(
        cold_s=[round(x, 2) for x in cold], cold_mean_s=round(float(np.mean(cold)), 2),
        prepared_s=[round(x, 2) for x in prepared], prepared_mean_s=round(float(np.mean(prepared)), 2),
        warm_s=[round(x, 3) for x in warm], warm_mean_s=round(float(np.mean(warm)), 3),
        prepare_s=[round(x, 2) for x in prep], prepare_photos_per_hour=round(3600 / float(np.mean(prep))),
        prepared_bytes_per_photo=int(np.mean(sizes)),
        **{f"rerank{k}_cold_s": round(float(np.sum(cold)), 1), f"rerank{k}_prepared_s": round(float(np.sum(prepared)), 1),
           f"rerank{k}_warm_s": round(float(np.sum(warm)), 2)},
        first_verdict_prepared_s=round(prepared[0], 2),
        p_true_max_abs_diff_prepared=diffs, p_true_cold=[round(x, 5) for x in cold_p],
        peak_rss_mb=peak_rss_mb(),
    )  # fmt: skip
    return out


def _recode(prep_dir: Path, codec: str) -> None:
    import struct
    import zlib

    from retllm_desktop.models.llm.prepared import MAGIC, decode_rows, encode_rows

    for p in prep_dir.glob("*/*/*.pemb"):
        blob = p.read_bytes()
        (hlen,) = struct.unpack_from("<I", blob, len(MAGIC))
        off = len(MAGIC) + 4
        head = json.loads(blob[off : off + hlen])
        rows = decode_rows(blob[off + hlen :], head["rows"], head["dim"], head["codec"])
        payload = encode_rows(rows, codec)
        head.update(codec=codec, crc32=zlib.crc32(payload))
        h = json.dumps(head).encode()
        p.write_bytes(MAGIC + struct.pack("<I", len(h)) + h + payload)


def wait_quiet(max_load: float, wait_s: float) -> tuple[bool, float]:
    t0 = time.time()
    while True:
        load = os.getloadavg()[0]
        if load <= max_load:
            return True, load
        if time.time() - t0 > wait_s:
            return False, load
        time.sleep(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="smolvlm-500m,qwen2.5-vl-3b")
    ap.add_argument("--size", default="full", choices=["tiny", "full"])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", default="2")
    ap.add_argument("--busy", default="0,1", help="0 = quiet, 1 = one core kept busy")
    ap.add_argument("--details", default="auto", help="photo detail(s); auto = the app's default per model")
    ap.add_argument("--flash", default="", help="0,1 = flash attention off and on; empty: the model entry's")
    ap.add_argument(
        "--single-view", default="", help="0,1 = mtmd's tile + overview vs one view; empty: the app's rule"
    )
    ap.add_argument("--max-load", type=float, default=1.5)
    ap.add_argument("--wait", type=float, default=120.0, help="seconds to wait for the load to drop")
    ap.add_argument("--out", default="replicas")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        cfg = json.loads(args.worker)
        if cfg.pop("layouts", False):
            res = layouts(model_dir(cfg["model"], cfg["size"]), photos(1)[0])
        else:
            res = worker(**cfg)
        print("RESULT " + json.dumps(res), flush=True)
        return 0

    quiet_start(args.max_load, args.wait)  # the parent only: a worker may run beside the busy core on purpose
    runs, layout = [], {}
    for name in args.models.split(","):
        model_dir(name, args.size)
        layout[name] = _spawn({"model": name, "size": args.size, "layouts": True})
        for busy in (int(b) for b in args.busy.split(",")):
            for threads in (int(t) for t in args.threads.split(",")):
                for detail in args.details.split(","):
                    for flash, single in _variants(args.flash, args.single_view):
                        ok, load0 = wait_quiet(args.max_load, args.wait)
                        cfg = {"model": name, "size": args.size, "threads": threads, "k": args.k,
                               "detail": detail, "flash": flash, "single_view": single}  # fmt: skip
                        if not ok:
                            runs.append({**cfg, "refused": f"load average {load0:.2f} > {args.max_load}"})
                            print(json.dumps(runs[-1]), flush=True)
                            continue
                        spinner = (
                            subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
                        )
                        try:
                            res = _spawn(cfg)
                        finally:
                            if spinner is not None:
                                spinner.kill()
                                spinner.wait()
                        res.update(busy_core=bool(busy), preset=PRESETS.get(name),
                                   load_average_1min=[round(load0, 2), round(os.getloadavg()[0], 2)])  # fmt: skip
                        print(json.dumps(res), flush=True)
                        runs.append(res)
    save(args.out, {"k": args.k, "size": args.size, "max_load": args.max_load, "layouts": layout, "runs": runs,
                    "note": "random weights at real size; 2-core machine; see load_average_1min per run"})  # fmt: skip
    return 0


def _variants(flash: str, single: str) -> list[tuple[bool | None, bool | None]]:
    """(flash attention, single view) per run; None = the app's own choice for the model."""
    fl = [bool(int(f)) for f in flash.split(",")] if flash else [None]
    sv = [bool(int(v)) for v in single.split(",")] if single else [None]
    return [(f, v) for f in fl for v in sv]


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
