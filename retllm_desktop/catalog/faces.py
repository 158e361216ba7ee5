"""The catalog's faces and people: detected faces per content hash, people (clusters), the user's corrections.

Faces are stored per content hash like the text pass's words, so a moved or copied photo keeps its faces
and a changed photo is scanned again. A face too small to recognise has no vector and never joins a person.
People ids are AUTOINCREMENT: an id is never reused, so a person keeps its number for good. ``by_user``
marks faces the user placed (merge, move) and ``face_rejects`` the faces the user said are not a person: the
machine never moves a placed face, and never puts a face back into a person it was taken out of.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .connection import CatalogConnection


@dataclass
class FaceRow:
    id: int
    hash: str
    box: tuple[float, float, float, float]  # fractions of the photo's width and height
    score: float
    size_px: int
    person_id: int | None
    person_name: str | None
    recognisable: bool


@dataclass
class PersonRow:
    id: int
    name: str | None
    hidden: bool
    faces: int
    photos: int
    cover_face: int | None  # the face shown for the person (its largest, most confident one)


def _vec(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32)


def _chunks(ids: list, n: int = 900) -> Iterable[list]:
    for s in range(0, len(ids), n):
        yield ids[s : s + n]


class FaceTables(CatalogConnection):
    """Faces by content hash, people, the user's corrections and the face pass's failures."""

    # -- the face pass ---------------------------------------------------------------------------
    def faces_pending(self, limit: int | None = None) -> list[tuple[str, str]]:
        """(hash, path) of online photos whose content has not been scanned for faces (one path per content)."""
        q = (
            "SELECT p.hash, min(p.path) FROM photos p WHERE p.status = 'ok' AND p.hash != '' "
            "AND NOT EXISTS (SELECT 1 FROM face_scans s WHERE s.hash = p.hash) "
            "AND NOT EXISTS (SELECT 1 FROM face_failures f WHERE f.hash = p.hash) "
            "GROUP BY p.hash ORDER BY min(p.id)"
        )
        if limit:
            q += f" LIMIT {int(limit)}"
        return [(r[0], r[1]) for r in self._conn.execute(q)]

    def put_faces(self, content_hash: str, model: str, faces: Iterable[Any]) -> int:
        """Store one photo's faces (``DetectedFace``-like; call inside a transaction). Returns how many."""
        self._conn.execute("DELETE FROM faces WHERE hash = ?", (content_hash,))
        rows = []
        for f in faces:
            emb = None if f.embedding is None else np.ascontiguousarray(f.embedding, np.float32).tobytes()
            rows.append((content_hash, *(float(x) for x in f.box), float(f.score), int(f.size_px), emb))
        self._conn.executemany(
            "INSERT INTO faces (hash, x0, y0, x1, y1, score, size_px, embedding) VALUES (?,?,?,?,?,?,?,?)",
            rows,
        )
        self._conn.execute(
            "INSERT OR REPLACE INTO face_scans (hash, model, faces, scanned_at) VALUES (?, ?, ?, ?)",
            (content_hash, model, len(rows), time.time()),
        )
        self._conn.execute("DELETE FROM face_failures WHERE hash = ?", (content_hash,))
        return len(rows)

    @staticmethod
    def _other_recipe(recipe: str) -> tuple[str, str]:
        """SQL condition on ``s.model`` (a scan made by another recipe than ``recipe``) and its argument."""
        like = recipe.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"
        return "s.model NOT LIKE ? ESCAPE '\\'", like

    def adopt_faceless_scans(self, recipe: str) -> None:
        """Scans of another recipe without a recognisable face take ``recipe``: they have nothing to remake."""
        other, like = self._other_recipe(recipe)
        with self.transaction():
            self._conn.execute(
                "UPDATE face_scans SET model = ? || '/' || substr(model, instr(model, '/') + 1) "
                f"WHERE hash IN (SELECT s.hash FROM face_scans s WHERE {other} AND NOT EXISTS "
                "(SELECT 1 FROM faces f WHERE f.hash = s.hash AND f.embedding IS NOT NULL))",
                (recipe, like),
            )

    def faces_outdated(self, recipe: str) -> list[tuple[str, str]]:
        """(hash, path) of online photos whose face vectors were made by another recipe than ``recipe``."""
        other, like = self._other_recipe(recipe)
        q = (
            "SELECT p.hash, min(p.path) FROM photos p JOIN face_scans s ON s.hash = p.hash "
            f"WHERE p.status = 'ok' AND {other} GROUP BY p.hash ORDER BY min(p.id)"
        )
        return [(r[0], r[1]) for r in self._conn.execute(q, (like,))]

    def recognisable_faces(self, content_hash: str) -> list[tuple[int, tuple[float, float, float, float]]]:
        """(face id, box) of a photo's faces that have a vector."""
        rows = self._conn.execute(
            "SELECT id, x0, y0, x1, y1 FROM faces WHERE hash = ? AND embedding IS NOT NULL ORDER BY id",
            (content_hash,),
        )
        return [(int(r[0]), (float(r[1]), float(r[2]), float(r[3]), float(r[4]))) for r in rows]

    def put_face_vectors(self, content_hash: str, key: str, vectors: Iterable[tuple[int, Any]]) -> int:
        """New vectors for faces already stored (call inside a transaction): boxes, people, the user's
        corrections stay; the scan takes ``key``. Returns how many faces changed."""
        n = 0
        for face_id, emb in vectors:
            blob = np.ascontiguousarray(emb, np.float32).tobytes()
            n += self._conn.execute(
                "UPDATE faces SET embedding = ? WHERE id = ? AND hash = ?", (blob, int(face_id), content_hash)
            ).rowcount
        self._conn.execute("UPDATE face_scans SET model = ? WHERE hash = ?", (key, content_hash))
        return n

    def record_face_failure(self, content_hash: str, path: str, reason: str) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO face_failures (hash, path, reason, failed_at) VALUES (?, ?, ?, ?)",
            (content_hash, path, reason, time.time()),
        )

    def prune_faces(self) -> int:
        """Forget faces of content no photo has any more, and unnamed people left without faces.

        A named person without faces stays (with the centroid of the faces it had), so the photos coming
        back (a folder re-added) rejoin their name."""
        with self.transaction():
            gone = "SELECT hash FROM face_scans WHERE hash NOT IN (SELECT hash FROM photos)"
            n = self._conn.execute(f"DELETE FROM faces WHERE hash IN ({gone})").rowcount
            self._conn.execute("DELETE FROM face_scans WHERE hash NOT IN (SELECT hash FROM photos)")
            self._conn.execute("DELETE FROM face_failures WHERE hash NOT IN (SELECT hash FROM photos)")
            self._conn.execute(
                "DELETE FROM people WHERE name IS NULL AND id NOT IN "
                "(SELECT person_id FROM faces WHERE person_id IS NOT NULL)"
            )
        return n

    def face_counts(self) -> dict[str, int]:
        """Photos scanned, faces found, recognisable faces, people (2+ faces, shown), named, failed, pending."""
        c = self._conn
        scanned = c.execute(
            "SELECT count(DISTINCT p.hash) FROM photos p JOIN face_scans s ON s.hash = p.hash"
        ).fetchone()[0]
        faces, usable = c.execute(
            "SELECT count(*), count(embedding) FROM faces WHERE hash IN (SELECT hash FROM photos)"
        ).fetchone()
        people, named = c.execute(
            "SELECT count(*), count(name) FROM (SELECT p.id, p.name FROM people p JOIN faces f ON f.person_id = p.id "
            "WHERE p.hidden = 0 GROUP BY p.id HAVING count(*) >= 2)"
        ).fetchone()
        failed = c.execute(
            "SELECT count(*) FROM face_failures WHERE hash IN (SELECT hash FROM photos)"
        ).fetchone()[0]
        pending = c.execute(
            "SELECT count(DISTINCT p.hash) FROM photos p WHERE p.status = 'ok' AND p.hash != '' "
            "AND NOT EXISTS (SELECT 1 FROM face_scans s WHERE s.hash = p.hash) "
            "AND NOT EXISTS (SELECT 1 FROM face_failures f WHERE f.hash = p.hash)"
        ).fetchone()[0]
        return {
            "scanned": scanned,
            "faces": faces,
            "recognisable": usable,
            "people": people,
            "named": named,
            "failed": failed,
            "pending": pending,
        }

    def face_failures(self, limit: int | None = None) -> list[tuple[str, str]]:
        q = "SELECT path, reason FROM face_failures ORDER BY path"
        if limit:
            q += f" LIMIT {int(limit)}"
        return [(r[0], r[1]) for r in self._conn.execute(q)]

    # -- clustering inputs and outputs -----------------------------------------------------------
    def face_vectors(self, assigned: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(face ids, person ids — -1 when none, vectors) of recognisable faces with (or without) a person."""
        q = (
            "SELECT id, coalesce(person_id, -1), embedding FROM faces WHERE embedding IS NOT NULL AND person_id IS "
            + ("NOT NULL" if assigned else "NULL")
            + " ORDER BY id"
        )
        rows = self._conn.execute(q).fetchall()
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 128), np.float32)
        return (
            np.fromiter((r[0] for r in rows), np.int64, len(rows)),
            np.fromiter((r[1] for r in rows), np.int64, len(rows)),
            np.stack([_vec(r[2]) for r in rows]),
        )

    def face_rejects(self) -> set[tuple[int, int]]:
        return {(r[0], r[1]) for r in self._conn.execute("SELECT face_id, person_id FROM face_rejects")}

    def faceless_people_centroids(self) -> tuple[np.ndarray, np.ndarray]:
        """(person ids, centroids) of named people whose faces are all gone (their photos left the library)."""
        rows = self._conn.execute(
            "SELECT id, centroid FROM people WHERE centroid IS NOT NULL AND name IS NOT NULL AND id NOT IN "
            "(SELECT person_id FROM faces WHERE person_id IS NOT NULL)"
        ).fetchall()
        if not rows:
            return np.zeros(0, np.int64), np.zeros((0, 128), np.float32)
        return np.array([r[0] for r in rows], np.int64), np.stack([_vec(r[1]) for r in rows])

    def assign_faces(self, face_ids: Iterable[int], person_id: int, by_user: bool = False) -> None:
        """Put faces into a person (call inside a transaction)."""
        self._conn.executemany(
            "UPDATE faces SET person_id = ?, by_user = ? WHERE id = ?",
            [(int(person_id), int(by_user), int(f)) for f in face_ids],
        )

    def create_person(self, name: str | None = None, folded: str | None = None) -> int:
        """A new person (call inside a transaction); ids are never reused."""
        now = time.time()
        cur = self._conn.execute(
            "INSERT INTO people (name, folded, created_at, updated_at) VALUES (?, ?, ?, ?)",
            (name, folded, now, now),
        )
        return int(cur.lastrowid)

    def update_centroids(self, person_ids: Iterable[int] | None = None) -> None:
        """Store each person's mean face vector (call inside a transaction)."""
        ids = (
            list(person_ids)
            if person_ids is not None
            else [r[0] for r in self._conn.execute("SELECT id FROM people")]
        )
        for pid in ids:
            rows = self._conn.execute(
                "SELECT embedding FROM faces WHERE person_id = ? AND embedding IS NOT NULL", (int(pid),)
            ).fetchall()
            if rows:
                c = np.mean(np.stack([_vec(r[0]) for r in rows]), axis=0).astype(np.float32)
                self._conn.execute("UPDATE people SET centroid = ? WHERE id = ?", (c.tobytes(), int(pid)))

    # -- people ----------------------------------------------------------------------------------
    def people(self, min_faces: int = 1, include_hidden: bool = False) -> list[PersonRow]:
        """People with at least ``min_faces`` faces in the library: named first (by name), then by size."""
        q = (
            "SELECT p.id, p.name, p.hidden, count(f.id), count(DISTINCT f.hash) FROM people p "
            "JOIN faces f ON f.person_id = p.id JOIN (SELECT DISTINCT hash FROM photos) ph ON ph.hash = f.hash "
            + ("" if include_hidden else "WHERE p.hidden = 0 ")
            + "GROUP BY p.id HAVING count(f.id) >= ? "
            "ORDER BY p.name IS NULL, p.folded, count(f.id) DESC, p.id"
        )
        out = []
        for pid, name, hidden, faces, photos in self._conn.execute(q, (int(min_faces),)).fetchall():
            out.append(PersonRow(pid, name, bool(hidden), faces, photos, self._cover_face(pid)))
        return out

    def _cover_face(self, person_id: int) -> int | None:
        r = self._conn.execute(
            "SELECT id FROM faces WHERE person_id = ? AND embedding IS NOT NULL "
            "ORDER BY by_user DESC, size_px * min(score + 1.0, 3.0) DESC, id LIMIT 1",
            (person_id,),
        ).fetchone()
        return r[0] if r else None

    def person(self, person_id: int) -> PersonRow | None:
        r = self._conn.execute(
            "SELECT id, name, hidden FROM people WHERE id = ?", (int(person_id),)
        ).fetchone()
        if r is None:
            return None
        faces, photos = self._conn.execute(
            "SELECT count(*), count(DISTINCT hash) FROM faces WHERE person_id = ? "
            "AND hash IN (SELECT hash FROM photos)",
            (r[0],),
        ).fetchone()
        return PersonRow(r[0], r[1], bool(r[2]), faces, photos, self._cover_face(r[0]))

    def person_names(self) -> list[tuple[int, str, str]]:
        """(id, name, folded name) of every named person."""
        q = "SELECT id, name, folded FROM people WHERE name IS NOT NULL ORDER BY id"
        return [(r[0], r[1], r[2]) for r in self._conn.execute(q)]

    def person_photo_paths(self, person_id: int) -> list[str]:
        q = (
            "SELECT DISTINCT ph.path FROM faces f JOIN photos ph ON ph.hash = f.hash "
            "WHERE f.person_id = ? ORDER BY ph.path"
        )
        return [r[0] for r in self._conn.execute(q, (int(person_id),))]

    def ids_with_person(self, person_id: int) -> set[int]:
        """Photos (every copy of each content) in which ``person_id`` appears."""
        q = "SELECT DISTINCT ph.id FROM faces f JOIN photos ph ON ph.hash = f.hash WHERE f.person_id = ?"
        return {r[0] for r in self._conn.execute(q, (int(person_id),))}

    def set_person_name(self, person_id: int, name: str | None, folded: str | None) -> None:
        with self.transaction():
            self._conn.execute(
                "UPDATE people SET name = ?, folded = ?, updated_at = ? WHERE id = ?",
                (name, folded, time.time(), int(person_id)),
            )

    def set_person_hidden(self, person_id: int, hidden: bool) -> None:
        with self.transaction():
            self._conn.execute(
                "UPDATE people SET hidden = ?, updated_at = ? WHERE id = ?",
                (int(hidden), time.time(), int(person_id)),
            )

    def merge_people(self, keep: int, other: int) -> None:
        """Move every face of ``other`` into ``keep`` (as the user's placement) and forget ``other``;
        ``keep`` takes ``other``'s name when it has none. Faces taken out of either stay out of both."""
        with self.transaction():
            a = self._conn.execute("SELECT name, folded FROM people WHERE id = ?", (int(keep),)).fetchone()
            b = self._conn.execute("SELECT name, folded FROM people WHERE id = ?", (int(other),)).fetchone()
            if a[0] is None and b[0] is not None:
                self._conn.execute(
                    "UPDATE people SET name = ?, folded = ? WHERE id = ?", (b[0], b[1], int(keep))
                )
            self._conn.execute(
                "UPDATE faces SET person_id = ?, by_user = 1 WHERE person_id = ?", (int(keep), int(other))
            )
            self._conn.execute(
                "UPDATE OR IGNORE face_rejects SET person_id = ? WHERE person_id = ?", (int(keep), int(other))
            )
            self._conn.execute("DELETE FROM people WHERE id = ?", (int(other),))
            self._conn.execute("UPDATE people SET updated_at = ? WHERE id = ?", (time.time(), int(keep)))
            self.update_centroids([keep])

    def move_face(self, face_id: int, person_id: int | None) -> None:
        """The user's correction: ``face_id`` is not its current person (never put back there by the
        machine), and is ``person_id``'s when given."""
        with self.transaction():
            r = self._conn.execute("SELECT person_id FROM faces WHERE id = ?", (int(face_id),)).fetchone()
            old = r[0] if r else None
            if old is not None and old != person_id:
                self._conn.execute(
                    "INSERT OR IGNORE INTO face_rejects (face_id, person_id) VALUES (?, ?)",
                    (int(face_id), old),
                )
            if person_id is None:
                self._conn.execute(
                    "UPDATE faces SET person_id = NULL, by_user = 0 WHERE id = ?", (int(face_id),)
                )
            else:
                self._conn.execute(
                    "DELETE FROM face_rejects WHERE face_id = ? AND person_id = ?",
                    (int(face_id), int(person_id)),
                )
                self._conn.execute(
                    "UPDATE faces SET person_id = ?, by_user = 1 WHERE id = ?", (int(person_id), int(face_id))
                )
            self.update_centroids([p for p in (old, person_id) if p is not None])

    def face(self, face_id: int) -> FaceRow | None:
        rows = self._face_rows("f.id = ?", (int(face_id),))
        return rows[0] if rows else None

    def faces_of(self, content_hash: str) -> list[FaceRow]:
        """The faces found in one photo content, left to right."""
        return sorted(self._face_rows("f.hash = ?", (content_hash,)), key=lambda f: f.box[0])

    def faces_of_person(self, person_id: int) -> list[FaceRow]:
        return self._face_rows("f.person_id = ?", (int(person_id),))

    def _face_rows(self, where: str, args: tuple) -> list[FaceRow]:
        q = (
            "SELECT f.id, f.hash, f.x0, f.y0, f.x1, f.y1, f.score, f.size_px, f.person_id, p.name, "
            "f.embedding IS NOT NULL FROM faces f LEFT JOIN people p ON p.id = f.person_id WHERE " + where
        )
        return [
            FaceRow(r[0], r[1], (r[2], r[3], r[4], r[5]), r[6], r[7], r[8], r[9], bool(r[10]))
            for r in self._conn.execute(q, args)
        ]
