"""With no query the app shows the library newest first under month headers; selections have real actions.

Real Library, real catalog, synthetic CLIP, generated photos; the 100k case seeds a real catalog file.
"""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import hashlib  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QItemSelectionModel, Qt, QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox, QToolButton  # noqa: E402

from retllm_desktop.catalog import Catalog, Photo  # noqa: E402
from retllm_desktop.devtools.demo_photos import write_demo_photos  # noqa: E402
from retllm_desktop.gui.main_window import MainWindow  # noqa: E402
from retllm_desktop.gui.settings import Settings  # noqa: E402
from retllm_desktop.gui.thumbnails import ThumbnailLoader  # noqa: E402
from retllm_desktop.gui.timeline import HeaderRole, month_title  # noqa: E402
from retllm_desktop.gui.timeline_view import TimelineView  # noqa: E402
from retllm_desktop.gui.workers import WorkerPool  # noqa: E402

from . import helpers_places as hp  # noqa: E402

WAIT = 60_000


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture
def window(qtbot, tmp_path, clip_models_dir):
    s = Settings.load(tmp_path / "gui.json")
    s.rerank, s.setup_done = False, True
    w = MainWindow(s, library=tmp_path / "library", models_dir=clip_models_dir)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w._status is not None, timeout=WAIT)
    yield w
    w.close()


def index(qtbot, w: MainWindow, folder: Path) -> None:
    with qtbot.waitSignal(w.timeline_shown, timeout=WAIT, check_params_cb=lambda n: n > 0):
        with qtbot.waitSignal(w.index_finished, timeout=WAIT):
            w.index_folders([str(folder)])


def timeline_photos(w: MainWindow) -> list:
    tl = w.timeline_view.timeline
    return [tl.photo_result(i).photo for i in range(tl.photo_count())]


def test_no_query_shows_the_library_newest_first_with_month_headers(qtbot, window, tmp_path):
    w = window
    write_demo_photos(tmp_path / "photos", n=12, size=(160, 120))
    index(qtbot, w, tmp_path / "photos")
    assert w.stack.currentWidget() is w.timeline_view
    tl = w.timeline_view.timeline
    photos = timeline_photos(w)
    assert len(photos) == 12
    days = [p.taken_at for p in photos]
    assert days == sorted(days, reverse=True)  # newest first
    headers = tl.headers()
    assert sum(n for _, n in headers) == 12 and len(headers) >= 6  # the demo photos span ~2 years
    first = tl.index(0, 0)
    title, n = first.data(HeaderRole)
    newest = photos[0].taken_at
    assert title.endswith(newest[:4]) and n >= 1  # "March 2021" above the newest photo
    assert not (tl.flags(first) & Qt.ItemFlag.ItemIsSelectable)  # a header is not a photo
    # every header row is followed by the photos of its month
    for row in range(tl.rowCount()):
        head = tl.header(row)
        if head is not None:
            month = tl.result(tl.next_photo_row(row, 1)).photo.taken_at[:7]
            assert head[0] == month_title(month + "-01"), (head, month)
    # thumbnails really are painted in the timeline
    qtbot.waitUntil(
        lambda: tl.data(tl.index(tl.photo_row(0), 0), Qt.ItemDataRole.DecorationRole) is not None,
        timeout=WAIT,
    )
    # a search replaces it; clearing the search brings it back where it was
    w.search_edit.setText("red car")
    with qtbot.waitSignal(w.search_finished, timeout=WAIT):
        qtbot.keyClick(w.search_edit, Qt.Key.Key_Return)
    assert w.stack.currentWidget() is w.view
    with qtbot.waitSignal(w.timeline_shown, timeout=WAIT):
        w.clear_search()
    assert w.stack.currentWidget() is w.timeline_view and tl.photo_count() == 12
    # the date filter applies to it
    w.date_from.setDate(w.date_from.date().fromString(photos[5].taken_at[:10], "yyyy-MM-dd"))
    w.date_to.setDate(w.date_to.date().fromString(photos[2].taken_at[:10], "yyyy-MM-dd"))
    with qtbot.waitSignal(w.timeline_shown, timeout=WAIT):
        w.date_check.setChecked(True)
    qtbot.waitUntil(lambda: tl.photo_count() == 4, timeout=WAIT)
    assert [p.id for p in timeline_photos(w)] == [p.id for p in photos[2:6]]


