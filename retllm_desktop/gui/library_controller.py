"""The library's life in the app: open, close and reopen, index, remove folders, watch them, report status.

The window shows what this controller reports (signals); every engine call runs on a worker, including
closing the library before a reopen (after a settings or model change), which waits for the running
search and indexing to stop and can take a while (an LLM check ends after the current candidate).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from .qtcompat import emit
from .settings import Settings
from .workers import CallWorker, IndexWorker, Worker, WorkerPool

if TYPE_CHECKING:
    from ..indexer import IndexSummary
    from ..library import Library, LibraryStatus
    from ..watcher import LibraryWatcher


def collect_status(library: Library) -> LibraryStatus:
    """Runs in a worker: loads the models (slow the first time) and gathers what the UI shows."""
    return library.status()


def open_engine(library_path: str, models_path: str, settings: Settings) -> Library:
    """Open the catalog (quick); the models load later, lazily, in a worker."""
    from ..library import Library

    return Library(
        library_path,
        models_dir=models_path,
        clip_model=settings.clip_model,
        mllm_model=settings.mllm_model,
        threads=settings.threads,
        decode_workers=settings.decode_workers,
        mllm_cache_bytes=settings.mllm_cache_bytes,
        mllm_kv_cache_bytes=settings.mllm_kv_cache_bytes,
        n_ctx=settings.n_ctx,
        read_text=settings.read_text,
        read_faces=settings.read_faces,
        face_detector=settings.face_detector,
        llm_detail=settings.llm_detail,
        prepare_budget_bytes=settings.prepare_budget_bytes,
    )


def drain(pools: list[WorkerPool], progress: Callable[[int], None], timeout_s: float = 120.0) -> None:
    """Cancel every worker of ``pools`` and wait (off the UI thread) until they have all stopped."""
    workers: list[Worker] = []
    for pool in pools:
        pool.cancel_all()
        workers += pool.active()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        running = [w for w in workers if not w.done.is_set()]
        progress(len(running))
        if not running:
            return
        running[0].done.wait(0.2)


class LibraryController(QObject):
    """Owns the open ``Library``, the engine worker pool, the indexing worker and the folder watcher."""

    opened = Signal(object)  # the Library
    open_failed = Signal(str)
    reopen_progress = Signal(str)  # what the reopen is waiting for
    status_ready = Signal(object)  # LibraryStatus of the open library
    status_failed = Signal(str)
    index_started = Signal()
    index_progress = Signal(str, int, int)  # stage, done, total
    index_done = Signal(object, object, bool)  # IndexSummary | None, error | None, cancelled
    removed = Signal(str, int)  # folder, photos that left the library
    remove_failed = Signal(str, str)  # folder, message
    watch_changed = Signal(str, str)  # label, tooltip
    watch_batch = Signal()  # the watcher indexed a change set
    photos_changed = Signal(object)  # ... and photos were added, changed, moved or removed (IndexSummary)
    _watcher_status = Signal(str)  # from the watcher's thread, delivered on the UI thread

    def __init__(self, search_pool: WorkerPool, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.library: Library | None = None
        self.pool = WorkerPool(2, self)  # indexing, status, folder removal
        self._lifecycle = WorkerPool(1, self)  # closing/reopening: never on the pools it waits for
        self._search_pool = search_pool
        self.index_worker: IndexWorker | None = None
        self.index_paused = False
        self.pending: list[str] = []
        self.watcher: LibraryWatcher | None = None
        self.reopening = False
        self.closed = False
        self._watcher_status.connect(self._on_watcher_status)
        self.watch_batch.connect(lambda: emit(self.watch_changed, self.watch_label(), self.watch_tooltip()))

    # -- open / close --------------------------------------------------------------------------
    def open(self, library_path: str, models_path: str, settings: Settings) -> None:
        """Open at once (the catalog is quick to open; the window shows the result)."""
        try:
            self.library = open_engine(library_path, models_path, settings)
        except Exception as e:  # e.g. a corrupt catalog: say so, don't crash
            self.library = None
            emit(self.open_failed, str(e))
            return
        emit(self.opened, self.library)

    def reopen(self, library_path: str, models_path: str, settings: Settings) -> None:
        """Close the library and open it again with new settings, on a worker (the UI stays responsive)."""
        old, self.library = self.library, None
        self.reopening = True
        watcher, self.watcher = self.watcher, None
        emit(self.watch_changed, "", "")
        pools = [self._search_pool, self.pool]

        def work(worker: Worker) -> Library:
            if watcher is not None:
                emit(worker.signals.update, "Stopping the folder watcher…")
                watcher.stop()
            drain(
                pools,
                lambda n: (
                    n and emit(worker.signals.update, f"Waiting for {n} task{'s' if n != 1 else ''} to stop…")
                ),
            )
            if old is not None:
                emit(worker.signals.update, "Closing the library…")
                old.close()
            emit(worker.signals.update, "Opening the library…")
            return open_engine(library_path, models_path, settings)

        w = CallWorker(work, pass_worker=True)
        w.signals.update.connect(lambda text: emit(self.reopen_progress, str(text)))
        w.signals.finished.connect(self._reopened)
        w.signals.failed.connect(self._reopen_failed)
        self._lifecycle.start(w)

    def _reopened(self, library: Library) -> None:
        self.reopening = False
        if self.closed:
            library.close()
            return
        self.library = library
        emit(self.opened, library)

    def _reopen_failed(self, message: str) -> None:
        self.reopening = False
        if not self.closed:
            emit(self.open_failed, message)

    def shutdown(self, pools: list[WorkerPool]) -> None:
        """Quitting the app: stop everything and close the catalog before the process ends (blocking)."""
        self.closed = True
        for pool in [self._search_pool, self.pool, *pools]:
            pool.cancel_all()
        self.stop_watcher()
        # Indexing stops at the next batch boundary; the catalog commits per batch, so it stays consistent.
        for pool in [self._search_pool, self.pool, self._lifecycle, *pools]:
            pool.wait(120_000)
        if self.library is not None:
            self.library.close()
            self.library = None

    # -- status --------------------------------------------------------------------------------
    def refresh_status(self) -> None:
        lib = self.library
        if lib is None or self.closed:
            return
        w = CallWorker(collect_status, lib)
        w.signals.finished.connect(lambda st: self._status(lib, st))
        w.signals.failed.connect(lambda msg: lib is self.library and emit(self.status_failed, msg))
        self.pool.start(w)

    def _status(self, lib: Library, status: LibraryStatus | None) -> None:
        if lib is self.library and status is not None and not self.closed:
            emit(self.status_ready, status)

    # -- indexing ------------------------------------------------------------------------------
    def indexing(self) -> bool:
        return self.index_worker is not None and not self.index_worker.done.is_set()

    def index(self, paths: list[str] | None = None) -> bool:
        """Start indexing (adding ``paths`` first); while indexing, queue them. False: queued only."""
        if self.library is None or self.closed:
            return False
        paths = [str(Path(p).expanduser()) for p in paths or []]
        if self.indexing():
            self.pending.extend(paths)
            return False
        self.stop_watcher()
        self.index_paused = False
        w = IndexWorker(self.library, paths or None)
        self.index_worker = w
        w.signals.progress.connect(lambda *a: self.closed or emit(self.index_progress, *a))
        w.signals.finished.connect(lambda s, w=w: self._index_done(w, s, None))
        w.signals.failed.connect(lambda msg, w=w: self._index_done(w, None, msg))
        emit(self.index_started)
        self.pool.start(w)
        return True

    def _index_done(self, w: IndexWorker, summary: IndexSummary | None, error: str | None) -> None:
        if w is self.index_worker:
            self.index_worker = None
        if self.closed:
            return
        cancelled = w.cancel.is_set() or bool(summary is not None and summary.cancelled)
        emit(self.index_done, summary, error, cancelled)
        if self.library is None:
            return
        if self.pending and not self.index_paused:
            pending, self.pending = self.pending, []
            self.index(pending)
        elif error is None and not self.index_paused and not cancelled:
            self.start_watcher()

    def pause_indexing(self) -> bool:
        if self.index_worker is None:
            return False
        self.index_paused = True
        self.index_worker.cancel.set()
        return True

    def cancel_indexing(self) -> bool:
        if self.index_worker is None:
            return False
        self.index_paused = False
        self.pending.clear()
        self.index_worker.cancel.set()
        return True

    def remove_folder(self, path: str) -> None:
        lib = self.library
        if lib is None:
            return
        self.stop_watcher()
        w = CallWorker(lib.remove_root, path)

        def done(n: int | None) -> None:
            emit(self.removed, path, n or 0)
            self.start_watcher()

        w.signals.finished.connect(done)
        w.signals.failed.connect(lambda msg: emit(self.remove_failed, path, msg))
        self.pool.start(w)

    # -- folder watching -----------------------------------------------------------------------
    def start_watcher(self) -> None:
        if self.watcher is not None or self.library is None or self.closed:
            return
        from ..watcher import LibraryWatcher

        try:
            self.watcher = LibraryWatcher(
                self.library,
                on_update=self._on_watch_update,
                on_status=lambda text: emit(self._watcher_status, str(text or "")),
            )
            self.watcher.start()
        except Exception as e:  # watching is a convenience: say why it is off, go on
            self.watcher = None
            emit(self.watch_changed, "Not watching folders", str(e))
            return
        emit(self.watch_changed, self.watch_label(), self.watch_tooltip())

    def _on_watch_update(self, summary: object = None) -> None:
        """From the watcher's thread: the signals are delivered on the UI thread."""
        emit(self.watch_batch)
        changed = summary is None or any(
            getattr(summary, name, 0) for name in ("added", "updated", "moved", "removed")
        )
        if changed and not self.closed:
            emit(self.photos_changed, summary)

    def _on_watcher_status(self, text: str) -> None:
        if self.watcher is not None and not self.closed:
            emit(self.watch_changed, self.watch_label(), text or self.watch_tooltip())

    def stop_watcher(self) -> None:
        w, self.watcher = self.watcher, None
        if w is not None:
            w.stop()
        emit(self.watch_changed, "", "")

    def watch_label(self) -> str:
        w = self.watcher
        if w is None:
            return ""
        n = w.watching
        return f"Watching {n} folder{'s' if n != 1 else ''}"

    def watch_tooltip(self) -> str:
        w = self.watcher
        return f"New and changed photos are indexed automatically ({w.mode})" if w is not None else ""
