"""The search bar: query field with the query-image chip, rerank and sort options, date filter, banner.

It only holds widgets and reports what the user asked for (signals); the window runs the searches.
"""

from __future__ import annotations

import os

from PySide6.QtCore import QDate, QEvent, QObject, Qt, Signal
from PySide6.QtGui import QAction, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDateEdit,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .qtcompat import emit
from .settings import Settings

SORT_LABELS = (("relevance", "Best match"), ("newest", "Newest first"), ("oldest", "Oldest first"))
PLACEHOLDER = "Describe a photo — “red car”, “sunset at the beach”…  or drop a photo here"
REFINE_PLACEHOLDER = "Add words to refine the photo's search (optional) — e.g. “at night”"
NEW_SEARCH_PLACEHOLDER = "Type to start a new search — or press Keep on the photo to refine it with words"


class QueryChip(QFrame):
    """The query image as a removable chip next to the search field; "Keep" keeps it with new words."""

    removed = Signal()
    keep_toggled = Signal(bool)

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
        self.keep_btn = QToolButton(self)
        self.keep_btn.setText("Keep")
        self.keep_btn.setCheckable(True)
        self.keep_btn.setAutoRaise(True)
        self.keep_btn.setToolTip("Keep this photo in the search when you type new words (refine it)")
        self.keep_btn.setAccessibleName("Keep the query image with new words")
        self.keep_btn.toggled.connect(lambda on: emit(self.keep_toggled, bool(on)))
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 1, 2, 1)
        lay.setSpacing(4)
        lay.addWidget(self.icon)
        lay.addWidget(self.name)
        lay.addWidget(self.keep_btn)
        lay.addWidget(self.close_btn)
        self.setAccessibleName("Query image")

    def set_image(self, path: str) -> None:
        if path == getattr(self, "_path", None):
            return  # the same photo: keep its thumbnail
        self._path = path
        name = os.path.basename(path)
        self.name.setText(name if len(name) <= 22 else name[:10] + "…" + name[-10:])
        self.setToolTip(f"Searching for photos like {path}")
        self.setAccessibleDescription(f"Query image {name}")
        self.icon.setPixmap(QPixmap())


class UnderstoodChips(QWidget):
    """What the query was understood as: "Lisbon, Portugal ✕", "Jun 2019 – Aug 2019 ✕"; ✕ keeps it literal."""

    removed = Signal(
        str
    )  # the chip's id: the phrase's source text, or "place-filter" for the Places list pick

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("understoodChips")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(6)
        self._lay = QHBoxLayout()
        self._lay.setSpacing(6)
        lay.addLayout(self._lay)
        self.note = QLabel(self)
        self.note.setObjectName("understoodNote")
        self.note.setWordWrap(True)
        lay.addWidget(self.note, 1)
        lay.addStretch(0)
        self.chips: list[tuple[str, str]] = []  # (id, label) shown, in order
        self.setVisible(False)

    def set_chips(self, chips: list[tuple[str, str, str]], note: str | None) -> None:
        """``chips``: (id, icon, label)."""
        while self._lay.count():
            w = self._lay.takeAt(0).widget()
            if w is not None:
                w.hide()
                w.setParent(None)
                w.deleteLater()
        self.chips = [(cid, label) for cid, _icon, label in chips]
        for n, (cid, icon, label) in enumerate(chips):
            btn = QToolButton(self)
            btn.setObjectName("chip")
            btn.setText(f"{icon}{label}  ✕")
            if cid.startswith("understood:"):
                btn.setToolTip(
                    f"Understood as a filter: {label}. Click to search the words as typed instead."
                )
            else:
                btn.setToolTip(f"Filter: {icon}{label}. Click to remove it.")
            btn.setAccessibleName(f"Remove filter {label}")
            btn.setStyleSheet(
                "QToolButton#chip { border: 1px solid palette(mid); border-radius: 9px; padding: 1px 8px; }"
            )
            btn.clicked.connect(lambda *_, cid=cid: emit(self.removed, cid))
            self._lay.insertWidget(n, btn)
            btn.show()
        self.note.setText(note or "")
        self.note.setVisible(bool(note))
        self.setVisible(bool(chips or note))


