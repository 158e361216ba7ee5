"""The one module that touches llama-cpp-python / libmtmd internals.

Everything below the public ``Llama`` API lives here: the raw context (``_ctx``), ``n_tokens``,
``kv_cache_seq_rm``, sequence-state save/restore, the abort callback and every ``mtmd_*`` call. The
rest of the LLM stage talks to :class:`LlamaSession` in prompt texts, image inputs, token ids, logits
and opaque state bytes, so a llama-cpp-python upgrade is checked (and pinned, see pyproject.toml) here.

How a prompt is evaluated: the text (with one media marker per image) is tokenised by
``mtmd_tokenize`` with the same flags as llama-cpp-python's chat handlers, then evaluated chunk by chunk
(``Llama.eval`` for text, ``mtmd_helper_decode_image_chunk`` for image embeddings, which may come from a
cache instead of ``mtmd_encode_chunk``). The live KV cache is compared with the new prompt token by
token and only the differing suffix is evaluated; a KV snapshot taken right after a candidate image can
replace everything before it.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ...errors import ModelLoadError, PromptTooLongError, RetllmError
from ..accel import llama_gpu_layers
from ..gguf import check_gguf
from .retrace import EarlyExit, RetraceHook, RetraceParams, RetraceResult

_LOG_LOCK = threading.Lock()
_LOG_CALLBACKS: list[Any] = []  # keep ctypes callbacks alive for the life of the process


def llama_cpp_version() -> str:
    """Version of the installed llama-cpp-python (its vendored llama.cpp changes numerics and formats)."""
    try:
        import llama_cpp

        return str(getattr(llama_cpp, "__version__", "unknown"))
    except ImportError:  # pragma: no cover - declared dependency
        return "missing"


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


class EncodeInterrupted(RetllmError):
    """An image encode stopped between chunks because something more urgent (a search) is waiting."""


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


@dataclass
class ImageInput:
    """One image of a prompt: its cache ``key``, bitmap size, and either its pixels or a cached embedding.

    With an ``embedding`` the bitmap is blank (only its size matters to the tokeniser).
    """

    key: str
    width: int
    height: int
    rgb: bytes | None = None
    embedding: np.ndarray | None = None


@dataclass
class Prompt:
    """A tokenised prompt: mtmd chunks + the flat identity list used for KV prefix matching."""

    chunks: Any = None
    ids: list[Any] = field(default_factory=list)  # int token ids and ("img", key) tuples
    pos_after: list[int] = field(default_factory=list)  # position after each id
    segments: list[tuple[str, Any, Any, int]] = field(
        default_factory=list
    )  # (kind, chunk|tokens, key, first)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # bitmap (w, h) per image key
    # embedding rows mtmd expects per image key, all of its chunks together: tiling projectors (idefics3 for
    # SmolVLM, llava-uhd) turn one photo into an overview chunk plus one chunk per tile, text in between
    image_tokens: dict[str, int] = field(default_factory=dict)
    blank: set[str] = field(default_factory=set)  # keys tokenised from a blank bitmap (cached embedding)
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)  # known embeddings per image key
    pending: dict[str, list[np.ndarray]] = field(default_factory=dict)  # chunks encoded so far per image key


class EmbeddingStore(Protocol):
    def get(self, key: str) -> np.ndarray | None: ...
    def put(self, key: str, emb: np.ndarray, width: int, height: int) -> None: ...


class StateStore(Protocol):
    def wants(self, size: int) -> bool: ...
    def has(self, key: str) -> bool: ...
    def get(self, key: str) -> tuple[bytes, int] | None: ...
    def put(self, key: str, data: bytes, pos: int) -> None: ...
    def drop(self, key: str) -> None: ...


@dataclass(frozen=True)
class TileMarks:
    """Token ids of idefics3's image layout: ``<fake_token_around_image>``, ``<global-img>``,
    ``<row_1_col_1>`` and the blank line mtmd puts before the overview."""

    fake: int
    overview: int
    first_tile: int
    gap: int


def _drop_repeated_tiles(elements: list[tuple[Any, ...]], marks: TileMarks) -> list[tuple[Any, ...]]:
    """idefics3 on a 1 x 1 grid: drop the one tile, which repeats the overview.

    mtmd (as pinned) always adds an overview, so a photo that fits one 512-px tile is shown twice: as the
    tile (the photo resized to 512 x 512, cropped whole) and as the overview (the photo resized to
    512 x 512). SmolVLM's own processor shows such a photo once (``<fake><global-img>`` + 64 image tokens +
    ``<fake>``, as for video frames); so do we, for half the vision work. Bigger grids, and any layout
    other than the expected one, are left as mtmd made them.
    """
    images: dict[int, list[int]] = {}
    for i, el in enumerate(elements):
        if el[0] == "image":
            images.setdefault(el[2], []).append(i)
    out = list(elements)
    dropped: set[int] = set()
    for where in images.values():
        if len(where) != 2:
            continue
        tile, overview = where
        before, between = tile - 1, tile + 1
        if before < 0 or between != overview - 1 or out[before][0] != "text" or out[between][0] != "text":
            continue
        pre, mid = out[before][1], out[between][1]
        if pre[-2:] != [marks.fake, marks.first_tile] or mid != [marks.gap, marks.fake, marks.overview]:
            continue
        out[before] = ("text", pre[:-2] + [marks.fake, marks.overview])
        dropped.update((tile, between))
    merged: list[tuple[Any, ...]] = []
    for i, el in enumerate(out):
        if i in dropped:
            continue
        if el[0] == "text" and merged and merged[-1][0] == "text":
            merged[-1] = ("text", merged[-1][1] + el[1])  # one llama.cpp call for text between chunks
        elif el[0] == "text" and not el[1]:
            continue
        else:
            merged.append(el)
    return merged


class LlamaSession:
    """A loaded text model + vision projector and the KV bookkeeping of its one sequence.

    Not thread-safe by itself: the scorer serialises every call with its lock.
    """

    def __init__(
        self,
        model_path: Path,
        mmproj_path: Path,
        *,
        n_ctx: int,
        n_batch: int,
        threads: int,
        stats: dict[str, int],
        image_max_tokens: int = 0,
        flash_attn: bool = False,
        single_view: bool = False,
    ):
        self.model_path, self.mmproj_path = Path(model_path), Path(mmproj_path)
        self.n_ctx, self.n_batch, self.threads = int(n_ctx), int(n_batch), int(threads)
        # mtmd's cap on a photo's image tokens (0: the projector's own rule). Tiling projectors (idefics3)
        # then cut fewer tiles, dynamic-resolution ones (Qwen2.5-VL) shrink the photo; fixed-size ones
        # (Gemma 3, LLaVA-1.5) ignore it. See images.py's DETAIL_LEVELS.
        self.image_max_tokens = max(0, int(image_max_tokens))
        self.flash_attn = bool(flash_attn)
        # idefics3 only: show a photo that fits one tile once, not as tile + identical overview
        self.single_view = bool(single_view)
        self._tile_marks: TileMarks | None = None
        self._gpu = False
        self._mtmd_threads = 0  # threads the open mtmd context was made with
        self._vision_cb: Any = None
        self._vision_stop: Any = None  # while set, a callable: True stops the vision tower mid-chunk
        self.stats = stats
        self._llm: Any = None
        self._mtmd: Any = None
        self._kv_ids: list[Any] = []
        self._kv_pos: list[int] = []
        self._abort_flag = _AbortFlag()
        self._abort_cb: Any = None
        self._post_decode_cb: Any = None
        self._rt_ctx: Any = None  # second context with the eval callback: only retraced decodes run here
        self._rt_cb: Any = None
        self._rt_hook: RetraceHook | None = None
        self._rt_error: BaseException | None = None
        self._early: EarlyExit | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def load(self) -> None:
        if self._llm is not None:
            return
        check_gguf(self.model_path, "text model")
        check_gguf(self.mmproj_path, "mmproj file")
        _silence_native_logs()
        try:
            import llama_cpp
            from llama_cpp import mtmd_cpp
        except ImportError as e:  # pragma: no cover - declared dependency
            raise ModelLoadError(f"llama-cpp-python is not installed: {e}") from e
        # Metal on a Mac whose llama.cpp build offloads; the CPU elsewhere (see models/accel.py)
        gpu_layers = llama_gpu_layers(bool(llama_cpp.llama_supports_gpu_offload()))
        try:
            llm = llama_cpp.Llama(
                model_path=str(self.model_path),
                n_ctx=self.n_ctx,
                n_batch=self.n_batch,
                n_ubatch=self.n_batch,
                n_threads=self.threads,
                n_threads_batch=self.threads,
                n_gpu_layers=gpu_layers,
                logits_all=False,
                flash_attn=self.flash_attn,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError, AssertionError) as e:
            raise ModelLoadError(f"Cannot load the multimodal text model {self.model_path}: {e}") from e
        self._gpu = gpu_layers != 0
        self._lc, self._mc = llama_cpp, mtmd_cpp
        try:
            mtmd = self._open_mtmd(llm, self.threads)
        except ModelLoadError:
            llm.close()
            raise
        self._llm, self._mtmd, self._mtmd_threads = llm, mtmd, self.threads
        # llama.cpp asks this between graph nodes: a cancelled search stops mid-candidate, not after it.
        flag = self._abort_flag
        self._abort_cb = llama_cpp.ggml_abort_callback(lambda _data: flag.is_set())
        llama_cpp.llama_set_abort_callback(llm._ctx.ctx, self._abort_cb, None)
        self.n_vocab = llm.n_vocab()
        self.n_embd = int(llama_cpp.llama_model_n_embd_inp(llm.model))
        self.marker = mtmd_cpp.mtmd_default_marker().decode("utf-8")
        self._vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self._post_decode_cb = mtmd_cpp.mtmd_helper_post_decode_callback(lambda batch, user: 0)
        self.bos_text = self._special_text(llm.token_bos())
        self.eos_text = self._special_text(llm.token_eos())
        self.chat_template: str | None = llm.metadata.get("tokenizer.chat_template")
        self._tile_marks = self._find_tile_marks() if self.single_view else None
        self._kv_ids, self._kv_pos = [], []

    def _find_tile_marks(self) -> TileMarks | None:
        """idefics3's layout tokens, each a single token of this vocabulary (else: keep mtmd's layout)."""
        ids = []
        for text in ("<fake_token_around_image>", "<global-img>", "<row_1_col_1>", "\n\n"):
            toks = self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
            if len(toks) != 1:
                return None
            ids.append(int(toks[0]))
        return TileMarks(*ids)

    def _open_mtmd(self, llm: Any, threads: int) -> Any:
        """The vision projector's mtmd context (its threads are fixed here, see ``set_threads``)."""
        llama_cpp, mtmd_cpp = self._lc, self._mc
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = self._gpu
        params.print_timings = False
        params.n_threads = threads
        params.warmup = False
        if self.image_max_tokens > 0:
            params.image_max_tokens = self.image_max_tokens
        # The vision tower has no abort callback of its own: its graph scheduler's eval callback asks to
        # stop every 32 nodes (a few ms of work), so a new query or a waiting search never waits for a
        # whole image chunk (seconds).
        nodes = [0]

        def vision_cb(_tensor: int, ask: bool, _user: Any) -> bool:
            if ask:
                nodes[0] += 1
                return nodes[0] % 32 == 0
            return not self._vision_stopped()

        self._vision_cb = llama_cpp.ggml_backend_sched_eval_callback(vision_cb)
        params.cb_eval = self._vision_cb
        # same rule as llama-cpp-python's chat handlers (numerics of the vision encoder depend on it)
        params.flash_attn_type = (
            llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            if llm.context_params.flash_attn_type == llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED
            else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        mtmd = mtmd_cpp.mtmd_init_from_file(str(self.mmproj_path).encode(), llm.model, params)
        if not mtmd:
            raise ModelLoadError(
                f"Cannot load the vision projector {self.mmproj_path} "
                f"(corrupt, or not made for {self.model_path.name})."
            )
        if not mtmd_cpp.mtmd_support_vision(mtmd):
            mtmd_cpp.mtmd_free(mtmd)
            raise ModelLoadError(f"{self.mmproj_path} has no vision encoder.")
        return mtmd

    def set_threads(self, threads: int) -> None:
        """Threads for the evaluations from now on (bench_replicas: 1 beats 2 while a core is busy).

        The text model takes the new count at once; mtmd fixes the vision tower's threads when it opens,
        so the projector is opened again (page-cached weights: a fraction of one image's encode; the
        count changes only when background work starts or stops). Call it between prompts, never with
        one tokenised and not yet evaluated (its chunks belong to the old projector context).
        """
        threads = max(1, int(threads))
        if threads == self.threads:
            return
        self.threads = threads
        if self._llm is None:
            return  # load() uses it
        self._lc.llama_set_n_threads(self._llm._ctx.ctx, threads, threads)
        if self._rt_ctx is not None:
            self._lc.llama_set_n_threads(self._rt_ctx.ctx, threads, threads)
        if self._mtmd_threads != threads:
            mtmd = self._open_mtmd(self._llm, threads)
            self._mc.mtmd_free(self._mtmd)
            self._mtmd, self._mtmd_threads = mtmd, threads

    def _special_text(self, tok: int) -> str:
        return self._llm.detokenize([tok]).decode("utf-8", errors="ignore") if tok >= 0 else ""

    def close(self) -> None:
        if self._rt_ctx is not None:
            try:
                self._rt_ctx.close()
            finally:
                self._rt_ctx = None
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
        self._kv_ids, self._kv_pos = [], []

    def watching(self, cancel: threading.Event | None) -> contextlib.AbstractContextManager[None]:
        """While active, setting ``cancel`` aborts llama.cpp's evaluation in flight."""
        return self._abort_flag.watching(cancel)

    # -- vocabulary ------------------------------------------------------------------------------
    def single_token_ids(self, variants: Sequence[str]) -> list[int]:
        """Ids of the spellings in ``variants`` that are one token of this vocabulary."""
        ids: list[int] = []
        for v in variants:
            toks = self._llm.tokenize(v.encode("utf-8"), add_bos=False, special=False)
            if len(toks) == 1 and toks[0] not in ids:
                ids.append(int(toks[0]))
        return ids

    def is_eog(self, tok: int) -> bool:
        return bool(self._lc.llama_vocab_is_eog(self._vocab, tok))

    def detokenize(self, tok: int, prev: Sequence[int]) -> bytes:
        return self._llm.detokenize([tok], prev_tokens=list(prev) or None)

    # -- tokenising ------------------------------------------------------------------------------
    def _bitmap(self, nx: int, ny: int, rgb: bytes | None) -> Any:
        data = rgb if rgb is not None else bytes(nx * ny * 3)
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        bmp = self._mc.mtmd_bitmap_init(nx, ny, buf)
        if not bmp:
            raise RetllmError("mtmd could not create an image bitmap.")
        return bmp

    def tokenize(self, text: str, images: Sequence[ImageInput]) -> Prompt:
        """Tokenise ``text`` (one media marker per image, in order) with its images into a :class:`Prompt`."""
        mc = self._mc
        prompt = Prompt()
        bitmaps = []
        keys: list[str] = []
        try:
            for im in images:
                bitmaps.append(self._bitmap(im.width, im.height, im.rgb))
                # mtmd copies a bitmap's id onto every chunk it makes of it (overview and tiles)
                mc.mtmd_bitmap_set_id(bitmaps[-1], f"{len(keys)}|{im.key}".encode())
                prompt.sizes[im.key] = (im.width, im.height)
                if im.rgb is None:
                    prompt.blank.add(im.key)
                if im.embedding is not None:
                    prompt.embeddings[im.key] = im.embedding
                keys.append(im.key)
            itext = mc.mtmd_input_text()
            raw = text.encode("utf-8")
            itext.text = raw
            itext.text_len = len(raw)
            itext.add_special = True
            itext.parse_special = True
            prompt.chunks = mc.mtmd_input_chunks_init()
            arr_t = mc.mtmd_bitmap_p_ctypes * max(1, len(bitmaps))
            res = mc.mtmd_tokenize(
                self._mtmd, prompt.chunks, ctypes.byref(itext), arr_t(*bitmaps), len(bitmaps)
            )
            if res != 0:
                raise RetllmError(f"mtmd could not tokenise the prompt (error {res}).")
            self._index_chunks(prompt, keys)
        except BaseException:
            self.free(prompt)
            raise
        finally:
            for b in bitmaps:
                mc.mtmd_bitmap_free(b)
        if prompt.pos_after and prompt.pos_after[-1] > self.n_ctx:
            need = prompt.pos_after[-1]
            self.free(prompt)
            raise PromptTooLongError(need, self.n_ctx)
        return prompt

    def _index_chunks(self, prompt: Prompt, keys: list[str]) -> None:
        pos = 0
        parts: dict[int, int] = {}  # chunks seen so far per image occurrence (index into ``keys``)
        rows: dict[int, int] = {}  # embedding rows seen so far per image occurrence
        elements = self._raw_chunks(prompt, keys)
        if self._tile_marks is not None:
            elements = _drop_repeated_tiles(elements, self._tile_marks)
        for el in elements:
            if el[0] == "text":
                toks = el[1]
                prompt.segments.append(("text", toks, None, len(prompt.ids)))
                for t in toks:
                    prompt.ids.append(t)
                    pos += 1
                    prompt.pos_after.append(pos)
                continue
            _, chunk, idx, n_tok, n_pos = el
            key = keys[idx]
            part = parts.get(idx, 0)
            parts[idx] = part + 1
            offset = rows.get(idx, 0)
            rows[idx] = offset + n_tok
            prompt.image_tokens[key] = rows[idx]
            prompt.segments.append(("image", chunk, (key, offset, n_tok), len(prompt.ids)))
            prompt.ids.append(("img", key) if part == 0 else ("img", key, part))
            pos += n_pos
            prompt.pos_after.append(pos)

    def _raw_chunks(self, prompt: Prompt, keys: list[str]) -> list[tuple[Any, ...]]:
        """mtmd's chunks in order: ("text", tokens) and ("image", chunk, occurrence, n_tokens, n_pos)."""
        mc = self._mc
        img_i = 0
        out: list[tuple[Any, ...]] = []
        for i in range(mc.mtmd_input_chunks_size(prompt.chunks)):
            chunk = mc.mtmd_input_chunks_get(prompt.chunks, i)
            ctype = mc.mtmd_input_chunk_get_type(chunk)
            if ctype == mc.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t()
                ptr = mc.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                out.append(("text", [int(ptr[j]) for j in range(n.value)]))
            elif ctype == mc.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                # Which occurrence of which photo this chunk shows: from the id set on its bitmap; a
                # chunk without one (older mtmd) is taken as one whole image, in marker order.
                raw_id = (mc.mtmd_input_chunk_get_id(chunk) or b"").decode("utf-8", "replace")
                idx_text, _, id_key = raw_id.partition("|")
                if idx_text.isdigit() and int(idx_text) < len(keys) and keys[int(idx_text)] == id_key:
                    idx = int(idx_text)
                elif img_i < len(keys):
                    idx = img_i
                    img_i += 1
                else:
                    raise RetllmError("mtmd returned more images than the prompt holds.")
                n_tok = int(mc.mtmd_input_chunk_get_n_tokens(chunk))
                out.append(("image", chunk, idx, n_tok, int(mc.mtmd_input_chunk_get_n_pos(chunk))))
            else:
                raise RetllmError("Unsupported (audio) chunk in the prompt.")
        return out

    def image_layout(self, image: ImageInput) -> tuple[int, int]:
        """(image chunks, image tokens) mtmd makes of one photo (tiles + overview for idefics3)."""
        prompt = self.tokenize(self.marker, [image])
        try:
            return sum(1 for s in prompt.segments if s[0] == "image"), prompt.image_tokens.get(image.key, 0)
        finally:
            self.free(prompt)

    def encode_image(self, image: ImageInput, should_stop: Any = None) -> np.ndarray:
        """All embedding rows of one photo (every chunk, in mtmd's order), without touching the KV cache.

        ``should_stop()`` is asked while the vision tower runs (the prepare pass gives way to a search);
        when it says so, :class:`EncodeInterrupted` is raised within milliseconds and nothing is kept.
        """
        prompt = self.tokenize(self.marker, [image])
        self._vision_stop = should_stop
        try:
            rows = []
            for kind, chunk, part, _first in prompt.segments:
                if kind != "image":
                    continue
                if self._vision_stopped():
                    raise EncodeInterrupted("The vision encoder was stopped.")
                rows.append(self._encode(chunk, part[2]))
            if not rows:
                raise RetllmError("mtmd made no image chunk of the photo.")
            return np.concatenate(rows) if len(rows) > 1 else rows[0]
        finally:
            self._vision_stop = None
            self.free(prompt)

    def free(self, prompt: Prompt) -> None:
        if prompt.chunks is not None and self._mtmd is not None:
            self._mc.mtmd_input_chunks_free(prompt.chunks)
        prompt.chunks = None

    # -- evaluation ------------------------------------------------------------------------------
    @staticmethod
    def state_key(ids: Sequence[Any]) -> str:
        """Name of the KV state after exactly the prompt identities ``ids``."""
        return hashlib.sha1(repr(list(ids)).encode()).hexdigest()

    def reset(self) -> None:
        """Forget the KV contents (the next evaluation starts from an empty context)."""
        self._kv_ids, self._kv_pos = [], []
        if self._llm is not None:
            self._llm._ctx.kv_cache_seq_rm(0, -1, -1)
            self._llm.n_tokens = 0

    def _rewind(self, n_ids: int) -> None:
        pos = self._kv_pos[n_ids - 1] if n_ids else 0
        self._llm._ctx.kv_cache_seq_rm(0, pos, -1)
        self._llm.n_tokens = pos
        del self._kv_ids[n_ids:]
        del self._kv_pos[n_ids:]

    def _common_prefix(self, prompt: Prompt, ids: list[Any]) -> int:
        """Length of the live KV prefix reusable for ``ids``, always leaving >= 1 token to evaluate."""
        common = 0
        limit = min(len(self._kv_ids), len(ids) - 1)
        while common < limit and self._kv_ids[common] == ids[common]:
            common += 1
        # Snap back to the start of the prompt segment (text chunk) it falls into: every prompt chunk is
        # then always evaluated whole, in one batch, exactly as on a cold run, so results do not depend on
        # what the context held before (batch shape changes float rounding, ~1e-4 relative with f16).
        for kind, payload, _key, first in prompt.segments:
            if kind == "text" and first < common < first + len(payload):
                return first
        return common

    def _restore(self, data: bytes, pos: int) -> bool:
        size = len(data)
        buf = (ctypes.c_uint8 * size).from_buffer_copy(data)
        self._llm._ctx.kv_cache_seq_rm(0, -1, -1)
        if self._lc.llama_state_seq_set_data(self._llm._ctx.ctx, buf, size, 0) == 0:
            return False
        self._llm.n_tokens = pos
        return True

    def evaluate(
        self,
        prompt: Prompt,
        *,
        embeddings: EmbeddingStore,
        states: StateStore | None,
        extra: Sequence[int] = (),
        save_states: bool = False,
    ) -> np.ndarray:
        """Evaluate ``prompt`` (+ ``extra`` generated tokens) reusing the live KV prefix; return last logits."""
        ids = prompt.ids + list(extra)
        pos_after = list(prompt.pos_after)
        for _ in extra:
            pos_after.append(pos_after[-1] + 1)
        if isinstance(ids[-1], tuple):
            raise RetllmError("A prompt must end with text.")
        if pos_after[-1] > self.n_ctx:
            raise PromptTooLongError(pos_after[-1], self.n_ctx)
        common = self._common_prefix(prompt, ids)
        best = None  # a cached state snapshot that reaches further?
        if states is not None:
            for j in range(len(ids) - 2, common - 1, -1):
                if isinstance(ids[j], tuple):
                    skey = self.state_key(ids[: j + 1])
                    hit = states.get(skey)
                    if hit is not None:
                        best = (j + 1, skey, hit)
                        break
        try:
            if best is not None and self._restore(best[2][0], best[2][1]):
                n_ids = best[0]
                self._kv_ids = list(ids[:n_ids])
                self._kv_pos = pos_after[:n_ids]
                self.stats["state_restores"] += 1
                common = n_ids
            elif best is not None:
                # llama.cpp rejected the bytes (another build, a damaged file): drop the snapshot and
                # recompute from the photo; a cache must never fail the search.
                if states is not None:
                    states.drop(best[1])
                self.stats["state_restore_failures"] += 1
                self.reset()
                common = 0
            else:
                self._rewind(common)
            self._eval_from(prompt, ids, pos_after, common, embeddings, states if save_states else None)
        except BaseException:
            self.reset()  # unknown KV contents now: the next call starts clean
            raise
        ptr = self._lc.llama_get_logits_ith(self._llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).astype(np.float32, copy=True)

    def _eval_from(
        self,
        prompt: Prompt,
        ids: list[Any],
        pos_after: list[int],
        start: int,
        embeddings: EmbeddingStore,
        states: StateStore | None,
    ) -> None:
        llm = self._llm
        n_prompt = len(prompt.ids)
        for kind, payload, key, first in prompt.segments:
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
                self._decode_image(prompt, payload, key, embeddings)
                self._kv_ids.append(ids[first])
                self._kv_pos.append(llm.n_tokens)
                if llm.n_tokens != pos_after[first]:
                    raise RetllmError("Image position bookkeeping mismatch.")
                img_key, offset, n_tok = key
                last_chunk = offset + n_tok == prompt.image_tokens[img_key]  # tiles: snapshot once per photo
                if states is not None and last_chunk and first + 1 < n_prompt:
                    self._save_state(states, ids[: first + 1], llm.n_tokens)
        if len(ids) > n_prompt:
            lo = max(start, n_prompt)
            llm.eval(list(ids[lo:]))
            self.stats["tokens_evaluated"] += len(ids) - lo
            self._kv_ids.extend(ids[lo:])
            self._kv_pos.extend(pos_after[lo:])

    def _vision_stopped(self) -> bool:
        stop = self._vision_stop
        return self._abort_flag.is_set() or (stop is not None and bool(stop()))

    def _encode(self, chunk: Any, n_tok: int) -> np.ndarray:
        res = self._mc.mtmd_encode_chunk(self._mtmd, chunk)
        if self._vision_stopped():  # stopped mid-graph: the output is incomplete, never keep it
            raise EncodeInterrupted("The vision encoder was stopped.")
        if res != 0:
            raise RetllmError("The vision encoder failed on an image.")
        out = self._mc.mtmd_get_output_embd(self._mtmd)
        return np.ctypeslib.as_array(out, shape=(n_tok * self.n_embd,)).reshape(n_tok, self.n_embd).copy()

    def _image_rows(
        self, prompt: Prompt, chunk: Any, part: tuple[str, int, int], embeddings: EmbeddingStore
    ) -> np.ndarray:
        """The embedding rows of one image chunk: sliced from the photo's cached rows, else encoded.

        The cache holds all chunks of a photo together (tiles in mtmd's order); a photo encoded chunk
        by chunk is stored once its last chunk is done.
        """
        key, offset, n_tok = part
        total = prompt.image_tokens[key]
        full = prompt.embeddings.get(key)
        if full is None:
            full = embeddings.get(key)  # e.g. encoded earlier in this same prompt
        if full is not None and full.shape[0] == total:
            return full[offset : offset + n_tok]
        if key in prompt.blank:  # the scorer re-tokenises such prompts from the photo first
            raise RetllmError("Refusing to encode a stand-in bitmap for a cached image.")
        emb = self._encode(chunk, n_tok)
        if offset == 0:
            self.stats["encode"] += 1  # photos sent through the vision encoder (all their tiles count once)
            prompt.pending[key] = []
        done = prompt.pending.get(key)
        if done is not None and sum(len(r) for r in done) == offset:
            done.append(emb)
            if offset + n_tok == total:
                full = np.concatenate(done) if len(done) > 1 else done[0]
                del prompt.pending[key]
                w, h = prompt.sizes[key]
                embeddings.put(key, full, w, h)
                prompt.embeddings[key] = full
        return emb

    def _decode_image(
        self, prompt: Prompt, chunk: Any, part: tuple[str, int, int], embeddings: EmbeddingStore
    ) -> None:
        mc, lc, llm = self._mc, self._lc, self._llm
        emb = self._image_rows(prompt, chunk, part, embeddings)
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

    def _save_state(self, states: StateStore, ids_prefix: Sequence[Any], pos: int) -> None:
        skey = self.state_key(ids_prefix)
        if states.has(skey):
            return
        ctx = self._llm._ctx.ctx
        size = int(self._lc.llama_state_seq_get_size(ctx, 0))
        if size <= 0 or not states.wants(size):
            return
        buf = (ctypes.c_uint8 * size)()
        got = int(self._lc.llama_state_seq_get_data(ctx, buf, size, 0))
        if got <= 0:
            return
        states.put(skey, bytes(buf)[:got], pos)
        self.stats["state_saves"] += 1

    # -- visual retracing (retrace.py holds the numbers) ------------------------------------------
    def _retrace_context(self) -> Any:
        """A second context on the same weights whose eval callback reads/edits hidden states.

        Ordinary scoring never runs on it, so it pays nothing for the callback (ggml asks the callback
        about every graph node of a context that has one).
        """
        if self._rt_ctx is not None:
            return self._rt_ctx
        lc = self._lc
        from llama_cpp import _internals

        gb = _ggml_base()
        d = int(lc.llama_model_n_embd(self._llm.model))

        def callback(t: int, ask: bool, _user: Any) -> bool:
            hook = self._rt_hook
            if hook is None:
                return False
            name = gb.ggml_get_name(t)
            if ask:
                return name in hook.names
            try:
                n = int(gb.ggml_nelements(t))
                row = np.ctypeslib.as_array(gb.ggml_get_data_f32(t), shape=(n,))[n - d :]
                kind, layer = name.decode().rsplit("-", 1)
                new = hook.on_tensor(kind, int(layer), row.copy())
                if new is not None:
                    row[:] = new
            except BaseException as e:  # never unwind through C; re-raised after the decode
                self._rt_error = e
            return True

        self._rt_cb = lc.ggml_backend_sched_eval_callback(callback)
        params = lc.llama_context_params()
        ctypes.memmove(
            ctypes.addressof(params), ctypes.addressof(self._llm.context_params), ctypes.sizeof(params)
        )
        params.cb_eval = self._rt_cb
        try:
            ctx = _internals.LlamaContext(model=self._llm._model, params=params, verbose=False)
        except ValueError as e:
            raise RetllmError(f"Cannot create the retracing context: {e}") from e
        lc.llama_set_abort_callback(ctx.ctx, self._abort_cb, None)
        lc.llama_set_n_threads(ctx.ctx, self.threads, self.threads)  # set_threads may have changed them
        self._rt_ctx = ctx
        return ctx

    def early_exit(self) -> EarlyExit:
        if self._early is None:
            self._early = EarlyExit(self.model_path)
        return self._early

    def retrace(self, prompt: Prompt, visual: np.ndarray, params: RetraceParams) -> RetraceResult:
        """Decode the question tail of ``prompt`` again with visual retracing; return its logits.

        ``prompt`` must be the one evaluated last (its KV is copied from the scoring context, then the
        final text segment is decoded again in one batch, as on the scoring context, with the hook).
        """
        if self._kv_ids != prompt.ids:
            raise RetllmError("Retracing needs the prompt evaluated first.")
        kind, toks, _key, first = prompt.segments[-1]
        if kind != "text":
            raise RetllmError("A prompt must end with text.")
        lc, src = self._lc, self._llm._ctx.ctx
        ctx = self._retrace_context()
        size = int(lc.llama_state_seq_get_size(src, 0))
        buf = (ctypes.c_uint8 * size)()
        got = int(lc.llama_state_seq_get_data(src, buf, size, 0))
        ctx.kv_cache_seq_rm(0, -1, -1)
        if got <= 0 or lc.llama_state_seq_set_data(ctx.ctx, buf, got, 0) == 0:
            raise RetllmError("Could not copy the KV cache to the retracing context.")
        start = prompt.pos_after[first - 1] if first else 0
        ctx.kv_cache_seq_rm(0, start, -1)
        hook = RetraceHook(self.early_exit(), params, visual)
        from llama_cpp import _internals

        batch = _internals.LlamaBatch(n_tokens=self.n_batch, embd=0, n_seq_max=1)
        try:
            for i in range(0, len(toks), self.n_batch):
                part = toks[i : i + self.n_batch]
                self._rt_hook = hook if i + self.n_batch >= len(toks) else None  # scoring batch only
                self._rt_error = None
                batch.set_batch(part, n_past=start + i, logits_all=False)
                ctx.decode(batch)
                if self._rt_error is not None:
                    raise RetllmError(f"Retracing failed: {self._rt_error}") from self._rt_error
        finally:
            self._rt_hook = None
            batch.close()
        self.stats["tokens_evaluated"] += len(toks)
        ptr = lc.llama_get_logits_ith(ctx.ctx, -1)
        logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).astype(np.float32, copy=True)
        return RetraceResult(logits, hook.entropies, hook.trigger, hook.edited)


def _ggml_base() -> Any:
    """libggml-base bundled with llama-cpp-python: tensor name, element count and f32 data pointer."""
    import llama_cpp

    lib = ctypes.CDLL(str(_lib_path(Path(llama_cpp.__file__).parent / "lib", "ggml-base")))
    lib.ggml_get_name.restype, lib.ggml_get_name.argtypes = ctypes.c_char_p, [ctypes.c_void_p]
    lib.ggml_nelements.restype, lib.ggml_nelements.argtypes = ctypes.c_int64, [ctypes.c_void_p]
    lib.ggml_get_data_f32.restype = ctypes.POINTER(ctypes.c_float)
    lib.ggml_get_data_f32.argtypes = [ctypes.c_void_p]
    return lib


def _lib_path(folder: Path, stem: str) -> Path:
    for name in (f"lib{stem}.so", f"lib{stem}.dylib", f"{stem}.dll"):
        if (folder / name).exists():
            return folder / name
    raise RetllmError(f"lib{stem} not found in {folder}.")
