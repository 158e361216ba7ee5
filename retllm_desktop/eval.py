"""Paper-style retrieval evaluation: Recall@K of coarse (CLIP) vs fine (LLM rerank) vs fine + second look.

``fine+second-look`` is *our* prompt-level second look (the photo shown again after an uncertain first
answer, in the same context). ``fine+retrace`` is the paper's visual enhancement (VE): the photo's
visual tokens re-injected into a middle-layer FFN when the early-exit entropy is high, inside llama.cpp
through its eval callback (``models/llm/retrace.py``). ``fine+ve`` is an old name of ``fine+second-look``.

Protocols (the RetLLM paper follows the standard Karpathy test splits):

* ``flickr30k``: 1,000 test images, 5 captions each; ``coco``: 5,000 test images, 5 captions each.
  Captions are ordered image by image, so caption ``j`` belongs to image ``j // 5``.
* ``pairs``: any number of captions per image (a custom set).

Caption files: a Karpathy-split JSON (``dataset_flickr30k.json`` / ``dataset_coco.json``: the ``test``
split is used), a JSON list of ``{"image": ..., "caption": str | [str, ...]}``, or a text file of
``image<TAB>caption`` lines (``image.jpg#2`` suffixes as in Flickr30k's ``results_20130124.token`` are
ignored). Images are indexed into a throwaway library (symlinks in a temporary folder); the user's
library is never touched.

Text→image Recall@K: share of captions whose image is among the top K results. Image→text: share of
images with at least one of their captions among the top K captions (CLIP only: the LLM reranks photos
for a text query). Ties are broken by index (stable sort), so results are deterministic.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import RetllmError
from .library import Library
from .progress import Progress
from .rerank import RerankOptions

PROTOCOLS = ("flickr30k", "coco", "pairs")
STANDARD_IMAGES = {"flickr30k": 1000, "coco": 5000}
CAPTIONS_PER_IMAGE = 5
SECOND_LOOK = "fine+second-look"
RETRACE = "fine+retrace"
MODES = ("coarse", "fine", SECOND_LOOK, RETRACE)
MODE_ALIASES = {"fine+ve": SECOND_LOOK}  # old name; it never was the paper's VE
SECOND_LOOK_NOTE = (
    f"{SECOND_LOOK}: our prompt-level second look (photo shown again after an uncertain answer), "
    "not the paper's in-layer visual enhancement (VE)"
)
DEFAULT_KS = (1, 5, 10)


# ------------------------------------------------------------------------------------------------
# Pure recall computation


def rank_desc(scores: np.ndarray) -> np.ndarray:
    """Row-wise indices by decreasing score; ties keep the lower index first (stable)."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.argsort(-scores, axis=-1, kind="stable")


def recall_from_rankings(
    rankings: Sequence[Sequence[int]], relevant: Sequence[int | set[int] | frozenset[int]], ks=DEFAULT_KS
) -> dict[str, float]:
    """Recall@K in percent: for query i, a hit when any item of ``relevant[i]`` is in ``rankings[i][:K]``."""
    if len(rankings) != len(relevant):
        raise ValueError("one relevant set per ranking")
    n = len(rankings)
    out: dict[str, float] = {}
    for k in ks:
        hits = 0
        for ranking, rel in zip(rankings, relevant, strict=True):
            rel_set = {rel} if isinstance(rel, (int, np.integer)) else rel
            if any(int(x) in rel_set for x in list(ranking)[:k]):
                hits += 1
        out[f"R@{k}"] = 100.0 * hits / n if n else 0.0
    return out


def t2i_recall(scores: np.ndarray, caption_image: Sequence[int], ks=DEFAULT_KS) -> dict[str, float]:
    """``scores[c, i]`` = similarity of caption c and image i; caption c belongs to ``caption_image[c]``."""
    return recall_from_rankings(rank_desc(scores).tolist(), list(caption_image), ks)


def i2t_recall(scores: np.ndarray, caption_image: Sequence[int], ks=DEFAULT_KS) -> dict[str, float]:
    """Image→text over the same (captions x images) matrix: image i's relevant captions are its own."""
    scores = np.asarray(scores)
    n_images = scores.shape[1]
    own: list[set[int]] = [set() for _ in range(n_images)]
    for c, i in enumerate(caption_image):
        own[i].add(c)
    return recall_from_rankings(rank_desc(scores.T).tolist(), own, ks)


