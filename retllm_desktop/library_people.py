"""The façade's faces and people part (mixed into :class:`~retllm_desktop.library.Library`).

The face pass runs as part of ``index`` (after the text pass) and can run alone (``find_faces``); people are
listed, named, merged, hidden and corrected here, and every correction is followed by a catalog backup so
``repair`` restores it. Search turns people's names into filters through ``understand`` (see query_plan.py).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import asdict
from typing import Any

from . import people as people_mod
from .errors import QueryError, RetllmError
from .face_pass import FacePass, FaceSummary
from .progress import Progress

log = logging.getLogger(__name__)

PEOPLE_MIN_FACES = 2  # a person is listed once two faces agree (one face alone may be a passer-by)


class PeopleLibrary:
    """Faces and people; expects the Library's ``catalog``, ``lock``, ``_model_lock`` and ``_backup_catalog``."""

    catalog: Any
    lock: Any
    _model_lock: Any
    read_faces: bool = True
    face_detector: str = "hog"
    _faces_model: Any = None
    _backup_catalog: Any  # Library's: a checked rolling copy of the catalog

    # -- the face pass ---------------------------------------------------------------------------
    @property
    def faces_model(self):
        """dlib's detector, landmarks and ResNet (lazy; ModelNotFoundError with instructions when missing)."""
        with self._model_lock:
            if self._faces_model is None:
                from .models.faces import FaceModel

                self._faces_model = FaceModel(detector=self.face_detector)
            return self._faces_model

    def find_faces(
        self, progress: Progress | None = None, cancel: threading.Event | None = None
    ) -> FaceSummary:
        """Run the face pass alone (photos already indexed): scan photos not scanned yet, then group."""
        with self.lock:
            summary = self._run_face_pass(progress, cancel)
        if summary.scanned + summary.failed + summary.grouped:
            self._backup_catalog(small_run=False)
        return summary

    def _run_face_pass(self, progress: Progress | None, cancel: threading.Event | None) -> FaceSummary:
        try:
            model = self.faces_model
            model.check()
        except RetllmError as e:  # no dlib: everything else works; faces found before stay searchable
            return FaceSummary(error=str(e))
        return FacePass(self.catalog, model, group=people_mod.group_faces).run(
            progress=progress, cancel=cancel
        )

    def regroup_faces(self) -> tuple[int, int]:
        """Group faces that have no person yet (also done after every face pass)."""
        return people_mod.group_faces(self.catalog)

    # -- people ----------------------------------------------------------------------------------
    def people(self, min_faces: int = PEOPLE_MIN_FACES, include_hidden: bool = False) -> list[dict[str, Any]]:
        """Every person with at least ``min_faces`` faces: named ones first (by name), then the largest."""
        out = []
        for p in self.catalog.people(min_faces=min_faces, include_hidden=include_hidden):
            d = asdict(p)
            d["photos"] = self.catalog.person_photo_paths(p.id)
            d["photo_count"] = p.photos
            out.append(d)
        return out

    def person(self, person_id: int) -> dict[str, Any]:
        p = self.catalog.person(int(person_id))
        if p is None:
            raise QueryError(f"no person with id {person_id}")
        d = asdict(p)
        d["photos"] = self.catalog.person_photo_paths(p.id)
        d["photo_count"] = p.photos
        return d

    def _corrected(self) -> None:
        """A correction is the user's work: back it up now (``repair`` restores the newest backup)."""
        self._backup_catalog(small_run=False)

    def name_person(self, person_id: int, name: str | None) -> None:
        people_mod.name_person(self.catalog, int(person_id), name)
        self._corrected()

    def merge_people(self, keep: int, other: int) -> None:
        people_mod.merge_people(self.catalog, int(keep), int(other))
        self._corrected()

    def hide_person(self, person_id: int, hidden: bool = True) -> None:
        people_mod.hide_person(self.catalog, int(person_id), hidden)
        self._corrected()

    def move_face(self, face_id: int, person_id: int | None) -> None:
        """ "Not this person" (``person_id`` None) or "this is ``person_id``"."""
        people_mod.move_face(self.catalog, int(face_id), None if person_id is None else int(person_id))
        self._corrected()

    def faces_in(self, path: str) -> list[dict[str, Any]]:
        """The faces found in one photo (for the preview): id, box (fractions), person id and name."""
        photo = self.catalog.photo_by_path(os.path.abspath(path))
        if photo is None:
            return []
        return [asdict(f) for f in self.catalog.faces_of(photo.hash)]

    def face_crop(self, face_id: int, size: int = 96) -> Any:
        """A square thumbnail (PIL) around one face, a little wider than its box; None when unreadable."""
        from PIL import Image

        from .imaging import load_rgb

        face = self.catalog.face(int(face_id))
        if face is None:
            return None
        photos = self.catalog.photos_by_hash(face.hash)
        x0, y0, x1, y1 = face.box
        need = int(min(3000, size / max(1e-3, min(x1 - x0, y1 - y0))))  # the face at least ``size`` px
        for photo in photos:
            try:
                img = load_rgb(photo.path, min_side=need)
            except (RetllmError, OSError):
                continue
            w, h = img.size
            cx, cy = (x0 + x1) / 2 * w, (y0 + y1) / 2 * h
            half = max((x1 - x0) * w, (y1 - y0) * h) * 0.65
            box = (int(cx - half), int(cy - half), int(cx + half), int(cy + half))
            return img.crop(box).resize((size, size), Image.Resampling.LANCZOS)
        return None

    def people_for_names(self, names: list[str]) -> list[list[int]]:
        """The person ids each name stands for (full name or unique first name); QueryError when none."""
        return people_mod.people_named(self.catalog, names)

    def face_status(self, failures_limit: int = 50) -> tuple[dict[str, Any], list[dict[str, str]]]:
        counts = self.catalog.face_counts()
        try:
            self.faces_model.check()
            counts["error"] = None
        except RetllmError as e:
            counts["error"] = str(e)
        failed = [{"path": p, "reason": r} for p, r in self.catalog.face_failures(failures_limit)]
        return counts, failed
