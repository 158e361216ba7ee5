"""The main window's query building: the search field, the query photo, the chips of what was understood,
the Places filter and the date range become one ``Query`` (and rerank options) for the search controller.

What the query is made of lives in one ``QueryState`` (``query_state.py``: the rules); this part turns
the user's actions into its changes and shows every part of it as a removable chip.

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
from .query_state import Filter
from .thumbnails import load_qimage
from .workers import CallWorker

if TYPE_CHECKING:
    from ..search import SearchUpdate


class SearchActions:
    """What the user typed, dropped or picked, turned into searches."""

    def focus_search(self) -> None:
        self.search_edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search_edit.selectAll()

    # -- the parts of the query ----------------------------------------------------------------------
    @property
    def _query_image(self) -> str | None:
        return self.state.image

    @property
    def _place_filter(self) -> tuple[str, str] | None:
        f = next((f for f in self.state.filters if f.kind == "place"), None)
        return (f.key, f.label) if f is not None else None

    def clear_search(self) -> None:
        """Clear (×, Esc): every part of the query goes — words, chips, the example photo, the dates."""
        self.state.clear()
        self.people.clear_filter()
        self.cancel_search()
        self.searches.clear()  # first: the date box below must not start a search
        self.bar.understood.set_chips([], None)
        self.bar.set_query_image(None)
        if self.search_edit.text():
            self.search_edit.clear()
        if self.date_check.isChecked():
            self.date_check.setChecked(False)
        self._clear_place_choice()
        self.status_label.setText("")
        self.rerank_label.setVisible(False)  # "Checked 10/10" was about the search that is gone
        self.next_btn.setVisible(False)
        self._show_hint()

    def _clear_place_choice(self) -> None:
        panel = self.places_panel
        if hasattr(panel, "clear_choice"):
            panel.clear_choice()
        elif hasattr(panel, "list"):
            panel.list.clearSelection()

    def set_query_image(self, path: str, search: bool = True, fresh: bool = False) -> None:
        img_path = str(Path(path).expanduser().resolve())
        if not fresh:  # a dropped photo joins the words in the box (both shown)
            self.state.submit(self.search_edit.text())
        self.state.set_image(img_path, fresh=fresh)
        if fresh:
            self.search_edit.clear()
            self._clear_place_choice()
        self.bar.set_query_image(img_path)
        w = CallWorker(load_qimage, img_path, 64)
        w.signals.finished.connect(
            lambda img: (
                self.chip.icon.setPixmap(QPixmap.fromImage(img))
                if isinstance(img, QImage) and self.state.image == img_path
                else None
            )
        )
        self.misc_pool.start(w)
        if search:
            self._search_state()

    def clear_query_image(self, search: bool = True) -> None:
        self.state.remove("image")
        self.bar.set_query_image(None)
        if search:
            self._search_state()

    def keep_query_image(self, keep: bool) -> None:
        """The chip's "Keep" toggle: new words refine the example photo instead of replacing it."""
        self.state.keep_image = bool(keep)
        self.bar.set_query_image(self.state.image, keep=self.state.keep_image)

    def find_similar(self, path: str | None = None) -> None:
        """A new search from this photo: the words and the place go (the date range stays, shown)."""
        if path is None:
            r = self.model.result(self.view.currentIndex().row())
            if r is None:
                return
            path = r.photo.path
        self.set_query_image(path, fresh=True)

    def _rerank_options(self) -> RerankOptions | None:
        if not self.rerank_check.isChecked() or not self._mllm_ok:
            return None
        s = self.settings
        # "Only true matches": the verdict's match (share above the cutoff); unchecked photos are hidden too
        return RerankOptions(
            k=self.k_spin.value(),
            ve=s.ve,
            only_true=self.only_check.isChecked(),
            match_cutoff=s.min_match,
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
        """The user searched (Enter, the Search button): the typed words join the query state."""
        if self._closing:
            return
        self._search_state()

    def _search_state(self) -> None:
        """Search what the query state says (or show the hint when nothing is left of it)."""
        if self._closing:
            return
        self.prepare.poke()  # someone is searching: the background pass waits for an idle stretch
        st = self.state
        st.submit(self.search_edit.text())  # the box always says the words searched: none hidden
        self.bar.set_query_image(st.image, keep=st.keep_image)
        st.dates = self.bar.date_filter() if self.date_check.isChecked() else None
        self._show_state_chips()
        person = self.people.person_ids()  # a person picked in the People list
        if st.empty and st.dates is None and not person:
            self.clear_search()
            return
        if st.browsing and not person:  # the filters' photos, newest first, never model-checked
            self.cancel_search()
            self.searches.clear()
            self.status_label.setText("")
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
        date_from, date_to = st.dates or (None, None)
        try:
            query = Query(
                text=st.text or None,
                image=st.image,
                image_weight=self.settings.image_weight,
                date_from=date_from,
                date_to=date_to,
                ignore=tuple(st.ignored),
                use_text=self.settings.read_text,
                person_ids=person,
                **st.filter_values(),
            )
        except RetllmError as e:
            self.status_label.setText(str(e))
            return
        self.cancel_search()
        self.status_label.setText("Searching…")
        self.searches.start(self.library, query, self.settings.top, self._rerank_options())

    def filter_by_place(self, key: str, label: str) -> None:
        """A place picked in the Places list: only its photos. A place the typed words name is replaced
        by it (the rest of the words stay), so the box never says one place while the grid shows another."""
        self._drop_understood_places()
        self.state.set_filter(Filter("place", key, label))
        self._search_state()

    def _drop_understood_places(self) -> None:
        upd = self.searches.last_update
        u = upd.understood if upd is not None else None
        if u is None or u.literal:
            return
        sources = [c.source for c in u.chips if c.kind == "place" and c.source]
        if not sources:
            return
        text = self.search_edit.text()
        for src in sources:
            i = text.lower().find(src.lower())
            if i >= 0:
                text = text[:i] + text[i + len(src) :]
        for word in ("in", "at", "near", "from"):  # a preposition left dangling at the end
            if text.rstrip().lower().endswith(" " + word):
                text = text.rstrip()[: -len(word)]
        text = " ".join(text.split())
        self.search_edit.setText(text)
        self.state.text = text
        if self.state.image is not None:
            self.state.image_text = text

    def _chip_removed(self, chip_id: str) -> None:
        if chip_id == "dates":
            self.date_check.blockSignals(True)
            self.date_check.setChecked(False)
            self.date_check.blockSignals(False)
            self.bar.set_dates_enabled(False)
        elif chip_id.startswith("filter:place:") or chip_id == "place-filter":
            chip_id = (
                chip_id
                if chip_id != "place-filter"
                else next((f.chip_id for f in self.state.filters if f.kind == "place"), chip_id)
            )
            self._clear_place_choice()
        elif chip_id == "person-filter":
            self.people.clear_filter()
        elif not chip_id.startswith(("filter:", "understood:")):
            chip_id = f"understood:{chip_id}"
        self.state.remove(chip_id)
        self._search_state()

    def _show_state_chips(self, upd: SearchUpdate | None = None) -> None:
        """Every part of the query as a chip: filters, the date range, then what the words were understood
        as (dates and places taken out of them); a note when the understood filters matched nothing."""
        chips: list[tuple[str, str, str]] = [(c.id, c.icon, c.label) for c in self.state.chips()]
        if self.people.person_filter:
            chips.append(("person-filter", "With ", self.people.person_filter[1]))
        note = None
        if upd is not None:
            u = upd.understood
            if u is not None and u.literal and u.message:
                note = u.message[0].upper() + u.message[1:] + "."
            elif u is not None:
                chips += [(f"understood:{c.source}", "", c.label) for c in u.chips]
        self.bar.understood.set_chips(chips, note)

    def _show_understood(self, upd: SearchUpdate) -> None:
        self._show_state_chips(upd)

    def _options_changed(self) -> None:
        s = self.settings
        s.rerank = self.rerank_check.isChecked()
        s.rerank_k = self.k_spin.value()
        s.only_matches = self.only_check.isChecked()
        if self.searches.query is not None:
            self._search_state()
        elif not self.search_edit.text().strip() and self.state.image is None:
            self._search_state()  # browsing: the date filter applies to the timeline too (as a chip)

    def _sort_changed(self, mode: str) -> None:
        self.settings.sort = mode
        self.model.set_sort(mode)
