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

Other exports are read too: Immich's (``image``/``text`` int32 -> ``embedding``, batch fixed to 1, run row
by row) and transformers.js SigLIP (``pooler_output``); ``clip.json``'s ``io`` names the tensors, its
``tokenizer`` table the model's own tokenizer.json. ``clip.json`` and preprocessing: ``clipconfig``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...errors import ModelLoadError, ModelNotFoundError
from ..accel import CPU, onnx_providers
from .clipconfig import (  # noqa: F401 - kept importable from here
    CLIP_SUBDIR,
    CONFIG_FILENAME,
    HOW_TO_GET_MODELS,
    OPENAI_MEAN,
    OPENAI_STD,
    RESIZE_MODES,
    ClipConfig,
    l2_normalize,
    preprocess_image,
    resize_shortest_size,
)
from .hf_tokenizer import HFTokenizer
from .tokenizer import VOCAB_FILENAME, ClipTokenizer

log = logging.getLogger(__name__)


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
        self._image_batch: int | None = None  # fixed batch size of the exported graph (Immich: 1), else None
        self._text_batch: int | None = None
        self._tokenizer: ClipTokenizer | HFTokenizer | None = None
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

    def use_key(self, key: str | None) -> None:
        """Store and read this model's vectors under ``key``: the plain name while legacy vectors are used in
        place, or a key already worked out for unchanged files; None works it out from the files again."""
        self._key = key

    @property
    def embed_dim(self) -> int:
        return self._config.embed_dim

    @property
    def image_size(self) -> int:
        return self._config.image_size

    @property
    def tokenizer(self) -> ClipTokenizer | HFTokenizer:
        """The CLIP BPE (OpenAI / open_clip vocabulary) or, when clip.json names one, the model's own
        tokenizer.json run by Hugging Face's ``tokenizers``."""
        if self._tokenizer is None:
            spec = self._config.tokenizer
            if spec is not None:
                self._tokenizer = HFTokenizer(self.model_dir / spec.file, spec, self._config.context_length)
            else:
                local = self.model_dir / VOCAB_FILENAME
                self._tokenizer = ClipTokenizer(
                    local if local.is_file() else None, context_length=self._config.context_length
                )
        return self._tokenizer

    @property
    def pad_id(self) -> int:
        """The id the text rows are padded with (what an attention mask leaves out)."""
        tok = self.tokenizer
        return tok.pad_id if isinstance(tok, HFTokenizer) else 0

    def match_probability(self, cosines: np.ndarray | float) -> np.ndarray | None:
        """P(match) for SigLIP-style models (sigmoid of the scaled cosine plus bias), None for CLIP-style
        ones, whose softmax over a batch of captions has no per-pair probability."""
        spec = self._config.score
        if spec is None:
            return None
        z = np.exp(spec["log_scale"]) * np.asarray(cosines, dtype=np.float64) + spec["bias"]
        return 1.0 / (1.0 + np.exp(-z))

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
            except Exception as e:
                log.warning("CoreML could not load %s (%s); using the CPU", path.name, e)
        try:
            return ort.InferenceSession(str(path), sess_options=opts, providers=[CPU])
        except Exception as e:  # onnxruntime raises several unrelated types
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
        """The embedding output: the name clip.json gives, else a known one (Xenova ``*_embeds``, Immich
        ``embedding``, transformers.js SigLIP ``pooler_output``), else the only output."""
        outputs = sess.get_outputs()
        by_name = {o.name: o for o in outputs}
        kind = "image" if preferred.startswith("image") else "text"
        named = self._config.io.get(f"{kind}_output")
        if named is not None:
            out = by_name.get(named)
        else:
            known = [by_name[n] for n in (preferred, "embedding", "pooler_output") if n in by_name]
            out = known[0] if known else (outputs[0] if len(outputs) == 1 else None)
        if out is None:
            raise ModelLoadError(f"{path}: no output named {named or preferred!r} (has {list(by_name)})")
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
        named = self._config.io.get("image_input")
        if named is not None and inp.name != named:
            raise ModelLoadError(f"{self.image_path}: input is {inp.name!r}, clip.json says {named!r}")
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
        self._image_batch = _fixed_batch(shape)
        return inp.name, out.name

    def _validate_text(self, sess) -> tuple[str, str, Any]:
        # Hub exports (optimum) may also take an attention mask: fed as "token is not padding".
        inputs = [i for i in sess.get_inputs() if i.name != "attention_mask"]
        self._text_has_mask = len(inputs) < len(sess.get_inputs())
        if len(inputs) != 1:
            raise ModelLoadError(f"{self.text_path}: expected one input, got {[i.name for i in inputs]}")
        inp = inputs[0]
        named = self._config.io.get("text_input")
        if named is not None and inp.name != named:
            raise ModelLoadError(f"{self.text_path}: input is {inp.name!r}, clip.json says {named!r}")
        c = self._config.context_length
        shape = list(inp.shape or [])
        dtypes = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
        if inp.type not in dtypes or len(shape) != 2 or not _dim_ok(shape[1], c):
            raise ModelLoadError(
                f"{self.text_path}: input {inp.name!r} is {inp.type} {shape}, expected int64 [batch, {c}]"
            )
        out = self._pick_output(sess, "text_embeds", self.text_path)
        self._text_batch = _fixed_batch(shape)
        return inp.name, out.name, dtypes[inp.type]

    @property
    def loaded(self) -> bool:
        """Whether a tower's session is in memory (search needs only the text tower, indexing the image one)."""
        return self._image_session is not None or self._text_session is not None

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
        step = self._image_batch or len(batch)
        embs = [
            sess.run([out_name], {in_name: np.ascontiguousarray(batch[i : i + step])})[0]
            for i in range(0, len(batch), step)
        ]
        return l2_normalize(np.concatenate(embs, axis=0))

    def encode_texts(self, texts: Sequence[str] | str) -> np.ndarray:
        """Texts -> float32 (N,D) unit vectors."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            return np.zeros((0, self._config.embed_dim), np.float32)
        ids = self.tokenizer(texts)
        sess, (in_name, out_name, dtype) = self._text()
        step = self._text_batch or len(ids)
        pad = self.pad_id
        embs = []
        for i in range(0, len(ids), step):
            chunk = ids[i : i + step]
            feed = {in_name: chunk.astype(dtype, copy=False)}
            if self._text_has_mask:
                feed["attention_mask"] = (chunk != pad).astype(dtype)
            embs.append(sess.run([out_name], feed)[0])
        return l2_normalize(np.concatenate(embs, axis=0))

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


def _fixed_batch(shape: list[Any]) -> int | None:
    """The batch size an exported graph is fixed to (Immich's exports: 1), None when it is dynamic."""
    first = shape[0] if shape else None
    return first if isinstance(first, int) and first > 0 else None


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
        except Exception as e:
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
