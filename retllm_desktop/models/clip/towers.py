"""CLIP image and text towers run with onnxruntime (no torch at run time).

Model directory layout (one folder per model)::

    <models_dir>/clip/<model-name>/
        clip.json                       # ClipConfig (below)
        image.onnx                      # "pixel_values" float32 (N,3,S,S) -> "image_embeds" float32 (N,D)
        text.onnx                       # "input_ids" int64 (N,context_length) -> "text_embeds" float32 (N,D)
        image_int8.onnx, text_int8.onnx # optional dynamic-int8 variants (ClipModel(quantized=True))
        bpe_simple_vocab_16e6.txt.gz    # optional; else the vocab shipped in resources/ is used

Embeddings may be unnormalized in the ONNX files; :class:`ClipModel` L2-normalizes them. The batch
dimension is dynamic. ``clip.json`` example::

    {"name": "ViT-B-32-openai", "embed_dim": 512, "image_size": 224,
     "mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
     "resize_mode": "shortest", "interpolation": "bicubic", "context_length": 77,
     "image_model": "image.onnx", "text_model": "text.onnx",
     "quantized": {"image_model": "image_int8.onnx", "text_model": "text_int8.onnx"}}

Preprocessing reproduces open_clip's eval transform on PIL images (torchvision semantics):
``shortest`` = Resize(S) of the shorter side (the long side becomes ``int(S * long / short)``) with
PIL bicubic, then CenterCrop(S) with offsets ``int(round((h - S) / 2))``; ``squash`` = resize to S x S;
``longest`` = resize the longer side to S (``round`` of each side), then pad with ``fill_color`` and
center-crop. Then ToTensor (``/ 255``) and Normalize(mean, std), all in float32.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...errors import ModelLoadError, ModelNotFoundError
from ..accel import CPU, onnx_providers
from .tokenizer import VOCAB_FILENAME, ClipTokenizer

CONFIG_FILENAME = "clip.json"
CLIP_SUBDIR = "clip"
HOW_TO_GET_MODELS = (
    "run `retllm-desktop models download` to get a CLIP model, or "
    "`python -m retllm_desktop.devtools.synthetic_models DIR` for random-weight test models"
)
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
RESIZE_MODES = ("shortest", "squash", "longest")
log = logging.getLogger(__name__)
_INTERPOLATIONS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


@dataclass
class ClipConfig:
    name: str
    embed_dim: int
    image_size: int
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    resize_mode: str = "shortest"
    interpolation: str = "bicubic"
    context_length: int = 77
    image_model: str = "image.onnx"
    text_model: str = "text.onnx"
    quantized_image_model: str | None = None
    quantized_text_model: str | None = None
    fill_color: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any], default_name: str = "clip") -> ClipConfig:
        known = {
            "name", "embed_dim", "image_size", "mean", "std", "resize_mode", "interpolation",
            "context_length", "image_model", "text_model", "quantized", "fill_color",
        }  # fmt: skip
        try:
            image_size = data["image_size"]
            if isinstance(image_size, (list, tuple)):
                if len(set(image_size)) != 1:
                    raise ValueError(f"only square image_size is supported, got {image_size}")
                image_size = image_size[0]
            quant = data.get("quantized") or {}
            cfg = cls(
                name=str(data.get("name") or default_name),
                embed_dim=int(data["embed_dim"]),
                image_size=int(image_size),
                mean=_triple(data.get("mean", OPENAI_MEAN)),
                std=_triple(data.get("std", OPENAI_STD)),
                resize_mode=str(data.get("resize_mode", "shortest")),
                interpolation=str(data.get("interpolation", "bicubic")),
                context_length=int(data.get("context_length", 77)),
                image_model=str(data.get("image_model", "image.onnx")),
                text_model=str(data.get("text_model", "text.onnx")),
                quantized_image_model=quant.get("image_model"),
                quantized_text_model=quant.get("text_model"),
                fill_color=int(data.get("fill_color", 0)),
                extra={k: v for k, v in data.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ModelLoadError(f"invalid {CONFIG_FILENAME}: {e!r}") from e
        if cfg.resize_mode not in RESIZE_MODES:
            raise ModelLoadError(
                f"invalid {CONFIG_FILENAME}: resize_mode {cfg.resize_mode!r} not in {RESIZE_MODES}"
            )
        if cfg.interpolation not in _INTERPOLATIONS:
            raise ModelLoadError(
                f"invalid {CONFIG_FILENAME}: unsupported interpolation {cfg.interpolation!r}"
            )
        if cfg.embed_dim <= 0 or cfg.image_size <= 0 or cfg.context_length < 2:
            raise ModelLoadError(f"invalid {CONFIG_FILENAME}: non-positive sizes")
        if min(cfg.std) <= 0:
            raise ModelLoadError(f"invalid {CONFIG_FILENAME}: std must be positive")
        return cfg

    @classmethod
    def load(cls, model_dir: Path) -> ClipConfig:
        path = Path(model_dir) / CONFIG_FILENAME
        if not path.is_file():
            raise ModelNotFoundError(f"CLIP model config not found: {path}; {HOW_TO_GET_MODELS}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelLoadError(f"cannot read {path}: {e}") from e
        if not isinstance(data, dict):
            raise ModelLoadError(f"invalid {path}: expected a JSON object")
        return cls.from_dict(data, default_name=Path(model_dir).name)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "embed_dim": self.embed_dim,
            "image_size": self.image_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "resize_mode": self.resize_mode,
            "interpolation": self.interpolation,
            "context_length": self.context_length,
            "image_model": self.image_model,
            "text_model": self.text_model,
        }
        if self.fill_color:
            out["fill_color"] = self.fill_color
        if self.quantized_image_model or self.quantized_text_model:
            out["quantized"] = {
                "image_model": self.quantized_image_model,
                "text_model": self.quantized_text_model,
            }
        out.update(self.extra)
        return out

    def save(self, model_dir: Path) -> None:
        path = Path(model_dir) / CONFIG_FILENAME
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)


def _triple(values: Any) -> tuple[float, float, float]:
    if isinstance(values, (int, float)):
        values = (values,) * 3
    vals = tuple(float(v) for v in values)
    if len(vals) != 3:
        raise ValueError(f"expected 3 values, got {len(vals)}")
    return vals  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------------
# Preprocessing (open_clip / torchvision parity)


def resize_shortest_size(width: int, height: int, size: int) -> tuple[int, int]:
    """torchvision ``Resize(size)`` output (w, h): short side -> size, long side -> int(size * long / short)."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


