"""The desktop app end to end (pytest-qt, Qt offscreen): real Library, synthetic models, generated photos."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPointF, QSize, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent  # noqa: E402

from retllm_desktop.devtools.demo_photos import write_demo_photos  # noqa: E402
from retllm_desktop.gui.main_window import MainWindow  # noqa: E402
from retllm_desktop.gui.results_model import ResultsModel, ThumbDelegate  # noqa: E402
from retllm_desktop.gui.settings import Settings  # noqa: E402
from retllm_desktop.gui.thumbnails import ThumbnailLoader  # noqa: E402

WAIT = 60_000


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models")
    from retllm_desktop.devtools.synthetic_clip import write_synthetic_clip
    from retllm_desktop.devtools.synthetic_mllm import write_synthetic_mllm

    write_synthetic_clip(out, size="tiny", seed=0)
    write_synthetic_mllm(out, size="tiny", seed=0)
    return out


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("photos")
    write_demo_photos(out, n=16, size=(320, 240))
    return out


@pytest.fixture
def settings(tmp_path) -> Settings:
    s = Settings.load(tmp_path / "gui.json")
    s.rerank = False
    s.setup_done = True
    return s


def make_window(qtbot, settings, tmp_path, models_dir) -> MainWindow:
    w = MainWindow(settings, library=tmp_path / "library", models_dir=models_dir)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w._status is not None, timeout=WAIT)
    return w


def close_window(w: MainWindow) -> None:
    w.close()
    assert w.library is None  # workers stopped, catalog closed


def index_folder(qtbot, w: MainWindow, folder: Path) -> None:
    with qtbot.waitSignal(w.index_finished, timeout=WAIT):
        w.index_folders([str(folder)])
    qtbot.waitUntil(lambda: w._status is not None and w._status.photos > 0, timeout=WAIT)


def search(qtbot, w: MainWindow, text: str) -> None:
    w.search_edit.setFocus()
    w.search_edit.setText(text)
    with qtbot.waitSignal(w.search_finished, timeout=WAIT):
        qtbot.keyClick(w.search_edit, Qt.Key.Key_Return)


def drop_files(w: MainWindow, paths: list[Path]) -> QDropEvent:
    md = QMimeData()
    md.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    ev = QDropEvent(
        QPointF(200, 200),
        Qt.DropAction.CopyAction,
        md,
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
    )
    w.dropEvent(ev)
    return ev


def test_index_search_preview_drop(qtbot, tmp_path, settings, models_dir, photos):
    w = make_window(qtbot, settings, tmp_path, models_dir)
    assert w._clip_ok, w._clip_error
    # add a folder -> indexing completes
    index_folder(qtbot, w, photos)
    assert w.last_index_summary.added == 16
    assert "16 photos" in w.count_label.text()
    assert w.panel.folders.count() == 1

    # Ctrl+F focuses the search bar; Enter searches; the grid fills with thumbnails
    w.view.setFocus()
    qtbot.keyClick(w, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert w.search_edit.hasFocus()
    search(qtbot, w, "red car")
    assert w.model.rowCount() == 16
    assert w.stack.currentWidget() is w.view
    qtbot.waitUntil(
        lambda: w.model.data(w.model.index(0, 0), Qt.ItemDataRole.DecorationRole) is not None, timeout=WAIT
    )
    thumbs_dir = Path(w.library.path) / "cache" / "thumbnails"
    qtbot.waitUntil(lambda: any(thumbs_dir.rglob("*.jpg")), timeout=WAIT)

    # sort by date taken: oldest first really is in date order
    w.sort_combo.setCurrentIndex(w.sort_combo.findData("oldest"))
    dates = [r.photo.taken_at for r in w.model.results()]
    assert dates == sorted(dates)
    w.sort_combo.setCurrentIndex(w.sort_combo.findData("relevance"))

    # preview opens with Space, arrows move through the results
    w.view.setFocus()
    w.view.setCurrentIndex(w.model.index(0, 0))
    qtbot.keyClick(w.view, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: w._preview is not None and w._preview.isVisible(), timeout=5000)
    p = w._preview
    first = p.result.photo.path
    assert p.fields["Path"].text().replace("\n", "") == first  # wrapped to fit the side panel
    assert p.fields["Path"].toolTip() == first
    qtbot.waitUntil(p.image.has_image, timeout=WAIT)
    qtbot.keyClick(p, Qt.Key.Key_Right)
    assert p.row == 1 and p.result.photo.path != first
    assert w.view.currentIndex().row() == 1
    p.copy_path()
    from PySide6.QtWidgets import QApplication

    assert QApplication.clipboard().text() == p.result.photo.path
    p.close()
    qtbot.waitUntil(lambda: w._preview is None, timeout=5000)

    # date range filter from EXIF
    w.date_from.setDate(w.date_from.date().fromString("2019-01-01", "yyyy-MM-dd"))
    w.date_to.setDate(w.date_to.date().fromString("2019-12-31", "yyyy-MM-dd"))
    with qtbot.waitSignal(w.search_finished, timeout=WAIT):
        w.date_check.setChecked(True)
    got = [r.photo.taken_at[:4] for r in w.model.results()]
    assert got and set(got) == {"2019"} and len(got) < 16
    with qtbot.waitSignal(w.search_finished, timeout=WAIT):
        w.date_check.setChecked(False)

    # drag and drop an image file -> query by image (chip shown, the image itself not in its results)
    query_img = sorted(photos.glob("*.jpg"))[2]
    w.search_edit.clear()
    with qtbot.waitSignal(w.search_finished, timeout=WAIT):
        ev = drop_files(w, [query_img])
    assert ev.isAccepted()
    assert w.chip.isVisible() and w.searches.query.image == str(query_img.resolve())
    assert all(r.photo.path != str(query_img.resolve()) for r in w.model.results())
    # words alongside the photo refine it once "Keep" is pressed (a composed query) ...
    w.chip.keep_btn.click()
    search(qtbot, w, "at night")
    assert w.searches.query.kind == "composed" and w.chip.isVisible()
    # removing the chip searches by text only
    with qtbot.waitSignal(w.search_finished, timeout=WAIT):
        w.chip.close_btn.click()
    assert not w.chip.isVisible() and w.searches.query.kind == "text"
    # Esc clears the search
    w.search_edit.setFocus()
    qtbot.keyClick(w.search_edit, Qt.Key.Key_Escape)
    assert w.search_edit.text() == "" and w.model.rowCount() == 0
    close_window(w)


def test_new_query_cancels_running_one(qtbot, tmp_path, settings, models_dir, photos):
    w = make_window(qtbot, settings, tmp_path, models_dir)
    index_folder(qtbot, w, photos)
    w.search_edit.setText("blue sky")
    w.run_search()
    old = w.searches.worker
    w.search_edit.setText("green forest")
    with qtbot.waitSignal(w.search_finished, timeout=WAIT):
        w.run_search()
    assert old.cancel.is_set()
    assert w.searches.query.text == "green forest"
    assert w.model.rowCount() == 16
    close_window(w)


def test_drop_folder_adds_and_indexes(qtbot, tmp_path, settings, models_dir):
    folder = tmp_path / "dropped"
    write_demo_photos(folder, n=4, size=(160, 120), seed=3)
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    w = make_window(qtbot, settings, tmp_path, models_dir)
    with qtbot.waitSignal(w.index_finished, timeout=WAIT):
        drop_files(w, [folder])
    qtbot.waitUntil(lambda: w._status.photos == 4, timeout=WAIT)
    # the failed file is listed with its reason
    qtbot.waitUntil(lambda: w.panel.failures.topLevelItemCount() == 1, timeout=WAIT)
    item = w.panel.failures.topLevelItem(0)
    assert item.text(0) == "broken.jpg" and item.text(1)
    close_window(w)


def test_pause_and_resume_indexing(qtbot, tmp_path, settings, models_dir, photos):
    w = make_window(qtbot, settings, tmp_path, models_dir)
    w.index_folders([str(photos)])
    with qtbot.waitSignal(w.index_finished, timeout=WAIT):
        w.pause_indexing()
    assert w.panel.pause_btn.text() == "Resume"
    with qtbot.waitSignal(w.index_finished, timeout=WAIT):
        w.panel.pause_btn.click()
    qtbot.waitUntil(lambda: w._status.photos == 16, timeout=WAIT)
    assert w.library.catalog.integrity_check() == "ok"
    close_window(w)


def test_close_while_indexing_leaves_catalog_consistent(qtbot, tmp_path, settings, models_dir, photos):
    w = make_window(qtbot, settings, tmp_path, models_dir)
    w.index_folders([str(photos)])
    qtbot.waitUntil(lambda: w.index_bar.isVisible(), timeout=WAIT)
    close_window(w)
    from retllm_desktop.library import Library

    with Library(tmp_path / "library", models_dir=models_dir) as lib:
        assert lib.catalog.integrity_check() == "ok"
        summary = lib.index_roots()  # resumes where the closed window stopped
        assert lib.status().photos == 16
        assert not summary.cancelled


def test_rerank_updates_order_live(qtbot, tmp_path, settings, models_dir, photos):
    settings.rerank = True
    settings.rerank_k = 4
    w = make_window(qtbot, settings, tmp_path, models_dir)
    assert w._mllm_ok and w.rerank_check.isEnabled()
    index_folder(qtbot, w, photos)
    updates = []
    w.search_updated.connect(lambda u: updates.append((u.phase, u.done, [r.photo.id for r in u.visible], u)))
    labels = []
    w.search_updated.connect(lambda _u: labels.append(w.rerank_label.text()))
    search(qtbot, w, "red car")
    phases = [u[0] for u in updates]
    assert phases[0] == "coarse" and phases[-1] == "done", phases
    assert len(updates) >= 3
    assert any(t.startswith("Checking ") and "/4 with" in t for t in labels), labels
    final = updates[-1][3]
    checked = [r for r in final.results if r.fine is not None]
    assert len(checked) == 4
    # the grid shows the engine's final (reranked) order
    assert [r.photo.id for r in w.model.results()] == [r.photo.id for r in final.visible]
    # the preview says the verdict in words; the numbers only behind "Show scores"
    w.open_preview(0)
    p = w._preview
    assert p.result.fine is not None
    assert (
        p.fields["Match"].text() in ("✓ Likely match", "✗ Unlikely")
        and "P(True)" not in p.fields["Match"].text()
    )
    assert not p.fields["Scores"].isVisibleTo(p)
    p.details_btn.click()
    assert p.fields["Scores"].isVisibleTo(p) and "P(True)" in p.fields["Scores"].text()
    p.close()
    close_window(w)


def test_missing_models_explains_and_never_crashes(qtbot, tmp_path, photos):
    s = Settings.load(tmp_path / "gui.json")  # first run: the setup dialog opens by itself
    empty_models = tmp_path / "no-models"
    empty_models.mkdir()
    w = MainWindow(s, library=tmp_path / "library", models_dir=empty_models)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w._status is not None, timeout=WAIT)
    assert not w._clip_ok
    banner = w.banner.text()
    assert w.banner.isVisible() and "No search model is installed yet" in banner
    # words for a person: what is wrong and where to fix it, no folder layouts or developer commands
    assert "Set up models…" in banner and "href='setup'" in banner
    for word in ("clip.json", "*/", "python -m", "retllm_desktop", "retllm-desktop", "`"):
        assert word not in banner and word not in w.banner.toolTip(), word
    assert "python -m" not in w.status_label.text() and "clip.json" not in w.status_label.text()
    qtbot.waitUntil(lambda: w._setup is not None and w._setup.isVisible(), timeout=5000)
    assert "clip" in w._setup.problem.text().lower() or "model" in w._setup.problem.text().lower()
    w.search_edit.setText("red car")
    w.run_search()  # says what is missing instead of searching
    assert "search model" in w.status_label.text().lower() or "can't search" in w.status_label.text().lower()
    with qtbot.waitSignal(w.index_finished, timeout=WAIT):
        w.index_folders([str(photos)])
    assert "fail" in w.status_label.text().lower() or "model" in w.status_label.text().lower()
    # the panel says it short (the long engine message would widen the panel); the empty state links setup
    assert "search model is missing" in w.panel.stage.text()
    assert w.panel.width() < 400
    qtbot.waitUntil(lambda: "href='setup'" in w.empty.text(), timeout=WAIT)
    close_window(w)
    assert Settings.load(tmp_path / "gui.json").setup_done


def test_folder_added_without_models_is_indexed_once_models_arrive(qtbot, tmp_path, models_dir, photos):
    empty_models = tmp_path / "no-models"
    empty_models.mkdir()
    s = Settings.load(tmp_path / "gui.json")
    s.setup_done = True
    w = MainWindow(s, library=tmp_path / "library", models_dir=empty_models)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w._status is not None, timeout=WAIT)
    with qtbot.waitSignal(w.index_finished, timeout=WAIT):
        w.index_folders([str(photos)])
    assert w._status.photos == 0
    w._status = None
    with qtbot.waitSignal(w.index_finished, timeout=WAIT):  # the setup dialog reports a models folder
        w._models_changed(str(models_dir))
    qtbot.waitUntil(lambda: w._status is not None and w._status.photos == 16, timeout=WAIT)
    close_window(w)


def test_small_window_settings_dialog_and_failed_files(
    qtbot, tmp_path, settings, models_dir, photos, monkeypatch
):
    from retllm_desktop.gui import settings_dialog

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "not-a-photo.jpg").write_bytes(b"garbage")
    w = make_window(qtbot, settings, tmp_path, models_dir)
    # fits 1024 px next to the library panel: the date filter wraps onto its own line
    assert w.minimumSizeHint().width() <= 1024
    w.resize(1024, 700)
    qtbot.waitUntil(lambda: w.bar._row3.indexOf(w.bar._dates_box) >= 0, timeout=5000)
    w.resize(1600, 900)
    qtbot.waitUntil(lambda: w.bar._row2.indexOf(w.bar._dates_box) >= 0, timeout=5000)

    # failed files are listed with their full path (tooltip, details)
    with qtbot.waitSignal(w.index_finished, timeout=WAIT):
        w.index_folders([str(broken)])
    qtbot.waitUntil(lambda: w.panel.failures.topLevelItemCount() == 1, timeout=WAIT)
    item = w.panel.failures.topLevelItem(0)
    assert item.data(0, Qt.ItemDataRole.UserRole).endswith("not-a-photo.jpg")
    assert w.panel.failures.isVisibleTo(w.panel)

    # the settings dialog's "double-check top" reaches the spin box (it used to be overwritten)
    def fake_exec(self):
        self.k.setValue(3)
        return 1

    monkeypatch.setattr(settings_dialog.SettingsDialog, "exec", fake_exec)
    w.show_settings()
    assert w.k_spin.value() == 3 and w.settings.rerank_k == 3
    close_window(w)


def test_wrap_anywhere_keeps_long_names_inside(qtbot):
    from PySide6.QtWidgets import QLabel

    from retllm_desktop.gui.preview import wrap_anywhere

    fm = QLabel().fontMetrics()
    name = "/photos/IMG_20230815_" + "x" * 120 + ".jpg"
    text = wrap_anywhere(name, fm, 200)
    assert text.replace("\n", "") == name
    assert all(fm.horizontalAdvance(line) <= 200 for line in text.split("\n"))
    assert wrap_anywhere("short.jpg", fm, 200) == "short.jpg"


def test_settings_persist(tmp_path):
    s = Settings.load(tmp_path / "gui.json")
    s.rerank_k = 7
    s.ve = "always"
    s.min_match = 0.3
    s.threads = 2
    s.models_dir = "/somewhere/models"
    s.save()
    t = Settings.load(tmp_path / "gui.json")
    assert (t.rerank_k, t.ve, t.min_match, t.threads, t.models_dir) == (
        7,
        "always",
        0.3,
        2,
        "/somewhere/models",
    )
    (tmp_path / "bad.json").write_text("{ not json")
    assert Settings.load(tmp_path / "bad.json").rerank_k == 10


@dataclass
class _Photo:
    id: int
    path: str
    hash: str
    taken_at: str | None = None
    status: str = "ok"


@dataclass
class _Result:
    photo: _Photo
    score: float
    coarse_rank: int
    rank: int = 0
    fine: object = None
    hidden: bool = False


def test_grid_model_handles_10000_results(qtbot, tmp_path):
    from PySide6.QtWidgets import QListView

    thumbs = ThumbnailLoader(tmp_path / "thumbs", threads=1)
    model = ResultsModel(thumbs)
    results = [
        _Result(
            _Photo(i, str(tmp_path / f"missing-{i}.jpg"), f"{i:032x}", f"2020-01-{1 + i % 28:02d}T10:00:00"),
            1 - i / 1e4,
            i + 1,
        )
        for i in range(10_000)
    ]
    view = QListView()
    qtbot.addWidget(view)
    view.setViewMode(QListView.ViewMode.IconMode)
    view.setUniformItemSizes(True)
    view.setItemDelegate(ThumbDelegate(view))
    view.setGridSize(QSize(180, 210))
    view.setModel(model)
    view.resize(800, 600)
    view.show()
    t0 = time.perf_counter()
    model.set_results(results)
    view.setCurrentIndex(model.index(5, 0))
    qtbot.wait(50)
    model.set_results(list(reversed(results)), same_query=True)  # a rerank step: layout change
    qtbot.wait(50)
    elapsed = time.perf_counter() - t0
    assert model.rowCount() == 10_000
    assert view.currentIndex().row() == 10_000 - 6  # the current photo followed the reorder
    assert elapsed < 5.0
    # only the visible rows asked for thumbnails (they are missing files -> "broken", not a crash)
    assert thumbs.pending() + len(thumbs._broken) < 100
    view.close()
    thumbs.shutdown()


def test_demo_photos_have_dates_and_labels(tmp_path):
    from retllm_desktop.imaging import read_metadata

    paths = write_demo_photos(tmp_path, n=9, size=(200, 150))
    metas = [read_metadata(p) for p in paths]
    assert all(m.taken_at for m in metas)
    assert len({m.taken_at[:4] for m in metas}) >= 2
    assert paths[0].name == "001-red-car.jpg"


def test_run_app_parses_args(monkeypatch, tmp_path):
    from retllm_desktop.gui import app

    args, rest = app.build_parser().parse_known_args(["--library", str(tmp_path), "-platform", "offscreen"])
    assert args.library == str(tmp_path) and rest == ["-platform", "offscreen"]


def test_reopen_waits_for_running_work_on_a_worker(qtbot, tmp_path, settings, models_dir, photos):
    """Reopening after a settings change does not block the window while a task still runs."""
    import threading

    from retllm_desktop.gui.workers import CallWorker

    w = make_window(qtbot, settings, tmp_path, models_dir)
    index_folder(qtbot, w, photos)
    old = w.library
    release = threading.Event()
    w.libraries.pool.start(CallWorker(release.wait, 60))  # like an LLM check that ends after its candidate
    w.reopen_library()
    assert w.library is None and w.libraries.reopening  # returned at once: the wait runs on a worker
    qtbot.waitUntil(lambda: "Waiting for 1 task to stop" in w.status_label.text(), timeout=WAIT)
    w.search_edit.setText("red car")
    w.run_search()  # the window still answers
    assert w.status_label.text() == "The library is reopening…"
    with qtbot.waitSignal(w.library_opened, timeout=WAIT):
        release.set()
    assert w.library is not None and w.library is not old and not w.libraries.reopening
    qtbot.waitUntil(lambda: w._status is not None and w._status.photos == 16, timeout=WAIT)
    search(qtbot, w, "red car")
    assert w.model.rowCount() == 16
    close_window(w)


def test_advanced_settings_reach_the_engine(qtbot, tmp_path, settings, models_dir, monkeypatch):
    """The tuning knobs live in Settings, are edited in the settings dialog and reach Library/RerankOptions."""
    from retllm_desktop import config
    from retllm_desktop.gui import settings_dialog

    w = make_window(qtbot, settings, tmp_path, models_dir)
    lib = w.library
    assert (lib.mllm_cache_bytes, lib.mllm_kv_cache_bytes, lib.n_ctx) == (
        config.MLLM_CACHE_BYTES,
        config.MLLM_KV_CACHE_BYTES,
        config.LLM_N_CTX,
    )

    def only_rerank_knobs(self):
        self.ve_threshold.setValue(0.6)
        self.band_low.setValue(0.4)
        return 1

    monkeypatch.setattr(settings_dialog.SettingsDialog, "exec", only_rerank_knobs)
    w.show_settings()
    assert w.library is lib  # nothing the open library depends on changed: no reopen
    w.rerank_check.setChecked(True)
    opts = w._rerank_options()
    assert (opts.ve_threshold, opts.ve_band) == (
        pytest.approx(0.6),
        (pytest.approx(0.4), pytest.approx(0.65)),
    )

    def engine_knobs(self):
        self.emb_cache.setValue(1.0)
        self.n_ctx.setValue(2048)
        self.decoders.setValue(1)
        self.thumbs.setValue(300)
        return 1

    monkeypatch.setattr(settings_dialog.SettingsDialog, "exec", engine_knobs)
    with qtbot.waitSignal(w.library_opened, timeout=WAIT):
        w.show_settings()
    lib = w.library
    assert (lib.mllm_cache_bytes, lib.n_ctx, lib.decode_workers) == (1024**3, 2048, 1)
    assert lib.mllm_kv_cache_bytes == config.MLLM_KV_CACHE_BYTES  # untouched: exactly as before
    assert w.thumbs._memory_items == 300
    saved = Settings.load(settings.path)
    assert (saved.n_ctx, saved.ve_band, saved.thumb_memory_items) == (2048, (0.4, 0.65), 300)
    close_window(w)


def test_watching_and_removing_a_folder(qtbot, tmp_path, settings, models_dir, photos):
    """After indexing the folders are watched; removing one runs on a worker and updates the window."""
    w = make_window(qtbot, settings, tmp_path, models_dir)
    index_folder(qtbot, w, photos)
    qtbot.waitUntil(lambda: w.watch_label.text() == "Watching 1 folder", timeout=WAIT)
    assert w.libraries.watcher is not None
    with qtbot.waitSignal(w.status_refreshed, timeout=WAIT, check_params_cb=lambda st: st.photos == 0):
        w.remove_folder(str(photos), confirm=False)
    # (a status refresh already in flight can report the emptied catalog before the removal's own line)
    qtbot.waitUntil(
        lambda: w.status_label.text() == f"Removed {photos} (16 photos left the library)", timeout=WAIT
    )
    qtbot.waitUntil(lambda: "No folders yet" in w.panel.folders.item(0).text(), timeout=WAIT)
    assert w.panel.folders.count() == 1 and "No folders yet" in w.panel.folders.item(0).text()
    assert photos.is_dir() and len(list(photos.glob("*.jpg"))) == 16  # the photos themselves are untouched
    close_window(w)
