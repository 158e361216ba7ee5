"""The on-disk shape both embedding stores share (``cache.py``'s checked photos, ``prepared.py``'s prepared
ones): one file per key under a two-letter shard, ``magic | u32 header length | JSON header | payload``,
published atomically so a crash or a full disk never leaves a half-written entry under the final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

TEMP_PREFIX, TEMP_SUFFIX = ".tmp-", ".part"  # what a killed writer can leave behind (``clean_temp``)


def key_path(directory: Path, key: str, suffix: str) -> Path:
    """``<directory>/<sha256(key)[:2]>/<sha256(key)><suffix>``: the key itself is kept in the header."""
    h = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return directory / h[:2] / (h + suffix)


def pack(magic: bytes, header: dict[str, Any], payload: bytes) -> bytes:
    head = json.dumps(header).encode("utf-8")
    return magic + struct.pack("<I", len(head)) + head + payload


def unpack(blob: bytes, magic: bytes) -> tuple[Any, bytes]:
    """(header, payload); raises ValueError (also UnicodeDecodeError) or struct.error on a foreign file."""
    if not blob.startswith(magic):
        raise ValueError("magic")
    off = len(magic)
    (hlen,) = struct.unpack_from("<I", blob, off)
    off += 4
    return json.loads(blob[off : off + hlen].decode("utf-8")), blob[off + hlen :]


def write_atomic(path: Path, blob: bytes, *, fsync: bool) -> None:
    """Write ``blob`` to a temp file next to ``path`` and rename it over ``path``; on any error the temp
    file is removed and the error raised (``fsync``: the bytes are on disk before the rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
