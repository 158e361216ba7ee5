"""The engine façade the shells use: open a library, manage roots, index, search, status.

A library is one folder::

    <library>/catalog.db          SQLite catalog (source of truth, WAL mode)
    <library>/index/<model>.hnsw  vector index per CLIP model (derived, repaired from the catalog)
    <library>/cache/              LLM image-embedding cache, thumbnails
    <library>/write.lock          held by the one process that is indexing

Over 600 lines on purpose: this is the one façade both shells call, so every public engine operation has
its entry here (each delegates to its room); the largest part keeps each CLIP model's vector index in
step with the catalog and with other processes writing to the same library.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from . import config
from .catalog import Catalog, Root
from .errors import QueryError, RetllmError
from .indexer import Indexer, IndexSummary
from .locking import WriterLock
from .progress import Progress
from .scanner import FileStat, Scanner
from .search import CoarseSearcher, Query, SearchUpdate, rerank_updates
from .text_pass import TextPass, TextSummary
from .vector_index import VectorIndex

log = logging.getLogger(__name__)


@dataclass
class LibraryStatus:
    library: str
    models_dir: str
    roots: list[dict[str, Any]]
    photos: int
    offline: int
    failures: int
    clip_model: str | None
    clip_error: str | None
    embeddings: dict[str, int]
    indexed: int  # vectors in the index for the current CLIP model
    index_healthy: bool
    missing_embeddings: int
    mllm_model: str | None = None
    mllm_error: str | None = None
    failed_files: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0  # special files passed over on purpose (FIFOs, dangling symlinks, loops)
    skipped_files: list[dict[str, Any]] = field(default_factory=list)
    search_model: str | None = None  # differs from clip_model while a switched-to model is being filled
    taken_range: tuple[str | None, str | None] = (None, None)  # earliest, latest EXIF capture time
    places: list[dict[str, Any]] = field(
        default_factory=list
    )  # catalog.PlaceCount as dicts, most photos first
    text: dict[str, int] = field(default_factory=dict)  # the text pass: read, with_text, failed, pending
    text_failed_files: list[dict[str, Any]] = field(default_factory=list)
    prepared_photos: int = 0  # photos prepared ahead for the LLM (the prepare pass)
    prepared_bytes: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def mllm_ready(self) -> bool:
        """A reranking LLM is installed and its files look sound."""
        return self.mllm_model is not None and self.mllm_error is None


def _one_line(e: object) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _chips_text(u: Any) -> str:
    return " / ".join(c.label for c in u.chips)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _file_signature(path: Path) -> tuple[int, int, int] | None:
    """Identity of a saved index file (saves replace it, so the inode changes)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class Library:
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
        self._clip = None
        self._index: VectorIndex | None = None
        self._fallback: tuple[Any, VectorIndex] | None = None  # see _search_models()
        self._mllm = None
        self._ocr = None
        self.read_text = read_text  # run the text pass (OCR) after the CLIP pass
        self._complete_cache: tuple[tuple, bool] | None = None
        self._key_cache: dict[str, tuple[tuple, str]] = {}
        self.mllm_cache_bytes = mllm_cache_bytes  # image embeddings of checked photos
        self.mllm_kv_cache_bytes = mllm_kv_cache_bytes  # LLM state after each checked photo (MBs per photo)
        self.n_ctx = n_ctx
        self.llm_detail = llm_detail  # photo detail the LLM sees (models/llm/images.py DETAIL_LEVELS)
        self.prepare_budget_bytes = prepare_budget_bytes  # disk for photos prepared ahead (prepare pass)
        self._model_lock = threading.RLock()
        self.today_override: date | None = None  # "today" for relative dates in queries (tests pin it)
        self.week_start: int | None = None  # 0 = Monday … 6 = Sunday; None: the locale's

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._model_lock:  # a repaired in-memory index is saved by the next writer, never by a reader
            for m in (self._clip, self._mllm, self._fallback[0] if self._fallback else None, self._ocr):
                if m is not None:
                    m.close()
            self._clip = self._mllm = self._fallback = self._ocr = None
        self.catalog.close()

    def _try_lock(self) -> bool:
        try:
            self.lock.acquire(blocking=False)
            return True
        except RetllmError:
            return False

    # -- models ----------------------------------------------------------------------------------
    @property
    def clip(self):
        """The CLIP model (loaded lazily; raises ModelNotFoundError with instructions when missing)."""
        with self._model_lock:
            if self._clip is None:
                from .models.clip.towers import ClipConfig, ClipModel, find_clip_model, quantize_dynamic_int8

                model_dir = find_clip_model(self.models_dir, self.clip_name)
                if self.clip_int8 and not ClipConfig.load(model_dir).quantized_image_model:
                    quantize_dynamic_int8(model_dir)  # once per model folder, a few seconds
                clip = ClipModel(model_dir, threads=self.threads, quantized=self.clip_int8)
                self._adopt_legacy_embeddings(clip)
                self._clip = clip
            return self._clip

    def _adopt_legacy_embeddings(self, clip: Any) -> None:
        """Vectors stored under the plain model name (before keys had fingerprints) belong to ``clip`` when
        their size matches: they are moved to its key (when we may write now), or read under the old name.

        Vectors of another size under the same name are from a different model: they stay under their old
        name, and this model fills its own key (``index``), as after a model switch.
        """
        counts = self.catalog.embedding_models()
        if clip.name not in counts or clip.key in counts:
            return
        if self.catalog.embedding_dims(clip.name) != {clip.embed_dim}:
            return
        if self.lock.held:  # a writer moves them; a reader never writes
            try:
                self.catalog.rename_embedding_model(clip.name, clip.key)
                old = self.path / "index" / f"{_safe_name(clip.name)}.hnsw"
                new = self._index_path(clip)
                for suffix in ("", ".json"):
                    src, dst = Path(str(old) + suffix), Path(str(new) + suffix)
                    if src.exists() and not dst.exists():
                        os.replace(src, dst)
                return
            except (RetllmError, OSError) as e:
                log.warning("stored vectors not moved to %s: %s", clip.key, e)
        clip._key = clip.name  # use the vectors where they are (moved by the next writer)

    def _adopt_pending(self, clip: Any) -> None:
        """Under the writer lock: finish a legacy adoption a reader could only use in place."""
        if clip.key != clip.name:
            return
        clip._key = None
        self._adopt_legacy_embeddings(clip)
        if clip.key != clip.name:
            with self._model_lock:
                self._index = None  # it was loaded under the old name

    @property
    def index(self) -> VectorIndex:
        """The vector index of the current CLIP model, checked against the catalog on first use."""
        with self._model_lock:
            if self._index is None:
                self._index = self._load_index(self.clip)
            elif not self.lock.held:  # while we write, our in-memory index is the newest state
                self._index = self._refreshed(self._index, self.clip)
            return self._index

    def _writer_index(self) -> VectorIndex:
        """The index to write to, under the writer lock: first catch up with other processes' changes."""
        with self._model_lock:
            if self._index is None:
                self._index = self._load_index(self.clip)
            else:
                self._index = self._refreshed(self._index, self.clip)
            return self._index

    def _refreshed(self, idx: VectorIndex, clip: Any) -> VectorIndex:
        """``idx`` brought up to date when another process (or Library) changed the catalog since we looked.

        Its saved index file is reloaded when it was replaced (its journal is then cleared, so a re-embedded
        photo's new vector would be invisible otherwise); else the catalog's vectors are reconciled in memory.
        """
        version = self.catalog.data_version()
        if idx.seen_version == version:
            return idx
        if _file_signature(idx.meta_path) != idx.disk_signature:
            return self._load_index(clip)
        idx.seen_version = version
        self._sync_index(idx, clip)
        return idx

    def _index_path(self, clip: Any) -> Path:
        return self.path / "index" / f"{_safe_name(clip.key)}.hnsw"

    def _load_index(self, clip: Any) -> VectorIndex:
        path = self._index_path(clip)
        version = self.catalog.data_version()
        signature = _file_signature(path.with_suffix(path.suffix + ".json"))
        idx = VectorIndex(path, dim=clip.embed_dim, threads=self.threads)
        idx.seen_version, idx.disk_signature = version, signature

        def on_saved() -> None:
            self.catalog.clear_journal(clip.key)
            idx.disk_signature = _file_signature(idx.meta_path)

        idx.on_saved = on_saved
        self._sync_index(idx, clip)
        return idx

    def _sync_index(self, idx: VectorIndex, clip: Any) -> None:
        stored = self.catalog.embedding_ids(clip.key)
        idx.reconcile(stored, lambda ids: self.catalog.iter_embeddings(clip.key, ids))
        # Vectors committed after the index file was saved (kill -9 in between): same label, maybe a new
        # vector (re-embedded photo, or a reused id) — reconcile cannot see that, the journal can.
        stale = sorted(self.catalog.journal_ids(clip.key) & stored)
        for ids, vecs in self.catalog.iter_embeddings(clip.key, stale):
            idx.add(ids, vecs)
        if stale:
            idx.mark_dirty()
        if idx.dirty and self.lock.held:  # readers keep the repair in memory: opening never writes
            try:
                idx.save()
            except (OSError, RetllmError) as e:  # disk full: keep working from memory, save next time
                log.warning("vector index not saved: %s", e)

    def _embeddings_complete(self, model_name: str) -> bool:
        """Every online photo has a vector of ``model_name`` (offline photos cannot be embedded now).

        Asked on every search, so the answer is cached until the catalog changes (here or in another process).
        """
        key = (model_name, self.catalog.change_token())
        cached = self._complete_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        complete = self.catalog.embeddings_complete(model_name)
        self._complete_cache = (key, complete)
        return complete

    def _search_models(self) -> tuple[Any, VectorIndex]:
        """(CLIP model, index) that search uses.

        Embeddings are stored per model, so switching the CLIP model keeps the old vectors: until
        ``index_roots`` has filled the selected model for every photo, search uses the installed model
        whose stored embeddings cover the most photos (when that is more than the selected one's).
        """
        clip = self.clip
        if self._embeddings_complete(clip.key):
            return clip, self.index
        from .models.clip.towers import ClipModel, list_clip_models

        counts = self.catalog.embedding_models()
        best: Any = None
        best_n = counts.get(clip.key, 0)
        for model_dir in list_clip_models(self.models_dir):
            try:
                other = ClipModel(model_dir, threads=self.threads)
                self._cached_key(other)
                if other.name in counts:
                    self._adopt_legacy_embeddings(other)
                    counts = self.catalog.embedding_models()
                key = other.key
            except (RetllmError, OSError):
                continue
            if key != clip.key and counts.get(key, 0) > best_n:
                best, best_n = other, counts[key]
        if best is None:
            return clip, self.index
        with self._model_lock:
            if self._fallback is None or self._fallback[0].key != best.key:
                if self._fallback is not None:
                    self._fallback[0].close()
                self._fallback = (best, self._load_index(best))
            elif not self.lock.held:
                self._fallback = (self._fallback[0], self._refreshed(self._fallback[1], self._fallback[0]))
            return self._fallback

    def _cached_key(self, clip: Any) -> str:
        """``clip.key`` without re-reading the files on every search while a model switch is pending."""
        sig = tuple(
            (st.st_size, st.st_mtime_ns, st.st_ino) for st in map(os.stat, (clip.image_path, clip.text_path))
        )
        cached = self._key_cache.get(str(clip.model_dir))
        if cached is not None and cached[0] == sig:
            clip._key = cached[1]
        self._key_cache[str(clip.model_dir)] = (sig, clip.key)
        return clip.key

    @property
    def search_model(self) -> str:
        """Name of the CLIP model whose embeddings search uses now (see ``_search_models``)."""
        return self._search_models()[0].name

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
            if self._index is not None or ids:
                index = self._writer_index()
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
    ) -> IndexSummary:
        """Add ``paths`` as roots (if given) and bring the catalog and index up to date with the disk.

        Then (unless ``text`` or the library's ``read_text`` says no) the text pass reads photos' words.
        """
        t0 = time.perf_counter()
        with self.lock:
            for p in paths or []:
                self.add_root(p)
            clip = self.clip
            self._adopt_pending(clip)
            index = self._writer_index()
            plan = Scanner(self.catalog, hash_workers=self.decode_workers).plan(
                progress=progress, cancel=cancel, only_paths=only_paths
            )
            if only_paths is None:
                self._plan_backfill(plan, clip.key)
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
            if (
                paths
                or summary.added
                or summary.updated
                or summary.moved
                or summary.removed
                or summary.places
                or (summary.text and summary.text["read"] + summary.text["failed"])
            ):
                self._backup_catalog(small_run=only_paths is not None)
        summary.seconds = round(time.perf_counter() - t0, 3)
        return summary

    def _backup_catalog(self, small_run: bool) -> None:
        """A rolling, checked copy of the catalog (see ``repair``); a failed copy never fails the index run."""
        from .repair import backup_due, make_backup

        if not backup_due(self.path, small_run):
            return
        try:
            make_backup(self.catalog, self.path)
        except (RetllmError, OSError) as e:
            log.warning("catalog backup not made: %s", e)

    def _places_pass(self, summary: IndexSummary, progress: Progress | None, cancel: Any) -> None:
        """GPS → place for photos that lack one; fails soft (a broken gazetteer never fails indexing)."""
        try:
            summary.places = self.update_places(progress=progress, cancel=cancel)
        except Exception as e:  # noqa: BLE001 - optional pass: report, keep what was indexed
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

    def places(self) -> list[Any]:
        """Cities, regions and countries with photo counts, most photos first (catalog.PlaceCount)."""
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

    def photos(self, ids: list[int]) -> dict[int, Any]:
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
    def ocr(self):
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

    def _plan_backfill(self, plan: Any, model_name: str) -> None:
        """Queue known photos that lack a ``model_name`` vector (the CLIP model was switched) for embedding.

        They go to ``plan.changed`` (so the summary counts them as updated); vectors of other models stay.
        """
        queued = {fs.photo_id for fs in plan.to_embed if fs.photo_id is not None}
        queued.update(plan.removed)
        current = {fs.photo_id: fs for fs in plan.touched}
        current.update({m.photo_id: dataclasses.replace(m.new, photo_id=m.photo_id) for m in plan.moved})
        missing = [pid for pid in self.catalog.ids_missing_embedding(model_name) if pid not in queued]
        if missing:  # a switched model: its vectors must fit before any is written
            from .model_switch import check_space

            check_space(self.path, len(missing), self.clip.embed_dim, self.clip.name)
        for pid, photo in sorted(self.catalog.photos_by_ids(missing).items()):
            fs = current.get(pid)
            if fs is None:
                if photo.status != "ok" or not os.path.isfile(photo.path):
                    continue
                fs = FileStat(photo.path, photo.root_id, photo.size, photo.mtime_ns, photo_id=pid)
            fs = dataclasses.replace(fs, hash=fs.hash or photo.hash, old_hash=photo.hash)
            plan.changed.append(fs)

    def rebuild_index(self, progress: Progress | None = None) -> int:
        """Rebuild the vector index from the catalog's stored vectors (no re-embedding)."""
        with self.lock:
            clip = self.clip
            idx = self._writer_index()
            ids = sorted(self.catalog.embedding_ids(clip.key))
            idx.rebuild(self.catalog.iter_embeddings(clip.key, ids), expected=len(ids))
            idx.save()
            if progress:
                progress("rebuild", len(ids), len(ids))
            return len(idx)

    # -- search ----------------------------------------------------------------------------------
    def search_coarse(self, query: Query, top: int = 50, allowed: set[int] | None = None) -> SearchUpdate:
        clip, index = self._search_models()
        if len(index) == 0:
            message = "the library has no indexed photos yet"
            if self.catalog.count_photos():
                message = (
                    f"no photo is embedded with the CLIP model {clip.name} yet "
                    "(a new or changed model): run `retllm-desktop index`"
                )
            return SearchUpdate(query=query, results=[], phase="done", message=message)
        if allowed is None and query.places:
            allowed = self._place_ids(list(query.places))
        return CoarseSearcher(self.catalog, index, clip).search(query, top=top, allowed=allowed)

    # -- query understanding ---------------------------------------------------------------------
    def understand(self, text: str, ignore: tuple[str, ...] | list[str] = ()) -> Any:
        """Dates and places in ``text`` (understand.Understanding); places resolve to where the library has
        photos. Without a usable gazetteer only dates are understood."""
        from .understand import understand

        try:
            from .places import gazetteer

            gaz = gazetteer()
        except Exception as e:  # noqa: BLE001 - optional data: dates still work
            log.warning("place names not available: %s", e)
            gaz = None
        counts = {c.key: c.photos for c in self.catalog.place_counts()} if gaz is not None else {}
        return understand(
            text, gaz, today=self.today(), week_start=self.week_start, library_places=counts, ignore=ignore
        )

    def today(self) -> date:
        """ "Today" for relative dates ("last weekend"); ``RETLLM_TODAY=YYYY-MM-DD`` pins it (tests, demos)."""
        pinned = self.today_override or os.environ.get("RETLLM_TODAY")
        if pinned:
            return pinned if isinstance(pinned, date) else date.fromisoformat(pinned)
        return date.today()

    def _place_ids(self, places: list[Any]) -> set[int]:
        """Photos from any of ``places`` (keys or places.PlaceName): the stored place, and for a city also
        every fix within the distance at which that city names a photo (so "Manhattan" finds photos labelled
        "New York City")."""
        from .places import absorb_km, haversine_km

        ids: set[int] = set()
        for p in places:
            key = p if isinstance(p, str) else p.key
            ids |= self.catalog.ids_in_place(key)
            if isinstance(p, str) or p.kind != "city" or p.lat is None:
                continue
            km = float(absorb_km(p.population))
            dlat = km / 111.0
            dlon = km / (111.0 * max(math.cos(math.radians(p.lat)), 0.01))
            near = self.catalog.gps_in_box(p.lat - dlat, p.lat + dlat, p.lon - dlon, p.lon + dlon)
            for pid, lat, lon in near:
                if haversine_km(p.lat, p.lon, lat, lon) <= km:
                    ids.add(pid)
        return ids

    def _apply_understanding(self, query: Query) -> tuple[Query, set[int] | None, dict | None]:
        """The query with its dates and places turned into filters, the allowed ids, and what was understood.

        When the filters leave no photo at all, the literal text is searched instead (and the result says so).
        """
        explicit = self._place_ids(list(query.places)) if query.places else None
        if query.literal or not query.text:
            return query, explicit, None
        u = self.understand(query.text, ignore=query.ignore)
        info = u.as_dict()
        info["literal"] = False
        if not u.changed:
            return query, explicit, info
        date_from = max(
            filter(None, [query.date_from, u.date_from and u.date_from.isoformat()]), default=None
        )
        date_to = min(filter(None, [query.date_to, u.date_to and u.date_to.isoformat()]), default=None)
        allowed = explicit
        if u.places:
            found = self._place_ids(u.places)
            allowed = found if allowed is None else allowed & found
        candidates = allowed
        if date_from or date_to:
            dated = self.catalog.ids_in_date_range(date_from, date_to)
            candidates = dated if candidates is None else candidates & dated
        if not candidates:
            info.update(
                literal=True, message=f"no photos from {_chips_text(u)}; searched for the words as typed"
            )
            return query, explicit, info
        text = u.text or query.text  # nothing left but filters: the whole phrase still guides the ranking
        new = dataclasses.replace(query, text=text, date_from=date_from, date_to=date_to)
        return new, allowed, info

    def search(
        self,
        query: Query | str,
        top: int = 50,
        rerank: Any = None,
        cancel: threading.Event | None = None,
    ) -> Iterator[SearchUpdate]:
        """Yield the coarse results at once, then (with ``rerank`` options) the LLM-reranked updates."""
        if isinstance(query, str):
            query = Query(text=query)
        query, allowed, understood = self._apply_understanding(query)
        coarse = self.search_coarse(query, top=top, allowed=allowed)
        coarse.understood = understood
        if rerank is None or not coarse.results:
            coarse.phase = "done"
            yield coarse
            return
        yield coarse
        for update in self._rerank(coarse, rerank, cancel):
            update.understood = understood
            yield update

    def _rerank(
        self, coarse: SearchUpdate, options: Any, cancel: threading.Event | None
    ) -> Iterator[SearchUpdate]:
        """The fine stage can only add: without a usable LLM the coarse results stand, with one warning."""
        try:
            scorer = self.mllm
        except RetllmError as e:
            coarse.phase = "done"
            coarse.message = f"reranking skipped: {_one_line(e)}"
            yield coarse
            return
        try:
            self._load_mllm(scorer)
        except RetllmError as e:
            coarse.phase = "done"
            coarse.llm_error = f"the LLM {scorer.config.name} could not be loaded: {_one_line(e)}"
            coarse.message = f"reranking skipped: {coarse.llm_error}"
            yield coarse
            return
        from .prepare_pass import TopkHits

        lo = getattr(options, "offset", 0)
        window = [r for r in coarse.results if not r.in_library][lo : lo + getattr(options, "k", 10)]
        TopkHits(self.path / "cache" / "prepared" / "topk-hits.json").record(r.photo.hash for r in window)
        yield from rerank_updates(coarse, scorer, options, cancel)

    def _load_mllm(self, scorer: Any) -> None:
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
    def mllm(self):
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
            return self._mllm

    def prepare(self, progress: Progress | None = None, cancel: threading.Event | None = None):
        """The prepare pass (prepare_pass.py): photos' image embeddings for the LLM, ahead of searches."""
        from .prepare_pass import PreparePass, PrepareSummary, TopkHits

        try:
            scorer = self.mllm
            self._load_mllm(scorer)
        except RetllmError as e:
            return PrepareSummary(error=_one_line(e))
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
        clip_name = clip_error = search_model = None
        indexed, healthy, missing = 0, False, 0
        try:
            clip_name = self.clip.name
            idx = self.index
            indexed = len(idx)
            stored = self.catalog.embedding_ids(self.clip.key)
            healthy = idx.ids() == stored
            missing = len(self.catalog.ids_missing_embedding(self.clip.key))
            search_model = self.search_model
        except RetllmError as e:
            clip_error = str(e)
        mllm_model = mllm_error = None
        try:
            from .models.llm.check import check_mllm_files
            from .models.llm.scorer import MllmConfig, find_mllm_model

            cfg = MllmConfig.from_dir(find_mllm_model(self.models_dir, self.mllm_name))
            mllm_model = cfg.name
            check_mllm_files(cfg.model_path, cfg.mmproj_path)
        except RetllmError as e:
            mllm_error = f"broken: {_one_line(e)}" if mllm_model else str(e)
        prepared = self.prepared_usage() if mllm_model and not mllm_error else (0, 0)
        roots = []
        counts = self.catalog.root_photo_counts()
        for r in self.catalog.roots():
            n = counts.get(r.id, 0)
            roots.append(
                {
                    "path": r.path,
                    "online": r.online and os.path.isdir(r.path),
                    "photos": n,
                    "last_scan_at": r.last_scan_at,
                }
            )
        return LibraryStatus(
            library=str(self.path),
            models_dir=str(self.models_dir),
            roots=roots,
            photos=self.catalog.count_photos(),
            offline=self.catalog.count_photos("offline"),
            failures=self.catalog.count_failures(skipped=False),
            skipped=self.catalog.count_failures(skipped=True),
            skipped_files=[
                {"path": f.path, "reason": f.reason}
                for f in self.catalog.failures(failures_limit, skipped=True)
            ],
            clip_model=clip_name,
            clip_error=clip_error,
            embeddings=self.catalog.embedding_models(),
            indexed=indexed,
            index_healthy=healthy,
            missing_embeddings=missing,
            failed_files=[
                {"path": f.path, "reason": f.reason}
                for f in self.catalog.failures(failures_limit, skipped=False)
            ],
            search_model=search_model,
            mllm_model=mllm_model,
            mllm_error=mllm_error,
            taken_range=self.catalog.date_range(),
            places=[asdict(p) for p in self.catalog.place_counts()],
            text=self.catalog.text_counts(),
            text_failed_files=[
                {"path": p, "reason": r} for p, r in self.catalog.text_failures(failures_limit)
            ],
            prepared_photos=prepared[0],
            prepared_bytes=prepared[1],
        )
