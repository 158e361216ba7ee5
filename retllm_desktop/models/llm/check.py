"""Check an LLM's GGUF files without loading them: header, metadata, tensor extents, mmproj pairing.

An interrupted copy or download leaves a file that starts right but ends early, and llama.cpp only finds
out while loading (or not at all, for some mmproj loaders). Reading the header and the tensor table is
cheap (no tensor data is read), so ``status`` and the search path can say "broken: <why>" up front.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from ...errors import ModelLoadError

# ggml tensor types: (elements per block, bytes per block); unknown types are not size-checked.
_GGML_BLOCKS: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110),
    22: (256, 82), 23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8),
    29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17),
}  # fmt: skip
# GGUF metadata value types -> struct format of a scalar (8 = string, 9 = array)
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_MAX_COUNT = 1 << 31  # a count above this is a damaged header, not a real model


class GGUFError(ModelLoadError):
    pass


@dataclass
class GGUFInfo:
    path: Path
    version: int
    metadata: dict[str, Any]
    n_tensors: int
    data_end: int  # bytes the tensor data needs (the file must be at least this long)
    file_size: int
    tensor_names: list[str] = field(default_factory=list)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))


class _Reader:
    def __init__(self, f: BinaryIO, size: int, name: str):
        self.f, self.size, self.name = f, size, name

    def read(self, n: int) -> bytes:
        b = self.f.read(n)
        if len(b) != n:
            raise GGUFError(f"{self.name} ends inside its header (truncated: {self.size:,} bytes)")
        return b

    def unpack(self, fmt: str) -> Any:
        return struct.unpack("<" + fmt, self.read(struct.calcsize(fmt)))[0]

    def count(self) -> int:
        n = self.unpack("Q")
        if n > _MAX_COUNT:
            raise GGUFError(f"{self.name} has a damaged header (a count of {n})")
        return n

    def string(self, keep: bool = True) -> str:
        n = self.count()
        if not keep:
            self.f.seek(n, os.SEEK_CUR)
            if self.f.tell() > self.size:
                raise GGUFError(f"{self.name} ends inside its header (truncated: {self.size:,} bytes)")
            return ""
        return self.read(n).decode("utf-8", errors="replace")

    def value(self, vtype: int, keep: bool = True) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == 8:
            return self.string(keep)
        if vtype == 9:
            etype, n = self.unpack("I"), self.count()
            if etype in _SCALARS:  # skip fixed-size arrays in one seek
                width = struct.calcsize(_SCALARS[etype])
                if n <= 16 and keep:
                    return [self.unpack(_SCALARS[etype]) for _ in range(n)]
                self.f.seek(n * width, os.SEEK_CUR)
                if self.f.tell() > self.size:
                    raise GGUFError(f"{self.name} ends inside its header (truncated: {self.size:,} bytes)")
                return None
            for _ in range(n):
                self.value(etype, keep=False)
            return None
        raise GGUFError(f"{self.name} has a damaged header (unknown value type {vtype})")


def read_gguf(path: str | os.PathLike[str], what: str = "model file") -> GGUFInfo:
    """Parse the header and tensor table of ``path``; raise :class:`GGUFError` saying what is wrong."""
    p = Path(path)
    name = f"the {what} {p.name}"
    try:
        size = p.stat().st_size
        f = open(p, "rb")
    except OSError as e:
        raise GGUFError(f"cannot read {name}: {e.strerror or e}") from e
    with f:
        r = _Reader(f, size, name)
        if size < 24 or f.read(4) != b"GGUF":
            raise GGUFError(f"{name} is not a GGUF file (corrupt or incomplete copy?)")
        version = r.unpack("I")
        if version not in (2, 3):
            raise GGUFError(f"{name} has an unsupported GGUF version {version}")
        n_tensors, n_kv = r.count(), r.count()
        meta: dict[str, Any] = {}
        for _ in range(n_kv):
            key = r.string()
            vtype = r.unpack("I")
            meta[key] = r.value(vtype, keep=not key.startswith("tokenizer.ggml."))
        names: list[str] = []
        end = 0
        for _ in range(n_tensors):
            tname = r.string()
            n_dims = r.unpack("I")
            if n_dims > 8:
                raise GGUFError(f"{name} has a damaged tensor table ({tname!r} with {n_dims} dimensions)")
            n_elem = 1
            for _ in range(n_dims):
                n_elem *= r.unpack("Q")
            ttype, offset = r.unpack("I"), r.unpack("Q")
            block = _GGML_BLOCKS.get(ttype)
            nbytes = (n_elem // block[0]) * block[1] if block else 1
            end = max(end, offset + nbytes)
            names.append(tname)
        align = int(meta.get("general.alignment", 32) or 32)
        data_start = -(-f.tell() // align) * align
    info = GGUFInfo(p, version, meta, n_tensors, data_start + end, size, names)
    if size < info.data_end:
        raise GGUFError(
            f"{name} is truncated: {size:,} bytes of the {info.data_end:,} its tensors need "
            "(an interrupted copy or download?)"
        )
    return info


def check_mllm_files(model_path: str | os.PathLike[str], mmproj_path: str | os.PathLike[str]) -> None:
    """Raise :class:`GGUFError` when the text model or its mmproj is damaged or they do not belong together."""
    text = read_gguf(model_path, "text model")
    vision = read_gguf(mmproj_path, "mmproj file")
    if text.architecture == "clip":
        raise GGUFError(f"{Path(model_path).name} is a vision projector (mmproj), not the text model")
    if vision.architecture != "clip":
        raise GGUFError(
            f"{Path(mmproj_path).name} is not a vision projector (architecture {vision.architecture!r})"
        )
    if vision.metadata.get("clip.has_vision_encoder") is False:
        raise GGUFError(f"{Path(mmproj_path).name} has no vision encoder")
    n_embd = text.metadata.get(f"{text.architecture}.embedding_length")
    proj = vision.metadata.get("clip.vision.projection_dim")
    if isinstance(n_embd, int) and isinstance(proj, int) and n_embd != proj:
        raise GGUFError(
            f"{Path(mmproj_path).name} does not belong to {Path(model_path).name}: it projects images to "
            f"{proj} dimensions, the text model works in {n_embd}"
        )


def projector_type(mmproj_path: str | os.PathLike[str]) -> str | None:
    """The mmproj's ``clip.projector_type`` (llama.cpp's name for it), None when it is not readable.

    Only the header is read. A damaged file is reported when the session loads it, not here.
    """
    try:
        meta = read_gguf(mmproj_path, "mmproj file").metadata
    except (GGUFError, OSError):
        return None
    value = meta.get("clip.projector_type") or meta.get("clip.vision.projector_type")
    return str(value) if value else None
