"""Coarse search (CLIP + vector index) and the result stream the shells consume.

A search yields :class:`SearchUpdate` objects: the first carries the coarse results (milliseconds), the
following ones the same results reordered as the multimodal LLM judges the head of the list. GUI and CLI
consume the same stream.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import near_duplicates
from .catalog import Catalog, Photo
from .errors import CancelledError, PromptTooLongError, QueryError
from .imaging import file_hash, is_raw, load_rgb, shot_key
from .text_match import TextMatch, TextQuery, describe_match, fused_scores, parse_text_query
from .vector_index import VectorIndex
from .verdict import match_share, verdict

if TYPE_CHECKING:
    from .models.clip.towers import ClipModel
    from .models.llm.fine_score import FineScore
    from .models.llm.scorer import MllmScorer
    from .rerank import RerankOptions, RerankUpdate
    from .understand import Understanding


def _iso_date(value: str | None, name: str) -> str | None:
    """A date bound as the catalog compares it: YYYY-MM-DD, or an ISO date-time (``T`` separator)."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        if len(value) == 10:
            return date.fromisoformat(value).isoformat()
        return datetime.fromisoformat(value).replace(tzinfo=None).isoformat()
    except ValueError:
        what = "from" if name == "date_from" else "to"
        raise QueryError(f"invalid '{what}' date {value!r}: use YYYY-MM-DD") from None


@dataclass(frozen=True)
class Query:
    """Text, image (query by example), or both (a composed query)."""

    text: str | None = None
    image: str | None = None
    image_weight: float = 0.5  # share of the image in a composed query's embedding
    date_from: str | None = None  # ISO date/time bounds on the EXIF capture time, inclusive
    date_to: str | None = None
    places: tuple[str, ...] = ()  # place keys ("city:<geonameid>", "country:PT", …): photos from any of them
    people: tuple[str, ...] = ()  # names of people (full or unique first name): photos showing all of them
    person_ids: tuple[int, ...] = ()  # people picked in the app's People list: photos showing all
    literal: bool = False  # True: the text goes to CLIP as typed (no dates or places taken out of it)
    ignore: tuple[str, ...] = ()  # phrases to keep literal (the chips the user removed)
    use_text: bool = True  # match the query's words against the text read in photos (the text pass)
    fold_similar: bool = True  # fold bursts / near-duplicates into one result

    def __post_init__(self) -> None:
        text = (self.text or "").strip()
        object.__setattr__(self, "text", text or None)
        if self.text is None and not self.image and not self.people and not self.person_ids:
            raise QueryError("empty query: give some text, an image, or both")
        if self.image and not os.path.isfile(self.image):
            raise QueryError(f"query image not found: {self.image}")
        if not 0.0 <= self.image_weight <= 1.0:
            raise QueryError("image_weight must be between 0 and 1")
        for name in ("date_from", "date_to"):
            object.__setattr__(self, name, _iso_date(getattr(self, name), name))

    @property
    def kind(self) -> str:
        if self.text and self.image:
            return "composed"
        return "image" if self.image else "text"


