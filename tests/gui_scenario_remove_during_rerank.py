"""The crash scenario of issue 22, run in its own process (a fault kills only this process).

Through the real window (offscreen): a second folder is added and indexed, a search runs with the LLM
check, the folder is removed while the check runs (during), the search re-runs, the folder comes back, a
search is checked to the end and the folder is removed again (after). ``--runs`` times; prints
``ok <runs>`` at the end. Usage::

    python -m tests.gui_scenario_remove_during_rerank LIBRARY MODELS FOLDER_A FOLDER_B [--runs N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QCoreApplication  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from retllm_desktop.gui.main_window import MainWindow  # noqa: E402
from retllm_desktop.gui.settings import Settings  # noqa: E402

WAIT_S = 120.0


def wait_until(cond, what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        QCoreApplication.processEvents()
        time.sleep(0.005)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("library")
    ap.add_argument("models")
    ap.add_argument("folder_a")
    ap.add_argument("folder_b")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args(argv)
    app = QApplication.instance() or QApplication([])
    s = Settings.load(os.path.join(args.library, "gui.json"))
    s.rerank, s.rerank_k, s.setup_done, s.ve = True, 3, True, "off"
    w = MainWindow(s, library=args.library, models_dir=args.models)
    w.show()
    wait_until(lambda: w._status is not None, "the library")
    if not w._mllm_ok:
        raise SystemExit(f"no checking model: {w._mllm_msg}")
    events = {"finished": 0, "indexed": 0, "removed": 0, "updates": []}
    w.libraries.removed.connect(lambda *_: events.__setitem__("removed", events["removed"] + 1))
    w.search_finished.connect(lambda: events.__setitem__("finished", events["finished"] + 1))
    w.index_finished.connect(lambda _s: events.__setitem__("indexed", events["indexed"] + 1))
    w.search_updated.connect(lambda u: events["updates"].append(u))

    def index(folder: str) -> None:
        n = events["indexed"]
        w.index_folders([folder])
        wait_until(lambda: events["indexed"] > n and not w.libraries.indexing(), f"indexing {folder}")

    def search(text: str) -> None:
        w.search_edit.setText(text)
        events["updates"].clear()
        n = events["finished"]
        w.run_search()
        return n

    def remove(folder: str) -> None:
        n = events["removed"]
        w.remove_folder(folder, confirm=False)
        wait_until(lambda: events["removed"] > n, f"removing {folder}")

    index(args.folder_a)
    for run in range(args.runs):
        index(args.folder_b)
        # during: the folder goes while the model checks the results
        n = search(f"a photo {run}")
        wait_until(lambda: any(u.phase == "rerank" and u.done >= 1 for u in events["updates"]), "a check")
        remove(args.folder_b)
        wait_until(lambda n=n: events["finished"] > n and w.searches.worker is None, "the re-run")
        # after: checked to the end, then removed; the search re-runs on what is left
        index(args.folder_b)
        n = search(f"a red photo {run}")
        wait_until(lambda n=n: events["finished"] > n and w.searches.worker is None, "the check")
        assert events["updates"][-1].phase == "done", events["updates"][-1].phase
        m = events["finished"]
        remove(args.folder_b)
        wait_until(lambda m=m: events["finished"] > m and w.searches.worker is None, "the re-run after")
        left = {r.photo.path for r in w.model.results()}
        assert not any(p.startswith(args.folder_b) for p in left), "a removed folder's photo is still shown"
        print(f"run {run + 1} done", flush=True)
    w.close()
    app.processEvents()
    print(f"ok {args.runs}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
