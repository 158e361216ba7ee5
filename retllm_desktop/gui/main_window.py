"""The main window: lays out the search bar, the result grid, the library panel and the status bar.

The flows live in controllers: ``SearchController`` (query → coarse → live rerank → results model) and
``LibraryController`` (open/close/reopen, index, remove, watch, status); the window turns user actions
into their calls and their signals into what the widgets show. (Over 600 lines because it wires some
thirty widgets, menus and drag-and-drop to those flows; each method is one user action or one signal.)
"""

from __future__ import annotations

import html
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QByteArray, QModelIndex, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QIcon, QImage, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDockWidget,
    QLabel,
    QListView,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from .. import config
from ..errors import RetllmError
from ..imaging import is_supported
from ..rerank import RerankOptions
from ..search import Query
from . import wording
from .index_state import IndexState
from .library_controller import LibraryController
from .library_panel import LibraryPanel, format_eta
from .places_panel import PlacesPanel
from .prepare_controller import PrepareController, about_seconds
from .preview import PreviewDialog
from .qtcompat import emit
from .results_model import ResultsModel, ThumbDelegate
from .search_bar import SearchBar
from .search_controller import SearchController
from .selection_actions import DeleteKey, add_selection_actions
from .settings import Settings
from .thumbnails import ThumbnailLoader, load_qimage
from .timeline_view import TimelineView
from .workers import CallWorker, WorkerPool

if TYPE_CHECKING:
    from ..indexer import IndexSummary
    from ..library import Library, LibraryStatus
    from ..search import SearchUpdate
    from .setup_dialog import SetupDialog


def llm_state(status: LibraryStatus) -> tuple[bool, str | None]:
    """Whether results can be double-checked, and if not, why (one line for a tooltip or the banner)."""
    if status.mllm_ready:
        return True, None
    return False, wording.llm_problem(status)