def _center_crop_box(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return left, top, left + size, top + size


def preprocess_image(img: Image.Image, cfg: ClipConfig) -> np.ndarray:
    """PIL image -> float32 (3, S, S), equal to open_clip's eval transform for ``cfg``."""
    s = cfg.image_size
    resample = _INTERPOLATIONS[cfg.interpolation]
    if img.mode != "RGB":
        img = img.convert("RGB")
    w, h = img.size
    if w < 1 or h < 1:
        raise ValueError("image has no pixels")
    if cfg.resize_mode == "squash":
        if (w, h) != (s, s):
            img = img.resize((s, s), resample)
    elif cfg.resize_mode == "longest":
        ratio = max(h / s, w / s)
        nh, nw = max(1, round(h / ratio)), max(1, round(w / ratio))
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), resample)
        if nw < s or nh < s:  # pad like torchvision F.pad with fill, then crop
            pw, ph = max(s, nw), max(s, nh)
            fill = (cfg.fill_color,) * 3
            canvas = Image.new("RGB", (pw, ph), fill)
            canvas.paste(img, ((pw - nw) // 2 if pw > nw else 0, (ph - nh) // 2 if ph > nh else 0))
            img, nw, nh = canvas, pw, ph
        if (nw, nh) != (s, s):
            img = img.crop(_center_crop_box(nw, nh, s))
    else:  # shortest
        nw, nh = resize_shortest_size(w, h, s)
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), resample)
        if (nw, nh) != (s, s):
            img = img.crop(_center_crop_box(nw, nh, s))
    arr = np.asarray(img, dtype=np.uint8).astype(np.float32)
    arr /= np.float32(255.0)
    arr -= np.asarray(cfg.mean, dtype=np.float32)
    arr /= np.asarray(cfg.std, dtype=np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------------
# Model discovery


def list_clip_models(models_dir: Path) -> list[Path]:
    """Model dirs (sorted by name) under ``<models_dir>/clip`` that contain a clip.json."""
    root = Path(models_dir) / CLIP_SUBDIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / CONFIG_FILENAME).is_file())


