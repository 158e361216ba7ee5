"""The result grid's model (one row per SearchResult) and its painting delegate.

The model is cheap for 10,000 rows: ``data()`` only looks things up; thumbnails come from the
ThumbnailLoader (placeholder until ready). A rerank update with the same photos is applied as a layout
change (selection and current item follow their photos); a different set resets the model.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QAbstractListModel, QEvent, QMimeData, QModelIndex, QRect, QRectF, QSize, Qt, QUrl
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPainterPath, QPalette, QPen
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from ..verdict import verdict
from .qtcompat import emit
from .thumbnails import ThumbnailLoader

if TYPE_CHECKING:
    from ..models.llm.fine_score import FineScore
    from ..search import SearchResult

ResultRole = Qt.ItemDataRole.UserRole + 1
PathRole = Qt.ItemDataRole.UserRole + 2
KeyRole = Qt.ItemDataRole.UserRole + 3
BrokenRole = Qt.ItemDataRole.UserRole + 4
GroupRole = (
    Qt.ItemDataRole.UserRole + 5
)  # (similar shots folded into this row, expanded?) or None for a member


def describe_date(taken_at: str | None, mtime_ns: int | None = None) -> str:
    """The capture time; without one, the file's date marked as such (it may be a copy's date), or ""."""
    if taken_at:
        return taken_at.replace("T", " ")[:16]
    if mtime_ns:
        return f"{file_day(mtime_ns)} (file date: no capture date in the photo)"
    return ""


def file_day(mtime_ns: int) -> str:
    return datetime.fromtimestamp(mtime_ns / 1e9).strftime("%Y-%m-%d")


def sort_date(photo: Any) -> str | None:
    """The date a photo sorts by: its capture time, else its file date (same ISO form), else None."""
    if photo.taken_at:
        return str(photo.taken_at).replace(" ", "T")
    mtime_ns = getattr(photo, "mtime_ns", None)
    if mtime_ns:
        return datetime.fromtimestamp(mtime_ns / 1e9).isoformat()
    return None


def tile_date_variants(photo: Any) -> list[str]:
    """The tile's date line, longest first: the painter uses the first that fits the tile."""
    offline = getattr(photo, "status", "ok") != "ok"
    if photo.taken_at:
        day = photo.taken_at[:10]
        forms = [day]
    elif getattr(photo, "mtime_ns", None):
        day = file_day(photo.mtime_ns)
        forms = [f"{day} (file date)", f"{day} (file)", f"~{day}", f"~{day[2:]}"]
    else:
        forms = [""]
    if offline:
        forms = [f"{f} · offline" if f else "offline" for f in forms] + ["offline"]
    return forms


def fit(fm: QFontMetrics, width: int, variants: list[str]) -> str:
    """The first of ``variants`` that fits ``width`` px; else the last one, elided (never cut mid-glyph)."""
    for v in variants:
        if fm.horizontalAdvance(v) <= width:
            return v
    return fm.elidedText(variants[-1], Qt.TextElideMode.ElideRight, width)


def fine_of(result: SearchResult) -> FineScore | None:
    return getattr(result, "fine", None)


def _thumbnail(m: PhotoTilesModel, r: SearchResult) -> Any:
    return m.thumbs.pixmap(r.photo.path, r.photo.hash, m.thumb_px)


def _broken(m: PhotoTilesModel, r: SearchResult) -> bool:
    return m.thumbs.is_broken(r.photo.hash or r.photo.path, m.thumb_px)


# The roles every photo tile answers the same way, in the results grid and in the timeline.
TILE_ROLES: dict[int, Callable[[PhotoTilesModel, SearchResult], Any]] = {
    Qt.ItemDataRole.DisplayRole: lambda m, r: os.path.basename(r.photo.path),
    Qt.ItemDataRole.DecorationRole: _thumbnail,
    ResultRole: lambda m, r: r,
    PathRole: lambda m, r: r.photo.path,
    KeyRole: lambda m, r: m.thumb_key(r),
    BrokenRole: _broken,
}


