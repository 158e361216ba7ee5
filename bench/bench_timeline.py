"""The timeline (no query: the library newest first) at 1k and 100k photos: listing, building, scrolling.

    QT_QPA_PLATFORM=offscreen python bench/bench_timeline.py [--sizes 1000,100000]

A real catalog is seeded with N photo rows (capture times 30 min apart) pointing at 400 real small JPEGs (hard links),
so thumbnails are really decoded when shown. Measured per size, in one run: ``Library.timeline()`` (the
catalog query, on a worker in the app), building the model (UI thread), and scrolling the real view
offscreen, once Qt has laid all rows out (timed: until then the first rows show but the scroll range is short) —
60 jumps of one screen and 20 random jumps, each painted (``viewport().grab()``) — as frame
times; plus how many catalog pages and thumbnails were asked for (on demand: a few screens, not N). The
1k library is the baseline: the ratios say whether 100k scrolls like 1k.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from bench._common import peak_rss_mb, percentiles, quiet_start, save  # noqa: E402
from retllm_desktop.catalog import Photo  # noqa: E402
from retllm_desktop.library import Library  # noqa: E402

REAL_FILES = 400


def seed(lib: Library, root: Path, n: int) -> None:
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    files = []
    for i in range(REAL_FILES):
        p = root / f"real{i:03d}.jpg"
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(p, quality=80)
        files.append(p)
    r = lib.add_root(str(root))
    t0 = 1_500_000_000
    photos = []
    for i in range(n):
        p = files[i] if i < REAL_FILES else root / f"d{i // 1000:03d}" / f"p{i:06d}.jpg"
        if i >= REAL_FILES:  # a hard link: a real file to decode, its own path and content hash
            p.parent.mkdir(exist_ok=True)
            os.link(files[i % REAL_FILES], p)
        taken = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 + i * 1800))
        photos.append(Photo(i + 1, r.id, str(p), 1000, 0, f"{i:064x}", taken_at=taken))
    with lib.catalog.transaction():
        lib.catalog.insert_photos(photos)


def measure(n: int, work: Path) -> dict:
    from PySide6.QtWidgets import QApplication

    from retllm_desktop.gui.thumbnails import ThumbnailLoader
    from retllm_desktop.gui.timeline_view import TimelineView
    from retllm_desktop.gui.workers import WorkerPool

    app = QApplication.instance() or QApplication([])
    lib = Library(work / f"lib{n}", models_dir=work / "no-models")
    seed(lib, work / f"photos{n}", n)
    t = time.perf_counter()
    rows = lib.timeline()
    query_ms = (time.perf_counter() - t) * 1000
    fetched: list[int] = []

    def fetch(ids: list[int]) -> dict:
        fetched.append(len(ids))
        return lib.photos(ids)

    thumbs = ThumbnailLoader(work / f"thumbs{n}", threads=2, memory_items=2000)
    view = TimelineView(thumbs, fetch, WorkerPool(1))
    view.resize(1280, 800)
    view.show()
    t = time.perf_counter()
    view.set_rows(rows)
    build_ms = (time.perf_counter() - t) * 1000
    bar = view.verticalScrollBar()
    t = time.perf_counter()
    # Qt lays the rows out in batches between events and sets the scroll range when it is done: wait for
    # the whole library's height (rows of tiles × tile height), which is when the bottom can be reached.
    grid = view.gridSize() if view.gridSize().isValid() else view.sizeHintForIndex(view.model().index(1, 0))
    cols = max(1, view.viewport().width() // max(grid.width(), 1))
    expected = -(-view.model().rowCount() // cols) * grid.height() - view.viewport().height()
    while bar.maximum() < 0.9 * expected and time.perf_counter() - t < 120:
        app.processEvents()
        time.sleep(0.001)
    layout_ms = (time.perf_counter() - t) * 1000
    frames = []
    rng = np.random.default_rng(1)
    steps = [min(bar.maximum(), k * view.viewport().height()) for k in range(60)]
    steps += [int(x) for x in rng.integers(0, max(bar.maximum(), 1), size=20)]
    for value in steps:
        t = time.perf_counter()
        bar.setValue(value)
        app.processEvents()
        view.viewport().grab()
        frames.append(time.perf_counter() - t)
    requested = len(thumbs._pending) + len(thumbs._broken) + len(thumbs._memory)
    out = {
        "photos": n,
        "headers": len(view.timeline.headers()),
        "timeline_query_ms": round(query_ms, 1),
        "model_build_ms": round(build_ms, 1),
        "layout_ms": round(layout_ms, 1),
        "scroll_height_px": bar.maximum(),
        "frame": percentiles(frames),
        "pages_fetched": len(fetched),
        "rows_fetched": int(sum(fetched)),
        "thumbnails_requested": requested,
    }
    thumbs.shutdown()
    view.close()
    lib.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,100000")
    args = ap.parse_args()
    quiet_start()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        runs = [measure(int(n), Path(tmp)) for n in args.sizes.split(",")]
    base, big = runs[0], runs[-1]
    save(
        "timeline",
        {
            "load_average_1min": round(load, 2),
            "load_average_1min_after": round(os.getloadavg()[0], 2),
            "runs": runs,
            "ratio_frame_p50_big_vs_base": round(
                big["frame"]["p50_ms"] / max(base["frame"]["p50_ms"], 1e-6), 2
            ),
            "ratio_frame_p95_big_vs_base": round(
                big["frame"]["p95_ms"] / max(base["frame"]["p95_ms"], 1e-6), 2
            ),
            "peak_rss_mb": peak_rss_mb(),
        },
    )


if __name__ == "__main__":
    main()
