"""Thumbnails for the result grid: decoded on pool threads, cached on disk per library and in memory.

Disk: ``<library>/cache/thumbnails/<px>/<hash[:2]>/<hash>.jpg`` keyed by the photo's content hash and the
pixel size, so a moved photo keeps its thumbnail and an edited one gets a new one. Memory: an LRU of
QPixmaps. Requests are de-duplicated and served newest-first (the rows the user is looking at now);
a new result list makes queued requests for the old one stale so they are skipped.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QImage, QPixmap

from ..config import THUMB_MEMORY_ITEMS
from .qtcompat import emit


def pil_to_qimage(img) -> QImage:
    """A PIL RGB image to a QImage that owns its pixels."""
    img = img.convert("RGB")
    data = img.tobytes("raw", "RGB")
    q = QImage(data, img.width, img.height, img.width * 3, QImage.Format.Format_RGB888)
    return q.copy()


def load_qimage(path: str, size: int) -> QImage:
    """An oriented thumbnail of ``path`` whose longer side is ``size`` px (engine decoder, read-only)."""
    from .. import imaging

    return pil_to_qimage(imaging.thumbnail(path, size))


class _Signals(QObject):
    ready = Signal(str, QImage)
    failed = Signal(str, str)


class _Job(QRunnable):
    def __init__(self, loader: ThumbnailLoader, key: str, path: str, content_hash: str, px: int, gen: int):
        super().__init__()
        self.loader, self.key, self.path, self.hash, self.px, self.gen = (
            loader,
            key,
            path,
            content_hash,
            px,
            gen,
        )

    def run(self) -> None:
        error = self._load()
        if error is not None:
            try:
                emit(self.loader._signals.failed, self.key, error)
            except RuntimeError:
                pass  # loader deleted during shutdown

    def _load(self) -> str | None:
        """Load and emit ``ready``; return the reason on failure ("" when the request went stale)."""
        signals = self.loader._signals
        try:
            if self.loader._stopping.is_set() or self.gen != self.loader._generation:
                return ""  # stale: just forget it
            img = QImage()
            cache_file = self.loader.cache_file(self.hash, self.px)
            if cache_file is not None and cache_file.is_file():
                img = QImage(str(cache_file))
            if img.isNull():
                from .. import imaging

                pil = imaging.thumbnail(self.path, self.px)
                if cache_file is not None:
                    try:
                        cache_file.parent.mkdir(parents=True, exist_ok=True)
                        tmp = cache_file.with_name(f"{cache_file.name}.{threading.get_ident()}.tmp")
                        pil.save(tmp, "JPEG", quality=85)
                        os.replace(tmp, cache_file)
                    except OSError:
                        pass
                img = pil_to_qimage(pil)
        except Exception as e:  # unreadable photo: show a broken placeholder
            return str(e) or type(e).__name__
        try:
            emit(signals.ready, self.key, img)
        except RuntimeError:
            pass  # loader deleted during shutdown
        return None


class ThumbnailLoader(QObject):
    """``pixmap(path, hash, px)`` returns a cached QPixmap or None (and queues a load; ``ready`` follows)."""

    ready = Signal(str)  # key
    failed = Signal(str, str)  # key, reason

    def __init__(
        self,
        cache_dir: str | Path | None,
        threads: int = 2,
        memory_items: int = THUMB_MEMORY_ITEMS,
        parent=None,
    ):
        super().__init__(parent)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max(1, threads))
        self._signals = _Signals()
        self._signals.ready.connect(self._on_ready)
        self._signals.failed.connect(self._on_failed)
        self._memory: OrderedDict[str, QPixmap] = OrderedDict()
        self._memory_items = memory_items
        self._pending: set[str] = set()
        self._broken: dict[str, str] = {}
        self._generation = 0
        self._priority = 0
        self._stopping = threading.Event()

    @staticmethod
    def key(content_hash: str, px: int) -> str:
        return f"{content_hash}-{px}"

    def cache_file(self, content_hash: str, px: int) -> Path | None:
        if self.cache_dir is None or not content_hash:
            return None
        return self.cache_dir / str(px) / content_hash[:2] / f"{content_hash}.jpg"

    def set_memory_items(self, n: int) -> None:
        self._memory_items = max(1, int(n))
        while len(self._memory) > self._memory_items:
            self._memory.popitem(last=False)

    def set_cache_dir(self, cache_dir: str | Path | None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.invalidate()
        self._memory.clear()
        self._broken.clear()

    def invalidate(self) -> None:
        """Make queued requests stale (call when the result list is replaced)."""
        self._generation += 1
        self._pending.clear()

    def is_broken(self, content_hash: str, px: int) -> bool:
        return self.key(content_hash, px) in self._broken

    def pixmap(self, path: str, content_hash: str, px: int) -> QPixmap | None:
        key = self.key(content_hash or path, px)
        pm = self._memory.get(key)
        if pm is not None:
            self._memory.move_to_end(key)
            return pm
        if key in self._pending or key in self._broken or self._stopping.is_set():
            return None
        self._pending.add(key)
        self._priority += 1
        self.pool.start(_Job(self, key, path, content_hash, px, self._generation), self._priority)
        return None

    def pending(self) -> int:
        return len(self._pending)

    def _on_ready(self, key: str, img: QImage) -> None:
        self._pending.discard(key)
        if img.isNull():
            return
        self._memory[key] = QPixmap.fromImage(img)
        while len(self._memory) > self._memory_items:
            self._memory.popitem(last=False)
        emit(self.ready, key)

    def _on_failed(self, key: str, reason: str) -> None:
        self._pending.discard(key)
        if reason:
            self._broken[key] = reason
            emit(self.failed, key, reason)

    def shutdown(self, msecs: int = 5000) -> bool:
        self._stopping.set()
        self._generation += 1
        self.pool.clear()
        return self.pool.waitForDone(msecs)
