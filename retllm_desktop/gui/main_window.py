"""The main window: lays out the search bar, the result grid, the library panel and the status bar.

The flows live in controllers: ``SearchController`` (query → coarse → live rerank → results model) and
``LibraryController`` (open/close/reopen, index, remove, watch, status); the window turns user actions
into their calls and their signals into what the widgets show. Its parts by job: ``window_search``
(query building), ``window_status`` (status presentation), ``window_grid`` (timeline, selection, preview),
``window_menus`` (menus and dialogs); this module builds the widgets and handles the library, indexing
actions, drag-and-drop and shutdown.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, Qt, Signal
from PySide6.QtGui import QIcon, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDockWidget,
    QLabel,
    QListView,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from .. import config
from ..imaging import is_supported
from .index_state import IndexState
from .library_controller import LibraryController
from .library_panel import LibraryPanel
from .people_controller import PeopleController
from .places_panel import PlacesPanel
from .prepare_controller import PrepareController
from .preview import PreviewDialog
from .query_state import QueryState
from .results_model import ResultsModel, ThumbDelegate
from .search_bar import SearchBar
from .search_controller import SearchController
from .selection_actions import DeleteKey
from .settings import Settings
from .thumbnails import ThumbnailLoader
from .timeline_view import TimelineView
from .window_grid import GridActions
from .window_menus import MenuActions
from .window_search import SearchActions
from .window_status import StatusPresenter
from .workers import WorkerPool

if TYPE_CHECKING:
    from ..indexer import IndexSummary
    from ..library import Library, LibraryStatus
    from .setup_dialog import SetupDialog


MIN_GRID = (600, 400)  # px: the grid (or the timeline, a hint) under the search bar: a few tiles
MIN_PANEL_HEIGHT = 160  # px: a library or Places panel shows a few rows, never a sliver


class MainWindow(SearchActions, StatusPresenter, GridActions, MenuActions, QMainWindow):
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
        self.state = QueryState()  # what the next search is made of (words, photo, filters, dates)
        self._index_done_since_people = False  # the People list is refreshed after each index run
        self._people_count: int | None = None
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
        bar.chip.keep_toggled.connect(self.keep_query_image)
        bar.cleared.connect(self.clear_search)
        # The widgets the window reads and tests drive.
        self.search_edit, self.chip, self.banner = bar.search_edit, bar.chip, bar.banner
        self.rerank_check, self.k_spin, self.only_check = bar.rerank_check, bar.k_spin, bar.only_check
        self.sort_combo, self.date_check = bar.sort_combo, bar.date_check
        self.date_from, self.date_to = bar.date_from, bar.date_to

    def _build_grid(self) -> None:
        self.model = ResultsModel(self.thumbs, self)
        self.model.cutoff = self.settings.min_match  # the verdict's match cutoff (verdict.py)
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
        # The window's minimum comes from its layout, so Qt keeps it current as chips or a notice make the
        # bar taller: the bar's own minimum plus room for a grid of tiles; the panels keep a usable height.
        # Below it nothing is cut off or overlaps: the window simply does not get smaller.
        self.stack.setMinimumSize(*MIN_GRID)
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
        for d in (self.dock, self.places_dock):
            d.setMinimumHeight(MIN_PANEL_HEIGHT)
        self.people = PeopleController(self, self.misc_pool, self.dock.features())
        self.people.filter_changed.connect(self.run_search)
        self.people.message.connect(lambda text: self.status_label.setText(text))

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
        lc.photos_changed.connect(self._library_changed)
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

    # ------------------------------------------------------------------------------------------------
    # indexing
    def index_folders(self, paths: list[str] | None = None) -> None:
        if self._closing:
            return
        self.index_state.queue([str(Path(p).expanduser()) for p in paths or []])
        if not self.libraries.index(paths) and paths and self.libraries.indexing():
            self.status_label.setText(f"Will add {', '.join(os.path.basename(p) for p in paths)} next")

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

    # ------------------------------------------------------------------------------------------------
    # search

    # ------------------------------------------------------------------------------------------------

    # ------------------------------------------------------------------------------------------------
    # the timeline: the library newest first when nothing is searched (date and place filters apply)

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
