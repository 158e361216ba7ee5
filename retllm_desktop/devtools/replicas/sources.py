"""Offline sources of the real tokenizers: llama.cpp's vocab-only GGUFs from the llama-cpp-python sdist.

The sdist of the pinned llama-cpp-python ships ``vendor/llama.cpp/models/ggml-vocab-*.gguf``. They are
extracted once into a sources folder (gitignored ``.cache/replica-sources`` by default, or
``$RETLLM_REPLICA_SOURCES``); ``make replica-sources`` or ``replicas --fetch-sources`` fills it with
``pip download`` (PyPI only). Nothing here runs at test time except reading that folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path

from .hf_tokenizers import GEMMA_VOCAB_FILE, XLMR_VOCAB_FILE
from .specs import SPECS

REPO_ROOT = Path(__file__).resolve().parents[3]
ENV_SOURCES = "RETLLM_REPLICA_SOURCES"
VOCAB_FILES = sorted({s.tokenizer.vocab_file for s in SPECS.values()} | {GEMMA_VOCAB_FILE, XLMR_VOCAB_FILE})


class SourcesMissing(RuntimeError):
    """The vocab files are not there yet (run ``make replica-sources``)."""


def default_sources_dir() -> Path:
    env = os.environ.get(ENV_SOURCES)
    return Path(env) if env else REPO_ROOT / ".cache" / "replica-sources"


def llama_cpp_version() -> str:
    return metadata.version("llama-cpp-python")


def vocab_path(name: str, sources: Path | None = None) -> Path:
    d = sources or default_sources_dir()
    p = d / name
    if not p.is_file():
        raise SourcesMissing(
            f"{p} is missing: run `make replica-sources` (or `python -m retllm_desktop.devtools.replicas "
            f"--fetch-sources`) to extract llama.cpp's vocab files from the llama-cpp-python sdist."
        )
    return p


def have_sources(sources: Path | None = None) -> bool:
    d = sources or default_sources_dir()
    return all((d / n).is_file() for n in VOCAB_FILES)


def fetch_sources(dest: Path | None = None, version: str | None = None) -> Path:
    """``pip download`` the llama-cpp-python sdist and extract the vocab files into ``dest``."""
    dest = dest or default_sources_dir()
    if have_sources(dest):
        return dest
    version = version or llama_cpp_version()
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
             f"llama-cpp-python=={version}", "-d", tmp],
            check=True,
        )  # fmt: skip
        (sdist,) = Path(tmp).glob("llama_cpp_python-*.tar.gz")
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                name = Path(member.name).name
                if name in VOCAB_FILES and "/vendor/llama.cpp/models/" in member.name:
                    f = tar.extractfile(member)
                    assert f is not None
                    part = dest / (name + ".part")
                    part.write_bytes(f.read())
                    part.replace(dest / name)
    (dest / "SOURCE.txt").write_text(
        f"vendor/llama.cpp/models/ggml-vocab-*.gguf of the llama-cpp-python {version} sdist (PyPI)\n"
    )
    if not have_sources(dest):
        raise SourcesMissing(f"the llama-cpp-python {version} sdist lacks some of {VOCAB_FILES}")
    return dest
