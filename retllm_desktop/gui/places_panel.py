"""The Places panel: country › region › city of the library's photos, with counts; a click filters by one.

It only shows what the engine reports (``LibraryStatus.places``: flat city, region and country counts) and
nests them by name: a city under its region when the gazetteer names one (US states), else under its
country. Counts sit right-aligned in their own column; the panel asks for the width its longest name
needs, so nothing is cut off at the window's default size.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QTreeWidget,
    QTreeWidgetItem,
    QTreeWidgetItemIterator,
    QVBoxLayout,
    QWidget,
)

from .qtcompat import emit

KEY_ROLE = Qt.ItemDataRole.UserRole
LABEL_ROLE = Qt.ItemDataRole.UserRole + 1
EXPAND_UP_TO = 4  # countries shown opened when the library has at most this many
MAX_WIDTH = 360  # px the panel may ask for; a longer name wraps into its tooltip


def place_label(p: dict) -> str:
    """ "Lisbon, Portugal" / "Texas, United States" / "Portugal" (what a chip or a search says)."""
    return ", ".join(x for x in (p.get("name"), p.get("region"), p.get("country")) if x)


def _plural(n: int) -> str:
    return f"{n:,} photo{'s' if n != 1 else ''}"


class PlacesPanel(QWidget):
    place_chosen = Signal(str, str)  # key ("city:2267057"), label

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tree = QTreeWidget(self)
        self.tree.setAccessibleName("Places")
        self.tree.setColumnCount(2)
        self.tree.setHeaderHidden(True)
        self.tree.setUniformRowHeights(True)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideNone)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.empty = QLabel("Photos with GPS positions are listed here by country, region and city.", self)
        self.empty.setWordWrap(True)
        self.empty.setEnabled(False)
        self.hint = QLabel("Click a place to show only the photos taken there.", self)
        self.hint.setWordWrap(True)
        self.hint.setEnabled(False)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 4, 6, 4)
        lay.addWidget(self.empty)
        lay.addWidget(self.tree, 1)
        lay.addWidget(self.hint)
        self.tree.itemActivated.connect(lambda item, _col: self._chosen(item))
        self.tree.itemClicked.connect(lambda item, _col: self._chosen(item))
        self._wanted_width = 0
        self.set_places([])

    # -- contents ------------------------------------------------------------------------------
    def set_places(self, places: list[dict]) -> None:
        current = self.tree.currentItem().data(0, KEY_ROLE) if self.tree.currentItem() else None
        expanded = {it.data(0, KEY_ROLE) for it in self._items() if it.isExpanded()}
        first_fill = self.tree.topLevelItemCount() == 0
        self.tree.clear()
        countries: dict[str, QTreeWidgetItem] = {}
        regions: dict[tuple[str, str], QTreeWidgetItem] = {}
        for p in (p for p in places if p["kind"] == "country"):
            countries[p["name"]] = self._item(self.tree, p, p["name"])
        for p in (p for p in places if p["kind"] == "region"):
            parent = countries.get(p.get("country") or "")
            regions[(p.get("country") or "", p["name"])] = self._item(parent or self.tree, p, p["name"])
        for p in (p for p in places if p["kind"] == "city"):
            country, region = p.get("country") or "", p.get("region")
            parent = regions.get((country, region)) if region else None
            self._item(parent or countries.get(country) or self.tree, p, p["name"])
        many = len(countries) > EXPAND_UP_TO
        for it in self._items():
            key = it.data(0, KEY_ROLE)
            if key == current:
                self.tree.setCurrentItem(it)
            top = it.parent() is None
            if key in expanded or (first_fill and top and not many):
                it.setExpanded(True)
        if current is not None and self.tree.currentItem() is not None:
            self.tree.scrollToItem(self.tree.currentItem())
        self.empty.setVisible(not places)
        self.tree.setVisible(bool(places))
        self.hint.setVisible(bool(places))
        self._wanted_width = self._needed_width()
        self.updateGeometry()

    def _item(self, parent: QTreeWidget | QTreeWidgetItem, p: dict, name: str) -> QTreeWidgetItem:
        label = place_label(p)
        item = QTreeWidgetItem(parent, [name, f"{p['photos']:,}"])
        item.setData(0, KEY_ROLE, p["key"])
        item.setData(0, LABEL_ROLE, label)
        item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        tip = f"{_plural(p['photos'])} taken in {label}"
        item.setToolTip(0, tip)
        item.setToolTip(1, tip)
        item.setData(0, Qt.ItemDataRole.AccessibleTextRole, f"{label}: {_plural(p['photos'])}")
        return item

    def _items(self) -> list[QTreeWidgetItem]:
        out = []
        it = QTreeWidgetItemIterator(self.tree)
        while it.value() is not None:
            out.append(it.value())
            it += 1
        return out

    def _needed_width(self) -> int:
        """Room for the deepest, longest name and its count, as the tree draws them."""
        fm = self.tree.fontMetrics()
        widest = 0
        for it in self._items():
            depth, p = 0, it.parent()
            while p is not None:
                depth, p = depth + 1, p.parent()
            text = fm.horizontalAdvance(it.text(0)) + fm.horizontalAdvance(f"  {it.text(1)}") + 24
            widest = max(widest, text + (depth + 1) * self.tree.indentation())
        margins = self.layout().contentsMargins()
        scrollbar = self.tree.verticalScrollBar().sizeHint().width()
        return min(
            widest + margins.left() + margins.right() + scrollbar + 2 * self.tree.frameWidth(), MAX_WIDTH
        )

    def sizeHint(self) -> QSize:
        hint = super().sizeHint()
        return QSize(max(hint.width(), self._wanted_width), max(hint.height(), 280))

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        return QSize(max(hint.width(), self._wanted_width), hint.height())

    # -- use -----------------------------------------------------------------------------------
    def keys(self) -> list[str]:
        return [str(it.data(0, KEY_ROLE)) for it in self._items()]

    def item(self, key: str) -> QTreeWidgetItem | None:
        return next((it for it in self._items() if it.data(0, KEY_ROLE) == key), None)

    def choose(self, key: str) -> None:
        it = self.item(key)
        if it is not None:
            self.tree.setCurrentItem(it)
            self._chosen(it)

    def clear_choice(self) -> None:
        self.tree.clearSelection()
        self.tree.setCurrentItem(None)

    def _chosen(self, item: QTreeWidgetItem) -> None:
        emit(self.place_chosen, str(item.data(0, KEY_ROLE)), str(item.data(0, LABEL_ROLE)))
