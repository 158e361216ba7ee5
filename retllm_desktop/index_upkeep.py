"""Index upkeep: each CLIP model's hnswlib index kept in step with the catalog and with other processes.

The catalog is the source of truth; an index file is derived from it. On first use an index is loaded and
reconciled with the stored vectors (and the journal of vectors written after its last save); later, when
another process (or another ``Library``) committed to the catalog, it is reloaded or reconciled again.
Readers keep repairs in memory (opening never writes); the writer saves them. While a switched-to CLIP
model is being filled, search uses the installed model whose stored vectors cover the most photos.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .catalog import Catalog
from .errors import RetllmError
from .locking import WriterLock
from .scanner import FileStat
from .vector_index import VectorIndex

if TYPE_CHECKING:
    from .models.clip.towers import ClipModel
    from .scanner import ScanPlan

log = logging.getLogger(__name__)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _file_signature(path: Path) -> tuple[int, int, int] | None:
    """Identity of a saved index file (saves replace it, so the inode changes)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class IndexKeeper:
    """The vector indexes of one library: the current CLIP model's, and a fallback model's during a switch."""

    def __init__(
        self,
        library_dir: Path,
        catalog: Catalog,
        lock: WriterLock,
        models_dir: Path,
        threads: int,
        model_lock: threading.RLock,
        clip: Callable[[], ClipModel],
    ):
        self.library_dir = library_dir
        self.catalog = catalog
        self.lock = lock
        self.models_dir = models_dir
        self.threads = threads
        self._model_lock = model_lock  # the library's: model loading and index changes never interleave
        self._clip = clip  # the library's current CLIP model (loaded on first call)
        self._index: VectorIndex | None = None
        self._fallback: tuple[ClipModel, VectorIndex] | None = None  # see search_models()
        self._complete_cache: tuple[tuple, bool] | None = None
        self._key_cache: dict[str, tuple[tuple, str]] = {}

    @property
    def loaded(self) -> bool:
        """Whether the current model's index is in memory (a removal must then update it)."""
        return self._index is not None

    def take_fallback(self) -> ClipModel | None:
        """The fallback model, forgotten here: the caller closes it (under the library's model lock)."""
        fallback, self._fallback = self._fallback, None
        return fallback[0] if fallback is not None else None

    # -- adopting vectors stored under the plain model name --------------------------------------------
    def adopt_legacy_embeddings(self, clip: ClipModel) -> None:
        """Vectors stored under the plain model name (before keys had fingerprints) belong to ``clip`` when
        their size matches: they are moved to its key (when we may write now), or read under the old name.

        Vectors of another size under the same name are from a different model: they stay under their old
        name, and this model fills its own key (``index``), as after a model switch.
        """
        counts = self.catalog.embedding_models()
        if clip.name not in counts or clip.key in counts:
            return
        if self.catalog.embedding_dims(clip.name) != {clip.embed_dim}:
            return
        if self.lock.held:  # a writer moves them; a reader never writes
            try:
                self.catalog.rename_embedding_model(clip.name, clip.key)
                old = self.library_dir / "index" / f"{_safe_name(clip.name)}.hnsw"
                new = self._index_path(clip)
                for suffix in ("", ".json"):
                    src, dst = Path(str(old) + suffix), Path(str(new) + suffix)
                    if src.exists() and not dst.exists():
                        os.replace(src, dst)
                return
            except (RetllmError, OSError) as e:
                log.warning("stored vectors not moved to %s: %s", clip.key, e)
        clip.use_key(clip.name)  # use the vectors where they are (moved by the next writer)

    def adopt_pending(self, clip: ClipModel) -> None:
        """Under the writer lock: finish a legacy adoption a reader could only use in place."""
        if clip.key != clip.name:
            return
        clip.use_key(None)
        self.adopt_legacy_embeddings(clip)
        if clip.key != clip.name:
            with self._model_lock:
                self._index = None  # it was loaded under the old name

    # -- the current model's index ---------------------------------------------------------------------
    def index(self) -> VectorIndex:
        """The vector index of the current CLIP model, checked against the catalog on first use."""
        with self._model_lock:
            if self._index is None:
                self._index = self._load_index(self._clip())
            elif not self.lock.held:  # while we write, our in-memory index is the newest state
                self._index = self._refreshed(self._index, self._clip())
            return self._index

    def writer_index(self) -> VectorIndex:
        """The index to write to, under the writer lock: first catch up with other processes' changes."""
        with self._model_lock:
            if self._index is None:
                self._index = self._load_index(self._clip())
            else:
                self._index = self._refreshed(self._index, self._clip())
            return self._index

    def _refreshed(self, idx: VectorIndex, clip: ClipModel) -> VectorIndex:
        """``idx`` brought up to date when another process (or Library) changed the catalog since we looked.

        Its saved index file is reloaded when it was replaced (its journal is then cleared, so a re-embedded
        photo's new vector would be invisible otherwise); else the catalog's vectors are reconciled in memory.
        """
        version = self.catalog.data_version()
        if idx.seen_version == version:
            return idx
        if _file_signature(idx.meta_path) != idx.disk_signature:
            return self._load_index(clip)
        idx.seen_version = version
        self._sync_index(idx, clip)
        return idx

    def _index_path(self, clip: ClipModel) -> Path:
        return self.library_dir / "index" / f"{_safe_name(clip.key)}.hnsw"

    def _load_index(self, clip: ClipModel) -> VectorIndex:
        path = self._index_path(clip)
        version = self.catalog.data_version()
        signature = _file_signature(path.with_suffix(path.suffix + ".json"))
        idx = VectorIndex(path, dim=clip.embed_dim, threads=self.threads)
        idx.seen_version, idx.disk_signature = version, signature

        def on_saved() -> None:
            self.catalog.clear_journal(clip.key)
            idx.disk_signature = _file_signature(idx.meta_path)

        idx.on_saved = on_saved
        self._sync_index(idx, clip)
        return idx

    def _sync_index(self, idx: VectorIndex, clip: ClipModel) -> None:
        stored = self.catalog.embedding_ids(clip.key)
        idx.reconcile(stored, lambda ids: self.catalog.iter_embeddings(clip.key, ids))
        # Vectors committed after the index file was saved (kill -9 in between): same label, maybe a new
        # vector (re-embedded photo, or a reused id) — reconcile cannot see that, the journal can.
        stale = sorted(self.catalog.journal_ids(clip.key) & stored)
        for ids, vecs in self.catalog.iter_embeddings(clip.key, stale):
            idx.add(ids, vecs)
        if stale:
            idx.mark_dirty()
        if idx.dirty and self.lock.held:  # readers keep the repair in memory: opening never writes
            try:
                idx.save()
            except (OSError, RetllmError) as e:  # disk full: keep working from memory, save next time
                log.warning("vector index not saved: %s", e)

    # -- which model search uses -----------------------------------------------------------------------
    def _embeddings_complete(self, model_name: str) -> bool:
        """Every online photo has a vector of ``model_name`` (offline photos cannot be embedded now).

        Asked on every search, so the answer is cached until the catalog changes (here or in another process).
        """
        key = (model_name, self.catalog.change_token())
        cached = self._complete_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        complete = self.catalog.embeddings_complete(model_name)
        self._complete_cache = (key, complete)
        return complete

    def search_models(self) -> tuple[ClipModel, VectorIndex]:
        """(CLIP model, index) that search uses.

        Embeddings are stored per model, so switching the CLIP model keeps the old vectors: until
        ``index_roots`` has filled the selected model for every photo, search uses the installed model
        whose stored embeddings cover the most photos (when that is more than the selected one's).
        """
        clip = self._clip()
        if self._embeddings_complete(clip.key):
            return clip, self.index()
        from .models.clip.towers import ClipModel, list_clip_models

        counts = self.catalog.embedding_models()
        best: ClipModel | None = None
        best_n = counts.get(clip.key, 0)
        for model_dir in list_clip_models(self.models_dir):
            try:
                other = ClipModel(model_dir, threads=self.threads)
                self._cached_key(other)
                if other.name in counts:
                    self.adopt_legacy_embeddings(other)
                    counts = self.catalog.embedding_models()
                key = other.key
            except (RetllmError, OSError):
                continue
            if key != clip.key and counts.get(key, 0) > best_n:
                best, best_n = other, counts[key]
        if best is None:
            return clip, self.index()
        with self._model_lock:
            if self._fallback is None or self._fallback[0].key != best.key:
                if self._fallback is not None:
                    self._fallback[0].close()
                self._fallback = (best, self._load_index(best))
            elif not self.lock.held:
                self._fallback = (self._fallback[0], self._refreshed(self._fallback[1], self._fallback[0]))
            return self._fallback

    def _cached_key(self, clip: ClipModel) -> str:
        """``clip.key`` without re-reading the files on every search while a model switch is pending."""
        sig = tuple(
            (st.st_size, st.st_mtime_ns, st.st_ino) for st in map(os.stat, (clip.image_path, clip.text_path))
        )
        cached = self._key_cache.get(str(clip.model_dir))
        if cached is not None and cached[0] == sig:
            clip.use_key(cached[1])
        self._key_cache[str(clip.model_dir)] = (sig, clip.key)
        return clip.key


