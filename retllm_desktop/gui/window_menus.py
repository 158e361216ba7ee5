"""The main window's menus and dialogs: the menu bar, a photo's context menu, model setup, settings, About.

A part of ``MainWindow`` (mixed into it; the widgets are the window's).
"""

from __future__ import annotations

import os
from typing import Any

from PySide6.QtCore import QModelIndex
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QMenu,
    QMessageBox,
)

from .selection_actions import add_selection_actions


class MenuActions:
    """The menu bar, the context menu and the dialogs they open."""

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
        m.addAction(self.people.dock.toggleViewAction())
        action(m, "&Larger thumbnails", lambda: self.zoom(1), QKeySequence.StandardKey.ZoomIn)
        action(m, "&Smaller thumbnails", lambda: self.zoom(-1), QKeySequence.StandardKey.ZoomOut)
        m = self.menuBar().addMenu("&Help")
        action(m, "&About", self._about)

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
                self.library.read_faces = self.settings.read_faces
            self.prepare.enabled = self.settings.prepare
            if not self.settings.prepare:
                self.prepare.stop()
            self.thumbs.set_memory_items(self.settings.thumb_memory_items)
            self.model.cutoff = self.settings.min_match
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
