"""The model registry as data: which CLIP / multimodal-LLM models can be downloaded, and presets.

Sources (later files override entries of the same name)::

    resources/models.toml       [[clip]] entries, [presets.<name>], default_preset
    resources/mllm_models.toml  [[model]] entries (multimodal LLMs: GGUF + mmproj), default

Every entry maps files of a Hugging Face repo to the names of our model-folder layout
(``<models>/clip/<name>/image.onnx`` …, ``<models>/mllm/<name>/model.gguf`` + ``mmproj.gguf``) and
carries the contents of the folder's ``clip.json`` / ``mllm.json``, which the downloader writes last.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ... import config
from ...errors import RetllmError

ROLES = ("clip", "mllm")
CONFIG_FILES = {"clip": "clip.json", "mllm": "mllm.json"}
REGISTRY_FILES = ("models.toml", "mllm_models.toml")


class RegistryError(RetllmError):
    """The registry file is malformed, or a name is not in it."""


@dataclass(frozen=True)
class FileSpec:
    """One file of a model: ``name`` in our folder, fetched from ``path`` in the repo."""

    name: str
    path: str
    size: int | None = None  # exact bytes, checked when known
    sha256: str | None = None  # lowercase hex, checked when known
    size_mb: float | None = None  # approximate, for display and the disk-space check


@dataclass(frozen=True)
class ModelEntry:
    name: str
    role: str  # "clip" | "mllm"
    hf_repo: str
    files: tuple[FileSpec, ...]
    revision: str = "main"
    licence: str | None = None
    size_mb: float | None = None  # approximate total
    description: str = ""
    config: dict[str, Any] = field(default_factory=dict)  # clip.json / mllm.json fields (without name)
    export: dict[str, Any] | None = None  # {"arch", "pretrained"} for `models export-clip`
    published: dict[str, Any] | None = None  # retrieval numbers the entry was chosen by, with their source

    @property
    def config_filename(self) -> str:
        return CONFIG_FILES[self.role]

    @property
    def unpinned_files(self) -> tuple[FileSpec, ...]:
        """Files without a registry sha256: their content can only be taken on the server's word."""
        return tuple(f for f in self.files if not f.sha256)

    @property
    def pinned(self) -> bool:
        """Every file has a sha256 in the registry (and the revision is a commit, not a branch)."""
        return not self.unpinned_files and is_commit(self.revision)

    @property
    def approx_bytes(self) -> int:
        """Best estimate of the download size in bytes (exact sizes where known)."""
        total = 0
        for f in self.files:
            if f.size is not None:
                total += f.size
            elif f.size_mb is not None:
                total += int(f.size_mb * 1e6)
        if total == 0 and self.size_mb:
            total = int(self.size_mb * 1e6)
        return total

    def config_data(self) -> dict[str, Any]:
        """The folder's clip.json / mllm.json (``name`` first, then the registry fields, then the source)."""
        data: dict[str, Any] = {"name": self.name, **self.config}
        data.setdefault(
            "source",
            {"kind": "download", "hf_repo": self.hf_repo, "revision": self.revision, "licence": self.licence},
        )
        return data

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "hf_repo": self.hf_repo,
            "revision": self.revision,
            "licence": self.licence,
            "size_mb": self.size_mb,
            "description": self.description,
            "pinned": self.pinned,
            "files": [
                {"name": f.name, "path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files
            ],
            "export": self.export,
            "published": self.published,
        }


@dataclass(frozen=True)
class Preset:
    name: str
    clip: str
    mllm: str | None = None
    description: str = ""


