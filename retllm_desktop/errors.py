"""Exceptions the shells turn into one-line messages (CLI) or dialogs (GUI)."""

from __future__ import annotations


def first_line(e: object) -> str:
    """The first line of an error's message (its type's name when it has none), for a one-line notice."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class RetllmError(Exception):
    """Base class: a problem the user can act on; ``str(err)`` is the message to show."""


class ModelNotFoundError(RetllmError):
    """A required model file is missing or unreadable."""


class ModelLoadError(RetllmError):
    """A model file exists but could not be loaded (corrupt, wrong format)."""


class ImageError(RetllmError):
    """A photo could not be read or decoded."""


class LibraryLockedError(RetllmError):
    """Another process is writing to this library."""


class CancelledError(RetllmError):
    """Long work was cancelled by the user."""


class QueryError(RetllmError):
    """The query is empty or refers to something that does not exist."""


class PromptTooLongError(RetllmError):
    """A prompt (query text + images) needs more positions than the LLM's context holds."""

    def __init__(self, needed: int, capacity: int):
        super().__init__(f"The prompt needs {needed} positions but the context holds {capacity}.")
        self.needed, self.capacity = int(needed), int(capacity)
