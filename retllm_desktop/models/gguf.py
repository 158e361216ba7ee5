"""The one check that a file is a GGUF (llama.cpp's model format) before anything tries to load it."""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelLoadError, ModelNotFoundError

GGUF_MAGIC = b"GGUF"


def check_gguf(path: str | Path, what: str) -> Path:
    """``path`` resolved, if it is a readable file starting with the GGUF magic; else a clear error.

    Why here: both the hub (registering local files) and the LLM stage (before loading) need it, and a
    half-downloaded or renamed file should fail with one line, not a llama.cpp crash.
    """
    p = Path(path).expanduser()
    try:
        with open(p, "rb") as f:
            magic = f.read(4)
    except FileNotFoundError as e:
        raise ModelNotFoundError(f"{what} not found: {p}") from e
    except OSError as e:
        raise ModelNotFoundError(f"Cannot read the {what} {p}: {e}") from e
    if magic != GGUF_MAGIC:
        raise ModelLoadError(f"The {what} {p} is not a GGUF file (corrupt or incomplete download?).")
    return p.resolve()