class PhotoTilesModel(QAbstractListModel):
    """What the results grid and the timeline share: thumbnails from one loader, the tile roles
    (:data:`TILE_ROLES`) and photos dragged out as files. A subclass says which result a row shows."""

    def __init__(self, thumbs: ThumbnailLoader, parent: Any = None) -> None:
        super().__init__(parent)
        self.thumbs = thumbs
        self.thumb_px = 160  # device pixels requested from the loader

    def result(self, row: int) -> SearchResult | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def thumb_key(self, r: SearchResult) -> str:
        return ThumbnailLoader.key(r.photo.hash or r.photo.path, self.thumb_px)

    def mimeTypes(self) -> list[str]:
        return ["text/uri-list"]

    def mimeData(self, indexes: list[QModelIndex]) -> QMimeData:
        md = QMimeData()
        results = (self.result(i.row()) for i in indexes if i.isValid())
        md.setUrls([QUrl.fromLocalFile(r.photo.path) for r in results if r is not None])
        return md

    def supportedDragActions(self) -> Qt.DropAction:
        return Qt.DropAction.CopyAction


class ResultsModel(PhotoTilesModel):
    def __init__(self, thumbs: ThumbnailLoader, parent=None) -> None:
        super().__init__(thumbs, parent)
        self.sort_mode = "relevance"
        self.cutoff: float | None = None  # the verdict's match cutoff (settings), see verdict.py
        self._engine: list[SearchResult] = []  # results in the engine's order
        self._rows: list[SearchResult] = []  # results in display order
        self._rows_by_key: dict[str, list[int]] = {}
        self._expanded: set[int] = set()  # photo ids of results whose similar shots are shown after them
        self._members: set[int] = set()  # photo ids of rows shown as part of an expanded group
        thumbs.ready.connect(self._on_thumb)
        thumbs.failed.connect(lambda key, _reason: self._on_thumb(key))

    # -- content -----------------------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008 - Qt signature
        return 0 if parent.isValid() else len(self._rows)

    def result(self, row: int) -> SearchResult | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def results(self) -> list[SearchResult]:
        return list(self._rows)

    def _sorted(self, results: list[SearchResult]) -> list[SearchResult]:
        if self.sort_mode == "relevance":
            rows = list(results)
        else:
            newest = self.sort_mode == "newest"
            # file-dated photos (no capture date) sort by their file date among the others
            dated = [r for r in results if sort_date(r.photo)]
            undated = [r for r in results if not sort_date(r.photo)]
            dated.sort(key=lambda r: sort_date(r.photo) or "", reverse=newest)
            rows = dated + undated
        return self._with_groups(rows)

    def _with_groups(self, rows: list[Any]) -> list[Any]:
        """Expanded groups' similar shots right after their leading result."""
        self._members = set()
        if not self._expanded:
            return rows
        out: list[Any] = []
        for r in rows:
            out.append(r)
            if r.photo.id in self._expanded:
                for m in getattr(r, "similar", None) or []:
                    out.append(m)
                    self._members.add(m.photo.id)
        return out

    def toggle_group(self, row: int) -> bool:
        """Show or hide the similar shots folded into the result at ``row`` (a burst); False if it has none."""
        r = self.result(row)
        similar = list(getattr(r, "similar", None) or []) if r is not None else []
        if not similar or r.photo.id in self._members:
            return False
        if r.photo.id in self._expanded:
            self._expanded.discard(r.photo.id)
            self.beginRemoveRows(QModelIndex(), row + 1, row + len(similar))
            del self._rows[row + 1 : row + 1 + len(similar)]
            self._members -= {m.photo.id for m in similar}
            self._reindex()
            self.endRemoveRows()
        else:
            self._expanded.add(r.photo.id)
            self.beginInsertRows(QModelIndex(), row + 1, row + len(similar))
            self._rows[row + 1 : row + 1] = similar
            self._members |= {m.photo.id for m in similar}
            self._reindex()
            self.endInsertRows()
        idx = self.index(row, 0)
        emit(self.dataChanged, idx, idx)
        return True

    def is_expanded(self, row: int) -> bool:
        r = self.result(row)
        return r is not None and r.photo.id in self._expanded

    def _reindex(self) -> None:
        self._rows_by_key = {}
        for i, r in enumerate(self._rows):
            self._rows_by_key.setdefault(self.thumb_key(r), []).append(i)

    def set_results(self, results: list[SearchResult], same_query: bool = False) -> None:
        """Show ``results`` (engine order). ``same_query``: a rerank step of the list already shown."""
        new_rows = self._sorted(results)
        old_ids = [r.photo.id for r in self._rows]
        new_ids = [r.photo.id for r in new_rows]
        self._engine = list(results)
        if same_query and sorted(old_ids) == sorted(new_ids) and len(set(new_ids)) == len(new_ids):
            self._apply_layout(new_rows)
            return
        if same_query and len(set(new_ids)) == len(new_ids) and len(set(old_ids)) == len(old_ids):
            self._apply_changes(new_rows)  # photos came or went (the watcher): in place, no reset
            return
        if not same_query:
            self.thumbs.invalidate()
            self._expanded = set()
            new_rows = self._sorted(results)
        self.beginResetModel()
        self._rows = new_rows
        self._reindex()
        self.endResetModel()

    def _apply_changes(self, new_rows: list[SearchResult]) -> None:
        """Rows whose photo is gone are removed, new photos inserted, then the order applied: the
        selection and the current photo stay where they are when they are still there."""
        keep = {r.photo.id for r in new_rows}
        for row in range(len(self._rows) - 1, -1, -1):
            if self._rows[row].photo.id not in keep:
                self.beginRemoveRows(QModelIndex(), row, row)
                del self._rows[row]
                self.endRemoveRows()
        have = {r.photo.id for r in self._rows}
        added = [r for r in new_rows if r.photo.id not in have]
        if added:
            first = len(self._rows)
            self.beginInsertRows(QModelIndex(), first, first + len(added) - 1)
            self._rows.extend(added)
            self.endInsertRows()
        self._reindex()
        self._apply_layout(new_rows)

    def _apply_layout(self, new_rows: list[SearchResult]) -> None:
        emit(self.layoutAboutToBeChanged)
        new_pos = {r.photo.id: i for i, r in enumerate(new_rows)}
        old_rows = self._rows
        persistent = self.persistentIndexList()
        moved_to = []
        for idx in persistent:
            r = old_rows[idx.row()] if 0 <= idx.row() < len(old_rows) else None
            row = new_pos.get(r.photo.id, -1) if r is not None else -1
            moved_to.append(self.index(row, 0) if row >= 0 else QModelIndex())
        self._rows = new_rows
        self._reindex()
        self.changePersistentIndexList(persistent, moved_to)
        emit(self.layoutChanged)
        if self._rows:  # badges (fine scores) changed too
            emit(self.dataChanged, self.index(0, 0), self.index(len(self._rows) - 1, 0))

    def set_sort(self, mode: str) -> None:
        if mode == self.sort_mode:
            return
        self.sort_mode = mode
        self._apply_layout(self._sorted(self._engine))

    def set_thumb_px(self, px: int) -> None:
        if px != self.thumb_px:
            self.beginResetModel()
            self.thumb_px = px
            self._reindex()
            self.endResetModel()

    def clear(self) -> None:
        self.set_results([], same_query=False)

    def _on_thumb(self, key: str) -> None:
        for row in self._rows_by_key.get(key, ()):
            idx = self.index(row, 0)
            emit(self.dataChanged, idx, idx, [Qt.ItemDataRole.DecorationRole, BrokenRole])

    # -- roles -------------------------------------------------------------------------------------
    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        r = self._rows[index.row()]
        p = r.photo
        shared = TILE_ROLES.get(role)
        if shared is not None:
            return shared(self, r)
        if role == GroupRole:
            if p.id in self._members:
                return None
            return (len(getattr(r, "similar", None) or []), p.id in self._expanded)
        if role in (Qt.ItemDataRole.ToolTipRole, Qt.ItemDataRole.AccessibleTextRole):
            parts = [p.path if role == Qt.ItemDataRole.ToolTipRole else os.path.basename(p.path)]
            parts.append(describe_date(p.taken_at, getattr(p, "mtime_ns", None)) or "no date")
            if getattr(r, "in_library", False):
                parts.append("in your library: the same file as the query photo")
            fine = fine_of(r)
            if fine is not None:
                parts.append(f"{verdict(fine, self.cutoff).words.lower()} (checked)")
            elif getattr(r, "check_error", None):
                parts.append(f"could not check: {r.check_error}")
            else:
                parts.append("not checked by the model")
            similar = len(getattr(r, "similar", None) or [])
            if similar:
                parts.append(
                    f"{similar} similar shot{'s' if similar > 1 else ''} taken seconds apart (click +{similar})"
                )
            elif p.id in self._members:
                parts.append("a similar shot of the photo before it (same burst)")
            if p.status != "ok":
                parts.append("offline")
            match = getattr(r, "text", None)
            if match is not None:
                parts.append(f"text: “{match.snippet}”")
            return "\n".join(parts) if role == Qt.ItemDataRole.ToolTipRole else ", ".join(parts)
        return None

    def flags(self, index: QModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsDragEnabled

    # Dragging results out gives file URLs (other apps, or back onto the window as an image query).


class ThumbDelegate(QStyledItemDelegate):
    """Paints a tile: thumbnail (or placeholder), file name, date, an LLM verdict badge, and for a burst a
    "+N" badge that shows or hides its similar shots when clicked."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.tile = 160  # logical px of the thumbnail square

    @staticmethod
    def _badge_font(option: QStyleOptionViewItem) -> QFont:
        f = QFont(option.font)
        f.setPointSizeF(max(7.0, f.pointSizeF() * 0.85))
        f.setBold(True)
        return f

    def tile_texts(self, option: QStyleOptionViewItem, index: QModelIndex) -> dict[str, Any]:
        """Every text of a tile, each the longest form that fits its room (nothing is cut off mid-glyph).

        Also returns the room (``*_width``) so tests can check the fit at any tile size.
        """
        result = index.data(ResultRole)
        fm = option.fontMetrics
        rect = option.rect.adjusted(3, 3, -3, -3)
        line_w = rect.width() - 8
        name = fm.elidedText(
            str(index.data(Qt.ItemDataRole.DisplayRole) or ""), Qt.TextElideMode.ElideMiddle, line_w
        )
        date = fit(fm, line_w, tile_date_variants(result.photo)) if result is not None else ""
        match = getattr(result, "text", None)
        if match is not None and match.snippet:  # the words that matched say more than the date here
            date = fm.elidedText(f"“{match.snippet}”", Qt.TextElideMode.ElideRight, line_w)
        fine = fine_of(result)
        kind, variants = None, []
        if fine is not None:
            model = index.model()
            v = verdict(fine, getattr(model, "cutoff", None))
            kind = "true" if v.is_match else "false"
            short = "Likely" if v.is_match else "Unlikely"
            variants = [f"{v.mark} {v.words}", f"{v.mark} {short}", v.mark]
        elif getattr(result, "check_error", None):
            kind, variants = "unchecked", ["? could not check", "? not checked", "?"]
        elif getattr(result, "in_library", False):
            kind, variants = "mine", ["in your library", "in library", "yours"]
        badge_w = self._square(option).width() - 8 - 12  # text room inside the badge
        group = self.group_badge(option, index)
        if group is not None:
            badge_w -= int(group.width()) + 4
        badge = fit(QFontMetrics(self._badge_font(option)), badge_w, variants) if variants else ""
        return {
            "name": name,
            "date": date,
            "line_width": line_w,
            "badge": badge,
            "badge_kind": kind,
            "badge_width": badge_w,
        }

    def _square(self, option: QStyleOptionViewItem) -> QRect:
        rect = option.rect.adjusted(3, 3, -3, -3)
        return QRect(rect.left() + (rect.width() - self.tile) // 2, rect.top() + 5, self.tile, self.tile)

    @staticmethod
    def _group_text(group: Any) -> str | None:
        if group is None:
            return "≈"  # a similar shot shown with its group
        n, expanded = group
        return None if not n else (f"− {n}" if expanded else f"+{n}")

    def group_badge(self, option: QStyleOptionViewItem, index: QModelIndex) -> QRectF | None:
        """Where the group badge of this tile is (None when the photo is not part of a group)."""
        text = self._group_text(index.data(GroupRole))
        if text is None:
            return None
        f = QFont(option.font)
        f.setBold(True)
        fm = QFontMetrics(f)
        square = self._square(option)
        bw, bh = fm.horizontalAdvance(text) + 14, fm.height() + 6
        return QRectF(square.right() - bw - 4, square.top() + 4, bw, bh)

    def _paint_group(
        self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex, square: QRect
    ) -> None:
        badge = self.group_badge(option, index)
        if badge is None:
            return
        text = self._group_text(index.data(GroupRole)) or ""
        f = QFont(option.font)
        f.setBold(True)
        painter.setFont(f)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(40, 90, 170, 225))
        painter.drawRoundedRect(badge, badge.height() / 2, badge.height() / 2)
        painter.setPen(QPen(QColor("white")))
        painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, text)
        painter.setFont(option.font)

    def editorEvent(
        self, event: QEvent, model: Any, option: QStyleOptionViewItem, index: QModelIndex
    ) -> bool:
        """A click on a burst's "+N" badge shows its similar shots after it (again: hides them)."""
        if (
            event.type() == QEvent.Type.MouseButtonRelease
            and event.button() == Qt.MouseButton.LeftButton
            and hasattr(model, "toggle_group")
        ):
            badge = self.group_badge(option, index)
            if badge is not None and badge.contains(event.position()):
                return bool(model.toggle_group(index.row()))
        return super().editorEvent(event, model, option, index)

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:
        fm = option.fontMetrics
        return QSize(self.tile + 16, self.tile + 14 + 2 * fm.height())

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        # One tile, drawn in one pass (thumbnail, badges, name, date): long but straight-line painting.
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal: QPalette = option.palette
        rect: QRect = option.rect.adjusted(3, 3, -3, -3)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        hovered = bool(option.state & QStyle.StateFlag.State_MouseOver)
        if selected or hovered:
            c = QColor(pal.color(QPalette.ColorRole.Highlight))
            c.setAlpha(110 if selected else 40)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(c)
            painter.drawRoundedRect(QRectF(rect), 8, 8)
        square = QRect(rect.left() + (rect.width() - self.tile) // 2, rect.top() + 5, self.tile, self.tile)
        pm = index.data(Qt.ItemDataRole.DecorationRole)
        if pm is not None and not pm.isNull():
            dpr = pm.devicePixelRatio() or 1.0
            w, h = pm.width() / dpr, pm.height() / dpr
            scale = min(self.tile / max(w, 1), self.tile / max(h, 1))
            tw, th = w * scale, h * scale
            target = QRectF(square.center().x() - tw / 2 + 0.5, square.center().y() - th / 2 + 0.5, tw, th)
            path = QPainterPath()
            path.addRoundedRect(target, 5, 5)
            painter.setClipPath(path)
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawPixmap(target, pm, QRectF(pm.rect()))
            painter.setClipping(False)
        else:
            c = QColor(pal.color(QPalette.ColorRole.Mid))
            c.setAlpha(70)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(c)
            painter.drawRoundedRect(QRectF(square.adjusted(8, 20, -8, -20)), 6, 6)
            if index.data(BrokenRole):
                painter.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
                painter.drawText(square, Qt.AlignmentFlag.AlignCenter, "can't show")
        texts = self.tile_texts(option, index)
        if texts["badge"]:
            kind = texts["badge_kind"]
            f = self._badge_font(option)
            painter.setFont(f)
            fm = painter.fontMetrics()
            bw, bh = fm.horizontalAdvance(texts["badge"]) + 12, fm.height() + 4
            badge = QRectF(square.left() + 4, square.top() + 4, bw, bh)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(
                QColor(30, 140, 70, 225)
                if kind == "true"
                else QColor(40, 90, 170, 225)
                if kind == "mine"
                else QColor(170, 110, 20, 225)
                if kind == "unchecked"
                else QColor(90, 90, 90, 210)
            )
            painter.drawRoundedRect(badge, bh / 2, bh / 2)
            painter.setPen(QPen(QColor("white")))
            painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, texts["badge"])
            painter.setFont(option.font)
        self._paint_group(painter, option, index, square)
        text_color = pal.color(QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text)
        fm = option.fontMetrics
        line1 = QRect(rect.left() + 4, square.bottom() + 5, rect.width() - 8, fm.height())
        line2 = line1.translated(0, fm.height())
        painter.setPen(text_color)
        painter.drawText(line1, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter, texts["name"])
        sub = QColor(text_color)
        sub.setAlpha(150)
        painter.setPen(sub)
        painter.drawText(line2, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter, texts["date"])
        if option.state & QStyle.StateFlag.State_HasFocus:
            pen = QPen(pal.color(QPalette.ColorRole.Highlight))
            pen.setWidthF(1.5)
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(QRectF(rect).adjusted(0.5, 0.5, -0.5, -0.5), 8, 8)
        painter.restore()
