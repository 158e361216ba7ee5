"""Where diagnostics go: a small rotating log file, never the user's terminal.

Warnings from libraries (PIL's "Corrupt EXIF data", onnxruntime hints) and the engine's own notes about
photos the LLM could not check are for a bug report, not for a user reading search results; the shells
call :func:`setup_logging` once so they land in ``$RETLLM_LOG`` or the user log folder. When the log
file cannot be written, they are dropped rather than shown.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path

from platformdirs import user_log_dir

from .config import APP_NAME

ENV_LOG = "RETLLM_LOG"
_HANDLER_NAME = "retllm-file"


def log_path() -> Path:
    env = os.environ.get(ENV_LOG)
    if env:
        return Path(env).expanduser()
    return Path(user_log_dir(APP_NAME, appauthor=False)) / "retllm-desktop.log"


def setup_logging(level: int = logging.INFO) -> Path | None:
    """Send log records and Python warnings to the log file (idempotent); returns its path, or None."""
    root = logging.getLogger()
    if any(h.get_name() == _HANDLER_NAME for h in root.handlers):
        return log_path()
    path: Path | None = log_path()
    handler: logging.Handler
    try:
        path.parent.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=2 * 1024**2, backupCount=2, delay=True)
        handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    except OSError:
        handler, path = logging.NullHandler(), None
    handler.set_name(_HANDLER_NAME)
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > level:
        root.setLevel(level)
    logging.captureWarnings(True)
    return path
