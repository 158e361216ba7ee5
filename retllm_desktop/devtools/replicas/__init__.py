"""Replicas of every registry model: random weights, everything else as in the published files.

    python -m retllm_desktop.devtools.replicas OUT [--name NAME | --all] [--size tiny|full] [--fetch-sources]

writes, for each entry of ``resources/mllm_models.toml`` / ``resources/models.toml``, the folder the
downloader would install (``OUT/mllm/<name>/{mllm.json, model.gguf, mmproj.gguf}``,
``OUT/clip/<name>/{clip.json, image.onnx, text.onnx}``) with the registry's own ``mllm.json`` /
``clip.json`` contents, so the app loads a replica exactly as it would load the download.

* MLLMs (``gguf_models``, ``specs``, ``tokenizer``): the real GGUF architecture and hyper-parameter keys,
  the real tokenizer (from llama.cpp's vocab-only GGUFs, see ``sources``), the published chat template
  (``devtools/templates``), the real mmproj projector type and preprocessing keys. Written directly with
  gguf-py (the converter needs HF tokenizer files that are not available offline).
* CLIP (``clip_onnx``): towers with the exact ONNX interface of the Xenova files, fp32 and int8.

Each ``mllm.json`` records ``replica`` = {generator version, size, tokenizer note}.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ...models.hub.registry import ModelEntry, load_registry
from .specs import SPECS, tiny

GENERATOR_VERSION = 2
SIZES = ("tiny", "full")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _stamp(size: str, seed: int, **more: Any) -> dict[str, Any]:
    return {"kind": "replica", "generator_version": GENERATOR_VERSION, "size": size, "seed": seed, **more}


def _complete(config: Path, stamp: dict[str, Any]) -> bool:
    try:
        return json.loads(config.read_text(encoding="utf-8")).get("replica") == stamp
    except (OSError, ValueError):
        return False


def write_mllm_replica(entry: ModelEntry, out: Path, size: str = "tiny", seed: int = 0) -> Path:
    from ..templates import load as load_template
    from .gguf_models import write_mmproj, write_text
    from .sources import vocab_path
    from .tokenizer import build_vocab

    spec = SPECS[entry.name]
    if size == "tiny":
        spec = tiny(spec)
    d = out / "mllm" / entry.name
    stamp = _stamp(size, seed, tokenizer=spec.tokenizer.note, text_arch=spec.text.arch)
    stamp["projector"] = spec.vision.projector
    if _complete(d / "mllm.json", stamp):
        return d
    d.mkdir(parents=True, exist_ok=True)
    (d / "mllm.json").unlink(missing_ok=True)  # written last: a folder without it is not a model
    vocab = build_vocab(vocab_path(spec.tokenizer.vocab_file), spec.tokenizer.recipe)
    template = load_template(spec.template) if spec.template else None
    if size == "full":  # quantised like the published files, by llama.cpp's own quantiser
        from .gguf_models import quantize_text

        write_text(d / "model.f16.gguf", spec, vocab, template, seed)
        quantize_text(d / "model.f16.gguf", d / "model.gguf", spec.text_ftype)
        (d / "model.f16.gguf").unlink()
        write_mmproj(d / "mmproj.gguf", spec, seed, q8=spec.mmproj_ftype == "Q8_0")
    else:  # tiny: F16 (k-quants need rows of 256)
        write_text(d / "model.gguf", spec, vocab, template, seed)
        write_mmproj(d / "mmproj.gguf", spec, seed)
    data = entry.config_data()
    data["source"] = {"kind": "replica", "of": entry.hf_repo, "files": [f.path for f in entry.files]}
    data["replica"] = stamp
    _write_json(d / "mllm.json", data)
    return d


def write_clip_replica(entry: ModelEntry, out: Path, size: str = "tiny", seed: int = 0) -> Path:
    from .clip_families import SPECS as FAMILY_SPECS
    from .clip_families import write_family_files
    from .clip_onnx import write_clip_files

    if entry.name in FAMILY_SPECS:  # SigLIP 2, MobileCLIP, Immich exports
        fp16 = any("_fp16" in f.path for f in entry.files)
        d = out / "clip" / entry.name
        stamp = _stamp(size, seed, family=FAMILY_SPECS[entry.name].family, fp16=fp16)
        if _complete(d / "clip.json", stamp):
            return d
        d.mkdir(parents=True, exist_ok=True)
        (d / "clip.json").unlink(missing_ok=True)
        notes = write_family_files(d, entry.name, size, seed, fp16)
        data = entry.config_data()
        data["source"] = {"kind": "replica", "of": entry.hf_repo, "files": [f.path for f in entry.files]}
        data["source"]["notes"] = notes  # how the replica relates to the published files
        data["replica"] = stamp
        _write_json(d / "clip.json", data)
        return d
    if not entry.export or entry.export.get("arch") is None:
        raise ValueError(f"{entry.name}: the registry entry names no architecture (export.arch)")
    quantized = all("_quantized" in f.path for f in entry.files)
    d = out / "clip" / entry.name
    stamp = _stamp(size, seed, arch=entry.export["arch"], quantized=quantized)
    if _complete(d / "clip.json", stamp):
        return d
    d.mkdir(parents=True, exist_ok=True)
    (d / "clip.json").unlink(missing_ok=True)
    write_clip_files(d, entry.export["arch"], size, quantized, seed)
    data = entry.config_data()
    data["source"] = {"kind": "replica", "of": entry.hf_repo, "files": [f.path for f in entry.files]}
    data["replica"] = stamp
    _write_json(d / "clip.json", data)
    return d


def write_replica(name: str, out: Path, size: str = "tiny", seed: int = 0) -> Path:
    """One registry entry (CLIP or MLLM) -> its model folder under ``out``; reused when already complete."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}")
    entry = load_registry().get(name)
    if entry.role == "clip":
        return write_clip_replica(entry, Path(out), size, seed)
    return write_mllm_replica(entry, Path(out), size, seed)


def registry_names(role: str | None = None) -> list[str]:
    reg = load_registry()
    return [e.name for e in reg if role is None or e.role == role]
