"""The engine façade the shells use: open a library, manage roots, index, search, status.

A library is one folder::

    <library>/catalog.db          SQLite catalog (source of truth, WAL mode)
    <library>/index/<model>.hnsw  vector index per CLIP model (derived, repaired from the catalog)
    <library>/cache/              LLM image-embedding cache, thumbnails
    <library>/write.lock          held by the one process that is indexing

Every public engine operation has its entry here and delegates to its room: ``index_upkeep`` keeps the
vector indexes in step with the catalog, ``query_plan`` turns dates and places into filters,
``library_status`` gathers what ``status`` shows; faces and people are in ``library_people``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from . import config
from .catalog import Catalog, Root
from .errors import QueryError, RetllmError, first_line
from .freshness import DiskCheck
from .index_upkeep import IndexKeeper, plan_backfill
from .indexer import Indexer, IndexSummary
from .library_people import PeopleLibrary
from .library_status import LibraryStatus, collect_status
from .locking import WriterLock
from .progress import Progress
from .query_plan import apply_understanding, place_ids, understand_query
from .scanner import Scanner
from .search import CoarseSearcher, Query, SearchUpdate, rerank_updates
from .text_pass import TextPass, TextSummary
from .vector_index import VectorIndex

if TYPE_CHECKING:
    from .catalog.records import Photo, PlaceCount
    from .models.base import Model
    from .models.clip.towers import ClipModel
    from .models.llm.scorer import MllmScorer
    from .models.ocr import OcrModel
    from .rerank import RerankOptions
    from .understand import Understanding

log = logging.getLogger(__name__)


class Library(PeopleLibrary):
    """One photo library (a folder of catalog, indexes and caches) and the engine operations on it."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        models_dir: str | os.PathLike[str] | None = None,
        clip_model: str | None = None,
        mllm_model: str | None = None,
        threads: int | None = None,
        decode_workers: int | None = None,
        batch_size: int = 16,
        clip_int8: bool = False,
        mllm_cache_bytes: int = config.MLLM_CACHE_BYTES,
        mllm_kv_cache_bytes: int = config.MLLM_KV_CACHE_BYTES,
        n_ctx: int = config.LLM_N_CTX,
        read_text: bool = True,
        read_faces: bool = True,
        face_detector: str = "hog",
        llm_detail: str = config.LLM_DETAIL,
        prepare_budget_bytes: int = config.PREPARE_BUDGET_BYTES,
    ):
        self.path = config.library_dir(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.models_dir = config.models_dir(models_dir)
        self.clip_name = clip_model
        self.clip_int8 = clip_int8  # int8 dynamic quantization: ~2.5x faster on CPU, quality to be checked
        self.mllm_name = mllm_model
        if threads is not None and not 1 <= threads <= config.max_threads():
            raise RetllmError(f"threads must be between 1 and {config.max_threads()} (got {threads})")
        self.threads = threads or config.default_threads()
        self.decode_workers = decode_workers or max(1, min(4, os.cpu_count() or 1))
        self.batch_size = batch_size
        self.catalog = Catalog(self.path / "catalog.db")
        self.lock = WriterLock(self.path / "write.lock")
        self.disk = DiskCheck(self.catalog)  # results true to the disk (photos deleted behind our back)
        self._clip: ClipModel | None = None
        self._mllm: MllmScorer | None = None
        self._ocr: OcrModel | None = None
        self.read_text = read_text  # run the text pass (OCR) after the CLIP pass
        self.read_faces = read_faces  # run the face pass (and group people) after the text pass
        self.face_detector = face_detector
        self.mllm_cache_bytes = mllm_cache_bytes  # image embeddings of checked photos
        self.mllm_kv_cache_bytes = mllm_kv_cache_bytes  # LLM state after each checked photo (MBs per photo)
        self.n_ctx = n_ctx
        self.llm_detail = llm_detail  # photo detail the LLM sees (models/llm/images.py DETAIL_LEVELS)
        self.prepare_budget_bytes = prepare_budget_bytes  # disk for photos prepared ahead (prepare pass)
        self._model_lock = threading.RLock()
        self._busy_lock = threading.Lock()
        self._busy_runs = 0  # index runs in progress in this process (see check_threads)
        self._indexes = IndexKeeper(
            self.path,
            self.catalog,
            self.lock,
            self.models_dir,
            self.threads,
            self._model_lock,
            lambda: self.clip,
        )
        self.today_override: date | None = None  # "today" for relative dates in queries (tests pin it)
        self.week_start: int | None = None  # 0 = Monday … 6 = Sunday; None: the locale's

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._model_lock:  # a repaired in-memory index is saved by the next writer, never by a reader
            held: tuple[Model | None, ...] = (
                self._clip,
                self._mllm,
                self._indexes.take_fallback(),
                self._ocr,
                self._faces_model,
            )
            for m in held:
                if m is not None:
                    m.close()
            self._clip = self._mllm = self._ocr = self._faces_model = None
        self.catalog.close()

    def _try_lock(self) -> bool:
        try:
            self.lock.acquire(blocking=False)
            return True
        except RetllmError:
            return False

    # -- models ----------------------------------------------------------------------------------
    @property
    def clip(self) -> ClipModel:
        """The CLIP model (loaded lazily; raises ModelNotFoundError with instructions when missing)."""
        with self._model_lock:
            if self._clip is None:
                from .models.clip.towers import ClipConfig, ClipModel, find_clip_model, quantize_dynamic_int8

                model_dir = find_clip_model(self.models_dir, self.clip_name)
                if self.clip_int8 and not ClipConfig.load(model_dir).quantized_image_model:
                    quantize_dynamic_int8(model_dir)  # once per model folder, a few seconds
                clip = ClipModel(model_dir, threads=self.threads, quantized=self.clip_int8)
                self._indexes.adopt_legacy_embeddings(clip)
                self._clip = clip
            return self._clip

    @property
    def index(self) -> VectorIndex:
        """The vector index of the current CLIP model, checked against the catalog on first use."""
        return self._indexes.index()

    @property
    def search_model(self) -> str:
        """Name of the CLIP model whose embeddings search uses now (see ``IndexKeeper.search_models``)."""
        return self._indexes.search_models()[0].name

    # -- roots -----------------------------------------------------------------------------------
    def roots(self) -> list[Root]:
        return self.catalog.roots()

    def add_root(self, path: str | os.PathLike[str]) -> Root:
        p = Path(path).expanduser()
        if not p.exists():
            raise RetllmError(f"folder not found: {p}")
        if not p.is_dir():
            raise RetllmError(f"not a folder: {p}")
        real = str(p.resolve())
        for root in self.catalog.roots():
            if real == root.path:
                return root
            if real.startswith(root.path.rstrip(os.sep) + os.sep):
                return root  # already covered by a parent root
        root = self.catalog.add_root(real)
        # Roots inside the new one are merged into it: their photos keep their ids and vectors.
        for child in self.catalog.roots():
            if child.id != root.id and child.path.startswith(real.rstrip(os.sep) + os.sep):
                self.catalog.merge_root(child.id, into_id=root.id)
        return root

    def remove_root(self, path: str | os.PathLike[str]) -> int:
        """Forget a folder (the photos themselves are untouched); returns how many photos left the library."""
        real = str(Path(path).expanduser().resolve())
        root = self.catalog.root_by_path(real) or self.catalog.root_by_path(str(path))
        if root is None:
            raise RetllmError(f"not a library folder: {path}")
        with self.lock:
            ids = self.catalog.remove_root(root.id)
            if self._indexes.loaded or ids:
                index = self._indexes.writer_index()
                index.remove(ids)
                index.save()
        return len(ids)

    # -- indexing --------------------------------------------------------------------------------
    def index_roots(
        self,
        paths: list[str] | None = None,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
        only_paths: set[str] | None = None,
        text: bool | None = None,
        faces: bool | None = None,
    ) -> IndexSummary:
        """Add ``paths`` as roots (if given) and bring the catalog and index up to date with the disk.

        Then (unless ``text`` or the library's ``read_text`` says no) the text pass reads photos' words, and
        (unless ``faces`` or ``read_faces`` says no) the face pass finds faces and groups them into people.
        """
        t0 = time.perf_counter()
        with self.lock, self._busy():
            for p in paths or []:
                self.add_root(p)
            if only_paths is not None:  # a watcher batch also removes what searches found missing
                only_paths = set(only_paths) | self.disk.recorded()
            clip = self.clip
            self._indexes.adopt_pending(clip)
            index = self._indexes.writer_index()
            plan = Scanner(self.catalog, hash_workers=self.decode_workers).plan(
                progress=progress, cancel=cancel, only_paths=only_paths
            )
            if only_paths is None:
                plan_backfill(self.catalog, plan, clip, self.path)
            indexer = Indexer(
                self.catalog, index, clip, decode_workers=self.decode_workers, batch_size=self.batch_size
            )
            summary = indexer.run(plan, progress=progress, cancel=cancel)
            if cancel is not None and cancel.is_set():
                summary.cancelled = True
            else:
                self._places_pass(summary, progress, cancel)
                if self.read_text if text is None else text:
                    summary.text = self._run_text_pass(progress, cancel).as_dict()
                    summary.cancelled = summary.text["cancelled"]
                if not summary.cancelled and (self.read_faces if faces is None else faces):
                    summary.faces = self._run_face_pass(progress, cancel).as_dict()
                    summary.cancelled = summary.faces["cancelled"]
            if (
                paths
                or summary.added
                or summary.updated
                or summary.moved
                or summary.removed
                or summary.places
                or (summary.text and summary.text["read"] + summary.text["failed"])
                or (
                    summary.faces
                    and summary.faces["scanned"] + summary.faces["failed"] + summary.faces["grouped"]
                )
            ):
                self._backup_catalog(small_run=only_paths is not None)
            if not summary.cancelled:
                self.disk.forget(lambda p: self.catalog.photo_by_path(p) is not None)
        summary.seconds = round(time.perf_counter() - t0, 3)
        return summary

    @contextlib.contextmanager
    def _busy(self) -> Iterator[None]:
        """Background work of this process (an index run) is using the cores meanwhile."""
        with self._busy_lock:
            self._busy_runs += 1
        try:
            yield
        finally:
            with self._busy_lock:
                self._busy_runs -= 1

    def check_threads(self) -> int:
        """Threads for an LLM check now: one fewer while this process indexes. bench_replicas with one
        core busy (SmolVLM): 1 thread checks a new photo in 4.2 s, 2 in 6.9 s (ggml's threads wait on each
        other at every graph node, and one of them waits for the busy core)."""
        return max(1, self.threads - 1) if self._busy_runs else self.threads

    def _backup_catalog(self, small_run: bool) -> None:
        """A rolling, checked copy of the catalog (see ``repair``); a failed copy never fails the index run."""
        from .repair import backup_due, make_backup

        if not backup_due(self.path, small_run):
            return
        try:
            make_backup(self.catalog, self.path)
        except (RetllmError, OSError) as e:
            log.warning("catalog backup not made: %s", e)

    def _places_pass(
        self, summary: IndexSummary, progress: Progress | None, cancel: threading.Event | None
    ) -> None:
        """GPS → place for photos that lack one; fails soft (a broken gazetteer never fails indexing)."""
        try:
            summary.places = self.update_places(progress=progress, cancel=cancel)
        except Exception as e:  # optional pass: report, keep what was indexed
            summary.places_error = f"places not updated: {e}"

    def update_places(self, progress: Progress | None = None, cancel: threading.Event | None = None) -> int:
        """Reverse-geocode the stored GPS of photos without a place (or with a stale one); no file is read.

        Existing libraries get their places this way on the next ``index`` without re-embedding anything.
        """
        from .places import gazetteer, gazetteer_version

        version = gazetteer_version()
        todo = self.catalog.photos_needing_places(version)
        if not todo:
            self.catalog.put_places([], version)  # drops places of photos whose GPS is gone
            return 0
        g = gazetteer()
        done = 0
        for start in range(0, len(todo), 5000):
            if cancel is not None and cancel.is_set():
                break
            chunk = todo[start : start + 5000]
            places = g.reverse_many([r[1] for r in chunk], [r[2] for r in chunk])
            done += self.catalog.put_places(
                [(pid, lat, lon, p) for (pid, lat, lon), p in zip(chunk, places, strict=True)], version
            )
            if progress:
                progress("places", done, len(todo))
        return done

    def places(self) -> list[PlaceCount]:
        """Cities, regions and countries with photo counts, most photos first."""
        return self.catalog.place_counts()

    def timeline(
        self, date_from: str | None = None, date_to: str | None = None, place: str | None = None
    ) -> list[tuple[int, str]]:
        """(photo id, day) of the library newest first, as the app shows it with no query; the same date
        (EXIF capture time) and place filters as a search."""
        rows = self.catalog.timeline()
        keep: set[int] | None = None
        if date_from or date_to:
            keep = self.catalog.ids_in_date_range(date_from, date_to)
        if place:
            in_place = self.catalog.ids_in_place(place)
            keep = in_place if keep is None else keep & in_place
        return rows if keep is None else [r for r in rows if r[0] in keep]

    def photos(self, ids: list[int]) -> dict[int, Photo]:
        """Catalog photos by id (the timeline fetches the rows it shows, a page at a time)."""
        return self.catalog.photos_by_ids(ids)

    def place_name(self, photo_id: int) -> str | None:
        """Where a photo was taken in words ("Lisbon, Portugal"), or None when its GPS names no place."""
        p = self.catalog.place_of(photo_id)
        if p is None:
            return None
        parts = [x for x in (p.get("city"), p.get("region"), p.get("country")) if x]
        return ", ".join(dict.fromkeys(parts)) or None

    @property
    def ocr(self) -> OcrModel:
        """The OCR model of the text pass (its weights ship in the rapidocr-onnxruntime wheel; lazy)."""
        with self._model_lock:
            if self._ocr is None:
                from .models.ocr import OcrModel

                self._ocr = OcrModel(threads=self.threads)
            return self._ocr

    def read_texts(
        self, progress: Progress | None = None, cancel: threading.Event | None = None
    ) -> TextSummary:
        """Run the text pass alone (photos already embedded): read the words of photos not read yet."""
        with self.lock:
            return self._run_text_pass(progress, cancel)

    def _run_text_pass(self, progress: Progress | None, cancel: threading.Event | None) -> TextSummary:
        try:
            reader = self.ocr
            reader.bundled_check()
        except RetllmError as e:  # no OCR: search still works on CLIP alone
            return TextSummary(error=str(e))
        return TextPass(self.catalog, reader).run(progress=progress, cancel=cancel)

    def rebuild_index(self, progress: Progress | None = None) -> int:
        """Rebuild the vector index from the catalog's stored vectors (no re-embedding)."""
        with self.lock:
            clip = self.clip
            idx = self._indexes.writer_index()
            ids = sorted(self.catalog.embedding_ids(clip.key))
            idx.rebuild(self.catalog.iter_embeddings(clip.key, ids), expected=len(ids))
            idx.save()
            if progress:
                progress("rebuild", len(ids), len(ids))
            return len(idx)

    # -- search ----------------------------------------------------------------------------------
    def search_coarse(self, query: Query, top: int = 50, allowed: set[int] | None = None) -> SearchUpdate:
        clip, index = self._indexes.search_models()
        if len(index) == 0:
            message = "the library has no indexed photos yet"
            if self.catalog.count_photos():
                message = (
                    f"no photo is embedded with the CLIP model {clip.name} yet "
                    "(a new or changed model): run `retllm-desktop index`"
                )
            return SearchUpdate(query=query, results=[], phase="done", message=message)
        if allowed is None and query.places:
            allowed = place_ids(self.catalog, list(query.places))
        searcher = CoarseSearcher(self.catalog, index, clip)

        def run(exclude: set[int]) -> SearchUpdate:
            searcher.exclude = exclude
            return searcher.search(query, top=top, allowed=allowed)

        update, missing = self.disk.search(run, {r.id: r.path for r in self.catalog.roots()})
        return replace(update, missing=missing)

    # -- query understanding ---------------------------------------------------------------------
    def understand(self, text: str, ignore: tuple[str, ...] | list[str] = ()) -> Understanding:
        """Dates, places and named people in ``text``; places resolve to where the library has photos.
        Without a usable gazetteer only dates and people are understood."""
        return understand_query(self.catalog, text, self.today(), self.week_start, ignore=ignore)

    def today(self) -> date:
        """ "Today" for relative dates ("last weekend"); ``RETLLM_TODAY=YYYY-MM-DD`` pins it (tests, demos)."""
        pinned = self.today_override or os.environ.get("RETLLM_TODAY")
        if pinned:
            return pinned if isinstance(pinned, date) else date.fromisoformat(pinned)
        return date.today()

    def search(
        self,
        query: Query | str,
        top: int = 50,
        rerank: RerankOptions | None = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[SearchUpdate]:
        """Yield the coarse results at once, then (with ``rerank`` options) the LLM-reranked updates."""
        if isinstance(query, str):
            query = Query(text=query)
        typed = query.text
        u = None if query.literal or not query.text else self.understand(query.text, ignore=query.ignore)
        query, allowed, understood = apply_understanding(self.catalog, query, u)
        coarse = replace(
            self.search_coarse(query, top=top, allowed=allowed), understood=understood, typed=typed
        )
        if rerank is None or not coarse.results:
            yield replace(coarse, phase="done")
            return
        yield coarse
        cutoff = rerank.cutoff
        for update in self._rerank(coarse, rerank, cancel):
            yield replace(update, understood=understood, typed=typed, missing=coarse.missing, cutoff=cutoff)

    def _rerank(
        self, coarse: SearchUpdate, options: RerankOptions, cancel: threading.Event | None
    ) -> Iterator[SearchUpdate]:
        """The fine stage can only add: without a usable LLM the coarse results stand, with one warning."""
        try:
            scorer = self.mllm
        except RetllmError as e:
            yield replace(coarse, phase="done", message=f"reranking skipped: {first_line(e)}")
            return
        try:
            self._load_mllm(scorer)
        except RetllmError as e:
            error = f"the LLM {scorer.config.name} could not be loaded: {first_line(e)}"
            yield replace(coarse, phase="done", llm_error=error, message=f"reranking skipped: {error}")
            return
        from .prepare_pass import TopkHits

        lo = getattr(options, "offset", 0)
        window = [r for r in coarse.results if not r.in_library][lo : lo + getattr(options, "k", 10)]
        TopkHits(self.path / "cache" / "prepared" / "topk-hits.json").record(r.photo.hash for r in window)
        yield from rerank_updates(coarse, scorer, options, cancel)

    def _load_mllm(self, scorer: MllmScorer) -> None:
        """Check the GGUF files (header, size, mmproj pairing) before llama.cpp sees them, then load.

        A failed load drops the scorer, so the next search tries again (the user may have fixed the files).
        """
        if scorer.loaded:
            return
        from .models.llm.check import check_mllm_files

        try:
            check_mllm_files(scorer.config.model_path, scorer.config.mmproj_path)
            scorer.load()
        except RetllmError:
            with self._model_lock:
                if self._mllm is scorer:
                    self._mllm = None
            scorer.close()
            raise

    # -- the fine stage (multimodal LLM) ---------------------------------------------------------
    @property
    def mllm(self) -> MllmScorer:
        """The reranking LLM (loaded lazily, kept warm; its image embeddings cached per library)."""
        with self._model_lock:
            if self._mllm is None:
                from .models.llm.cache import EmbeddingCache
                from .models.llm.scorer import MllmScorer, find_mllm_model

                cache = EmbeddingCache(self.path / "cache" / "mllm", max_bytes=self.mllm_cache_bytes)
                kv_cache = EmbeddingCache(self.path / "cache" / "mllm-kv", max_bytes=self.mllm_kv_cache_bytes)
                self._mllm = MllmScorer(
                    find_mllm_model(self.models_dir, self.mllm_name),
                    threads=self.threads,
                    n_ctx=self.n_ctx,
                    cache=cache,
                    state_disk_cache=kv_cache,
                    detail=self.llm_detail,
                    prepared_dir=self.path / "cache" / "prepared",
                )
                self._mllm.thread_policy = self.check_threads
            return self._mllm

    def prepare(self, progress: Progress | None = None, cancel: threading.Event | None = None):
        """The prepare pass (prepare_pass.py): photos' image embeddings for the LLM, ahead of searches."""
        from .prepare_pass import PreparePass, PrepareSummary, TopkHits

        try:
            scorer = self.mllm
            self._load_mllm(scorer)
        except RetllmError as e:
            return PrepareSummary(error=first_line(e))
        hits = TopkHits(self.path / "cache" / "prepared" / "topk-hits.json")
        return PreparePass(self.catalog, scorer, self.prepare_budget_bytes, hits).run(progress, cancel)

    def prepared_usage(self) -> tuple[int, int]:
        """(photos, bytes) prepared for the installed LLM at the current settings; (0, 0) without one."""
        try:
            store = self.mllm.prepared
        except (RetllmError, OSError):
            return 0, 0
        u = store.usage() if store is not None else None
        return (u.photos, u.bytes) if u else (0, 0)

    def require_mllm(self) -> None:
        """Raise ModelNotFoundError (what is missing, how to get it) unless a reranking LLM is installed."""
        if self._mllm is None:
            from .models.llm.scorer import find_mllm_model

            find_mllm_model(self.models_dir, self.mllm_name)

    def mllm_available(self) -> bool:
        """Whether a reranking LLM is installed (does not load it)."""
        try:
            self.require_mllm()
            return True
        except RetllmError:
            return False

    def explain(self, photo_path: str, query: Query | str) -> Iterator[str]:
        """Stream the LLM's one-sentence reason why ``photo_path`` does or does not match ``query``."""
        if isinstance(query, str):
            query = Query(text=query)
        if not os.path.isfile(photo_path):
            raise QueryError(f"photo not found: {photo_path}")
        photo = self.catalog.photo_by_path(os.path.abspath(photo_path))
        yield from self.mllm.explain(
            photo_path, text=query.text, query_image=query.image, candidate_key=photo.hash if photo else None
        )

    # -- status ----------------------------------------------------------------------------------
    def status(self, failures_limit: int = 50) -> LibraryStatus:
        return collect_status(self, failures_limit)
