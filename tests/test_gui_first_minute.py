"""The first minute: while the first photos are added every label says so; later work refreshes old lines.

Real Library, synthetic CLIP, generated photos, real filesystem events (pytest-qt, offscreen).
"""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtWidgets import QLabel  # noqa: E402

from retllm_desktop.devtools.demo_photos import write_demo_photos  # noqa: E402
from retllm_desktop.gui.main_window import MainWindow  # noqa: E402
from retllm_desktop.gui.settings import Settings  # noqa: E402

from . import helpers_places as hp  # noqa: E402
from .conftest import make_photo  # noqa: E402

WAIT = 90_000


@pytest.fixture
def window(qtbot, tmp_path, clip_models_dir):
    s = Settings.load(tmp_path / "gui.json")
    s.rerank, s.setup_done, s.read_text = False, True, False
    w = MainWindow(s, library=tmp_path / "library", models_dir=clip_models_dir)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w._status is not None, timeout=WAIT)
    yield w
    w.close()


def folder_texts(w: MainWindow) -> list[str]:
    return [w.panel.folders.item(i).text() for i in range(w.panel.folders.count())]


def test_while_the_first_index_runs_every_label_says_so(qtbot, window, tmp_path):
    w = window
    write_demo_photos(tmp_path / "photos", n=120, size=(320, 240))
    w.library.batch_size = 4  # 30 batches: progress (throttled to ~12 a second) is seen mid-way
    seen: list[dict] = []

    def snapshot(stage: str, done: int, total: int) -> None:
        if stage == "embedding" and 0 < done < total:
            seen.append(
                {
                    "folders": folder_texts(w),
                    "count": w.count_label.text(),
                    "status": w.status_label.text(),
                    "grid": w.empty.text() if w.stack.currentWidget() is w.empty else "(photos)",
                }
            )

    w.libraries.index_progress.connect(snapshot)  # after the window's own slot
    with qtbot.waitSignal(w.index_finished, timeout=WAIT):
        w.index_folders([str(tmp_path / "photos")])
    assert seen, "no progress seen mid-index"
    for s in seen:
        assert not any("No folders yet" in t for t in s["folders"]), s
        assert any(t.startswith("photos") for t in s["folders"]), s
        assert not s["count"].startswith("0 photos") and ("adding" in s["count"] or "added" in s["count"]), s
        assert s["status"] != "Ready" and s["status"], s
        assert "Add your photos" not in s["grid"], s
    assert any(s["status"].startswith("Adding ") and " of 120 photos" in s["status"] for s in seen), seen
    # done: the fresh status takes over
    qtbot.waitUntil(lambda: w.count_label.text() == "120 photos", timeout=WAIT)
    assert folder_texts(w) == ["photos  —  120 photos"]


def test_the_indexed_line_is_replaced_once_the_library_changes(qtbot, window, tmp_path):
    w = window
    for i in range(3):
        make_photo(tmp_path / "a" / f"p{i}.jpg", seed=i)
    for i in range(2):
        make_photo(tmp_path / "b" / f"q{i}.jpg", seed=10 + i)
    with qtbot.waitSignal(w.index_finished, timeout=WAIT):
        w.index_folders([str(tmp_path / "a"), str(tmp_path / "b")])
    assert w.panel.stage.text().startswith("Indexed: 5 added")
    # later work changes the library: "5 added" is history now, and the panel says what holds
    w.remove_folder(str(tmp_path / "b"), confirm=False)
    qtbot.waitUntil(lambda: w.panel.stage.text() == "Up to date — 3 photos", timeout=WAIT)
    assert not w.status_label.text().startswith("Indexed:")
    assert w.count_label.text() == "3 photos"


def test_the_preview_names_the_place_and_keeps_coordinates_for_hover(qtbot, window, tmp_path):
    w = window
    hp.write_trip(tmp_path / "trip")
    with qtbot.waitSignal(w.timeline_shown, timeout=WAIT, check_params_cb=lambda n: n == 9):
        with qtbot.waitSignal(w.index_finished, timeout=WAIT):
            w.index_folders([str(tmp_path / "trip")])
    tl = w.timeline_view.timeline
    i = next(i for i in range(tl.photo_count()) if Path(tl.photo_result(i).photo.path).name == "lisbon0.jpg")
    p = w._open_timeline_preview(tl.photo_row(i))
    place = p.fields["Place"]
    assert place.text() == "Lisbon, Portugal"
    assert "38.7107° N, 9.1365° W" in place.toolTip()
    assert all("GPS" not in lab.text() for lab in p.fields.values())  # no raw numbers elsewhere
    j = next(i for i in range(tl.photo_count()) if Path(tl.photo_result(i).photo.path).name == "home0.jpg")
    p.show_row(j)
    assert place.text() == "unknown"
    p.close()


def test_settings_labels_have_no_stray_ampersand(qtbot, window):
    from retllm_desktop.gui.settings_dialog import SettingsDialog

    d = SettingsDialog(window.settings, window.library_path(), window.models_path(), window)
    qtbot.addWidget(d)
    texts = [lab.text() for lab in d.findChildren(QLabel)]
    assert any("is between" in t for t in texts), texts
    assert not any("&b" in t for t in texts)