def test_the_place_filter_applies_to_the_timeline(qtbot, window, tmp_path):
    w = window
    hp.write_trip(tmp_path / "trip")
    index(qtbot, w, tmp_path / "trip")
    qtbot.waitUntil(lambda: "country:FR" in w.places_panel.keys(), timeout=WAIT)
    with qtbot.waitSignal(w.timeline_shown, timeout=WAIT, check_params_cb=lambda n: n == 3):
        w.places_panel.choose("country:FR")
    assert w.stack.currentWidget() is w.timeline_view and w.searches.query is None
    assert sorted(Path(p.path).name for p in timeline_photos(w)) == ["paris0.jpg", "paris1.jpg", "paris2.jpg"]
    chips = [b.text() for b in w.bar.understood.findChildren(QToolButton) if b.isVisible()]
    assert any("France" in t for t in chips), chips
    # dates and place together leave nothing: the grid says so and offers all photos again
    w.date_from.setDate(w.date_from.date().fromString("2019-07-01", "yyyy-MM-dd"))
    w.date_to.setDate(w.date_to.date().fromString("2019-07-31", "yyyy-MM-dd"))
    with qtbot.waitSignal(w.timeline_shown, timeout=WAIT, check_params_cb=lambda n: n == 0):
        w.date_check.setChecked(True)
    assert w.stack.currentWidget() is w.empty and "Show all photos" in w.empty.text()
    with qtbot.waitSignal(w.timeline_shown, timeout=WAIT, check_params_cb=lambda n: n == 9):
        w._empty_link("all-photos")
    assert w._place_filter is None and not w.date_check.isChecked()


