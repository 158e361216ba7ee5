"""The window at its smallest (pytest-qt, offscreen, real widgets and geometries): a minimum size below
which it does not shrink, and at that size no control is cut off and no panel overlaps another."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QRect, Qt  # noqa: E402
from PySide6.QtWidgets import QApplication, QWidget  # noqa: E402

from retllm_desktop.gui.main_window import MainWindow  # noqa: E402
from retllm_desktop.gui.settings import Settings  # noqa: E402

from . import helpers_places as hp  # noqa: E402

WAIT = 60_000


def _rect(w: MainWindow, x: QWidget) -> QRect:
    return QRect(x.mapTo(w, x.rect().topLeft()), x.size())


def _fully_shown(w: MainWindow, x: QWidget) -> bool:
    """Visible, inside the window, not clipped by its parents and not squeezed below its own minimum."""
    return (
        x.isVisible()
        and w.rect().contains(_rect(w, x))
        and x.visibleRegion().boundingRect().size() == x.size()
        and x.width() >= x.minimumSizeHint().width()
        and x.height() >= x.minimumSizeHint().height()
    )


def _settle(w: MainWindow) -> None:
    for _ in range(10):
        QApplication.processEvents()


def test_minimum_size_keeps_every_control_whole_and_panels_apart(qtbot, tmp_path, clip_models_dir):
    trip = hp.write_trip(tmp_path / "trips")
    s = Settings.load(tmp_path / "gui.json")
    s.rerank, s.setup_done = False, True
    w = MainWindow(s, library=tmp_path / "library", models_dir=clip_models_dir)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w._status is not None, timeout=WAIT)
    with qtbot.waitSignal(w.index_finished, timeout=WAIT):
        w.index_folders([str(trip)])
    qtbot.waitUntil(lambda: "city:2267057" in w.places_panel.keys(), timeout=WAIT)
    # a busy bar: understood chips, the date filter on, results in the grid
    w.search_edit.setText("beach in Lisbon")
    with qtbot.waitSignal(w.search_finished, timeout=WAIT):
        qtbot.keyClick(w.search_edit, Qt.Key.Key_Return)
    with qtbot.waitSignal(w.search_finished, timeout=WAIT):
        w.date_check.setChecked(True)
    assert w.model.rowCount() == 4

    for size in ((700, 500), (480, 360), (1, 1)):
        w.resize(*size)
        _settle(w)
        # it does not get smaller than a usable window, which still fits a 1024 x 768 screen
        assert w.size() == w.minimumSize().expandedTo(w.size()) and w.width() >= 860 and w.height() >= 520
        assert w.minimumSize().width() <= 1024 and w.minimumSize().height() <= 768
        for name in ("search_btn", "search_edit", "sort_combo", "rerank_check", "only_check", "date_check"):
            x = getattr(w.bar, name)
            assert _fully_shown(w, x), (size, name, _rect(w, x), x.visibleRegion().boundingRect())
        assert _fully_shown(w, w.bar.date_to) and _fully_shown(w, w.bar.understood)
        # the panels, the grid and the status bar never overlap, and each keeps a usable size
        parts = {
            "library": w.dock,
            "places": w.places_dock,
            "search bar": w.bar,
            "grid": w.stack,
            "status bar": w.statusBar(),
        }
        rects = {k: _rect(w, x) for k, x in parts.items()}
        for a, ra in rects.items():
            assert w.rect().contains(ra), (size, a, ra)
            for b, rb in rects.items():
                if a < b:
                    assert not ra.intersects(rb), (size, a, ra, b, rb)
        assert rects["places"].height() >= 150 and rects["library"].height() >= 150
        grid = w.view.gridSize()
        assert rects["grid"].height() >= grid.height() and rects["grid"].width() >= 2 * grid.width()
        # the grid uses its width: the results view spans the area next to the panels
        assert w.stack.currentWidget() is w.view
        assert w.view.width() == w.stack.width() and w.stack.width() >= w.centralWidget().width() - 2
    w.resize(1280, 820)
    _settle(w)
    assert w.width() == 1280 and w.height() == 820
    w.close()


def test_the_minimum_follows_the_bar_when_it_grows(qtbot, tmp_path, clip_models_dir):
    """A notice (banner) makes the bar taller: the window's minimum grows with it, nothing is squeezed."""
    s = Settings.load(tmp_path / "gui.json")
    s.rerank, s.setup_done = False, True
    w = MainWindow(s, library=tmp_path / "library", models_dir=clip_models_dir)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w._status is not None, timeout=WAIT)
    before = w.minimumSize().height()
    w._set_banner("Results weren't double-checked: a long reason " * 4)
    _settle(w)
    w.resize(1, 1)
    _settle(w)
    assert w.minimumSize().height() > before
    assert _fully_shown(w, w.bar.search_btn) and _fully_shown(w, w.bar.sort_combo)
    assert _fully_shown(w, w.banner)
    assert not _rect(w, w.bar).intersects(_rect(w, w.statusBar()))
    w.close()


def test_the_window_opens_with_room_to_spare(qtbot, tmp_path, clip_models_dir):
    s = Settings.load(tmp_path / "gui.json")
    s.setup_done = True
    w = MainWindow(s, library=tmp_path / "library", models_dir=clip_models_dir)
    qtbot.addWidget(w)
    w.show()
    assert w.width() > w.minimumSize().width() and w.height() > w.minimumSize().height()
    w.close()
