"""Faces with dlib's published models, as shipped by the ``face_recognition_models`` package (PyPI).

Three stages per photo: a detector finds face boxes (the HOG + linear SVM frontal detector by default; the
CNN "mmod" detector on request), the 5-point landmark model places eyes and nose so each face can be cut out
aligned, and the ResNet turns the aligned 150 px chip into a 128-d vector in which one person's faces lie
within ~0.6 of each other (Euclidean). ``dlib`` is imported on first use only, so the app and the other passes
work where it is not installed (the face pass then says so and is skipped).

Detection runs on a downscaled copy (its cost grows with the pixels, and faces large enough to recognise
stay large enough to find); landmarks and vectors are taken on the sharper image the pass decoded.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...errors import ModelLoadError, ModelNotFoundError

MODEL_NAME = "dlib-resnet-v1"  # stored with every scan: another model's vectors would not compare
# How a face's vector is made from the ResNet: the mean over four views of its aligned 150-px chip (the chip,
# its mirror image, and two 5 % zooms, corner-anchored), deterministic unlike dlib's random num_jitters.
# bench_faces.py on the shared pairs: the gap between the farthest same-person pair and the nearest
# different-person pair grows from 0.037 (one view) to 0.073, so 0.6 separates every pair (one view:
# 0.9967); it costs three more ResNet runs per recognisable face (~70 ms each), nothing on faceless photos.
EMBED_VIEWS = 4


def embed_recipe(views: int) -> str:
    """The name of a recipe as stored with each scan (one view: the plain ResNet vector, as dlib makes it)."""
    return MODEL_NAME if views == 1 else f"{MODEL_NAME}+views{views}"


EMBED_RECIPE = embed_recipe(EMBED_VIEWS)
EMBED_DIM = 128
CHIP_PX = 150  # the ResNet's input
CHIP_PADDING = 0.25  # dlib's default margin around the landmarks
# Faces whose box is smaller than this (shorter side, in the analysed photo's pixels) are kept but get no
# vector, so they never join a person. bench_faces.py's face-size table: on the shared pairs the ResNet
# first confuses people at 30 px (a false match) and was still clean at 40 px; 50 px leaves a margin on
# a small sample and is PhotoPrism's default minimum face size too.
MIN_FACE_PX = 50
_FILES = {
    "landmarks": "shape_predictor_5_face_landmarks.dat",
    "resnet": "dlib_face_recognition_resnet_model_v1.dat",
    "cnn": "mmod_human_face_detector.dat",
}
MISSING_DLIB = (
    "face recognition needs the dlib and face_recognition_models packages "
    "(pip install dlib face_recognition_models; dlib compiles in ~10 min)"
)


def bundled_model_files() -> dict[str, Path]:
    """The model files inside the installed face_recognition_models package (found without importing it)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(MISSING_DLIB)
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    out = {k: folder / name for k, name in _FILES.items()}
    for path in out.values():
        if not path.is_file():
            raise ModelNotFoundError(f"face model file missing: {path}; reinstall face_recognition_models")
    return out


def dlib_available() -> bool:
    return importlib.util.find_spec("dlib") is not None


@dataclass
class DetectedFace:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 as fractions of the photo's width and height
    score: float  # the detector's confidence (HOG: SVM margin, ~0–3; CNN: mmod confidence)
    size_px: int  # the box's shorter side in the analysed image, in pixels
    embedding: np.ndarray | None  # 128 float32; None when the face is too small to recognise


