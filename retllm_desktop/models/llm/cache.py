"""Bounded on-disk LRU of image embeddings (the mmproj output), so a photo is encoded once per model.

One file per entry, ``<dir>/<sha256(key)[:2]>/<sha256(key)>.emb``::

    b"RLEMB1\\n" | u32 header length | JSON header | raw little-endian float32 data

The JSON header holds the shape, the key itself (a hash collision reads as a miss), free-form ``meta``
(e.g. the bitmap size the embedding was computed from) and a CRC32 of the data. Writes go to a temp
file in the same directory and are published with ``os.replace`` (atomic on POSIX and Windows).
Recency is the file's mtime (touched on every hit), so the LRU order survives restarts and is shared
by processes using the same directory. A truncated/corrupt entry is deleted and reported as a miss.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...config import MLLM_CACHE_BYTES
from .blob_files import key_path, pack, unpack, write_atomic

_MAGIC = b"RLEMB1\n"
_SUFFIX = ".emb"
DEFAULT_MAX_BYTES = MLLM_CACHE_BYTES


@dataclass
class CacheEntry:
    array: np.ndarray  # float32, C-contiguous
    meta: dict[str, Any] = field(default_factory=dict)


class EmbeddingCache:
    """``get(key)`` / ``put(key, array, meta)``; total size kept <= ``max_bytes`` by evicting LRU entries."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES):
        self.dir = Path(directory)
        self.max_bytes = int(max_bytes)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._sizes: dict[Path, int] | None = None  # lazily scanned index: path -> bytes
        self.hits = 0
        self.misses = 0

    # -- paths / index ---------------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        return key_path(self.dir, key, _SUFFIX)

    def _index(self) -> dict[Path, int]:
        if self._sizes is None:
            sizes: dict[Path, int] = {}
            for p in self.dir.glob("*/*" + _SUFFIX):
                try:
                    sizes[p] = p.stat().st_size
                except OSError:
                    pass
            self._sizes = sizes
        return self._sizes

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return sum(self._index().values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._index())

    def __contains__(self, key: str) -> bool:
        return self._path(key).is_file()

    def keys(self) -> list[str]:
        """Keys of the readable entries (from their headers; the file names are hashes)."""
        out = []
        with self._lock:
            paths = list(self._index())
        for p in paths:
            try:
                with open(p, "rb") as f:
                    head = f.read(len(_MAGIC) + 4)
                    if not head.startswith(_MAGIC):
                        continue
                    (hlen,) = struct.unpack_from("<I", head, len(_MAGIC))
                    out.append(json.loads(f.read(hlen).decode("utf-8"))["key"])
            except (OSError, ValueError, KeyError, struct.error, UnicodeDecodeError):
                continue
        return out

    # -- read ------------------------------------------------------------------------------------
    def get(self, key: str) -> CacheEntry | None:
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                blob = f.read()
        except FileNotFoundError:
            self.misses += 1
            return None
        except OSError:
            self.misses += 1
            return None
        entry = self._decode(blob, key)
        if entry is None:  # corrupt or foreign: drop it
            self._remove(path)
            self.misses += 1
            return None
        try:
            now = time.time()
            os.utime(path, (now, now))
        except OSError:
            pass
        self.hits += 1
        return entry

    @staticmethod
    def _decode(blob: bytes, key: str) -> CacheEntry | None:
        try:
            header, data = unpack(blob, _MAGIC)
            shape = tuple(int(x) for x in header["shape"])
            if header.get("key") != key or header.get("dtype") != "<f4":
                return None
            if len(data) != int(np.prod(shape, dtype=np.int64)) * 4:
                return None
            if zlib.crc32(data) != header["crc32"]:
                return None
            arr = np.frombuffer(data, dtype="<f4").reshape(shape).astype(np.float32, copy=True)
            return CacheEntry(arr, dict(header.get("meta") or {}))
        except (ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError):
            return None

    # -- write -----------------------------------------------------------------------------------
    def put(self, key: str, array: np.ndarray, meta: dict[str, Any] | None = None) -> None:
        arr = np.ascontiguousarray(array, dtype="<f4")
        data = arr.tobytes()
        header = {
            "key": key,
            "shape": list(arr.shape),
            "dtype": "<f4",
            "crc32": zlib.crc32(data),
            "meta": meta or {},
        }
        blob = pack(_MAGIC, header, data)
        if len(blob) > self.max_bytes:
            return  # would evict everything else and still not fit
        path = self._path(key)
        write_atomic(path, blob, fsync=False)
        with self._lock:
            self._index()[path] = len(blob)
            self._evict_locked(keep=path)

    def _evict_locked(self, keep: Path | None = None) -> None:
        sizes = self._index()
        total = sum(sizes.values())
        if total <= self.max_bytes:
            return
        by_age: list[tuple[float, Path]] = []
        for p in list(sizes):
            try:
                by_age.append((p.stat().st_mtime, p))
            except OSError:
                total -= sizes.pop(p)
        by_age.sort()
        for _, p in by_age:
            if total <= self.max_bytes:
                break
            if p == keep:
                continue
            try:
                p.unlink()
            except OSError:
                pass
            total -= sizes.pop(p, 0)

    def _remove(self, path: Path) -> None:
        try:
            path.unlink()
        except OSError:
            pass
        with self._lock:
            if self._sizes is not None:
                self._sizes.pop(path, None)

    def delete(self, key: str) -> None:
        self._remove(self._path(key))

    def clear(self) -> None:
        with self._lock:
            for p in list(self._index()):
                try:
                    p.unlink()
                except OSError:
                    pass
            self._sizes = {}