@dataclass
class SearchResult:
    photo: Photo
    score: float  # the coarse (CLIP cosine) score
    coarse_rank: int
    rank: int = 0  # current position, 1-based
    fine: FineScore | None = None  # once the LLM judged this photo
    check_error: str | None = None  # why the LLM could not check this photo (then ``fine`` is None)
    hidden: bool = False  # judged as not matching under the relevance cutoff
    duplicates: list[str] = field(default_factory=list)  # other paths with byte-identical content
    text: TextMatch | None = None  # the query's words found in the photo's text
    stage: str = "clip"  # which coarse stage found it: "clip", "text" or "clip+text"
    companions: list[str] = field(default_factory=list)  # the same shot in another file (RAW + JPEG)
    similar: list[SearchResult] = field(default_factory=list)  # near-duplicates taken seconds apart (a burst)
    in_library: bool = False  # this photo is byte-identical to the (outside) query image
    fused: float | None = None  # the coarse ranking score when the photo's words joined the ranking

    @property
    def coarse_order_score(self) -> float:
        """The number the coarse order sorts by: CLIP similarity, or its fusion with the words' match."""
        return float(self.score if self.fused is None else self.fused)

    @property
    def order_score(self) -> float:
        """The number this result's place in the list comes from: the checking model's match share
        when it checked the photo (checked photos come first), else the coarse ranking score."""
        if self.fine is not None:
            return match_share(self.fine)
        return self.coarse_order_score

    @property
    def path(self) -> str:
        return self.photo.path

    def judged(self, **fields: Any) -> SearchResult:
        """A copy for a later state of the list (LLM verdict in ``fields``), keeping what was folded into it."""
        return dataclasses.replace(
            self,
            duplicates=list(self.duplicates),
            companions=list(self.companions),
            similar=list(self.similar),
            **fields,
        )

    @property
    def check(self) -> str:
        """The LLM's part: "checked", "could not check: <reason>" or "unchecked"."""
        if self.fine is not None:
            return "checked"
        return f"could not check: {self.check_error}" if self.check_error else "unchecked"

    def as_dict(self, cutoff: float | None = None) -> dict:
        p = self.photo
        d: dict[str, Any] = {
            "rank": self.rank,
            "path": p.path,
            "score": round(self.order_score, 6),
            "coarse_score": round(float(self.score), 6),
            "coarse_rank": self.coarse_rank,
            "photo_id": p.id,
            "width": p.width,
            "height": p.height,
            "taken_at": p.taken_at,
            "camera_make": p.camera_make,
            "camera_model": p.camera_model,
            "gps": [p.gps_lat, p.gps_lon] if p.gps_lat is not None else None,
            "status": p.status,
            "check": "checked" if self.fine is not None else "failed" if self.check_error else "unchecked",
            "match_stage": self.stage,
            "matched_text": self.text.snippet if self.text else None,
        }
        if self.fused is not None:
            d["fused_score"] = round(float(self.fused), 6)
        if self.text is not None:
            d["text_match"] = self.text.as_dict()
            d["matched_words"] = [w["text"] for w in self.text.words]
        if self.check_error:
            d["check_error"] = self.check_error
        if self.duplicates:
            d["duplicates"] = list(self.duplicates)
        if self.companions:
            d["files"] = [p.path, *self.companions]  # every file of this shot, this one first
        if self.similar:
            d["similar"] = [s.path for s in self.similar]
        if self.in_library:
            d["in_library"] = True
        if self.fine is not None:
            v = verdict(self.fine, cutoff)
            d.update(
                match=round(v.share, 6),
                verdict="match" if v.is_match else "no match",
                fine_score=round(float(self.fine.score), 6),
                p_true=round(float(self.fine.p_true), 6),
                p_false=round(float(self.fine.p_false), 6),
                entropy=round(float(self.fine.entropy), 6),
                vocab_entropy=(
                    None if self.fine.vocab_entropy is None else round(float(self.fine.vocab_entropy), 6)
                ),
                ve_used=bool(self.fine.ve_used),
                hidden=self.hidden,
            )
        return d


