"""Installed models: list them, re-verify them against their download records, remove them, and register
model files the user already has (symlinked, never copied: the LLM files are gigabytes)."""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...errors import ModelNotFoundError, RetllmError
from .manifest import MANIFEST, PART_SUFFIX, read_json, sha256_file, write_json
from .registry import CONFIG_FILES, ROLES, Registry

GGUF_MAGIC = b"GGUF"


@dataclass
class InstalledModel:
    name: str  # folder name (what --clip-model / --mllm-model take)
    role: str
    path: str
    complete: bool  # has its config file (a folder without one is a partial download)
    size_bytes: int
    source: str  # "download" | "local" | "export" | "synthetic" | "unknown"
    config_name: str | None = None  # clip.json "name": the key embeddings are stored under
    files: dict[str, str] = field(default_factory=dict)  # file -> target, for linked local files
    verified: bool | None = None  # downloads: every file matched a registry-pinned sha256

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _dir_size(d: Path) -> int:
    total = 0
    for p in d.iterdir():
        try:
            if p.is_file():
                total += p.stat().st_size  # follows symlinks: the size of the linked file
        except OSError:
            pass
    return total


def _manifest_verified(manifest: dict | None) -> bool | None:
    files = (manifest or {}).get("files") or {}
    if not files:
        return None
    # "verified" alone once meant "matched the server's hash": only a registry check counts now
    return all(isinstance(r, dict) and r.get("checked_against") == "registry" for r in files.values())


def installed_models(models_dir: str | os.PathLike[str]) -> list[InstalledModel]:
    """Model folders under ``<models_dir>/clip`` and ``<models_dir>/mllm`` (partial downloads included)."""
    out: list[InstalledModel] = []
    for role in ROLES:
        root = Path(models_dir) / role
        if not root.is_dir():
            continue
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            cfg = read_json(d / CONFIG_FILES[role])
            manifest = read_json(d / MANIFEST)
            if cfg is None and manifest is None and not any(d.glob("*" + PART_SUFFIX)):
                continue
            src = (cfg or {}).get("source")
            if isinstance(src, dict):
                source = str(src.get("kind") or "unknown")
            elif manifest is not None:
                source = "download"
            elif cfg is not None and ("arch" in cfg or "pretrained" in cfg):
                source = "export"
            elif cfg is not None and "synthetic_seed" in cfg:
                source = "synthetic"
            else:
                source = "unknown"
            links = {p.name: os.readlink(p) for p in d.iterdir() if p.is_symlink()}
            out.append(
                InstalledModel(
                    name=d.name,
                    role=role,
                    path=str(d),
                    complete=cfg is not None,
                    size_bytes=_dir_size(d),
                    source=source,
                    config_name=(cfg or {}).get("name"),
                    files=links,
                    verified=_manifest_verified(manifest),
                )
            )
    return out


@dataclass
class VerifyResult:
    name: str
    role: str
    status: str  # "ok" | "corrupt" | "missing" | "unverified" | "partial"
    detail: str = ""
    files: dict[str, str] = field(default_factory=dict)  # file -> "ok" | "corrupt" | "missing" | "unverified"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _referenced_files(role: str, cfg: dict) -> list[str]:
    if role == "clip":
        names = [cfg.get("image_model", "image.onnx"), cfg.get("text_model", "text.onnx")]
        tok = cfg.get("tokenizer")
        if isinstance(tok, dict) and tok.get("kind", "tokenizer.json") != "clip-bpe":
            names.append(tok.get("file", "tokenizer.json"))  # the model's own tokenizer
    else:
        names = [cfg.get("model", "model.gguf"), cfg.get("mmproj", "mmproj.gguf")]
    return [str(n) for n in names if n]


