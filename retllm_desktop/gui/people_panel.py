"""The People list: a face per person with the photo count; click to see their photos, rename in place,
merge (drag one person onto another, or the menu), hide. Named people first, then the unnamed ones.

It only shows what the engine reports (``Library.people``) and asks the window to make changes; the face
thumbnails arrive later from a worker (``set_face``), so the list never waits for a photo to decode.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QAction, QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QStyledItemDelegate,
    QVBoxLayout,
    QWidget,
)

from .qtcompat import emit

ID_ROLE = Qt.ItemDataRole.UserRole
NAME_ROLE = Qt.ItemDataRole.UserRole + 1
FACE_ROLE = Qt.ItemDataRole.UserRole + 2
ICON_SIZE = 56
UNNAMED = "Add a name"


def person_label(p: dict) -> str:
    n = p.get("photo_count", len(p.get("photos", [])))
    return f"{p['name'] or UNNAMED}\n{n:,} photo{'s' if n != 1 else ''}"


class _NameDelegate(QStyledItemDelegate):
    """Editing a person shows just the name (not the photo count under it); an unnamed one starts empty."""

    def setEditorData(self, editor, index) -> None:  # noqa: N802 - Qt's name
        editor.setText(index.data(NAME_ROLE) or "")


class _PeopleList(QListWidget):
    """Dropping one person onto another asks to merge them (the dragged one into the target)."""

    dropped_on = Signal(int, int)  # target person, dragged person

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt's name
        target = self.itemAt(event.position().toPoint())
        source = self.currentItem()
        event.ignore()  # never let Qt move or copy the item itself
        if target is not None and source is not None and target is not source:
            emit(self.dropped_on, int(target.data(ID_ROLE)), int(source.data(ID_ROLE)))


class PeoplePanel(QWidget):
    person_chosen = Signal(int, str)  # person id, label for the chip
    rename_requested = Signal(int, str)
    merge_requested = Signal(int, int)  # keep, other
    hide_requested = Signal(int)
    face_wanted = Signal(int, int)  # person id, face id: the window loads the thumbnail

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.list = _PeopleList(self)
        self.list.setAccessibleName("People")
        self.list.setToolTip(
            "People found in your photos. Click to see their photos; double-click a name to change it; "
            "drag one person onto another if they are the same person"
        )
        self.list.setIconSize(QSize(ICON_SIZE, ICON_SIZE))
        self.list.setItemDelegate(_NameDelegate(self.list))
        self.list.setEditTriggers(
            QAbstractItemView.EditTrigger.DoubleClicked | QAbstractItemView.EditTrigger.EditKeyPressed
        )
        self.list.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.empty = QLabel("People appear here once the same face is found in two or more photos.", self)
        self.empty.setWordWrap(True)
        self.empty.setEnabled(False)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 4, 6, 4)
        lay.addWidget(self.empty)
        lay.addWidget(self.list, 1)
        self._people: list[dict] = []
        self._faces: dict[int, QPixmap] = {}  # face id → thumbnail (kept across refreshes)
        self._filling = False
        self.list.itemClicked.connect(self._chosen)
        self.list.itemActivated.connect(self._chosen)
        self.list.itemChanged.connect(self._edited)
        self.list.dropped_on.connect(lambda keep, other: emit(self.merge_requested, keep, other))
        self.list.customContextMenuRequested.connect(self._menu)
        self.set_people([])

    # -- content ---------------------------------------------------------------------------------
    def set_people(self, people: list[dict]) -> None:
        """Show ``people`` (Library.people dicts), keeping the selection; asks for missing thumbnails."""
        current = self.list.currentItem().data(ID_ROLE) if self.list.currentItem() else None
        self._filling = True
        self.list.clear()
        self._people = list(people)
        for p in people:
            item = QListWidgetItem(person_label(p))
            item.setData(ID_ROLE, p["id"])
            item.setData(NAME_ROLE, p["name"] or "")
            item.setData(FACE_ROLE, p.get("cover_face"))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable | Qt.ItemFlag.ItemIsDragEnabled)
            n = p.get("photo_count", 0)
            who = p["name"] or "this person"
            item.setToolTip(f"{n:,} photo{'s' if n != 1 else ''} of {who}")
            face = p.get("cover_face")
            if face in self._faces:
                item.setIcon(QIcon(self._faces[face]))
            elif face is not None:
                emit(self.face_wanted, int(p["id"]), int(face))
            self.list.addItem(item)
            if p["id"] == current:
                self.list.setCurrentItem(item)
        self._filling = False
        self.empty.setVisible(not people)
        self.list.setVisible(bool(people))

    def set_face(self, face_id: int, image: QImage) -> None:
        pix = QPixmap.fromImage(image)
        self._faces[face_id] = pix
        self._filling = True
        for i in range(self.list.count()):
            item = self.list.item(i)
            if item.data(FACE_ROLE) == face_id:
                item.setIcon(QIcon(pix))
        self._filling = False

    def ids(self) -> list[int]:
        return [int(self.list.item(i).data(ID_ROLE)) for i in range(self.list.count())]

    def item_for(self, person_id: int) -> QListWidgetItem | None:
        for i in range(self.list.count()):
            if self.list.item(i).data(ID_ROLE) == person_id:
                return self.list.item(i)
        return None

    def label_of(self, person_id: int) -> str:
        for p in self._people:
            if p["id"] == person_id:
                return p["name"] or "Unnamed person"
        return "Unnamed person"

    # -- actions ---------------------------------------------------------------------------------
    def choose(self, person_id: int) -> None:
        item = self.item_for(person_id)
        if item is not None:
            self.list.setCurrentItem(item)
            self._chosen(item)

    def _chosen(self, item: QListWidgetItem) -> None:
        pid = int(item.data(ID_ROLE))
        emit(self.person_chosen, pid, self.label_of(pid))

    def _edited(self, item: QListWidgetItem) -> None:
        if self._filling:
            return
        text = item.text().split("\n")[0].strip()
        old = item.data(NAME_ROLE) or ""
        if text and text != old and text != UNNAMED:
            emit(self.rename_requested, int(item.data(ID_ROLE)), text)
        else:  # nothing (or nothing new) typed: put the label back
            self._filling = True
            pid = int(item.data(ID_ROLE))
            item.setText(person_label(next(p for p in self._people if p["id"] == pid)))
            self._filling = False

    def _menu(self, pos) -> None:
        item = self.list.itemAt(pos)
        if item is None:
            return
        menu = self.context_menu(int(item.data(ID_ROLE)))
        menu.exec(self.list.viewport().mapToGlobal(pos))

    def context_menu(self, person_id: int) -> QMenu:
        """Rename, merge into another person, hide (built per click: the people change)."""
        menu = QMenu(self)
        item = self.item_for(person_id)
        rename = QAction("Name…" if not (item and item.data(NAME_ROLE)) else "Rename…", menu)
        rename.triggered.connect(lambda: item is not None and self.list.editItem(item))
        menu.addAction(rename)
        merge = menu.addMenu("Same person as")
        for p in self._people:
            if p["id"] == person_id:
                continue
            a = QAction(f"{p['name'] or 'Unnamed person'} ({p.get('photo_count', 0):,} photos)", merge)
            a.triggered.connect(lambda _=False, keep=p["id"]: emit(self.merge_requested, keep, person_id))
            merge.addAction(a)
        merge.setEnabled(len(self._people) > 1)
        hide = QAction("Hide this person", menu)
        hide.triggered.connect(lambda: emit(self.hide_requested, person_id))
        menu.addAction(hide)
        return menu
