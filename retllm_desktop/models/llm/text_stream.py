"""The model's output bytes as clean text for a person: no U+FFFD, no control characters.

A token is a few bytes, not a character: one emoji or accented letter may span two tokens, and a small or
confused model can emit bytes that are no UTF-8 at all (or the replacement character itself as text). The
stream decodes incrementally (a character split across tokens waits for its last byte) and drops what is
not text, so "Why this photo?" never shows "�" boxes.
"""

from __future__ import annotations

import codecs
import unicodedata

REPLACEMENT = "\ufffd"


def _keep(ch: str) -> bool:
    if ch == "\n":
        return True  # the caller stops at the first line break
    if ch == REPLACEMENT:
        return False
    return unicodedata.category(ch) not in ("Cc", "Cs", "Co", "Cn")


class Utf8Stream:
    """Feed the bytes of each generated token; get the new, clean text (maybe "") back."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")

    def feed(self, data: bytes) -> str:
        return self._clean(self._decoder.decode(data))

    def finish(self) -> str:
        """Whatever is left at the end: an unfinished character is dropped, not shown as a box."""
        return self._clean(self._decoder.decode(b"", final=True))

    @staticmethod
    def _clean(text: str) -> str:
        text = text.replace("\t", " ").replace("\r\n", "\n").replace("\r", "\n")
        return "".join(ch for ch in text if _keep(ch))
