"""One byte-bounded LRU for the LLM stage's in-memory caches (image embeddings, KV snapshots)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class ByteLRU(Generic[V]):
    """``key -> value`` kept under ``max_bytes`` (sizes from ``size_of``), least recently used out first.

    The newest entry always stays, even when alone it exceeds the bound (the caller decides what is
    too big to keep at all). Thread-safe.
    """

    def __init__(self, max_bytes: int, size_of: Callable[[V], int]):
        self.max_bytes = int(max_bytes)
        self._size_of = size_of
        self._items: OrderedDict[str, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> V | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return None
            self._items.move_to_end(key)
            return hit[0]

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._items

    def put(self, key: str, value: V) -> None:
        size = int(self._size_of(value))
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, (_, n) = self._items.popitem(last=False)
                self._bytes -= n

    def pop(self, key: str) -> V | None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is None:
                return None
            self._bytes -= old[1]
            return old[0]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    @property
    def total_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)