class MainWindow(QMainWindow):
    search_updated = Signal(object)  # every SearchUpdate shown (tests and scripts wait on it)
    search_finished = Signal()
    index_finished = Signal(object)
    status_refreshed = Signal(object)
    library_opened = Signal(object)  # after the first open and after every reopen
    timeline_shown = Signal(int)  # photos the timeline shows (no query)

    def __init__(
        self,
        settings: Settings | None = None,
        library: str | os.PathLike[str] | None = None,
        models_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings or Settings.load()
        self._library_arg = str(library) if library else None
        self._models_arg = str(models_dir) if models_dir else None
        self._closing = False
        self._clip_ok = False
        self._clip_error: str | None = None
        self._mllm_ok = False
        self._mllm_msg: str | None = None
        self._status: LibraryStatus | None = None
        self._query_image: str | None = None
        self._ignored: list[str] = []  # understood phrases the user removed (chips): searched as typed
        self._ignored_for = ""  # ...for this query text (a new text starts over)
        self._place_filter: tuple[str, str] | None = None  # (key, label) picked in the Places list
        self._eta: tuple[str, float, int] = ("", 0.0, 0)
        self._preview: PreviewDialog | None = None
        self._setup: SetupDialog | None = None
        self._index_when_ready = False
        self.last_index_summary: IndexSummary | None = None
        self.index_state = IndexState()  # what a running index is doing (labels must not say "0 photos")
        self._status_asked_at = 0.0
        self._activity_shown = ""  # the indexing line last put in the status bar (replaced as it moves)
        self._index_message = ""  # the last "Indexed: …" line, replaced once later work changes the library
        self._index_photos: int | None = None  # the library's size that line was about
        self._removing = False  # a folder removal is running (its own line comes when it ends)

        self.setObjectName("mainWindow")
        self.setWindowTitle("RetLLM Desktop")
        self.setAcceptDrops(True)
        icon_path = config.resource_path("icons/app.svg")
        if icon_path.is_file():
            self.setWindowIcon(QIcon(str(icon_path)))

        # Two threads: a new query's coarse results must not wait for the previous query's LLM check in
        # flight (cancelled, it ends after that candidate); the LLM's own lock serialises the rest.
        self.search_pool = WorkerPool(2, self)
        self.misc_pool = WorkerPool(1, self)  # preview images, chip thumbnails
        self.thumbs = ThumbnailLoader(
            None, threads=2, memory_items=self.settings.thumb_memory_items, parent=self
        )
        self.libraries = LibraryController(self.search_pool, self)
        self.prepare = PrepareController(self)  # the prepare pass, in the background while idle
        self.prepare.enabled = self.settings.prepare

        self._build_search_bar()
        self._build_grid()
        self.searches = SearchController(self.model, self.search_pool, self)
        self._build_panel()
        self._build_status_bar()
        self._build_menus()
        self._restore_settings()
        self._connect_controllers()
        self.open_library()

    @property
    def library(self) -> Library | None:
        return self.libraries.library

    # ------------------------------------------------------------------------------------------------
    # construction
    def _build_search_bar(self) -> None:
        bar = self.bar = SearchBar(self.settings, self)
        bar.submitted.connect(self.run_search)
        bar.escape.connect(self.clear_search)
        bar.options_changed.connect(self._options_changed)
        bar.sort_changed.connect(self._sort_changed)
        bar.setup_link.connect(self.show_setup)
        bar.understood.removed.connect(self._chip_removed)
        bar.chip.removed.connect(self.clear_query_image)
        # The widgets the window reads and tests drive.
        self.search_edit, self.chip, self.banner = bar.search_edit, bar.chip, bar.banner
        self.rerank_check, self.k_spin, self.only_check = bar.rerank_check, bar.k_spin, bar.only_check
        self.sort_combo, self.date_check = bar.sort_combo, bar.date_check
        self.date_from, self.date_to = bar.date_from, bar.date_to

    def _build_grid(self) -> None:
        self.model = ResultsModel(self.thumbs, self)
        self.delegate = ThumbDelegate(self)
        self.view = QListView(self)
        self.view.setObjectName("results")
        self.view.setAccessibleName("Results")
        self.view.setViewMode(QListView.ViewMode.IconMode)
        self.view.setResizeMode(QListView.ResizeMode.Adjust)
        self.view.setMovement(QListView.Movement.Static)
        self.view.setUniformItemSizes(True)
        self.view.setLayoutMode(QListView.LayoutMode.Batched)
        self.view.setBatchSize(500)
        self.view.setSpacing(2)
        self.view.setWrapping(True)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.view.setMouseTracking(True)
        self.view.setDragEnabled(True)
        self.view.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.view.setModel(self.model)
        self.view.setItemDelegate(self.delegate)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._context_menu)
        self.view.doubleClicked.connect(lambda idx: self.open_preview(idx.row()))
        for key in (Qt.Key.Key_Space, Qt.Key.Key_Return, Qt.Key.Key_Enter):
            sc = QShortcut(QKeySequence(key), self.view)
            sc.setContext(Qt.ShortcutContext.WidgetShortcut)
            sc.activated.connect(self.open_preview)
        self.model.layoutChanged.connect(self._sync_preview_row)

        self.empty = QLabel(self)
        self.empty.setObjectName("emptyState")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        self.empty.setTextFormat(Qt.TextFormat.RichText)
        self.empty.setAccessibleName("Hint")
        self.empty.setOpenExternalLinks(False)
        self.empty.linkActivated.connect(self._empty_link)
        self.timeline_view = TimelineView(self.thumbs, self._fetch_photos, self.misc_pool, self)
        self.timeline_view.preview_requested.connect(self._open_timeline_preview)
        self.timeline_view.find_similar.connect(self.find_similar)
        self.timeline_view.message.connect(lambda text: self.status_label.setText(text))
        self.timeline_view.selection_count.connect(self._show_selection_count)
        self.view.selectionModel().selectionChanged.connect(
            lambda *_: self._show_selection_count(len(self._selected_result_paths()))
        )
        self._delete_key = DeleteKey(self.view, self._selected_result_paths)
        self._timeline_gen = 0
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.empty)
        self.stack.addWidget(self.view)
        self.stack.addWidget(self.timeline_view)
        self._apply_thumb_size()
        central = QWidget(self)
        lay = QVBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.bar)
        lay.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self._show_empty("Opening the library…")

    def _build_panel(self) -> None:
        self.panel = LibraryPanel(self)
        self.panel.add_requested.connect(lambda p: self.index_folders([p]))
        self.panel.remove_requested.connect(self.remove_folder)
        self.panel.rescan_requested.connect(lambda: self.index_folders(None))
        self.panel.pause_requested.connect(self.pause_indexing)
        self.panel.resume_requested.connect(lambda: self.index_folders(None))
        self.panel.cancel_requested.connect(self.cancel_indexing)
        self.panel.setup_requested.connect(self.show_setup)
        self.dock = QDockWidget("Library", self)
        self.dock.setObjectName("libraryDock")
        self.dock.setWidget(self.panel)
        self.dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetClosable
        )
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.dock)
        self.places_panel = PlacesPanel(self)
        self.places_panel.place_chosen.connect(self.filter_by_place)
        self.places_dock = QDockWidget("Places", self)
        self.places_dock.setObjectName("placesDock")
        self.places_dock.setWidget(self.places_panel)
        self.places_dock.setFeatures(self.dock.features())
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.places_dock)

    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.status_label = QLabel("", self)
        self.status_label.setAccessibleName("Status")
        # A long message (an error with paths) is cut off rather than forcing the window wider.
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.status_label.setMinimumWidth(1)
        self.rerank_label = QLabel("", self)
        self.rerank_label.setAccessibleName("Double-check progress")
        self.next_btn = QPushButton("Check the next 10", self)
        self.next_btn.setToolTip("Let the model double-check the next photos down the list")
        self.next_btn.setAccessibleName("Check the next photos")
        self.next_btn.clicked.connect(self.check_next)
        self.rerank_bar = QProgressBar(self)
        self.rerank_bar.setAccessibleName("Double-check progress bar")
        self.rerank_bar.setMaximumWidth(120)
        self.rerank_bar.setTextVisible(False)
        self.index_label = QLabel("", self)
        self.index_label.setAccessibleName("Indexing status")
        self.index_bar = QProgressBar(self)
        self.index_bar.setAccessibleName("Indexing progress bar")
        self.index_bar.setMaximumWidth(140)
        self.watch_label = QLabel("", self)
        self.watch_label.setAccessibleName("Folder watching")
        self.count_label = QLabel("", self)
        self.count_label.setAccessibleName("Library size")
        self.selection_label = QLabel("", self)
        self.selection_label.setAccessibleName("Selected photos")
        self.selection_label.setVisible(False)
        sb.addWidget(self.status_label, 1)
        for w in (
            self.rerank_label,
            self.next_btn,
            self.rerank_bar,
            self.index_label,
            self.index_bar,
            self.watch_label,
            self.selection_label,
            self.count_label,
        ):
            sb.addPermanentWidget(w)
        for w in (self.rerank_label, self.next_btn, self.rerank_bar, self.index_label, self.index_bar):
            w.setVisible(False)
        sb.addPermanentWidget(self.prepare.label)

    def _build_menus(self) -> None:
        def action(menu: QMenu, text: str, slot, shortcut: Any = None) -> QAction:
            a = QAction(text, self)
            if shortcut is not None:
                a.setShortcut(QKeySequence(shortcut))
            a.triggered.connect(slot)
            menu.addAction(a)
            return a

        m = self.menuBar().addMenu("&File")
        action(m, "&Add folder…", self.panel.choose_folder, QKeySequence.StandardKey.Open)
        action(m, "&Re-scan folders", lambda: self.index_folders(None), "F5")
        m.addSeparator()
        action(m, "Set up &models…", self.show_setup)
        action(m, "&Settings…", self.show_settings, QKeySequence.StandardKey.Preferences)
        m.addSeparator()
        action(m, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        m = self.menuBar().addMenu("&Search")
        action(m, "&Find…", self.focus_search, QKeySequence.StandardKey.Find)
        action(m, "Search &field", self.focus_search, "Ctrl+L")
        action(m, "&Preview", lambda: self.open_preview(), None)
        action(m, "Find &similar", lambda: self.find_similar(), "Ctrl+Shift+S")
        m = self.menuBar().addMenu("&View")
        m.addAction(self.dock.toggleViewAction())
        m.addAction(self.places_dock.toggleViewAction())
        action(m, "&Larger thumbnails", lambda: self.zoom(1), QKeySequence.StandardKey.ZoomIn)
        action(m, "&Smaller thumbnails", lambda: self.zoom(-1), QKeySequence.StandardKey.ZoomOut)
        m = self.menuBar().addMenu("&Help")
        action(m, "&About", self._about)

    def _restore_settings(self) -> None:
        s = self.settings
        if s.geometry:
            self.restoreGeometry(QByteArray.fromBase64(s.geometry.encode()))
        else:
            self.resize(1280, 820)
        if s.window_state:
            self.restoreState(QByteArray.fromBase64(s.window_state.encode()))
        else:  # the Places tree gets room for a trip's countries and cities, not 4 rows
            self.resizeDocks([self.dock, self.places_dock], [420, 340], Qt.Orientation.Vertical)

    def _connect_controllers(self) -> None:
        lc = self.libraries
        lc.opened.connect(self._on_opened)
        lc.open_failed.connect(self._on_open_failed)
        lc.reopen_progress.connect(self._show_empty)
        lc.reopen_progress.connect(self.status_label.setText)
        lc.status_ready.connect(self._on_status)
        lc.status_failed.connect(lambda msg: self.status_label.setText(f"Library status unavailable: {msg}"))
        lc.index_started.connect(self._on_index_started)
        lc.index_progress.connect(self._on_index_progress)
        lc.index_done.connect(self._on_index_done)
        lc.removed.connect(self._on_removed)
        lc.remove_failed.connect(self._on_remove_failed)
        lc.watch_changed.connect(self._on_watch_changed)
        lc.watch_batch.connect(self._on_library_changed)
        self.searches.updated.connect(self._on_search_update)
        self.searches.finished.connect(self._on_search_done)

    # ------------------------------------------------------------------------------------------------
    # library
    def library_path(self) -> str:
        return str(config.library_dir(self._library_arg or self.settings.library))

    def models_path(self) -> str:
        return str(config.models_dir(self._models_arg or self.settings.models_dir))

    def open_library(self) -> None:
        self.libraries.open(self.library_path(), self.models_path(), self.settings)

    def reopen_library(self) -> None:
        """Close and open again with the current settings, on a worker: the window stays responsive."""
        self.cancel_search()
        self.prepare.stop()
        self.searches.clear()
        self.thumbs.invalidate()
        self._status = None
        self._show_empty("Closing the library…")
        self.status_label.setText("Closing the library…")
        self.libraries.reopen(self.library_path(), self.models_path(), self.settings)

    def _on_opened(self, lib: Library) -> None:
        self.thumbs.set_cache_dir(Path(lib.path) / "cache" / "thumbnails")
        self.setWindowTitle(f"RetLLM Desktop — {lib.path}")
        self.status_label.setText("Loading models…")
        self._show_empty("Opening the library…")
        emit(self.library_opened, lib)
        self.refresh_status()

    def _on_open_failed(self, message: str) -> None:
        self._show_empty(f"The library could not be opened: {message}")
        self._set_banner(
            f"The library could not be opened: {html.escape(message)}. Choose another one in File ▸ Settings."
        )

    def refresh_status(self) -> None:
        if not self._closing:
            self.libraries.refresh_status()

    def _on_status(self, st: LibraryStatus) -> None:
        if self._closing:
            return
        self._status = st
        self._clip_ok = st.clip_error is None
        self._clip_error = st.clip_error
        self._mllm_ok, self._mllm_msg = llm_state(st)
        if self._index_message and not self.index_state.running:
            if self._index_photos is None:
                self._index_photos = st.photos  # the first status after the run: what "Indexed" describes
            elif st.photos != self._index_photos:  # photos came or went since: that line is history
                now = f"Up to date — {st.photos:,} photo{'s' if st.photos != 1 else ''}"
                if self.panel.stage.text() == self._index_message:
                    self.panel.set_message(now)
                if self.status_label.text() == self._index_message and not self._removing:
                    self.status_label.setText(now)
                self._index_message, self._index_photos = "", None
        known = [r["path"] for r in st.roots]
        self.panel.set_status(st, adding=self.index_state.pending_folders(known))
        self.places_panel.set_places(st.places)
        n = st.photos
        self.count_label.setText(
            self.index_state.count_text(n)
            if self.index_state.running
            else f"{n:,} photo{'s' if n != 1 else ''}"
        )
        self.bar.set_rerank_available(self._mllm_ok, self._mllm_msg)
        self.bar.show_date_range(*st.taken_range)
        if not self._clip_ok:
            self._set_banner(*wording.clip_banner(st))
            self.status_label.setText(wording.clip_status_line(st))
            if not self.settings.setup_done and not self._closing:
                QTimer.singleShot(0, self.show_setup)
        elif not self._mllm_ok and self.rerank_check.isChecked():
            self._set_banner(
                f"Results won't be double-checked: {self._mllm_msg}. &nbsp; <a href='setup'>Set up models…</a>"
            )
        else:
            self._set_banner(None)
        if self._clip_ok and self.status_label.text() == "Loading models…":
            self.status_label.setText(self.index_state.activity() if self.index_state.running else "Ready")
        if self._clip_ok and self._index_when_ready:
            self._index_when_ready = False
            if any(not r.get("photos") for r in st.roots) and not self.libraries.indexing():
                QTimer.singleShot(0, lambda: self.index_folders(None))
        self._show_hint()
        if self._mllm_ok and not self.libraries.indexing():
            self.prepare.start(self.library)
        emit(self.status_refreshed, st)

    def _show_hint(self) -> None:
        """The empty grid says what to do next (add photos, search them, install models)."""
        st = self._status
        if st is None or self.model.rowCount() or self.searches.query is not None:
            return
        if self.index_state.running and not st.photos:
            self._show_empty(self.index_state.empty_html())
        elif not st.roots and not self.index_state.adding:
            self._show_empty(
                "<h2>Add your photos</h2>Drop a folder here, or <a href='add'>add a folder…</a> (Ctrl+O).<br>"
                "Photos are indexed on this computer and never leave it."
            )
        elif st.photos:
            self.show_timeline()  # every photo app opens on the photos: newest first
        else:
            self._show_empty(
                "<h2>Models needed</h2>Your photos can be searched once the search model is installed."
                "<br><br><a href='setup'>Set up models…</a>"
            )

    def _set_banner(self, html: str | None, details: str = "") -> None:
        self.bar.set_banner(html)
        self.banner.setToolTip(details)

    def _empty_link(self, link: str) -> None:
        if link == "add":
            self.panel.choose_folder()
        elif link == "setup":
            self.show_setup()
        elif link == "all-photos":  # the timeline's filters left nothing: drop them
            self._place_filter = None
            self.places_panel.clear_choice()
            self.bar.understood.set_chips([], None)
            self.date_check.setChecked(False)
            self.show_timeline()

    def _show_empty(self, html: str) -> None:
        self.empty.setText(html)
        self.stack.setCurrentWidget(self.empty)

    # ------------------------------------------------------------------------------------------------
    # indexing
    def index_folders(self, paths: list[str] | None = None) -> None:
        if self._closing:
            return
        self.index_state.queue([str(Path(p).expanduser()) for p in paths or []])
        if not self.libraries.index(paths) and paths and self.libraries.indexing():
            self.status_label.setText(f"Will add {', '.join(os.path.basename(p) for p in paths)} next")

    def _on_index_started(self) -> None:
        self.prepare.stop()  # the CPU goes to the new photos first; the pass resumes after
        self._eta = ("", 0.0, 0)
        self.index_state.start()
        if self._status is not None:  # the folders being added show at once, and the grid says so
            self._on_status(self._status)
        self.panel.set_indexing(True)
        self.panel.set_progress("scanning", 0, 0)
        self.index_label.setText("Scanning…")
        self.index_label.setVisible(True)
        self.index_bar.setRange(0, 0)
        self.index_bar.setVisible(True)

    def _on_index_progress(self, stage: str, done: int, total: int) -> None:
        if self._closing:
            return
        now = time.monotonic()
        if stage != self._eta[0]:
            self._eta = (stage, now, done)
        _, t0, d0 = self._eta
        eta = ""
        if total > 0 and done > d0 and now - t0 > 0.5:
            rate = (done - d0) / (now - t0)
            eta = format_eta((total - done) / rate)
        self.panel.set_progress(stage, done, total, eta)
        self.index_state.progress(stage, done, total)
        if self._status is not None:
            self.count_label.setText(self.index_state.count_text(self._status.photos))
            if self.status_label.text() in ("Ready", "Loading models…", self._activity_shown):
                self._activity_shown = self.index_state.activity()
                self.status_label.setText(self._activity_shown)
            if not self._status.photos:
                self._show_hint()
        if stage == "embedding" and done and now - self._status_asked_at > 3.0:
            self._status_asked_at = now  # batches are committed: counts, folders and places catch up
            self.refresh_status()
        if total > 0:
            self.index_bar.setRange(0, total)
            self.index_bar.setValue(min(done, total))
            what = "Reading text" if stage == "reading text" else "Indexing"
            self.index_label.setText(f"{what} {done:,}/{total:,}" + (f" · {eta}" if eta else ""))
        else:
            self.index_bar.setRange(0, 0)
            self.index_label.setText(f"Scanning… {done:,}")

    def _on_index_done(self, summary: IndexSummary | None, error: str | None, cancelled: bool) -> None:
        self.index_state.finish(list(self.libraries.pending))
        self.index_label.setVisible(False)
        self.index_bar.setVisible(False)
        paused = self.libraries.index_paused
        self.panel.set_indexing(False, paused=paused)
        self.last_index_summary = summary
        if error is not None:
            if not self._clip_ok:  # the long engine message is in the banner and the setup dialog
                self.panel.set_message("Indexing stopped: the search model is missing (see Models…).")
            else:
                self.panel.set_message(f"Indexing stopped: {error}")
            self.panel.stage.setToolTip(error)
            self.status_label.setText(f"Indexing failed: {error}")
        elif summary is not None:
            if cancelled:
                text = (
                    "Paused — Resume continues where it stopped"
                    if paused
                    else "Indexing cancelled (finished photos are kept)"
                )
            else:
                parts = [f"{summary.added:,} added"]
                for name in ("updated", "moved", "removed", "failed"):
                    v = getattr(summary, name, 0)
                    if v:
                        parts.append(f"{v:,} {name}")
                text = f"Indexed: {', '.join(parts)} in {summary.seconds:.1f}s"
            self.panel.set_message(text)
            self.status_label.setText(text)
            self._index_message, self._index_photos = text, None
        self.refresh_status()
        emit(self.index_finished, summary)
        more = bool(self.libraries.pending) and not paused
        if not more and error is None and not paused and not cancelled and self.searches.query is not None:
            self.run_search()

    def pause_indexing(self) -> None:
        if self.libraries.pause_indexing():
            self.panel.set_message("Pausing after the current batch…")

    def cancel_indexing(self) -> None:
        if self.libraries.cancel_indexing():
            self.panel.set_message("Cancelling after the current batch…")

    def remove_folder(self, path: str, confirm: bool = True) -> None:
        if self.library is None:
            return
        if confirm:
            answer = QMessageBox.question(
                self,
                "Remove folder",
                f"Remove {path} from the library?\nThe photos on disk are not touched.",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        self._removing = True
        self.libraries.remove_folder(path)

    def _on_library_changed(self) -> None:
        """Photos may have come or gone (the watcher, a removal): fresh counts and lines."""
        self.refresh_status()

    def _on_removed(self, path: str, n: int) -> None:
        self._removing = False
        self.status_label.setText(f"Removed {path} ({n:,} photos left the library)")
        self._on_library_changed()
        if self.searches.query is not None:
            self.run_search()

    def _on_remove_failed(self, path: str, message: str) -> None:
        self._removing = False
        self.status_label.setText(f"Could not remove {path}: {message}")

    def _on_watch_changed(self, label: str, tooltip: str) -> None:
        self.watch_label.setText(label)
        if tooltip:
            self.watch_label.setToolTip(tooltip)

    # ------------------------------------------------------------------------------------------------
    # search
    def focus_search(self) -> None:
        self.search_edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search_edit.selectAll()

    def clear_search(self) -> None:
        self._place_filter = None
        self.bar.understood.set_chips([], None)
        if self.search_edit.text():
            self.search_edit.clear()
        elif self._query_image:
            self.clear_query_image(search=False)
        self.cancel_search()
        self.searches.clear()
        self.status_label.setText("")
        self.rerank_label.setVisible(False)  # "Checked 10/10" was about the search that is gone
        self.next_btn.setVisible(False)
        self._show_hint()

    def set_query_image(self, path: str, search: bool = True) -> None:
        img_path = self._query_image = str(Path(path).expanduser().resolve())
        self.bar.set_query_image(img_path)
        w = CallWorker(load_qimage, img_path, 64)
        w.signals.finished.connect(
            lambda img: (
                self.chip.icon.setPixmap(QPixmap.fromImage(img))
                if isinstance(img, QImage) and self._query_image == img_path
                else None
            )
        )
        self.misc_pool.start(w)
        if search:
            self.run_search()

    def clear_query_image(self, search: bool = True) -> None:
        self._query_image = None
        self.bar.set_query_image(None)
        if search and self.search_edit.text().strip():
            self.run_search()
        elif search:
            self.clear_search()

    def find_similar(self, path: str | None = None) -> None:
        if path is None:
            r = self.model.result(self.view.currentIndex().row())
            if r is None:
                return
            path = r.photo.path
        self.search_edit.clear()
        self.set_query_image(path)

    def _rerank_options(self) -> RerankOptions | None:
        if not self.rerank_check.isChecked() or not self._mllm_ok:
            return None
        s = self.settings
        # "Only true matches": P(True) > P(False), and what the model did not check is hidden too
        return RerankOptions(
            k=self.k_spin.value(),
            ve=s.ve,
            only_true=self.only_check.isChecked(),
            ve_threshold=s.ve_threshold,
            ve_band=s.ve_band,
        )

    def check_next(self) -> None:
        """Extend the double-check down the list by the number of photos the spin box says."""
        if self.library is not None and self.searches.check_next(
            self.library, self.settings.top, self.k_spin.value()
        ):
            self.next_btn.setVisible(False)
            self.status_label.setText("Checking more…")

    def cancel_search(self) -> None:
        self.next_btn.setVisible(False)
        self.searches.cancel()
        self.rerank_label.setVisible(False)
        self.rerank_bar.setVisible(False)

    def run_search(self) -> None:
        if self._closing:
            return
        text = self.search_edit.text().strip()
        if not text and not self._query_image and not self._place_filter:
            self.clear_search()
            return
        if not text and not self._query_image:  # only a place: its photos, newest first
            self.cancel_search()
            self.searches.clear()
            self.rerank_label.setVisible(False)
            self.next_btn.setVisible(False)
            self.bar.understood.set_chips([("place-filter", "In ", self._place_filter[1])], None)
            self.show_timeline()
            return
        if self.library is None:
            reopening = self.libraries.reopening
            self.status_label.setText("The library is reopening…" if reopening else "No library is open")
            return
        if not self._clip_ok and self._status is not None:
            self.status_label.setText(wording.clip_status_line(self._status))
            self._set_banner(*wording.clip_banner(self._status))
            return
        date_from, date_to = self.bar.date_filter()
        if text != self._ignored_for:  # a new query: understand all of it again
            self._ignored, self._ignored_for = [], text
        literal = False
        if not text and not self._query_image and self._place_filter:
            text, literal = self._place_filter[1], True  # only a place: its name ranks its photos
        try:
            query = Query(
                text=text or None,
                image=self._query_image,
                image_weight=self.settings.image_weight,
                date_from=date_from,
                date_to=date_to,
                places=(self._place_filter[0],) if self._place_filter else (),
                literal=literal,
                ignore=tuple(self._ignored),
                use_text=self.settings.read_text,
            )
        except RetllmError as e:
            self.status_label.setText(str(e))
            return
        self.cancel_search()
        self.status_label.setText("Searching…")
        self.searches.start(self.library, query, self.settings.top, self._rerank_options())

    def filter_by_place(self, key: str, label: str) -> None:
        """A place picked in the Places list: only its photos, with whatever the search field says."""
        self._place_filter = (key, label)
        self.run_search()

    def _chip_removed(self, chip_id: str) -> None:
        if chip_id == "place-filter":
            self._place_filter = None
            self.places_panel.clear_choice()
        else:
            self._ignored.append(chip_id)
        if self.search_edit.text().strip() or self._query_image or self._place_filter:
            self.run_search()
        else:
            self.clear_search()

    def _show_understood(self, upd: SearchUpdate) -> None:
        chips: list[tuple[str, str, str]] = []
        if self._place_filter:
            chips.append(("place-filter", "In ", self._place_filter[1]))
        u = upd.understood or {}
        note = None
        if u.get("literal") and u.get("message"):
            note = u["message"][0].upper() + u["message"][1:] + "."
        else:
            for c in u.get("chips", []):
                chips.append((c["source"], "", c["label"]))
        self.bar.understood.set_chips(chips, note)

    def _on_search_update(self, upd: SearchUpdate, first: bool) -> None:
        if self._closing:
            return
        if first:
            self._show_understood(upd)
        if upd.results:
            self.stack.setCurrentWidget(self.view)
            if first:
                self.view.scrollToTop()
                self.view.setCurrentIndex(self.model.index(0, 0))
        else:
            self._show_empty(
                f"<h2>No photos found</h2>{upd.message or 'Try other words, or widen the date range.'}"
            )
        n = len(upd.visible)
        hidden = len(upd.results) - n
        ms = upd.timings_ms.get("coarse_total")
        text = f"{n:,} photo{'s' if n != 1 else ''}"
        if ms is not None and first:
            text += f" in {ms:.0f} ms"
        rerank = self.searches.rerank
        if hidden:
            only = rerank is not None and rerank.only_true
            text += f" · {hidden} hidden ({'not matching or not checked' if only else 'not matching'})"
        if rerank is not None and upd.results:
            self._show_rerank_progress(upd, rerank)
        if upd.message and upd.results:
            text += f" · {upd.message}"
        if upd.llm_error:  # the coarse results stand; say why they are not checked
            self._set_banner(
                f"Results weren't double-checked: {html.escape(upd.llm_error)}. &nbsp; "
                "<a href='setup'>Set up models…</a>"
            )
        elif upd.done and self.banner.text().startswith("Results weren't double-checked"):
            self._set_banner(None)  # the LLM works again
        self.status_label.setText(text)
        emit(self.search_updated, upd)

    def _show_rerank_progress(self, upd: SearchUpdate, rerank: RerankOptions) -> None:
        model_name = (
            upd.model or (self._status.mllm_model if self._status is not None else None) or "the model"
        )
        if upd.phase == "done":  # all the photos checked so far, not just the last batch ("Check the next")
            checked = sum(r.fine is not None for r in upd.results)
            self.rerank_label.setText(
                f"Checked {checked:,} photo{'s' if checked != 1 else ''} with {model_name}"
            )
            self.rerank_bar.setVisible(False)
        else:
            total = upd.total or min(rerank.k, len(upd.results))
            left = f", {about_seconds(upd.eta_s)} left" if upd.eta_s is not None else ""
            self.rerank_label.setText(f"Checking {upd.done}/{total} with {model_name}{left}…")
            self.rerank_bar.setRange(0, max(total, 1))
            self.rerank_bar.setValue(upd.done)
            self.rerank_bar.setVisible(True)
        self.rerank_label.setVisible(True)

    def _on_search_done(self, note: str | None, error: str | None) -> None:
        if self._closing:
            return
        self.rerank_bar.setVisible(False)
        if error is not None:
            self.status_label.setText(f"Search failed: {error}")
            self.rerank_label.setVisible(False)
            if self.model.rowCount() == 0:
                self._show_empty(f"<h2>Search failed</h2>{error}")
        elif note is not None:
            self.rerank_label.setText(note)
            self.rerank_label.setToolTip(note)
            self.rerank_label.setVisible(True)
        elif self.searches.rerank is not None and self.rerank_label.isVisible():
            self.rerank_label.setText(self.rerank_label.text().replace("Checking", "Checked").rstrip("…"))
        self.next_btn.setText(f"Check the next {self.k_spin.value()}")
        self.next_btn.setVisible(error is None and self.searches.can_check_more())
        emit(self.search_finished)

    def _options_changed(self) -> None:
        s = self.settings
        s.rerank = self.rerank_check.isChecked()
        s.rerank_k = self.k_spin.value()
        s.only_matches = self.only_check.isChecked()
        if self.searches.query is not None:
            self.run_search()
        elif not self.search_edit.text().strip() and not self._query_image:
            self.show_timeline()  # the date filter applies to the timeline too

    def _sort_changed(self, mode: str) -> None:
        self.settings.sort = mode
        self.model.set_sort(mode)

    # ------------------------------------------------------------------------------------------------
    def open_preview(self, row: int | None = None) -> PreviewDialog | None:
        if row is None or isinstance(row, bool):
            row = self.view.currentIndex().row()
        if self.model.result(row) is None or self.library is None:
            return None
        if self._preview is not None:
            self._preview.query = self.searches.query
            self._preview.show_row(row)
            self._preview.raise_()
            self._preview.activateWindow()
            return self._preview
        p = PreviewDialog(
            self,
            self.model.result,
            self.model.rowCount,
            row,
            self.library,
            self.searches.query,
            self.misc_pool,
            self.search_pool,
        )
        p.row_changed.connect(self._preview_moved)
        p.find_similar.connect(self.find_similar)
        p.finished.connect(self._preview_closed)
        self._preview = p
        p.show()
        return p

    def _preview_closed(self, *_: Any) -> None:
        p, self._preview = self._preview, None
        if p is not None:
            p.deleteLater()
        self.view.setFocus()

    def _preview_moved(self, row: int) -> None:
        idx = self.model.index(row, 0)
        self.view.setCurrentIndex(idx)
        self.view.scrollTo(idx)

    def _sync_preview_row(self) -> None:
        p = self._preview
        if p is None:
            return
        idx = self.view.currentIndex()  # persistent: follows the photo through reorders
        if idx.isValid():
            p.row = idx.row()
            p.prev_btn.setEnabled(p.row > 0)
            p.next_btn.setEnabled(p.row < self.model.rowCount() - 1)

    def _context_menu(self, pos) -> None:
        idx: QModelIndex = self.view.indexAt(pos)
        r = self.model.result(idx.row())
        if r is None:
            return
        if not self.view.selectionModel().isSelected(idx):
            self.view.setCurrentIndex(idx)  # a right-click on an unselected photo acts on that photo
        paths = self._selected_result_paths() or [r.photo.path]
        m = QMenu(self)
        if len(paths) == 1:
            path = paths[0]
            m.addAction("Preview", lambda: self.open_preview(idx.row()))
            m.addAction("Find similar", lambda: self.find_similar(path))
            m.addSeparator()
            from PySide6.QtCore import QUrl
            from PySide6.QtGui import QDesktopServices

            m.addAction("Open", lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(path)))
            m.addSeparator()
        add_selection_actions(m, self, paths, self.timeline_view.copy_to)
        m.popup(self.view.viewport().mapToGlobal(pos))
        self.last_menu = m

    def _selected_result_paths(self) -> list[str]:
        rows = sorted(i.row() for i in self.view.selectionModel().selectedIndexes())
        return [r.photo.path for r in (self.model.result(row) for row in rows) if r is not None]

    def _show_selection_count(self, n: int) -> None:
        self.selection_label.setText(f"{n:,} selected")
        self.selection_label.setVisible(n > 1)

    # ------------------------------------------------------------------------------------------------
    # the timeline: the library newest first when nothing is searched (date and place filters apply)
    def _fetch_photos(self, ids: list[int]) -> dict:
        lib = self.library
        return lib.photos(ids) if lib is not None else {}

    def show_timeline(self) -> None:
        lib = self.library
        if lib is None or self._closing:
            return
        date_from, date_to = self.bar.date_filter()
        place = self._place_filter[0] if self._place_filter else None
        self._timeline_gen += 1
        w = CallWorker(lib.timeline, date_from, date_to, place)
        w.signals.finished.connect(lambda rows, gen=self._timeline_gen: self._on_timeline(rows, gen))
        w.signals.failed.connect(
            lambda why: self._show_empty(f"<h2>The photos could not be listed</h2>{why}")
        )
        self.misc_pool.start(w)

    def _on_timeline(self, rows: list, gen: int) -> None:
        if gen != self._timeline_gen or self._closing or self.searches.query is not None:
            return
        if self.search_edit.text().strip() or self._query_image:
            return  # a query was typed meanwhile: its results take the grid
        tl = self.timeline_view.timeline
        if [pid for pid, _ in rows] != tl._ids:
            current = tl.result(self.timeline_view.currentIndex().row())
            self.timeline_view.set_rows(rows)
            if current is not None:  # a refresh keeps the photo the user was on
                row = tl.row_of_photo(current.photo.id)
                if row >= 0:
                    self.timeline_view.setCurrentIndex(tl.index(row, 0))
                    self.timeline_view.scrollTo(tl.index(row, 0))
        filtered = any(self.bar.date_filter()) or self._place_filter is not None
        if rows:
            self.stack.setCurrentWidget(self.timeline_view)
            n = len(rows)
            if filtered and self.status_label.text() in ("", "Ready", "Searching…"):
                self.status_label.setText(f"{n:,} photo{'s' if n != 1 else ''} match the filters")
        elif filtered:
            self._show_empty(
                "<h2>No photos here</h2>No photo matches the dates or place you picked.<br>"
                "<a href='all-photos'>Show all photos</a>"
            )
        emit(self.timeline_shown, len(rows))

    def _open_timeline_preview(self, row: int) -> PreviewDialog | None:
        tl = self.timeline_view.timeline
        i = tl.photo_index(row)
        if i < 0 or self.library is None:
            return None
        if self._preview is not None:
            self._preview.close()
        p = PreviewDialog(
            self, tl.photo_result, tl.photo_count, i, self.library, None, self.misc_pool, self.search_pool
        )
        p.row_changed.connect(lambda i: self._timeline_preview_moved(i))
        p.find_similar.connect(self.find_similar)
        p.finished.connect(self._preview_closed)
        self._preview = p
        p.show()
        return p

    def _timeline_preview_moved(self, i: int) -> None:
        tl = self.timeline_view.timeline
        idx = tl.index(tl.photo_row(i), 0)
        self.timeline_view.setCurrentIndex(idx)
        self.timeline_view.scrollTo(idx)

    def _apply_thumb_size(self) -> None:
        tile = self.settings.thumb_size
        self.delegate.tile = tile
        dpr = self.devicePixelRatioF() or 1.0
        px = int(round(tile * dpr / 32.0) * 32) or tile
        self.model.set_thumb_px(px)
        fm = self.view.fontMetrics()
        self.view.setGridSize(QSize(tile + 20, tile + 20 + 2 * fm.height()))
        self.timeline_view.set_tile(tile, px, self.view.gridSize())

    def zoom(self, direction: int) -> None:
        sizes = [96, 128, 160, 200, 256, 320]
        cur = self.settings.thumb_size
        i = min(range(len(sizes)), key=lambda j: abs(sizes[j] - cur))
        i = max(0, min(len(sizes) - 1, i + direction))
        self.settings.thumb_size = sizes[i]
        self._apply_thumb_size()

    # ------------------------------------------------------------------------------------------------
    # drag and drop: image files → query by image; folders → add to the library
    @staticmethod
    def _dropped_paths(event) -> list[str]:
        md = event.mimeData()
        if not md.hasUrls():
            return []
        return [u.toLocalFile() for u in md.urls() if u.isLocalFile() and u.toLocalFile()]

    def dragEnterEvent(self, event) -> None:
        paths = self._dropped_paths(event)
        if any(os.path.isdir(p) or is_supported(p) for p in paths):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:
        paths = self._dropped_paths(event)
        folders = [p for p in paths if os.path.isdir(p)]
        images = [p for p in paths if os.path.isfile(p) and is_supported(p)]
        if not folders and not images:
            event.ignore()
            return
        event.acceptProposedAction()
        if folders:
            self.index_folders(folders)
        if images:
            self.set_query_image(images[0])

    # ------------------------------------------------------------------------------------------------
    # dialogs
    def show_setup(self) -> None:
        if self._setup is not None:
            self._setup.raise_()
            return
        from .setup_dialog import SetupDialog

        st = self._status
        clip_error = st.clip_error if st is not None else None
        mllm_error = self._mllm_msg if not self._mllm_ok else None
        d = SetupDialog(self.models_path(), clip_error, mllm_error, self)
        d.models_changed.connect(self._models_changed)
        d.finished.connect(self._setup_closed)
        self._setup = d
        self.settings.setup_done = True
        d.show()

    def _setup_closed(self, *_: Any) -> None:
        d, self._setup = self._setup, None
        if d is not None:
            d.deleteLater()

    def _models_changed(self, models_dir: str) -> None:
        if os.path.abspath(models_dir) != os.path.abspath(self.models_path()):
            self.settings.models_dir = models_dir
            self._models_arg = None
        self.settings.save()
        self._index_when_ready = True  # folders added while the search model was missing: index them now
        self.reopen_library()

    def show_settings(self) -> None:
        from .settings_dialog import SettingsDialog

        d = SettingsDialog(self.settings, self.library_path(), self.models_path(), self)
        if d.exec():
            reopen = d.apply()  # first: writes the dialog's values into the settings
            if self.library is not None:
                self.library.read_text = self.settings.read_text
            self.prepare.enabled = self.settings.prepare
            if not self.settings.prepare:
                self.prepare.stop()
            self.thumbs.set_memory_items(self.settings.thumb_memory_items)
            self.k_spin.blockSignals(True)  # one search below, not one per changed widget
            self.k_spin.setValue(self.settings.rerank_k)
            self.k_spin.blockSignals(False)
            if reopen:
                self._library_arg = self._models_arg = None
                self.reopen_library()
            elif self.searches.query is not None:
                self.run_search()

    def _about(self) -> None:
        from .. import __version__

        QMessageBox.about(
            self,
            "About RetLLM Desktop",
            f"<b>RetLLM Desktop {__version__}</b><br>Private, local natural-language photo search.<br>"
            "A CLIP model finds candidates; a local multimodal LLM double-checks the best ones.",
        )

    # ------------------------------------------------------------------------------------------------
    # shutdown
    def closeEvent(self, event) -> None:
        if self._closing:
            event.accept()
            return
        self._closing = True
        s = self.settings
        s.geometry = bytes(self.saveGeometry().toBase64()).decode()
        s.window_state = bytes(self.saveState().toBase64()).decode()
        s.rerank = self.rerank_check.isChecked()
        s.rerank_k = self.k_spin.value()
        s.only_matches = self.only_check.isChecked()
        s.save()
        for d in (self._preview, self._setup):
            if d is not None:
                d.close()
        # Quitting: the window goes at once; the process then waits for the running work to stop (an LLM
        # check ends after its candidate, indexing after its batch) so the catalog is closed cleanly.
        self.hide()
        self.misc_pool.cancel_all()
        self.prepare.stop()
        self.thumbs.shutdown(5000)
        self.libraries.shutdown([self.misc_pool, self.prepare.pool])
        event.accept()
