"""The main window's photo grid: the timeline shown with no query, the selection, thumbnail size and the
preview window over either list.

A part of ``MainWindow`` (mixed into it; the widgets are the window's).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSize

from .preview import PreviewDialog
from .qtcompat import emit
from .workers import CallWorker


class GridActions:
    """The grid of results or of the whole library, and the preview that walks it."""

    def open_preview(self, row: int | None = None) -> PreviewDialog | None:
        if row is None or isinstance(row, bool):
            row = self.view.currentIndex().row()
        if self.model.result(row) is None or self.library is None:
            return None
        if self._preview is not None:
            self._preview.query = self.searches.query
            self._preview.show_row(row)
            self._preview.raise_()
            self._preview.activateWindow()
            return self._preview
        p = PreviewDialog(
            self,
            self.model.result,
            self.model.rowCount,
            row,
            self.library,
            self.searches.query,
            self.misc_pool,
            self.search_pool,
        )
        p.row_changed.connect(self._preview_moved)
        p.find_similar.connect(self.find_similar)
        p.finished.connect(self._preview_closed)
        self._preview = p
        p.show()
        return p

    def _preview_closed(self, *_: Any) -> None:
        p, self._preview = self._preview, None
        if p is not None:
            p.deleteLater()
        self.view.setFocus()

    def _preview_moved(self, row: int) -> None:
        idx = self.model.index(row, 0)
        self.view.setCurrentIndex(idx)
        self.view.scrollTo(idx)

    def _sync_preview_row(self) -> None:
        p = self._preview
        if p is None:
            return
        idx = self.view.currentIndex()  # persistent: follows the photo through reorders
        if idx.isValid():
            p.row = idx.row()
            p.prev_btn.setEnabled(p.row > 0)
            p.next_btn.setEnabled(p.row < self.model.rowCount() - 1)

    def _selected_result_paths(self) -> list[str]:
        rows = sorted(i.row() for i in self.view.selectionModel().selectedIndexes())
        return [r.photo.path for r in (self.model.result(row) for row in rows) if r is not None]

    def _show_selection_count(self, n: int) -> None:
        self.selection_label.setText(f"{n:,} selected")
        self.selection_label.setVisible(n > 1)

    def _fetch_photos(self, ids: list[int]) -> dict:
        lib = self.library
        return lib.photos(ids) if lib is not None else {}

    def show_timeline(self) -> None:
        lib = self.library
        if lib is None or self._closing:
            return
        date_from, date_to = self.bar.date_filter()
        place = self._place_filter[0] if self._place_filter else None
        self._timeline_gen += 1
        w = CallWorker(lib.timeline, date_from, date_to, place)
        w.signals.finished.connect(lambda rows, gen=self._timeline_gen: self._on_timeline(rows, gen))
        w.signals.failed.connect(
            lambda why: self._show_empty(f"<h2>The photos could not be listed</h2>{why}")
        )
        self.misc_pool.start(w)

    def _on_timeline(self, rows: list, gen: int) -> None:
        if gen != self._timeline_gen or self._closing or self.searches.query is not None:
            return
        if self.search_edit.text().strip() or self._query_image:
            return  # a query was typed meanwhile: its results take the grid
        tl = self.timeline_view.timeline
        if [pid for pid, _ in rows] != tl._ids:
            current = tl.result(self.timeline_view.currentIndex().row())
            self.timeline_view.set_rows(rows)
            if current is not None:  # a refresh keeps the photo the user was on
                row = tl.row_of_photo(current.photo.id)
                if row >= 0:
                    self.timeline_view.setCurrentIndex(tl.index(row, 0))
                    self.timeline_view.scrollTo(tl.index(row, 0))
        filtered = any(self.bar.date_filter()) or self._place_filter is not None
        if rows:
            self.stack.setCurrentWidget(self.timeline_view)
            n = len(rows)
            if filtered and self.status_label.text() in ("", "Ready", "Searching…"):
                self.status_label.setText(f"{n:,} photo{'s' if n != 1 else ''} match the filters")
        elif filtered:
            self._show_empty(
                "<h2>No photos here</h2>No photo matches the dates or place you picked.<br>"
                "<a href='all-photos'>Show all photos</a>"
            )
        emit(self.timeline_shown, len(rows))

    def _open_timeline_preview(self, row: int) -> PreviewDialog | None:
        tl = self.timeline_view.timeline
        i = tl.photo_index(row)
        if i < 0 or self.library is None:
            return None
        if self._preview is not None:
            self._preview.close()
        p = PreviewDialog(
            self, tl.photo_result, tl.photo_count, i, self.library, None, self.misc_pool, self.search_pool
        )
        p.row_changed.connect(lambda i: self._timeline_preview_moved(i))
        p.find_similar.connect(self.find_similar)
        p.finished.connect(self._preview_closed)
        self._preview = p
        p.show()
        return p

    def _timeline_preview_moved(self, i: int) -> None:
        tl = self.timeline_view.timeline
        idx = tl.index(tl.photo_row(i), 0)
        self.timeline_view.setCurrentIndex(idx)
        self.timeline_view.scrollTo(idx)

    def _apply_thumb_size(self) -> None:
        tile = self.settings.thumb_size
        self.delegate.tile = tile
        dpr = self.devicePixelRatioF() or 1.0
        px = int(round(tile * dpr / 32.0) * 32) or tile
        self.model.set_thumb_px(px)
        fm = self.view.fontMetrics()
        self.view.setGridSize(QSize(tile + 20, tile + 20 + 2 * fm.height()))
        self.timeline_view.set_tile(tile, px, self.view.gridSize())

    def zoom(self, direction: int) -> None:
        sizes = [96, 128, 160, 200, 256, 320]
        cur = self.settings.thumb_size
        i = min(range(len(sizes)), key=lambda j: abs(sizes[j] - cur))
        i = max(0, min(len(sizes) - 1, i + direction))
        self.settings.thumb_size = sizes[i]
        self._apply_thumb_size()
