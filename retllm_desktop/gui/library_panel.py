"""The library side panel: folders (add/remove/re-scan), indexing progress with pause/cancel, failed files."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .preview import show_in_folder
from .qtcompat import emit

if TYPE_CHECKING:
    from ..library import LibraryStatus


def format_eta(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return ""
    seconds = int(seconds + 0.5)
    if seconds < 60:
        return f"{seconds}s left"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s left"
    return f"{seconds // 3600}h {(seconds % 3600) // 60:02d}m left"


STAGE_NAMES = {
    "scanning": "Scanning",
    "hashing": "Checking files",
    "embedding": "Indexing",
    "places": "Finding places",
    "reading text": "Reading text",
    "finding faces": "Finding faces",
    "updating faces": "Updating faces",
}


class LibraryPanel(QWidget):
    add_requested = Signal(str)
    remove_requested = Signal(str)
    rescan_requested = Signal()
    pause_requested = Signal()
    resume_requested = Signal()
    cancel_requested = Signal()
    setup_requested = Signal()

    def __init__(self, parent=None) -> None:
        # Builds the panel top to bottom (folders, progress, failures, models): one widget per block.
        super().__init__(parent)
        self.setObjectName("libraryPanel")
        self.setAccessibleName("Library")
        self.paused = False

        title = QLabel("<b>Folders</b>", self)
        self.folders = QListWidget(self)
        self.folders.setAccessibleName("Library folders")
        self.folders.setToolTip("Folders in the library. Drop folders onto the window to add them.")
        self.folders.setAlternatingRowColors(True)
        self.add_btn = self._button(
            "&Add folder…", "Add a folder to the library (Ctrl+O)", self.choose_folder
        )
        self.remove_btn = self._button(
            "Remove", "Forget the selected folder (the photos on disk are untouched)", self._remove
        )
        self.rescan_btn = self._button(
            "Re-scan", "Look for new, changed and deleted photos", lambda *_: emit(self.rescan_requested)
        )
        self.folders.currentItemChanged.connect(lambda *_: self._update_buttons())
        row = QHBoxLayout()
        row.addWidget(self.add_btn)
        row.addWidget(self.remove_btn)
        row.addWidget(self.rescan_btn)

        self.stage = QLabel("", self)
        self.stage.setAccessibleName("Indexing status")
        self.stage.setWordWrap(True)
        # A long message (an error with a path in it) wraps instead of widening the whole panel.
        self.stage.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.stage.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.bar = QProgressBar(self)
        self.bar.setAccessibleName("Indexing progress")
        self.bar.setTextVisible(True)
        self.pause_btn = self._button(
            "Pause",
            "Stop indexing now; Resume continues where it stopped (finished photos are kept)",
            self._pause,
        )
        self.cancel_btn = self._button(
            "Cancel", "Stop indexing (finished photos are kept)", lambda *_: emit(self.cancel_requested)
        )
        prow = QHBoxLayout()
        prow.addWidget(self.pause_btn)
        prow.addWidget(self.cancel_btn)

        self.failures_title = QLabel("<b>Couldn't read</b>", self)
        self.failures = QTreeWidget(self)
        self.failures.setAccessibleName("Files that could not be indexed")
        self.failures.setHeaderLabels(["File", "Reason"])
        self.failures.setRootIsDecorated(False)
        self.failures.setUniformRowHeights(True)
        self.failures.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.failures.header().setStretchLastSection(True)
        self.failures.setColumnWidth(0, 150)
        self.failures.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.failures.customContextMenuRequested.connect(self._failure_menu)
        self.failures.itemDoubleClicked.connect(lambda item, _col: self._show_failure(item))

        self.models = QLabel("", self)
        self.models.setWordWrap(True)
        self.models.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.models.setAccessibleName("Models")
        self.setup_btn = self._button(
            "&Models…", "Set up or change the models", lambda *_: emit(self.setup_requested)
        )

        lay = QVBoxLayout(self)
        lay.addWidget(title)
        lay.addWidget(self.folders, 2)
        lay.addLayout(row)
        lay.addWidget(self.stage)
        lay.addWidget(self.bar)
        lay.addLayout(prow)
        lay.addWidget(self.failures_title)
        lay.addWidget(self.failures, 1)
        lay.addWidget(self.models)
        lay.addWidget(self.setup_btn)
        self.set_indexing(False)
        self.failures_title.setVisible(False)
        self.failures.setVisible(False)

    def _button(self, text: str, tip: str, slot) -> QPushButton:
        b = QPushButton(text, self)
        b.setToolTip(tip)
        b.setAccessibleName(text.replace("&", "").rstrip("…"))
        b.clicked.connect(slot)
        return b

    def _update_buttons(self) -> None:
        self.remove_btn.setEnabled(self.folders.currentItem() is not None and not self._indexing)

    # -- actions -------------------------------------------------------------------------------------
    def choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Add a folder to the library", os.path.expanduser("~"))
        if path:
            emit(self.add_requested, path)

    def _remove(self) -> None:
        item = self.folders.currentItem()
        if item is not None:
            emit(self.remove_requested, item.data(Qt.ItemDataRole.UserRole))

    def _pause(self) -> None:
        if self.paused:
            emit(self.resume_requested)
        else:
            emit(self.pause_requested)

    def _failure_menu(self, pos) -> None:
        item = self.failures.itemAt(pos)
        if item is None:
            return
        path = item.data(0, Qt.ItemDataRole.UserRole)
        m = QMenu(self)
        m.addAction("Details…", lambda: self._show_failure(item))
        m.addAction("Show in folder", lambda: show_in_folder(path))
        m.addAction("Copy path", lambda: QApplication.clipboard().setText(path))
        m.popup(self.failures.viewport().mapToGlobal(pos))

    def _show_failure(self, item: QTreeWidgetItem) -> None:
        path = item.data(0, Qt.ItemDataRole.UserRole)
        box = QMessageBox(QMessageBox.Icon.Information, "Couldn't read this file", path, parent=self)
        box.setInformativeText(item.text(1))
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.open()

    # -- state ---------------------------------------------------------------------------------------
    def set_indexing(self, running: bool, paused: bool = False) -> None:
        self._indexing = running
        self.paused = paused
        self.bar.setVisible(running)
        self.pause_btn.setVisible(running or paused)
        self.cancel_btn.setVisible(running)
        self.pause_btn.setText("Resume" if paused else "Pause")
        self.pause_btn.setAccessibleName("Resume indexing" if paused else "Pause indexing")
        self.rescan_btn.setEnabled(not running)
        self._update_buttons()
        if not running and not paused:
            self.bar.setRange(0, 100)

    def set_progress(self, stage: str, done: int, total: int, eta: str = "") -> None:
        name = STAGE_NAMES.get(stage, stage.capitalize())
        if total > 0:
            self.bar.setRange(0, total)
            self.bar.setValue(min(done, total))
            self.bar.setFormat("%v / %m")
            self.stage.setText(f"{name} {done:,} of {total:,}" + (f" — {eta}" if eta else ""))
        else:
            self.bar.setRange(0, 0)  # busy indicator
            self.stage.setText(f"{name}… {done:,} found" if done else f"{name}…")

    def set_message(self, text: str) -> None:
        self.stage.setText(text)
        self.stage.setToolTip("")

    def set_status(self, status: LibraryStatus, adding: list[str] | None = None) -> None:
        """Fill folders, failures and models from a ``LibraryStatus`` (``adding``: folders being added
        that the status does not list yet)."""
        current = (
            self.folders.currentItem().data(Qt.ItemDataRole.UserRole) if self.folders.currentItem() else None
        )
        self.folders.clear()
        for r in status.roots:
            label = f"{os.path.basename(r['path'].rstrip(os.sep)) or r['path']}  —  {r['photos']:,} photos"
            if not r.get("online", True):
                label += "  (offline)"
            item = QListWidgetItem(label)
            item.setToolTip(r["path"])
            item.setData(Qt.ItemDataRole.UserRole, r["path"])
            item.setData(Qt.ItemDataRole.AccessibleTextRole, label)
            self.folders.addItem(item)
            if r["path"] == current:
                self.folders.setCurrentItem(item)
        for path in adding or []:
            label = f"{os.path.basename(path.rstrip(os.sep)) or path}  —  adding…"
            item = QListWidgetItem(label)
            item.setToolTip(path)
            item.setFlags(Qt.ItemFlag.ItemIsEnabled)
            item.setData(Qt.ItemDataRole.AccessibleTextRole, label)
            self.folders.addItem(item)
        if not status.roots and not adding:
            item = QListWidgetItem("No folders yet — add one or drop it here")
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            self.folders.addItem(item)
        self.failures.clear()
        for f in status.failed_files:
            it = QTreeWidgetItem([os.path.basename(f["path"]), f["reason"]])
            it.setToolTip(0, f["path"])
            it.setToolTip(1, f["reason"])
            it.setData(0, Qt.ItemDataRole.UserRole, f["path"])
            self.failures.addTopLevelItem(it)
        n = status.failures
        self.failures_title.setText(f"<b>Couldn't read {n:,} file{'s' if n != 1 else ''}</b>")
        self.failures_title.setVisible(n > 0)
        self.failures.setVisible(n > 0)
        clip = status.clip_model or "missing"
        mllm = status.mllm_model or ("missing" if status.mllm_error else "—")
        if status.mllm_model and status.mllm_error:
            mllm += " (broken)"
        self.models.setText(f"Search model: {clip}<br>Checking model: {mllm}")
        self._update_buttons()
