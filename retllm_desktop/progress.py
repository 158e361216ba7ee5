"""Progress reporting: the callback type every long engine call takes, and a terminal bar for the CLI."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

Progress = Callable[[str, int, int], None]  # (stage, done, total); total 0 while unknown


class ProgressBar:
    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._stage = ""
        self._t0 = time.monotonic()
        self._last = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if stage != self._stage:
            self._stage, self._t0 = stage, now
        if now - self._last < 0.1 and done != total:
            return
        self._last = now
        if total > 0:
            width = 30
            filled = int(width * done / total)
            rate = done / max(now - self._t0, 1e-6)
            eta = (total - done) / rate if rate > 0 else 0
            line = f"{stage:<10} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {rate:5.1f}/s ETA {eta:4.0f}s"
        else:
            line = f"{stage:<10} {done}"
        self.stream.write("\r" + line.ljust(79))
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled and self._stage:
            self.stream.write("\n")
            self.stream.flush()
