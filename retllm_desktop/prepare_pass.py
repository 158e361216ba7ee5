"""The prepare pass: run the LLM's vision tower ahead of time, so a search's checks skip it.

Optional and incremental like the text pass: each photo's projected image embeddings go to the scorer's
prepared store (``models/llm/prepared.py``: compact, atomic files, keyed by the model's fingerprint). Order:
newest photos first (capture date, else file date), then those that most often reached the LLM's
top-k in searches (:class:`TopkHits`). The store is kept under a disk budget: the photos that fit, in
that order, are kept; lower ones make room for new higher ones. What another model prepared is dropped
at the start. It only reads the catalog (no writer lock, so indexing is never blocked) and gives way to
a search between image chunks. Ctrl+C / cancel stops between photos; a kill -9 loses at most the photo in
flight; a full disk stops the pass with the reason, nothing half-written.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .catalog import Catalog, Photo
from .errors import ImageError, RetllmError
from .progress import Progress

STAGE = "preparing for the LLM"
HITS_FILE = "topk-hits.json"
MAX_HITS = 50_000  # photos whose top-k count is remembered


@dataclass
class PrepareSummary:
    prepared: int = 0  # photos encoded in this run
    kept: int = 0  # already prepared before this run
    failed: int = 0  # could not be read or encoded (a reason is logged; the photo is retried next run)
    pending: int = 0  # within the budget but not prepared yet (cancelled / stopped)
    over_budget: int = 0  # photos that do not fit the disk budget
    removed: int = 0  # prepared entries dropped (photo gone, fell out of the budget)
    bytes_written: int = 0
    dropped_bytes: int = 0  # freed from another model's (or other settings') store
    photos: int = 0  # prepared now, in total
    bytes: int = 0  # their size on disk
    seconds: float = 0.0
    cancelled: bool = False
    stopped: str | None = None  # why it stopped early (disk full)
    error: str | None = None  # why it did not run (no LLM installed)

    def as_dict(self) -> dict:
        return asdict(self)


class TopkHits:
    """How often each photo (content hash) was among the candidates a search sent to the LLM.

    A small JSON file beside the prepared store, written atomically; a damaged file counts as empty.
    """

    def __init__(self, path: Path):
        self.path = Path(path)

    def load(self) -> dict[str, int]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}
        except (OSError, ValueError, TypeError):
            return {}

    def record(self, hashes: Iterable[str]) -> None:
        new = [h for h in hashes if h]
        if not new:
            return
        counts = self.load()
        for h in new:
            counts[h] = counts.get(h, 0) + 1
        if len(counts) > MAX_HITS:
            counts = dict(sorted(counts.items(), key=lambda kv: -kv[1])[:MAX_HITS])
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(counts, f)
            os.replace(tmp, self.path)
        except OSError:
            pass  # a hint for the order of the prepare pass, never worth failing a search


def _taken(p: Photo) -> str:
    """Sort key "newest first": the capture time, else the file's modification time (ISO, comparable)."""
    if p.taken_at:
        return p.taken_at
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(p.mtime_ns / 1e9))


def prepare_order(photos: Iterable[Photo], hits: dict[str, int]) -> list[Photo]:
    """One photo per content, online ones only: newest first, then by top-k count, then by path."""
    seen: dict[str, Photo] = {}
    for p in photos:
        if p.status != "ok" or not p.hash:
            continue
        if p.hash not in seen or p.path < seen[p.hash].path:
            seen[p.hash] = p
    by_path = sorted(seen.values(), key=lambda p: p.path)
    by_hits = sorted(by_path, key=lambda p: -hits.get(p.hash, 0))
    return sorted(by_hits, key=_taken, reverse=True)  # stable: hits, then path, break date ties


class PreparePass:
    def __init__(self, catalog: Catalog, scorer: Any, budget_bytes: int, hits: TopkHits | None = None):
        self.catalog = catalog
        self.scorer = scorer  # models.llm.scorer.MllmScorer with a prepared store
        self.budget = max(0, int(budget_bytes))
        self.hits = hits

    def run(self, progress: Progress | None = None, cancel: threading.Event | None = None) -> PrepareSummary:
        t0 = time.perf_counter()
        out = PrepareSummary()
        store = self.scorer.prepared
        if store is None:
            raise RetllmError("The LLM has no folder for prepared photos.")
        out.dropped_bytes = store.drop_other_namespaces()
        store.clean_temp()
        photos = self.catalog.photos_by_ids(self.catalog.photo_ids()).values()
        order = prepare_order(photos, self.hits.load() if self.hits else {})
        keys = [self.scorer.prepared_key(p.path, p.hash) for p in order]
        sizes = {k: store.size(k) for k in keys}
        known = [s for s in sizes.values() if s]
        estimate = sum(known) / len(known) if known else 0.0

        # the prefix of the order that fits the budget (unknown sizes at the mean of the known ones)
        keep, total = [], 0.0
        for p, k in zip(order, keys, strict=True):
            need = sizes[k] or estimate
            if total + need > self.budget:
                break
            keep.append((p, k))
            total += need
        keep_keys = {k for _, k in keep}
        out.over_budget = len(order) - len(keep)
        out.removed = store.remove_except(keep_keys)
        todo = [(p, k) for p, k in keep if not sizes[k]]
        out.kept = len(keep) - len(todo)
        used = sum(sizes[k] for k in keep_keys)
        if progress:
            progress(STAGE, 0, len(todo))
        for n, (photo, key) in enumerate(todo):
            if cancel is not None and cancel.is_set():
                out.cancelled = True
                break
            if used + (estimate or 0) > self.budget:
                break
            try:
                written = self._prepare_one(photo, cancel)
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                    out.stopped = "the disk is full"
                    break
                out.failed += 1
                continue
            except (ImageError, RetllmError):
                if cancel is not None and cancel.is_set():
                    out.cancelled = True
                    break
                out.failed += 1
                continue
            if written is None:  # cancelled while waiting for a search to finish
                out.cancelled = True
                break
            out.prepared += 1
            out.bytes_written += written
            used += written
            estimate = (estimate * (len(known) + out.prepared - 1) + written) / (len(known) + out.prepared)
            if used > self.budget:  # this photo was larger than the estimate: give it back
                store.remove(key)
                out.prepared -= 1
                used -= written
                break
            if progress:
                progress(STAGE, n + 1, len(todo))
        usage = store.usage()
        out.photos, out.bytes = usage.photos, usage.bytes
        out.pending = max(0, len(keep) - out.kept - out.prepared - out.failed)
        out.seconds = time.perf_counter() - t0
        return out

    def _prepare_one(self, photo: Photo, cancel: threading.Event | None) -> int | None:
        """Encode one photo, giving way to searches (then retrying it); None when cancelled meanwhile."""
        from .models.llm.scorer import EncodeInterrupted

        while True:
            try:
                return int(self.scorer.prepare_photo(photo.path, photo.hash, cancel))
            except EncodeInterrupted:
                while self.scorer.busy and not (cancel is not None and cancel.is_set()):
                    time.sleep(0.05)
                if cancel is not None and cancel.is_set():
                    return None
