"""On-device OCR with the PP-OCRv4 ONNX models that ship inside the ``rapidocr-onnxruntime`` wheel.

We drive the three ONNX files (text detection, 180° orientation, recognition) with our own onnxruntime
sessions instead of RapidOCR's pipeline: that way the sessions load lazily, use a bounded number of
threads, can be closed, and the detector runs at a size we choose (its cost decides how fast photos
*without* text go, which is most photos). RapidOCR's DB post-processing (box finding) is reused as is.
"""

from __future__ import annotations

import importlib.util
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...errors import ModelNotFoundError

MODEL_NAME = "ppocrv4-mobile"  # stored with every result: a different model would re-read the photos
_DET_FILE = "ch_PP-OCRv4_det_infer.onnx"
_CLS_FILE = "ch_ppocr_mobile_v2.0_cls_infer.onnx"
_REC_FILE = "ch_PP-OCRv4_rec_infer.onnx"
_REC_HEIGHT = 48


def _import_cv2() -> Any:
    """Import OpenCV (a dependency of the wheel) without letting it redirect Qt's plugin paths.

    opencv-python's loader sets QT_QPA_PLATFORM_PLUGIN_PATH / QT_QPA_FONTDIR to its own bundled Qt 5,
    which would break the app's Qt 6 if it created a window afterwards.
    """
    keys = ("QT_QPA_PLATFORM_PLUGIN_PATH", "QT_QPA_FONTDIR")
    saved = {k: os.environ.get(k) for k in keys}
    try:
        import cv2
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    cv2.setNumThreads(1)
    return cv2


def bundled_model_dir() -> Path:
    """Folder of the ONNX files inside the installed rapidocr-onnxruntime wheel (found without importing it)."""
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the OCR models are missing: install the rapidocr-onnxruntime package (pip install -e .)"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    for name in (_DET_FILE, _CLS_FILE, _REC_FILE):
        if not (folder / name).is_file():
            raise ModelNotFoundError(
                f"OCR model file missing: {folder / name}; reinstall rapidocr-onnxruntime"
            )
    return folder


@dataclass
class OcrWord:
    text: str
    box: list[list[float]]  # 4 corner points (x, y), fractions of the photo's width and height
    confidence: float


@dataclass
class OcrLine:
    text: str
    confidence: float
    box: list[list[float]]  # 4 corner points, clockwise from top-left, fractions of width/height
    words: list[OcrWord] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "text": self.text,
            "confidence": round(self.confidence, 4),
            "box": _round_box(self.box),
            "words": [
                {"text": w.text, "box": _round_box(w.box), "confidence": round(w.confidence, 4)}
                for w in self.words
            ],
        }


def _round_box(box: list[list[float]]) -> list[list[float]]:
    return [[round(float(x), 5), round(float(y), 5)] for x, y in box]


@dataclass
class OcrResult:
    lines: list[OcrLine]
    boxes_found: int = 0  # detected text regions (before dropping unreadable ones)

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)


