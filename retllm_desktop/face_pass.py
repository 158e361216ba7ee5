"""The face pass: find the faces in every photo, store their boxes and vectors, then group them into people.

It runs after the CLIP pass (and the text pass), so search works before it finishes. Faces are stored per
content hash, so a moved or copied photo keeps its faces and a changed photo is scanned again. Decoding
runs one photo ahead of the model; every batch of photos is committed in one transaction, so a crash or
Ctrl+C loses at most the batch in flight and the next run resumes. A photo that cannot be read is recorded
with its reason and never fails the run. When the scan is done (or cancelled), the new faces are grouped
into people (:mod:`.people`): joined to the people they match, the rest clustered among themselves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from PIL import Image

from .batch_loop import run_batched
from .catalog import Catalog
from .errors import ImageError
from .imaging import load_rgb
from .progress import Progress

STAGE = "finding faces"
REMAKE_STAGE = "updating faces"


class FaceFinder(Protocol):
    """What the pass needs from a face model (see models.faces.FaceModel)."""

    key: str  # "<recipe>/<detector>": what a scan was made with

    def find(self, image: Image.Image) -> list[Any]: ...

    def embed(self, image: Image.Image, boxes: list[tuple[float, float, float, float]]) -> list[Any]: ...


@dataclass
class FaceSummary:
    scanned: int = 0  # photos scanned in this run
    with_faces: int = 0  # of which show at least one face
    faces: int = 0  # faces found (recognisable or not)
    failed: int = 0
    pending: int = 0  # left for a later run (cancelled)
    remade: int = 0  # photos whose face vectors an older recipe made, made again in place
    grouped: int = 0  # faces put into people by this run
    new_people: int = 0
    seconds: float = 0.0
    cancelled: bool = False
    error: str | None = None  # why the pass did not run (dlib missing): everything else still works

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Decoded:
    content_hash: str
    path: str
    image: Image.Image | None = None
    error: str | None = None


class FacePass:
    def __init__(
        self,
        catalog: Catalog,
        finder: FaceFinder,
        *,
        batch_size: int = 8,
        max_side: int = 2048,
        prefetch: int = 2,
        group: Any = None,
    ):
        self.catalog = catalog
        self.finder = finder
        self.batch_size = max(1, batch_size)
        self.max_side = max_side  # decoded at most this large: bounded memory, faces still sharp
        self.prefetch = max(1, prefetch)
        self.group = group  # callable(catalog) -> (faces grouped, new people); people.group_faces

    def _decode(self, content_hash: str, path: str) -> _Decoded:
        try:
            img = load_rgb(path, min_side=self.max_side // 2)
            if max(img.size) > self.max_side:
                img.thumbnail((self.max_side, self.max_side), Image.Resampling.LANCZOS)
            return _Decoded(content_hash, path, img)
        except ImageError as e:
            return _Decoded(content_hash, path, error=str(e))
        except FileNotFoundError:
            return _Decoded(content_hash, path, error="file not found")
        except MemoryError:
            return _Decoded(content_hash, path, error="image too large to decode in memory")
        except Exception as e:  # one bad file never stops a run
            return _Decoded(content_hash, path, error=f"cannot open: {type(e).__name__}: {e}")

    @staticmethod
    def _attempt(item: _Decoded, work: Callable[[Image.Image], Any], doing: str, failure: str) -> Any:
        """``work(image)`` for a decoded photo, or the reason it failed (a bad photo never stops a run)."""
        if item.error is not None:
            return item.error
        try:
            return work(item.image)
        except MemoryError:
            return f"out of memory while {doing}"
        except Exception as e:
            return f"{failure} failed: {type(e).__name__}: {e}"
        finally:
            item.image = None

    def _find(self, item: _Decoded) -> list[Any] | str:
        """The photo's faces, or the reason finding them failed."""
        return self._attempt(item, self.finder.find, "finding faces", "face detection")

    def _commit(self, done: list[tuple[_Decoded, list[Any] | str]], summary: FaceSummary) -> None:
        with self.catalog.transaction():
            for item, outcome in done:
                if isinstance(outcome, str):
                    self.catalog.record_face_failure(item.content_hash, item.path, outcome)
                    summary.failed += 1
                else:
                    n = self.catalog.put_faces(item.content_hash, self.finder.key, outcome)
                    summary.scanned += 1
                    summary.faces += n
                    summary.with_faces += int(n > 0)

    def _remake(self, item: _Decoded) -> list[tuple[int, Any]] | str:
        """New vectors for the photo's stored faces (same boxes), or the reason it failed."""

        def remake(image: Image.Image) -> list[tuple[int, Any]]:
            faces = self.catalog.recognisable_faces(item.content_hash)
            vectors = self.finder.embed(image, [box for _, box in faces])
            return [(face_id, v) for (face_id, _), v in zip(faces, vectors, strict=True)]

        return self._attempt(item, remake, "updating faces", "face update")

    def _commit_remade(
        self, done: list[tuple[_Decoded, list[tuple[int, Any]] | str]], summary: FaceSummary
    ) -> None:
        with self.catalog.transaction():
            for item, outcome in done:
                if isinstance(outcome, str):  # the old vectors stay (still usable); tried again next run
                    summary.failed += 1
                else:
                    self.catalog.put_face_vectors(item.content_hash, self.finder.key, outcome)
                    summary.remade += 1

    def _batched(
        self,
        todo: list[tuple[str, str]],
        work: Callable[[_Decoded], Any],
        commit: Callable[[list[tuple[_Decoded, Any]], FaceSummary], None],
        stage: str,
        summary: FaceSummary,
        progress: Progress | None,
        cancel: threading.Event | None,
    ) -> bool:
        """Decode ahead, ``work`` per photo, commit per batch; what is left counts as pending. True: cancelled."""
        n, cancelled = run_batched(
            todo,
            self._decode,
            work,
            lambda batch: commit(batch, summary),
            prefetch=self.prefetch,
            batch_size=self.batch_size,
            stage=stage,
            total=len(todo),
            thread_name="face-decode",
            progress=progress,
            cancel=cancel,
        )
        summary.pending += len(todo) - n
        return cancelled

    def _remake_outdated(
        self, summary: FaceSummary, progress: Progress | None, cancel: threading.Event | None
    ) -> bool:
        """Vectors of an older recipe made again in place: people, names and corrections stay as they are."""
        recipe = self.finder.key.split("/", 1)[0]
        self.catalog.adopt_faceless_scans(recipe)
        todo = self.catalog.faces_outdated(recipe)
        if not todo:
            return False
        cancelled = self._batched(
            todo, self._remake, self._commit_remade, REMAKE_STAGE, summary, progress, cancel
        )
        if summary.remade:
            with self.catalog.transaction():  # people's mean vectors follow their faces' new ones
                self.catalog.update_centroids()
        return cancelled

    def run(self, progress: Progress | None = None, cancel: threading.Event | None = None) -> FaceSummary:
        t0 = time.perf_counter()
        summary = FaceSummary()
        self.catalog.prune_faces()
        summary.cancelled = self._remake_outdated(summary, progress, cancel)
        if summary.cancelled:
            summary.seconds = round(time.perf_counter() - t0, 3)
            return summary
        todo = self.catalog.faces_pending()
        if progress:
            progress(STAGE, 0, len(todo))
        summary.cancelled = self._batched(todo, self._find, self._commit, STAGE, summary, progress, cancel)
        if self.group is not None:  # even after a cancel: what was found so far is searchable by person
            summary.grouped, summary.new_people = self.group(self.catalog)
        summary.seconds = round(time.perf_counter() - t0, 3)
        return summary
