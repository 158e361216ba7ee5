"""The query as the window shows it (pytest-qt, offscreen, the real widgets): every part visible as a
chip, each removable, none applied invisibly — clear (×) clears all, new words drop the example photo,
browsing runs no model check, a date range keeps file-dated photos, and deleted photos are never shown.

Real Library and catalog, synthetic CLIP (and the tiny GGUF checker where the check matters), photos with
real GPS EXIF (``helpers_places.write_trip``).
"""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QDate, Qt  # noqa: E402
from PySide6.QtGui import QAction  # noqa: E402
from PySide6.QtWidgets import QToolButton  # noqa: E402

from retllm_desktop.gui.main_window import MainWindow  # noqa: E402
from retllm_desktop.gui.settings import Settings  # noqa: E402

from . import helpers_places as hp  # noqa: E402

WAIT = 60_000


@pytest.fixture
def trip(tmp_path: Path) -> Path:
    """The trip set; its two photos without a capture date get file dates in July 2019 (Lisbon's days)."""
    root = hp.write_trip(tmp_path / "trips")
    for i in range(2):
        t = datetime.fromisoformat(f"2019-07-1{i + 1}T09:00:00").timestamp()
        os.utime(root / f"home{i}.jpg", (t, t))
    return root


def _window(qtbot, tmp_path: Path, models: Path, rerank: bool = False) -> MainWindow:
    s = Settings.load(tmp_path / "gui.json")
    s.rerank, s.setup_done, s.rerank_k = rerank, True, 4
    w = MainWindow(s, library=tmp_path / "library", models_dir=models)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w._status is not None, timeout=WAIT)
    return w


def _index(qtbot, w: MainWindow, folder: Path) -> None:
    with qtbot.waitSignal(w.index_finished, timeout=WAIT):
        w.index_folders([str(folder)])
    qtbot.waitUntil(lambda: "city:2267057" in w.places_panel.keys(), timeout=WAIT)
    qtbot.waitUntil(lambda: w._status is not None and w._status.photos == 9, timeout=WAIT)


def _search(qtbot, w: MainWindow, text: str) -> None:
    w.search_edit.setText(text)
    with qtbot.waitSignal(w.search_finished, timeout=WAIT):
        qtbot.keyClick(w.search_edit, Qt.Key.Key_Return)


def _names(w: MainWindow) -> set[str]:
    return {Path(r.photo.path).name for r in w.model.results()}


def _timeline_names(w: MainWindow) -> set[str]:
    tl = w.timeline_view.timeline
    return {Path(tl.photo_result(i).photo.path).name for i in range(tl.photo_count())}


def _chips(w: MainWindow) -> list[str]:
    return [b.text() for b in w.bar.understood.findChildren(QToolButton) if b.isVisible()]


def test_clear_button_clears_words_chips_place_example_photo_and_dates(
    qtbot, tmp_path, clip_models_dir, trip
):
    w = _window(qtbot, tmp_path, clip_models_dir)
    _index(qtbot, w, trip)
    _search(qtbot, w, "beach in Lisbon")
    assert _names(w) == {f"lisbon{i}.jpg" for i in range(4)}
    # Paris picked in Places while the words name Lisbon: the words lose "in Lisbon", the grid shows Paris
    with qtbot.waitSignal(w.search_finished, timeout=WAIT):
        w.places_panel.choose("country:FR")
    assert "lisbon" not in w.search_edit.text().lower() and w.search_edit.text() == "beach"
    assert _names(w) == {f"paris{i}.jpg" for i in range(3)}
    assert any("France" in c for c in _chips(w)) and not any("Lisbon" in c for c in _chips(w))
    # the date range is a chip too
    with qtbot.waitSignal(w.search_finished, timeout=WAIT):
        w.date_check.setChecked(True)
    assert any(c.startswith("Taken ") for c in _chips(w))
    # a dropped example photo joins the words (both shown)
    with qtbot.waitSignal(w.search_finished, timeout=WAIT):
        w.set_query_image(str(trip / "paris0.jpg"))
    assert w.chip.isVisible() and w.searches.query.image is not None

    # clear (×): everything goes, nothing is left applied behind the user's back
    clear = w.search_edit.findChild(QAction, "_q_qlineeditclearaction")
    assert clear is not None
    with qtbot.waitSignal(w.timeline_shown, timeout=WAIT, check_params_cb=lambda n: n == 9):
        clear.trigger()
    assert w.search_edit.text() == "" and not w.chip.isVisible() and _chips(w) == []
    assert not w.date_check.isChecked() and w.places_panel.tree.selectedItems() == []
    assert w.state.empty and w.state.dates is None and w.state.image is None and w.state.filters == []
    assert w.searches.query is None and w.stack.currentWidget() is w.timeline_view
    # the next words are searched alone: no place, no photo, no dates carried over
    _search(qtbot, w, "a photo")
    q = w.searches.query
    assert q.image is None and q.places == () and q.date_from is None and len(_names(w)) == 9
    w.close()


