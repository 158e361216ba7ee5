"""The app's persisted settings: one JSON file in the user config dir (``<config>/gui.json``).

A plain file rather than QSettings so the engine's CLI, tests and users can read it; unknown keys are
kept, bad values fall back to defaults (a broken settings file never stops the app from starting).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .. import config
from ..models.llm.images import DETAIL_CHOICES
from ..rerank import VE_BAND, VE_MODES, VE_THRESHOLD

ENV_SETTINGS = "RETLLM_GUI_SETTINGS"
SORT_MODES = ("relevance", "newest", "oldest")


def settings_path() -> Path:
    env = os.environ.get(ENV_SETTINGS)
    return Path(env).expanduser() if env else config.config_dir() / "gui.json"


@dataclass
class Settings:
    library: str | None = None  # None: $RETLLM_LIBRARY or the user data dir
    models_dir: str | None = None  # None: $RETLLM_MODELS, ./models or the user data dir
    clip_model: str | None = None
    mllm_model: str | None = None
    threads: int | None = None  # None: all cores
    top: int = 500  # coarse results to show
    rerank: bool = True
    rerank_k: int = 10
    ve: str = "auto"  # visual enhancement ("second look") mode
    only_matches: bool = False  # hide photos the LLM judged as not matching
    min_match: float = 0.5  # the relevance cutoff used by "only true matches"
    image_weight: float = 0.5
    sort: str = "relevance"
    read_text: bool = True  # read the words in photos (OCR) while indexing and match them in searches
    read_faces: bool = True  # find the faces in photos while indexing and group them into people
    face_detector: str = "hog"  # "hog": frontal faces, fast; "cnn": also turned and smaller faces, ~5x slower
    thumb_size: int = 160  # logical pixels
    # Tuning (Settings ▸ Advanced); None = automatic. Changing the first four reopens the library.
    decode_workers: int | None = None  # parallel photo decoders while indexing (None: up to 4)
    mllm_cache_bytes: int = config.MLLM_CACHE_BYTES  # disk cache of checked photos' image embeddings
    mllm_kv_cache_bytes: int = config.MLLM_KV_CACHE_BYTES  # disk cache of the LLM's state per photo
    n_ctx: int = config.LLM_N_CTX  # the LLM's context window (tokens)
    ve_threshold: float = VE_THRESHOLD  # second look when the first look's entropy is above this
    ve_band: tuple[float, float] = VE_BAND  # ... or when its P(True) lies in this band
    thumb_memory_items: int = config.THUMB_MEMORY_ITEMS  # thumbnails kept decoded in memory
    llm_detail: str = config.LLM_DETAIL  # how much of each photo the checking model sees
    prepare: bool = True  # prepare photos for the checking model in the background
    prepare_budget_bytes: int = config.PREPARE_BUDGET_BYTES  # disk space for prepared photos
    setup_done: bool = False
    geometry: str | None = None  # base64 of QMainWindow.saveGeometry()
    window_state: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = field(default=None, repr=False, compare=False)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> Settings:
        p = Path(path) if path else settings_path()
        data: dict[str, Any] = {}
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                data = {}
        except (OSError, ValueError):
            data = {}
        s = cls(path=p)
        known = {f.name for f in fields(cls)} - {"path", "extra"}
        defaults = cls()
        for key, value in data.items():
            if key in known:
                default = getattr(defaults, key)
                if isinstance(default, tuple) and isinstance(value, list):
                    value = tuple(value)  # JSON has no tuples
                if default is None or value is None or isinstance(value, type(default)):
                    setattr(s, key, value)
                elif isinstance(default, float) and isinstance(value, int):
                    setattr(s, key, float(value))
            else:
                s.extra[key] = value
        s.sanitize()
        return s

    def sanitize(self) -> None:
        if self.ve not in VE_MODES:
            self.ve = "auto"
        if self.sort not in SORT_MODES:
            self.sort = "relevance"
        self.rerank_k = max(1, min(int(self.rerank_k), 100))
        self.top = max(10, min(int(self.top), 10_000))
        self.min_match = max(0.0, min(float(self.min_match), 1.0))
        self.image_weight = max(0.0, min(float(self.image_weight), 1.0))
        self.thumb_size = max(64, min(int(self.thumb_size), 512))
        if self.threads is not None and self.threads < 1:
            self.threads = None
        elif self.threads is not None:  # more threads than this only thrash (see config.max_threads)
            self.threads = min(int(self.threads), config.max_threads())
        if self.decode_workers is not None and self.decode_workers < 1:
            self.decode_workers = None
        self.mllm_cache_bytes = max(0, int(self.mllm_cache_bytes))
        self.mllm_kv_cache_bytes = max(0, int(self.mllm_kv_cache_bytes))
        self.n_ctx = max(512, min(int(self.n_ctx), 131_072))
        self.ve_threshold = max(0.0, min(float(self.ve_threshold), 1.0))
        try:
            low, high = sorted(max(0.0, min(float(x), 1.0)) for x in self.ve_band)
            self.ve_band = (low, high)
        except (TypeError, ValueError):
            self.ve_band = VE_BAND
        self.thumb_memory_items = max(100, int(self.thumb_memory_items))
        if self.llm_detail not in DETAIL_CHOICES:
            self.llm_detail = config.LLM_DETAIL
        if self.face_detector not in ("hog", "cnn"):
            self.face_detector = "hog"
        self.prepare_budget_bytes = max(0, int(self.prepare_budget_bytes))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("path", None)
        extra = d.pop("extra", {})
        return {**extra, **d}

    def save(self) -> None:
        p = self.path or settings_path()
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_suffix(p.suffix + ".tmp")
            tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True), encoding="utf-8")
            os.replace(tmp, p)
        except OSError:
            pass  # settings are a convenience; never fail the app over them
