"""The main window: search bar, result grid with live rerank, library panel, status bar."""

from __future__ import annotations

import html
import os
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QDate, QEvent, QModelIndex, QObject, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QIcon, QImage, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QComboBox,
    QDateEdit,
    QDockWidget,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMainWindow,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QStackedWidget,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .. import config
from ..errors import RetllmError
from ..imaging import is_supported
from .library_panel import LibraryPanel, format_eta
from .preview import PreviewDialog, show_in_folder
from .qtcompat import emit
from .results_model import ResultsModel, ThumbDelegate
from .settings import Settings
from .thumbnails import ThumbnailLoader
from .workers import CallWorker, IndexWorker, SearchWorker, WorkerPool

SORT_LABELS = (("relevance", "Best match"), ("newest", "Newest first"), ("oldest", "Oldest first"))


def collect_status(library: Any) -> dict[str, Any]:
    """Runs in a worker: loads the models (slow the first time) and gathers what the UI shows."""
    status = library.status()
    mllm_ok, mllm_msg = False, getattr(status, "mllm_error", None)
    fn = getattr(library, "mllm_available", None)
    if fn is None:
        mllm_msg = mllm_msg or "reranking is not available in this build"
    else:
        try:
            mllm_ok = bool(fn())
        except Exception as e:  # noqa: BLE001
            mllm_msg = str(e)
        if not mllm_ok and not mllm_msg:
            mllm_msg = "no checking model (multimodal LLM) installed"
        if mllm_ok and mllm_msg:  # installed but its files are broken ("broken: <why>")
            mllm_ok = False
            mllm_msg = f"the checking model {getattr(status, 'mllm_model', '')} is {mllm_msg}"
    dates = (None, None)
    try:
        dates = library.catalog.date_range()
    except Exception:  # noqa: BLE001
        pass
    return {"status": status, "mllm_ok": mllm_ok, "mllm_msg": mllm_msg, "dates": dates}


class _Bridge(QObject):
    """Carries callbacks from engine threads (the folder watcher) to the UI thread."""

    watcher_update = Signal(object)
    watcher_status = Signal(object)


class QueryChip(QFrame):
    """The query image as a removable chip next to the search field."""

    removed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("queryChip")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.icon = QLabel(self)
        self.icon.setFixedSize(28, 28)
        self.icon.setScaledContents(True)
        self.name = QLabel(self)
        self.close_btn = QToolButton(self)
        self.close_btn.setText("✕")
        self.close_btn.setAutoRaise(True)
        self.close_btn.setToolTip("Remove the query image")
        self.close_btn.setAccessibleName("Remove query image")
        self.close_btn.clicked.connect(lambda *_: emit(self.removed))
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 1, 2, 1)
        lay.setSpacing(4)
        lay.addWidget(self.icon)
        lay.addWidget(self.name)
        lay.addWidget(self.close_btn)
        self.setAccessibleName("Query image")

    def set_image(self, path: str) -> None:
        name = os.path.basename(path)
        self.name.setText(name if len(name) <= 22 else name[:10] + "…" + name[-10:])
        self.setToolTip(f"Searching for photos like {path}")
        self.setAccessibleDescription(f"Query image {name}")
        self.icon.setPixmap(QPixmap())


