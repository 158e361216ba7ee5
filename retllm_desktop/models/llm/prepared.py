"""Photos prepared ahead for the LLM: each one's projected image embeddings on disk, compact, under a budget.

What the vision tower makes of a photo is most of a new photo's cost (80 % for SmolVLM); stored ahead, a
check needs only the LM prefill of the image tokens and the question. Unlike the checked-photo cache
(``cache.py``, an LRU filled by searches), this store is filled by the prepare pass in priority order and
is never evicted by a search.

Layout: ``<root>/<namespace>/<sha256(key)[:2]>/<sha256(key)>.pemb``. The namespace is a hash of what the
embeddings depend on (the mmproj file's fingerprint, how the photo is shown to it, the llama.cpp build),
so another model never reads these rows and :meth:`PreparedStore.drop_other_namespaces` frees the old
ones when the model changes. One file per photo::

    b"RLPREP1\\n" | u32 header length | JSON header | payload

with the header ``{key, rows, dim, codec, nx, ny, crc32}``; codec ``f16``: rows x dim float16;
``i8``: rows float32 scales, then rows x dim int8 (symmetric, per row). Written to a temp file and
published with ``os.replace`` (a kill -9 leaves at most a ``.part`` that the next run deletes); a full
disk raises ``OSError`` with nothing half-written. A damaged or foreign file reads as a miss and is
deleted.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .blob_files import TEMP_PREFIX, TEMP_SUFFIX, key_path, pack, unpack, write_atomic

MAGIC = b"RLPREP1\n"
SUFFIX = ".pemb"
CODECS = ("f16", "i8")


def namespace_of(*parts: str) -> str:
    return hashlib.blake2b("|".join(parts).encode(), digest_size=10).hexdigest()


def encode_rows(emb: np.ndarray, codec: str) -> bytes:
    a = np.ascontiguousarray(emb, dtype=np.float32)
    if codec == "f16":
        return a.astype("<f2").tobytes()
    if codec == "i8":
        scale = np.abs(a).max(axis=1) / 127.0
        scale[scale == 0] = 1.0
        q = np.clip(np.rint(a / scale[:, None]), -127, 127).astype(np.int8)
        return scale.astype("<f4").tobytes() + q.tobytes()
    raise ValueError(f"codec must be one of {CODECS}")


def decode_rows(payload: bytes, rows: int, dim: int, codec: str) -> np.ndarray:
    if codec == "f16":
        if len(payload) != rows * dim * 2:
            raise ValueError("size")
        return np.frombuffer(payload, dtype="<f2").reshape(rows, dim).astype(np.float32)
    if codec == "i8":
        if len(payload) != rows * 4 + rows * dim:
            raise ValueError("size")
        scale = np.frombuffer(payload[: rows * 4], dtype="<f4")
        q = np.frombuffer(payload[rows * 4 :], dtype=np.int8).reshape(rows, dim)
        return q.astype(np.float32) * scale[:, None]
    raise ValueError("codec")


@dataclass(frozen=True)
class PreparedUsage:
    photos: int
    bytes: int


class PreparedStore:
    """``put``/``get`` of one photo's embedding rows by its embedding key, in one namespace under ``root``."""

    def __init__(self, root: str | os.PathLike[str], namespace: str, codec: str = "f16"):
        if codec not in CODECS:
            raise ValueError(f"codec must be one of {CODECS}")
        self.root = Path(root)
        self.namespace = namespace
        self.dir = self.root / namespace
        self.codec = codec

    def _path(self, key: str) -> Path:
        return key_path(self.dir, key, SUFFIX)

    def has(self, key: str) -> bool:
        return self._path(key).is_file()

    def get(self, key: str) -> tuple[np.ndarray, int, int] | None:
        """(float32 rows, bitmap width, height), or None (missing, damaged or another key's file)."""
        path = self._path(key)
        try:
            blob = path.read_bytes()
        except OSError:
            return None
        try:
            head, payload = unpack(blob, MAGIC)
            if head["key"] != key or zlib.crc32(payload) != head["crc32"]:
                raise ValueError("key or crc")
            arr = decode_rows(payload, int(head["rows"]), int(head["dim"]), head["codec"])
            return arr, int(head["nx"]), int(head["ny"])
        except (ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError):
            self._unlink(path)
            return None

    def put(self, key: str, emb: np.ndarray, width: int, height: int) -> int:
        """Store one photo atomically; returns the bytes written. ``OSError`` (disk full) leaves nothing."""
        payload = encode_rows(emb, self.codec)
        head = {"key": key, "rows": int(emb.shape[0]), "dim": int(emb.shape[1]), "codec": self.codec,
                "nx": int(width), "ny": int(height), "crc32": zlib.crc32(payload)}  # fmt: skip
        blob = pack(MAGIC, head, payload)
        write_atomic(self._path(key), blob, fsync=True)
        return len(blob)

    def remove(self, key: str) -> int:
        path = self._path(key)
        try:
            size = path.stat().st_size
        except OSError:
            return 0
        self._unlink(path)
        return size

    def size(self, key: str) -> int:
        """Bytes of this photo's entry (0: not prepared)."""
        try:
            return self._path(key).stat().st_size
        except OSError:
            return 0

    def remove_except(self, keep: set[str]) -> int:
        """Delete every entry of this namespace whose key is not in ``keep``; returns how many."""
        wanted = {self._path(k) for k in keep}
        n = 0
        if self.dir.is_dir():
            for p in self.dir.glob("*/*" + SUFFIX):
                if p not in wanted:
                    self._unlink(p)
                    n += 1
        return n

    @staticmethod
    def _unlink(path: Path) -> None:
        try:
            path.unlink()
        except OSError:
            pass

    def usage(self) -> PreparedUsage:
        """Photos and bytes in this namespace (leftover temp files are not counted)."""
        n = size = 0
        if self.dir.is_dir():
            for p in self.dir.glob("*/*" + SUFFIX):
                try:
                    size += p.stat().st_size
                    n += 1
                except OSError:
                    pass
        return PreparedUsage(n, size)

    def clean_temp(self) -> int:
        """Delete temp files a killed writer left behind; returns how many."""
        n = 0
        if self.dir.is_dir():
            for p in self.dir.glob(f"*/{TEMP_PREFIX}*{TEMP_SUFFIX}"):
                self._unlink(p)
                n += 1
        return n

    def drop_other_namespaces(self) -> int:
        """Delete what other models (or other settings, another llama.cpp) prepared; returns bytes freed."""
        freed = 0
        if not self.root.is_dir():
            return 0
        for d in self.root.iterdir():
            if d.is_dir() and d.name != self.namespace:
                for p in d.rglob("*"):
                    try:
                        freed += p.stat().st_size if p.is_file() else 0
                    except OSError:
                        pass
                shutil.rmtree(d, ignore_errors=True)
        return freed