def protocol_caption_image(n_images: int, per_image: int = CAPTIONS_PER_IMAGE) -> list[int]:
    """The paper's protocol: caption j belongs to image j // 5."""
    return [j // per_image for j in range(n_images * per_image)]


# ------------------------------------------------------------------------------------------------
# Data sets


@dataclass
class EvalSet:
    images: list[Path]
    captions: list[str]
    caption_image: list[int]  # caption index -> image index
    protocol: str
    warnings: list[str] = field(default_factory=list)


def _read_groups(captions_file: Path, images_dir: Path) -> list[tuple[Path, list[str]]]:
    """(image path, captions) in file order, from any supported caption format."""
    groups: dict[str, list[str]] = {}
    text = captions_file.read_text(encoding="utf-8-sig")
    if captions_file.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise RetllmError(f"cannot read {captions_file}: {e}") from e
        if isinstance(data, dict) and isinstance(data.get("images"), list):  # Karpathy split file
            items = data["images"]
            if any("split" in it for it in items):
                items = [it for it in items if it.get("split") == "test"]
            for it in items:
                rel = os.path.join(it.get("filepath") or "", it["filename"])
                sents = it.get("sentences") or []
                groups.setdefault(rel, []).extend(s["raw"] if isinstance(s, dict) else str(s) for s in sents)
        elif isinstance(data, list):
            for it in data:
                caps = it.get("caption") if isinstance(it, dict) else None
                if caps is None or "image" not in it:
                    raise RetllmError(f"{captions_file}: expected objects with 'image' and 'caption'")
                groups.setdefault(str(it["image"]), []).extend([caps] if isinstance(caps, str) else caps)
        else:
            raise RetllmError(f"{captions_file}: unsupported JSON layout")
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            image, sep, caption = line.partition("\t")
            if not sep or not caption.strip():
                raise RetllmError(f"{captions_file}:{n}: expected 'image<TAB>caption'")
            image = image.strip()
            if "#" in image and image.rsplit("#", 1)[1].isdigit():
                image = image.rsplit("#", 1)[0]
            groups.setdefault(image, []).append(caption.strip())
    return [(images_dir / rel, caps) for rel, caps in groups.items()]


def load_eval_set(
    images_dir: str | os.PathLike[str],
    captions_file: str | os.PathLike[str],
    protocol: str = "flickr30k",
    limit: int | None = None,
) -> EvalSet:
    if protocol not in PROTOCOLS:
        raise RetllmError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    images_dir, captions_file = Path(images_dir).expanduser(), Path(captions_file).expanduser()
    if not images_dir.is_dir():
        raise RetllmError(f"images folder not found: {images_dir}")
    if not captions_file.is_file():
        raise RetllmError(f"captions file not found: {captions_file}")
    groups = _read_groups(captions_file, images_dir)
    if limit is not None:
        if limit < 1:
            raise RetllmError("--limit must be at least 1")
        groups = groups[:limit]
    if not groups:
        raise RetllmError(f"no captions in {captions_file}")
    missing = [str(p) for p, _ in groups if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        raise RetllmError(
            f"{len(missing)} images of {captions_file.name} not found: {', '.join(missing[:3])}{more}"
        )
    warnings: list[str] = []
    images = [p for p, _ in groups]
    if protocol == "pairs":
        captions = [c for _, caps in groups for c in caps]
        caption_image = [i for i, (_, caps) in enumerate(groups) for _ in caps]
    else:
        short = [(p.name, len(caps)) for p, caps in groups if len(caps) < CAPTIONS_PER_IMAGE]
        if short:
            raise RetllmError(
                f"protocol {protocol} needs {CAPTIONS_PER_IMAGE} captions per image; {short[0][0]} has "
                f"{short[0][1]} ({len(short)} such images) — use --protocol pairs for a custom set"
            )
        if any(len(caps) > CAPTIONS_PER_IMAGE for _, caps in groups):
            warnings.append(f"images with more than {CAPTIONS_PER_IMAGE} captions: the first 5 are used")
        captions = [c for _, caps in groups for c in caps[:CAPTIONS_PER_IMAGE]]
        caption_image = protocol_caption_image(len(groups))
        expected = STANDARD_IMAGES[protocol]
        if limit is None and len(groups) != expected:
            warnings.append(
                f"the standard {protocol} test split has {expected} images, this set has {len(groups)}: "
                "numbers are not comparable with published ones"
            )
    return EvalSet(images, captions, caption_image, protocol, warnings)


# ------------------------------------------------------------------------------------------------
# Running


@dataclass
class ModeResult:
    mode: str
    status: str  # "ok" | "unavailable"
    reason: str | None = None
    t2i: dict[str, float] | None = None
    i2t: dict[str, float] | None = None  # coarse only
    stage_ms_per_query: float | None = None  # this mode's own stage: CLIP encode+search, or the LLM rerank
    total_ms_per_query: float | None = None  # coarse + fine
    seconds: float = 0.0
    queries: int = 0
    could_not_check: int = 0  # candidates the LLM failed on (kept after the checked ones, coarse order)
    shortened_queries: int = 0  # captions too long for the LLM's context (shortened for its prompt)


@dataclass
class EvalReport:
    protocol: str
    images: int
    captions: int
    k: int
    ks: tuple[int, ...]
    clip_model: str | None
    mllm_model: str | None
    index_seconds: float
    modes: list[ModeResult]
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["modes"] = {m.mode: {k: v for k, v in asdict(m).items() if k != "mode"} for m in self.modes}
        return d

    def table(self) -> str:
        ks = self.ks
        head = (
            ["mode"] + [f"T2I R@{k}" for k in ks] + [f"I2T R@{k}" for k in ks] + ["stage ms/q", "total ms/q"]
        )
        rows = [head]
        for m in self.modes:
            if m.status != "ok":
                rows.append([m.mode, f"unavailable: {m.reason}"])
                continue
            row = [m.mode]
            row += [f"{m.t2i[f'R@{k}']:.1f}" if m.t2i else "-" for k in ks]
            row += [f"{m.i2t[f'R@{k}']:.1f}" if m.i2t else "-" for k in ks]
            row += [_ms(m.stage_ms_per_query), _ms(m.total_ms_per_query)]
            rows.append(row)
        width = [max(len(r[i]) for r in rows if i < len(r) and len(r) == len(head)) for i in range(len(head))]
        lines = [
            f"{self.protocol}: {self.images} images, {self.captions} captions; CLIP {self.clip_model}, "
            f"LLM {self.mllm_model or '-'}, rerank top-{self.k}; indexing {self.index_seconds:.1f}s "
            f"({self.images / max(self.index_seconds, 1e-9):.1f} images/s)"
        ]
        for r in rows:
            if len(r) != len(head):
                lines.append(f"{r[0]:<{width[0]}}  {r[1]}")
            else:
                lines.append(
                    "  ".join(
                        c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, width, strict=True))
                    )
                )
        if any(m.mode == SECOND_LOOK for m in self.modes):
            lines.append(f"note: {SECOND_LOOK_NOTE}")
        lines += [f"warning: {w}" for w in self.warnings]
        for m in self.modes:
            if m.could_not_check:
                lines.append(
                    f"warning: {m.mode}: the LLM could not check {m.could_not_check} candidates "
                    "(kept after the checked ones, in coarse order)"
                )
            if m.shortened_queries:
                lines.append(
                    f"warning: {m.mode}: {m.shortened_queries} captions were too long for the LLM's context "
                    "and were shortened for its prompt"
                )
        return "\n".join(lines)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _link_images(images: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(images):
        dst = folder / f"{i:07d}{src.suffix.lower()}"
        try:
            os.symlink(src.resolve(), dst)
        except (OSError, NotImplementedError):
            shutil.copy2(src, dst)


def _fine_unavailable(lib: Library) -> str | None:
    """Why the LLM stage cannot run here (None = it can)."""
    if not lib.mllm_available():
        return "no multimodal LLM installed (see `retllm-desktop models download`)"
    return None


def _ranking(update: Any, photo_image: dict[int, int]) -> list[int]:
    ordered = sorted((r for r in update.results if not r.hidden), key=lambda r: r.rank)
    return [photo_image[r.photo.id] for r in ordered if r.photo.id in photo_image]


def run_eval(
    dataset: EvalSet,
    models_dir: str | os.PathLike[str] | None = None,
    clip_model: str | None = None,
    mllm_model: str | None = None,
    k: int = 5,
    modes: Sequence[str] = MODES,
    ks: Sequence[int] = DEFAULT_KS,
    threads: int | None = None,
    progress: Progress | None = None,
    second_look: str = "auto",
) -> EvalReport:
    """Index ``dataset`` into a throwaway library and measure each mode (see the module docstring)."""
    from .search import Query

    modes = list(dict.fromkeys(MODE_ALIASES.get(m, m) for m in modes))
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise RetllmError(f"unknown mode(s) {bad}; choose from {', '.join(MODES)}")
    if k < 1:
        raise RetllmError("--k must be at least 1")
    ks = tuple(sorted(set(int(x) for x in ks)))
    top = max(max(ks), k)
    fine_modes = [m for m in modes if m != "coarse"]
    with tempfile.TemporaryDirectory(prefix="retllm-eval-") as tmp:
        photos = Path(tmp) / "photos"
        _link_images(dataset.images, photos)
        with Library(
            Path(tmp) / "library",
            models_dir=models_dir,
            clip_model=clip_model,
            mllm_model=mllm_model,
            threads=threads,
        ) as lib:
            t0 = time.perf_counter()
            summary = lib.index_roots([str(photos)], progress=progress)
            index_seconds = time.perf_counter() - t0
            if summary.failed:
                bad_files = [f.path for f in lib.catalog.failures(3)]
                raise RetllmError(f"{summary.failed} images could not be indexed, e.g. {bad_files}")
            photo_image: dict[int, int] = {}
            for p in lib.catalog.photos_by_ids(lib.catalog.embedding_ids(lib.clip.key)).values():
                photo_image[p.id] = int(Path(p.path).stem)
            clip = lib.clip
            n_img, n_cap = len(dataset.images), len(dataset.captions)
            results: dict[str, ModeResult] = {}
            unavailable = _fine_unavailable(lib) if fine_modes else None
            for m in fine_modes:
                if unavailable:
                    results[m] = ModeResult(m, "unavailable", unavailable)

            # coarse: the app's own query path (CLIP text encoder + vector index), one query per caption
            coarse_rank: list[list[int]] = []
            fine_rank: dict[str, list[list[int]]] = {m: [] for m in fine_modes if m not in results}
            coarse_ms: list[float] = []
            fine_ms: dict[str, list[float]] = {m: [] for m in fine_rank}
            failed_checks: dict[str, int] = {m: 0 for m in fine_rank}
            shortened: dict[str, int] = {m: 0 for m in fine_rank}
            mllm_seen: str | None = None
            for qi, caption in enumerate(dataset.captions):
                query = Query(text=caption)
                t = time.perf_counter()
                coarse = lib.search_coarse(query, top=top)
                coarse_ms.append((time.perf_counter() - t) * 1000)
                coarse_rank.append(_ranking(coarse, photo_image))
                for m in list(fine_rank):
                    ve = {"fine": "off", RETRACE: "retrace"}.get(m, second_look)
                    opts = RerankOptions(k=k, ve=ve, min_match=None)
                    try:
                        last, ms = _rerank_once(lib, query, top, opts)
                        mllm_seen = last.model or mllm_seen
                    except RetllmError as e:
                        results[m] = ModeResult(m, "unavailable", str(e))
                        del fine_rank[m]
                        continue
                    if last.done == 0 and last.message and last.results:
                        results[m] = ModeResult(m, "unavailable", last.message)
                        del fine_rank[m]
                        continue
                    fine_rank[m].append(_ranking(last, photo_image))
                    fine_ms[m].append(ms)
                    failed_checks[m] += sum(1 for r in last.results if r.check_error)
                    shortened[m] += last.llm_query is not None
                if progress:
                    progress("queries", qi + 1, n_cap)

            truth = dataset.caption_image
            mean_coarse = float(np.mean(coarse_ms)) if coarse_ms else None
            # image→text needs every caption's score for every image: one batched text encoding
            t = time.perf_counter()
            text_vecs = np.concatenate(
                [clip.encode_texts(dataset.captions[s : s + 64]) for s in range(0, n_cap, 64)]
            )
            image_vecs = np.zeros((n_img, clip.embed_dim), np.float32)
            for ids, vecs in lib.catalog.iter_embeddings(clip.key):
                for pid, v in zip(ids.tolist(), vecs, strict=True):
                    if pid in photo_image:
                        image_vecs[photo_image[pid]] = v
            scores = text_vecs @ image_vecs.T
            matrix_s = time.perf_counter() - t
            results["coarse"] = ModeResult(
                "coarse",
                "ok",
                t2i=recall_from_rankings(coarse_rank, truth, ks),
                i2t=i2t_recall(scores, truth, ks),
                stage_ms_per_query=mean_coarse,
                total_ms_per_query=mean_coarse,
                seconds=round(sum(coarse_ms) / 1000 + matrix_s, 3),
                queries=n_cap,
            )
            for m, ranks in fine_rank.items():
                stage = float(np.mean(fine_ms[m])) if fine_ms[m] else None
                results[m] = ModeResult(
                    m,
                    "ok",
                    t2i=recall_from_rankings(ranks, truth, ks),
                    stage_ms_per_query=stage,
                    total_ms_per_query=(stage or 0.0) + (mean_coarse or 0.0),
                    seconds=round(sum(fine_ms[m]) / 1000, 3),
                    queries=len(ranks),
                    could_not_check=failed_checks[m],
                    shortened_queries=shortened[m],
                )
            mllm_name = mllm_seen or (mllm_model if fine_modes else None)
            return EvalReport(
                protocol=dataset.protocol,
                images=n_img,
                captions=n_cap,
                k=k,
                ks=ks,
                clip_model=clip.name,
                mllm_model=mllm_name,
                index_seconds=round(index_seconds, 3),
                modes=[results[m] for m in modes],
                warnings=list(dataset.warnings),
            )


def _rerank_once(lib: Any, query: Any, top: int, opts: Any) -> tuple[Any, float]:
    """Run one reranked search; return the final update and the LLM stage's wall time (ms)."""
    last = None
    t_coarse_done = None
    for update in lib.search(query, top=top, rerank=opts):
        if t_coarse_done is None:
            t_coarse_done = time.perf_counter()
        last = update
    assert last is not None and t_coarse_done is not None
    return last, (time.perf_counter() - t_coarse_done) * 1000
