"""The prepare pass in the app: runs in the background while the window is idle, shows what is ready.

It starts once the app has been idle for a while (``config.PREPARE_IDLE_SECONDS``: no search, no
indexing) with a library open and its checking model installed, and again after indexing added photos.
Not at launch: someone who opens the app to find one photo should not meet a fan spinning up and a
multi-GB model loading before they have typed anything. Each search pushes a pending start back; a
running pass pauses while indexing runs (the CPU goes to the new photos first) and stops at once when
the library closes. Searches never wait for it longer than one image chunk: the engine makes it give way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QLabel, QWidget

from .. import config
from .qtcompat import emit
from .workers import Worker, WorkerPool

if TYPE_CHECKING:
    from ..library import Library


class PrepareWorker(Worker):
    progress_interval_s = 0.5  # a slow pass: the label need not change more often

    def __init__(self, library: Library) -> None:
        super().__init__()
        self.library = library

    def work(self) -> Any:
        return self.library.prepare(progress=self.report_progress, cancel=self.cancel)


def about_seconds(seconds: float) -> str:
    """ "about 20 s" / "about 3 min": an estimate, rounded the way people say it."""
    if seconds < 60:
        return f"about {max(1, round(seconds / 5) * 5 if seconds >= 10 else round(seconds))} s"
    return f"about {round(seconds / 60)} min"


def ready_text(photos: int, total: int | None = None) -> str:
    if total:
        return f"Preparing photos for quick checks: {photos:,} of {total:,}"
    return f"{photos:,} photo{'s' if photos != 1 else ''} ready for quick checks"


class PrepareController(QObject):
    """Owns the background prepare worker and its status-bar label."""

    finished = Signal(object)  # PrepareSummary or None (cancelled / failed)

    def __init__(self, parent: QWidget, idle_seconds: float = config.PREPARE_IDLE_SECONDS) -> None:
        super().__init__(parent)
        self.pool = WorkerPool(1, self)
        self._idle = QTimer(self)  # the pending start: fires after idle_seconds without activity
        self._idle.setSingleShot(True)
        self._idle.setInterval(max(0, round(idle_seconds * 1000)))
        self._idle.timeout.connect(self._start_now)
        self._library: Library | None = None
        self.label = QLabel("", parent)
        self.label.setAccessibleName("Photos ready for quick checks")
        self.label.setToolTip(
            "Photos the checking model has looked at ahead of time: checking them in a search is "
            "several times faster. Turn this off in Settings."
        )
        self.label.setVisible(False)
        self.enabled = True
        self._worker: PrepareWorker | None = None
        self._base = 0  # photos already prepared when the running pass started

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._worker.done.is_set()

    @property
    def pending(self) -> bool:
        """A start is waiting for the app to stay idle."""
        return self._idle.isActive()

    def start(self, library: Library | None) -> None:
        """Start a pass once the app has been idle for a while (no-op when one is running or pending,
        when turned off or without a library). Status refreshes call this often: they do not push the
        start back, only :meth:`poke` (a search) does."""
        if not self.enabled or library is None or self.running:
            return
        if self._library is not library:
            self._idle.stop()
        self._library = library
        if not self._idle.isActive():
            self._idle.start()

    def poke(self) -> None:
        """The user is doing something (a search): a pending start waits for the next idle stretch."""
        if self._idle.isActive():
            self._idle.start()

    def _start_now(self) -> None:
        library, self._library = self._library, None
        if not self.enabled or library is None or self.running:
            return
        w = PrepareWorker(library)
        w.signals.progress.connect(self._on_progress)
        w.signals.finished.connect(self._on_finished)
        w.signals.failed.connect(lambda _msg: self._on_finished(None))
        self._worker = w
        self.pool.start(w, priority=-1)

    def stop(self) -> None:
        """Cancel a pending start and stop a running pass (indexing starts, the library closes)."""
        self._idle.stop()
        self._library = None
        if self._worker is not None:
            self._worker.cancel.set()

    def _on_progress(self, _stage: str, done: int, total: int) -> None:
        if total:
            self.label.setText(ready_text(done, total))
            self.label.setVisible(True)

    def _on_finished(self, summary: Any) -> None:
        self._worker = None
        if summary is not None and getattr(summary, "error", None) is None:
            self.label.setText(ready_text(summary.photos))
            self.label.setToolTip(
                f"{summary.photos:,} photos ready for quick checks ({summary.bytes / 1024**2:,.0f} MB)"
                + (
                    f"; {summary.over_budget:,} more do not fit the disk space set in Settings"
                    if summary.over_budget
                    else ""
                )  # fmt: skip
            )
            self.label.setVisible(summary.photos > 0)
        emit(self.finished, summary)
