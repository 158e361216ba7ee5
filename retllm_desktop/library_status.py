"""What ``status`` reports: folders, counts, the models and their health, failures, places, text and faces.

Both shells show it (the Library panel, ``retllm-desktop status``); gathering it never writes.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import RetllmError, first_line

if TYPE_CHECKING:
    from .library import Library


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
    date_span: tuple[str | None, str | None] = (None, None)  # ... with file dates of photos without one
    places: list[dict[str, Any]] = field(
        default_factory=list
    )  # catalog.PlaceCount as dicts, most photos first
    text: dict[str, int] = field(default_factory=dict)  # the text pass: read, with_text, failed, pending
    text_failed_files: list[dict[str, Any]] = field(default_factory=list)
    faces: dict[str, Any] = field(
        default_factory=dict
    )  # the face pass: scanned, faces, recognisable, people, named, failed, pending, error
    face_failed_files: list[dict[str, Any]] = field(default_factory=list)
    prepared_photos: int = 0  # photos prepared ahead for the LLM (the prepare pass)
    prepared_bytes: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def mllm_ready(self) -> bool:
        """A reranking LLM is installed and its files look sound."""
        return self.mllm_model is not None and self.mllm_error is None


def collect_status(lib: Library, failures_limit: int = 50) -> LibraryStatus:
    """The library's status; ``failures_limit`` caps each list of failed or skipped files."""
    clip_name = clip_error = search_model = None
    indexed, healthy, missing = 0, False, 0
    try:
        clip_name = lib.clip.name
        idx = lib.index
        indexed = len(idx)
        stored = lib.catalog.embedding_ids(lib.clip.key)
        healthy = idx.ids() == stored
        missing = len(lib.catalog.ids_missing_embedding(lib.clip.key))
        search_model = lib.search_model
    except RetllmError as e:
        clip_error = str(e)
    mllm_model = mllm_error = None
    try:
        from .models.llm.check import check_mllm_files
        from .models.llm.scorer import MllmConfig, find_mllm_model

        cfg = MllmConfig.from_dir(find_mllm_model(lib.models_dir, lib.mllm_name))
        mllm_model = cfg.name
        check_mllm_files(cfg.model_path, cfg.mmproj_path)
    except RetllmError as e:
        mllm_error = f"broken: {first_line(e)}" if mllm_model else str(e)
    face_counts, face_failed = lib.face_status(failures_limit)
    prepared = lib.prepared_usage() if mllm_model and not mllm_error else (0, 0)
    roots = []
    counts = lib.catalog.root_photo_counts()
    for r in lib.catalog.roots():
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
        library=str(lib.path),
        models_dir=str(lib.models_dir),
        roots=roots,
        photos=lib.catalog.count_photos(),
        offline=lib.catalog.count_photos("offline"),
        failures=lib.catalog.count_failures(skipped=False),
        skipped=lib.catalog.count_failures(skipped=True),
        skipped_files=[
            {"path": f.path, "reason": f.reason} for f in lib.catalog.failures(failures_limit, skipped=True)
        ],
        clip_model=clip_name,
        clip_error=clip_error,
        embeddings=lib.catalog.embedding_models(),
        indexed=indexed,
        index_healthy=healthy,
        missing_embeddings=missing,
        failed_files=[
            {"path": f.path, "reason": f.reason} for f in lib.catalog.failures(failures_limit, skipped=False)
        ],
        search_model=search_model,
        mllm_model=mllm_model,
        mllm_error=mllm_error,
        taken_range=lib.catalog.date_range(),
        date_span=lib.catalog.date_range(file_dates=True),
        places=[asdict(p) for p in lib.catalog.place_counts()],
        text=lib.catalog.text_counts(),
        text_failed_files=[{"path": p, "reason": r} for p, r in lib.catalog.text_failures(failures_limit)],
        faces=face_counts,
        face_failed_files=face_failed,
        prepared_photos=prepared[0],
        prepared_bytes=prepared[1],
    )