def test_100k_photos_load_only_what_is_on_screen(qtbot, tmp_path):
    cat = Catalog(tmp_path / "catalog.sqlite")
    root = cat.add_root(str(tmp_path / "photos"))
    t0 = 1_600_000_000
    with cat.transaction():
        cat.insert_photos(
            Photo(
                0,
                root.id,
                str(tmp_path / "photos" / f"p{i:06d}.jpg"),
                1000,
                0,
                f"{i:064x}",
                taken_at=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 + i * 1800)),
            )  # fmt: skip
            for i in range(100_000)
        )
    fetched: list[int] = []

    def fetch(ids):
        fetched.append(len(ids))
        return cat.photos_by_ids(ids)

    thumbs = ThumbnailLoader(None, threads=1, memory_items=500)
    pool = WorkerPool(1)
    view = TimelineView(thumbs, fetch, pool)
    qtbot.addWidget(view)
    view.resize(1000, 700)
    view.show()
    rows = cat.timeline()
    view.set_rows(rows)
    tl = view.timeline
    assert tl.photo_count() == 100_000 and len(tl.headers()) >= 12
    bar = view.verticalScrollBar()
    assert view.indexAt(view.viewport().rect().center()).isValid()  # something on screen at once
    # the view lays its rows out in batches between events (the first screen at once): wait for all 100k
    qtbot.waitUntil(lambda: bar.maximum() > 100_000 // 8 * 150, timeout=60_000)
    for frac in (0.25, 0.5, 0.9):  # scroll far down: only the pages on screen are read
        view.verticalScrollBar().setValue(int(view.verticalScrollBar().maximum() * frac))
        qtbot.wait(100)
    requested = len(thumbs._pending) + len(thumbs._broken) + len(thumbs._memory)
    assert 0 < len(fetched) <= 12 and sum(fetched) <= 12 * 200, fetched
    assert 0 < requested <= 400, requested  # a few screens of thumbnails, not 100,000
    # the photo on screen is the right one (newest first)
    idx = view.indexAt(view.viewport().rect().center())
    r = tl.result(idx.row()) or tl.result(tl.next_photo_row(idx.row(), 1))
    assert r is not None and r.photo.taken_at <= rows[0][1] + "T23:59:59"
    assert idx.row() > 0.8 * tl.rowCount()  # the 90 % mark shows photos from near the oldest end
    # selecting everything counts 100k photos without reading them
    pages_before = len(fetched)
    counts: list[int] = []
    view.selection_count.connect(counts.append)
    view.selectAll()
    assert counts[-1] == 100_000 and len(fetched) == pages_before
    thumbs.shutdown()
    cat.close()


def _close_message_box(click: str, seen: list) -> None:
    for top in QApplication.topLevelWidgets():
        if isinstance(top, QMessageBox) and top.isVisible():
            seen.append(top.text() + " " + top.informativeText())
            for b in top.buttons():
                if b.text().replace("&", "") == click:
                    b.click()
                    return
            top.close()
            return
    QTimer.singleShot(50, lambda: _close_message_box(click, seen))


def test_several_selected_photos_count_copy_show_and_delete_says_what_it_does(qtbot, window, tmp_path):
    w = window
    src = tmp_path / "photos"
    write_demo_photos(src, n=6, size=(160, 120))
    before = {p.name: digest(p) for p in src.iterdir()}
    index(qtbot, w, src)
    view = w.timeline_view
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    assert len(view.selected_paths()) == 6  # headers are not selected
    assert w.selection_label.isVisible() and w.selection_label.text() == "6 selected"
    # the context menu acts on the selection
    tl = view.timeline
    pos = view.visualRect(tl.index(tl.photo_row(0), 0)).center()
    view.customContextMenuRequested.emit(pos)
    texts = [a.text() for a in view.last_menu.actions() if a.text()]
    assert texts[:1] == ["6 selected"] and "Copy 6 paths" in texts and "Copy to folder…" in texts
    assert "Show in folder" in texts and "Delete…" in texts and "Find similar" not in texts
    view.last_menu.close()
    next(a for a in view.last_menu.actions() if a.text() == "Copy 6 paths").trigger()
    assert sorted(QApplication.clipboard().text().splitlines()) == sorted(str(p) for p in src.iterdir())
    # copy the files to a folder: byte for byte, twice (no overwrite), originals untouched
    out = tmp_path / "export"
    for _ in range(2):
        with qtbot.waitSignal(view.message, timeout=WAIT, check_params_cb=lambda t: t.startswith("Copied")):
            view.copy_to(view.selected_paths(), str(out))
    assert len(list(out.iterdir())) == 12
    for name, h in before.items():
        stem, ext = os.path.splitext(name)
        assert digest(out / name) == h and digest(out / f"{stem} (2){ext}") == h
    assert w.status_label.text().startswith("Copied 6 photos to")
    # Delete deletes nothing and says so
    seen: list[str] = []
    QTimer.singleShot(50, lambda: _close_message_box("Close", seen))
    qtbot.keyClick(view, Qt.Key.Key_Delete)
    qtbot.waitUntil(lambda: bool(seen), timeout=5000)
    assert "never deletes or changes your photos" in seen[0] and "these 6 photos" in seen[0]
    assert {p.name: digest(p) for p in src.iterdir()} == before
    # one photo selected: no count label, the single-photo actions are back
    view.selectionModel().clearSelection()
    view.selectionModel().select(tl.index(tl.photo_row(0), 0), QItemSelectionModel.SelectionFlag.Select)
    assert not w.selection_label.isVisible()
    view.customContextMenuRequested.emit(pos)
    texts = [a.text() for a in view.last_menu.actions() if a.text()]
    assert "Find similar" in texts and "Copy path" in texts and "1 selected" not in texts
    view.last_menu.close()


def test_search_results_offer_the_same_selection_actions(qtbot, window, tmp_path):
    w = window
    src = tmp_path / "photos"
    write_demo_photos(src, n=5, size=(160, 120))
    index(qtbot, w, src)
    w.search_edit.setText("a red car")
    with qtbot.waitSignal(w.search_finished, timeout=WAIT):
        qtbot.keyClick(w.search_edit, Qt.Key.Key_Return)
    w.view.setFocus()
    w.view.selectAll()
    assert w.selection_label.isVisible() and w.selection_label.text() == "5 selected"
    w._context_menu(w.view.visualRect(w.model.index(0, 0)).center())
    texts = [a.text() for a in w.last_menu.actions() if a.text()]
    assert texts[0] == "5 selected" and "Copy 5 paths" in texts and "Preview" not in texts
    w.last_menu.close()
    seen: list[str] = []
    QTimer.singleShot(50, lambda: _close_message_box("Close", seen))
    qtbot.keyClick(w.view, Qt.Key.Key_Delete)
    qtbot.waitUntil(lambda: bool(seen), timeout=5000)
    assert "never deletes or changes your photos" in seen[0]
    assert len(list(src.iterdir())) == 5
