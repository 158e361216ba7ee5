"""Switching the coarse (CLIP) model on an existing library: room on disk first, progress in words.

Embeddings are stored per model (``models.clip.identity``), so a switch never touches the old vectors:
search keeps using the old model until the new one covers every photo, then uses the new one (the choice
is made per search in ``IndexKeeper.search_models``). The new vectors are written by the normal, resumable
``index`` path; this module only answers the two questions around it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import RetllmError

BYTES_PER_ROW = 120  # catalog row, rowid and index entry overhead beyond the vector itself
INDEX_COPIES = 2  # the catalog's vector and the saved vector index (written atomically: old + new)
MARGIN = 64 * 1024 * 1024  # never fill the disk to the last byte (SQLite's journal, backups)


class NotEnoughSpaceError(RetllmError):
    """Embedding the library with another model would not fit on the disk; nothing was started."""


def space_needed(photos: int, embed_dim: int) -> int:
    """Bytes the vectors of ``photos`` photos of a ``embed_dim``-wide model take (catalog + index), with margin."""
    per_photo = embed_dim * 4 * INDEX_COPIES + BYTES_PER_ROW
    return photos * per_photo + MARGIN


def check_space(library_dir: Path, photos: int, embed_dim: int, model_name: str) -> None:
    """Raise :class:`NotEnoughSpaceError` before embedding ``photos`` photos when the library's disk is too full."""
    if photos <= 0:
        return
    need = space_needed(photos, embed_dim)
    free = shutil.disk_usage(library_dir).free
    if free < need:
        raise NotEnoughSpaceError(
            f"not enough free disk space to search with {model_name}: its vectors for {photos} photos need "
            f"about {_mb(need)} MB, {_mb(free)} MB are free on the library's disk; free some space and run "
            "the indexing again (search keeps working with the current model meanwhile)"
        )


def _mb(n: int) -> int:
    return max(1, round(n / 1e6))


@dataclass(frozen=True)
class SwitchProgress:
    """How far a switch to ``target`` is: ``done`` of ``total`` photos have its vectors."""

    target: str
    current: str
    done: int
    total: int

    @property
    def pending(self) -> bool:
        return self.target != self.current

    def describe(self) -> str:
        pct = 100 * self.done // max(self.total, 1)
        return (
            f"switching the search model to {self.target}: {self.done} of {self.total} photos ready ({pct}%); "
            f"search uses {self.current} until all are (run `retllm-desktop index` to continue)"
        )


def switch_progress(target: str, current: str, embedded: int, photos: int) -> SwitchProgress:
    return SwitchProgress(target, current, min(embedded, photos), photos)


__all__ = ["NotEnoughSpaceError", "SwitchProgress", "check_space", "space_needed", "switch_progress"]