@dataclass
class Registry:
    models: dict[str, ModelEntry]
    presets: dict[str, Preset]
    default_preset: str | None = None
    default_mllm: str | None = None
    sources: tuple[Path, ...] = ()

    def get(self, name: str) -> ModelEntry:
        entry = self.models.get(name)
        if entry is None:
            raise RegistryError(
                f"unknown model {name!r}; known models: {', '.join(sorted(self.models)) or 'none'}; "
                f"presets: {', '.join(self.presets) or 'none'}"
            )
        return entry

    def preset(self, name: str) -> Preset:
        p = self.presets.get(name)
        if p is None:
            raise RegistryError(f"unknown preset {name!r}; presets: {', '.join(self.presets) or 'none'}")
        return p

    def preset_models(self, name: str) -> list[ModelEntry]:
        p = self.preset(name)
        return [self.get(n) for n in (p.clip, p.mllm) if n]

    def resolve(self, name: str | None = None) -> list[ModelEntry]:
        """A model name or a preset name (None = the default preset) -> the entries to install."""
        if name is None:
            if not self.default_preset:
                raise RegistryError("the registry has no default preset; name a model or a preset")
            name = self.default_preset
        if name in self.presets:
            return self.preset_models(name)
        return [self.get(name)]

    def by_role(self, role: str) -> list[ModelEntry]:
        return [m for m in self.models.values() if m.role == role]

    def __iter__(self):
        return iter(self.models.values())

    def __len__(self) -> int:
        return len(self.models)


# ------------------------------------------------------------------------------------------------
# Parsing


def is_commit(revision: str) -> bool:
    """A full 40-hex git commit id (a branch such as ``main`` can move under a pinned hash)."""
    return len(revision) == 40 and all(c in "0123456789abcdef" for c in revision.lower())


def _opt_int(v: Any, what: str) -> int | None:
    if v is None or v == "":
        return None
    if not isinstance(v, int) or v < 0:
        raise RegistryError(f"{what}: expected a non-negative integer, got {v!r}")
    return v


def _opt_sha(v: Any, what: str) -> str | None:
    if v is None or v == "":
        return None
    s = str(v).lower()
    if len(s) != 64 or any(c not in "0123456789abcdef" for c in s):
        raise RegistryError(f"{what}: sha256 must be 64 hex digits, got {v!r}")
    return s


def _file_spec(d: Any, where: str) -> FileSpec:
    if not isinstance(d, dict) or not d.get("name") or not d.get("path"):
        raise RegistryError(f"{where}: each file needs `name` and `path`")
    name = str(d["name"])
    if "/" in name or "\\" in name or name.startswith("."):
        raise RegistryError(f"{where}: file name {name!r} must be a plain file name")
    return FileSpec(
        name=name,
        path=str(d["path"]),
        size=_opt_int(d.get("size"), f"{where} {name} size"),
        sha256=_opt_sha(d.get("sha256"), f"{where} {name}"),
        size_mb=d.get("size_mb"),
    )


def _clip_entry(d: dict[str, Any], where: str) -> ModelEntry:
    name = d.get("name")
    if not name or not d.get("hf_repo"):
        raise RegistryError(f"{where}: a [[clip]] entry needs `name` and `hf_repo`")
    where = f"{where} clip {name!r}"
    files = tuple(_file_spec(f, where) for f in d.get("files", []))
    names = {f.name for f in files}
    cfg = dict(d.get("config") or {})
    for key in ("embed_dim", "image_size"):
        if key not in cfg:
            raise RegistryError(f"{where}: config needs {key!r} (the clip.json fields)")
    cfg.setdefault("image_model", "image.onnx")
    cfg.setdefault("text_model", "text.onnx")
    needed = {cfg["image_model"], cfg["text_model"]}
    tok = cfg.get("tokenizer")
    if isinstance(tok, dict) and tok.get("kind", "tokenizer.json") != "clip-bpe":
        needed.add(str(tok.get("file", "tokenizer.json")))  # the model's own tokenizer is a download too
    missing = needed - names
    if missing:
        raise RegistryError(f"{where}: files must provide {sorted(missing)}")
    return ModelEntry(
        name=str(name),
        role="clip",
        hf_repo=str(d["hf_repo"]),
        files=files,
        revision=str(d.get("revision") or "main"),
        licence=d.get("licence"),
        size_mb=d.get("size_mb"),
        description=str(d.get("description") or ""),
        config=cfg,
        export=dict(d["export"]) if d.get("export") else None,
        published=dict(d["published"]) if d.get("published") else None,
    )


_MLLM_SKIP = {
    "name", "hf_repo", "gguf", "mmproj", "size_mb", "mmproj_size_mb", "licence", "notes", "revision",
    "gguf_size", "gguf_sha256", "mmproj_size", "mmproj_sha256", "description",
}  # fmt: skip


