"""Take a screenshot of the real app window with results: ``python scripts/screenshot.py [OUT.png]``.

Starts Xvfb when no DISPLAY is set, writes demo photos and synthetic (random-weight) models into a temp
dir, indexes them, opens the window, runs a query, waits for the coarse results, the live rerank and the
thumbnails, then grabs the window to ``docs/screenshot.png`` (default). The scores are meaningless with
synthetic models; the window is real.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def start_xvfb() -> subprocess.Popen | None:
    if os.environ.get("DISPLAY") or os.environ.get("QT_QPA_PLATFORM") == "offscreen":
        return None
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        sys.exit("no DISPLAY and no Xvfb: install it (apt-get install xvfb) or run with a display")
    for n in range(99, 120):
        if not Path(f"/tmp/.X{n}-lock").exists():
            break
    proc = subprocess.Popen(
        [xvfb, f":{n}", "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.environ["DISPLAY"] = f":{n}"
    time.sleep(1.0)
    if proc.poll() is not None:
        sys.exit("Xvfb did not start")
    return proc


def wait_until(app, cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise SystemExit(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.02)


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else REPO / "docs" / "screenshot.png"
    query = argv[1] if len(argv) > 1 else "red car"
    xvfb = start_xvfb()
    try:
        from PySide6.QtCore import Qt
        from PySide6.QtGui import QGuiApplication
        from PySide6.QtWidgets import QApplication

        from retllm_desktop.devtools.demo_photos import write_demo_photos
        from retllm_desktop.devtools.synthetic_models import main as write_models
        from retllm_desktop.gui.main_window import MainWindow
        from retllm_desktop.gui.settings import Settings

        tmp = Path(tempfile.mkdtemp(prefix="retllm-shot-"))
        photos = tmp / "Pictures" / "Holidays"
        write_demo_photos(photos, n=32, size=(640, 480))
        write_models([str(tmp / "models"), "--size", "tiny"])

        QGuiApplication.setHighDpiScaleFactorRoundingPolicy(Qt.HighDpiScaleFactorRoundingPolicy.PassThrough)
        app = QApplication.instance() or QApplication([sys.argv[0]])
        app.setApplicationName("RetLLM Desktop")
        settings = Settings.load(tmp / "gui.json")
        settings.setup_done = True
        settings.rerank = True
        settings.rerank_k = 8
        w = MainWindow(settings, library=tmp / "library", models_dir=tmp / "models")
        w.resize(1440, 900)
        w.show()
        wait_until(app, lambda: w._status is not None, 120, "the models to load")
        w.index_folders([str(photos)])
        wait_until(
            app, lambda: w.last_index_summary is not None and not w.libraries.indexing(), 300, "indexing"
        )
        wait_until(app, lambda: w._status is not None and w._status.photos > 0, 60, "the library status")
        w.search_edit.setText(query)
        done = []
        w.search_finished.connect(lambda: done.append(True))
        w.run_search()
        wait_until(app, lambda: bool(done), 600, "the search and rerank")
        wait_until(app, lambda: w.thumbs.pending() == 0, 60, "thumbnails")
        w.view.setCurrentIndex(w.model.index(0, 0))
        w.view.setFocus()
        for _ in range(20):
            app.processEvents()
            time.sleep(0.02)
        # Show the rerank summary the user saw while it ran ("Checked 8/8 with …").
        out.parent.mkdir(parents=True, exist_ok=True)
        pm = w.grab()
        if not pm.save(str(out)):
            raise SystemExit(f"could not write {out}")
        print(
            f"wrote {out} ({pm.width()}x{pm.height()}, {w.model.rowCount()} results, {w.rerank_label.text()})"
        )
        w.close()
        shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
