"""Background work for the GUI: QRunnables that report through Qt signals, cancelled via threading.Event.

Every worker owns a ``signals`` QObject created on the UI thread, so its signals are delivered there
(queued) while ``run()`` executes on a pool thread. ``finished`` or ``failed`` is always the last signal
a worker emits, exactly once; ``cancelled`` workers finish with ``finished(None)``.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from ..errors import CancelledError, RetllmError
from .qtcompat import emit

if TYPE_CHECKING:
    from ..library import Library
    from ..rerank import RerankOptions
    from ..search import Query


class WorkerSignals(QObject):
    progress = Signal(str, int, int)  # stage, done, total
    update = Signal(object)  # a SearchUpdate, a text chunk, ...
    finished = Signal(object)  # result (None when cancelled)
    failed = Signal(str)  # a one-line message for the user


class Worker(QRunnable):
    """Base: subclasses implement :meth:`work` and return its result."""

    progress_interval_s = 0.08  # report_progress passes on one step per interval (and 0, total)

    def __init__(self) -> None:
        super().__init__()
        self.setAutoDelete(False)  # Python keeps the reference (see WorkerPool)
        self.signals = WorkerSignals()
        self.cancel = threading.Event()
        self.done = threading.Event()
        self.error: str | None = None
        self._last_progress = 0.0

    def report_progress(self, stage: str, done: int, total: int) -> None:
        """An engine ``progress`` callback: throttled, so a fast loop does not flood the UI thread."""
        now = time.monotonic()
        if now - self._last_progress < self.progress_interval_s and done not in (0, total):
            return
        self._last_progress = now
        try:
            emit(self.signals.progress, stage, done, total)
        except RuntimeError:  # the receiver side was torn down while we ran
            pass

    def work(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self) -> None:
        result: Any = None
        try:
            if not self.cancel.is_set():
                result = self.work()
        except CancelledError:
            result = None
        except RetllmError as e:
            self.error = str(e)
        except Exception as e:  # a bug must become a message, not a dead thread
            traceback.print_exc()
            self.error = f"{type(e).__name__}: {e}"
        try:
            if self.error is not None:
                emit(self.signals.failed, self.error)
            else:
                emit(self.signals.finished, result)
        except RuntimeError:  # the receiver side was torn down while we ran
            pass
        finally:
            self.done.set()

    def emit_update(self, value: Any) -> None:
        try:
            emit(self.signals.update, value)
        except RuntimeError:
            pass


class CallWorker(Worker):
    """Run ``fn(*args)`` (or ``fn(worker, *args)`` with ``pass_worker``) off the UI thread."""

    def __init__(self, fn: Callable[..., Any], *args: Any, pass_worker: bool = False) -> None:
        super().__init__()
        self.fn, self.args, self.pass_worker = fn, args, pass_worker

    def work(self) -> Any:
        if self.pass_worker:
            return self.fn(self, *self.args)
        return self.fn(*self.args)


class IndexWorker(Worker):
    """``Library.index_roots`` with throttled progress; cancelling stops at the next batch (resumable)."""

    def __init__(self, library: Library, paths: list[str] | None = None) -> None:
        super().__init__()
        self.library, self.paths = library, paths

    def run(self) -> None:
        # The folders are remembered even when indexing is cancelled before it starts (e.g. the window is
        # closed at once): the next run resumes them.
        for p in self.paths or []:
            try:
                self.library.add_root(p)
            except RetllmError as e:
                self.error = str(e)
            except Exception as e:
                self.error = f"{type(e).__name__}: {e}"
        if self.error is not None:
            try:
                emit(self.signals.failed, self.error)
            except RuntimeError:
                pass
            self.done.set()
            return
        super().run()

    def work(self) -> Any:
        return self.library.index_roots(None, progress=self.report_progress, cancel=self.cancel)


class SearchWorker(Worker):
    """Streams ``Library.search``: coarse results first, then every rerank step (``update`` signal).

    When reranking is unavailable or fails after the coarse results were shown, the coarse results stay
    and ``finished`` carries the explanation (a string) instead of failing the whole search.
    """

    def __init__(self, library: Library, query: Query, top: int, rerank: RerankOptions | None = None) -> None:
        super().__init__()
        self.library, self.query, self.top, self.rerank = library, query, top, rerank

    def work(self) -> Any:
        got_coarse = False
        try:
            for update in self.library.search(
                self.query, top=self.top, rerank=self.rerank, cancel=self.cancel
            ):
                if self.cancel.is_set():
                    return None
                got_coarse = True
                self.emit_update(update)
        except CancelledError:
            return None
        except RetllmError as e:
            if got_coarse:
                return f"Not double-checked: {e}"
            raise
        except Exception as e:  # e.g. the rerank module is mid-development
            if got_coarse:
                traceback.print_exc()
                return f"Not double-checked: {type(e).__name__}: {e}"
            raise
        return None


class ExplainWorker(Worker):
    """Streams ``Library.explain(path, query)`` text chunks (``update`` signal with each chunk)."""

    def __init__(self, library: Library, path: str, query: Query) -> None:
        super().__init__()
        self.library, self.path, self.query = library, path, query

    def work(self) -> Any:
        for chunk in self.library.explain(self.path, self.query):
            if self.cancel.is_set():
                return None
            self.emit_update(str(chunk))
        return None


class WorkerPool(QObject):
    """A QThreadPool that keeps its workers alive until they finish and can stop them all."""

    def __init__(self, max_threads: int, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_threads)
        self._workers: set[Worker] = set()

    def start(self, worker: Worker, priority: int = 0) -> Worker:
        self._workers.add(worker)
        worker.signals.finished.connect(lambda *_: self._workers.discard(worker))
        worker.signals.failed.connect(lambda *_: self._workers.discard(worker))
        self.pool.start(worker, priority)
        return worker

    def active(self) -> list[Worker]:
        return [w for w in self._workers if not w.done.is_set()]

    def cancel_all(self) -> None:
        for w in list(self._workers):
            w.cancel.set()

    def wait(self, msecs: int = -1) -> bool:
        return self.pool.waitForDone(msecs)
