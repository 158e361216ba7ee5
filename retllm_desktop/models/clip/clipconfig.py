"""``clip.json`` (:class:`ClipConfig`) and the image preprocessing it describes (open_clip parity).

Preprocessing reproduces open_clip's eval transform on PIL images (torchvision semantics):
``shortest`` = Resize(S) of the shorter side (the long side becomes ``int(S * long / short)``) with
PIL bicubic/bilinear, then CenterCrop(S) with offsets ``int(round((h - S) / 2))``; ``squash`` = resize to
S x S (SigLIP); ``longest`` = resize the longer side to S (``round`` of each side), then pad with
``fill_color`` and center-crop. Then ToTensor (``/ 255``) and Normalize(mean, std), all in float32.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...errors import ModelLoadError, ModelNotFoundError
from .hf_tokenizer import TokenizerSpec

CONFIG_FILENAME = "clip.json"
CLIP_SUBDIR = "clip"
HOW_TO_GET_MODELS = (
    "run `retllm-desktop models download` to get a CLIP model, or "
    "`python -m retllm_desktop.devtools.synthetic_models DIR` for random-weight test models"
)
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
RESIZE_MODES = ("shortest", "squash", "longest")
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
    tokenizer: TokenizerSpec | None = (
        None  # None: the CLIP BPE (ClipTokenizer); else the folder's tokenizer.json
    )
    io: dict[str, str] = field(
        default_factory=dict
    )  # ONNX tensor names: image_input/output, text_input/output
    score: dict[str, Any] | None = None  # how a cosine becomes a match probability (SigLIP: sigmoid)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any], default_name: str = "clip") -> ClipConfig:
        known = {
            "name", "embed_dim", "image_size", "mean", "std", "resize_mode", "interpolation",
            "context_length", "image_model", "text_model", "quantized", "fill_color", "tokenizer", "io",
            "score",
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
                tokenizer=_tokenizer_spec(data.get("tokenizer")),
                io=_io_names(data.get("io")),
                score=_score_spec(data.get("score")),
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
        if self.tokenizer is not None:
            out["tokenizer"] = self.tokenizer.to_dict()
        if self.io:
            out["io"] = dict(self.io)
        if self.score is not None:
            out["score"] = dict(self.score)
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


IO_KEYS = ("image_input", "image_output", "text_input", "text_output")


def _tokenizer_spec(data: Any) -> TokenizerSpec | None:
    if data is None or (
        isinstance(data, dict) and data.get("kind", "clip-bpe") == "clip-bpe" and len(data) <= 1
    ):
        return None
    if not isinstance(data, dict):
        raise ValueError(f"tokenizer must be a table, got {data!r}")
    if data.get("kind") not in (None, "tokenizer.json"):
        raise ValueError(f"unknown tokenizer kind {data.get('kind')!r}")
    return TokenizerSpec.from_dict(data)


def _io_names(data: Any) -> dict[str, str]:
    if not data:
        return {}
    if not isinstance(data, dict) or set(data) - set(IO_KEYS):
        raise ValueError(f"io must map some of {IO_KEYS} to tensor names, got {data!r}")
    return {k: str(v) for k, v in data.items()}


def _score_spec(data: Any) -> dict[str, Any] | None:
    """``{"kind": "sigmoid", "log_scale": s, "bias": b}``: P(match) = sigmoid(exp(s) * cos + b) (SigLIP)."""
    if data is None:
        return None
    if not isinstance(data, dict) or data.get("kind") != "sigmoid":
        raise ValueError(f"score must be {{kind = 'sigmoid', log_scale, bias}}, got {data!r}")
    return {"kind": "sigmoid", "log_scale": float(data["log_scale"]), "bias": float(data["bias"])}


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
