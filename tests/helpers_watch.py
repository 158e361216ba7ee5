"""Shared helpers for the watcher / crash-safety / bad-file / locking tests (not a conftest: not ours)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def make_models(out: Path) -> Path:
    """A models folder holding the tiny synthetic CLIP (0.1 s, deterministic)."""
    from retllm_desktop.devtools.synthetic_clip import write_synthetic_clip

    if not (out / "clip" / "synthetic-tiny" / "clip.json").exists():
        write_synthetic_clip(out, "tiny", check=False)
    return out


def write_photo(path: Path, seed: int, size: tuple[int, int] = (64, 48), fmt: str | None = None) -> Path:
    """A small random JPEG (or ``fmt``) whose content depends only on ``seed``."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(0, 255, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    arr = np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))[:h, :w]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)
    return path


def open_library(lib_dir: Path, models: Path, **kw):
    from retllm_desktop.library import Library

    kw.setdefault("threads", 1)
    kw.setdefault("decode_workers", 1)
    kw.setdefault("batch_size", 4)
    return Library(lib_dir, models_dir=models, **kw)


def tree_digest(root: Path) -> dict[str, tuple[str, int, int]]:
    """path -> (sha256, size, mtime_ns) of every file under ``root`` (symlinks recorded, not followed)."""
    out: dict[str, tuple[str, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if os.path.islink(p):
                out[p] = ("link:" + os.readlink(p), 0, st.st_mtime_ns)
            elif os.path.isfile(p):
                try:
                    with open(p, "rb") as f:
                        out[p] = (hashlib.sha256(f.read()).hexdigest(), st.st_size, st.st_mtime_ns)
                except OSError as e:
                    out[p] = (f"unreadable:{e.errno}", st.st_size, st.st_mtime_ns)
            else:
                out[p] = ("other", 0, st.st_mtime_ns)
    return out


def check_consistent(lib) -> None:
    """Catalog passes integrity_check; the index holds exactly the catalog's vectors, each once, unchanged."""
    assert lib.catalog.integrity_check() == "ok"
    clip = lib.clip
    idx = lib.index
    stored = lib.catalog.embedding_ids(clip.key)
    photo_ids = lib.catalog.photo_ids()
    assert stored == photo_ids, "every photo has exactly one vector"
    assert idx.ids() == stored, "index and catalog hold the same labels (no ghosts, none missing)"
    ids = sorted(stored)
    if ids:
        got = np.asarray(idx._index.get_items(ids, return_type="numpy"), dtype=np.float32)
        want = np.stack([lib.catalog.embedding(i, clip.key) for i in ids])
        assert np.allclose(got, want, atol=1e-5), "index vectors match the catalog's"
        # Searchable exactly once: querying with each photo's own vector finds it, and no label repeats.
        for i in ids[:: max(1, len(ids) // 20)]:
            labels, _ = idx.search(lib.catalog.embedding(i, clip.key), k=len(ids))
            assert i in labels.tolist()
            assert len(set(labels.tolist())) == len(labels)


def run_cli(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "retllm_desktop", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )


def wait_for(pred, timeout: float = 20.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()
