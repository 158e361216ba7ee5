"""Fine rerank with a local multimodal LLM (the RetLLM method): one P(True) per (photo, query).

For each candidate photo the model is asked "Does the image match the caption: <query>? Please directly
output True or False" (prompts in ``resources/prompts.toml``) and the score is P(True) at the first
generated position, read from the full-vocabulary logits (``answer.py``). Uncertain answers get a
prompt-level second look (``MllmScorer.score``), our stand-in for the paper's visual enhancement.

The LLM stage, one job per module::

    model_files.py  installed model folders (mllm.json), discovery, file fingerprints
    prompting.py    prompts.toml parts -> the model's chat format (no llama)
    images.py       which pixels of a photo the model sees
    session.py      the only module touching llama-cpp-python / mtmd internals
    stores.py       image-embedding and KV-snapshot caches (memory LRU + disk)
    lru.py          the byte-bounded LRU both use
    answer.py       P(True) / P(False) / entropy from logits; the second-look policy
    scorer.py       this: ties them together per call; thread-safe

Speed on CPU comes from the caches in ``stores.py`` and from the session reusing the live KV prefix;
none of them changes the numbers (tests check this).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ...config import LLM_DETAIL, LLM_N_CTX, default_threads
from ...errors import CancelledError, ImageError, ModelLoadError, RetllmError
from .answer import VE_BAND, VE_THRESHOLD, SecondLook, answer_stats, combine_passes, vocab_entropy
from .cache import EmbeddingCache
from .check import projector_type
from .fine_score import VE_MODES, FineScore
from .images import ImageRef, detail_tokens, prepare_image, resolve_detail
from .model_files import HANDLERS, MllmConfig, file_fingerprint, find_mllm_model
from .prepared import PreparedStore, namespace_of
from .prompting import build_parts, load_prompts, query_kind, render_prompt
from .retrace import RetraceParams, RetraceResult
from .session import EncodeInterrupted, ImageInput, LlamaSession, Prompt, llama_cpp_version
from .stores import ImageEmbeddings, KvSnapshots
from .text_stream import Utf8Stream

__all__ = [
    "HANDLERS",
    "EncodeInterrupted",
    "VE_MODES",
    "FineScore",
    "MllmConfig",
    "MllmScorer",
    "SecondLook",
    "answer_stats",
    "combine_passes",
    "find_mllm_model",
    "load_prompts",
    "render_prompt",
]


class MllmScorer:
    """P(True) scorer for (candidate photo, query) pairs; lazy-loads the model on first use.

    Second look (``ve``, see :class:`SecondLook`): "off" never, "always" every candidate, "auto" when the
    first look is uncertain. It continues the first-look conversation in the same context (KV cache
    kept): the assistant turn holds the first answer (the likelier of True/False), then a user turn shows
    the candidate again (``ve_view``: "zoom" = centre crop, "whole" = same image) plus a "Look at the
    image again carefully..." instruction, and P(True) is read again. Final numbers are the
    confidence-weighted mean of both looks (``combine_passes``), for P(True), P(False) and entropy alike;
    ``first_pass_score`` keeps the first P(True). ``ve_threshold`` / ``ambiguous_band`` given here are
    defaults; each call may pass its own policy.

    Thread-safe: one lock serialises all use of the llama/mtmd contexts.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike[str],
        threads: int | None = None,
        n_ctx: int = LLM_N_CTX,
        cache: EmbeddingCache | None = None,
        ve_threshold: float = VE_THRESHOLD,
        ambiguous_band: tuple[float, float] | None = VE_BAND,
        *,
        n_batch: int = 512,
        ve_view: str | None = None,
        image_max_side: int | None = None,
        state_cache_bytes: int = 256 * 1024**2,
        memory_embeddings_bytes: int = 64 * 1024**2,
        state_disk_cache: EmbeddingCache | None = None,
        prompts_path: Path | None = None,
        detail: str = LLM_DETAIL,
        flash_attn: bool | None = None,
        prepared_dir: Path | None = None,
        prepared_codec: str = "f16",
        single_view: bool | None = None,
    ):
        self.config = MllmConfig.from_dir(model_dir)
        self.projector = projector_type(self.config.mmproj_path)
        self.detail = resolve_detail(detail, self.projector)  # "auto" becomes this projector's level
        self.max_image_tokens = detail_tokens(self.detail)  # mtmd's cap per photo (images.DETAIL_LEVELS)
        # idefics3: no tile that repeats the overview (images.py); False: mtmd's layout as it is (benchmarks)
        self.single_view = self.projector == "idefics3" if single_view is None else bool(single_view)
        self.threads = int(threads or default_threads())
        # threads for the next check, asked before each one (the library: one fewer while it indexes);
        # None: always ``threads``
        self.thread_policy: Callable[[], int] | None = None
        self.n_ctx = int(n_ctx)
        self.default_second_look = SecondLook("auto", float(ve_threshold), ambiguous_band)
        self.prompts = load_prompts(prompts_path)
        ve_cfg = self.prompts.get("ve", {})
        self.ve_view = ve_view or ve_cfg.get("view", "zoom")
        if self.ve_view not in ("whole", "zoom"):
            raise ValueError("ve_view must be 'whole' or 'zoom'")
        self.zoom_fraction = float(ve_cfg.get("zoom_fraction", 0.6))
        self.image_max_side = int(image_max_side or self.config.image_max_side)
        self.cache = cache
        self.state_disk_cache = state_disk_cache
        self.stats: dict[str, int] = {
            "encode": 0,
            "embedding_disk_hits": 0,
            "embedding_memory_hits": 0,
            "state_restores": 0,
            "state_saves": 0,
            "state_disk_hits": 0,
            "state_restore_failures": 0,
            "tokens_evaluated": 0,
            "images_decoded": 0,
            "prepared_hits": 0,
        }
        self.session = LlamaSession(
            self.config.model_path,
            self.config.mmproj_path,
            n_ctx=self.n_ctx,
            n_batch=int(n_batch),
            threads=self.threads,
            stats=self.stats,
            image_max_tokens=self.max_image_tokens,
            single_view=self.single_view,
            # None: the model's own entry decides (registry data, measured per model by bench_replicas)
            flash_attn=bool(self.config.extra.get("flash_attn", False)) if flash_attn is None else flash_attn,
        )
        self.embeddings = ImageEmbeddings(int(memory_embeddings_bytes), cache, self.stats)
        self._prepared_dir = Path(prepared_dir) if prepared_dir is not None else None
        self._prepared_codec = prepared_codec
        self._prepared: PreparedStore | None = None
        self._waiters = 0  # score() calls waiting for or holding the lock: the prepare pass gives way
        self._waiters_lock = threading.Lock()
        self.check_seconds: dict[bool, float] = {}  # recent seconds per check: photo at hand / new
        self._state_cache_bytes = int(state_cache_bytes)
        self._states: KvSnapshots | None = None  # needs the model fingerprints: made on load
        self._lock = threading.RLock()
        self._model_id: str | None = None
        self._true_ids: list[int] = []
        self._false_ids: list[int] = []
        self._closed = False
        self._content_keys: dict[tuple[str, int, int], str] = {}
        # (P(True), P(False), entropy) of each look of the last score() call, for diagnostics/tests
        self.last_passes: list[tuple[float, float, float]] = []
        self.last_retrace: RetraceResult | None = None  # what the last retraced score saw, for tests

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
        return self.session.loaded

    @property
    def model_id(self) -> str:
        """Identity of the vision side (embeddings depend only on the mmproj file)."""
        if self._model_id is None:
            self._model_id = file_fingerprint(self.config.mmproj_path)
        return self._model_id

    def state_namespace(self) -> str:
        """What a KV snapshot on disk depends on besides the prompt.

        The exact text model file and vision projector (not their name: another file can be installed
        under the same name), the llama.cpp build that wrote the bytes, and the context size.
        """
        text_model = file_fingerprint(self.config.model_path)
        fa = "|flash" if self.session.flash_attn else ""
        return f"{self.model_id}|{text_model}|llama-cpp-python {llama_cpp_version()}|{self.n_ctx}{fa}"

    def load(self) -> None:
        with self._lock:
            self._ensure_loaded()

    def _ensure_loaded(self) -> None:
        if self.session.loaded:
            return
        if self._closed:
            raise RetllmError("This scorer was closed.")
        s = self.session
        s.load()
        self.embeddings.n_embd = s.n_embd
        _ = self.prepared  # attach the prepared store to the embedding lookups
        self._states = KvSnapshots(
            self._state_cache_bytes, self.state_disk_cache, self.state_namespace(), self.stats
        )
        answers = self.prompts.get("answers", {})
        self._true_ids = s.single_token_ids(answers.get("positive", ["True"]))
        self._false_ids = s.single_token_ids(answers.get("negative", ["False"]))
        if not self._true_ids:
            self.close()
            raise ModelLoadError(
                f"{self.config.model_path.name}: no single-token spelling of 'True' in the vocabulary."
            )

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
            self.session.close()
            if self._states is not None:
                self._states.clear_memory()
            self.embeddings.memory.clear()

    # -- public API ------------------------------------------------------------------------------
    def score(
        self,
        candidate_path: str | os.PathLike[str],
        *,
        text: str | None = None,
        query_image: str | os.PathLike[str] | None = None,
        candidate_key: str | None = None,
        query_key: str | None = None,
        ve: str | SecondLook = "auto",
        ve_threshold: float | None = None,
        cancel: threading.Event | None = None,
    ) -> FineScore:
        """Score one candidate; see the class docstring for the second look and the combination rule.

        ``ve`` is a mode ("off" | "auto" | "always", with this scorer's default threshold and band, or
        ``ve_threshold``) or a full :class:`SecondLook` policy; either way it applies to this call only.
        ``candidate_key`` / ``query_key`` identify photo contents for the embedding cache (e.g. the
        catalog's file hash); without them the file is hashed. Setting ``cancel`` aborts the evaluation in
        flight (between llama.cpp graph nodes) with :class:`CancelledError`; the context is left clean.
        """
        policy = self._policy(ve, ve_threshold)
        with self._foreground(), self._lock, self.session.watching(cancel):  # the flag: the lock holder's
            self._apply_thread_policy()
            try:
                res = self._score(candidate_path, text, query_image, candidate_key, query_key, policy)
            except (RetllmError, RuntimeError) as e:
                if cancel is not None and cancel.is_set():
                    raise CancelledError("Scoring cancelled.") from e
                raise
            old = self.check_seconds.get(res.cache_hit)  # running mean for "about N s left"
            self.check_seconds[res.cache_hit] = res.seconds if old is None else 0.7 * old + 0.3 * res.seconds
            return res

    def _apply_thread_policy(self) -> None:
        """Between prompts (under the lock): the thread count the policy asks for now."""
        if self.thread_policy is not None and not self._closed:
            self.session.set_threads(max(1, min(self.threads, int(self.thread_policy()))))

    @contextlib.contextmanager
    def _foreground(self) -> Iterator[None]:
        with self._waiters_lock:
            self._waiters += 1
        try:
            yield
        finally:
            with self._waiters_lock:
                self._waiters -= 1

    @property
    def busy(self) -> bool:
        """A check (search) is waiting for or using the model: background work should give way."""
        return self._waiters > 0

    # -- photos prepared ahead (the prepare pass, prepare_pass.py) --------------------------------
    def prepared_namespace(self) -> str:
        """What prepared rows depend on: the mmproj file, how a photo is shown to it, the llama.cpp build."""
        probe = ImageRef(
            Path("."), "", "whole", self.image_max_side, 1.0, self.max_image_tokens, self.single_view
        )
        return namespace_of(self.model_id, probe.variant, llama_cpp_version())

    @property
    def prepared(self) -> PreparedStore | None:
        """The store of photos prepared ahead (None without a folder for it)."""
        if self._prepared is None and self._prepared_dir is not None:
            self._prepared = PreparedStore(
                self._prepared_dir, self.prepared_namespace(), self._prepared_codec
            )
            self.embeddings.prepared = self._prepared
        return self._prepared

    def prepared_key(self, path: str | os.PathLike[str], content_key: str) -> str:
        return self._emb_key(self._ref(path, content_key, "whole"))

    def ready(self, path: str | os.PathLike[str], content_key: str | None) -> bool:
        """Whether this photo's image rows are at hand (memory, checked-photo cache or prepared):
        checking it then skips the vision tower."""
        if not content_key:
            return False
        key = self.prepared_key(path, content_key)
        store = self.prepared
        return (
            key in self.embeddings.memory
            or (self.cache is not None and key in self.cache)
            or (store is not None and store.has(key))
        )

    def prepare_photo(
        self, path: str | os.PathLike[str], content_key: str, cancel: threading.Event | None = None
    ) -> int:
        """Encode one photo through the vision tower into the prepared store; bytes written (0: had it).

        Gives way between image chunks when a check is waiting (:class:`EncodeInterrupted`); the caller
        retries the photo later.
        """
        store = self.prepared
        if store is None:
            raise RetllmError("This scorer has no folder for prepared photos.")
        with self._lock, self.session.watching(cancel):
            self._ensure_loaded()
            self._apply_thread_policy()
            ref = self._ref(path, content_key, "whole")
            key = self._emb_key(ref)
            if store.has(key):
                return 0
            img = prepare_image(ref)

            def stop() -> bool:
                return self.busy or (cancel is not None and cancel.is_set())

            emb = self.session.encode_image(ImageInput(key, img.width, img.height, img.tobytes()), stop)
            self.stats["encode"] += 1
            return store.put(key, emb, img.width, img.height)

    def _policy(self, ve: str | SecondLook, ve_threshold: float | None) -> SecondLook:
        if isinstance(ve, SecondLook):
            return ve
        if ve not in VE_MODES:
            raise ValueError(f"ve must be one of {VE_MODES}")
        d = self.default_second_look
        return SecondLook(ve, d.entropy_threshold if ve_threshold is None else float(ve_threshold), d.band)

    def _images(
        self,
        candidate: str | os.PathLike[str],
        candidate_key: str | None,
        query_image: str | os.PathLike[str] | None,
        query_key: str | None,
        candidate_view: str = "whole",
    ) -> dict[str, ImageRef]:
        images = {"candidate": self._ref(candidate, candidate_key, candidate_view)}
        if query_image is not None:
            images["query"] = self._ref(query_image, query_key, "whole")
        return images

    def _score(
        self,
        candidate_path: str | os.PathLike[str],
        text: str | None,
        query_image: str | os.PathLike[str] | None,
        candidate_key: str | None,
        query_key: str | None,
        policy: SecondLook,
    ) -> FineScore:
        kind = query_kind(text, query_image)
        t0 = time.perf_counter()
        self._ensure_loaded()
        enc0 = self.stats["encode"]
        images = self._images(candidate_path, candidate_key, query_image, query_key)
        msgs: list[dict[str, Any]] = [
            {"role": "user", "content": build_parts(self.prompts["score"][kind]["parts"], text, images)}
        ]
        retrace = policy.retrace_params()
        if retrace is not None:
            return self._score_retraced(msgs, images["candidate"], retrace, t0, enc0)
        first = self._look(msgs, save_states=True)
        use_ve = policy.wanted(first)
        final = first
        if use_ve:
            answer = "True" if first[0] >= first[1] else "False"
            ve_images = self._images(candidate_path, candidate_key, query_image, query_key, self.ve_view)
            msgs2 = msgs + [
                {"role": "assistant", "content": answer},
                {"role": "user", "content": build_parts(self.prompts["ve"][kind]["parts"], text, ve_images)},
            ]
            second = self._look(msgs2, save_states=False)
            final = combine_passes(first, second)
        self.last_passes = [first[:3], second[:3]] if use_ve else [first[:3]]
        return FineScore(
            p_true=final[0],
            p_false=final[1],
            entropy=final[2],
            ve_used=use_ve,
            score=final[0],
            first_pass_score=first[0],
            seconds=time.perf_counter() - t0,
            cache_hit=self.stats["encode"] == enc0,
            first_pass_entropy=first[2],
            vocab_entropy=final[3],
        )

    def _score_retraced(
        self, msgs: list[dict[str, Any]], candidate: ImageRef, params: RetraceParams, t0: float, enc0: int
    ) -> FineScore:
        """First look on the scoring context, then the question tail once more with retracing."""
        prompt = self._prepare(msgs)
        try:
            plain = self.session.evaluate(
                prompt, embeddings=self.embeddings, states=self._states, save_states=True
            )
            key = self._emb_key(candidate)
            visual = prompt.embeddings.get(key)
            if visual is None:
                visual = self.embeddings.get(key)
            if visual is None:
                raise RetllmError("The candidate's visual tokens are missing after its look.")
            res = self.session.retrace(prompt, visual, params)
        finally:
            self.session.free(prompt)
        first = (*answer_stats(plain, self._true_ids, self._false_ids), vocab_entropy(plain))
        final = (*answer_stats(res.logits, self._true_ids, self._false_ids), vocab_entropy(res.logits))
        self.last_passes = [final[:3]]
        self.last_retrace = res
        return FineScore(
            p_true=final[0],
            p_false=final[1],
            entropy=final[2],
            ve_used=res.edited_layer is not None,
            score=final[0],
            first_pass_score=first[0],
            seconds=time.perf_counter() - t0,
            cache_hit=self.stats["encode"] == enc0,
            first_pass_entropy=first[2],
            vocab_entropy=final[3],
            retrace_layer=res.edited_layer,
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
        kind = query_kind(text, query_image)
        cfg = self.prompts.get("explain", {})
        limit = int(max_tokens or cfg.get("max_tokens", 60))
        temperature = float(cfg.get("temperature", 0.0))
        rng = np.random.default_rng(0)
        with self._lock:
            self._ensure_loaded()
            images = self._images(candidate_path, candidate_key, query_image, query_key)
            msgs = [{"role": "user", "content": build_parts(cfg[kind]["parts"], text, images)}]
            prompt = self._prepare(msgs)
        generated: list[int] = []
        sent = ""
        stream = Utf8Stream()  # tokens are bytes, not characters; invalid bytes are dropped, never "�"
        produced = ""
        try:
            for _ in range(limit):
                with self._lock:
                    self._ensure_loaded()
                    logits = self.session.evaluate(
                        prompt, embeddings=self.embeddings, states=self._states, extra=generated
                    )
                    if temperature > 0:
                        z = (logits - logits.max()) / temperature
                        p = np.exp(z)
                        tok = int(rng.choice(p.size, p=p / p.sum()))
                    else:
                        tok = int(np.argmax(logits))
                    if self.session.is_eog(tok):
                        break
                    piece = self.session.detokenize(tok, generated)
                generated.append(tok)
                produced += stream.feed(piece)
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
                self.session.free(prompt)

    def image_layout(self, path: str | os.PathLike[str]) -> tuple[int, int]:
        """(image chunks, image tokens) the model makes of this photo at this scorer's detail."""
        with self._lock:
            self._ensure_loaded()
            img = prepare_image(self._ref(path, None, "whole"))
            return self.session.image_layout(ImageInput("layout", img.width, img.height, img.tobytes()))

    def clear_state_cache(self) -> None:
        """Drop in-memory KV snapshots and embeddings (e.g. to measure the disk-cache-only path)."""
        with self._lock:
            if self._states is not None:
                self._states.clear_memory()
            self.embeddings.memory.clear()

    # -- internals -------------------------------------------------------------------------------
    def _ref(self, path: str | os.PathLike[str], key: str | None, view: str) -> ImageRef:
        p = Path(path)
        if key is None:
            try:
                st = p.stat()
            except OSError as e:
                raise ImageError(f"Cannot read {p}: {e}") from e
            memo = (str(p), st.st_size, st.st_mtime_ns)
            key = self._content_keys.get(memo)
            if key is None:
                from ...imaging import file_hash

                key = file_hash(p)
                self._content_keys[memo] = key
        zoom = self.zoom_fraction if view == "zoom" else 1.0
        return ImageRef(p, key, view, self.image_max_side, zoom, self.max_image_tokens, self.single_view)

    def _emb_key(self, ref: ImageRef) -> str:
        return f"{self.model_id}|{ref.content_key}|{ref.variant}"

    def _prepare(self, messages: list[dict[str, Any]]) -> Prompt:
        """Render + tokenise. Cached images get a blank bitmap of the same size (only shapes matter).

        The blank stand-in is checked: if mtmd wants another number of embedding rows for it than the
        cache holds (an entry from another llama.cpp build, say), that entry is dropped and the prompt
        is tokenised again from the real photo, so a blank image is never encoded or cached.
        """
        s = self.session
        text, refs = render_prompt(
            self.config.handler,
            messages,
            chat_template=s.chat_template,
            bos_token=s.bos_text,
            eos_token=s.eos_text,
            marker=s.marker,
        )
        stale: set[str] = set()
        while True:
            inputs = [self._image_input(ref, use_cache=self._emb_key(ref) not in stale) for ref in refs]
            prompt = s.tokenize(text, inputs)
            misfits = {
                im.key
                for im in inputs
                if im.embedding is not None and prompt.image_tokens.get(im.key) != im.embedding.shape[0]
            }
            if not misfits:
                return prompt
            s.free(prompt)
            for key in misfits - stale:
                self.embeddings.drop(key)
            stale |= misfits

    def _image_input(self, ref: ImageRef, use_cache: bool) -> ImageInput:
        key = self._emb_key(ref)
        hit = self.embeddings.lookup(key) if use_cache else None
        if hit is not None:
            arr, w, h = hit
            return ImageInput(key, w, h, None, arr)
        img = prepare_image(ref)
        return ImageInput(key, img.width, img.height, img.tobytes())

    def _look(self, messages: list[dict[str, Any]], save_states: bool) -> tuple[float, float, float, float]:
        """(P(True), P(False), top-10 entropy, full-vocabulary entropy) of one look."""
        logits = self._logits(messages, save_states=save_states)
        return (*answer_stats(logits, self._true_ids, self._false_ids), vocab_entropy(logits))

    def _logits(self, messages: list[dict[str, Any]], save_states: bool) -> np.ndarray:
        prompt = self._prepare(messages)
        try:
            return self.session.evaluate(
                prompt, embeddings=self.embeddings, states=self._states, save_states=save_states
            )
        finally:
            self.session.free(prompt)
