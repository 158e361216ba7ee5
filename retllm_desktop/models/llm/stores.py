"""The LLM stage's two caches, each a memory LRU in front of a bounded on-disk store.

* :class:`ImageEmbeddings`: mmproj output per (model, photo content, view); a photo is encoded once.
* :class:`KvSnapshots`: the llama sequence state right after a candidate image, so a new query over a
  photo seen before (even after a restart) evaluates only its question tokens.

Neither changes any number: a hit gives exactly what recomputing would (tests check this).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .cache import EmbeddingCache
from .lru import ByteLRU


class ImageEmbeddings:
    """``key -> (embedding rows, bitmap width, height)``; memory first, then the disk cache."""

    def __init__(self, memory_bytes: int, disk: EmbeddingCache | None, stats: dict[str, int]):
        self.memory: ByteLRU[tuple[np.ndarray, int, int]] = ByteLRU(memory_bytes, lambda v: v[0].nbytes)
        self.disk = disk
        self.stats = stats
        self.n_embd: int | None = None  # set once the model is loaded; other widths read as misses
        self.prepared: Any = None  # prepared.PreparedStore: photos the prepare pass encoded ahead

    def lookup(self, key: str) -> tuple[np.ndarray, int, int] | None:
        hit = self.memory.get(key)
        if hit is not None:
            self.stats["embedding_memory_hits"] += 1
            return hit
        entry = self.disk.get(key) if self.disk is not None else None
        if entry is None:
            return self._prepared(key)
        try:
            w, h = int(entry.meta["nx"]), int(entry.meta["ny"])
        except (KeyError, TypeError, ValueError):
            self.disk.delete(key)
            return None
        if entry.array.ndim != 2 or (self.n_embd is not None and entry.array.shape[1] != self.n_embd):
            self.disk.delete(key)
            return None
        self.stats["embedding_disk_hits"] += 1
        self.memory.put(key, (entry.array, w, h))
        return entry.array, w, h

    def _prepared(self, key: str) -> tuple[np.ndarray, int, int] | None:
        if self.prepared is None:
            return None
        hit = self.prepared.get(key)
        if hit is None:
            return None
        if hit[0].ndim != 2 or (self.n_embd is not None and hit[0].shape[1] != self.n_embd):
            self.prepared.remove(key)
            return None
        self.stats["prepared_hits"] += 1
        self.memory.put(key, hit)
        return hit

    def get(self, key: str) -> np.ndarray | None:
        hit = self.lookup(key)
        return hit[0] if hit is not None else None

    def put(self, key: str, emb: np.ndarray, width: int, height: int) -> None:
        self.memory.put(key, (emb, width, height))
        if self.disk is not None:
            self.disk.put(key, emb, {"nx": width, "ny": height, "n_tokens": int(emb.shape[0])})

    def drop(self, key: str) -> None:
        self.memory.pop(key)
        if self.disk is not None:
            self.disk.delete(key)
        if self.prepared is not None:
            self.prepared.remove(key)


class KvSnapshots:
    """``state key -> (state bytes, position)``; memory LRU, mirrored to disk under ``namespace``.

    ``namespace`` must name everything the bytes depend on besides the prompt (see the scorer).
    """

    def __init__(self, max_bytes: int, disk: EmbeddingCache | None, namespace: str, stats: dict[str, int]):
        self.max_bytes = int(max_bytes)
        self.memory: ByteLRU[tuple[bytes, int]] = ByteLRU(self.max_bytes, lambda v: len(v[0]))
        self.disk = disk
        self.namespace = namespace
        self.stats = stats

    def disk_key(self, key: str) -> str:
        return f"kv|{self.namespace}|{key}"

    def wants(self, size: int) -> bool:
        """Whether a snapshot of ``size`` bytes is worth keeping (a quarter of the memory bound at most)."""
        return 0 < size <= self.max_bytes // 4

    def has(self, key: str) -> bool:
        return key in self.memory

    def get(self, key: str) -> tuple[bytes, int] | None:
        hit = self.memory.get(key)
        if hit is not None or self.disk is None:
            return hit
        entry = self.disk.get(self.disk_key(key))
        if entry is None:
            return None
        try:
            size, pos = int(entry.meta["size"]), int(entry.meta["pos"])
            data = entry.array.tobytes()[:size]
        except (KeyError, TypeError, ValueError):
            return None
        if len(data) != size or size <= 0:
            return None
        self.memory.put(key, (data, pos))
        self.stats["state_disk_hits"] += 1
        return data, pos

    def put(self, key: str, data: bytes, pos: int) -> None:
        self.memory.put(key, (data, pos))
        if self.disk is not None:
            padded = data + b"\0" * (-len(data) % 4)  # the store holds float32 words
            self.disk.put(
                self.disk_key(key), np.frombuffer(padded, dtype="<f4"), {"size": len(data), "pos": pos}
            )

    def drop(self, key: str) -> None:
        self.memory.pop(key)
        if self.disk is not None:
            self.disk.delete(self.disk_key(key))

    def clear_memory(self) -> None:
        self.memory.clear()
