"""Fine rerank with a local multimodal LLM through llama-cpp-python / libmtmd (the RetLLM method).

For each candidate photo the model is asked "Does the image match the caption: <query>? Please directly
output True or False" (prompts in ``resources/prompts.toml``) and the score is P(True) at the first
generated position, read from the full-vocabulary logits. Uncertain answers get a second look (visual
enhancement, see ``MllmScorer.score``).

Speed on CPU comes from three caches, none of which changes the numbers (tests check this):

* image embeddings (mmproj output) on disk (``EmbeddingCache``), keyed by model, photo content key and
  preprocessing variant: a photo is encoded once per model;
* llama KV-state snapshots in memory, taken right after a candidate image was decoded (the prompt up to
  there does not depend on the query text): a new query over the same photos only evaluates its text
  tokens;
* the live KV cache: each prompt is compared token by token with what the context already holds and
  only the differing suffix is evaluated (shared system prefix, query image of composed queries,
  the first pass before a visual-enhancement continuation, explanation generation).

The prompt text is rendered exactly as llama-cpp-python's chat handlers render it (Llava15ChatHandler,
Qwen25VLChatHandler, MTMDChatHandler with the GGUF's template) and tokenised with ``mtmd_tokenize``
with the same flags, but evaluated chunk by chunk with ``mtmd_encode_chunk`` /
``mtmd_helper_decode_image_chunk`` so cached embeddings can be fed back in.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import hashlib
import json
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...config import default_threads, resource_path
from ...errors import CancelledError, ModelLoadError, ModelNotFoundError, PromptTooLongError, RetllmError
from .cache import EmbeddingCache
from .fine_score import VE_MODES, FineScore

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

HANDLERS = ("llava15", "qwen25vl", "gguf-template")
MLLM_SUBDIR = "mllm"
META_FILE = "mllm.json"
DEFAULT_IMAGE_MAX_SIDE = 768
DEFAULT_MARKER = "<__media__>"  # mtmd_default_marker(); used when rendering without the library

__all__ = [
    "FineScore",
    "MllmConfig",
    "MllmScorer",
    "RegistryEntry",
    "find_mllm_model",
    "load_prompts",
    "load_registry",
    "render_prompt",
]


# ---------------------------------------------------------------------------------------------------
# Model description, registry, discovery
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RegistryEntry:
    name: str
    handler: str
    hf_repo: str
    gguf: str
    mmproj: str
    size_mb: int = 0
    mmproj_size_mb: int = 0
    licence: str = ""
    image_max_side: int = DEFAULT_IMAGE_MAX_SIDE
    notes: str = ""


def load_registry(path: Path | None = None) -> list[RegistryEntry]:
    """Entries of ``resources/mllm_models.toml`` (default model first)."""
    data = tomllib.loads(Path(path or resource_path("mllm_models.toml")).read_text(encoding="utf-8"))
    fields = set(RegistryEntry.__dataclass_fields__)
    entries = [RegistryEntry(**{k: v for k, v in m.items() if k in fields}) for m in data.get("model", [])]
    default = data.get("default")
    entries.sort(key=lambda e: e.name != default)
    return entries


def _how_to_get(models_dir: Path, name: str | None = None) -> str:
    try:
        reg = load_registry()
    except (OSError, ValueError):
        reg = []
    entry = next((e for e in reg if e.name == name), None) or (reg[0] if reg else None)
    if entry is None:
        return ""
    return (
        f" Install one with `retllm-desktop models download {entry.name}` ({entry.licence}, "
        f"~{entry.size_mb + entry.mmproj_size_mb} MB), or register GGUF files you already have with "
        "`retllm-desktop models add --mllm MODEL.gguf --mmproj MMPROJ.gguf`."
    )


@dataclass(frozen=True)
class MllmConfig:
    """Contents of ``<models_dir>/mllm/<name>/mllm.json`` with paths resolved."""

    name: str
    handler: str
    model_path: Path
    mmproj_path: Path
    chat_format: str | None = None
    image_max_side: int = DEFAULT_IMAGE_MAX_SIDE
    model_dir: Path = Path(".")
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dir(cls, model_dir: str | os.PathLike[str]) -> MllmConfig:
        d = Path(model_dir)
        meta_path = d / META_FILE
        if not meta_path.is_file():
            raise ModelNotFoundError(f"No multimodal model description {meta_path}.")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"Cannot read {meta_path}: {e}") from e
        handler = meta.get("handler", "gguf-template")
        if handler not in HANDLERS:
            raise ModelLoadError(f"{meta_path}: unknown handler {handler!r}; expected one of {HANDLERS}.")
        cfg = cls(
            name=str(meta.get("name") or d.name),
            handler=handler,
            model_path=d / meta.get("model", "model.gguf"),
            mmproj_path=d / meta.get("mmproj", "mmproj.gguf"),
            chat_format=meta.get("chat_format"),
            image_max_side=int(meta.get("image_max_side") or DEFAULT_IMAGE_MAX_SIDE),
            model_dir=d,
            extra={k: v for k, v in meta.items() if k not in {"name", "handler", "model", "mmproj"}},
        )
        for what, p in (("text model", cfg.model_path), ("mmproj (vision projector)", cfg.mmproj_path)):
            if not p.is_file():
                raise ModelNotFoundError(
                    f"Multimodal model {cfg.name!r}: {what} file {p} is missing."
                    + _how_to_get(d.parent.parent, cfg.name)
                )
        return cfg


def find_mllm_model(models_dir: str | os.PathLike[str], name: str | None = None) -> Path:
    """Directory of the named (or only/first, alphabetically) multimodal model under ``<models_dir>/mllm``."""
    root = Path(models_dir) / MLLM_SUBDIR
    if name is not None:
        d = root / name
        if (d / META_FILE).is_file():
            return d
        have = sorted(p.parent.name for p in root.glob(f"*/{META_FILE}")) if root.is_dir() else []
        raise ModelNotFoundError(
            f"Multimodal model {name!r} not found: {d / META_FILE} is missing"
            + (f" (installed: {', '.join(have)})." if have else ".")
            + _how_to_get(Path(models_dir), name)
        )
    found = sorted(p.parent for p in root.glob(f"*/{META_FILE}")) if root.is_dir() else []
    if not found:
        raise ModelNotFoundError(
            f"No multimodal LLM installed: expected {root}/<name>/{META_FILE} with a GGUF text model and an "
            f"mmproj file (needed for the fine rerank; coarse CLIP search works without it)."
            + _how_to_get(Path(models_dir))
        )
    return found[0]


# ---------------------------------------------------------------------------------------------------
# Prompts
# ---------------------------------------------------------------------------------------------------
_PROMPT_CACHE: dict[Path, dict[str, Any]] = {}


def load_prompts(path: Path | None = None) -> dict[str, Any]:
    p = Path(path or resource_path("prompts.toml"))
    if p not in _PROMPT_CACHE:
        _PROMPT_CACHE[p] = tomllib.loads(p.read_text(encoding="utf-8"))
    return _PROMPT_CACHE[p]


def _query_kind(text: str | None, query_image: object | None) -> str:
    if query_image is None:
        if not (text and text.strip()):
            raise RetllmError("The query needs text or a query image.")
        return "text"
    return "composed" if text and text.strip() else "image"


def _build_parts(spec: Sequence[str], query: str | None, images: dict[str, Any]) -> list[dict[str, Any]]:
    """prompts.toml parts -> content list; images are {"type": "image", "ref": ...} placeholders."""
    out: list[dict[str, Any]] = []
    for part in spec:
        if part in ("<candidate>", "<query>"):
            ref = images.get(part[1:-1])
            if ref is None:
                raise RetllmError(f"Prompt needs a {part[1:-1]} image.")
            out.append({"type": "image", "ref": ref})
        else:
            out.append({"type": "text", "text": part.replace("{query}", (query or "").strip())})
    return out


def _placeholder(i: int) -> str:
    return f"\x1fretllm-image-{i}\x1f"


# LLaVA-1.5's own conversation format ("<system> USER: <image>\n<text> ASSISTANT:"), used instead of
# llama-cpp-python's Llava15ChatHandler template, which (under trim_blocks) glues "ASSISTANT:" to the
# question and moves every image of a turn before all of its text, separating "Query image"/"Candidate
# image" labels from their images in composed queries.
LLAVA15_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message.role == 'system' %}{{ message.content }}"
    "{% elif message.role == 'user' %}{{ ' USER: ' }}"
    "{% if message.content is string %}{{ message.content }}"
    "{% else %}{% for c in message.content %}"
    "{% if c.type == 'image_url' %}{{ c.image_url.url }}{{ '\n' }}"
    "{% elif c.type == 'text' %}{{ c.text }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% elif message.role == 'assistant' and message.content is not none %}"
    "{{ ' ASSISTANT: ' }}{{ message.content }}{{ '</s>' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ ' ASSISTANT:' }}{% endif %}"
)


def render_prompt(
    handler: str,
    messages: Sequence[dict[str, Any]],
    *,
    chat_template: str | None = None,
    bos_token: str = "",
    eos_token: str = "",
    marker: str = DEFAULT_MARKER,
) -> tuple[str, list[Any]]:
    """Render messages the way llama-cpp-python's chat handler for ``handler`` does.

    ``messages``: ``{"role", "content"}`` where content is a string or a list of ``{"type": "text",
    "text"}`` / ``{"type": "image", "ref": obj}`` parts. Returns the prompt text with one media ``marker``
    per image and the image refs in the order their markers appear (the llava15 template moves all
    images of a message before its text, as the handler does).
    """
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    refs: list[Any] = []

    def conv_part(part: dict[str, Any], image_as_text: bool) -> dict[str, Any]:
        if part["type"] != "image":
            return dict(part)
        refs.append(part["ref"])
        ph = _placeholder(len(refs) - 1)
        if image_as_text:  # MTMDChatHandler turns image parts into text parts holding the marker
            return {"type": "text", "text": ph}
        return {"type": "image_url", "image_url": {"url": ph}}

    def conv(msgs: Sequence[dict[str, Any]], image_as_text: bool) -> list[dict[str, Any]]:
        out = []
        for m in msgs:
            c = m["content"]
            if isinstance(c, list):
                c = [conv_part(p, image_as_text) for p in c]
            out.append({**m, "content": c})
        return out

    if handler in ("llava15", "qwen25vl"):
        from llama_cpp.llama_chat_format import Llava15ChatHandler, Qwen25VLChatHandler

        cls = Llava15ChatHandler if handler == "llava15" else Qwen25VLChatHandler
        msgs = conv(messages, image_as_text=False)
        has_system = any(m["role"] == "system" and m.get("content") for m in msgs)
        if not has_system and cls.DEFAULT_SYSTEM_MESSAGE is not None:
            msgs = [{"role": "system", "content": cls.DEFAULT_SYSTEM_MESSAGE}] + msgs
        chat_format = LLAVA15_TEMPLATE if handler == "llava15" else cls.CHAT_FORMAT
        # Deliberate deviation from llama-cpp-python's handler: Jinja drops a template's trailing newline
        # by default, so the handler's Qwen2.5-VL prompt ends "<|im_start|>assistant" without the "\n" the
        # model was trained with, and its first token is then often "\n" instead of True/False.
        template = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=handler == "qwen25vl"
        ).from_string(chat_format)
        text = template.render(
            messages=msgs, add_generation_prompt=True, eos_token=eos_token, bos_token=bos_token
        )
    elif handler == "gguf-template":
        import jinja2.ext
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        if not chat_template:
            raise ModelLoadError("The GGUF has no tokenizer.chat_template; set handler in mllm.json.")
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[Jinja2ChatFormatter.IgnoreGenerationTags, jinja2.ext.loopcontrols],
        )
        env.filters["tojson"] = Jinja2ChatFormatter.tojson

        def raise_exception(message: str) -> None:
            raise ValueError(message)

        text = env.from_string(chat_template).render(
            messages=conv(messages, image_as_text=True),
            add_generation_prompt=True,
            eos_token=eos_token,
            bos_token=bos_token,
            raise_exception=raise_exception,
            functions=None,
            function_call=None,
            tools=None,
            tool_choice=None,
            strftime_now=Jinja2ChatFormatter.strftime_now,
        )
    else:
        raise ValueError(f"unknown handler {handler!r}")

    positions = []
    for i in range(len(refs)):
        pos = text.find(_placeholder(i))
        if pos < 0:
            raise RetllmError(f"The {handler} chat template dropped an image from the prompt.")
        positions.append((pos, i))
    ordered = [refs[i] for _, i in sorted(positions)]
    for i in range(len(refs)):
        text = text.replace(_placeholder(i), marker)
    return text, ordered


# ---------------------------------------------------------------------------------------------------
# Probabilities
# ---------------------------------------------------------------------------------------------------
def answer_stats(
    logits: np.ndarray, true_ids: Sequence[int], false_ids: Sequence[int]
) -> tuple[float, float, float]:
    """(P(True), P(False), normalised top-10 entropy) from raw next-token logits (full vocabulary)."""
    x = np.asarray(logits, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise RetllmError("The multimodal model produced non-finite logits.")
    e = np.exp(x - x.max())
    p = e / e.sum()
    p_true = float(p[list(true_ids)].sum()) if len(true_ids) else 0.0
    p_false = float(p[list(false_ids)].sum()) if len(false_ids) else 0.0
    k = min(10, p.size)
    top = np.partition(p, p.size - k)[p.size - k :]
    q = top / top.sum()
    q = q[q > 0]
    ent = float(-(q * np.log(q)).sum() / math.log(k)) if k > 1 else 0.0
    return p_true, p_false, min(max(ent, 0.0), 1.0)


def combine_passes(
    first: tuple[float, float, float], second: tuple[float, float, float]
) -> tuple[float, float, float]:
    """Confidence-weighted mean of two looks: c_i = max(1 - H_i, 0.05), x = (c1*x1 + c2*x2) / (c1 + c2)."""
    c1 = max(1.0 - first[2], 0.05)
    c2 = max(1.0 - second[2], 0.05)
    return tuple((c1 * a + c2 * b) / (c1 + c2) for a, b in zip(first, second, strict=True))  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------------
# llama.cpp plumbing
# ---------------------------------------------------------------------------------------------------
_LOG_LOCK = threading.Lock()
_LOG_CALLBACKS: list[Any] = []  # keep ctypes callbacks alive for the life of the process


def _silence_native_logs() -> None:
    with _LOG_LOCK:
        if _LOG_CALLBACKS:
            return
        import llama_cpp
        from llama_cpp import mtmd_cpp

        cb = llama_cpp.llama_log_callback(lambda level, text, user_data: None)
        _LOG_CALLBACKS.append(cb)
        llama_cpp.llama_log_set(cb, None)
        for name in ("mtmd_log_set", "mtmd_helper_log_set"):
            fn = getattr(mtmd_cpp, name, None)
            if fn is not None:
                try:
                    fn(cb, None)
                except (AttributeError, OSError):  # pragma: no cover - older libmtmd
                    pass


def _check_gguf(path: Path, what: str) -> None:
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ModelNotFoundError(f"Cannot read the {what} {path}: {e}") from e
    if magic != b"GGUF":
        raise ModelLoadError(f"The {what} {path} is not a GGUF file (corrupt or incomplete download?).")


def _model_id(cfg: MllmConfig) -> str:
    """Identity of the vision side (embeddings depend only on the mmproj and the text width)."""
    h = hashlib.blake2b(digest_size=12)
    p = cfg.mmproj_path
    size = p.stat().st_size
    h.update(f"{cfg.name}|{size}".encode())
    with open(p, "rb") as f:
        h.update(f.read(1 << 20))
        if size > (2 << 20):
            f.seek(size - (1 << 20))
            h.update(f.read(1 << 20))
    return h.hexdigest()


@dataclass(frozen=True)
class _ImageRef:
    path: Path
    content_key: str
    view: str  # "whole" | "zoom"
    max_side: int
    zoom_fraction: float = 1.0

    @property
    def variant(self) -> str:
        v = f"{self.view}-{self.max_side}"
        return v + f"-z{self.zoom_fraction:.3f}" if self.view == "zoom" else v


def _prepare_image(ref: _ImageRef):  # -> PIL.Image.Image
    from PIL import Image

    from ...imaging import load_rgb

    frac = ref.zoom_fraction if ref.view == "zoom" else 1.0
    img = load_rgb(ref.path, min_side=max(1, int(math.ceil(ref.max_side / frac))))
    if ref.view == "zoom":
        w, h = img.size
        cw, ch = max(1, round(w * frac)), max(1, round(h * frac))
        left, top = (w - cw) // 2, (h - ch) // 2
        img = img.crop((left, top, left + cw, top + ch))
    if max(img.size) > ref.max_side:
        img = img.copy()
        img.thumbnail((ref.max_side, ref.max_side), Image.Resampling.BICUBIC)
    return img.convert("RGB")


class _Prepared:
    """A tokenised prompt: mtmd chunks + flat identity list used for KV prefix matching."""

    def __init__(self) -> None:
        self.chunks: Any = None
        self.ids: list[Any] = []  # int token ids and ("img", key) tuples
        self.pos_after: list[int] = []  # position after each id
        self.segments: list[tuple[str, Any, Any, int]] = []  # (kind, chunk|tokens, key, first id index)
        self.embeddings: dict[str, np.ndarray] = {}
        self.sizes: dict[str, tuple[int, int]] = {}  # bitmap (nx, ny) fed to mtmd per image key
        self.image_keys: list[str] = []


class _AbortFlag:
    """The cancel event of the call in flight, read by llama.cpp's abort callback (from its threads)."""

    def __init__(self) -> None:
        self.event: threading.Event | None = None

    def is_set(self) -> bool:
        event = self.event
        return event is not None and event.is_set()

    @contextlib.contextmanager
    def watching(self, event: threading.Event | None) -> Iterator[None]:
        previous, self.event = self.event, event
        try:
            yield
        finally:
            self.event = previous


