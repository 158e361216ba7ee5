"""The photo passes' shared loop: decode ahead on one thread, work on each photo, commit in batches.

The text pass and the face pass differ only in what they do with a decoded photo and how they store it;
the prefetching, cancelling (pending decodes dropped, the open batch committed) and progress are one job.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from .progress import Progress

D = TypeVar("D")
R = TypeVar("R")


def run_batched(
    todo: Iterable[tuple[Any, ...]],
    decode: Callable[..., D],
    work: Callable[[D], R],
    commit: Callable[[list[tuple[D, R]]], None],
    *,
    prefetch: int,
    batch_size: int,
    stage: str,
    total: int,
    thread_name: str,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> tuple[int, bool]:
    """Run ``work(decode(*args))`` over ``todo``; returns (photos done, whether it was cancelled)."""
    queue = iter(todo)
    pending: deque[Future[D]] = deque()
    batch: list[tuple[D, R]] = []
    n, cancelled = 0, False
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name) as pool:

        def refill() -> None:
            while len(pending) < prefetch:
                nxt = next(queue, None)
                if nxt is None:
                    return
                pending.append(pool.submit(decode, *nxt))

        refill()
        while pending:
            if cancel is not None and cancel.is_set():
                cancelled = True
                for f in pending:
                    f.cancel()
                break
            item = pending.popleft().result()
            refill()
            batch.append((item, work(item)))
            n += 1
            if len(batch) >= batch_size:
                commit(batch)
                batch = []
            if progress:
                progress(stage, n, total)
        if batch:
            commit(batch)
    return n, cancelled
