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

ENV_SETTINGS = "RETLLM_GUI_SETTINGS"
VE_MODES = ("auto", "off", "always")
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
    thumb_size: int = 160  # logical pixels
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
