"""The text pass (OCR) and hybrid ranking on a seed-fixed set of real photographs with rendered words.

Backgrounds are the real photographs that ship in scikit-image's wheel (``skimage/data``), randomly
cropped, scaled and colour-jittered to 1280x960; half the photos get words rendered in real fonts
(Debian's fonts-dejavu and fonts-liberation) at 24-72 px, rotated, perspective-warped, low-contrast or
blurred, as signs, labels and receipts; the other half stay without text. Queries are each photo's key
word (or quoted two-word phrase), plus non-text captions of the backgrounds.

Reports Recall@1/5/10 of CLIP-only, text-only and hybrid ranking on the text queries, hybrid vs CLIP-only
on the non-text queries, the text pass's ms per photo with and without text, its throughput, the
catalog's growth per photo, and the CLIP pass's speed with and without the text pass in the same run.
CLIP is the random-weight ViT-B/32-size model (no real weights here), so CLIP-only recall is chance level.

    python bench/bench_text.py [--photos 300] [--det-side 640]
"""

from __future__ import annotations

import argparse
import gzip
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE, machine, peak_rss_mb, percentiles, quiet_start, save, synthetic_models  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter, ImageFont  # noqa: E402

from retllm_desktop.library import Library  # noqa: E402
from retllm_desktop.search import Query  # noqa: E402
from retllm_desktop.text_match import STOPWORDS, parse_text_query  # noqa: E402

BACKGROUNDS = {  # skimage/data file → a caption a person might search for
    "astronaut.png": "an astronaut in a space suit",
    "chelsea.png": "a cat",
    "coffee.png": "a cup of coffee",
    "rocket.jpg": "a rocket on the launch pad",
    "motorcycle_left.png": "a motorcycle",
    "hubble_deep_field.jpg": "galaxies in deep space",
    "retina.jpg": "an eye retina scan",
    "camera.png": "a man with a camera",
    "moon.png": "the surface of the moon",
    "brick.png": "a brick wall",
    "grass.png": "a lawn of grass",
    "gravel.png": "gravel stones",
    "coins.png": "old coins",
    "ihc.png": "stained tissue under a microscope",
    "cell.png": "a cell under a microscope",
    "clock_motion.png": "a clock",
    "color.png": "a colour chart",
    "horse.png": "a horse silhouette",
}
FONT_DIRS = ["/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype/liberation"]
W, H = 1280, 960


def fonts() -> list[str]:
    found = sorted(str(p) for d in FONT_DIRS for p in Path(d).glob("*.ttf"))
    found = [f for f in found if "ExtraLight" not in f]
    if not found:
        sys.exit("no fonts: apt-get install -y fonts-dejavu fonts-liberation")
    return found


def vocabulary(n: int, rng: random.Random) -> list[str]:
    """Real English words (whole-word tokens of CLIP's BPE vocabulary), 5-10 letters, seeded sample."""
    path = Path(__file__).resolve().parent.parent / "resources" / "bpe_simple_vocab_16e6.txt.gz"
    seen: dict[str, None] = {}
    for line in gzip.open(path, "rt", encoding="utf-8").read().split("\n")[1:30000]:
        w = line.replace(" ", "")
        if w.endswith("</w>"):
            w = w[:-4]
            bad = w[:3] in ("ati", "iti", "ing", "tin", "ent", "ens", "ers", "ies", "ous", "ish", "ted")
            if w.isascii() and w.isalpha() and 5 <= len(w) <= 10 and w not in STOPWORDS and not bad:
                seen[w] = None
    words = list(seen)[150:6000]
    rng.shuffle(words)
    return words[:n]


