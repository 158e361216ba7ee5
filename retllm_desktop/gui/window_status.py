"""The main window's status presentation: what the banner, the empty grid, the status bar and the
Library panel say about the library, indexing and a running search.

A part of ``MainWindow`` (mixed into it; the widgets are the window's): each method turns one signal of
the library or search controller into words on screen.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QTimer

from ..rerank import RerankOptions
from . import wording
from .library_panel import format_eta
from .prepare_controller import about_seconds
from .qtcompat import emit

if TYPE_CHECKING:
    from ..indexer import IndexSummary
    from ..library import Library, LibraryStatus
    from ..search import SearchUpdate


def llm_state(status: LibraryStatus) -> tuple[bool, str | None]:
    """Whether results can be double-checked, and if not, why (one line for a tooltip or the banner)."""
    if status.mllm_ready:
        return True, None
    return False, wording.llm_problem(status)


class StatusPresenter:
    """Library, indexing and search progress shown in the window's widgets."""

    def refresh_status(self) -> None:
        if not self._closing:
            self.libraries.refresh_status()

    def _on_opened(self, lib: Library) -> None:
        self.thumbs.set_cache_dir(Path(lib.path) / "cache" / "thumbnails")
        self.setWindowTitle(f"RetLLM Desktop — {lib.path}")
        self.status_label.setText("Loading models…")
        self._show_empty("Opening the library…")
        emit(self.library_opened, lib)
        self.people.set_library(lib)
        self.refresh_status()

    def _on_open_failed(self, message: str) -> None:
        self._show_empty(f"The library could not be opened: {message}")
        self._set_banner(
            f"The library could not be opened: {html.escape(message)}. Choose another one in File ▸ Settings."
        )

    def _on_status(self, st: LibraryStatus) -> None:
        if self._closing:
            return
        self._status = st
        self._clip_ok = st.clip_error is None
        self._clip_error = st.clip_error
        self._mllm_ok, self._mllm_msg = llm_state(st)
        if self._index_message and not self.index_state.running:
            if self._index_photos is None:
                self._index_photos = st.photos  # the first status after the run: what "Indexed" describes
            elif st.photos != self._index_photos:  # photos came or went since: that line is history
                now = f"Up to date — {st.photos:,} photo{'s' if st.photos != 1 else ''}"
                if self.panel.stage.text() == self._index_message:
                    self.panel.set_message(now)
                if self.status_label.text() == self._index_message and not self._removing:
                    self.status_label.setText(now)
                self._index_message, self._index_photos = "", None
        known = [r["path"] for r in st.roots]
        self.panel.set_status(st, adding=self.index_state.pending_folders(known))
        self.places_panel.set_places(st.places)
        if st.faces.get("people") != self._people_count or self._index_done_since_people:
            self._people_count, self._index_done_since_people = st.faces.get("people"), False
            self.people.refresh()
        n = st.photos
        self.count_label.setText(
            self.index_state.count_text(n)
            if self.index_state.running
            else f"{n:,} photo{'s' if n != 1 else ''}"
        )
        self.bar.set_rerank_available(self._mllm_ok, self._mllm_msg)
        self.bar.show_date_range(*st.date_span)  # file-dated photos inside the preset span too
        if not self._clip_ok:
            self._set_banner(*wording.clip_banner(st))
            self.status_label.setText(wording.clip_status_line(st))
            if not self.settings.setup_done and not self._closing:
                QTimer.singleShot(0, self.show_setup)
        elif not self._mllm_ok and self.rerank_check.isChecked():
            self._set_banner(
                f"Results won't be double-checked: {self._mllm_msg}. &nbsp; <a href='setup'>Set up models…</a>"
            )
        else:
            self._set_banner(None)
        if self._clip_ok and self.status_label.text() == "Loading models…":
            self.status_label.setText(self.index_state.activity() if self.index_state.running else "Ready")
        if self._clip_ok and self._index_when_ready:
            self._index_when_ready = False
            if any(not r.get("photos") for r in st.roots) and not self.libraries.indexing():
                QTimer.singleShot(0, lambda: self.index_folders(None))
        self._show_hint()
        if self._mllm_ok and not self.libraries.indexing():
            self.prepare.start(self.library)
        emit(self.status_refreshed, st)

    def _show_hint(self) -> None:
        """The empty grid says what to do next (add photos, search them, install models)."""
        st = self._status
        if st is None or self.model.rowCount() or self.searches.query is not None:
            return
        if self.index_state.running and not st.photos:
            self._show_empty(self.index_state.empty_html())
        elif not st.roots and not self.index_state.adding:
            self._show_empty(
                "<h2>Add your photos</h2>Drop a folder here, or <a href='add'>add a folder…</a> (Ctrl+O).<br>"
                "Photos are indexed on this computer and never leave it."
            )
        elif st.photos:
            self.show_timeline()  # every photo app opens on the photos: newest first
        else:
            self._show_empty(
                "<h2>Models needed</h2>Your photos can be searched once the search model is installed."
                "<br><br><a href='setup'>Set up models…</a>"
            )

    def _set_banner(self, html: str | None, details: str = "") -> None:
        self.bar.set_banner(html)
        self.banner.setToolTip(details)

    def _empty_link(self, link: str) -> None:
        if link == "add":
            self.panel.choose_folder()
        elif link == "setup":
            self.show_setup()
        elif link == "all-photos":  # the timeline's filters left nothing: drop them all
            self.clear_search()
        elif link == "show-all":  # the undo of "Only true matches"
            self.only_check.setChecked(False)
        elif link.startswith("remove:"):  # a filter named in "No photos found"
            self._chip_removed(link[len("remove:") :])

    def _no_results_html(self, upd: SearchUpdate) -> str:
        """Why the grid is empty, in words, with a way back: the filters that narrowed it (each removable),
        or "Only true matches" when the model judged every checked photo as not matching."""
        if upd.results:  # all hidden: the model checked them and judged none a match
            checked = sum(1 for r in upd.results if r.fine is not None)
            what = (
                f"The model checked {checked} photo{'s' if checked != 1 else ''} and judged none a match"
                if checked
                else "The model has not checked any photo yet"
            )
            return (
                f"<h2>No photo passed the check</h2>{what}; “Only true matches” hides the others."
                "<br><br><a href='show-all'>Show all results</a>"
            )
        chips = self.state.chips()
        if chips:
            links = " · ".join(
                f"<a href='remove:{html.escape(c.id, quote=True)}'>remove “{html.escape(c.icon + c.label)}”</a>"
                for c in chips
            )
            return f"<h2>No photos found</h2>{html.escape(upd.message or 'No photo matches every filter.')}<br><br>{links}"
        return f"<h2>No photos found</h2>{html.escape(upd.message or 'Try other words.')}"

    def _show_empty(self, html: str) -> None:
        self.empty.setText(html)
        self.stack.setCurrentWidget(self.empty)

    def _on_index_started(self) -> None:
        self.prepare.stop()  # the CPU goes to the new photos first; the pass resumes after
        self._eta = ("", 0.0, 0)
        self.index_state.start()
        if self._status is not None:  # the folders being added show at once, and the grid says so
            self._on_status(self._status)
        self.panel.set_indexing(True)
        self.panel.set_progress("scanning", 0, 0)
        self.index_label.setText("Scanning…")
        self.index_label.setVisible(True)
        self.index_bar.setRange(0, 0)
        self.index_bar.setVisible(True)

    def _on_index_progress(self, stage: str, done: int, total: int) -> None:
        if self._closing:
            return
        now = time.monotonic()
        if stage != self._eta[0]:
            self._eta = (stage, now, done)
        _, t0, d0 = self._eta
        eta = ""
        if total > 0 and done > d0 and now - t0 > 0.5:
            rate = (done - d0) / (now - t0)
            eta = format_eta((total - done) / rate)
        self.panel.set_progress(stage, done, total, eta)
        self.index_state.progress(stage, done, total)
        if self._status is not None:
            self.count_label.setText(self.index_state.count_text(self._status.photos))
            if self.status_label.text() in ("Ready", "Loading models…", self._activity_shown):
                self._activity_shown = self.index_state.activity()
                self.status_label.setText(self._activity_shown)
            if not self._status.photos:
                self._show_hint()
        if stage == "embedding" and done and now - self._status_asked_at > 3.0:
            self._status_asked_at = now  # batches are committed: counts, folders and places catch up
            self.refresh_status()
        if total > 0:
            self.index_bar.setRange(0, total)
            self.index_bar.setValue(min(done, total))
            what = {
                "reading text": "Reading text",
                "finding faces": "Finding faces",
                "updating faces": "Updating faces",
            }.get(stage, "Indexing")
            self.index_label.setText(f"{what} {done:,}/{total:,}" + (f" · {eta}" if eta else ""))
        else:
            self.index_bar.setRange(0, 0)
            self.index_label.setText(f"Scanning… {done:,}")

    def _on_index_done(self, summary: IndexSummary | None, error: str | None, cancelled: bool) -> None:
        self.index_state.finish(list(self.libraries.pending))
        self.index_label.setVisible(False)
        self.index_bar.setVisible(False)
        paused = self.libraries.index_paused
        self.panel.set_indexing(False, paused=paused)
        self.last_index_summary = summary
        self._index_done_since_people = True
        if error is not None:
            if not self._clip_ok:  # the long engine message is in the banner and the setup dialog
                self.panel.set_message("Indexing stopped: the search model is missing (see Models…).")
            else:
                self.panel.set_message(f"Indexing stopped: {error}")
            self.panel.stage.setToolTip(error)
            self.status_label.setText(f"Indexing failed: {error}")
        elif summary is not None:
            if cancelled:
                text = (
                    "Paused — Resume continues where it stopped"
                    if paused
                    else "Indexing cancelled (finished photos are kept)"
                )
            else:
                parts = [f"{summary.added:,} added"]
                for name in ("updated", "moved", "removed", "failed"):
                    v = getattr(summary, name, 0)
                    if v:
                        parts.append(f"{v:,} {name}")
                text = f"Indexed: {', '.join(parts)} in {summary.seconds:.1f}s"
            self.panel.set_message(text)
            self.status_label.setText(text)
            self._index_message, self._index_photos = text, None
        self.refresh_status()
        emit(self.index_finished, summary)
        more = bool(self.libraries.pending) and not paused
        if not more and error is None and not paused and not cancelled and self.searches.query is not None:
            self._search_state()

    def _on_library_changed(self) -> None:
        """Photos may have come or gone (the watcher, a removal): fresh counts and lines."""
        self.refresh_status()

    def _on_removed(self, path: str, n: int) -> None:
        self._removing = False
        self.status_label.setText(f"Removed {path} ({n:,} photos left the library)")
        self._on_library_changed()
        if self.searches.query is not None:
            self._search_state()

    def _on_remove_failed(self, path: str, message: str) -> None:
        self._removing = False
        self.status_label.setText(f"Could not remove {path}: {message}")

    def _on_watch_changed(self, label: str, tooltip: str) -> None:
        self.watch_label.setText(label)
        if tooltip:
            self.watch_label.setToolTip(tooltip)

    def _library_changed(self, *_: object) -> None:
        """The watcher indexed a change: the open results follow (new photos placed, removed ones gone)."""
        if self._closing or self.library is None or self.searches.query is None:
            return
        if self.libraries.indexing():
            return  # the index run's end searches again
        self.searches.refresh(self.library, self.settings.top)

    def _close_preview_if_gone(self) -> None:
        p = self._preview
        if p is None or p.shown_id is None:
            return
        if all(r.photo.id != p.shown_id for r in self.model.results()):
            p.close()
            self.status_label.setText("The photo in the preview is no longer in your library")

    def _on_search_update(self, upd: SearchUpdate, first: bool) -> None:
        if self._closing:
            return
        if not first:
            self._close_preview_if_gone()
        if first:
            self._show_understood(upd)
        if upd.visible:
            self.stack.setCurrentWidget(self.view)
            if first:
                self.view.scrollToTop()
                self.view.setCurrentIndex(self.model.index(0, 0))
        elif upd.results and upd.phase != "done":
            self._show_empty(
                f"<h2>Checking… {upd.done}/{upd.total}</h2>“Only true matches”: photos appear here as the "
                "model confirms them."
            )
        else:
            self._show_empty(self._no_results_html(upd))
        n = len(upd.visible)
        hidden = len(upd.results) - n
        ms = upd.timings_ms.get("coarse_total")
        text = f"{n:,} photo{'s' if n != 1 else ''}"
        if ms is not None and first:
            text += f" in {ms:.0f} ms"
        rerank = self.searches.rerank
        if hidden:
            only = rerank is not None and rerank.only_true
            text += f" · {hidden} hidden ({'not matching or not checked' if only else 'not matching'})"
        if rerank is not None and upd.results:
            self._show_rerank_progress(upd, rerank)
        if upd.message and upd.results:
            text += f" · {upd.message}"
        if upd.missing:
            m = len(upd.missing)
            text += f" · {m} photo{'s' if m != 1 else ''} no longer on disk left out"
        if upd.llm_error:  # the coarse results stand; say why they are not checked
            self._set_banner(
                f"Results weren't double-checked: {html.escape(upd.llm_error)}. &nbsp; "
                "<a href='setup'>Set up models…</a>"
            )
        elif upd.done and self.banner.text().startswith("Results weren't double-checked"):
            self._set_banner(None)  # the LLM works again
        self.status_label.setText(text)
        emit(self.search_updated, upd)

    def _show_rerank_progress(self, upd: SearchUpdate, rerank: RerankOptions) -> None:
        model_name = (
            upd.model or (self._status.mllm_model if self._status is not None else None) or "the model"
        )
        if upd.phase == "done":  # all the photos checked so far, not just the last batch ("Check the next")
            checked = sum(r.fine is not None for r in upd.results)
            self.rerank_label.setText(
                f"Checked {checked:,} photo{'s' if checked != 1 else ''} with {model_name}"
            )
            self.rerank_bar.setVisible(False)
        else:
            total = upd.total or min(rerank.k, len(upd.results))
            left = f", {about_seconds(upd.eta_s)} left" if upd.eta_s is not None else ""
            self.rerank_label.setText(f"Checking {upd.done}/{total} with {model_name}{left}…")
            self.rerank_bar.setRange(0, max(total, 1))
            self.rerank_bar.setValue(upd.done)
            self.rerank_bar.setVisible(True)
        self.rerank_label.setVisible(True)

    def _on_search_done(self, note: str | None, error: str | None) -> None:
        if self._closing:
            return
        self.rerank_bar.setVisible(False)
        if error is not None:
            self.status_label.setText(f"Search failed: {error}")
            self.rerank_label.setVisible(False)
            if self.model.rowCount() == 0:
                self._show_empty(f"<h2>Search failed</h2>{error}")
        elif note is not None:
            self.rerank_label.setText(note)
            self.rerank_label.setToolTip(note)
            self.rerank_label.setVisible(True)
        elif self.searches.rerank is not None and self.rerank_label.isVisible():
            self.rerank_label.setText(self.rerank_label.text().replace("Checking", "Checked").rstrip("…"))
        self.next_btn.setText(f"Check the next {self.k_spin.value()}")
        self.next_btn.setVisible(error is None and self.searches.can_check_more())
        emit(self.search_finished)
