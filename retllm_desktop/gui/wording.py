"""What the app says about missing or broken models, in words for someone who uses photo apps.

The engine's messages are written for the command line (folder layouts, commands to run); the app says
what is wrong and offers File ▸ Set up models…, which explains and downloads.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..library import LibraryStatus
from ..models.clip.towers import list_clip_models

SETUP_LINK = "<a href='setup'>Set up models…</a>"


def clip_installed(status: LibraryStatus) -> bool:
    return bool(list_clip_models(Path(status.models_dir)))


def readable_reason(message: str | None) -> str:
    """An engine message without its command-line advice (`...` commands, "run ..." clauses)."""
    text = re.split(r";\s*(?:run|or)\b|\(no \*/", message or "", maxsplit=1)[0]
    text = re.sub(r"`[^`]*`", "", text)
    return " ".join(text.split()).rstrip(" .;,:")


def clip_banner(status: LibraryStatus) -> tuple[str, str]:
    """(banner HTML, tooltip) when searching cannot work because of the search model."""
    if not clip_installed(status):
        return (
            "<b>No search model is installed yet.</b> Your photos can be searched once it is: "
            f"File ▸ Set up models… downloads one. &nbsp; {SETUP_LINK}",
            "",
        )
    reason = readable_reason(status.clip_error)
    return (
        "<b>The search model could not be loaded.</b> Install it again with File ▸ Set up models…"
        f" &nbsp; {SETUP_LINK}",
        reason,
    )


def clip_status_line(status: LibraryStatus) -> str:
    if not clip_installed(status):
        return "Can't search yet: no search model is installed"
    return "Can't search: the search model could not be loaded"


def llm_problem(status: LibraryStatus) -> str:
    """Why results are not double-checked (one clause; `status.mllm_ready` is False)."""
    if status.mllm_model is not None:  # installed, but its files are broken ("broken: <why>")
        return f"the checking model {status.mllm_model} is {status.mllm_error or 'broken'}"
    return "no checking model is installed"
