"""The catalog's vectors: one CLIP embedding per photo and model, and the journal of vectors the saved
hnswlib index does not have yet (the index is derived from these rows and rebuilt from them)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .connection import CatalogConnection


class VectorTables(CatalogConnection):
    """Embeddings per (photo, model) and the index journal."""

    def put_embedding(self, photo_id: int, model: str, vector: np.ndarray) -> None:
        v = np.ascontiguousarray(vector, dtype=np.float32)
        self._conn.execute(
            "INSERT OR REPLACE INTO embeddings (photo_id, model, dim, vector) VALUES (?, ?, ?, ?)",
            (photo_id, model, int(v.shape[0]), v.tobytes()),
        )

    def put_embeddings(self, ids: Iterable[int], model: str, vectors: np.ndarray) -> None:
        """Bulk form of ``put_embedding`` (one row of ``vectors`` per id)."""
        v = np.ascontiguousarray(vectors, dtype=np.float32)
        rows = ((int(i), model, int(v.shape[1]), v[n].tobytes()) for n, i in enumerate(ids))
        self._conn.executemany(
            "INSERT OR REPLACE INTO embeddings (photo_id, model, dim, vector) VALUES (?, ?, ?, ?)", rows
        )

    def embedding(self, photo_id: int, model: str) -> np.ndarray | None:
        r = self._conn.execute(
            "SELECT vector FROM embeddings WHERE photo_id = ? AND model = ?", (photo_id, model)
        ).fetchone()
        return np.frombuffer(r[0], dtype=np.float32).copy() if r else None

    def embedding_ids(self, model: str) -> set[int]:
        return {r[0] for r in self._conn.execute("SELECT photo_id FROM embeddings WHERE model = ?", (model,))}

    def iter_embeddings(self, model: str, ids: Iterable[int] | None = None, batch: int = 4096):
        """Yield (ids array, vectors matrix) chunks: rebuilding the index never loads everything at once."""
        if ids is None:
            cur = self._conn.execute("SELECT photo_id, vector FROM embeddings WHERE model = ?", (model,))
            rows_iter: Iterable = iter(lambda: cur.fetchmany(batch), [])
        else:
            id_list = list(ids)

            def gen():
                for s in range(0, len(id_list), 900):
                    chunk = id_list[s : s + 900]
                    q = f"SELECT photo_id, vector FROM embeddings WHERE model = ? AND photo_id IN ({','.join('?' * len(chunk))})"
                    yield self._conn.execute(q, [model, *chunk]).fetchall()

            rows_iter = gen()
        for rows in rows_iter:
            if not rows:
                continue
            yield (
                np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)),
                np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows]),
            )

    def journal_add(self, ids: Iterable[int], model: str) -> None:
        """Note vectors the on-disk index does not have yet (call inside the transaction that writes them)."""
        self._conn.executemany(
            "INSERT OR IGNORE INTO index_journal (photo_id, model) VALUES (?, ?)",
            [(int(i), model) for i in ids],
        )

    def journal_ids(self, model: str) -> set[int]:
        q = "SELECT photo_id FROM index_journal WHERE model = ?"
        return {r[0] for r in self._conn.execute(q, (model,))}

    def clear_journal(self, model: str) -> None:
        with self.transaction():  # a full disk here is the same clear error as anywhere else
            self._conn.execute("DELETE FROM index_journal WHERE model = ?", (model,))

    def embedding_models(self) -> dict[str, int]:
        return dict(self._conn.execute("SELECT model, count(*) FROM embeddings GROUP BY model").fetchall())

    def embedding_dims(self, model: str) -> set[int]:
        return {
            r[0] for r in self._conn.execute("SELECT DISTINCT dim FROM embeddings WHERE model = ?", (model,))
        }

    def rename_embedding_model(self, old: str, new: str) -> int:
        """Move ``old``'s vectors (and index journal) to the key ``new`` in one transaction; returns how many."""
        with self.transaction():
            n = self._conn.execute("UPDATE embeddings SET model = ? WHERE model = ?", (new, old)).rowcount
            self._conn.execute("UPDATE OR IGNORE index_journal SET model = ? WHERE model = ?", (new, old))
            self._conn.execute("DELETE FROM index_journal WHERE model = ?", (old,))
        return n

    def embeddings_complete(self, model: str) -> bool:
        """Every online photo has a ``model`` vector (offline photos cannot be embedded now)."""
        have = self._conn.execute("SELECT count(*) FROM embeddings WHERE model = ?", (model,)).fetchone()[0]
        if have >= self._conn.execute("SELECT count(*) FROM photos").fetchone()[0]:
            return True
        q = (
            "SELECT 1 FROM photos p WHERE p.status = 'ok' AND NOT EXISTS "
            "(SELECT 1 FROM embeddings e WHERE e.photo_id = p.id AND e.model = ?) LIMIT 1"
        )
        return self._conn.execute(q, (model,)).fetchone() is None

    def ids_missing_embedding(self, model: str) -> list[int]:
        q = "SELECT id FROM photos WHERE id NOT IN (SELECT photo_id FROM embeddings WHERE model = ?)"
        return [r[0] for r in self._conn.execute(q, (model,))]