class MllmScorer:
    """P(True) scorer for (candidate photo, query) pairs; lazy-loads the model on first use.

    Visual enhancement (``ve``): "off" never, "always" every candidate, "auto" (default) when the first
    pass is uncertain: top-10 normalised entropy > ``ve_threshold`` or P(True) inside ``ambiguous_band``.
    The second look continues the first-pass conversation in the same context (KV cache kept): the
    assistant turn holds the first answer (the likelier of True/False), then a user turn shows the
    candidate again (``ve_view``: "zoom" = centre crop, "whole" = same image) plus a "Look at the image
    again carefully..." instruction, and P(True) is read again. Final numbers are the confidence-weighted
    mean of both looks (``combine_passes``: weights ``max(1 - entropy, 0.05)``), for P(True), P(False)
    and entropy alike; ``first_pass_score`` keeps the first P(True).

    Thread-safe: one lock serialises all use of the llama/mtmd contexts.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        threads: int | None = None,
        n_ctx: int = 4096,
        cache: EmbeddingCache | None = None,
        ve_threshold: float = 0.75,
        ambiguous_band: tuple[float, float] | None = (0.35, 0.65),
        *,
        n_batch: int = 512,
        ve_view: str | None = None,
        image_max_side: int | None = None,
        state_cache_bytes: int = 256 * 1024**2,
        memory_embeddings_bytes: int = 64 * 1024**2,
        state_disk_cache: EmbeddingCache | None = None,
        prompts_path: Path | None = None,
    ):
        self.config = MllmConfig.from_dir(model_dir)
        self.threads = int(threads or default_threads())
        self.n_ctx = int(n_ctx)
        self.n_batch = int(n_batch)
        self.cache = cache
        self.ve_threshold = float(ve_threshold)
        self.ambiguous_band = ambiguous_band
        self.prompts = load_prompts(prompts_path)
        ve_cfg = self.prompts.get("ve", {})
        self.ve_view = ve_view or ve_cfg.get("view", "zoom")
        if self.ve_view not in ("whole", "zoom"):
            raise ValueError("ve_view must be 'whole' or 'zoom'")
        self.zoom_fraction = float(ve_cfg.get("zoom_fraction", 0.6))
        self.image_max_side = int(image_max_side or self.config.image_max_side)
        self.state_cache_bytes = int(state_cache_bytes)
        # KV snapshots after each candidate image, also on disk: after a restart a query over photos checked
        # before evaluates only its question tokens (a few MB per photo, bounded LRU).
        self.state_disk_cache = state_disk_cache
        self.memory_embeddings_bytes = int(memory_embeddings_bytes)
        self.stats: dict[str, int] = {
            "encode": 0,
            "embedding_disk_hits": 0,
            "embedding_memory_hits": 0,
            "state_restores": 0,
            "state_saves": 0,
            "state_disk_hits": 0,
            "tokens_evaluated": 0,
            "images_decoded": 0,
        }
        self._lock = threading.RLock()
        self._llm: Any = None
        self._mtmd: Any = None
        self._model_id: str | None = None
        self._true_ids: list[int] = []
        self._false_ids: list[int] = []
        self._kv_ids: list[Any] = []
        self._kv_pos: list[int] = []
        self._states: OrderedDict[str, tuple[Any, int, int]] = OrderedDict()  # key -> (buf, size, pos)
        self._states_bytes = 0
        self._mem_emb: OrderedDict[str, tuple[np.ndarray, int, int]] = OrderedDict()
        self._mem_emb_bytes = 0
        self._closed = False
        self._post_decode_cb: Any = None
        self._content_keys: dict[tuple[str, int, int], str] = {}
        self._abort_flag = _AbortFlag()
        self._abort_cb: Any = None
        # (P(True), P(False), entropy) of each look of the last score() call, for diagnostics/tests
        self.last_passes: list[tuple[float, float, float]] = []

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> MllmScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # best effort; call close() explicitly
        try:
            self.close()
        except Exception:
            pass

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    @property
    def model_id(self) -> str:
        if self._model_id is None:
            self._model_id = _model_id(self.config)
        return self._model_id

    def load(self) -> None:
        with self._lock:
            self._ensure_loaded()

    def _ensure_loaded(self) -> None:
        if self._llm is not None:
            return
        if self._closed:
            raise RetllmError("This scorer was closed.")
        cfg = self.config
        _check_gguf(cfg.model_path, "text model")
        _check_gguf(cfg.mmproj_path, "mmproj file")
        _silence_native_logs()
        try:
            import llama_cpp
            from llama_cpp import mtmd_cpp
        except ImportError as e:  # pragma: no cover - declared dependency
            raise ModelLoadError(f"llama-cpp-python is not installed: {e}") from e
        try:
            llm = llama_cpp.Llama(
                model_path=str(cfg.model_path),
                n_ctx=self.n_ctx,
                n_batch=self.n_batch,
                n_ubatch=self.n_batch,
                n_threads=self.threads,
                n_threads_batch=self.threads,
                n_gpu_layers=0,
                logits_all=False,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError, AssertionError) as e:
            raise ModelLoadError(f"Cannot load the multimodal text model {cfg.model_path}: {e}") from e
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = False
        params.print_timings = False
        params.n_threads = self.threads
        params.warmup = False
        # same rule as llama-cpp-python's chat handlers (numerics of the vision encoder depend on it)
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if llm.context_params.flash_attn_type == llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        mtmd = mtmd_cpp.mtmd_init_from_file(str(cfg.mmproj_path).encode(), llm.model, params)
        if not mtmd:
            llm.close()
            raise ModelLoadError(
                f"Cannot load the vision projector {cfg.mmproj_path} (corrupt, or not made for {cfg.model_path.name})."
            )
        if not mtmd_cpp.mtmd_support_vision(mtmd):
            mtmd_cpp.mtmd_free(mtmd)
            llm.close()
            raise ModelLoadError(f"{cfg.mmproj_path} has no vision encoder.")
        self._llm, self._mtmd = llm, mtmd
        self._lc, self._mc = llama_cpp, mtmd_cpp
        # llama.cpp asks this between graph nodes: a cancelled search stops mid-candidate, not after it.
        flag = self._abort_flag
        self._abort_cb = llama_cpp.ggml_abort_callback(lambda _data: flag.is_set())
        llama_cpp.llama_set_abort_callback(llm._ctx.ctx, self._abort_cb, None)
        self._n_vocab = llm.n_vocab()
        self._n_embd = int(llama_cpp.llama_model_n_embd_inp(llm.model))
        self._marker = mtmd_cpp.mtmd_default_marker().decode("utf-8")
        self._vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self._post_decode_cb = mtmd_cpp.mtmd_helper_post_decode_callback(lambda batch, user: 0)
        answers = self.prompts.get("answers", {})
        self._true_ids = self._single_token_ids(answers.get("positive", ["True"]))
        self._false_ids = self._single_token_ids(answers.get("negative", ["False"]))
        if not self._true_ids:
            self.close()
            raise ModelLoadError(
                f"{cfg.model_path.name}: no single-token spelling of 'True' in the vocabulary."
            )
        self._bos = (
            llm.detokenize([llm.token_bos()]).decode("utf-8", errors="ignore") if llm.token_bos() >= 0 else ""
        )
        self._eos = (
            llm.detokenize([llm.token_eos()]).decode("utf-8", errors="ignore") if llm.token_eos() >= 0 else ""
        )
        self._chat_template = llm.metadata.get("tokenizer.chat_template")
        self._kv_ids, self._kv_pos = [], []

    def _single_token_ids(self, variants: Sequence[str]) -> list[int]:
        ids: list[int] = []
        for v in variants:
            toks = self._llm.tokenize(v.encode("utf-8"), add_bos=False, special=False)
            if len(toks) == 1 and toks[0] not in ids:
                ids.append(int(toks[0]))
        return ids

    @property
    def true_token_ids(self) -> list[int]:
        self.load()
        return list(self._true_ids)

    @property
    def false_token_ids(self) -> list[int]:
        self.load()
        return list(self._false_ids)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._mtmd is not None:
                try:
                    self._mc.mtmd_free(self._mtmd)
                finally:
                    self._mtmd = None
            if self._llm is not None:
                try:
                    self._llm.close()
                finally:
                    self._llm = None
            self._states.clear()
            self._states_bytes = 0
            self._mem_emb.clear()
            self._mem_emb_bytes = 0
            self._kv_ids, self._kv_pos = [], []

    # -- public API ------------------------------------------------------------------------------
    def score(
        self,
        candidate_path: str | os.PathLike[str],
        *,
        text: str | None = None,
        query_image: str | os.PathLike[str] | None = None,
        candidate_key: str | None = None,
        query_key: str | None = None,
        ve: str = "auto",
        cancel: threading.Event | None = None,
    ) -> FineScore:
        """Score one candidate; see the class docstring for visual enhancement and the combination rule.

        ``candidate_key`` / ``query_key`` identify photo contents for the embedding cache (e.g. the
        catalog's file hash); without them the file is hashed. Setting ``cancel`` aborts the evaluation in
        flight (between llama.cpp graph nodes) with :class:`CancelledError`; the context is left clean.
        """
        with self._lock, self._abort_flag.watching(cancel):  # the flag belongs to the lock holder
            try:
                return self._score(candidate_path, text, query_image, candidate_key, query_key, ve)
            except (RetllmError, RuntimeError) as e:
                if cancel is not None and cancel.is_set():
                    raise CancelledError("Scoring cancelled.") from e
                raise

    def _score(
        self,
        candidate_path: str | os.PathLike[str],
        text: str | None,
        query_image: str | os.PathLike[str] | None,
        candidate_key: str | None,
        query_key: str | None,
        ve: str,
    ) -> FineScore:
        if ve not in VE_MODES:
            raise ValueError(f"ve must be one of {VE_MODES}")
        kind = _query_kind(text, query_image)
        t0 = time.perf_counter()
        with self._lock:
            self._ensure_loaded()
            enc0 = self.stats["encode"]
            images = {"candidate": self._ref(candidate_path, candidate_key, "whole")}
            if query_image is not None:
                images["query"] = self._ref(query_image, query_key, "whole")
            msgs: list[dict[str, Any]] = [
                {"role": "user", "content": _build_parts(self.prompts["score"][kind]["parts"], text, images)}
            ]
            first = answer_stats(self._logits(msgs, save_states=True), self._true_ids, self._false_ids)
            use_ve = ve == "always" or (ve == "auto" and self._uncertain(first))
            final = first
            if use_ve:
                answer = "True" if first[0] >= first[1] else "False"
                ve_images = dict(images)
                ve_images["candidate"] = self._ref(candidate_path, candidate_key, self.ve_view)
                msgs2 = msgs + [
                    {"role": "assistant", "content": answer},
                    {
                        "role": "user",
                        "content": _build_parts(self.prompts["ve"][kind]["parts"], text, ve_images),
                    },
                ]
                second = answer_stats(self._logits(msgs2, save_states=False), self._true_ids, self._false_ids)
                final = combine_passes(first, second)
            self.last_passes = [first, second] if use_ve else [first]
            cache_hit = self.stats["encode"] == enc0
        return FineScore(
            p_true=final[0],
            p_false=final[1],
            entropy=final[2],
            ve_used=use_ve,
            score=final[0],
            first_pass_score=first[0],
            seconds=time.perf_counter() - t0,
            cache_hit=cache_hit,
            first_pass_entropy=first[2],
        )

    def explain(
        self,
        candidate_path: str | os.PathLike[str],
        *,
        text: str | None = None,
        query_image: str | os.PathLike[str] | None = None,
        candidate_key: str | None = None,
        query_key: str | None = None,
        max_tokens: int | None = None,
    ) -> Iterator[str]:
        """Stream one short sentence on why the photo does or does not match (greedy, stops at newline/EOS).

        The lock is taken per generated token, so other threads can score in between (the shared KV
        prefix is re-evaluated when needed).
        """
        kind = _query_kind(text, query_image)
        cfg = self.prompts.get("explain", {})
        limit = int(max_tokens or cfg.get("max_tokens", 60))
        temperature = float(cfg.get("temperature", 0.0))
        rng = np.random.default_rng(0)
        with self._lock:
            self._ensure_loaded()
            images = {"candidate": self._ref(candidate_path, candidate_key, "whole")}
            if query_image is not None:
                images["query"] = self._ref(query_image, query_key, "whole")
            msgs = [{"role": "user", "content": _build_parts(cfg[kind]["parts"], text, images)}]
            prep = self._prepare(msgs)
        generated: list[int] = []
        sent = ""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        produced = ""
        try:
            for _ in range(limit):
                with self._lock:
                    self._ensure_loaded()
                    logits = self._run(prep, extra=generated, save_states=False)
                    if temperature > 0:
                        z = (logits - logits.max()) / temperature
                        p = np.exp(z)
                        tok = int(rng.choice(p.size, p=p / p.sum()))
                    else:
                        tok = int(np.argmax(logits))
                    if self._lc.llama_vocab_is_eog(self._vocab, tok):
                        break
                    piece = self._llm.detokenize([tok], prev_tokens=generated or None)
                generated.append(tok)
                produced += decoder.decode(piece)
                if not sent:
                    produced = produced.lstrip()
                cut = produced.find("\n")
                new = produced[len(sent) : cut if cut >= 0 else None]
                if new:
                    sent += new
                    yield new
                if cut >= 0:
                    break
        finally:
            with self._lock:
                self._free_prepared(prep)

    # -- internals -------------------------------------------------------------------------------
    def _uncertain(self, first: tuple[float, float, float]) -> bool:
        if first[2] > self.ve_threshold:
            return True
        if self.ambiguous_band is not None:
            lo, hi = self.ambiguous_band
            return lo <= first[0] <= hi
        return False

    def _ref(self, path: str | os.PathLike[str], key: str | None, view: str) -> _ImageRef:
        p = Path(path)
        if key is None:
            try:
                st = p.stat()
            except OSError as e:
                from ...errors import ImageError

                raise ImageError(f"Cannot read {p}: {e}") from e
            memo = (str(p), st.st_size, st.st_mtime_ns)
            key = self._content_keys.get(memo)
            if key is None:
                from ...imaging import file_hash

                key = file_hash(p)
                self._content_keys[memo] = key
        return _ImageRef(p, key, view, self.image_max_side, self.zoom_fraction if view == "zoom" else 1.0)

    def _emb_key(self, ref: _ImageRef) -> str:
        return f"{self.model_id}|{ref.content_key}|{ref.variant}"

    def _lookup_embedding(self, key: str) -> tuple[np.ndarray, int, int] | None:
        hit = self._mem_emb.get(key)
        if hit is not None:
            self._mem_emb.move_to_end(key)
            self.stats["embedding_memory_hits"] += 1
            return hit
        if self.cache is not None:
            entry = self.cache.get(key)
            if entry is not None:
                try:
                    nx, ny = int(entry.meta["nx"]), int(entry.meta["ny"])
                except (KeyError, TypeError, ValueError):
                    self.cache.delete(key)
                    return None
                if entry.array.ndim != 2 or entry.array.shape[1] != self._n_embd:
                    self.cache.delete(key)
                    return None
                self.stats["embedding_disk_hits"] += 1
                self._remember(key, entry.array, nx, ny)
                return entry.array, nx, ny
        return None

    def _remember(self, key: str, arr: np.ndarray, nx: int, ny: int) -> None:
        if key in self._mem_emb:
            return
        self._mem_emb[key] = (arr, nx, ny)
        self._mem_emb_bytes += arr.nbytes
        while self._mem_emb_bytes > self.memory_embeddings_bytes and len(self._mem_emb) > 1:
            _, (old, _, _) = self._mem_emb.popitem(last=False)
            self._mem_emb_bytes -= old.nbytes

    def _bitmap(self, nx: int, ny: int, rgb: bytes | None) -> Any:
        data = rgb if rgb is not None else bytes(nx * ny * 3)
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        bmp = self._mc.mtmd_bitmap_init(nx, ny, buf)
        if not bmp:
            raise RetllmError("mtmd could not create an image bitmap.")
        return bmp

    def _prepare(self, messages: list[dict[str, Any]]) -> _Prepared:
        """Render + tokenise. Cached images get a blank bitmap of the same size (only shapes matter)."""
        mc = self._mc
        text, refs = render_prompt(
            self.config.handler,
            messages,
            chat_template=self._chat_template,
            bos_token=self._bos,
            eos_token=self._eos,
            marker=self._marker,
        )
        prep = _Prepared()
        bitmaps = []
        try:
            for ref in refs:
                key = self._emb_key(ref)
                hit = self._lookup_embedding(key)
                if hit is not None:
                    arr, nx, ny = hit
                    prep.embeddings[key] = arr
                    bitmaps.append(self._bitmap(nx, ny, None))
                    prep.sizes[key] = (nx, ny)
                else:
                    img = _prepare_image(ref)
                    bitmaps.append(self._bitmap(img.width, img.height, img.tobytes()))
                    prep.sizes[key] = (img.width, img.height)
                prep.image_keys.append(key)
            itext = mc.mtmd_input_text()
            raw = text.encode("utf-8")
            itext.text = raw
            itext.text_len = len(raw)
            itext.add_special = True
            itext.parse_special = True
            prep.chunks = mc.mtmd_input_chunks_init()
            arr_t = mc.mtmd_bitmap_p_ctypes * max(1, len(bitmaps))
            res = mc.mtmd_tokenize(
                self._mtmd, prep.chunks, ctypes.byref(itext), arr_t(*bitmaps), len(bitmaps)
            )
            if res != 0:
                raise RetllmError(f"mtmd could not tokenise the prompt (error {res}).")
        except BaseException:
            self._free_prepared(prep)
            raise
        finally:
            for b in bitmaps:
                mc.mtmd_bitmap_free(b)
        n_chunks = mc.mtmd_input_chunks_size(prep.chunks)
        pos = 0
        img_i = 0
        for i in range(n_chunks):
            chunk = mc.mtmd_input_chunks_get(prep.chunks, i)
            ctype = mc.mtmd_input_chunk_get_type(chunk)
            if ctype == mc.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t()
                ptr = mc.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                toks = [int(ptr[j]) for j in range(n.value)]
                prep.segments.append(("text", toks, None, len(prep.ids)))
                for t in toks:
                    prep.ids.append(t)
                    pos += 1
                    prep.pos_after.append(pos)
            elif ctype == mc.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                key = prep.image_keys[img_i]
                img_i += 1
                prep.segments.append(("image", chunk, key, len(prep.ids)))
                prep.ids.append(("img", key))
                pos += int(mc.mtmd_input_chunk_get_n_pos(chunk))
                prep.pos_after.append(pos)
            else:
                raise RetllmError("Unsupported (audio) chunk in the prompt.")
        if pos > self.n_ctx:
            self._free_prepared(prep)
            raise PromptTooLongError(pos, self.n_ctx)
        return prep

    def _free_prepared(self, prep: _Prepared) -> None:
        if prep.chunks is not None:
            self._mc.mtmd_input_chunks_free(prep.chunks)
            prep.chunks = None

    def _logits(self, messages: list[dict[str, Any]], save_states: bool) -> np.ndarray:
        prep = self._prepare(messages)
        try:
            return self._run(prep, save_states=save_states)
        finally:
            self._free_prepared(prep)

    def _state_key(self, ids: Sequence[Any]) -> str:
        return hashlib.sha1(repr(list(ids)).encode()).hexdigest()

    def _rewind(self, n_ids: int) -> None:
        pos = self._kv_pos[n_ids - 1] if n_ids else 0
        self._llm._ctx.kv_cache_seq_rm(0, pos, -1)
        self._llm.n_tokens = pos
        del self._kv_ids[n_ids:]
        del self._kv_pos[n_ids:]

    def _run(self, prep: _Prepared, extra: Sequence[int] = (), save_states: bool = False) -> np.ndarray:
        """Evaluate ``prep`` (+ ``extra`` generated tokens) reusing the live KV prefix; return last logits."""
        ids = prep.ids + list(extra)
        pos_after = list(prep.pos_after)
        for _ in extra:
            pos_after.append(pos_after[-1] + 1)
        if isinstance(ids[-1], tuple):
            raise RetllmError("A prompt must end with text.")
        if pos_after[-1] > self.n_ctx:
            raise PromptTooLongError(pos_after[-1], self.n_ctx)
        # longest common prefix with the live KV, always leaving >= 1 token to evaluate (fresh logits)
        common = 0
        limit = min(len(self._kv_ids), len(ids) - 1)
        while common < limit and self._kv_ids[common] == ids[common]:
            common += 1
        # Snap back to the start of the prompt segment (text chunk) it falls into: every prompt chunk is
        # then always evaluated whole, in one batch, exactly as on a cold run, so results do not depend on
        # what the context held before (batch shape changes float rounding, ~1e-4 relative with f16).
        for kind, payload, _key, first in prep.segments:
            if kind == "text" and first < common < first + len(payload):
                common = first
                break
        # a cached state snapshot that reaches further?
        best = None
        for j in range(len(ids) - 2, common - 1, -1):
            if isinstance(ids[j], tuple):
                skey = self._state_key(ids[: j + 1])
                if skey in self._states or self._state_from_disk(skey):
                    best = (j + 1, skey)
                    break
        try:
            if best is not None:
                n_ids, skey = best
                buf, size, pos = self._states[skey]
                self._states.move_to_end(skey)
                self._llm._ctx.kv_cache_seq_rm(0, -1, -1)
                if self._lc.llama_state_seq_set_data(self._llm._ctx.ctx, buf, size, 0) == 0:
                    raise RetllmError("Could not restore a cached KV state.")
                self._llm.n_tokens = pos
                self._kv_ids = list(ids[:n_ids])
                self._kv_pos = pos_after[:n_ids]
                self.stats["state_restores"] += 1
                common = n_ids
            else:
                self._rewind(common)
            self._eval_from(prep, ids, pos_after, common, save_states)
        except BaseException:
            # unknown KV contents now: forget them so the next call starts clean
            self._kv_ids, self._kv_pos = [], []
            if self._llm is not None:
                self._llm._ctx.kv_cache_seq_rm(0, -1, -1)
                self._llm.n_tokens = 0
            raise
        ptr = self._lc.llama_get_logits_ith(self._llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).astype(np.float32, copy=True)

    def _eval_from(
        self, prep: _Prepared, ids: list[Any], pos_after: list[int], start: int, save_states: bool
    ) -> None:
        llm = self._llm
        n_prompt = len(prep.ids)
        for kind, payload, key, first in prep.segments:
            if kind == "text":
                toks = payload
                lo = max(start - first, 0)
                if lo >= len(toks):
                    continue
                llm.eval(toks[lo:])
                self.stats["tokens_evaluated"] += len(toks) - lo
                self._kv_ids.extend(ids[first + lo : first + len(toks)])
                self._kv_pos.extend(pos_after[first + lo : first + len(toks)])
            else:
                if first < start:
                    continue
                self._decode_image(prep, payload, key)
                self._kv_ids.append(ids[first])
                self._kv_pos.append(llm.n_tokens)
                if llm.n_tokens != pos_after[first]:
                    raise RetllmError("Image position bookkeeping mismatch.")
                if save_states and first + 1 < n_prompt:
                    self._save_state(ids[: first + 1], llm.n_tokens)
        if len(ids) > n_prompt:
            lo = max(start, n_prompt)
            llm.eval(list(ids[lo:]))
            self.stats["tokens_evaluated"] += len(ids) - lo
            self._kv_ids.extend(ids[lo:])
            self._kv_pos.extend(pos_after[lo:])

    def _decode_image(self, prep: _Prepared, chunk: Any, key: str) -> None:
        mc, lc, llm = self._mc, self._lc, self._llm
        n_tok = int(mc.mtmd_input_chunk_get_n_tokens(chunk))
        emb = prep.embeddings.get(key)
        if emb is None:
            hit = self._lookup_embedding(key)  # e.g. encoded earlier in this same prompt
            emb = hit[0] if hit is not None else None
        if emb is None or emb.shape[0] != n_tok:
            if mc.mtmd_encode_chunk(self._mtmd, chunk) != 0:
                raise RetllmError("The vision encoder failed on an image.")
            self.stats["encode"] += 1
            out = mc.mtmd_get_output_embd(self._mtmd)
            emb = (
                np.ctypeslib.as_array(out, shape=(n_tok * self._n_embd,)).reshape(n_tok, self._n_embd).copy()
            )
            nx, ny = prep.sizes[key]
            self._remember(key, emb, nx, ny)
            if self.cache is not None:
                self.cache.put(key, emb, {"nx": nx, "ny": ny, "n_tokens": n_tok})
            prep.embeddings[key] = emb
        emb = np.ascontiguousarray(emb, dtype=np.float32)
        llm._ctx.kv_cache_seq_rm(0, llm.n_tokens, -1)
        new_n_past = lc.llama_pos(0)
        res = mc.mtmd_helper_decode_image_chunk(
            self._mtmd,
            llm._ctx.ctx,
            chunk,
            emb.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
            lc.llama_pos(llm.n_tokens),
            lc.llama_seq_id(0),
            self.n_batch,
            ctypes.byref(new_n_past),
            self._post_decode_cb,
            None,
        )
        if res != 0:
            raise RetllmError(f"Decoding image embeddings failed (error {res}).")
        llm.n_tokens = int(new_n_past.value)
        self.stats["images_decoded"] += 1

    def _save_state(self, ids_prefix: Sequence[Any], pos: int) -> None:
        if self.state_cache_bytes <= 0:
            return
        skey = self._state_key(ids_prefix)
        if skey in self._states:
            self._states.move_to_end(skey)
            return
        ctx = self._llm._ctx.ctx
        size = int(self._lc.llama_state_seq_get_size(ctx, 0))
        if size <= 0 or size > self.state_cache_bytes // 4:
            return
        buf = (ctypes.c_uint8 * size)()
        got = int(self._lc.llama_state_seq_get_data(ctx, buf, size, 0))
        if got <= 0:
            return
        self._states[skey] = (buf, got, pos)
        self._states_bytes += size
        self.stats["state_saves"] += 1
        if self.state_disk_cache is not None:
            raw = bytes(buf)[:got]
            padded = raw + b"\0" * (-len(raw) % 4)  # the store holds float32 words
            self.state_disk_cache.put(
                self._disk_state_key(skey), np.frombuffer(padded, dtype="<f4"), {"size": got, "pos": pos}
            )
        while self._states_bytes > self.state_cache_bytes and len(self._states) > 1:
            _, (old, _, _) = self._states.popitem(last=False)
            self._states_bytes -= ctypes.sizeof(old)

    def _disk_state_key(self, skey: str) -> str:
        return f"kv|{self.model_id}|{self.n_ctx}|{skey}"

    def _state_from_disk(self, skey: str) -> bool:
        """Load a KV snapshot saved by an earlier process into the in-memory snapshot table."""
        if self.state_disk_cache is None:
            return False
        entry = self.state_disk_cache.get(self._disk_state_key(skey))
        if entry is None:
            return False
        try:
            size, pos = int(entry.meta["size"]), int(entry.meta["pos"])
            raw = entry.array.tobytes()[:size]
        except (KeyError, TypeError, ValueError):
            return False
        if len(raw) != size or size <= 0:
            return False
        buf = (ctypes.c_uint8 * size).from_buffer_copy(raw)
        self._states[skey] = (buf, size, pos)
        self._states_bytes += size
        self.stats["state_disk_hits"] += 1
        while self._states_bytes > self.state_cache_bytes and len(self._states) > 1:
            _, (old, _, _) = self._states.popitem(last=False)
            self._states_bytes -= ctypes.sizeof(old)
        return True

    def clear_state_cache(self) -> None:
        """Drop in-memory KV snapshots (e.g. to measure the embedding-cache-only path)."""
        with self._lock:
            self._states.clear()
            self._states_bytes = 0
            self._mem_emb.clear()
            self._mem_emb_bytes = 0
