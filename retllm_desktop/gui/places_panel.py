"""The Places list: cities, regions and countries of the library's photos with counts; a click filters by one.

It only shows what the engine reports (``LibraryStatus.places``) and says which place the user picked.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from .qtcompat import emit

KIND_ICON = {"city": "●", "region": "◆", "country": "■"}


def place_label(p: dict) -> str:
    """ "Lisbon, Portugal" / "Texas, United States" / "Portugal"."""
    return ", ".join(x for x in (p.get("name"), p.get("region"), p.get("country")) if x)


class PlacesPanel(QWidget):
    place_chosen = Signal(str, str)  # key ("city:2267057"), label

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.list = QListWidget(self)
        self.list.setAccessibleName("Places")
        self.list.setToolTip("Photos taken there (from their GPS positions); click to show only those")
        self.empty = QLabel("Photos with GPS positions are listed here by city and country.", self)
        self.empty.setWordWrap(True)
        self.empty.setEnabled(False)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 4, 6, 4)
        lay.addWidget(self.empty)
        lay.addWidget(self.list, 1)
        self.list.itemActivated.connect(self._chosen)
        self.list.itemClicked.connect(self._chosen)
        self.set_places([])

    def set_places(self, places: list[dict]) -> None:
        current = self.list.currentItem().data(Qt.ItemDataRole.UserRole) if self.list.currentItem() else None
        self.list.clear()
        for p in places:
            label = place_label(p)
            item = QListWidgetItem(f"{KIND_ICON.get(p['kind'], '')} {label}  ({p['photos']:,})")
            item.setData(Qt.ItemDataRole.UserRole, p["key"])
            item.setData(Qt.ItemDataRole.UserRole + 1, label)
            item.setToolTip(f"{p['photos']:,} photo{'s' if p['photos'] != 1 else ''} taken in {label}")
            self.list.addItem(item)
            if p["key"] == current:
                self.list.setCurrentItem(item)
        self.empty.setVisible(not places)
        self.list.setVisible(bool(places))

    def keys(self) -> list[str]:
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())]

    def choose(self, key: str) -> None:
        for i in range(self.list.count()):
            if self.list.item(i).data(Qt.ItemDataRole.UserRole) == key:
                self.list.setCurrentRow(i)
                self._chosen(self.list.item(i))
                return

    def _chosen(self, item: QListWidgetItem) -> None:
        emit(
            self.place_chosen,
            str(item.data(Qt.ItemDataRole.UserRole)),
            str(item.data(Qt.ItemDataRole.UserRole + 1)),
        )