def verify_models(
    models_dir: str | os.PathLike[str],
    names: list[str] | None = None,
    cancel: threading.Event | None = None,
    registry: Registry | None = None,
) -> list[VerifyResult]:
    """Re-hash every installed model's files against its download manifest (and, given the
    ``registry``, against its pins: a download recorded before the pins, or through a mirror, is then
    checked against the pinned content too).

    ``ok``: all files present, intact and matching their pin; ``corrupt``: a size or hash differs from
    the record; ``mismatch``: intact, but not the file the registry pins; ``missing``: a file (or a linked
    file's target) is gone; ``unverified``: the files are there but no pinned hash vouches for them
    (local or exported models, ``--allow-unverified`` downloads); ``partial``: an unfinished download.
    """
    results: list[VerifyResult] = []
    for m in installed_models(models_dir):
        if names and m.name not in names:
            continue
        d = Path(m.path)
        if not m.complete:
            results.append(
                VerifyResult(m.name, m.role, "partial", "unfinished download: run `models download` again")
            )
            continue
        cfg = read_json(d / CONFIG_FILES[m.role]) or {}
        manifest = read_json(d / MANIFEST) or {}
        recorded: dict[str, dict] = manifest.get("files", {}) or {}
        pins = _pins_for(registry, m.role, m.name, manifest)
        states = {
            fname: _file_state(d / fname, recorded.get(fname), pins.get(fname), cancel)
            for fname in sorted(set(recorded) | set(_referenced_files(m.role, cfg)))
        }
        bad = {k: v for k, v in states.items() if v in ("missing", "corrupt", "mismatch")}
        if any(v == "missing" for v in bad.values()):
            status = "missing"
        elif any(v == "corrupt" for v in bad.values()):
            status = "corrupt"
        elif bad:
            status = "mismatch"
        elif any(v == "unverified" for v in states.values()):
            status = "unverified"
        else:
            status = "ok"
        detail = ", ".join(f"{k}: {v}" for k, v in bad.items())
        results.append(VerifyResult(m.name, m.role, status, detail, states))
    if names:
        found = {r.name for r in results}
        for n in names:
            if n not in found:
                raise ModelNotFoundError(f"model {n!r} is not installed in {models_dir}")
    return results


def _pins_for(registry: Registry | None, role: str, name: str, manifest: dict) -> dict[str, str]:
    """The registry's sha256 pins for a model downloaded from that entry's repo (a local model that
    merely shares the name is not held to them)."""
    entry = registry.models.get(name) if registry is not None else None
    if entry is None or entry.role != role or manifest.get("hf_repo") != entry.hf_repo:
        return {}
    return {f.name: f.sha256 for f in entry.files if f.sha256}


def _file_state(p: Path, rec: dict | None, pin: str | None, cancel: threading.Event | None) -> str:
    if not p.is_file():
        return "missing"
    if rec is None or not rec.get("sha256"):
        return ("ok" if sha256_file(p, cancel) == pin else "mismatch") if pin else "unverified"
    if p.stat().st_size != rec.get("size") or sha256_file(p, cancel) != rec["sha256"]:
        return "corrupt"
    if pin:
        return "ok" if rec["sha256"] == pin else "mismatch"
    # intact; "unverified" if the hash it matches was the server's, not a registry pin
    return "ok" if rec.get("checked_against") == "registry" else "unverified"


def remove_model(models_dir: str | os.PathLike[str], name: str, role: str | None = None) -> Path:
    """Delete an installed model folder (linked local files are unlinked, their targets are left alone)."""
    matches = [m for m in installed_models(models_dir) if m.name == name and (role is None or m.role == role)]
    if not matches:
        have = ", ".join(f"{m.role}/{m.name}" for m in installed_models(models_dir)) or "none"
        raise ModelNotFoundError(f"model {name!r} is not installed in {models_dir} (installed: {have})")
    if len(matches) > 1:
        raise RetllmError(f"both clip/{name} and mllm/{name} exist: say which with --role")
    d = Path(matches[0].path)
    (d / CONFIG_FILES[matches[0].role]).unlink(missing_ok=True)  # first: never a half-removed "model"
    shutil.rmtree(d)
    return d


def _link_or_copy(src: Path, dst: Path) -> str:
    dst.unlink(missing_ok=True)
    try:
        os.symlink(src, dst)
        return "symlink"
    except (OSError, NotImplementedError):
        shutil.copy2(src, dst)
        return "copy"


