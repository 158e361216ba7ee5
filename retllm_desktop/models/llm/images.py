"""Which pixels of a photo the LLM sees (whole photo or centre zoom, downscaled), and their cache name."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ImageRef:
    """One view of one photo: ``content_key`` names the photo's bytes (e.g. the catalog's file hash)."""

    path: Path
    content_key: str
    view: str  # "whole" | "zoom"
    max_side: int
    zoom_fraction: float = 1.0

    @property
    def variant(self) -> str:
        """Everything besides the content that changes the pixels fed to the vision encoder."""
        v = f"{self.view}-{self.max_side}"
        return v + f"-z{self.zoom_fraction:.3f}" if self.view == "zoom" else v


def prepare_image(ref: ImageRef):  # -> PIL.Image.Image
    """The RGB image for ``ref``: decoded at the size needed, centre-cropped for a zoom, downscaled."""
    from PIL import Image

    from ...imaging import load_rgb

    frac = ref.zoom_fraction if ref.view == "zoom" else 1.0
    img = load_rgb(ref.path, min_side=max(1, int(math.ceil(ref.max_side / frac))))
    if ref.view == "zoom":
        w, h = img.size
        cw, ch = max(1, round(w * frac)), max(1, round(h * frac))
        left, top = (w - cw) // 2, (h - ch) // 2
        img = img.crop((left, top, left + cw, top + ch))
    if max(img.size) > ref.max_side:
        img = img.copy()
        img.thumbnail((ref.max_side, ref.max_side), Image.Resampling.BICUBIC)
    return img.convert("RGB")