def find_clip_model(models_dir: Path, name: str | None = None) -> Path:
    """The directory of CLIP model ``name`` (or the first one, sorted by name, when ``name`` is None)."""
    models_dir = Path(models_dir)
    root = models_dir / CLIP_SUBDIR
    available = list_clip_models(models_dir)
    if name:
        candidate = root / name
        if (candidate / CONFIG_FILENAME).is_file():
            return candidate
        as_path = Path(name).expanduser()
        if (as_path / CONFIG_FILENAME).is_file():
            return as_path
        have = ", ".join(p.name for p in available) or "none"
        raise ModelNotFoundError(
            f"CLIP model {name!r} not found: {candidate / CONFIG_FILENAME} does not exist "
            f"(installed: {have}); {HOW_TO_GET_MODELS}"
        )
    if not available:
        raise ModelNotFoundError(
            f"no CLIP model found in {root} (no */{CONFIG_FILENAME}); {HOW_TO_GET_MODELS}"
        )
    return available[0]


# --------------------------------------------------------------------------------------------------
# Model


def _dim_ok(actual: Any, expected: int) -> bool:
    """A symbolic/unknown ONNX dim matches anything; a concrete one must be equal."""
    return not isinstance(actual, int) or actual <= 0 or actual == expected


class ClipModel:
    """A CLIP model folder; onnxruntime sessions are created lazily (text and image separately).

    Thread-safe for concurrent ``encode_*`` calls (onnxruntime sessions are).
    """

    def __init__(self, model_dir: str | Path, threads: int | None = None, quantized: bool = False):
        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise ModelNotFoundError(f"CLIP model folder not found: {self.model_dir}; {HOW_TO_GET_MODELS}")
        self._config = ClipConfig.load(self.model_dir)
        self.threads = threads
        self.quantized = quantized
        cfg = self._config
        if quantized:
            image_file = cfg.quantized_image_model or _int8_name(cfg.image_model)
            text_file = cfg.quantized_text_model or _int8_name(cfg.text_model)
        else:
            image_file, text_file = cfg.image_model, cfg.text_model
        self.image_path = self.model_dir / image_file
        self.text_path = self.model_dir / text_file
        for p in (self.image_path, self.text_path):
            if not p.is_file():
                hint = (
                    "create it with retllm_desktop.models.clip.quantize_dynamic_int8(model_dir)"
                    if quantized
                    else HOW_TO_GET_MODELS
                )
                raise ModelNotFoundError(f"CLIP model file missing: {p}; {hint}")
        self._lock = threading.Lock()
        self._image_session: Any = None
        self._text_session: Any = None
        self._image_io: tuple[str, str] | None = None
        self._text_io: tuple[str, str, Any] | None = None
        self._tokenizer: ClipTokenizer | None = None
        self._text_has_mask = False
        self._key: str | None = None

    # -- properties -------------------------------------------------------------------------------
    @property
    def config(self) -> ClipConfig:
        return self._config

    @property
    def name(self) -> str:
        """Embeddings are stored per name, so the int8 variant (slightly different vectors) has its own."""
        return f"{self._config.name}-int8" if self.quantized else self._config.name

    @property
    def key(self) -> str:
        """What the catalog stores this model's embeddings under: its name plus a fingerprint of its files,
        so a different model under an old name is a new model (see ``models.clip.identity``)."""
        if self._key is None:
            from .identity import clip_fingerprint, embedding_key

            fp = clip_fingerprint(self.image_path, self.text_path, self.embed_dim, self.image_size)
            self._key = embedding_key(self.name, fp)
        return self._key

    @property
    def embed_dim(self) -> int:
        return self._config.embed_dim

    @property
    def image_size(self) -> int:
        return self._config.image_size

    @property
    def tokenizer(self) -> ClipTokenizer:
        if self._tokenizer is None:
            local = self.model_dir / VOCAB_FILENAME
            self._tokenizer = ClipTokenizer(
                local if local.is_file() else None, context_length=self._config.context_length
            )
        return self._tokenizer

    # -- sessions ---------------------------------------------------------------------------------
    def _create_session(self, path: Path):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if self.threads:
            opts.intra_op_num_threads = int(self.threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        providers = onnx_providers(ort.get_available_providers())
        if len(providers) > 1:  # CoreML on a Mac; a model it cannot compile falls back to the CPU
            try:
                return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
            except Exception as e:  # noqa: BLE001
                log.warning("CoreML could not load %s (%s); using the CPU", path.name, e)
        try:
            return ort.InferenceSession(str(path), sess_options=opts, providers=[CPU])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises several unrelated types
            raise ModelLoadError(f"cannot load CLIP model file {path}: {e}") from e

    def _image(self):
        with self._lock:
            if self._image_session is None:
                sess = self._create_session(self.image_path)
                self._image_io = self._validate_image(sess)
                self._image_session = sess
            return self._image_session, self._image_io

    def _text(self):
        with self._lock:
            if self._text_session is None:
                sess = self._create_session(self.text_path)
                self._text_io = self._validate_text(sess)
                self._text_session = sess
            return self._text_session, self._text_io

    def _pick_output(self, sess, preferred: str, path: Path) -> Any:
        outputs = sess.get_outputs()
        by_name = {o.name: o for o in outputs}
        out = by_name.get(preferred) or (outputs[0] if len(outputs) == 1 else None)
        if out is None:
            raise ModelLoadError(f"{path}: no output named {preferred!r} (has {list(by_name)})")
        shape = list(out.shape or [])
        if len(shape) != 2 or not _dim_ok(shape[1], self._config.embed_dim):
            raise ModelLoadError(
                f"{path}: output {out.name!r} has shape {shape}, expected [batch, {self._config.embed_dim}] "
                f"(embed_dim in {CONFIG_FILENAME})"
            )
        return out

    def _validate_image(self, sess) -> tuple[str, str]:
        inputs = sess.get_inputs()
        if len(inputs) != 1:
            raise ModelLoadError(f"{self.image_path}: expected one input, got {[i.name for i in inputs]}")
        inp = inputs[0]
        s = self._config.image_size
        shape = list(inp.shape or [])
        if (
            inp.type != "tensor(float)"
            or len(shape) != 4
            or not all(_dim_ok(a, b) for a, b in zip(shape[1:], (3, s, s), strict=True))
        ):
            raise ModelLoadError(
                f"{self.image_path}: input {inp.name!r} is {inp.type} {shape}, expected float32 [batch, 3, {s}, {s}]"
            )
        out = self._pick_output(sess, "image_embeds", self.image_path)
        return inp.name, out.name

    def _validate_text(self, sess) -> tuple[str, str, Any]:
        # Hub exports (optimum) may also take an attention mask: fed as "token is not padding".
        inputs = [i for i in sess.get_inputs() if i.name != "attention_mask"]
        self._text_has_mask = len(inputs) < len(sess.get_inputs())
        if len(inputs) != 1:
            raise ModelLoadError(f"{self.text_path}: expected one input, got {[i.name for i in inputs]}")
        inp = inputs[0]
        c = self._config.context_length
        shape = list(inp.shape or [])
        dtypes = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
        if inp.type not in dtypes or len(shape) != 2 or not _dim_ok(shape[1], c):
            raise ModelLoadError(
                f"{self.text_path}: input {inp.name!r} is {inp.type} {shape}, expected int64 [batch, {c}]"
            )
        out = self._pick_output(sess, "text_embeds", self.text_path)
        return inp.name, out.name, dtypes[inp.type]

    def load(self) -> ClipModel:
        """Create both sessions now (otherwise they are created on first use)."""
        self._image()
        self._text()
        return self

    # -- encoding ---------------------------------------------------------------------------------
    def preprocess(self, img: Image.Image) -> np.ndarray:
        return preprocess_image(img, self._config)

    def encode_images(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N,3,S,S) preprocessed pixels -> float32 (N,D) unit vectors."""
        s = self._config.image_size
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim == 3:
            batch = batch[None]
        if batch.ndim != 4 or batch.shape[1:] != (3, s, s):
            raise ValueError(f"expected pixel batch of shape (N, 3, {s}, {s}), got {batch.shape}")
        if batch.shape[0] == 0:
            return np.zeros((0, self._config.embed_dim), np.float32)
        sess, (in_name, out_name) = self._image()
        (emb,) = sess.run([out_name], {in_name: np.ascontiguousarray(batch)})
        return l2_normalize(emb)

    def encode_texts(self, texts: Sequence[str] | str) -> np.ndarray:
        """Texts -> float32 (N,D) unit vectors."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            return np.zeros((0, self._config.embed_dim), np.float32)
        ids = self.tokenizer(texts)
        sess, (in_name, out_name, dtype) = self._text()
        feed = {in_name: ids.astype(dtype, copy=False)}
        if self._text_has_mask:
            feed["attention_mask"] = (ids != 0).astype(dtype)
        (emb,) = sess.run([out_name], feed)
        return l2_normalize(emb)

    def encode_image_paths(self, paths: Iterable[str | Path], batch_size: int = 16) -> np.ndarray:
        """Decode (oriented, draft-decoded JPEGs), preprocess and embed photos; raises ImageError on a bad file."""
        from ...imaging import load_rgb

        s = self._config.image_size
        chunks: list[np.ndarray] = []
        pending: list[np.ndarray] = []
        for p in paths:
            pending.append(self.preprocess(load_rgb(p, min_side=s)))
            if len(pending) >= batch_size:
                chunks.append(self.encode_images(np.stack(pending)))
                pending = []
        if pending:
            chunks.append(self.encode_images(np.stack(pending)))
        if not chunks:
            return np.zeros((0, self._config.embed_dim), np.float32)
        return np.concatenate(chunks, axis=0)

    # -- lifetime ---------------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._image_session = None
            self._text_session = None

    def __enter__(self) -> ClipModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        q = ", int8" if self.quantized else ""
        return f"ClipModel({self.name!r}, {self.model_dir}{q})"


def _int8_name(filename: str) -> str:
    stem = filename[:-5] if filename.endswith(".onnx") else filename
    return f"{stem}_int8.onnx"


def _quiet_preprocess_hint(record: logging.LogRecord) -> bool:
    """Drop onnxruntime's 'consider to run pre-processing before quantization' root-logger hint."""
    return "pre-processing before quantization" not in record.getMessage()


def quantize_dynamic_int8(model_dir: str | Path, weight_type: str = "qint8") -> dict[str, Path]:
    """Write ``image_int8.onnx`` / ``text_int8.onnx`` (dynamic int8 weights) and record them in clip.json.

    Only MatMul and Gather (the token embedding table) are quantized: ConvInteger with int8 weights has
    no CPU kernel in onnxruntime, and the patch-embedding Conv is a tiny share of the compute.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model_dir = Path(model_dir)
    cfg = ClipConfig.load(model_dir)
    qtype = {"qint8": QuantType.QInt8, "quint8": QuantType.QUInt8}[weight_type.lower()]
    written: dict[str, Path] = {}
    for key, src_name in (("image", cfg.image_model), ("text", cfg.text_model)):
        src = model_dir / src_name
        if not src.is_file():
            raise ModelNotFoundError(f"CLIP model file missing: {src}; {HOW_TO_GET_MODELS}")
        dst = model_dir / _int8_name(src_name)
        tmp = dst.with_name(dst.name + ".tmp.onnx")
        root_logger = logging.getLogger()
        root_logger.addFilter(_quiet_preprocess_hint)
        try:
            quantize_dynamic(
                str(src),
                str(tmp),
                weight_type=qtype,
                op_types_to_quantize=["MatMul", "Gather"],
                per_channel=False,
            )
        except Exception as e:  # noqa: BLE001
            tmp.unlink(missing_ok=True)
            raise ModelLoadError(f"int8 quantization of {src} failed: {e}") from e
        finally:
            root_logger.removeFilter(_quiet_preprocess_hint)
        tmp.replace(dst)
        written[key] = dst
    cfg.quantized_image_model = written["image"].name
    cfg.quantized_text_model = written["text"].name
    cfg.save(model_dir)
    return written
