"""Where things live: library folder, models folder, resources, with env overrides.

Precedence for every path: explicit argument > environment variable > checkout/user default.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from platformdirs import user_cache_dir, user_config_dir, user_data_dir

APP_NAME = "retllm-desktop"
ENV_LIBRARY = "RETLLM_LIBRARY"
ENV_MODELS = "RETLLM_MODELS"

_PACKAGE_DIR = Path(__file__).resolve().parent
_CHECKOUT_DIR = _PACKAGE_DIR.parent


def resources_dir() -> Path:
    """The shipped data files (prompts, registry, tokenizer vocab).

    A checkout or editable install has them beside the package; a wheel install puts them
    under ``<prefix>/share/retllm-desktop/resources``.
    """
    candidates = [_CHECKOUT_DIR / "resources", Path(sys.prefix) / "share" / APP_NAME / "resources"]
    for c in candidates:
        if c.is_dir():
            return c
    return candidates[0]


def resource_path(name: str) -> Path:
    return resources_dir() / name


def default_library_dir() -> Path:
    return Path(user_data_dir(APP_NAME, appauthor=False)) / "library"


def library_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_LIBRARY)
    if env:
        return Path(env).expanduser()
    return default_library_dir()


def user_models_dir() -> Path:
    return Path(user_data_dir(APP_NAME, appauthor=False)) / "models"


def models_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Models folder: ``--models`` > ``RETLLM_MODELS`` > ``models/`` of a checkout (if it holds models) > user dir."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get(ENV_MODELS)
    if env:
        return Path(env).expanduser()
    checkout = _CHECKOUT_DIR / "models"
    if checkout.is_dir() and any(p.is_dir() for p in checkout.iterdir()):
        return checkout
    return user_models_dir()


# The engine's tunable sizes: the one default of each (Library's keyword arguments and the app's Settings).
MLLM_CACHE_BYTES = 2 * 1024**3  # image embeddings of checked photos, per library (disk LRU)
MLLM_KV_CACHE_BYTES = 2 * 1024**3  # the LLM's state after each checked photo (several MB per photo)
LLM_DETAIL = "auto"  # photo detail the LLM sees: auto | quick | standard | full (models/llm/images.py)
PREPARE_IDLE_SECONDS = 60.0  # the app starts the prepare pass after this long without searches or indexing
PREPARE_BUDGET_BYTES = 2 * 1024**3  # disk for photos prepared ahead for the LLM (the prepare pass)
LLM_N_CTX = 4096  # the LLM's context window in tokens: image tokens + prompt + answer (+ a second look)
THUMB_MEMORY_ITEMS = 2500  # thumbnails the app keeps decoded in memory


def config_dir() -> Path:
    return Path(user_config_dir(APP_NAME, appauthor=False))


def cache_dir() -> Path:
    return Path(user_cache_dir(APP_NAME, appauthor=False))


def default_threads() -> int:
    return max(1, os.cpu_count() or 1)


def max_threads() -> int:
    """The most CPU threads a model may be given: more only thrash (and each costs memory in llama.cpp)."""
    return max(8, 4 * (os.cpu_count() or 1))
