"""The vector index: add, delete, search, persist atomically, reconcile with the catalog.

Up to ``compact_threshold`` photos it is hnswlib holding float32 vectors (searched exactly up to
``exact_threshold``); above it, a CompactIndex (8-bit codes + exact fp16 rescoring, compact_index.py),
because hnswlib needs 2.3 GB and reaches recall@10 0.91 at 1M × 512-d (bench/bench_ann.py).

The index is derived data: the catalog's ``embeddings`` table holds every vector, so a missing,
stale or corrupt index file is repaired from it, never trusted over it. Labels are photo ids.
Vectors are L2-normalised, so inner product = cosine similarity.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import hnswlib
import numpy as np

from .compact_index import CompactIndex, partitions_for
from .errors import RetllmError

VectorChunks = Iterator[tuple[np.ndarray, np.ndarray]]
# Compact search probes max(32, 1/64 of the partitions): bench_ann at 1M × 512-d (4096 partitions), 64
# probes + rescoring gave recall@10 0.998 (256 probes: 0.999 at 3x the time); at 100k, 32 of 1024: 0.998.
NPROBE_SHARE = 64


class VectorIndex:
    """Exact numpy search for small libraries, HNSW above, compact codes + rescoring for big ones."""

    def __init__(
        self,
        path: str | Path,
        dim: int,
        *,
        M: int = 24,
        ef_construction: int = 200,
        ef_search: int = 256,
        exact_threshold: int = 100_000,
        compact_threshold: int | None = None,
        threads: int = 1,
    ):
        self.path = Path(path)
        self.meta_path = self.path.with_suffix(self.path.suffix + ".json")
        self.dim = dim
        self.M = M
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.exact_threshold = exact_threshold
        self.compact_threshold = exact_threshold if compact_threshold is None else compact_threshold
        self._compact: CompactIndex | None = None
        self._trained_for = 0  # library size the compact index's partitions were chosen for
        self.threads = max(1, threads)
        self._lock = threading.RLock()
        self._deleted: set[int] = set()
        self._active: set[int] = set()
        self._dense: tuple[np.ndarray, np.ndarray] | None = None
        self._dirty = False
        self.loaded_from_disk = False
        self.on_saved: Callable[[], None] | None = None  # called after each successful save
        # The owner's bookkeeping for other writers (see Library._refreshed): the catalog's data_version
        # this index last caught up with, and the identity (inode, size, mtime) of its file on disk then.
        self.seen_version: int | None = None
        self.disk_signature: tuple[int, int, int] | None = None
        self._index = self._load_or_new()

    # -- persistence -----------------------------------------------------------------------------
    def _new(self, capacity: int = 1024) -> hnswlib.Index:
        idx = hnswlib.Index(space="ip", dim=self.dim)
        idx.init_index(
            max_elements=capacity, ef_construction=self.ef_construction, M=self.M, allow_replace_deleted=True
        )
        idx.set_ef(self.ef_search)
        idx.set_num_threads(self.threads)
        return idx

    def _load_or_new(self) -> hnswlib.Index:
        if self.meta_path.exists():
            try:
                meta = json.loads(self.meta_path.read_text())
                if int(meta["dim"]) != self.dim:
                    raise ValueError("dimension changed")
                if meta.get("backend") == "compact":
                    return self._load_compact(meta)
                if "index_bytes" in meta and self.path.stat().st_size != int(meta["index_bytes"]):
                    raise ValueError("index file and sidecar do not belong together")
                idx = hnswlib.Index(space="ip", dim=self.dim)
                idx.load_index(
                    str(self.path), max_elements=int(meta.get("capacity", 0)), allow_replace_deleted=True
                )
                idx.set_ef(self.ef_search)
                idx.set_num_threads(self.threads)
                self._deleted = {int(x) for x in meta.get("deleted", [])}
                self._active = {int(x) for x in idx.get_ids_list()} - self._deleted
                self.loaded_from_disk = True
                self._index = idx
                if len(self._active) > self.compact_threshold:
                    self._to_compact()  # an index saved before compact indexes existed
                return self._index
            except Exception:  # a corrupt index is rebuilt from the catalog by reconcile()
                self._deleted, self._active, self._compact = set(), set(), None
        return self._new()

    def _load_compact(self, meta: dict) -> hnswlib.Index:
        self._compact = CompactIndex.load(self.path, self.dim, meta)
        labels = self._compact.row_label
        self._active = {int(x) for x in labels[labels >= 0]}
        self._trained_for = int(meta.get("trained_for", len(self._active)))
        self.loaded_from_disk = True
        return self._new()  # an empty placeholder: the compact index holds the vectors

    def _to_compact(self, chunk: int = 50_000) -> None:
        """Move every vector into a new compact index (the library grew past the threshold)."""
        labels = np.array(sorted(self._active), dtype=np.int64)

        def vectors(lab: np.ndarray) -> np.ndarray:
            if self._compact is not None:
                return self._compact.items(lab)
            return np.asarray(self._index.get_items(lab, return_type="numpy"), dtype=np.float32)

        n = len(labels)
        want = min(n, 40 * partitions_for(n))
        sample = np.sort(np.random.default_rng(0).choice(n, want, replace=False))
        compact = CompactIndex.trained(self.path, self.dim, vectors(labels[sample]), n, self.threads)
        for s in range(0, n, chunk):
            compact.add(labels[s : s + chunk], vectors(labels[s : s + chunk]))
        self._compact, self._trained_for = compact, n
        self._index, self._deleted, self._dense, self._dirty = self._new(), set(), None, True

    def save(self) -> None:
        """Write index + sidecar via temp files and rename, so a crash keeps the previous good pair."""
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp_meta = self.meta_path.with_name(self.meta_path.name + ".tmp")
            try:
                if self._compact is not None:
                    facts = self._compact.save()  # a new generation of files, named by the sidecar
                    meta = {"dim": self.dim, "backend": "compact", "count": len(self._active),
                            "trained_for": self._trained_for, **facts}  # fmt: skip
                    tmp_meta.write_text(json.dumps(meta))
                    with open(tmp_meta, "rb") as fh:
                        os.fsync(fh.fileno())
                    os.replace(tmp_meta, self.meta_path)  # the commit
                    self._compact.committed(facts)
                    with contextlib.suppress(OSError):
                        self.path.unlink()  # an hnswlib file from before the library grew
                else:
                    self._save_hnsw(tmp, tmp_meta)
            except (OSError, RuntimeError) as e:
                for f in (tmp, tmp_meta):
                    with contextlib.suppress(OSError):
                        f.unlink()
                why = getattr(e, "strerror", None) or str(e)
                if isinstance(e, OSError) and e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                    why = f"the library folder is read-only ({why})"
                elif isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                    why = f"the disk is full ({why})"
                raise RetllmError(
                    f"cannot save the search index {self.path}: {why}; the previous saved state is kept"
                ) from e
            self._dirty = False
            if self.on_saved is not None:
                self.on_saved()

    def _save_hnsw(self, tmp: Path, tmp_meta: Path) -> None:
        self._index.save_index(str(tmp))
        # hnswlib does not report short writes (disk full): check the size it meant to write.
        expected = self._index.index_file_size()
        if tmp.stat().st_size != expected:
            raise OSError(errno.ENOSPC, "short write (disk full?)")
        meta = {
            "dim": self.dim,
            "capacity": self._index.get_max_elements(),
            "count": len(self._active),
            "deleted": sorted(self._deleted),
            "index_bytes": expected,
        }
        tmp_meta.write_text(json.dumps(meta))
        for f in (tmp, tmp_meta):
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        os.replace(tmp_meta, self.meta_path)
        for f in self.path.parent.glob(f"{self.path.name}.[cs]*"):  # a compact index's, before a rebuild
            with contextlib.suppress(OSError):
                f.unlink()

    @property
    def dirty(self) -> bool:
        return self._dirty

    def mark_dirty(self) -> None:
        """Needs saving although no label changed (a label's vector was replaced from the catalog)."""
        self._dirty = True

    # -- mutation --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._active)

    def __contains__(self, label: int) -> bool:
        return int(label) in self._active

    def ids(self) -> set[int]:
        return set(self._active)

    def _ensure_capacity(self, extra: int) -> None:
        need = self._index.element_count + extra
        cap = self._index.get_max_elements()
        if need > cap:
            self._index.resize_index(max(need, cap * 2))

    def add(self, ids: Iterable[int], vectors: np.ndarray) -> None:
        """Add or replace vectors; re-adding a deleted label revives it."""
        ids = np.asarray(list(ids), dtype=np.int64)
        if ids.size == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        with self._lock:
            if self._compact is not None:
                self._compact.add(ids, vectors)
                self._active.update(int(i) for i in ids)
                self._dirty = True
                if len(self._active) > 4 * self._trained_for:
                    self._to_compact()  # partitions chosen for a 4x smaller library: choose again
                return
            revive = np.array([int(i) in self._deleted for i in ids])
            for label in ids[revive]:
                try:
                    self._index.unmark_deleted(int(label))
                except RuntimeError:
                    pass
                self._deleted.discard(int(label))
            existing = np.array([int(i) in self._active or revive[n] for n, i in enumerate(ids)])
            if existing.any():
                self._index.add_items(vectors[existing], ids[existing])
            fresh = ~existing
            if fresh.any():
                reuse = min(len(self._deleted), int(fresh.sum()))
                self._ensure_capacity(int(fresh.sum()) - reuse)
                self._index.add_items(vectors[fresh], ids[fresh], replace_deleted=bool(self._deleted))
                if self._deleted:
                    # Slots of deleted labels may have been reused: those labels are gone from the graph.
                    self._deleted &= {int(x) for x in self._index.get_ids_list()}
            self._active.update(int(i) for i in ids)
            self._dense = None
            self._dirty = True
            if len(self._active) > self.compact_threshold:
                self._to_compact()

    def remove(self, ids: Iterable[int]) -> int:
        removed = 0
        with self._lock:
            if self._compact is not None:
                gone = np.array([int(i) for i in ids if int(i) in self._active], dtype=np.int64)
                if gone.size:
                    self._compact.remove(gone)
                    self._active.difference_update(gone.tolist())
                    self._dirty = True
                return int(gone.size)
            for label in ids:
                label = int(label)
                if label not in self._active:
                    continue
                try:
                    self._index.mark_deleted(label)
                except RuntimeError:
                    pass
                self._active.discard(label)
                self._deleted.add(label)
                removed += 1
            if removed:
                self._dense = None
                self._dirty = True
        return removed

    def rebuild(self, chunks: VectorChunks, expected: int = 0) -> None:
        """Start over from the catalog's vectors (the `rebuild` command and corrupt-file repair)."""
        with self._lock:
            self._active, self._deleted, self._compact, self._dense = set(), set(), None, None
            if expected > self.compact_threshold:
                self._index = self._new()
                self._rebuild_compact(chunks, expected)
            else:
                self._index = self._new(max(1024, expected))
                for ids, vecs in chunks:
                    self.add(ids, vecs)
            self._dirty = True

    def _rebuild_compact(self, chunks: VectorChunks, expected: int) -> None:
        """Train the partitions on the first vectors (up to ~40 per partition), then stream the rest."""
        want = min(expected, 40 * partitions_for(expected))
        held: list[tuple[np.ndarray, np.ndarray]] = []
        got = 0
        for ids, vecs in chunks:
            ids = np.asarray(ids, dtype=np.int64)
            vecs = np.ascontiguousarray(vecs, dtype=np.float32).reshape(len(ids), self.dim)
            if self._compact is None:
                held.append((ids, vecs))
                got += len(ids)
                if got < want:
                    continue
                sample = np.concatenate([v for _, v in held])
                self._compact = CompactIndex.trained(self.path, self.dim, sample, expected, self.threads)
                self._trained_for = expected
                for i, v in held:
                    self.add(i, v)
                held = []
            else:
                self.add(ids, vecs)
        if held:  # fewer vectors than expected: train on what there is, if enough for an index
            sample = np.concatenate([v for _, v in held])
            self._compact = CompactIndex.trained(self.path, self.dim, sample, len(sample), self.threads)
            self._trained_for = len(sample)
            for i, v in held:
                self.add(i, v)

    def reconcile(self, catalog_ids: set[int], fetch: Callable[[list[int]], VectorChunks]) -> tuple[int, int]:
        """Make the index hold exactly ``catalog_ids``: add the missing, delete the ghosts."""
        with self._lock:
            missing = sorted(catalog_ids - self._active)
            ghosts = self._active - catalog_ids
            if len(missing) > max(1000, len(catalog_ids) // 2) or not self.loaded_from_disk and missing:
                self.rebuild(fetch(sorted(catalog_ids)), expected=len(catalog_ids))
                return len(missing), len(ghosts)
            removed = self.remove(ghosts)
            for ids, vecs in fetch(missing):
                self.add(ids, vecs)
            return len(missing), removed

    # -- search ----------------------------------------------------------------------------------
    def _dense_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        if self._dense is None:
            labels = np.array(sorted(self._active), dtype=np.int64)
            if labels.size:
                mat = np.asarray(self._index.get_items(labels, return_type="numpy"), dtype=np.float32)
            else:
                mat = np.zeros((0, self.dim), dtype=np.float32)
            self._dense = (labels, mat)
        return self._dense

    def search(
        self, query: np.ndarray, k: int, allowed: set[int] | None = None, exact: bool | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (ids, cosine scores), best first; ``allowed`` restricts the candidates (filters)."""
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, self.dim)
        with self._lock:
            n = len(self._active) if allowed is None else len(allowed & self._active)
            k = min(k, n)
            if k <= 0:
                return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
            if self._compact is not None:
                nprobe = max(32, self._compact.ivf.nlist // NPROBE_SHARE)
                wanted = None if allowed is None else np.fromiter(allowed & self._active, dtype=np.int64)
                if exact:
                    wanted = np.fromiter(self._active, dtype=np.int64) if wanted is None else wanted
                    return self._compact.search_exact(q[0], k, wanted)
                return self._compact.search(q[0], k, wanted, nprobe)
            use_exact = exact if exact is not None else n <= self.exact_threshold
            if use_exact:
                labels, mat = self._dense_matrix()
                if allowed is not None:
                    mask = np.isin(labels, np.fromiter(allowed, dtype=np.int64))
                    labels, mat = labels[mask], mat[mask]
                scores = mat @ q[0]
                top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
                top = top[np.argsort(-scores[top], kind="stable")]
                return labels[top], scores[top]
            # Recall falls as the graph grows; measured on clustered 512-d vectors (bench/bench_query.py):
            # ef 256 gives recall@10 0.75 at 300k, ef 1024 gives 0.98 at ~4 ms. So ef grows with the library.
            self._index.set_ef(min(2048, max(self.ef_search, k, n // 300)))
            filt = (lambda label: label in allowed) if allowed is not None else None
            labels, dist = self._index.knn_query(q, k=k, filter=filt)
            return labels[0].astype(np.int64), (1.0 - dist[0]).astype(np.float32)
