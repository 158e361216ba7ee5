"""What the window says while photos are being added, so no label contradicts the work in progress.

While the first index runs, the catalog's last status still says "no folders, 0 photos": the Folders list,
the photo count, the empty grid and the status bar would all tell a newcomer that nothing is happening.
:class:`IndexState` remembers what the running index is doing (from its progress signals) and words it
for each of those places; when the index ends, the fresh status takes over again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

STAGE_WORDS = {
    "scanning": "Looking for photos",
    "hashing": "Checking files",
    "embedding": "Adding",
    "places": "Finding places",
    "reading text": "Reading the words in photos",
    "finding faces": "Finding faces",
    "updating faces": "Updating the faces found before",
}


def folder_name(path: str) -> str:
    return os.path.basename(path.rstrip(os.sep)) or path


@dataclass
class IndexState:
    running: bool = False
    adding: list[str] = field(default_factory=list)  # folders this run adds (not in the status yet)
    stage: str = ""
    done: int = 0
    total: int = 0

    def start(self) -> None:
        self.running, self.stage, self.done, self.total = True, "scanning", 0, 0

    def queue(self, paths: list[str]) -> None:
        """Folders this run or a queued one adds (listed at once, before the catalog knows them)."""
        self.adding += [str(p) for p in paths if str(p) not in self.adding]

    def progress(self, stage: str, done: int, total: int) -> None:
        self.stage, self.done, self.total = stage, done, total

    def finish(self, still_queued: list[str]) -> None:
        self.running = False
        self.adding = [p for p in self.adding if p in still_queued]
        self.stage, self.done, self.total = "", 0, 0

    def pending_folders(self, known: list[str]) -> list[str]:
        """Folders being added that the status does not list yet."""
        have = {os.path.normpath(p) for p in known}
        return [p for p in self.adding if os.path.normpath(p) not in have]

    def activity(self) -> str:
        """One line: "Adding 12 of 40 photos…", "Looking for photos… 30 found"."""
        words = STAGE_WORDS.get(self.stage, self.stage.capitalize() or "Adding photos")
        if self.stage == "embedding":
            if self.total:
                return f"Adding {self.done:,} of {self.total:,} photos…"
            return "Adding photos…"
        if self.total:
            return f"{words}: {self.done:,} of {self.total:,}…"
        if self.stage == "scanning" and self.done:
            return f"{words}… {self.done:,} found"
        return f"{words}…"

    def count_text(self, photos: int) -> str:
        """The photo count while indexing: what is in the library now and what is being added."""
        if self.stage == "embedding" and self.total:
            if not photos:  # the first photos of the library: never "0 photos" while they are added
                return f"{self.done:,} of {self.total:,} photos added"
            return f"{photos:,} photos · adding {self.total - self.done:,} more"
        if not photos:
            return "adding photos…"
        return f"{photos:,} photo{'s' if photos != 1 else ''} · adding…"

    def empty_html(self) -> str:
        return (
            f"<h2>Adding your photos</h2>{self.activity()}<br>"
            "They appear here as they are added, and can be searched right away."
        )
