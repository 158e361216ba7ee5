"""The indexing pipeline: scan plan → parallel decode → batched CLIP embedding → catalog + vector index.

Decoding a photo costs as much as embedding it, so decode workers run ahead of the model in a bounded
window while the model embeds the previous batch. Every batch is committed to the catalog in one
transaction (photo rows + their vectors), then added to the index: a crash loses at most the batch in
flight, and the next run picks up exactly where this one stopped.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Protocol

import numpy as np
from PIL import Image

from .catalog import Catalog, Photo
from .errors import ImageError
from .imaging import PhotoMeta, load_photo
from .progress import Progress
from .scanner import FileStat, ScanPlan
from .vector_index import VectorIndex


class ImageEmbedder(Protocol):
    """What the indexer needs from a CLIP model (see models.clip.ClipModel)."""

    name: str

    @property
    def image_size(self) -> int: ...

    def preprocess(self, image: Image.Image) -> np.ndarray: ...

    def encode_images(self, batch: np.ndarray) -> np.ndarray: ...


@dataclass
class IndexSummary:
    added: int = 0
    updated: int = 0
    moved: int = 0
    removed: int = 0
    failed: int = 0  # files that cannot be indexed (new failures and ones still failing)
    skipped: int = 0  # special files passed over on purpose (FIFOs, dangling symlinks, loops)
    unchanged: int = (
        0  # photos neither added, updated nor moved (added+updated+moved+unchanged+offline = total)
    )
    reused: int = 0  # new files whose identical content was already embedded (copies)
    offline: int = 0  # photos on roots that are not reachable right now
    total: int = 0
    places: int = 0  # photos whose place (GPS → city/country) was computed in this run
    places_error: str | None = None  # the places pass failed (search works without it)
    seconds: float = 0.0
    cancelled: bool = False
    text: dict | None = None  # the text pass's TextSummary, when it ran
    faces: dict | None = None  # the face pass's FaceSummary, when it ran

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Prepared:
    fs: FileStat
    meta: PhotoMeta | None = None
    pixels: np.ndarray | None = None
    error: str | None = None


class Indexer:
    def __init__(
        self,
        catalog: Catalog,
        index: VectorIndex,
        model: ImageEmbedder,
        *,
        decode_workers: int = 2,
        batch_size: int = 16,
        save_every_s: float = 20.0,
    ):
        self.catalog = catalog
        self.index = index
        self.model = model
        self.decode_workers = max(1, decode_workers)
        self.batch_size = max(1, batch_size)
        self.save_every_s = save_every_s

    # -- stage 1: bookkeeping that needs no pixels ------------------------------------------------
    def apply_plan_bookkeeping(self, plan: ScanPlan, summary: IndexSummary) -> None:
        for root in plan.offline_roots:
            self.catalog.set_root_online(root.id, False)
        for root in plan.online_roots:
            self.catalog.set_root_online(root.id, True)
        with self.catalog.transaction():
            for mv in plan.moved:
                self.catalog.update_photo(
                    mv.photo_id,
                    path=mv.new.path,
                    root_id=mv.new.root_id,
                    size=mv.new.size,
                    mtime_ns=mv.new.mtime_ns,
                    status="ok",
                )
                self.catalog.clear_failure(mv.new.path)
            for fs in plan.touched:
                self.catalog.update_photo(fs.photo_id, size=fs.size, mtime_ns=fs.mtime_ns)
            self.catalog.delete_photos(plan.removed)
            for path in plan.stale_failures:
                self.catalog.clear_failure(path)
            for fs, reason in plan.failed + plan.skipped:
                self.catalog.record_failure(fs.path, fs.root_id, reason, fs.size or None, fs.mtime_ns or None)
        self.index.remove(plan.removed)
        summary.moved = len(plan.moved)
        summary.removed = len(plan.removed)
        # Counts add up: failed = files that failed in this run (unchanged old failures are not retried, and
        # are listed by `status`); photos are counted as unchanged at the end (total - offline - added -
        # updated - moved), so a failed file is never counted as an unchanged photo.
        summary.failed = len(plan.failed)
        summary.skipped = len(plan.skipped)

    # -- stage 2: pixels → vectors ---------------------------------------------------------------
    def _prepare(self, fs: FileStat) -> _Prepared:
        try:
            loaded = load_photo(fs.path, min_side=self.model.image_size)
            if fs.hash is None:  # hashing was deferred by the scanner: this read is the only one
                fs.hash = loaded.hash
            return _Prepared(fs, loaded.meta, self.model.preprocess(loaded.image))
        except ImageError as e:
            return _Prepared(fs, error=str(e))
        except MemoryError:
            return _Prepared(fs, error="image too large to decode in memory")
        except Exception as e:  # one bad file never stops a run
            return _Prepared(fs, error=f"unexpected error: {type(e).__name__}: {e}")

    def _reuse_by_hash(
        self, todo: list[FileStat]
    ) -> tuple[list[FileStat], list[tuple[FileStat, Photo, np.ndarray]]]:
        """Identical content already embedded (a copy of a photo): reuse its vector and metadata, skip decoding."""
        rest: list[FileStat] = []
        reused: list[tuple[FileStat, Photo, np.ndarray]] = []
        for fs in todo:
            found = None
            for other in self.catalog.photos_by_hash(fs.hash) if fs.hash else []:
                vec = self.catalog.embedding(other.id, self.model.key) if other.id != fs.photo_id else None
                if vec is not None:
                    found = (fs, other, vec)
                    break
            if found:
                reused.append(found)
            else:
                rest.append(fs)
        return rest, reused

    def _commit(
        self, items: list[tuple[FileStat, PhotoMeta | Photo, np.ndarray]], summary: IndexSummary
    ) -> None:
        now = time.time()
        ids: list[int] = []
        with self.catalog.transaction():
            for fs, meta, vec in items:
                fields = dict(
                    size=fs.size,
                    mtime_ns=fs.mtime_ns,
                    hash=fs.hash or "",
                    width=meta.width,
                    height=meta.height,
                    format=meta.format,
                    taken_at=meta.taken_at,
                    camera_make=meta.camera_make,
                    camera_model=meta.camera_model,
                    gps_lat=meta.gps_lat,
                    gps_lon=meta.gps_lon,
                    orientation=meta.orientation,
                    status="ok",
                )
                if fs.photo_id is not None and self.catalog.photo(fs.photo_id) is not None:
                    self.catalog.update_photo(fs.photo_id, **fields)
                    pid = fs.photo_id
                    summary.updated += 1
                else:
                    pid = self.catalog.insert_photo(
                        Photo(id=0, root_id=fs.root_id, path=fs.path, added_at=now, updated_at=now, **fields)
                    )
                    summary.added += 1
                self.catalog.put_embedding(pid, self.model.key, vec)
                self.catalog.clear_failure(fs.path)
                ids.append(pid)
            # A kill before the next index save must not leave the old vector of a re-used id in the index.
            self.catalog.journal_add(ids, self.model.key)
        self.index.add(ids, np.stack([v for _, _, v in items]))

    def _record_failures(self, failed: list[_Prepared], summary: IndexSummary) -> None:
        if not failed:
            return
        with self.catalog.transaction():
            for p in failed:
                self.catalog.record_failure(
                    p.fs.path, p.fs.root_id, p.error or "unknown error", p.fs.size, p.fs.mtime_ns
                )
                if p.fs.photo_id is not None:
                    # The file changed into something unreadable: its old vector no longer describes it.
                    self.catalog.delete_photos([p.fs.photo_id])
        self.index.remove(p.fs.photo_id for p in failed if p.fs.photo_id is not None)
        summary.failed += len(failed)

    def run(
        self,
        plan: ScanPlan,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> IndexSummary:
        t0 = time.perf_counter()
        summary = IndexSummary()
        self.apply_plan_bookkeeping(plan, summary)
        todo, reused = self._reuse_by_hash(plan.to_embed)
        if reused:
            self._commit(reused, summary)
            summary.reused = len(reused)
        total = len(todo)
        done = 0
        last_save = time.monotonic()
        if progress:
            progress("embedding", 0, total)
        window = self.batch_size * (self.decode_workers + 2)
        with ThreadPoolExecutor(max_workers=self.decode_workers, thread_name_prefix="decode") as pool:
            pending: deque[Future[_Prepared]] = deque()
            queue = iter(todo)
            batch: list[_Prepared] = []
            failed: list[_Prepared] = []

            def refill() -> None:
                while len(pending) < window:
                    fs = next(queue, None)
                    if fs is None:
                        return
                    pending.append(pool.submit(self._prepare, fs))

            refill()
            while pending:
                if cancel is not None and cancel.is_set():
                    summary.cancelled = True
                    for f in pending:
                        f.cancel()
                    break
                prepared = pending.popleft().result()
                refill()
                (failed if prepared.error else batch).append(prepared)
                if len(batch) >= self.batch_size or (not pending and batch):
                    vecs = self.model.encode_images(np.stack([p.pixels for p in batch]))
                    self._commit([(p.fs, p.meta, v) for p, v in zip(batch, vecs, strict=True)], summary)
                    done += len(batch)
                    batch = []
                if failed and (len(failed) >= self.batch_size or not pending):
                    self._record_failures(failed, summary)
                    done += len(failed)
                    failed = []
                if progress:
                    progress("embedding", done, total)
                if time.monotonic() - last_save > self.save_every_s:
                    self.index.save()
                    last_save = time.monotonic()
            if failed:
                self._record_failures(failed, summary)
        if self.index.dirty:
            self.index.save()
        for root in self.catalog.roots():
            if root.online:
                self.catalog.mark_root_scanned(root.id)
        summary.total = self.catalog.count_photos()
        summary.offline = self.catalog.count_photos("offline")
        summary.unchanged = max(
            0, summary.total - summary.offline - summary.added - summary.updated - summary.moved
        )
        summary.seconds = round(time.perf_counter() - t0, 3)
        return summary