class OcrModel:
    """Detect → orient → recognise. Sessions load on first use; ``close()`` frees them."""

    name = MODEL_NAME

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        threads: int = 2,
        det_side: int = 640,
        min_confidence: float = 0.5,
        max_lines: int = 400,
        rec_batch: int = 8,
    ):
        self.model_dir = Path(model_dir) if model_dir else None
        self.threads = max(1, int(threads))
        self.det_side = (
            det_side  # longer side the detector sees: text ≥ 24 px in a 1280 px photo is 12 px here
        )
        self.min_confidence = min_confidence
        self.max_lines = max_lines  # a photo of a page of tiny print: the most confident lines only
        self.rec_batch = rec_batch
        self._lock = threading.Lock()
        self._det = self._cls = self._rec = None
        self._chars: list[str] = []
        self._post: Any = None
        self._cv2: Any = None

    # -- lifecycle -------------------------------------------------------------------------------
    def bundled_check(self) -> None:
        """Raise ModelNotFoundError (with what to do) when the model files are not there; loads nothing."""
        if self.model_dir is None:
            bundled_model_dir()

    @property
    def loaded(self) -> bool:
        return self._det is not None

    def load(self) -> None:
        """Create the three sessions now (otherwise the first ``read`` does)."""
        with self._lock:
            self._load()

    def _load(self) -> None:
        if self._det is not None:
            return
        import onnxruntime as ort

        folder = self.model_dir or bundled_model_dir()
        self._cv2 = _import_cv2()
        from rapidocr_onnxruntime.ch_ppocr_det.utils import DBPostProcess

        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.log_severity_level = 3

        def session(name: str):
            return ort.InferenceSession(str(folder / name), so, providers=["CPUExecutionProvider"])

        self._det, self._cls, self._rec = session(_DET_FILE), session(_CLS_FILE), session(_REC_FILE)
        chars = self._rec.get_modelmeta().custom_metadata_map.get("character", "").splitlines()
        self._chars = ["", *chars, " "]  # CTC blank first, space last (as PaddleOCR trains it)
        self._post = DBPostProcess(
            thresh=0.3, box_thresh=0.5, max_candidates=1000, unclip_ratio=1.6, use_dilation=True
        )

    def close(self) -> None:
        with self._lock:
            self._det = self._cls = self._rec = None

    def __enter__(self) -> OcrModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the pipeline ----------------------------------------------------------------------------
    def read(self, image: Image.Image) -> OcrResult:
        """All text lines in ``image`` (RGB, already oriented), with boxes relative to its size."""
        with self._lock:
            self._load()
            bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
            boxes = self._detect(bgr)
            if not len(boxes):
                return OcrResult([], 0)
            h, w = bgr.shape[:2]
            lines: list[OcrLine] = []
            for start in range(0, len(boxes), self.rec_batch):
                chunk = boxes[start : start + self.rec_batch]
                crops = [self._crop(bgr, b) for b in chunk]
                flipped = self._orient(crops)
                for box, crop_info, (text, conf, spans) in zip(
                    chunk, crops, self._recognize([c for c, _ in crops]), strict=True
                ):
                    text = text.strip()
                    if conf < self.min_confidence or not any(c.isalnum() for c in text):
                        continue
                    quad = [[float(x) / w, float(y) / h] for x, y in box]
                    words = self._words(quad, spans, vertical=crop_info[1], flipped=flipped.pop(0))
                    lines.append(OcrLine(text, conf, quad, words))
            return OcrResult(lines, len(boxes))

    def _detect(self, bgr: np.ndarray) -> np.ndarray:
        cv2 = self._cv2
        h, w = bgr.shape[:2]
        scale = min(1.0, self.det_side / max(h, w))
        dh = max(32, int(round(h * scale / 32)) * 32)
        dw = max(32, int(round(w * scale / 32)) * 32)
        small = cv2.resize(bgr, (dw, dh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        x = ((small.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)[None]
        pred = self._det.run(None, {self._det.get_inputs()[0].name: x})[0]
        if float(pred.max()) <= self._post.thresh:  # nothing text-like at all: the common, cheap case
            return np.zeros((0, 4, 2), np.float32)
        boxes, scores = self._post(pred, (h, w))
        out = []
        for box, score in zip(boxes, scores, strict=True):
            box = _order_clockwise(np.asarray(box, np.float32))
            box[:, 0] = np.clip(box[:, 0], 0, w - 1)
            box[:, 1] = np.clip(box[:, 1], 0, h - 1)
            if np.linalg.norm(box[0] - box[1]) > 3 and np.linalg.norm(box[0] - box[3]) > 3:
                out.append((score, box))
        if len(out) > self.max_lines:
            out = sorted(out, key=lambda t: -t[0])[: self.max_lines]
        # Reading order: top to bottom, then left to right within a row.
        out.sort(key=lambda t: (round(float(t[1][0, 1]) / 10), float(t[1][0, 0])))
        return np.array([b for _, b in out], np.float32) if out else np.zeros((0, 4, 2), np.float32)

    def _crop(self, bgr: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, bool]:
        """The box's pixels straightened into a rectangle; tall boxes are turned to read left to right."""
        cv2 = self._cv2
        cw = int(max(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[2] - box[3])))
        ch = int(max(np.linalg.norm(box[0] - box[3]), np.linalg.norm(box[1] - box[2])))
        cw, ch = max(cw, 1), max(ch, 1)
        dst = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], np.float32)
        m = cv2.getPerspectiveTransform(box.astype(np.float32), dst)
        crop = cv2.warpPerspective(bgr, m, (cw, ch), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
        if ch / cw >= 1.5:
            return np.rot90(crop).copy(), True
        return crop, False

    def _orient(self, crops: list[tuple[np.ndarray, bool]]) -> list[bool]:
        """Turn upside-down lines right side up (the 180° classifier); returns which ones were turned."""
        cv2 = self._cv2
        batch = np.stack([_resize_norm(cv2, c, 192) for c, _ in crops])
        probs = self._cls.run(None, {self._cls.get_inputs()[0].name: batch})[0]
        flipped = []
        for i, p in enumerate(probs):
            flip = int(np.argmax(p)) == 1 and float(p[1]) > 0.9
            if flip:
                crops[i] = (np.ascontiguousarray(crops[i][0][::-1, ::-1]), crops[i][1])
            flipped.append(flip)
        return flipped

    def _recognize(self, crops: list[np.ndarray]) -> list[tuple[str, float, list[tuple[str, float, float]]]]:
        """CTC greedy decoding; per character its position along the line (fraction of the crop's width)."""
        cv2 = self._cv2
        ratio = max([320 / _REC_HEIGHT] + [c.shape[1] / max(c.shape[0], 1) for c in crops])
        width = int(math.ceil(_REC_HEIGHT * min(ratio, 40)))
        batch = np.stack([_resize_norm(cv2, c, width) for c in crops])
        preds = self._rec.run(None, {self._rec.get_inputs()[0].name: batch})[0]
        out = []
        for crop, pred in zip(crops, preds, strict=True):
            used = min(width, int(math.ceil(_REC_HEIGHT * crop.shape[1] / max(crop.shape[0], 1))))
            idx = pred.argmax(axis=1)
            prob = pred.max(axis=1)
            keep = (idx != 0) & np.concatenate([[True], idx[1:] != idx[:-1]])
            steps = np.nonzero(keep)[0]
            step_px = width / pred.shape[0]
            chars = []
            for t in steps:
                i = int(idx[t])
                if i < len(self._chars):
                    chars.append(
                        (self._chars[i], float(prob[t]), min(1.0, (t + 0.5) * step_px / max(used, 1)))
                    )
            text = "".join(c for c, _, _ in chars)
            conf = float(np.mean([p for _, p, _ in chars])) if chars else 0.0
            out.append((text, conf, chars))
        return out

    @staticmethod
    def _words(
        quad: list[list[float]], chars: list[tuple[str, float, float]], vertical: bool, flipped: bool
    ) -> list[OcrWord]:
        """Split a line into words and place each on the line's box by its characters' positions."""
        groups: list[list[int]] = []  # indices into chars, one list per word
        cur: list[int] = []
        for i, c in enumerate(chars):
            if c[0].isspace():
                if cur:
                    groups.append(cur)
                cur = []
            else:
                cur.append(i)
        if cur:
            groups.append(cur)
        q = np.asarray(quad, np.float64)
        pos = [c[2] for c in chars]
        words = []
        for g in groups:
            text = "".join(chars[i][0] for i in g)
            conf = float(np.mean([chars[i][1] for i in g]))
            if vertical:
                words.append(OcrWord(text, [list(map(float, p)) for p in q], conf))
                continue
            first, last = g[0], g[-1]
            a = (pos[first - 1] + pos[first]) / 2 if first > 0 else max(0.0, pos[first] * 0.5)
            b = (pos[last + 1] + pos[last]) / 2 if last + 1 < len(pos) else 1.0
            if flipped:
                a, b = 1.0 - b, 1.0 - a
            top_a, top_b = q[0] + a * (q[1] - q[0]), q[0] + b * (q[1] - q[0])
            bot_a, bot_b = q[3] + a * (q[2] - q[3]), q[3] + b * (q[2] - q[3])
            box = [top_a, top_b, bot_b, bot_a]
            words.append(OcrWord(text, [[float(x), float(y)] for x, y in box], conf))
        return words


def _resize_norm(cv2: Any, img: np.ndarray, width: int) -> np.ndarray:
    """Height 48, aspect kept up to ``width``, scaled to [-1, 1] and zero-padded on the right (CHW)."""
    h, w = img.shape[:2]
    rw = min(width, max(1, int(math.ceil(_REC_HEIGHT * w / max(h, 1)))))
    resized = cv2.resize(img, (rw, _REC_HEIGHT)).astype(np.float32)
    out = np.zeros((3, _REC_HEIGHT, width), np.float32)
    out[:, :, :rw] = ((resized / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)
    return out


def _order_clockwise(pts: np.ndarray) -> np.ndarray:
    """Top-left, top-right, bottom-right, bottom-left."""
    xs = pts[np.argsort(pts[:, 0])]
    left, right = xs[:2], xs[2:]
    tl, bl = left[np.argsort(left[:, 1])]
    tr, br = right[np.argsort(right[:, 1])]
    return np.array([tl, tr, br, bl], np.float32)