class SearchBar(QWidget):
    """The widgets above the results grid."""

    submitted = Signal()  # Enter or the Search button
    escape = Signal()  # Esc in the search field
    cleared = Signal()  # the field's clear (×) button: the whole query goes
    options_changed = Signal()  # double-check, how many, only matches, dates
    sort_changed = Signal(str)
    setup_link = Signal()  # the banner's "Set up models…" link

    def __init__(self, s: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("searchBar")
        row1 = self._build_query_row()
        self.understood = UnderstoodChips(self)
        row2 = self._build_options(s)
        self._build_banner()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(10, 8, 10, 4)
        lay.addLayout(row1)
        lay.addWidget(self.understood)
        lay.addLayout(row2)
        lay.addLayout(self._row3)
        lay.addWidget(self.banner)

        self.search_edit.returnPressed.connect(lambda: emit(self.submitted))
        self.search_btn.clicked.connect(lambda *_: emit(self.submitted))
        self.sort_combo.currentIndexChanged.connect(
            lambda *_: emit(self.sort_changed, str(self.sort_combo.currentData()))
        )
        self.banner.linkActivated.connect(lambda _link: emit(self.setup_link))

    def _build_query_row(self) -> QHBoxLayout:
        """The query-image chip, the search field and the Search button."""
        self.chip = QueryChip(self)
        self.chip.setVisible(False)
        self.search_edit = QLineEdit(self)
        self.search_edit.setObjectName("searchField")
        self.search_edit.setPlaceholderText(PLACEHOLDER)
        self.search_edit.setClearButtonEnabled(True)
        clear_action = self.search_edit.findChild(QAction, "_q_qlineeditclearaction")
        if clear_action is not None:  # × clears the whole query (chips, photo, dates), not only the text
            clear_action.triggered.connect(lambda *_: emit(self.cleared))
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
        self.search_edit.installEventFilter(self)  # Esc clears (QLineEdit would swallow a shortcut)
        self.search_btn = QPushButton("Search", self)
        self.search_btn.setAccessibleName("Search")
        self.search_btn.setToolTip("Search (Enter)")
        row1 = QHBoxLayout()
        row1.addWidget(self.chip)
        row1.addWidget(self.search_edit, 1)
        row1.addWidget(self.search_btn)

        return row1

    def _build_options(self, s: Settings) -> QHBoxLayout:
        """Double-check, how many, only matches, sort; the date filter (wraps onto its own line)."""
        self.rerank_check = QCheckBox("Double-check top", self)
        self.rerank_check.setChecked(s.rerank)
        self.rerank_check.setAccessibleName("Double-check results with the checking model")
        self.rerank_check.setToolTip("Let the local multimodal LLM look at the top results and reorder them")
        self.k_spin = QSpinBox(self)
        self.k_spin.setRange(1, 100)
        self.k_spin.setValue(s.rerank_k)
        self.k_spin.setAccessibleName("How many results to double-check")
        self.k_spin.setToolTip("How many of the top results the model looks at")
        self.only_check = QCheckBox("Only true matches", self)
        self.only_check.setChecked(s.only_matches)
        self.only_check.setAccessibleName("Only true matches")
        self.only_check.setToolTip(
            "Show only photos the model checked and judged as matching (more likely true than false)"
        )
        self.sort_combo = QComboBox(self)
        self.sort_combo.setAccessibleName("Sort results")
        for key, label in SORT_LABELS:
            self.sort_combo.addItem(label, key)
        self.sort_combo.setCurrentIndex(max(0, self.sort_combo.findData(s.sort)))
        self.date_check = QCheckBox("Taken between", self)
        self.date_check.setAccessibleName("Filter by date taken")
        self.date_from = QDateEdit(self)
        self.date_to = QDateEdit(self)
        for w, name in ((self.date_from, "From date"), (self.date_to, "To date")):
            w.setCalendarPopup(True)
            w.setDisplayFormat("yyyy-MM-dd")
            w.setAccessibleName(name)
            w.setEnabled(False)
        self.date_from.setDate(QDate(2000, 1, 1))
        self.date_to.setDate(QDate.currentDate())
        sort_label = QLabel("&Sort:", self)
        sort_label.setBuddy(self.sort_combo)
        # Two groups: the date filter moves to its own line when the window is too narrow for one row
        # (so the window still fits 1024 px next to the library panel).
        self._opts_box = QWidget(self)
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
        self._dates_box = QWidget(self)
        dates = QHBoxLayout(self._dates_box)
        dates.setContentsMargins(0, 0, 0, 0)
        for wdg in (self.date_check, self.date_from, QLabel("and", self), self.date_to):
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

        return row2

    def _build_banner(self) -> None:
        self.banner = QLabel(self)
        self.banner.setObjectName("banner")
        self.banner.setWordWrap(True)
        self.banner.setTextFormat(Qt.TextFormat.RichText)
        self.banner.setAccessibleName("Notice")
        self.banner.setStyleSheet(
            "QLabel#banner { padding: 6px; border-radius: 4px; background: rgba(230,160,20,60); }"
        )
        self.banner.setVisible(False)

    def _options_changed(self, *_: object) -> None:
        emit(self.options_changed)

    def _dates_toggled(self, on: bool) -> None:
        self.set_dates_enabled(on)
        emit(self.options_changed)

    def set_dates_enabled(self, on: bool) -> None:
        self.date_from.setEnabled(on)
        self.date_to.setEnabled(on)

    def date_filter(self) -> tuple[str | None, str | None]:
        """(from, to) as ISO dates when the filter is on, else (None, None)."""
        if not self.date_check.isChecked():
            return None, None
        return self.date_from.date().toString("yyyy-MM-dd"), self.date_to.date().toString("yyyy-MM-dd")

    def show_date_range(self, first: str | None, last: str | None) -> None:
        """Preset the (unticked) filter to the library's capture dates, without searching."""
        if not (first and last) or self.date_check.isChecked():
            return
        for w, value in ((self.date_from, first), (self.date_to, last)):
            w.blockSignals(True)
            w.setDate(QDate.fromString(value[:10], "yyyy-MM-dd"))
            w.blockSignals(False)

    def set_rerank_available(self, ok: bool, why: str | None) -> None:
        for w in (self.rerank_check, self.k_spin, self.only_check):
            w.setEnabled(ok)
        if ok:
            self.rerank_check.setToolTip(
                "Let the local multimodal LLM look at the top results and reorder them"
            )
        else:
            self.rerank_check.setToolTip(f"Not available: {why}")

    def set_banner(self, html: str | None) -> None:
        self.banner.setVisible(bool(html))
        self.banner.setText(html or "")

    def set_query_image(self, path: str | None, keep: bool = False) -> None:
        self.chip.setVisible(path is not None)
        if path is not None:
            self.chip.set_image(path)
        self.chip.keep_btn.blockSignals(True)
        self.chip.keep_btn.setChecked(bool(path) and keep)
        self.chip.keep_btn.blockSignals(False)
        if path is None:
            self.search_edit.setPlaceholderText(PLACEHOLDER)
        else:
            self.search_edit.setPlaceholderText(REFINE_PLACEHOLDER if keep else NEW_SEARCH_PLACEHOLDER)

    def _reflow_options(self) -> None:
        """Put the date filter on its own line when the options don't fit next to each other."""
        top = self
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

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._reflow_options()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if (
            obj is self.search_edit
            and event.type() == QEvent.Type.KeyPress
            and event.key() == Qt.Key.Key_Escape
        ):
            emit(self.escape)
            return True
        return super().eventFilter(obj, event)
