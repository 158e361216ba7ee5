"""The catalog's text: what the OCR pass read in each photo's content, and its full-text search."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable

from .connection import CatalogConnection


class TextTables(CatalogConnection):
    """``photo_text`` by content hash, its two FTS5 indexes (words, trigrams) and the reading failures."""

    def text_pending(self, limit: int | None = None) -> list[tuple[str, str]]:
        """(hash, path) of online photos whose content has not been read yet (one path per content)."""
        q = (
            "SELECT p.hash, min(p.path) FROM photos p WHERE p.status = 'ok' AND p.hash != '' "
            "AND NOT EXISTS (SELECT 1 FROM photo_text t WHERE t.hash = p.hash) "
            "AND NOT EXISTS (SELECT 1 FROM text_failures f WHERE f.hash = p.hash) "
            "GROUP BY p.hash ORDER BY min(p.id)"
        )
        if limit:
            q += f" LIMIT {int(limit)}"
        return [(r[0], r[1]) for r in self._conn.execute(q)]

    def put_text(self, content_hash: str, model: str, text: str, squashed: str, lines_json: str) -> None:
        """Store one photo's text (call inside a transaction; the FTS indexes follow by trigger)."""
        self._conn.execute("DELETE FROM photo_text WHERE hash = ?", (content_hash,))
        self._conn.execute(
            "INSERT INTO photo_text (hash, model, has_text, text, squashed, lines, read_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (content_hash, model, int(bool(text.strip())), text, squashed, lines_json, time.time()),
        )
        self._conn.execute("DELETE FROM text_failures WHERE hash = ?", (content_hash,))

    def record_text_failure(self, content_hash: str, path: str, reason: str) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO text_failures (hash, path, reason, failed_at) VALUES (?, ?, ?, ?)",
            (content_hash, path, reason, time.time()),
        )

    def prune_texts(self) -> int:
        """Forget text and failures of content no photo has any more (deleted or changed photos)."""
        with self.transaction():
            n = self._conn.execute(
                "DELETE FROM photo_text WHERE hash NOT IN (SELECT hash FROM photos)"
            ).rowcount
            self._conn.execute("DELETE FROM text_failures WHERE hash NOT IN (SELECT hash FROM photos)")
        return n

    def text_counts(self) -> dict[str, int]:
        """Photos read, photos holding text, photos whose reading failed, photos still to read."""
        row = self._conn.execute(
            "SELECT count(t.hash), coalesce(sum(t.has_text), 0), count(f.hash), "
            "sum(CASE WHEN t.hash IS NULL AND f.hash IS NULL AND p.status = 'ok' THEN 1 ELSE 0 END) "
            "FROM photos p LEFT JOIN photo_text t ON t.hash = p.hash "
            "LEFT JOIN text_failures f ON f.hash = p.hash"
        ).fetchone()
        return {"read": row[0], "with_text": row[1], "failed": row[2], "pending": row[3] or 0}

    def text_failures(self, limit: int | None = None) -> list[tuple[str, str]]:
        q = "SELECT path, reason FROM text_failures ORDER BY path"
        if limit:
            q += f" LIMIT {int(limit)}"
        return [(r[0], r[1]) for r in self._conn.execute(q)]

    def search_text(
        self, fts_query: str, substrings: Iterable[str] = (), limit: int = 200
    ) -> list[tuple[str, float, str]]:
        """(hash, bm25 — lower is better, text) of contents matching an FTS5 query, best first; then
        contents whose squashed text contains one of ``substrings`` (bm25 0.0)."""
        q = (
            "SELECT t.hash, bm25(photo_text_fts), t.text FROM photo_text_fts "
            "JOIN photo_text t ON t.rowid = photo_text_fts.rowid "
            "WHERE photo_text_fts MATCH ? ORDER BY bm25(photo_text_fts) LIMIT ?"
        )
        out: dict[str, tuple[str, float, str]] = {}
        try:
            for r in self._conn.execute(q, (fts_query, int(limit))):
                out[r[0]] = (r[0], float(r[1]), r[2])
        except sqlite3.OperationalError:  # a query FTS5 cannot parse: no text matches, never an error
            pass
        subs = [x for x in substrings if len(x) >= 3]
        if subs:
            sub_query = " OR ".join('"' + x.replace('"', "") + '"' for x in subs)
            q = (
                "SELECT t.hash, t.text FROM photo_text_sub JOIN photo_text t ON t.rowid = photo_text_sub.rowid "
                "WHERE photo_text_sub MATCH ? LIMIT ?"
            )
            try:
                for r in self._conn.execute(q, (sub_query, int(limit))):
                    out.setdefault(r[0], (r[0], 0.0, r[1]))
            except sqlite3.OperationalError:
                pass
        return list(out.values())

    def texts(self, hashes: Iterable[str]) -> dict[str, tuple[str, str]]:
        """hash -> (text, lines JSON) for the given contents (those that were read)."""
        hashes = list(hashes)
        out: dict[str, tuple[str, str]] = {}
        for start in range(0, len(hashes), 900):
            chunk = hashes[start : start + 900]
            q = f"SELECT hash, text, lines FROM photo_text WHERE hash IN ({','.join('?' * len(chunk))})"
            for r in self._conn.execute(q, chunk):
                out[r[0]] = (r[1], r[2])
        return out