@dataclass(frozen=True)
class SearchUpdate:
    """One state of a search's result list; ``phase`` is "coarse", "rerank" (partial) or "done".

    Never changed once made: a later state is a new update (``dataclasses.replace``)."""

    query: Query
    results: list[SearchResult]
    phase: str
    done: int = 0  # candidates judged by the LLM so far
    total: int = 0  # candidates the LLM will judge
    timings_ms: dict[str, float] = field(default_factory=dict)
    model: str | None = None  # the reranking model's name
    message: str | None = None  # one line for the user: why reranking did not run, or what it changed
    understood: Understanding | None = None  # the dates and places taken out of the query
    llm_error: str | None = None  # the LLM could not be loaded: these are the coarse results (app: banner)
    llm_query: str | None = None  # the shortened query text the LLM saw, when the query was too long
    eta_s: float | None = None  # the LLM's checks still to come: an estimate of their seconds (None: unknown)
    typed: str | None = None  # the text as the user typed it (``query.text`` is what was searched)
    missing: list[str] = field(default_factory=list)  # photos left out: no longer on disk (see freshness)
    cutoff: float | None = None  # the verdict's match cutoff of this search (None: the default)

    @property
    def visible(self) -> list[SearchResult]:
        return [r for r in self.results if not r.hidden]

    def as_dict(self) -> dict:
        return {
            "typed": self.typed if self.typed is not None else self.query.text,
            "query": self.query.text,
            "image": self.query.image,
            "phase": self.phase,
            "results": [r.as_dict(self.cutoff) for r in self.visible],
            "missing": list(self.missing),
            "reranked": self.done,
            "rerank_total": self.total,
            "rerank_model": self.model,
            "message": self.message,
            "understood": self.understood.as_dict() if self.understood is not None else None,
            "llm_error": self.llm_error,
            "llm_query": self.llm_query,
            "rerank_eta_s": None if self.eta_s is None else round(self.eta_s, 1),
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }


