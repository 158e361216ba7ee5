"""The text pass: read the words in photos (OCR) into the catalog's full-text index.

It runs after the CLIP pass, so search works before it finishes. Text is stored per content hash, so a
moved or copied photo reuses what was read and a changed photo (new hash) is read again. Decoding runs
one photo ahead of the model; every batch of photos is committed in one transaction, so a crash or
Ctrl+C loses at most the batch in flight and the next run resumes. A photo that cannot be read is
recorded with its reason and never fails the run.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from PIL import Image

from .batch_loop import run_batched
from .catalog import Catalog
from .errors import ImageError
from .imaging import load_rgb
from .progress import Progress
from .text_match import squash

STAGE = "reading text"


class TextReader(Protocol):
    """What the pass needs from an OCR model (see models.ocr.OcrModel)."""

    name: str

    def read(self, image: Image.Image) -> Any: ...


@dataclass
class TextSummary:
    read: int = 0  # photos read in this run
    with_text: int = 0  # of which hold text
    failed: int = 0
    pending: int = 0  # left for a later run (cancelled)
    seconds: float = 0.0
    cancelled: bool = False
    error: str | None = None  # why the pass did not run (model missing): search still works without it

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Decoded:
    content_hash: str
    path: str
    image: Image.Image | None = None
    error: str | None = None


class TextPass:
    def __init__(
        self,
        catalog: Catalog,
        reader: TextReader,
        *,
        batch_size: int = 8,
        max_side: int = 1600,
        prefetch: int = 2,
    ):
        self.catalog = catalog
        self.reader = reader
        self.batch_size = max(1, batch_size)
        self.max_side = max_side  # huge photos are downscaled first: bounded memory, text still legible
        self.prefetch = max(1, prefetch)

    def _decode(self, content_hash: str, path: str) -> _Decoded:
        try:
            img = load_rgb(path, min_side=self.max_side // 2)
            if max(img.size) > self.max_side:
                img.thumbnail((self.max_side, self.max_side), Image.Resampling.LANCZOS)
            return _Decoded(content_hash, path, img)
        except ImageError as e:
            return _Decoded(content_hash, path, error=str(e))
        except FileNotFoundError:
            return _Decoded(content_hash, path, error="file not found")
        except MemoryError:
            return _Decoded(content_hash, path, error="image too large to decode in memory")
        except Exception as e:  # one bad file never stops a run
            return _Decoded(content_hash, path, error=f"cannot open: {type(e).__name__}: {e}")

    def _read(self, item: _Decoded) -> tuple[str, str, str] | str:
        """(text, squashed text, lines JSON) or the reason reading failed."""
        if item.error is not None:
            return item.error
        try:
            result = self.reader.read(item.image)
        except MemoryError:
            return "out of memory while reading text"
        except Exception as e:
            return f"text reading failed: {type(e).__name__}: {e}"
        finally:
            item.image = None
        lines = [line.as_dict() for line in result.lines]
        return result.text, squash(result.text), json.dumps(lines, ensure_ascii=False, separators=(",", ":"))

    def _commit(self, done: list[tuple[_Decoded, tuple[str, str, str] | str]], summary: TextSummary) -> None:
        with self.catalog.transaction():
            for item, outcome in done:
                if isinstance(outcome, str):
                    self.catalog.record_text_failure(item.content_hash, item.path, outcome)
                    summary.failed += 1
                else:
                    self.catalog.put_text(item.content_hash, self.reader.name, *outcome)
                    summary.read += 1
                    summary.with_text += int(bool(outcome[0].strip()))

    def run(self, progress: Progress | None = None, cancel: threading.Event | None = None) -> TextSummary:
        t0 = time.perf_counter()
        summary = TextSummary()
        self.catalog.prune_texts()
        todo = self.catalog.text_pending()
        total = len(todo)
        if progress:
            progress(STAGE, 0, total)
        n, cancelled = run_batched(
            todo,
            self._decode,
            self._read,
            lambda batch: self._commit(batch, summary),
            prefetch=self.prefetch,
            batch_size=self.batch_size,
            stage=STAGE,
            total=total,
            thread_name="text-decode",
            progress=progress,
            cancel=cancel,
        )
        summary.cancelled = cancelled
        summary.pending = total - n
        summary.seconds = round(time.perf_counter() - t0, 3)
        return summary