class MainWindow(QMainWindow):
    search_updated = Signal(object)  # every SearchUpdate shown (tests and scripts wait on it)
    search_finished = Signal()
    index_finished = Signal(object)
    status_refreshed = Signal(object)

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
        self.library: Any = None
        self._closing = False
        self._clip_ok = False
        self._clip_error: str | None = None
        self._mllm_ok = False
        self._mllm_msg: str | None = None
        self._status: Any = None
        self._query: Any = None
        self._query_image: str | None = None
        self._search_worker: SearchWorker | None = None
        self._search_first = True
        self._index_worker: IndexWorker | None = None
        self._index_paused = False
        self._pending_index: list[str] = []
        self._eta: tuple[str, float, int] = ("", 0.0, 0)
        self._watcher: Any = None
        self._preview: PreviewDialog | None = None
        self._setup: Any = None
        self._index_when_ready = False
        self.last_update: Any = None
        self.last_index_summary: Any = None

        self.setObjectName("mainWindow")
        self.setWindowTitle("RetLLM Desktop")
        self.setAcceptDrops(True)
        icon_path = config.resource_path("icons/app.svg")
        if icon_path.is_file():
            self.setWindowIcon(QIcon(str(icon_path)))

        self.engine_pool = WorkerPool(2, self)  # indexing, status, library changes
        # Two threads: a new query's coarse results must not wait for the previous query's LLM check in
        # flight (cancelled, it ends after that candidate); the LLM's own lock serialises the rest.
        self.search_pool = WorkerPool(2, self)
        self.misc_pool = WorkerPool(1, self)  # preview images, chip thumbnails
        self.thumbs = ThumbnailLoader(None, threads=2, parent=self)
        self.bridge = _Bridge(self)
        self.bridge.watcher_update.connect(self._on_watcher_update)
        self.bridge.watcher_status.connect(self._on_watcher_status)

        self._build_search_bar()
        self._build_grid()
        self._build_panel()
        self._build_status_bar()
        self._build_menus()
        self._restore_settings()
        self.open_library()

    # ------------------------------------------------------------------------------------------------
    # construction
    def _build_search_bar(self) -> None:
        top = QWidget(self)
        top.setObjectName("searchBar")
        self.chip = QueryChip(top)
        self.chip.setVisible(False)
        self.chip.removed.connect(self.clear_query_image)
        self.search_edit = QLineEdit(top)
        self.search_edit.setObjectName("searchField")
        self.search_edit.setPlaceholderText(
            "Describe a photo — “red car”, “sunset at the beach”…  or drop a photo here"
        )
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.setAccessibleName("Search")
        self.search_edit.setAcceptDrops(False)  # drops go to the window (image query / add folder)
        self.search_edit.addAction(
            self.style().standardIcon(QStyle.StandardPixmap.SP_FileDialogContentsView),
            QLineEdit.ActionPosition.LeadingPosition,
        )
        f = self.search_edit.font()
        f.setPointSizeF(f.pointSizeF() * 1.15)
        self.search_edit.setFont(f)
        self.search_edit.setMinimumHeight(34)
        self.search_edit.returnPressed.connect(self.run_search)
        self.search_edit.installEventFilter(self)  # Esc clears (QLineEdit would swallow a shortcut)
        self.search_btn = QPushButton("Search", top)
        self.search_btn.setAccessibleName("Search")
        self.search_btn.setToolTip("Search (Enter)")
        self.search_btn.clicked.connect(self.run_search)
        row1 = QHBoxLayout()
        row1.addWidget(self.chip)
        row1.addWidget(self.search_edit, 1)
        row1.addWidget(self.search_btn)

        s = self.settings
        self.rerank_check = QCheckBox("Double-check top", top)
        self.rerank_check.setChecked(s.rerank)
        self.rerank_check.setAccessibleName("Double-check results with the checking model")
        self.rerank_check.setToolTip("Let the local multimodal LLM look at the top results and reorder them")
        self.k_spin = QSpinBox(top)
        self.k_spin.setRange(1, 100)
        self.k_spin.setValue(s.rerank_k)
        self.k_spin.setAccessibleName("How many results to double-check")
        self.k_spin.setToolTip("How many of the top results the model looks at")
        self.only_check = QCheckBox("Only true matches", top)
        self.only_check.setChecked(s.only_matches)
        self.only_check.setAccessibleName("Only true matches")
        self.only_check.setToolTip("Hide checked photos the model judged as not matching")
        self.sort_combo = QComboBox(top)
        self.sort_combo.setAccessibleName("Sort results")
        for key, label in SORT_LABELS:
            self.sort_combo.addItem(label, key)
        self.sort_combo.setCurrentIndex(max(0, self.sort_combo.findData(s.sort)))
        self.date_check = QCheckBox("Taken between", top)
        self.date_check.setAccessibleName("Filter by date taken")
        self.date_from = QDateEdit(top)
        self.date_to = QDateEdit(top)
        for w, name in ((self.date_from, "From date"), (self.date_to, "To date")):
            w.setCalendarPopup(True)
            w.setDisplayFormat("yyyy-MM-dd")
            w.setAccessibleName(name)
            w.setEnabled(False)
        self.date_from.setDate(QDate(2000, 1, 1))
        self.date_to.setDate(QDate.currentDate())
        sort_label = QLabel("&Sort:", top)
        sort_label.setBuddy(self.sort_combo)
        # Two groups: the date filter moves to its own line when the window is too narrow for one row
        # (so the window still fits 1024 px next to the library panel).
        self._opts_box = QWidget(top)
        opts = QHBoxLayout(self._opts_box)
        opts.setContentsMargins(0, 0, 0, 0)
        for wdg in (self.rerank_check, self.k_spin, self.only_check):
            wdg.setParent(self._opts_box)
            opts.addWidget(wdg)
        opts.addSpacing(16)
        sort_label.setParent(self._opts_box)
        self.sort_combo.setParent(self._opts_box)
        opts.addWidget(sort_label)
        opts.addWidget(self.sort_combo)
        self._dates_box = QWidget(top)
        dates = QHBoxLayout(self._dates_box)
        dates.setContentsMargins(0, 0, 0, 0)
        for wdg in (self.date_check, self.date_from, QLabel("and", top), self.date_to):
            wdg.setParent(self._dates_box)
            dates.addWidget(wdg)
        self._dates_box.setMinimumWidth(1)  # don't let it set the window's minimum width; it wraps instead
        row2 = QHBoxLayout()
        row2.addWidget(self._opts_box)
        row2.addSpacing(16)
        row2.addWidget(self._dates_box)
        row2.addStretch(1)
        self._row2 = row2
        self._row3 = QHBoxLayout()
        self._row3.addStretch(1)

        self.rerank_check.toggled.connect(self._options_changed)
        self.k_spin.valueChanged.connect(self._options_changed)
        self.only_check.toggled.connect(self._options_changed)
        self.date_check.toggled.connect(self._dates_toggled)
        self.date_from.dateChanged.connect(self._options_changed)
        self.date_to.dateChanged.connect(self._options_changed)
        self.sort_combo.currentIndexChanged.connect(self._sort_changed)

        self.banner = QLabel(top)
        self.banner.setObjectName("banner")
        self.banner.setWordWrap(True)
        self.banner.setTextFormat(Qt.TextFormat.RichText)
        self.banner.setAccessibleName("Notice")
        self.banner.setStyleSheet(
            "QLabel#banner { padding: 6px; border-radius: 4px; background: rgba(230,160,20,60); }"
        )
        self.banner.linkActivated.connect(lambda _link: self.show_setup())
        self.banner.setVisible(False)

        lay = QVBoxLayout(top)
        lay.setContentsMargins(10, 8, 10, 4)
        lay.addLayout(row1)
        lay.addLayout(row2)
        lay.addLayout(self._row3)
        lay.addWidget(self.banner)
        self._top = top
        top.installEventFilter(self)  # resize → _reflow_options

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
        self._apply_thumb_size()

        self.empty = QLabel(self)
        self.empty.setObjectName("emptyState")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        self.empty.setTextFormat(Qt.TextFormat.RichText)
        self.empty.setAccessibleName("Hint")
        self.empty.setOpenExternalLinks(False)
        self.empty.linkActivated.connect(self._empty_link)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.empty)
        self.stack.addWidget(self.view)
        central = QWidget(self)
        lay = QVBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self._top)
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

    def _build_status_bar(self) -> None:
        sb = self.statusBar()
        self.status_label = QLabel("", self)
        self.status_label.setAccessibleName("Status")
        # A long message (an error with paths) is cut off rather than forcing the window wider.
        self.status_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.status_label.setMinimumWidth(1)
        self.rerank_label = QLabel("", self)
        self.rerank_label.setAccessibleName("Double-check progress")
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
        sb.addWidget(self.status_label, 1)
        for w in (
            self.rerank_label,
            self.rerank_bar,
            self.index_label,
            self.index_bar,
            self.watch_label,
            self.count_label,
        ):
            sb.addPermanentWidget(w)
        for w in (self.rerank_label, self.rerank_bar, self.index_label, self.index_bar):
            w.setVisible(False)

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

    # ------------------------------------------------------------------------------------------------
    # library
    def library_path(self) -> str:
        return str(config.library_dir(self._library_arg or self.settings.library))

    def models_path(self) -> str:
        return str(config.models_dir(self._models_arg or self.settings.models_dir))

    def open_library(self) -> None:
        from ..library import Library  # the catalog opens quickly; models load later in a worker

        try:
            self.library = Library(
                self.library_path(),
                models_dir=self.models_path(),
                clip_model=self.settings.clip_model,
                mllm_model=self.settings.mllm_model,
                threads=self.settings.threads,
            )
        except RetllmError as e:
            self.library = None
            self._show_empty(f"The library could not be opened: {e}")
            self._set_banner(f"The library could not be opened: {e}. Choose another one in File ▸ Settings.")
            return
        except Exception as e:  # noqa: BLE001 - e.g. a corrupt catalog: say so, don't crash
            self.library = None
            self._show_empty(f"The library could not be opened: {e}")
            return
        self.thumbs.set_cache_dir(Path(self.library.path) / "cache" / "thumbnails")
        self.setWindowTitle(f"RetLLM Desktop — {self.library.path}")
        self.status_label.setText("Loading models…")
        self.refresh_status()

    def close_library(self) -> None:
        self.stop_watcher()
        self.search_pool.cancel_all()
        self.engine_pool.cancel_all()
        self.search_pool.wait(60_000)
        self.engine_pool.wait(60_000)
        self.thumbs.invalidate()
        if self.library is not None:
            self.library.close()
            self.library = None

    def refresh_status(self) -> None:
        if self.library is None or self._closing:
            return
        w = CallWorker(collect_status, self.library)
        lib = self.library
        w.signals.finished.connect(lambda info: self._on_status(lib, info))
        w.signals.failed.connect(lambda msg: self.status_label.setText(f"Library status unavailable: {msg}"))
        self.engine_pool.start(w)

    def _on_status(self, lib: Any, info: dict[str, Any]) -> None:
        if self._closing or lib is not self.library or not info:
            return
        st = info["status"]
        self._status = st
        self._clip_ok = st.clip_error is None
        self._clip_error = st.clip_error
        self._mllm_ok, self._mllm_msg = info["mllm_ok"], info["mllm_msg"]
        self.panel.set_status(st)
        n = st.photos
        self.count_label.setText(f"{n:,} photo{'s' if n != 1 else ''}")
        self.rerank_check.setEnabled(self._mllm_ok)
        self.k_spin.setEnabled(self._mllm_ok)
        self.only_check.setEnabled(self._mllm_ok)
        if not self._mllm_ok:
            self.rerank_check.setToolTip(f"Not available: {self._mllm_msg}")
        else:
            self.rerank_check.setToolTip(
                "Let the local multimodal LLM look at the top results and reorder them"
            )
        dmin, dmax = info["dates"]
        if dmin and dmax and not self.date_check.isChecked():
            for w, value in ((self.date_from, dmin), (self.date_to, dmax)):
                w.blockSignals(True)
                w.setDate(QDate.fromString(value[:10], "yyyy-MM-dd"))
                w.blockSignals(False)
        if not self._clip_ok:
            self._set_banner(
                f"<b>Search model missing.</b> {st.clip_error} &nbsp; <a href='setup'>Set up models…</a>"
            )
            self.status_label.setText("Can't search yet: the search model is missing")
            if not self.settings.setup_done and not self._closing:
                QTimer.singleShot(0, self.show_setup)
        elif not self._mllm_ok and self.rerank_check.isChecked():
            self._set_banner(
                f"Results won't be double-checked: {self._mllm_msg}. &nbsp; <a href='setup'>Set up models…</a>"
            )
        else:
            self._set_banner(None)
        if self._clip_ok and self.status_label.text() == "Loading models…":
            self.status_label.setText("Ready")
        if self._clip_ok and self._index_when_ready:
            self._index_when_ready = False
            if any(not r.get("photos") for r in st.roots) and self._index_worker is None:
                QTimer.singleShot(0, lambda: self.index_folders(None))
        if self.model.rowCount() == 0 and self._query is None:
            if not st.roots:
                self._show_empty(
                    "<h2>Add your photos</h2>Drop a folder here, or <a href='add'>add a folder…</a> (Ctrl+O).<br>"
                    "Photos are indexed on this computer and never leave it."
                )
            elif self._clip_ok:
                self._show_empty(
                    f"<h2>Search {n:,} photos</h2>Describe what you're looking for — "
                    "“red car”, “green forest”, “sunset at the beach” —<br>or drop a photo here to find similar ones."
                )
            else:
                self._show_empty(
                    "<h2>Models needed</h2>Your photos can be searched once the search model is installed."
                    "<br><br><a href='setup'>Set up models…</a>"
                )
        emit(self.status_refreshed, st)

    def _set_banner(self, html: str | None) -> None:
        self.banner.setVisible(bool(html))
        self.banner.setText(html or "")

    def _empty_link(self, link: str) -> None:
        if link == "add":
            self.panel.choose_folder()
        elif link == "setup":
            self.show_setup()

    def _show_empty(self, html: str) -> None:
        self.empty.setText(html)
        self.stack.setCurrentWidget(self.empty)

    # ------------------------------------------------------------------------------------------------
    # indexing
    def index_folders(self, paths: list[str] | None = None) -> None:
        if self.library is None or self._closing:
            return
        paths = [str(Path(p).expanduser()) for p in paths or []]
        if self._index_worker is not None and not self._index_worker.done.is_set():
            self._pending_index.extend(paths or [])
            if paths:
                self.status_label.setText(f"Will add {', '.join(os.path.basename(p) for p in paths)} next")
            return
        self.stop_watcher()
        self._index_paused = False
        w = IndexWorker(self.library, paths or None)
        self._index_worker = w
        self._eta = ("", 0.0, 0)
        w.signals.progress.connect(self._on_index_progress)
        w.signals.finished.connect(lambda s, w=w: self._on_index_done(w, s, None))
        w.signals.failed.connect(lambda msg, w=w: self._on_index_done(w, None, msg))
        self.panel.set_indexing(True)
        self.panel.set_progress("scanning", 0, 0)
        self.index_label.setText("Scanning…")
        self.index_label.setVisible(True)
        self.index_bar.setRange(0, 0)
        self.index_bar.setVisible(True)
        self.engine_pool.start(w)

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
        if total > 0:
            self.index_bar.setRange(0, total)
            self.index_bar.setValue(min(done, total))
            self.index_label.setText(f"Indexing {done:,}/{total:,}" + (f" · {eta}" if eta else ""))
        else:
            self.index_bar.setRange(0, 0)
            self.index_label.setText(f"Scanning… {done:,}")

    def _on_index_done(self, w: IndexWorker, summary: Any, error: str | None) -> None:
        if w is self._index_worker:
            self._index_worker = None
        self.index_label.setVisible(False)
        self.index_bar.setVisible(False)
        if self._closing:
            return
        paused = self._index_paused
        self.panel.set_indexing(False, paused=paused)
        self.last_index_summary = summary
        if error is not None:
            if not self._clip_ok:  # the long engine message is in the banner and the setup dialog
                self.panel.set_message("Indexing stopped: the search model is missing (see Models…).")
            else:
                self.panel.set_message(f"Indexing stopped: {error}")
            self.panel.stage.setToolTip(error)
            self.status_label.setText(f"Indexing failed: {error}")
            if not self._clip_ok or "model" in error.lower():
                self.refresh_status()
        elif summary is not None:
            if summary.cancelled or w.cancel.is_set():
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
        self.refresh_status()
        emit(self.index_finished, summary)
        if self._pending_index and not paused:
            pending, self._pending_index = self._pending_index, []
            self.index_folders(pending)
            return
        if error is None and not paused and not w.cancel.is_set():
            self.start_watcher()
            if self._query is not None:
                self.run_search()

    def pause_indexing(self) -> None:
        if self._index_worker is not None:
            self._index_paused = True
            self._index_worker.cancel.set()
            self.panel.set_message("Pausing after the current batch…")

    def cancel_indexing(self) -> None:
        if self._index_worker is not None:
            self._index_paused = False
            self._pending_index.clear()
            self._index_worker.cancel.set()
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
        self.stop_watcher()
        w = CallWorker(self.library.remove_root, path)

        def done(n: Any) -> None:
            self.status_label.setText(f"Removed {path} ({n or 0:,} photos left the library)")
            self.refresh_status()
            self.start_watcher()
            if self._query is not None:
                self.run_search()

        w.signals.finished.connect(done)
        w.signals.failed.connect(lambda msg: self.status_label.setText(f"Could not remove {path}: {msg}"))
        self.engine_pool.start(w)

    # -- folder watching ------------------------------------------------------------------------------
    def start_watcher(self) -> None:
        if self._watcher is not None or self.library is None or self._closing:
            return
        try:
            from ..watcher import LibraryWatcher  # type: ignore[import-not-found]
        except Exception:  # noqa: BLE001 - not in this build yet
            return
        try:
            self._watcher = LibraryWatcher(
                self.library,
                on_update=lambda *a: emit(self.bridge.watcher_update, a),
                on_status=lambda *a: emit(self.bridge.watcher_status, a),
            )
            self._watcher.start()
        except Exception as e:  # noqa: BLE001
            self._watcher = None
            self.watch_label.setText("Not watching folders")
            self.watch_label.setToolTip(str(e))
            return
        self._update_watch_label()

    def stop_watcher(self) -> None:
        w, self._watcher = self._watcher, None
        if w is not None:
            try:
                w.stop()
            except Exception:  # noqa: BLE001
                pass
        self.watch_label.setText("")

    def _update_watch_label(self) -> None:
        w = self._watcher
        if w is None:
            self.watch_label.setText("")
            return
        n = getattr(w, "watching", 0)
        n = n() if callable(n) else n
        mode = getattr(w, "mode", "")
        self.watch_label.setText(f"Watching {n} folder{'s' if n != 1 else ''}")
        self.watch_label.setToolTip(f"New and changed photos are indexed automatically ({mode})")

    def _on_watcher_update(self, args: Any) -> None:
        if self._closing:
            return
        self.refresh_status()
        self._update_watch_label()

    def _on_watcher_status(self, args: Any) -> None:
        if self._closing:
            return
        self._update_watch_label()
        if args:
            text = str(args[0])
            if text:
                self.watch_label.setToolTip(text)

    # ------------------------------------------------------------------------------------------------
    # search
    def _reflow_options(self) -> None:
        """Put the date filter on its own line when the options don't fit next to each other."""
        top = self._top
        m = top.layout().contentsMargins()
        need = self._opts_box.sizeHint().width() + 16 + self._dates_box.sizeHint().width()
        wrapped = self._row3.indexOf(self._dates_box) >= 0
        want_wrapped = top.width() - m.left() - m.right() < need
        if want_wrapped == wrapped:
            return
        if want_wrapped:
            self._row2.removeWidget(self._dates_box)
            self._row3.insertWidget(0, self._dates_box)
        else:
            self._row3.removeWidget(self._dates_box)
            self._row2.insertWidget(2, self._dates_box)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if obj is getattr(self, "_top", None) and event.type() == QEvent.Type.Resize:
            self._reflow_options()
            return False
        if (
            obj is getattr(self, "search_edit", None)
            and event.type() == QEvent.Type.KeyPress
            and event.key() == Qt.Key.Key_Escape
        ):
            self.clear_search()
            return True
        return super().eventFilter(obj, event)

    def focus_search(self) -> None:
        self.search_edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search_edit.selectAll()

    def clear_search(self) -> None:
        if self.search_edit.text():
            self.search_edit.clear()
        elif self._query_image:
            self.clear_query_image(search=False)
        self.cancel_search()
        self._query = None
        self.model.clear()
        self.last_update = None
        self.status_label.setText("")
        if self._status is not None:
            self._on_status(
                self.library,
                {
                    "status": self._status,
                    "mllm_ok": self._mllm_ok,
                    "mllm_msg": self._mllm_msg,
                    "dates": (None, None),
                },
            )

    def set_query_image(self, path: str, search: bool = True) -> None:
        self._query_image = str(Path(path).expanduser().resolve())
        self.chip.set_image(self._query_image)
        self.chip.setVisible(True)
        self.search_edit.setPlaceholderText("Add words to refine (optional) — e.g. “at night”")
        img_path = self._query_image

        def load() -> QImage:
            from .thumbnails import load_qimage

            return load_qimage(img_path, 64)

        w = CallWorker(load)
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
        self.chip.setVisible(False)
        self.search_edit.setPlaceholderText(
            "Describe a photo — “red car”, “sunset at the beach”…  or drop a photo here"
        )
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

    def _rerank_options(self) -> Any:
        if not self.rerank_check.isChecked() or not self._mllm_ok:
            return None
        try:
            from ..rerank import RerankOptions
        except Exception:  # noqa: BLE001
            return None
        s = self.settings
        return RerankOptions(
            k=self.k_spin.value(), ve=s.ve, min_match=s.min_match if self.only_check.isChecked() else None
        )

    def cancel_search(self) -> None:
        w, self._search_worker = self._search_worker, None
        if w is not None:
            w.cancel.set()
        self.rerank_label.setVisible(False)
        self.rerank_bar.setVisible(False)

    def run_search(self) -> None:
        if self._closing:
            return
        text = self.search_edit.text().strip()
        if not text and not self._query_image:
            self.clear_search()
            return
        if self.library is None:
            self.status_label.setText("No library is open")
            return
        if not self._clip_ok and self._status is not None:
            self.status_label.setText(f"Can't search: {self._clip_error}")
            self._set_banner(
                f"<b>Search model missing.</b> {self._clip_error} &nbsp; <a href='setup'>Set up models…</a>"
            )
            return
        from ..search import Query

        date_from = date_to = None
        if self.date_check.isChecked():
            date_from = self.date_from.date().toString("yyyy-MM-dd")
            date_to = self.date_to.date().toString("yyyy-MM-dd")
        try:
            query = Query(
                text=text or None,
                image=self._query_image,
                image_weight=self.settings.image_weight,
                date_from=date_from,
                date_to=date_to,
            )
        except RetllmError as e:
            self.status_label.setText(str(e))
            return
        self.cancel_search()
        self._query = query
        self._search_first = True
        rerank = self._rerank_options()
        w = SearchWorker(self.library, query, self.settings.top, rerank)
        self._search_worker = w
        w.signals.update.connect(lambda upd, w=w: self._on_search_update(w, upd))
        w.signals.finished.connect(lambda res, w=w: self._on_search_done(w, res, None))
        w.signals.failed.connect(lambda msg, w=w: self._on_search_done(w, None, msg))
        self.status_label.setText("Searching…")
        self.search_pool.start(w)

    def _on_search_update(self, w: SearchWorker, upd: Any) -> None:
        if w is not self._search_worker or self._closing:
            return
        first = self._search_first
        self._search_first = False
        self.last_update = upd
        self.model.set_results(upd.visible, same_query=not first)
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
        if hidden:
            text += f" · {hidden} hidden as not matching"
        model_name = (
            upd.model or (self._status.mllm_model if self._status is not None else None) or "the model"
        )
        if w.rerank is not None and upd.results:
            if upd.phase == "done":
                self.rerank_label.setText(f"Checked {upd.done}/{upd.total} with {model_name}")
                self.rerank_bar.setVisible(False)
            else:
                total = upd.total or min(w.rerank.k, len(upd.results))
                self.rerank_label.setText(f"Checking {upd.done}/{total} with {model_name}…")
                self.rerank_bar.setRange(0, max(total, 1))
                self.rerank_bar.setValue(upd.done)
                self.rerank_bar.setVisible(True)
            self.rerank_label.setVisible(True)
        if upd.message and upd.results:
            text += f" · {upd.message}"
        if getattr(upd, "llm_error", None):  # the coarse results stand; say why they are not checked
            self._set_banner(
                f"Results weren't double-checked: {html.escape(upd.llm_error)}. &nbsp; "
                "<a href='setup'>Set up models…</a>"
            )
        elif upd.done and self.banner.text().startswith("Results weren't double-checked"):
            self._set_banner(None)  # the LLM works again
        self.status_label.setText(text)
        emit(self.search_updated, upd)

    def _on_search_done(self, w: SearchWorker, result: Any, error: str | None) -> None:
        if w is not self._search_worker or self._closing:
            return
        self.rerank_bar.setVisible(False)
        if error is not None:
            self.status_label.setText(f"Search failed: {error}")
            self.rerank_label.setVisible(False)
            if self.model.rowCount() == 0:
                self._show_empty(f"<h2>Search failed</h2>{error}")
        elif isinstance(result, str):
            self.rerank_label.setText(result)
            self.rerank_label.setToolTip(result)
            self.rerank_label.setVisible(True)
        elif self.last_update is not None and w.rerank is not None and self.rerank_label.isVisible():
            upd = self.last_update
            self.rerank_label.setText(self.rerank_label.text().replace("Checking", "Checked").rstrip("…"))
            del upd
        emit(self.search_finished)

    def search_running(self) -> bool:
        w = self._search_worker
        return w is not None and not w.done.is_set()

    def _options_changed(self, *_: Any) -> None:
        s = self.settings
        s.rerank = self.rerank_check.isChecked()
        s.rerank_k = self.k_spin.value()
        s.only_matches = self.only_check.isChecked()
        if self._query is not None:
            self.run_search()

    def _dates_toggled(self, on: bool) -> None:
        self.date_from.setEnabled(on)
        self.date_to.setEnabled(on)
        self._options_changed()

    def _sort_changed(self, *_: Any) -> None:
        mode = self.sort_combo.currentData()
        self.settings.sort = mode
        self.model.set_sort(mode)

    # ------------------------------------------------------------------------------------------------
    # results: preview, context menu, thumbnails
    def open_preview(self, row: int | None = None) -> PreviewDialog | None:
        if row is None or isinstance(row, bool):
            row = self.view.currentIndex().row()
        if self.model.result(row) is None or self.library is None:
            return None
        if self._preview is not None:
            self._preview.query = self._query
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
            self._query,
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
        path = r.photo.path
        m = QMenu(self)
        m.addAction("Preview", lambda: self.open_preview(idx.row()))
        m.addAction("Find similar", lambda: self.find_similar(path))
        m.addSeparator()
        from PySide6.QtCore import QUrl
        from PySide6.QtGui import QDesktopServices

        m.addAction("Open", lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(path)))
        m.addAction("Show in folder", lambda: show_in_folder(path))
        m.addAction("Copy path", lambda: QApplication.clipboard().setText(path))
        m.popup(self.view.viewport().mapToGlobal(pos))

    def _apply_thumb_size(self) -> None:
        tile = self.settings.thumb_size
        self.delegate.tile = tile
        dpr = self.devicePixelRatioF() or 1.0
        px = int(round(tile * dpr / 32.0) * 32) or tile
        self.model.set_thumb_px(px)
        fm = self.view.fontMetrics()
        self.view.setGridSize(QSize(tile + 20, tile + 20 + 2 * fm.height()))

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

    def reopen_library(self) -> None:
        self.cancel_search()
        self.model.clear()
        self._query = None
        self.close_library()
        self.open_library()

    def show_settings(self) -> None:
        from .settings_dialog import SettingsDialog

        d = SettingsDialog(self.settings, self.library_path(), self.models_path(), self)
        if d.exec():
            reopen = d.apply()  # first: writes the dialog's values into the settings
            self.k_spin.blockSignals(True)  # one search below, not one per changed widget
            self.k_spin.setValue(self.settings.rerank_k)
            self.k_spin.blockSignals(False)
            if reopen:
                self._library_arg = self._models_arg = None
                self.reopen_library()
            elif self._query is not None:
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
        self.status_label.setText("Stopping…")
        self.search_pool.cancel_all()
        self.engine_pool.cancel_all()
        self.misc_pool.cancel_all()
        self.stop_watcher()
        self.thumbs.shutdown(5000)
        # Indexing stops at the next batch boundary; the catalog commits per batch, so it stays consistent.
        for pool in (self.search_pool, self.engine_pool, self.misc_pool):
            pool.wait(120_000)
        if self.library is not None:
            self.library.close()
            self.library = None
        event.accept()