def test_new_words_drop_the_example_photo_unless_kept_and_find_similar_starts_over(
    qtbot, tmp_path, clip_models_dir, trip
):
    w = _window(qtbot, tmp_path, clip_models_dir)
    _index(qtbot, w, trip)
    with qtbot.waitSignal(w.timeline_shown, timeout=WAIT, check_params_cb=lambda n: n == 4):
        w.places_panel.choose("city:2267057")
    # Find similar: a new search from the photo; the place filter goes (and says so by its chip going)
    with qtbot.waitSignal(w.search_finished, timeout=WAIT):
        w.find_similar(str(trip / "paris1.jpg"))
    q = w.searches.query
    assert q.image == str((trip / "paris1.jpg").resolve()) and q.places == () and q.text is None
    assert w.places_panel.tree.selectedItems() == [] and not any("Lisbon" in c for c in _chips(w))
    assert len(_names(w)) == 8  # every other photo, none hidden by the place picked before
    # new typed words are a new search: the photo goes
    _search(qtbot, w, "a boat")
    assert w.searches.query.image is None and not w.chip.isVisible()
    assert w.searches.query.kind == "text"
    # ... unless the user keeps it: then the words refine the photo
    with qtbot.waitSignal(w.search_finished, timeout=WAIT):
        w.find_similar(str(trip / "paris1.jpg"))
    w.chip.keep_btn.click()
    _search(qtbot, w, "at night")
    assert w.searches.query.kind == "composed" and w.chip.isVisible()
    w.close()


def test_browsing_a_place_with_no_words_runs_no_model_check(qtbot, tmp_path, full_models_dir, trip):
    w = _window(qtbot, tmp_path, full_models_dir, rerank=True)
    assert w._mllm_ok and w.rerank_check.isChecked()
    _index(qtbot, w, trip)
    updates = []
    w.search_updated.connect(updates.append)
    with qtbot.waitSignal(w.timeline_shown, timeout=WAIT, check_params_cb=lambda n: n == 3):
        w.places_panel.choose("country:FR")
    qtbot.wait(300)  # a search started by mistake would report by now
    assert updates == [] and w.searches.query is None  # nothing judged against the word "France"
    assert w.stack.currentWidget() is w.timeline_view and _timeline_names(w) == {
        f"paris{i}.jpg" for i in range(3)
    }
    tl = w.timeline_view.timeline
    assert all(getattr(tl.photo_result(i), "fine", None) is None for i in range(tl.photo_count()))
    assert not w.rerank_label.isVisible() and not w.rerank_bar.isVisible()
    assert any("France" in c for c in _chips(w))
    # words with the place do get checked
    _search(qtbot, w, "a tower")
    assert updates and any(r.fine is not None for r in updates[-1].results)
    assert {Path(r.photo.path).name for r in updates[-1].results} <= {f"paris{i}.jpg" for i in range(3)}
    w.close()


