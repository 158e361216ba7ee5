"""The app's places and understood-query chips (pytest-qt, Qt offscreen): real Library, synthetic CLIP."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtWidgets import QToolButton  # noqa: E402

from retllm_desktop.gui.main_window import MainWindow  # noqa: E402
from retllm_desktop.gui.settings import Settings  # noqa: E402

from . import helpers_places as hp  # noqa: E402

WAIT = 60_000


@pytest.fixture
def trip(tmp_path: Path) -> Path:
    return hp.write_trip(tmp_path / "trips")


def _search(qtbot, w: MainWindow, text: str) -> None:
    w.search_edit.setText(text)
    with qtbot.waitSignal(w.search_finished, timeout=WAIT):
        qtbot.keyClick(w.search_edit, Qt.Key.Key_Return)


def _names(w: MainWindow) -> set[str]:
    return {Path(w.model.result(i).photo.path).name for i in range(w.model.rowCount())}


def _chips(w: MainWindow) -> list[QToolButton]:
    return [b for b in w.bar.understood.findChildren(QToolButton) if b.isVisible()]


def test_chips_places_list_and_fallback(qtbot, tmp_path, clip_models_dir, trip, monkeypatch):
    monkeypatch.setenv("RETLLM_TODAY", "2026-11-26")
    s = Settings.load(tmp_path / "gui.json")
    s.rerank, s.setup_done = False, True
    w = MainWindow(s, library=tmp_path / "library", models_dir=clip_models_dir)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w._status is not None, timeout=WAIT)
    with qtbot.waitSignal(w.index_finished, timeout=WAIT):
        w.index_folders([str(trip)])
    qtbot.waitUntil(lambda: "city:2267057" in w.places_panel.keys(), timeout=WAIT)
    lisbon = w.places_panel.item("city:2267057")
    # a tree: the city under its country, each with its count in its own column
    assert lisbon.text(0) == "Lisbon" and lisbon.text(1) == "4" and lisbon.parent().text(0) == "Portugal"
    france = w.places_panel.item("country:FR")
    assert france.text(1) == "3" and france.parent() is None and france.child(0).text(0) == "Paris"
    assert france.isExpanded() and lisbon.parent().isExpanded()  # few countries: shown opened
    assert all(not any(c in it.text(0) for c in "●◆■") for it in w.places_panel._items())
    assert lisbon.textAlignment(1) & Qt.AlignmentFlag.AlignRight

    # understood: a chip per phrase, only Lisbon's photos
    _search(qtbot, w, "beach in Lisbon summer 2019")
    assert _names(w) == {f"lisbon{i}.jpg" for i in range(4)}
    labels = [b.text() for b in _chips(w)]
    assert any("Lisbon, Portugal" in t for t in labels) and any("Jun 2019" in t for t in labels)
    # removing the place chip searches "Lisbon" as a word again; the date chip stays
    lisbon_chip = next(b for b in _chips(w) if "Lisbon" in b.text())
    with qtbot.waitSignal(w.search_finished, timeout=WAIT):
        qtbot.mouseClick(lisbon_chip, Qt.MouseButton.LeftButton)
    assert [b.text() for b in _chips(w) if "Lisbon" in b.text()] == []
    assert any("Jun 2019" in b.text() for b in _chips(w))
    assert _names(w) == {f"lisbon{i}.jpg" for i in range(4)}  # the date alone still picks them

    # a filter that matches nothing: the words as typed, and a note saying so
    _search(qtbot, w, "Paris in summer 2019")
    assert len(_names(w)) == 9
    assert "searched for the words as typed" in w.bar.understood.note.text()
    assert _chips(w) == []

    # the Places list filters (here without any text: the timeline), shown as a removable chip
    w.search_edit.clear()
    with qtbot.waitSignal(w.timeline_shown, timeout=WAIT, check_params_cb=lambda n: n == 3):
        w.places_panel.choose("country:FR")
    tl = w.timeline_view.timeline
    names = {Path(tl.photo_result(i).photo.path).name for i in range(tl.photo_count())}
    assert names == {f"paris{i}.jpg" for i in range(3)} and w.model.rowCount() == 0
    chip = next(b for b in _chips(w) if "France" in b.text())
    with qtbot.waitSignal(w.timeline_shown, timeout=WAIT, check_params_cb=lambda n: n == 9):
        qtbot.mouseClick(chip, Qt.MouseButton.LeftButton)
    assert w._place_filter is None and w.model.rowCount() == 0
    w.close()
