"""A memory budget shared by every thread that decodes photos (indexer workers, thumbnails, query images).

A per-image pixel limit does not bound memory: a 0.8 MB PNG can decode to almost a gigabyte, and four
decode workers may each hold one. Before decoding, a thread reserves the bytes the decode will need at its
peak (known from the header, after the JPEG draft scale); when the budget is used up it waits for the others
to finish, and an image that alone needs more than the whole budget is refused with a reason.
``RETLLM_DECODE_BUDGET_MB`` sets the budget (default: a quarter of the RAM, at most 1 GiB, at least 256 MB).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import ImageError

ENV_BUDGET = "RETLLM_DECODE_BUDGET_MB"
MB = 1024 * 1024


def _default_bytes() -> int:
    env = os.environ.get(ENV_BUDGET)
    if env:
        try:
            return max(1, int(float(env) * MB))
        except ValueError:
            pass
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 4 * 1024 * MB
    return int(min(1024 * MB, max(256 * MB, ram // 4)))


class MemoryBudget:
    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self.in_use = 0
        self.peak = 0  # the most ever reserved at once (tests, diagnostics)
        self._cond = threading.Condition()

    @contextmanager
    def reserve(self, nbytes: int, what: str = "image") -> Iterator[None]:
        nbytes = max(0, int(nbytes))
        if nbytes > self.capacity:
            raise ImageError(
                f"{what} too large to decode: it needs {nbytes / MB:,.0f} MB, the decoding budget is "
                f"{self.capacity / MB:,.0f} MB (set {ENV_BUDGET} to allow more)"
            )
        with self._cond:
            while self.in_use + nbytes > self.capacity:
                self._cond.wait()
            self.in_use += nbytes
            self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            with self._cond:
                self.in_use -= nbytes
                self._cond.notify_all()


_shared: MemoryBudget | None = None
_shared_lock = threading.Lock()


def decode_budget() -> MemoryBudget:
    """The process-wide budget (created on first use from the environment)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = MemoryBudget(_default_bytes())
        return _shared


def set_decode_budget(capacity_bytes: int) -> MemoryBudget:
    """Replace the process-wide budget (an app setting, tests)."""
    global _shared
    with _shared_lock:
        _shared = MemoryBudget(capacity_bytes)
        return _shared
