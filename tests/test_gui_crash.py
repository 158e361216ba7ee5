"""The app never aborts with "none_dealloc": removing a folder during and after the LLM check, many times.

The cause (see ``gui/qtcompat.py``): PySide6 6.12.0 on CPython 3.11 drops a reference to ``None`` on every
C++ ``void`` call, so a long enough session frees ``None``. Both tests run in their own process: on the
old code the process aborts (exit -6), which must not take the test session with it.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

ROOT = Path(__file__).resolve().parent.parent


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["QT_QPA_PLATFORM"] = "offscreen"
    return env


VOID_CALLS = """
import os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from retllm_desktop.gui.main_window import MainWindow  # the app's imports, its Qt work-arounds with them
from PySide6.QtCore import QObject, QThreadPool, QRunnable
refs = sys.getrefcount(None)
calls = refs + 5000 if refs < 10**9 else 300_000  # more than None has references on a mortal None
o = QObject()
for _ in range(calls):
    o.setObjectName("x")  # a void method: the binding returns None
class Job(QRunnable):
    def run(self):
        pass
pool = QThreadPool()
for _ in range(2000):
    pool.start(Job())  # what every worker of the app does
pool.waitForDone()
print("alive", calls)
"""


def test_void_qt_calls_cannot_free_none() -> None:
    r = subprocess.run(
        [sys.executable, "-c", VOID_CALLS], env=_env(), capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0 and "alive" in r.stdout, (r.returncode, r.stderr[-2000:])


def test_removing_a_folder_during_and_after_a_check_never_faults(
    tmp_path: Path, full_models_dir: Path
) -> None:
    from retllm_desktop.devtools.demo_photos import write_demo_photos

    from .conftest import make_photo

    a, b = tmp_path / "a", tmp_path / "b"
    write_demo_photos(a, n=8, size=(160, 120))
    for i in range(6):
        make_photo(b / f"b{i}.jpg", seed=500 + i)
    runs = int(os.environ.get("RETLLM_CRASH_RUNS", "12"))  # the old code aborted in run 10 here
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.gui_scenario_remove_during_rerank",
            str(tmp_path / "lib"),
            str(full_models_dir),
            str(a),
            str(b),
            "--runs",
            str(runs),
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60 * runs + 120,
    )
    assert r.returncode == 0, (r.returncode, r.stdout[-1500:], r.stderr[-3000:])
    assert r.stdout.strip().splitlines()[-1] == f"ok {runs}"