def skimage_data() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def background(rng: random.Random, sources: dict[str, Image.Image]) -> tuple[str, Image.Image]:
    name = rng.choice(sorted(sources))
    src = sources[name]
    portrait = rng.random() < 0.2
    tw, th = (H, W) if portrait else (W, H)
    scale = rng.uniform(0.6, 1.0)
    cw = int(src.width * scale)
    ch = min(src.height, int(cw * th / tw))
    cw = int(ch * tw / th)
    x0, y0 = rng.randint(0, max(0, src.width - cw)), rng.randint(0, max(0, src.height - ch))
    img = src.crop((x0, y0, x0 + cw, y0 + ch)).resize((tw, th), Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    factor = rng.uniform(0.75, 1.25)
    img = img.point(lambda v: max(0, min(255, int(v * factor))))
    return name, img


def render_text(
    img: Image.Image, lines: list[str], rng: random.Random, font_files: list[str], size: int
) -> str:
    """Words on the photo as a sign, a label or a receipt; returns the style used."""
    style = rng.choice(["sign", "label", "receipt"])
    font = ImageFont.truetype(rng.choice(font_files), size)
    pad = size // 2
    probe = ImageDraw.Draw(img)
    boxes = [probe.textbbox((0, 0), t, font=font) for t in lines]
    bw = max(b[2] - b[0] for b in boxes) + 2 * pad
    lh = int(size * 1.35)
    bh = lh * len(lines) + 2 * pad
    layer = Image.new("RGBA", (bw, bh), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    low_contrast = rng.random() < 0.2
    if style == "receipt":
        paper = (245, 243, 235)
        ink = (150, 150, 150) if low_contrast else (30, 30, 35)
        d.rectangle((0, 0, bw, bh), fill=(*paper, 255))
    elif style == "sign":
        board = tuple(rng.randrange(256) for _ in range(3))
        light = sum(board) > 380
        gap = 70 if low_contrast else 200
        ink = tuple(max(0, c - gap) for c in board) if light else tuple(min(255, c + gap) for c in board)
        d.rounded_rectangle((0, 0, bw, bh), radius=pad // 2, fill=(*board, 255))
    else:  # a label straight on the photo: light or dark text with a thin outline
        ink = (255, 255, 255) if rng.random() < 0.5 else (20, 20, 20)
    for i, t in enumerate(lines):
        kw = {}
        if style == "label":
            kw = {"stroke_width": max(1, size // 20), "stroke_fill": tuple(255 - c for c in ink)}
        d.text((pad, pad + i * lh), t, font=font, fill=(*ink, 255), **kw)
    angle = 0.0 if rng.random() < 0.3 else rng.uniform(-15, 15)
    layer = layer.rotate(angle, expand=True, resample=Image.Resampling.BICUBIC)
    if rng.random() < 0.4:  # mild perspective: one side farther away
        lw, lh2 = layer.size
        k = rng.uniform(0.03, 0.12) * lh2
        coeffs = _perspective_coeffs(
            [(0, 0), (lw, 0), (lw, lh2), (0, lh2)], [(0, -k), (lw, k), (lw, lh2 - k), (0, lh2 + k)]
        )
        layer = layer.transform(layer.size, Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BICUBIC)
    if layer.width >= img.width or layer.height >= img.height:
        layer.thumbnail((img.width - 20, img.height - 20))
    x = rng.randint(10, img.width - layer.width - 10)
    y = rng.randint(10, img.height - layer.height - 10)
    img.paste(layer, (x, y), layer)
    return style


def _perspective_coeffs(src, dst):
    import numpy as np

    rows = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    a = np.array(rows, float)
    b = np.array([c for p in src for c in p], float)
    return np.linalg.solve(a, b).tolist()


def make_set(folder: Path, n_text: int, n_plain: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    data = skimage_data()
    sources = {k: Image.open(data / k).convert("RGB") for k in BACKGROUNDS if (data / k).exists()}
    font_files = fonts()
    vocab = vocabulary(n_text * 4 + 50, rng)
    keys, fillers = vocab[:n_text], vocab[n_text:]
    photos = []
    for i in range(n_text + n_plain):
        name, img = background(rng, sources)
        entry = {"path": str(folder / f"photo_{i:04d}.jpg"), "background": name, "key": None}
        if i < n_text:
            size = rng.choice([24, 28, 32, 40, 48, 56, 72])
            key = keys[i]
            if rng.random() < 0.25:  # a two-word phrase: the key and a number, searched as "key 42"
                key = f"{key} {rng.randint(2, 99)}"
            lines = [key.upper() if rng.random() < 0.4 else key.capitalize()]
            for _ in range(rng.randint(0, 3)):
                lines.insert(rng.randint(0, len(lines)), " ".join(rng.sample(fillers, rng.randint(1, 2))))
            entry.update(key=key, size=size, style=render_text(img, lines, rng, font_files, size))
        if rng.random() < 0.2:
            img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.2)))
        photos.append(entry)
        img.save(entry["path"], quality=90)
    return {"photos": photos}


class TimedReader:
    """Wraps the OCR model to time every photo of the real text pass."""

    def __init__(self, model):
        self.model, self.name, self.samples, self.cpu = model, model.name, [], []

    def bundled_check(self) -> None:
        self.model.bundled_check()

    def close(self) -> None:
        self.model.close()

    def read(self, image):
        t, c = time.perf_counter(), time.process_time()
        result = self.model.read(image)
        self.samples.append(time.perf_counter() - t)
        self.cpu.append(time.process_time() - c)  # all threads: the work, whatever else runs on the machine
        return result


def recall(ranked: list[list[str]], relevant: list[set[str]]) -> dict[str, float]:
    out = {}
    for k in (1, 5, 10):
        hits = sum(bool(set(r[:k]) & rel) for r, rel in zip(ranked, relevant, strict=True))
        out[f"R@{k}"] = round(hits / max(1, len(ranked)), 4)
    return out


def db_bytes(path: Path) -> int:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    n = conn.execute("PRAGMA page_count").fetchone()[0] * conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    return n


def run(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-text-"))
    photos_dir = CACHE / f"text-photos-{args.photos}"
    manifest_path = photos_dir / "manifest.json"
    import json

    if not manifest_path.exists():
        shutil.rmtree(photos_dir, ignore_errors=True)
        photos_dir.mkdir(parents=True)
        t = time.perf_counter()
        manifest = make_set(photos_dir, args.photos, args.photos, seed=0)
        manifest_path.write_text(json.dumps(manifest))
        print(f"generated {2 * args.photos} photos in {time.perf_counter() - t:.0f}s")
    manifest = json.loads(manifest_path.read_text())
    photos = manifest["photos"]
    models = synthetic_models("realistic")
    threads = os.cpu_count() or 2
    try:
        # 1. The CLIP pass alone (text pass off, as before this feature), on a fresh library.
        with Library(work / "lib-clip", models_dir=models, threads=threads) as lib:
            lib.clip  # noqa: B018 - load outside the timing
            t = time.perf_counter()
            lib.index_roots([str(photos_dir)], text=False)
            clip_only_s = time.perf_counter() - t
        before = db_bytes(work / "lib-clip" / "catalog.db")
        # 2. A full index (CLIP pass, then the text pass) on another fresh library; stages from progress.
        lib = Library(work / "lib", models_dir=models, threads=threads)
        lib.clip  # noqa: B018
        lib._ocr = TimedReader(_ocr(args, threads))
        marks: dict[str, float] = {}
        order: list[str] = []

        def progress(stage: str, done: int, total: int) -> None:
            if stage == "reading text" and stage not in marks:
                order.extend(p for _, p in lib.catalog.text_pending())  # the pass's order, nothing read yet
            marks.setdefault(stage, time.perf_counter())

        t0 = time.perf_counter()
        summary = lib.index_roots([str(photos_dir)], progress=progress)
        t_end = time.perf_counter()
        ts = summary.text
        clip_with_s = marks["reading text"] - t0
        text_s = t_end - marks["reading text"]
        after = db_bytes(lib.path / "catalog.db")
        n = len(photos)
        truth = {p["path"]: p for p in photos}
        samples, cpu = lib._ocr.samples, lib._ocr.cpu
        with_text = [s_ for path, s_ in zip(order, samples, strict=False) if truth[path]["key"]]
        without = [s_ for path, s_ in zip(order, samples, strict=False) if not truth[path]["key"]]
        cpu_with = [s_ for path, s_ in zip(order, cpu, strict=False) if truth[path]["key"]]
        cpu_without = [s_ for path, s_ in zip(order, cpu, strict=False) if not truth[path]["key"]]
        result = {
            "machine": machine(),
            "photos": n,
            "photo_size": [W, H],
            "det_side": args.det_side,
            "clip_pass": {
                "photos_per_s_text_pass_off": round(n / clip_only_s, 2),
                "photos_per_s_text_pass_on": round(n / clip_with_s, 2),
                "speed_ratio_on_vs_off": round(clip_only_s / clip_with_s, 3),
            },
            "text_pass": {
                "seconds": round(text_s, 2),
                "photos_per_s": round(n / text_s, 2),
                "read_with_text": percentiles(with_text),
                "read_without_text": percentiles(without),
                "cpu_with_text": percentiles(cpu_with),
                "cpu_without_text": percentiles(cpu_without),
                "threads": threads,
                "photos_found_text": ts["with_text"],
                "failed": ts["failed"],
            },
            "index_growth": {
                "catalog_bytes_before": before,
                "catalog_bytes_after": after,
                "bytes_per_photo": round((after - before) / n, 1),
            },
        }
        result["text_queries"] = evaluate_text(lib, photos)
        result["non_text_queries"] = evaluate_non_text(lib, photos)
        result["peak_rss_mb"] = peak_rss_mb()
        result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        lib.close()
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _ocr(args: argparse.Namespace, threads: int):
    from retllm_desktop.models.ocr import OcrModel

    return OcrModel(threads=threads, det_side=args.det_side)


def _search(lib: Library, query: Query) -> list[str]:
    return [r.path for r in lib.search_coarse(query, top=10).results]


def evaluate_text(lib: Library, photos: list[dict]) -> dict:
    """Recall of each text query's photo, overall and by rendered size, for the three rankings."""
    rows = []
    for p in photos:
        if not p["key"]:
            continue
        q = f'"{p["key"]}"' if " " in p["key"] else p["key"]
        tq = parse_text_query(q)
        hits = lib.catalog.search_text(tq.fts(), tq.substrings(), limit=50)
        by_cov = sorted(((-tq.coverage(text), bm25, h) for h, bm25, text in hits))
        hashes = [h for _, _, h in by_cov[:10]]
        copies = lib.catalog.photos_by_hashes(hashes)
        text_only = [copies[h][0].path for h in hashes if h in copies]
        rows.append(
            {
                "size": p["size"],
                "style": p["style"],
                "phrase": " " in p["key"],
                "relevant": {p["path"]},
                "clip": _search(lib, Query(q, use_text=False)),
                "text": text_only,
                "hybrid": _search(lib, Query(q)),
            }
        )

    def summary(sel: list[dict]) -> dict:
        rel = [r["relevant"] for r in sel]
        return {
            "queries": len(sel),
            **{m: recall([r[m] for r in sel], rel) for m in ("clip", "text", "hybrid")},
        }

    out = {"all": summary(rows)}
    for lo, hi in ((24, 31), (32, 47), (48, 72)):
        out[f"{lo}-{hi}px"] = summary([r for r in rows if lo <= r["size"] <= hi])
    for style in ("sign", "label", "receipt"):
        out[style] = summary([r for r in rows if r["style"] == style])
    out["phrases"] = summary([r for r in rows if r["phrase"]])
    return out


def evaluate_non_text(lib: Library, photos: list[dict]) -> dict:
    """Captions of the backgrounds: hybrid must not rank worse than CLIP alone."""
    clip_rank, hybrid_rank, rel, changed = [], [], [], 0
    for name, caption in BACKGROUNDS.items():
        relevant = {p["path"] for p in photos if p["background"] == name}
        if not relevant:
            continue
        a, b = _search(lib, Query(caption, use_text=False)), _search(lib, Query(caption))
        clip_rank.append(a)
        hybrid_rank.append(b)
        rel.append(relevant)
        changed += a != b
    return {
        "queries": len(rel),
        "clip": recall(clip_rank, rel),
        "hybrid": recall(hybrid_rank, rel),
        "top10_changed": changed,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=300, help="photos with text (as many again without)")
    ap.add_argument("--det-side", type=int, default=640, help="longer side the text detector sees")
    args = ap.parse_args()
    quiet_start()
    result = run(args)
    path = save("text", result)
    tq, nt, tp = result["text_queries"], result["non_text_queries"], result["text_pass"]
    print(
        f"text queries (n={tq['all']['queries']}): "
        + "  ".join(f"{m} {tq['all'][m]}" for m in ("clip", "text", "hybrid"))
    )
    for key in ("24-31px", "32-47px", "48-72px", "sign", "label", "receipt", "phrases"):
        print(f"  {key:>8}: n={tq[key]['queries']:3d} hybrid {tq[key]['hybrid']} text {tq[key]['text']}")
    print(
        f"non-text queries (n={nt['queries']}): clip {nt['clip']} hybrid {nt['hybrid']} changed {nt['top10_changed']}"
    )
    print(
        f"text pass: {tp['photos_per_s']} photos/s; read with text p50 {tp['read_with_text']['p50_ms']} ms, "
        f"without text p50 {tp['read_without_text']['p50_ms']} ms (mean {tp['read_without_text']['mean_ms']}); "
        f"CPU time p50 {tp['cpu_with_text']['p50_ms']} / {tp['cpu_without_text']['p50_ms']} ms"
    )
    print(
        f"index growth {result['index_growth']['bytes_per_photo']} bytes/photo; CLIP pass {result['clip_pass']}"
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