class FaceModel:
    """Detect → align (5 points) → embed (ResNet). Models load on first use; ``close()`` frees them."""

    name = MODEL_NAME

    def __init__(
        self,
        *,
        detector: str = "hog",
        detect_side: int = 1024,
        upsample: int = 1,
        min_score: float = 0.0,
        min_face_px: int = MIN_FACE_PX,
        max_faces: int = 40,
        views: int = EMBED_VIEWS,
    ):
        if detector not in ("hog", "cnn"):
            raise ValueError(f"unknown face detector {detector!r} (hog or cnn)")
        if not 1 <= views <= 4:
            raise ValueError(f"views must be 1 to 4, got {views}")
        self.views = views  # 1: the chip alone (the benchmark's baseline)
        self.detector = detector
        self.detect_side = detect_side  # longer side the detector sees
        self.upsample = (
            upsample  # the detector's own 2x upsampling: finds faces down to ~40 px at detect_side
        )
        self.min_score = min_score
        self.min_face_px = min_face_px  # smaller faces (in the analysed image) are kept out of people
        self.max_faces = max_faces  # a crowd: the largest faces only, so one photo's cost stays bounded
        self._lock = threading.Lock()
        self._dlib: Any = None
        self._detect: Any = None
        self._landmarks: Any = None
        self._resnet: Any = None

    @property
    def key(self) -> str:
        """What a stored scan was made with: a change of detector rescans nothing by itself; vectors of an
        older recipe are made again in place (``embed``, run by the face pass), keeping every face's person."""
        return f"{embed_recipe(self.views)}/{self.detector}"

    # -- lifecycle -------------------------------------------------------------------------------
    def check(self) -> None:
        """Raise ModelNotFoundError (with what to do) when dlib or the model files are missing; loads nothing."""
        if not dlib_available():
            raise ModelNotFoundError(MISSING_DLIB)
        bundled_model_files()

    @property
    def loaded(self) -> bool:
        return self._resnet is not None

    def load(self) -> FaceModel:
        """Read the three model files now (the first ``find`` does it otherwise)."""
        with self._lock:
            self._load()
        return self

    def _load(self) -> None:
        if self._resnet is not None:
            return
        self.check()
        files = bundled_model_files()
        try:
            import dlib
        except ImportError as e:  # a broken build: installed but not importable
            raise ModelNotFoundError(f"{MISSING_DLIB} ({e})") from e
        try:
            if self.detector == "cnn":
                self._detect = dlib.cnn_face_detection_model_v1(str(files["cnn"]))
            else:
                self._detect = dlib.get_frontal_face_detector()
            self._landmarks = dlib.shape_predictor(str(files["landmarks"]))
            self._resnet = dlib.face_recognition_model_v1(str(files["resnet"]))
        except RuntimeError as e:
            raise ModelLoadError(f"the face models could not be loaded: {e}") from e
        self._dlib = dlib

    def close(self) -> None:
        with self._lock:
            self._dlib = self._detect = self._landmarks = self._resnet = None

    def __enter__(self) -> FaceModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the pipeline ----------------------------------------------------------------------------
    def find(self, image: Image.Image) -> list[DetectedFace]:
        """The faces in ``image`` (RGB, already oriented), largest first, at most ``max_faces``."""
        with self._lock:
            self._load()
            dlib = self._dlib
            rgb = np.ascontiguousarray(np.asarray(image.convert("RGB")))
            h, w = rgb.shape[:2]
            scale = min(1.0, self.detect_side / max(h, w))
            small = rgb
            if scale < 1.0:
                size = (max(1, round(w * scale)), max(1, round(h * scale)))
                small = np.ascontiguousarray(
                    np.asarray(image.convert("RGB").resize(size, Image.Resampling.BILINEAR))
                )
            found = self._boxes(small)
            found = [(s, r) for s, r in found if s >= self.min_score]
            found.sort(key=lambda t: -(t[1][2] - t[1][0]) * (t[1][3] - t[1][1]))
            found = found[: self.max_faces]
            faces: list[DetectedFace] = []
            shapes = dlib.full_object_detections()
            keep: list[int] = []
            for score, (x0, y0, x1, y1) in found:
                # Back to the analysed image's pixels, clipped to it.
                bx0, by0 = max(0.0, x0 / scale), max(0.0, y0 / scale)
                bx1, by1 = min(float(w), x1 / scale), min(float(h), y1 / scale)
                if bx1 - bx0 < 2 or by1 - by0 < 2:
                    continue
                size_px = int(min(bx1 - bx0, by1 - by0))
                faces.append(DetectedFace((bx0 / w, by0 / h, bx1 / w, by1 / h), float(score), size_px, None))
                if size_px >= self.min_face_px:
                    rect = dlib.rectangle(int(bx0), int(by0), int(bx1), int(by1))
                    shapes.append(self._landmarks(rgb, rect))
                    keep.append(len(faces) - 1)
            for i, v in zip(keep, self._vectors(rgb, shapes), strict=True):
                faces[i].embedding = v
            return faces

    def embed(self, image: Image.Image, boxes: list[tuple[float, float, float, float]]) -> list[np.ndarray]:
        """Vectors for faces found before (boxes as fractions of the photo), made again with this recipe."""
        with self._lock:
            self._load()
            rgb = np.ascontiguousarray(np.asarray(image.convert("RGB")))
            h, w = rgb.shape[:2]
            shapes = self._dlib.full_object_detections()
            for x0, y0, x1, y1 in boxes:
                # the pixel rectangle find() used (the box is stored as fractions of the same decoded size)
                px = [int(v * size + 1e-6) for v, size in ((x0, w), (y0, h), (x1, w), (y1, h))]
                rect = self._dlib.rectangle(*px)
                shapes.append(self._landmarks(rgb, rect))
            return self._vectors(rgb, shapes) if boxes else []

    def _vectors(self, rgb: np.ndarray, shapes: Any) -> list[np.ndarray]:
        """The recipe's vector per aligned face: the mean of the ResNet over the chip's four views."""
        if not len(shapes):
            return []
        chips = self._dlib.get_face_chips(rgb, shapes, size=CHIP_PX, padding=CHIP_PADDING)
        views = [v for chip in chips for v in _views(np.asarray(chip))[: self.views]]
        out = np.asarray(self._resnet.compute_face_descriptor(views), dtype=np.float32)
        return list(out.reshape(len(chips), len(views) // len(chips), EMBED_DIM).mean(axis=1))

    def _boxes(self, rgb: np.ndarray) -> list[tuple[float, tuple[float, float, float, float]]]:
        """(score, (x0, y0, x1, y1)) in ``rgb``'s pixels."""
        if self.detector == "cnn":
            out = []
            for d in self._detect(rgb, self.upsample):
                r = d.rect
                out.append((float(d.confidence), (r.left(), r.top(), r.right() + 1, r.bottom() + 1)))
            return out
        rects, scores, _ = self._detect.run(rgb, self.upsample, 0.0)
        return [
            (float(s), (r.left(), r.top(), r.right() + 1, r.bottom() + 1))
            for r, s in zip(rects, scores, strict=True)
        ]


def _views(chip: np.ndarray) -> list[np.ndarray]:
    """The chip, its mirror image, and two 5 % zooms of it (top-left and bottom-right anchored)."""
    n = chip.shape[0]
    big = np.asarray(Image.fromarray(chip).resize((n + 8, n + 8), Image.Resampling.BICUBIC))
    return [
        np.ascontiguousarray(chip),
        np.ascontiguousarray(chip[:, ::-1]),
        np.ascontiguousarray(big[:n, :n]),
        np.ascontiguousarray(big[8 : 8 + n, 8 : 8 + n]),
    ]
