"""Compact vectors for big libraries: candidates from 8-bit codes (faiss IVF), exact fp16 rescoring.

Why: hnswlib keeps float32 vectors plus its graph in memory — 2.3 GB at 1M × 512-d. Here memory holds one
byte per dimension (512 MB at 1M × 512-d); the best few hundred candidates are rescored against fp16 copies
read from a memory-mapped, append-only file, which restores the order the 8-bit codes blur.
bench/bench_ann.py measured the settings (partitions ≈ 4·√n, probes, candidates).

Files next to the index path P, named by generation: P.c<G>.faiss (faiss index; its ids are row numbers),
P.c<G>.rows.npy (row → photo id, -1 for a replaced or deleted row) and P.s<S>.f16 (fp16 rows, append-only).
A save writes a new generation, then the owner's sidecar names it (the one atomic commit); the previous
generation stays for readers that are just opening it. Rows appended past the sidecar's count belong to a
save that never committed: readers ignore them, the next save overwrites them. Opening never writes.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import faiss

CANDIDATES = 200  # rescored exactly; bench_ann: 200 lifts recall@10 from ~0.99 (codes alone) to 0.999
EXACT_FILTER = 20_000  # a filter this small is searched exactly over its fp16 rows


def partitions_for(n: int) -> int:
    return int(2 ** round(np.log2(4 * np.sqrt(max(n, 1024)))))


def _faiss():
    """faiss, imported on first use: only big libraries need it, and it takes ~0.5 s to import."""
    import faiss

    return faiss


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


class CompactIndex:
    """IVF over 8-bit scalar-quantised codes, labels mapped to rows of an fp16 rescoring file."""

    def __init__(
        self,
        path: Path,
        dim: int,
        ivf: faiss.Index,
        row_label: np.ndarray,
        disk_rows: int,
        gen: int = 0,
        store_gen: int = 0,
    ):
        self.path = Path(path)
        self.gen, self.store_gen = gen, store_gen
        self.dim = dim
        self.ivf = ivf
        self.row_label = row_label  # row → label, -1 when dead
        self.disk_rows = disk_rows  # rows of the fp16 file that belong to this index
        self._pending: list[np.ndarray] = []  # fp16 rows not yet appended to the file
        self._fresh = disk_rows == 0  # the file must be written from scratch (a rebuild)
        self._store = self._map()

    # -- creation -------------------------------------------------------------------------------------
    @classmethod
    def trained(
        cls, path: Path, dim: int, sample: np.ndarray, expected: int, threads: int = 1
    ) -> CompactIndex:
        """An empty index whose partitions come from ``sample`` (vectors like the ones it will hold)."""
        nlist = min(partitions_for(expected), max(1, len(sample) // 39))
        fx = _faiss()
        fx.omp_set_num_threads(max(1, threads))  # training and adding; one query uses one thread anyway
        ivf = fx.IndexIVFScalarQuantizer(
            fx.IndexFlatIP(dim), dim, nlist, fx.ScalarQuantizer.QT_8bit, fx.METRIC_INNER_PRODUCT
        )
        ivf.train(np.ascontiguousarray(sample, dtype=np.float32))
        return cls(path, dim, ivf, np.zeros(0, dtype=np.int64), 0)

    def file(self, kind: str, gen: int | None = None) -> Path:
        if kind == "store":
            return self.path.with_name(f"{self.path.name}.s{self.store_gen if gen is None else gen}.f16")
        g = self.gen if gen is None else gen
        return self.path.with_name(f"{self.path.name}.c{g}.{'faiss' if kind == 'index' else 'rows.npy'}")

    @property
    def store_path(self) -> Path:
        return self.file("store")

    @classmethod
    def load(cls, path: Path, dim: int, meta: dict) -> CompactIndex:
        """Open the generation ``meta`` (the owner's sidecar) names; raises when the files don't match it."""
        rows, gen, store_gen = int(meta["rows"]), int(meta["gen"]), int(meta["store_gen"])
        probe = cls.__new__(cls)
        probe.path, probe.gen, probe.store_gen = Path(path), gen, store_gen
        index_file, rows_file, store = probe.file("index"), probe.file("rows"), probe.file("store")
        if index_file.stat().st_size != int(meta["index_bytes"]):
            raise ValueError("compact index file and sidecar do not belong together")
        if rows_file.stat().st_size != int(meta["rows_bytes"]):
            raise ValueError("compact row table and sidecar do not belong together")
        ivf = _faiss().read_index(str(index_file))
        row_label = np.load(rows_file)
        if ivf.d != dim or len(row_label) != rows or store.stat().st_size < rows * dim * 2:
            raise ValueError("compact index files do not belong together")
        return cls(path, dim, ivf, row_label, rows, gen, store_gen)

    def _map(self) -> np.ndarray | None:
        if self.disk_rows == 0 or self._fresh:
            return None
        return np.memmap(self.store_path, dtype=np.float16, mode="r", shape=(self.disk_rows, self.dim))

    # -- mutation -------------------------------------------------------------------------------------
    def _rows_of(self, labels: np.ndarray) -> np.ndarray:
        return np.flatnonzero(np.isin(self.row_label, labels)).astype(np.int64)

    def remove(self, labels: np.ndarray) -> None:
        rows = self._rows_of(labels)
        if rows.size:
            self.ivf.remove_ids(_faiss().IDSelectorBatch(rows))
            self.row_label[rows] = -1

    def add(self, labels: np.ndarray, vectors: np.ndarray) -> None:
        """Add or replace: a replaced label's old row is dropped, its new vector gets a new row."""
        self.remove(labels)
        first = len(self.row_label)
        rows = np.arange(first, first + len(labels), dtype=np.int64)
        self.ivf.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), rows)
        self.row_label = np.concatenate([self.row_label, labels.astype(np.int64)])
        self._pending.append(vectors.astype(np.float16))

    # -- reading --------------------------------------------------------------------------------------
    def _vectors(self, rows: np.ndarray) -> np.ndarray:
        """fp16 rows as float32; ``rows`` sorted (sequential reads of the mapped file)."""
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        on_disk = rows < self.disk_rows if self._store is not None else np.zeros(len(rows), dtype=bool)
        if on_disk.any():
            out[on_disk] = self._store[rows[on_disk]]
        if not on_disk.all():
            base = self.disk_rows if self._store is not None else 0
            pending = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
            self._pending = [pending]
            out[~on_disk] = pending[rows[~on_disk] - base]
        return out

    def search(
        self, q: np.ndarray, k: int, allowed: np.ndarray | None, nprobe: int
    ) -> tuple[np.ndarray, np.ndarray]:
        if allowed is not None:
            rows = self._rows_of(allowed)
            if len(rows) <= EXACT_FILTER:
                return self._best(rows, q, k)
            # The probes must still reach k allowed photos: probe more as the filter gets narrower.
            share = len(rows) / max(1, self.ivf.ntotal)
            nprobe = min(self.ivf.nlist, int(np.ceil(nprobe / max(share, 1e-9))))
            fx = _faiss()
            params = fx.SearchParametersIVF(nprobe=nprobe, sel=fx.IDSelectorBatch(rows))
        else:
            params = _faiss().SearchParametersIVF(nprobe=min(nprobe, self.ivf.nlist))
        _, found = self.ivf.search(q.reshape(1, -1), max(k, CANDIDATES), params=params)
        return self._best(np.sort(found[0][found[0] >= 0]), q, k)

    def search_exact(self, q: np.ndarray, k: int, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact (fp16) top-k over ``labels``, in blocks so memory stays bounded."""
        rows = self._rows_of(labels)
        best_ids, best_scores = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        for s in range(0, len(rows), 100_000):
            ids, scores = self._best(rows[s : s + 100_000], q, k)
            best_ids, best_scores = np.concatenate([best_ids, ids]), np.concatenate([best_scores, scores])
        top = np.argsort(-best_scores, kind="stable")[:k]
        return best_ids[top], best_scores[top]

    def _best(self, rows: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = self._vectors(rows) @ q
        k = min(k, len(rows))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(rows) else np.arange(len(rows))
        top = top[np.argsort(-scores[top], kind="stable")]
        return self.row_label[rows[top]], scores[top].astype(np.float32)

    def items(self, labels: np.ndarray) -> np.ndarray:
        """The stored (fp16-precision) vectors of ``labels``, in that order."""
        order = np.argsort(self.row_label)
        live = order[self.row_label[order] >= 0]
        pos = np.searchsorted(self.row_label[live], labels)
        rows = live[np.clip(pos, 0, len(live) - 1)]
        if not np.array_equal(self.row_label[rows], labels):
            raise KeyError("label not in the index")
        return self._vectors(np.asarray(rows, dtype=np.int64))

    # -- persistence ----------------------------------------------------------------------------------
    def save(self) -> dict:
        """Write the next generation (rows appended, index and row table new); returns the sidecar facts.

        Nothing is committed until the caller replaces its sidecar with these facts.
        """
        rows = len(self.row_label)
        store_gen = self.store_gen + 1 if self._fresh else self.store_gen
        store = self.file("store", store_gen)
        index_file, rows_file = self.file("index", self.gen + 1), self.file("rows", self.gen + 1)
        try:
            with open(store, "wb" if self._fresh else "r+b") as fh:
                fh.truncate(0 if self._fresh else self.disk_rows * self.dim * 2)  # an uncommitted tail
                fh.seek(0, os.SEEK_END)
                for block in self._pending:
                    fh.write(block.tobytes())
            if store.stat().st_size != rows * self.dim * 2:
                raise OSError(28, "short write (disk full?)")
            _faiss().write_index(self.ivf, str(index_file))
            np.save(rows_file, self.row_label)
            for f in (store, index_file, rows_file):
                _fsync(f)
        except BaseException:
            for f in [index_file, rows_file] + ([store] if self._fresh else []):
                with contextlib.suppress(OSError):
                    f.unlink()
            raise
        return {
            "rows": rows,
            "gen": self.gen + 1,
            "store_gen": store_gen,
            "index_bytes": index_file.stat().st_size,
            "rows_bytes": rows_file.stat().st_size,
        }

    def committed(self, facts: dict) -> None:
        """The sidecar now names ``facts``' generation: use it, drop generations older than the last."""
        self.gen, self.store_gen = int(facts["gen"]), int(facts["store_gen"])
        self._pending, self._fresh, self.disk_rows = [], False, int(facts["rows"])
        self._store = self._map() if self.disk_rows else None
        keep = {self.file("index"), self.file("rows"), self.store_path}
        keep |= {self.file("index", self.gen - 1), self.file("rows", self.gen - 1)}
        if self.store_gen > 0:
            keep.add(self.file("store", self.store_gen - 1))
        for f in self.path.parent.glob(f"{self.path.name}.[cs]*"):
            if f not in keep and not f.name.endswith(".json"):
                with contextlib.suppress(OSError):
                    f.unlink()