def _check_name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise RetllmError(f"invalid model name {name!r}")
    return name


def add_local_clip(
    src_dir: str | os.PathLike[str], models_dir: str | os.PathLike[str], name: str | None = None
) -> Path:
    """Register a CLIP folder the user already has (clip.json + ONNX files, our layout).

    The ONNX files (and the tokenizer vocab, if any) are **symlinked** into ``<models>/clip/<name>/``
    (copied where symlinks are not allowed); clip.json is written anew with ``name`` (default: the
    source's config name), which is the key the library stores this model's embeddings under.
    """
    from ..clip.tokenizer import VOCAB_FILENAME
    from ..clip.towers import ClipConfig

    src = Path(src_dir).expanduser().resolve()
    if not src.is_dir():
        raise ModelNotFoundError(f"not a folder: {src}")
    if not (src / "clip.json").is_file():
        raise ModelNotFoundError(
            f"{src} has no clip.json: `models add --clip` takes a folder in the layout of "
            "`retllm-desktop models export-clip` (clip.json, image.onnx, text.onnx)"
        )
    cfg = ClipConfig.load(src)
    name = _check_name(name or cfg.name)
    dest = Path(models_dir) / "clip" / name
    if dest.resolve() == src:
        raise RetllmError(f"{src} is already in the models folder")
    if (dest / "clip.json").exists():
        raise RetllmError(
            f"a CLIP model named {name!r} is already installed ({dest}); remove it first or pick --name"
        )
    files = [cfg.image_model, cfg.text_model] + ([cfg.tokenizer.file] if cfg.tokenizer else [])
    required = len(files)
    files += [f for f in (cfg.quantized_image_model, cfg.quantized_text_model, VOCAB_FILENAME) if f]
    for f in files[:required]:
        if not (src / f).is_file():
            raise ModelNotFoundError(f"CLIP model file missing: {src / f}")
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        if (src / f).is_file():
            _link_or_copy(src / f, dest / f)
    data = json.loads((src / "clip.json").read_text(encoding="utf-8"))
    data["name"] = name
    data.setdefault("source", {"kind": "local", "path": str(src)})
    ClipConfig.from_dict(data)  # still valid
    write_json(dest / "clip.json", data)
    return dest


def _check_gguf(path: Path, what: str) -> Path:
    from ..gguf import check_gguf  # the one GGUF check, shared with the LLM stage

    return check_gguf(path, what)


def add_local_mllm(
    gguf: str | os.PathLike[str],
    mmproj: str | os.PathLike[str],
    models_dir: str | os.PathLike[str],
    name: str | None = None,
    handler: str = "gguf-template",
) -> Path:
    """Register a multimodal LLM the user already has (text-model GGUF + mmproj GGUF).

    The multi-GB files are **symlinked** as ``model.gguf`` / ``mmproj.gguf`` into
    ``<models>/mllm/<name>/``; where symlinks are not allowed, ``mllm.json`` records their absolute paths
    instead (nothing is copied).
    """
    g = _check_gguf(Path(gguf), "LLM GGUF file")
    mp = _check_gguf(Path(mmproj), "mmproj GGUF file")
    name = _check_name(name or g.stem.lower())
    dest = Path(models_dir) / "mllm" / name
    if (dest / "mllm.json").exists():
        raise RetllmError(
            f"an LLM named {name!r} is already installed ({dest}); remove it first or pick --name"
        )
    dest.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"name": name, "handler": handler, "chat_format": None}
    for key, src, fname in (("model", g, "model.gguf"), ("mmproj", mp, "mmproj.gguf")):
        link = dest / fname
        link.unlink(missing_ok=True)
        try:
            os.symlink(src, link)
            meta[key] = fname
        except (OSError, NotImplementedError):
            meta[key] = str(src)
    meta["source"] = {"kind": "local", "model": str(g), "mmproj": str(mp)}
    write_json(dest / "mllm.json", meta)
    return dest