def plan_backfill(catalog: Catalog, plan: ScanPlan, clip: ClipModel, library_dir: Path) -> None:
    """Queue known photos that lack a ``clip.key`` vector (the CLIP model was switched) for embedding.

    They go to ``plan.changed`` (so the summary counts them as updated); vectors of other models stay.
    """
    model_name = clip.key
    queued = {fs.photo_id for fs in plan.to_embed if fs.photo_id is not None}
    queued.update(plan.removed)
    current = {fs.photo_id: fs for fs in plan.touched}
    current.update({m.photo_id: dataclasses.replace(m.new, photo_id=m.photo_id) for m in plan.moved})
    missing = [pid for pid in catalog.ids_missing_embedding(model_name) if pid not in queued]
    if missing:  # a switched model: its vectors must fit before any is written
        from .model_switch import check_space

        check_space(library_dir, len(missing), clip.embed_dim, clip.name)
    for pid, photo in sorted(catalog.photos_by_ids(missing).items()):
        fs = current.get(pid)
        if fs is None:
            if photo.status != "ok" or not os.path.isfile(photo.path):
                continue
            fs = FileStat(photo.path, photo.root_id, photo.size, photo.mtime_ns, photo_id=pid)
        fs = dataclasses.replace(fs, hash=fs.hash or photo.hash, old_hash=photo.hash)
        plan.changed.append(fs)
