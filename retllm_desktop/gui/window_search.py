"""The main window's query building: the search field, the query photo, the chips of what was understood
and the Places filter become one ``Query`` (and rerank options) for the search controller.

A part of ``MainWindow`` (mixed into it; the widgets are the window's).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap

from ..errors import RetllmError
from ..rerank import RerankOptions
from ..search import Query
from . import wording
from .thumbnails import load_qimage
from .workers import CallWorker

if TYPE_CHECKING:
    from ..search import SearchUpdate


class SearchActions:
    """What the user typed, dropped or picked, turned into searches."""

    def focus_search(self) -> None:
        self.search_edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search_edit.selectAll()

    def clear_search(self) -> None:
        self._place_filter = None
        self.bar.understood.set_chips([], None)
        if self.search_edit.text():
            self.search_edit.clear()
        elif self._query_image:
            self.clear_query_image(search=False)
        self.cancel_search()
        self.searches.clear()
        self.status_label.setText("")
        self.rerank_label.setVisible(False)  # "Checked 10/10" was about the search that is gone
        self.next_btn.setVisible(False)
        self._show_hint()

    def set_query_image(self, path: str, search: bool = True) -> None:
        img_path = self._query_image = str(Path(path).expanduser().resolve())
        self.bar.set_query_image(img_path)
        w = CallWorker(load_qimage, img_path, 64)
        w.signals.finished.connect(
            lambda img: (
                self.chip.icon.setPixmap(QPixmap.fromImage(img))
                if isinstance(img, QImage) and self._query_image == img_path
                else None
            )
        )
        self.misc_pool.start(w)
        if search:
            self.run_search()

    def clear_query_image(self, search: bool = True) -> None:
        self._query_image = None
        self.bar.set_query_image(None)
        if search and self.search_edit.text().strip():
            self.run_search()
        elif search:
            self.clear_search()

    def find_similar(self, path: str | None = None) -> None:
        if path is None:
            r = self.model.result(self.view.currentIndex().row())
            if r is None:
                return
            path = r.photo.path
        self.search_edit.clear()
        self.set_query_image(path)

    def _rerank_options(self) -> RerankOptions | None:
        if not self.rerank_check.isChecked() or not self._mllm_ok:
            return None
        s = self.settings
        # "Only true matches": P(True) > P(False), and what the model did not check is hidden too
        return RerankOptions(
            k=self.k_spin.value(),
            ve=s.ve,
            only_true=self.only_check.isChecked(),
            ve_threshold=s.ve_threshold,
            ve_band=s.ve_band,
        )

    def check_next(self) -> None:
        """Extend the double-check down the list by the number of photos the spin box says."""
        if self.library is not None and self.searches.check_next(
            self.library, self.settings.top, self.k_spin.value()
        ):
            self.next_btn.setVisible(False)
            self.status_label.setText("Checking more…")

    def cancel_search(self) -> None:
        self.next_btn.setVisible(False)
        self.searches.cancel()
        self.rerank_label.setVisible(False)
        self.rerank_bar.setVisible(False)

    def run_search(self) -> None:
        if self._closing:
            return
        self.prepare.poke()  # someone is searching: the background pass waits for an idle stretch
        text = self.search_edit.text().strip()
        if not text and not self._query_image and not self._place_filter:
            self.clear_search()
            return
        if not text and not self._query_image:  # only a place: its photos, newest first
            self.cancel_search()
            self.searches.clear()
            self.rerank_label.setVisible(False)
            self.next_btn.setVisible(False)
            self.bar.understood.set_chips([("place-filter", "In ", self._place_filter[1])], None)
            self.show_timeline()
            return
        if self.library is None:
            reopening = self.libraries.reopening
            self.status_label.setText("The library is reopening…" if reopening else "No library is open")
            return
        if not self._clip_ok and self._status is not None:
            self.status_label.setText(wording.clip_status_line(self._status))
            self._set_banner(*wording.clip_banner(self._status))
            return
        date_from, date_to = self.bar.date_filter()
        if text != self._ignored_for:  # a new query: understand all of it again
            self._ignored, self._ignored_for = [], text
        literal = False
        if not text and not self._query_image and self._place_filter:
            text, literal = self._place_filter[1], True  # only a place: its name ranks its photos
        try:
            query = Query(
                text=text or None,
                image=self._query_image,
                image_weight=self.settings.image_weight,
                date_from=date_from,
                date_to=date_to,
                places=(self._place_filter[0],) if self._place_filter else (),
                literal=literal,
                ignore=tuple(self._ignored),
                use_text=self.settings.read_text,
            )
        except RetllmError as e:
            self.status_label.setText(str(e))
            return
        self.cancel_search()
        self.status_label.setText("Searching…")
        self.searches.start(self.library, query, self.settings.top, self._rerank_options())

    def filter_by_place(self, key: str, label: str) -> None:
        """A place picked in the Places list: only its photos, with whatever the search field says."""
        self._place_filter = (key, label)
        self.run_search()

    def _chip_removed(self, chip_id: str) -> None:
        if chip_id == "place-filter":
            self._place_filter = None
            self.places_panel.clear_choice()
        else:
            self._ignored.append(chip_id)
        if self.search_edit.text().strip() or self._query_image or self._place_filter:
            self.run_search()
        else:
            self.clear_search()

    def _show_understood(self, upd: SearchUpdate) -> None:
        chips: list[tuple[str, str, str]] = []
        if self._place_filter:
            chips.append(("place-filter", "In ", self._place_filter[1]))
        u = upd.understood or {}
        note = None
        if u.get("literal") and u.get("message"):
            note = u["message"][0].upper() + u["message"][1:] + "."
        else:
            for c in u.get("chips", []):
                chips.append((c["source"], "", c["label"]))
        self.bar.understood.set_chips(chips, note)

    def _options_changed(self) -> None:
        s = self.settings
        s.rerank = self.rerank_check.isChecked()
        s.rerank_k = self.k_spin.value()
        s.only_matches = self.only_check.isChecked()
        if self.searches.query is not None:
            self.run_search()
        elif not self.search_edit.text().strip() and not self._query_image:
            self.show_timeline()  # the date filter applies to the timeline too

    def _sort_changed(self, mode: str) -> None:
        self.settings.sort = mode
        self.model.set_sort(mode)
