"""The timeline's grid: the library newest first when nothing is searched, with the selection's actions.

A view of its own (beside the results grid) so searching and going back never loses the place in the
timeline. Its rows come from :class:`TimelineModel`; it asks the window to preview a photo, find similar
ones, or say something in the status bar, and does the rest (copy, show, explain Delete) itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QModelIndex, QSize, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QKeyEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import QAbstractItemView, QFileDialog, QListView, QMenu, QWidget

from .qtcompat import emit
from .selection_actions import add_selection_actions, copy_files, explain_delete
from .thumbnails import ThumbnailLoader
from .timeline import TimelineDelegate, TimelineModel
from .workers import CallWorker, WorkerPool

if TYPE_CHECKING:
    from ..catalog import Photo


def configure_grid(view: QListView) -> None:
    """The photo grid's look and behaviour (shared by the results and the timeline)."""
    view.setViewMode(QListView.ViewMode.IconMode)
    view.setResizeMode(QListView.ResizeMode.Adjust)
    view.setMovement(QListView.Movement.Static)
    view.setUniformItemSizes(True)
    view.setLayoutMode(QListView.LayoutMode.Batched)
    view.setBatchSize(500)
    view.setSpacing(2)
    view.setWrapping(True)
    view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
    view.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
    view.setMouseTracking(True)
    view.setDragEnabled(True)
    view.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)


class TimelineView(QListView):
    preview_requested = Signal(int)  # a row of the timeline model
    find_similar = Signal(str)  # a photo's path
    selection_count = Signal(int)  # photos selected (headers are not selectable)
    message = Signal(str)  # one line for the status bar

    def __init__(
        self,
        thumbs: ThumbnailLoader,
        fetch: Callable[[list[int]], dict[int, Photo]],
        pool: WorkerPool,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("timeline")
        self.setAccessibleName("All photos, newest first")
        self.pool = pool
        self.timeline = TimelineModel(thumbs, fetch, self)
        self.delegate = TimelineDelegate(self)
        configure_grid(self)
        self.setModel(self.timeline)
        self.setItemDelegate(self.delegate)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._context_menu)
        self.doubleClicked.connect(lambda idx: self._preview(idx.row()))
        for key in (Qt.Key.Key_Space, Qt.Key.Key_Return, Qt.Key.Key_Enter):
            sc = QShortcut(QKeySequence(key), self)
            sc.setContext(Qt.ShortcutContext.WidgetShortcut)
            sc.activated.connect(lambda: self._preview(self.currentIndex().row()))
        self.selectionModel().selectionChanged.connect(
            lambda *_: emit(self.selection_count, self.selected_count())
        )
        self.timeline.modelReset.connect(lambda: emit(self.selection_count, 0))
        self.copy_worker: CallWorker | None = None

    # -- contents ----------------------------------------------------------------------------------
    def set_rows(self, rows: list[tuple[int, str]]) -> None:
        self.timeline.set_rows(rows)

    def set_tile(self, tile: int, px: int, grid: QSize) -> None:
        self.delegate.tile = tile
        self.timeline.set_thumb_px(px)
        self.setGridSize(grid)

    def selected_count(self) -> int:
        """Photos selected, counted without reading them (Ctrl+A on 100k photos stays instant)."""
        return sum(
            1 for i in self.selectionModel().selectedIndexes() if self.timeline.photo_index(i.row()) >= 0
        )

    def selected_paths(self) -> list[str]:
        rows = sorted(i.row() for i in self.selectionModel().selectedIndexes())
        out = []
        for row in rows:
            r = self.timeline.result(row)
            if r is not None:
                out.append(r.photo.path)
        return out

    # -- actions -----------------------------------------------------------------------------------
    def _preview(self, row: int) -> None:
        if self.timeline.result(row) is not None:
            emit(self.preview_requested, row)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace) and self.selected_paths():
            self.explain_delete()  # never silently nothing: it says what Delete does here
            return
        super().keyPressEvent(event)

    def explain_delete(self) -> None:
        paths = self.selected_paths()
        if paths:
            explain_delete(self, paths)

    def copy_to(self, paths: list[str], folder: str | None = None) -> CallWorker | None:
        """Copy the photos into a folder the user picks (off the UI thread); the status bar says how it went."""
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, f"Copy {len(paths):,} photos to…")
        if not folder:
            return None
        w = CallWorker(copy_files, list(paths), folder)
        w.signals.finished.connect(lambda report: emit(self.message, report.summary(folder)))
        w.signals.failed.connect(lambda why: emit(self.message, f"Could not copy the photos: {why}"))
        self.copy_worker = w
        emit(self.message, f"Copying {len(paths):,} photo{'s' if len(paths) != 1 else ''} to {folder}…")
        self.pool.start(w)
        return w

    def _context_menu(self, pos: Any) -> None:
        idx: QModelIndex = self.indexAt(pos)
        r = self.timeline.result(idx.row())
        if r is None:
            return
        if not self.selectionModel().isSelected(idx):
            self.setCurrentIndex(idx)  # a right-click on an unselected photo acts on that photo
        paths = self.selected_paths() or [r.photo.path]
        m = QMenu(self)
        if len(paths) == 1:
            path = paths[0]
            m.addAction("Preview", lambda: self._preview(idx.row()))
            m.addAction("Find similar", lambda: emit(self.find_similar, path))
            m.addAction("Open", lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(path)))
            m.addSeparator()
        add_selection_actions(m, self, paths, self.copy_to)
        m.popup(self.viewport().mapToGlobal(pos))
        self.last_menu = m
