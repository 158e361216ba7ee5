"""A CLIP model's identity is its content, not its folder name.

Embeddings are stored under a key ``<name>#<fingerprint>``: the fingerprint covers the embedding size, the
input size and, for both ONNX towers, the file size and sampled bytes. A different model copied under an
old name (another export, another size) therefore gets its own embeddings instead of being mixed with the
old vectors (which stay until the new model has embedded every photo, as with a model switch).
Computing it reads ~1 MB per tower, never the whole file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_SAMPLES = 16  # positions sampled across each file
_CHUNK = 64 * 1024
KEY_SEPARATOR = "#"


def _file_digest(h: hashlib._Hash, path: Path) -> None:
    size = path.stat().st_size
    h.update(f"{path.name}|{size}|".encode())
    with open(path, "rb") as f:
        if size <= _SAMPLES * _CHUNK:
            h.update(f.read())
            return
        step = (size - _CHUNK) // (_SAMPLES - 1)
        for i in range(_SAMPLES):
            f.seek(i * step)
            h.update(f.read(_CHUNK))


def clip_fingerprint(image_path: Path, text_path: Path, embed_dim: int, image_size: int) -> str:
    """12 hex digits identifying what a CLIP model computes (see the module docstring)."""
    h = hashlib.blake2b(digest_size=6)
    h.update(f"dim={embed_dim}|size={image_size}|".encode())
    for p in (image_path, text_path):
        _file_digest(h, Path(p))
        data = Path(str(p) + ".data")  # ONNX external weights
        if data.is_file():
            _file_digest(h, data)
    return h.hexdigest()


def embedding_key(name: str, fingerprint: str) -> str:
    return f"{name}{KEY_SEPARATOR}{fingerprint}"


def display_name(key: str) -> str:
    """The model's name as the user knows it (a stored key without its fingerprint)."""
    return key.split(KEY_SEPARATOR, 1)[0]


def is_legacy_key(key: str) -> bool:
    """Embeddings written before keys had fingerprints (a plain model name)."""
    return KEY_SEPARATOR not in key


__all__ = ["clip_fingerprint", "display_name", "embedding_key", "is_legacy_key"]
