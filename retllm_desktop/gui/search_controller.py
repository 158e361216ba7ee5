"""One search at a time: query → coarse results → live rerank steps → the results model.

A new query cancels the one in flight (its late updates are dropped), so the grid only ever shows the
newest query's results. The window builds the query from its widgets and shows progress from the signals.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from .qtcompat import emit
from .results_model import ResultsModel
from .workers import SearchWorker, WorkerPool

if TYPE_CHECKING:
    from ..library import Library
    from ..rerank import RerankOptions
    from ..search import Query, SearchUpdate


class SearchController(QObject):
    updated = Signal(object, bool)  # SearchUpdate, first update of its query
    finished = Signal(object, object)  # a note (str) or None, an error message or None

    def __init__(self, model: ResultsModel, pool: WorkerPool, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.pool = pool
        self.query: Query | None = None
        self.rerank: RerankOptions | None = None  # of the current query
        self.worker: SearchWorker | None = None
        self.last_update: SearchUpdate | None = None
        self._first = True
        self._extending = False  # "check the next": the list shown stays, its coarse step is skipped

    def start(self, library: Library, query: Query, top: int, rerank: RerankOptions | None) -> None:
        self.cancel()
        self.query, self.rerank, self._first, self._extending = query, rerank, True, False
        self.last_update = None  # of the previous query: nothing of it may leak into this one
        w = SearchWorker(library, query, top, rerank)
        self.worker = w
        w.signals.update.connect(lambda upd, w=w: self._on_update(w, upd))
        w.signals.finished.connect(lambda res, w=w: self._on_done(w, res, None))
        w.signals.failed.connect(lambda msg, w=w: self._on_done(w, None, msg))
        self.pool.start(w)

    def can_check_more(self) -> bool:
        """The LLM finished its checks and there are candidates after the ones it checked."""
        upd, opts = self.last_update, self.rerank
        if upd is None or opts is None or self.worker is not None or upd.llm_error:
            return False
        return upd.phase == "done" and len(upd.results) > opts.offset + opts.k

    def check_next(self, library: Library, top: int, n: int) -> bool:
        """Let the LLM check the next ``n`` candidates; the verdicts so far stay and join the order."""
        if not self.can_check_more() or self.query is None or self.rerank is None or self.last_update is None:
            return False
        known = {r.photo.id: r.fine for r in self.last_update.results if r.fine is not None}
        offset = self.rerank.offset + self.rerank.k
        self.start(
            library, self.query, top, dataclasses.replace(self.rerank, k=n, offset=offset, known=known)
        )
        self._first, self._extending = False, True
        return True

    def refresh(self, library: Library, top: int) -> bool:
        """The library changed under the open results (the watcher added or removed photos): the same
        query again, in place. Verdicts so far are kept; only photos new to the checked window are
        checked; new photos land where their score puts them, removed ones leave the grid."""
        if self.query is None:
            return False
        if self.worker is not None and self._first:  # nothing shown of this query yet: simply again
            self.start(library, self.query, top, self.rerank)
            return True
        rerank = self.rerank
        upd = self.last_update
        if rerank is not None and upd is not None:
            known = {r.photo.id: r.fine for r in upd.results if r.fine is not None}
            rerank = dataclasses.replace(rerank, known={**rerank.known, **known})
        self.start(library, self.query, top, rerank)
        self._first = False
        self._extending = rerank is not None  # the grid keeps its checked order: no coarse flash
        return True

    def cancel(self) -> None:
        w, self.worker = self.worker, None
        if w is not None:
            w.cancel.set()

    def clear(self) -> None:
        """No query any more: stop the search and empty the grid."""
        self.cancel()
        self.query = None
        self.last_update = None
        self.model.clear()

    def _on_update(self, w: SearchWorker, upd: SearchUpdate) -> None:
        if w is not self.worker:
            return  # a cancelled query's late update
        if self._extending and upd.phase == "coarse":
            return  # the grid keeps the checked order until the first step of the extension
        first, self._first = self._first, False
        self.last_update = upd
        self.model.set_results(upd.visible, same_query=not first)
        emit(self.updated, upd, first)

    def _on_done(self, w: SearchWorker, note: str | None, error: str | None) -> None:
        if w is not self.worker:
            return
        self.worker = None
        emit(self.finished, note, error)