def test_a_date_range_keeps_photos_that_only_have_a_file_date(qtbot, tmp_path, clip_models_dir, trip):
    w = _window(qtbot, tmp_path, clip_models_dir)
    _index(qtbot, w, trip)
    # ticking "Taken between" as preset (the library's span) hides nothing
    with qtbot.waitSignal(w.timeline_shown, timeout=WAIT, check_params_cb=lambda n: n == 9):
        w.date_check.setChecked(True)
    assert len(_timeline_names(w)) == 9 and any(c.startswith("Taken ") for c in _chips(w))
    # July 2019: Lisbon's photos and the two whose file date is in July 2019
    july = {f"lisbon{i}.jpg" for i in range(4)} | {"home0.jpg", "home1.jpg"}
    w.date_from.setDate(QDate(2019, 7, 1))
    with qtbot.waitSignal(w.timeline_shown, timeout=WAIT, check_params_cb=lambda n: n == 6):
        w.date_to.setDate(QDate(2019, 7, 31))
    assert _timeline_names(w) == july
    _search(qtbot, w, "a photo")
    assert _names(w) == july
    # "Newest first" puts a file-dated photo among the others by its date, not after all of them
    w.sort_combo.setCurrentIndex(w.sort_combo.findData("newest"))
    order = [Path(r.photo.path).name for r in (w.model.result(i) for i in range(w.model.rowCount()))]
    assert order == ["lisbon3.jpg", "lisbon2.jpg", "home1.jpg", "lisbon1.jpg", "home0.jpg", "lisbon0.jpg"]
    w.close()


def test_a_photo_deleted_behind_the_apps_back_is_never_shown(qtbot, tmp_path, clip_models_dir, trip):
    w = _window(qtbot, tmp_path, clip_models_dir)
    _index(qtbot, w, trip)
    w.libraries.stop_watcher()  # nothing watches: the catalog lags behind the disk
    _search(qtbot, w, "a photo")
    assert len(_names(w)) == 9
    (trip / "paris2.jpg").unlink()
    (trip / "home0.jpg").unlink()
    _search(qtbot, w, "a photo")
    assert _names(w) == {f"lisbon{i}.jpg" for i in range(4)} | {"paris0.jpg", "paris1.jpg", "home1.jpg"}
    assert "2 photos no longer on disk left out" in w.status_label.text()
    assert w.library.disk.recorded() == {
        str((trip / "paris2.jpg").resolve()),
        str((trip / "home0.jpg").resolve()),
    }
    w.close()


def test_open_results_follow_the_folders_while_the_app_watches(qtbot, tmp_path, clip_models_dir, trip):
    """No Enter pressed: a photo copied in joins the open results, a deleted one leaves (its preview too)."""
    from .conftest import make_photo

    w = _window(qtbot, tmp_path, clip_models_dir)
    _index(qtbot, w, trip)
    qtbot.waitUntil(lambda: w.watch_label.text() == "Watching 1 folder", timeout=WAIT)
    _search(qtbot, w, "a photo")
    assert len(_names(w)) == 9
    make_photo(trip / "new.jpg", seed=77)
    qtbot.waitUntil(lambda: "new.jpg" in _names(w), timeout=WAIT)
    assert len(_names(w)) == 10 and w.search_edit.text() == "a photo"
    ranks = [r.rank for r in w.model.results()]
    assert sorted(ranks) == list(range(1, 11))  # placed by its score among the others
    row = next(i for i, r in enumerate(w.model.results()) if r.photo.path.endswith("paris2.jpg"))
    p = w.open_preview(row)
    assert p is not None and p.isVisible()
    (trip / "paris2.jpg").unlink()
    qtbot.waitUntil(lambda: "paris2.jpg" not in _names(w), timeout=WAIT)
    qtbot.waitUntil(lambda: w._preview is None, timeout=WAIT)  # its photo went: the preview closed
    assert len(_names(w)) == 9
    w.close()
