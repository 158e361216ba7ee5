"""Which files make an installed multimodal LLM, how to find one, and how to name its exact files.

Layout: ``<models_dir>/mllm/<name>/mllm.json`` + text-model GGUF + mmproj GGUF (``mllm.json`` is
``{"name", "handler", "model", "mmproj", "chat_format", "image_max_side", ...}``). What can be
downloaded comes from the hub's registry (``models/hub/registry.py``), the single parser of
``resources/mllm_models.toml``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import ModelLoadError, ModelNotFoundError, RetllmError

HANDLERS = ("llava15", "qwen25vl", "gguf-template")
MLLM_SUBDIR = "mllm"
META_FILE = "mllm.json"
DEFAULT_IMAGE_MAX_SIDE = 768


@functools.lru_cache(maxsize=1)
def _default_registry() -> Any:
    from ..hub.registry import load_registry

    return load_registry()


def how_to_get(name: str | None = None) -> str:
    """A sentence telling the user how to install ``name`` (or the default MLLM); "" if unknown."""
    try:
        reg = _default_registry()
    except (RetllmError, OSError, ValueError):
        return ""
    entries = reg.by_role("mllm")
    entry = next((e for e in entries if e.name == name), None)
    if entry is None:
        entry = next((e for e in entries if e.name == reg.default_mllm), entries[0] if entries else None)
    if entry is None:
        return ""
    size = f", ~{entry.size_mb:.0f} MB" if entry.size_mb else ""
    return (
        f" Install one with `retllm-desktop models download {entry.name}` ({entry.licence or 'see licence'}"
        f"{size}), or register GGUF files you already have with "
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
                    f"Multimodal model {cfg.name!r}: {what} file {p} is missing." + how_to_get(cfg.name)
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
            + how_to_get(name)
        )
    found = sorted(p.parent for p in root.glob(f"*/{META_FILE}")) if root.is_dir() else []
    if not found:
        raise ModelNotFoundError(
            f"No multimodal LLM installed: expected {root}/<name>/{META_FILE} with a GGUF text model and an "
            f"mmproj file (needed for the fine rerank; coarse CLIP search works without it)." + how_to_get()
        )
    return found[0]


def file_fingerprint(path: Path, chunk: int = 1 << 20) -> str:
    """Cheap identity of a (multi-GB) model file: size + first and last MiB, hashed.

    Why not the name: the same name can hold another file (``models add --name``, another models
    folder), and caches keyed on it would silently serve results of a different model.
    """
    h = hashlib.blake2b(digest_size=12)
    size = path.stat().st_size
    h.update(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(chunk))
        if size > 2 * chunk:
            f.seek(size - chunk)
            h.update(f.read(chunk))
    return h.hexdigest()