def _normalize(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


TEXT_WINDOW = 200  # CLIP candidates and text matches considered for fusion


class CoarseSearcher:
    """Query → embedding → nearest photos. Knows nothing about the LLM stage."""

    def __init__(self, catalog: Catalog, index: VectorIndex, clip: ClipModel):
        self.catalog = catalog
        self.index = index
        self.clip = clip
        self.burst_threshold = near_duplicates.DEFAULT_THRESHOLD
        self.burst_window_s = near_duplicates.DEFAULT_WINDOW_S
        self.exclude: set[int] = set()  # photos known to be gone from the disk (freshness.DiskCheck)

    def _vectors(self, ids: list[int]) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        for chunk_ids, vecs in self.catalog.iter_embeddings(self.clip.key, ids):
            for pid, v in zip(chunk_ids.tolist(), vecs, strict=True):
                out[int(pid)] = _normalize(np.asarray(v, dtype=np.float32))
        return out

    def _image_embedding(self, path: str) -> tuple[np.ndarray, int | None]:
        """Reuse the stored vector when the query image is an indexed, unchanged photo."""
        real = os.path.abspath(path)
        photo = self.catalog.photo_by_path(real)
        if photo is not None:
            try:
                st = os.stat(real)
                if st.st_size == photo.size and st.st_mtime_ns == photo.mtime_ns:
                    vec = self.catalog.embedding(photo.id, self.clip.key)
                    if vec is not None:
                        return vec, photo.id
            except OSError:
                pass
        img = load_rgb(real, min_side=self.clip.image_size)
        vec = self.clip.encode_images(self.clip.preprocess(img)[None])[0]
        return vec, photo.id if photo else None

    def embed_query(self, query: Query) -> tuple[np.ndarray, int | None]:
        text_vec = self.clip.encode_texts([query.text])[0] if query.text else None
        if not query.image:
            return _normalize(text_vec), None
        img_vec, self_id = self._image_embedding(query.image)
        if text_vec is None:
            return _normalize(img_vec), self_id
        w = query.image_weight
        return _normalize(w * _normalize(img_vec) + (1.0 - w) * _normalize(text_vec)), self_id

    def _collapse(
        self,
        vec: np.ndarray,
        top: int,
        allowed: set[int] | None,
        self_id: int | None,
        timings: dict[str, float],
        fold_similar: bool = True,
    ) -> list[SearchResult]:
        """Nearest photos with byte-identical copies (backups, exports) folded into one result.

        Copies share one vector, so they would fill the list (and the LLM's checks) with the same picture.
        A RAW file and the camera's JPEG of the same shot (same name, same folder) fold the same way, and
        so do near-duplicates taken seconds apart (bursts, :mod:`near_duplicates`), so the LLM checks one
        photo per group. The query photo and its copies are left out of an image query's results.
        """
        self_hash = self_shot = None
        if self_id is not None:
            me = self.catalog.photo(self_id)
            self_hash = me.hash if me else None
            self_shot = shot_key(me.path) if me else None
        k = top + 1
        total = len(self.index) if allowed is None else len(allowed)
        while True:
            t = time.perf_counter()
            ids, scores = self.index.search(vec, k, allowed=allowed)
            timings["search"] += (time.perf_counter() - t) * 1000
            t = time.perf_counter()
            photos = self.catalog.photos_by_ids(ids.tolist())
            results: list[SearchResult] = []
            by_hash: dict[str, SearchResult] = {}
            by_shot: dict[str, SearchResult] = {}
            folding = fold_similar and self.burst_threshold is not None
            folder = near_duplicates.Folder(self.burst_threshold or 1.0, self.burst_window_s)
            vectors = self._vectors(ids.tolist()) if folding else {}
            for pid, score in zip(ids.tolist(), scores.tolist(), strict=True):
                photo = photos.get(pid)
                if photo is None or pid == self_id or pid in self.exclude:
                    continue
                if self_hash and photo.hash == self_hash:
                    continue
                if self_shot and shot_key(photo.path) == self_shot:  # the query photo's RAW/JPEG twin
                    continue
                first = by_hash.get(photo.hash) if photo.hash else None
                if first is not None:
                    first.duplicates.append(photo.path)
                    continue
                shot = by_shot.get(shot_key(photo.path))
                if shot is not None and is_raw(shot.path) != is_raw(photo.path):
                    shot.companions.append(photo.path)
                    continue
                if folding:
                    t_shot = near_duplicates.seconds(photo.taken_at)
                    leader = folder.place(
                        len(results), vectors.get(pid), t_shot, near_duplicates.Where.of(photo)
                    )
                    if leader is not None:
                        results[leader].similar.append(SearchResult(photo, float(score), 0))  # type: ignore[index]
                        continue
                r = SearchResult(photo=photo, score=float(score), coarse_rank=len(results) + 1)
                results.append(r)
                if photo.hash:
                    by_hash[photo.hash] = r
                by_shot.setdefault(shot_key(photo.path), r)
            if len(results) > top or len(ids) >= total or len(ids) < k:
                self._add_companions(results[:top])
                timings["fetch"] += (time.perf_counter() - t) * 1000
                return results[:top]
            timings["fetch"] += (time.perf_counter() - t) * 1000
            k *= 2

    def _add_companions(self, results: list[SearchResult]) -> None:
        """List each result's RAW/JPEG twin even when the twin itself did not rank near it."""
        for r in results:
            for other in self.catalog.paths_with_stem(os.path.splitext(r.path)[0]):
                if other != r.path and is_raw(other) != is_raw(r.path) and other not in r.companions:
                    r.companions.append(other)

    def _pin_library_copy(
        self, image: str, vec: np.ndarray, results: list[SearchResult], allowed: set[int] | None, top: int
    ) -> list[SearchResult]:
        """A query photo from outside the library that is byte-identical to a library photo: that photo
        first, marked ``in_library`` (the user is asking "where is this one?" as much as "what is like it")."""
        try:
            twins = self.catalog.photos_by_hash(file_hash(image))
        except OSError:
            return results
        twins = [p for p in twins if (allowed is None or p.id in allowed) and p.id not in self.exclude]
        if not twins:
            return results
        ids = {p.id for p in twins}
        found = next((r for r in results if r.photo.id in ids), None)
        if found is None:
            stored = self.catalog.embedding(twins[0].id, self.clip.key)
            score = float(_normalize(stored) @ vec) if stored is not None else 1.0
            found = SearchResult(photo=twins[0], score=score, coarse_rank=1)
            found.duplicates = [p.path for p in twins[1:]]
        found.in_library = True
        return [found, *(r for r in results if r is not found)][:top]

    def search(self, query: Query, top: int = 50, allowed: set[int] | None = None) -> SearchUpdate:
        """``allowed``: only these photo ids (the places filter, computed by the caller)."""
        timings: dict[str, float] = {"search": 0.0, "fetch": 0.0}
        t = time.perf_counter()
        vec, self_id = self.embed_query(query)
        timings["encode"] = (time.perf_counter() - t) * 1000
        if query.date_from or query.date_to:
            t = time.perf_counter()
            dated = self.catalog.ids_in_date_range(query.date_from, query.date_to)
            allowed = dated if allowed is None else allowed & dated
            timings["search"] += (time.perf_counter() - t) * 1000
        text_query = parse_text_query(query.text) if query.use_text else None
        window = max(top, TEXT_WINDOW) if text_query else top
        results = self._collapse(vec, window, allowed, self_id, timings, query.fold_similar)
        if text_query is not None:
            t = time.perf_counter()
            results = self._fuse_text(text_query, vec, results, allowed, self_id)
            timings["text"] = (time.perf_counter() - t) * 1000
        results = results[:top]
        if query.image and self_id is None:
            t = time.perf_counter()
            results = self._pin_library_copy(query.image, vec, results, allowed, top)
            timings["fetch"] += (time.perf_counter() - t) * 1000
        for n, r in enumerate(results, 1):
            r.rank = n
        timings["coarse_total"] = sum(timings.values())
        return SearchUpdate(query=query, results=results, phase="coarse", timings_ms=timings)

    def _fuse_text(
        self,
        tq: TextQuery,
        vec: np.ndarray,
        clip_results: list[SearchResult],
        allowed: set[int] | None,
        self_id: int | None,
    ) -> list[SearchResult]:
        """Photos whose text holds the query's words, fused with the CLIP ranking (see text_match)."""
        hits = self.catalog.search_text(tq.fts(), tq.substrings(), limit=TEXT_WINDOW)
        if not hits:
            return clip_results
        me = self.catalog.photo(self_id) if self_id is not None else None
        matches = []
        for content_hash, bm25, text in hits:
            cov = tq.coverage(text)
            if cov > 0 and not (me is not None and content_hash == me.hash):
                matches.append((content_hash, cov, bm25))
        matches.sort(key=lambda m: (-m[1], m[2]))
        by_hash = {r.photo.hash: r for r in clip_results}
        for r in clip_results:  # a burst's other shots are already shown (folded into their result)
            for m in r.similar:
                by_hash.setdefault(m.photo.hash, r)
        copies = self.catalog.photos_by_hashes([h for h, _, _ in matches if h not in by_hash])
        extra: list[SearchResult] = []
        kept = []
        for content_hash, cov, _bm25 in matches:
            if content_hash not in by_hash:
                photos = [
                    p
                    for p in copies.get(content_hash, [])
                    if (allowed is None or p.id in allowed) and p.id not in self.exclude
                ]
                if not photos:
                    continue
                stored = self.catalog.embedding(photos[0].id, self.clip.key)
                score = float(np.dot(stored, vec)) if stored is not None else -1.0
                r = SearchResult(photo=photos[0], score=score, coarse_rank=0, stage="text")
                r.duplicates = [p.path for p in photos[1:]]
                extra.append(r)
                by_hash[content_hash] = r
            kept.append((content_hash, cov))
        # Text matches outside the CLIP window rank after it, in their CLIP order.
        extra.sort(key=lambda r: -r.score)
        ranked = clip_results + extra
        clip_ranks = {r.photo.hash: n for n, r in enumerate(ranked, 1)}
        text_ranks = {h: n for n, (h, _) in enumerate(kept, 1)}
        coverage = dict(kept)
        texts = self.catalog.texts(text_ranks)
        for content_hash, n in text_ranks.items():
            r = by_hash[content_hash]
            if r.stage == "clip":
                r.stage = "clip+text"
            text, lines = texts.get(content_hash, ("", ""))
            r.text = describe_match(tq, text, lines, n, coverage[content_hash])
        fused = fused_scores(clip_ranks, text_ranks, coverage)
        ranked.sort(key=lambda r: -fused[r.photo.hash])
        for n, r in enumerate(ranked, 1):
            r.coarse_rank = n
            r.fused = fused[r.photo.hash]
        return ranked


def resolve_query_image(path: str | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else None


def shorten_for_context(text: str, needed: int, capacity: int) -> str | None:
    """``text`` cut (at a word boundary when possible) so a prompt that needed ``needed`` positions fits
    ``capacity``; None when nothing useful is left to cut."""
    keep = int(len(text) * capacity / max(needed, 1) * 0.9)
    keep = min(keep, len(text) - 1)
    if keep < 1:
        return None
    cut = text[:keep]
    space = cut.rfind(" ")
    if space > keep // 2:
        cut = cut[:space]
    return cut.rstrip() or None


class _QueryFitter:
    """Shortens the query text for the LLM prompt when it does not fit the context (never an error).

    The shortened text is kept for the rest of the search, so every candidate sees the same question.
    """

    def __init__(self, text: str | None):
        self.original = text
        self.text = text

    def call(self, fn: Any) -> Any:
        for _ in range(8):
            try:
                return fn(self.text)
            except PromptTooLongError as e:
                shorter = shorten_for_context(self.text, e.needed, e.capacity) if self.text else None
                if shorter is None:
                    raise
                self.text = shorter
        return fn(self.text)

    @property
    def note(self) -> str | None:
        if self.text == self.original or not self.original:
            return None
        n, m = len(self.text.split()), len(self.original.split())
        return f"the query is too long for the LLM: it was shown the first {n} of {m} words"


def rerank_updates(
    coarse: SearchUpdate,
    scorer: MllmScorer,
    options: RerankOptions,
    cancel: threading.Event | None = None,
) -> Iterator[SearchUpdate]:
    """The fine stage as a stream: one :class:`SearchUpdate` after every candidate the LLM judged.

    ``scorer`` is a :class:`retllm_desktop.models.llm.scorer.MllmScorer` (anything with its ``score``).
    Candidates whose file is not reachable now (offline drive) are not sent to the LLM and keep
    their coarse order after the judged ones. A candidate the LLM fails on is marked "could not check"
    (``check_error``) and the others are still checked. A query too long for the LLM's context is
    shortened for its prompt (``message`` says so). Cancellation ends the stream quietly: the last update
    the caller got is a consistent partial ranking.
    """
    from .rerank import rerank_stream

    query = coarse.query
    pinned = [r for r in coarse.results if r.in_library]  # the query photo itself: first, never judged
    rest = [r for r in coarse.results if not r.in_library]
    reachable = [r for r in rest if os.path.isfile(r.photo.path)]
    unreachable = [r for r in rest if not os.path.isfile(r.photo.path)]
    only_true = options.only_true
    query_key = None
    if query.image:
        try:
            st = os.stat(query.image)
            query_key = f"{query.image}:{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            query_key = None
    from .models.llm.answer import SecondLook

    # per call, never stored on the shared scorer: concurrent searches may differ
    second_look = SecondLook(options.ve, options.ve_threshold, options.ve_band)
    fitter = _QueryFitter(query.text)

    def score(result: SearchResult):
        return fitter.call(
            lambda text: scorer.score(
                result.photo.path,
                text=text,
                query_image=query.image,
                candidate_key=result.photo.hash or None,
                query_key=query_key,
                ve=second_look,
                cancel=cancel,
            )
        )

    t0 = time.perf_counter()
    model_name = getattr(getattr(scorer, "config", None), "name", None)
    ready = _readiness(scorer)
    clock = _CheckClock(scorer)
    try:
        known = options.known
        prior = {i: known[r.photo.id] for i, r in enumerate(reachable) if r.photo.id in known}
        lo, k = options.offset, options.k
        window = [r for i, r in enumerate(reachable[lo : lo + k], lo) if i not in prior]
        quick = {id(r): ready(r) for r in window}
        for upd in rerank_stream(
            reachable, score, options, cancel, prior=prior, first=lambda r: quick.get(id(r), False)
        ):
            results = [r.judged() for r in pinned]
            results += [
                it.candidate.judged(fine=it.fine, check_error=it.error, hidden=False) for it in upd.items
            ]
            if not only_true:  # an offline photo cannot be checked: "only true matches" hides it
                results.extend(r.judged() for r in unreachable)
            for n, r in enumerate(results, 1):
                r.rank = n
            results.extend(it.candidate.judged(fine=it.fine, hidden=True) for it in upd.hidden)
            if only_true:
                results.extend(r.judged(hidden=True) for r in unreachable)
            timings = dict(coarse.timings_ms)
            timings["rerank"] = (time.perf_counter() - t0) * 1000
            if upd.done:
                timings["rerank_per_candidate"] = timings["rerank"] / upd.done
            checked = {id(it.candidate) for it in upd.items if it.fine is not None or it.error}
            checked |= {id(it.candidate) for it in upd.hidden}
            clock.saw(upd, quick)
            left = [quick[id(r)] for r in window if id(r) not in checked]
            yield SearchUpdate(
                query=query,
                results=results,
                phase="done" if upd.finished else "rerank",
                done=upd.done,
                total=upd.total,
                timings_ms=timings,
                model=model_name,
                message=_rerank_message(upd, model_name, fitter.note),
                understood=coarse.understood,
                llm_query=fitter.text if fitter.note else None,
                eta_s=None if upd.finished else clock.estimate(left),
            )
    except CancelledError:
        return


def _readiness(scorer: MllmScorer) -> Callable[[SearchResult], bool]:
    """``ready(result)``: the LLM has this photo's image rows at hand (prepared or checked before)."""
    probe = getattr(scorer, "ready", None)

    def ready(r: SearchResult) -> bool:
        if probe is None:
            return False
        try:
            return bool(probe(r.photo.path, r.photo.hash or None))
        except Exception:  # only an ordering hint
            return False

    return ready


class _CheckClock:
    """Seconds per check, separately for photos at hand and new ones: this search's so far, else the
    scorer's last searches'. Gives "about N s left"."""

    def __init__(self, scorer: MllmScorer):
        self.history: dict[bool, float] = getattr(scorer, "check_seconds", {}) or {}
        self.seen: dict[bool, list[float]] = {True: [], False: []}
        self._counted: set[int] = set()

    def saw(self, upd: RerankUpdate, quick: dict[int, bool]) -> None:
        for it in list(upd.items) + list(upd.hidden):
            fine = it.fine
            if fine is None or id(it.candidate) in self._counted or id(it.candidate) not in quick:
                continue
            self._counted.add(id(it.candidate))
            self.seen[quick[id(it.candidate)]].append(float(fine.seconds))

    def per(self, kind: bool) -> float | None:
        got = self.seen[kind]
        if got:
            return sum(got) / len(got)
        return self.history.get(kind)

    def estimate(self, left: list[bool]) -> float | None:
        total = 0.0
        for kind in left:
            t = self.per(kind)
            if t is None:
                t = self.per(not kind)
            if t is None:
                return None
            total += t
        return total


def _rerank_message(upd: RerankUpdate, model_name: str | None, note: str | None) -> str | None:
    """One line: what the LLM is doing, what it could not check, whether the query was shortened."""
    if not upd.finished and not upd.done:
        return f"checking {upd.total} photos with {model_name}"
    parts = []
    failed = sum(1 for it in upd.items if it.error)
    if failed:
        parts.append(f"{failed} photo{'s' if failed != 1 else ''} could not be checked")
    if note:
        parts.append(note)
    return "; ".join(parts) or None