def _mllm_entry(d: dict[str, Any], where: str) -> ModelEntry:
    """An entry in the mllm_models.toml format (``gguf`` / ``mmproj`` = file names in ``hf_repo``)."""
    name = d.get("name")
    if not name or not d.get("hf_repo") or not d.get("gguf") or not d.get("mmproj"):
        raise RegistryError(f"{where}: an MLLM entry needs `name`, `hf_repo`, `gguf` and `mmproj`")
    where = f"{where} mllm {name!r}"
    files = (
        FileSpec(
            "model.gguf",
            str(d["gguf"]),
            _opt_int(d.get("gguf_size"), f"{where} gguf_size"),
            _opt_sha(d.get("gguf_sha256"), where),
            d.get("size_mb"),
        ),
        FileSpec(
            "mmproj.gguf",
            str(d["mmproj"]),
            _opt_int(d.get("mmproj_size"), f"{where} mmproj_size"),
            _opt_sha(d.get("mmproj_sha256"), where),
            d.get("mmproj_size_mb"),
        ),
    )
    cfg: dict[str, Any] = {"handler": d.get("handler", "gguf-template"), "model": "model.gguf"}
    cfg["mmproj"] = "mmproj.gguf"
    cfg["chat_format"] = d.get("chat_format")
    cfg.update({k: v for k, v in d.items() if k not in _MLLM_SKIP and k not in cfg})
    size = None
    if d.get("size_mb") is not None or d.get("mmproj_size_mb") is not None:
        size = float(d.get("size_mb") or 0) + float(d.get("mmproj_size_mb") or 0)
    return ModelEntry(
        name=str(name),
        role="mllm",
        hf_repo=str(d["hf_repo"]),
        files=files,
        revision=str(d.get("revision") or "main"),
        licence=d.get("licence"),
        size_mb=size,
        description=str(d.get("description") or d.get("notes") or ""),
        config=cfg,
    )


def default_registry_paths() -> list[Path]:
    return [p for p in (config.resource_path(n) for n in REGISTRY_FILES) if p.is_file()]


def load_registry(paths: Sequence[str | Path] | None = None) -> Registry:
    """Read the registry files (default: resources/models.toml + resources/mllm_models.toml)."""
    paths = [Path(p) for p in (default_registry_paths() if paths is None else paths)]
    models: dict[str, ModelEntry] = {}
    presets: dict[str, Preset] = {}
    default_preset = default_mllm = None
    for path in paths:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise RegistryError(f"model registry not found: {path}") from e
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise RegistryError(f"cannot read model registry {path}: {e}") from e
        where = path.name
        entries: list[ModelEntry] = []
        entries += [_clip_entry(d, where) for d in data.get("clip", [])]
        entries += [_mllm_entry(d, where) for d in data.get("mllm", [])]
        entries += [_mllm_entry(d, where) for d in data.get("model", [])]  # mllm_models.toml
        for e in entries:
            models[e.name] = e
        for pname, p in (data.get("presets") or {}).items():
            if not isinstance(p, dict) or not p.get("clip"):
                raise RegistryError(f"{where}: preset {pname!r} needs a `clip` model")
            presets[pname] = Preset(pname, str(p["clip"]), p.get("mllm"), str(p.get("description") or ""))
        default_preset = data.get("default_preset", default_preset)
        if data.get("model"):
            default_mllm = data.get("default", default_mllm)
    for p in presets.values():
        for role, n in (("clip", p.clip), ("mllm", p.mllm)):
            if n is None:
                continue
            if n not in models:
                raise RegistryError(f"preset {p.name!r} names unknown model {n!r}")
            if models[n].role != role:
                raise RegistryError(f"preset {p.name!r}: {n!r} is not a {role} model")
    if default_preset is not None and default_preset not in presets:
        raise RegistryError(f"default_preset {default_preset!r} is not a preset")
    return Registry(models, presets, default_preset, default_mllm, tuple(paths))


def find_entries(registry: Registry, names: Iterable[str]) -> list[ModelEntry]:
    out: list[ModelEntry] = []
    for n in names:
        for e in registry.resolve(n):
            if e not in out:
                out.append(e)
    return out
