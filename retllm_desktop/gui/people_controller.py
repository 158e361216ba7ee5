"""The window's People flow: the People dock, its refresh after indexing, face thumbnails, renames, merges,
hides, and the person filter a click puts on the search. Every engine call runs on a worker thread.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QDockWidget, QMainWindow

from .people_panel import PeoplePanel
from .qtcompat import emit
from .workers import CallWorker, WorkerPool

FACE_PX = 96


class PeopleController(QObject):
    """Owns the People panel; ``person_filter`` is (person id, label) while a person is picked."""

    filter_changed = Signal()  # the window searches again
    message = Signal(str)  # one line for the status bar

    def __init__(self, window: QMainWindow, pool: WorkerPool, dock_features: Any) -> None:
        super().__init__(window)
        self.window, self.pool = window, pool
        self.library: Any = None
        self.person_filter: tuple[int, str] | None = None
        self.panel = PeoplePanel(window)
        self.dock = QDockWidget("People", window)
        self.dock.setObjectName("peopleDock")
        self.dock.setWidget(self.panel)
        self.dock.setFeatures(dock_features)
        window.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.dock)
        self.panel.person_chosen.connect(self._chosen)
        self.panel.rename_requested.connect(self.rename)
        self.panel.merge_requested.connect(self.merge)
        self.panel.hide_requested.connect(self.hide)
        self.panel.face_wanted.connect(self._load_face)
        self._gen = 0

    def set_library(self, library: Any) -> None:
        self.library = library
        self.person_filter = None
        self.panel.set_people([])
        self.refresh()

    # -- listing ---------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Ask the engine for the people again (after indexing, a change, a new library)."""
        lib = self.library
        if lib is None or not hasattr(lib, "people"):
            return
        self._gen += 1
        gen = self._gen
        w = CallWorker(lib.people)

        def done(people: Any) -> None:
            if gen == self._gen and people is not None:
                self.panel.set_people(people)
                if self.person_filter and self.person_filter[0] not in self.panel.ids():
                    self.clear_filter()

        w.signals.finished.connect(done)
        self.pool.start(w)

    def _load_face(self, person_id: int, face_id: int) -> None:
        lib = self.library
        if lib is None:
            return

        def load() -> Any:
            from .thumbnails import pil_to_qimage

            img = lib.face_crop(face_id, FACE_PX)
            return None if img is None else pil_to_qimage(img)

        w = CallWorker(load)
        w.signals.finished.connect(lambda img: img is not None and self.panel.set_face(face_id, img))
        self.pool.start(w)

    # -- the filter ------------------------------------------------------------------------------
    def _chosen(self, person_id: int, label: str) -> None:
        self.person_filter = (person_id, label)
        emit(self.filter_changed)

    def clear_filter(self) -> None:
        if self.person_filter is not None:
            self.person_filter = None
            self.panel.list.clearSelection()

    def person_ids(self) -> tuple[int, ...]:
        return (self.person_filter[0],) if self.person_filter else ()

    # -- changes ---------------------------------------------------------------------------------
    def _change(self, fn: Any, *args: Any, done_text: str) -> None:
        lib = self.library
        if lib is None:
            return
        w = CallWorker(fn, *args)

        def done(_res: Any) -> None:
            emit(self.message, done_text)
            self.refresh()

        def failed(msg: str) -> None:
            emit(self.message, msg)
            self.refresh()  # put the old name back in the list

        w.signals.finished.connect(done)
        w.signals.failed.connect(failed)
        self.pool.start(w)

    def rename(self, person_id: int, name: str) -> None:
        if self.person_filter and self.person_filter[0] == person_id:
            self.person_filter = (person_id, name)
        self._change(self.library.name_person, person_id, name, done_text=f"Named “{name}”")

    def merge(self, keep: int, other: int) -> None:
        keep_label, other_label = self.panel.label_of(keep), self.panel.label_of(other)
        if self.person_filter and self.person_filter[0] == other:
            self.person_filter = (keep, keep_label)
        self._change(
            self.library.merge_people,
            keep,
            other,
            done_text=f"{other_label} and {keep_label} are one person now",
        )

    def hide(self, person_id: int) -> None:
        label = self.panel.label_of(person_id)
        if self.person_filter and self.person_filter[0] == person_id:
            self.clear_filter()
            emit(self.filter_changed)
        self._change(self.library.hide_person, person_id, True, done_text=f"{label} is hidden from People")
