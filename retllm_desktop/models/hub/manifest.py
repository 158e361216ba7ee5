"""What an installed model folder records about its files: the manifest name, hashing, small JSON files.

A leaf: both the downloader (``download.py``) and the installed-model checks (``installed.py``) use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

from ...errors import CancelledError

MANIFEST = "retllm-manifest.json"  # sizes and sha256 of a model folder's files (what verify checks)
PART_SUFFIX = ".part"  # a file still being downloaded
CHUNK = 1 << 20


def sha256_file(path: Path, cancel: threading.Event | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            if cancel is not None and cancel.is_set():
                raise CancelledError("verification cancelled")
            h.update(chunk)
    return h.hexdigest()


def read_json(path: Path) -> dict | None:
    """A JSON object from ``path``; None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` atomically (a crash leaves the old file or the new one)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
