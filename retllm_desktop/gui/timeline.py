"""The timeline: with no query the grid shows the library, newest first, under month (or day) headers.

Every photo app opens on the photos. A library of 100,000 photos must scroll as smoothly as one of 40, so
the model holds only ids and days (two small lists); a page of catalog rows is fetched when the view first
asks for a row in it (the view asks only for what it paints), and thumbnails are requested through the
same on-demand :class:`ThumbnailLoader` as search results. The grid's delegate paints header rows as
section labels ("June 2019 · 42 photos") across one tile.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QModelIndex, QRect, Qt
from PySide6.QtGui import QFont, QPainter, QPalette
from PySide6.QtWidgets import QStyle, QStyleOptionViewItem

from ..search import SearchResult
from .results_model import TILE_ROLES, BrokenRole, GroupRole, PhotoTilesModel, ThumbDelegate, describe_date
from .thumbnails import ThumbnailLoader

if TYPE_CHECKING:
    from ..catalog import Photo

HeaderRole = Qt.ItemDataRole.UserRole + 20  # (title, photo count) on a header row, else None
PAGE = 200  # catalog rows fetched at once
PAGES_KEPT = 64  # pages of rows kept (12,800 photos' metadata; thumbnails have their own bound)
DAY_HEADERS_UP_TO = 2  # months spanned: up to this many, one header per day


def month_title(day: str) -> str:
    try:
        return date.fromisoformat(day).strftime("%B %Y")
    except ValueError:
        return "No date"


def day_title(day: str) -> str:
    try:
        d = date.fromisoformat(day)
    except ValueError:
        return "No date"
    return f"{d.strftime('%A')}, {d.day} {d.strftime('%B %Y')}"


class TimelineModel(PhotoTilesModel):
    """Rows: headers and photos of ``rows`` ((id, day), newest first); photos fetched a page at a time."""

    def __init__(
        self, thumbs: ThumbnailLoader, fetch: Callable[[list[int]], dict[int, Photo]], parent: Any = None
    ) -> None:
        super().__init__(thumbs, parent)
        self.fetch = fetch
        self._ids: list[int] = []  # photo ids in timeline order
        self._entries: list[int] = []  # per row: index into _ids (>= 0) or -(header number + 1)
        self._n = 0  # len(_entries)
        self._headers: list[tuple[str, int]] = []
        self._photo_row: list[int] = []  # row of each photo (index into _ids)
        self._pages: OrderedDict[int, dict[int, SearchResult]] = OrderedDict()
        self._rows_by_key: dict[str, int] = {}
        self.pages_fetched = 0  # how many pages were read (the view asks only for what it shows)
        self.by_day = False
        thumbs.ready.connect(self._on_thumb)
        thumbs.failed.connect(lambda key, _reason: self._on_thumb(key))

    # -- content -----------------------------------------------------------------------------------
    def set_rows(self, rows: list[tuple[int, str]]) -> None:
        months = {d[:7] for _, d in rows}
        self.by_day = len(months) <= DAY_HEADERS_UP_TO
        self.beginResetModel()
        self._ids = [pid for pid, _ in rows]
        self._entries, self._headers, self._photo_row = [], [], []
        self._pages.clear()
        self._rows_by_key.clear()
        current: str | None = None
        for i, (_, day) in enumerate(rows):
            group = day if self.by_day else day[:7]
            if group != current:
                current = group
                title = day_title(day) if self.by_day else month_title(day[:7] + "-01")
                self._headers.append((title if day else "No date", 0))
                self._entries.append(-len(self._headers))
            title, n = self._headers[-1]
            self._headers[-1] = (title, n + 1)
            self._photo_row.append(len(self._entries))
            self._entries.append(i)
        self._n = len(self._entries)
        self.endResetModel()

    def clear(self) -> None:
        self.set_rows([])

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008 - Qt signature
        # Called twice per row while the view lays 100k rows out: kept as cheap as Python allows.
        return self._n if not parent.isValid() else 0

    def photo_count(self) -> int:
        return len(self._ids)

    def header(self, row: int) -> tuple[str, int] | None:
        if 0 <= row < len(self._entries) and self._entries[row] < 0:
            return self._headers[-self._entries[row] - 1]
        return None

    def headers(self) -> list[tuple[str, int]]:
        return list(self._headers)

    def row_of_photo(self, photo_id: int) -> int:
        try:
            return self._photo_row[self._ids.index(photo_id)]
        except ValueError:
            return -1

    def result(self, row: int) -> SearchResult | None:
        """The photo at ``row`` as a result (None for a header row): its page is fetched on first use."""
        if not 0 <= row < len(self._entries) or self._entries[row] < 0:
            return None
        i = self._entries[row]
        page_no = i // PAGE
        page = self._pages.get(page_no)
        if page is None:
            page = self._fetch_page(page_no)
        else:
            self._pages.move_to_end(page_no)
        return page.get(self._ids[i])

    def _fetch_page(self, page_no: int) -> dict[int, SearchResult]:
        ids = self._ids[page_no * PAGE : (page_no + 1) * PAGE]
        photos = self.fetch(ids)
        page = {pid: SearchResult(photo=p, score=0.0, coarse_rank=0) for pid, p in photos.items()}
        self.pages_fetched += 1
        self._pages[page_no] = page
        while len(self._pages) > PAGES_KEPT:
            self._pages.popitem(last=False)
        for k, r in enumerate(ids):
            res = page.get(r)
            if res is not None:
                self._rows_by_key[self.thumb_key(res)] = self._photo_row[page_no * PAGE + k]
        return page

    # The preview walks photos, not rows: photo number i (0-based, headers not counted).
    def photo_result(self, i: int) -> SearchResult | None:
        return self.result(self._photo_row[i]) if 0 <= i < len(self._photo_row) else None

    def photo_row(self, i: int) -> int:
        return self._photo_row[i] if 0 <= i < len(self._photo_row) else -1

    def photo_index(self, row: int) -> int:
        """The photo number of ``row`` (-1 for a header)."""
        return self._entries[row] if 0 <= row < len(self._entries) and self._entries[row] >= 0 else -1

    def next_photo_row(self, row: int, step: int) -> int:
        """The nearest photo row from ``row`` in direction ``step`` (headers are skipped), or -1."""
        row += step
        while 0 <= row < len(self._entries):
            if self._entries[row] >= 0:
                return row
            row += step
        return -1

    def set_thumb_px(self, px: int) -> None:
        if px != self.thumb_px:
            self.beginResetModel()
            self.thumb_px = px
            self._rows_by_key.clear()
            self._pages.clear()
            self.endResetModel()

    def _on_thumb(self, key: str) -> None:
        row = self._rows_by_key.get(key)
        if row is not None:
            idx = self.index(row, 0)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole, BrokenRole])

    # -- roles -------------------------------------------------------------------------------------
    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        head = self.header(index.row())
        if head is not None:
            if role == HeaderRole:
                return head
            if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.AccessibleTextRole):
                return f"{head[0]}, {head[1]:,} photo{'s' if head[1] != 1 else ''}"
            return None
        if role == HeaderRole:
            return None
        r = self.result(index.row())
        if r is None:
            return None
        p = r.photo
        shared = TILE_ROLES.get(role)
        if shared is not None:
            return shared(self, r)
        if role == GroupRole:
            return None
        if role in (Qt.ItemDataRole.ToolTipRole, Qt.ItemDataRole.AccessibleTextRole):
            tip = role == Qt.ItemDataRole.ToolTipRole
            parts = [p.path if tip else os.path.basename(p.path)]
            parts.append(describe_date(p.taken_at, getattr(p, "mtime_ns", None)) or "no date")
            if p.status != "ok":
                parts.append("offline")
            return ("\n" if tip else ", ").join(parts)
        return None

    def flags(self, index: QModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        if self.header(index.row()) is not None:
            return Qt.ItemFlag.ItemIsEnabled
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsDragEnabled


class TimelineDelegate(ThumbDelegate):
    """Photo rows as tiles; header rows as a section label in their cell (month or day, and a count)."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        head = index.data(HeaderRole)
        if head is None:
            super().paint(painter, option, index)
            return
        title, n = head
        painter.save()
        rect: QRect = option.rect.adjusted(8, 8, -8, -8)
        f = QFont(option.font)
        f.setPointSizeF(f.pointSizeF() * 1.35)
        f.setBold(True)
        painter.setFont(f)
        painter.setPen(option.palette.color(QPalette.ColorRole.Text))
        flags = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignBottom | Qt.TextFlag.TextWordWrap
        top = QRect(rect.left(), rect.top(), rect.width(), rect.height() * 2 // 3)
        painter.drawText(top, int(flags), title)
        painter.setFont(option.font)
        painter.setPen(option.palette.color(QPalette.ColorRole.PlaceholderText))
        bottom = QRect(rect.left(), top.bottom() + 4, rect.width(), rect.bottom() - top.bottom() - 4)
        painter.drawText(
            bottom,
            int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop),
            f"{n:,} photo{'s' if n != 1 else ''}",
        )
        if option.state & QStyle.StateFlag.State_HasFocus:
            painter.setPen(option.palette.color(QPalette.ColorRole.Highlight))
            painter.drawLine(rect.bottomLeft(), rect.bottomRight())
        painter.restore()
