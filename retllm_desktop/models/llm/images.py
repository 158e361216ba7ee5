"""Which pixels of a photo the LLM sees (whole photo or centre zoom, downscaled), and their cache name.

How much detail: ``DETAIL_LEVELS`` caps the image tokens mtmd makes of one photo (its
``image_max_tokens``). What each projector does with the cap (llama.cpp's ``tools/mtmd``, as pinned):

* idefics3 (SmolVLM): the photo becomes an overview tile plus a grid of 512-px tiles, 64 tokens each; the
  grid is chosen so the tiles fit the cap (at least one tile), mtmd always adds the overview. On a 1 x 1
  grid that one tile is the overview again (the photo resized to 512 x 512 both times), so the session
  drops it (``single_view``): "quick" = the overview alone, 64 tokens, the layout SmolVLM's own processor
  uses for a photo that fits one tile. Without a cap the grid follows the mmproj's
  ``clip.vision.preproc_image_size`` (up to 4 x 4 tiles + overview, 1088 tokens).
* qwen2.5vl_merger (Qwen2.5-VL): one chunk, the photo resized to at most the cap's pixels (28 px/token).
* gemma3 (896 px, 256 tokens) and mlp (LLaVA-1.5, 336 px, 576 tokens): fixed, the cap changes nothing.

The default is "auto": per projector, the least detail that still shows the photo at the size its
registry entry was sized for. SmolVLM gets "quick" (the whole photo as one 512 x 512 view: 64 tokens
instead of 832, one vision-tower run instead of 13); Qwen2.5-VL gets "standard" (256 tokens: the whole 448-px photo its entry
downscales to, 192 tokens for 4:3; "quick" would squeeze it to about 250 px, a quarter of the pixels the
preset was chosen for); fixed-size projectors get "full" (the cap changes nothing there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

# image-token cap per photo; 0 = the projector's own rule ("full")
DETAIL_LEVELS: dict[str, int] = {"quick": 64, "standard": 256, "full": 0}
AUTO = "auto"
DETAIL_CHOICES: tuple[str, ...] = (AUTO, *DETAIL_LEVELS)  # what a user may choose
# what "auto" means per mmproj ``clip.projector_type`` (llama.cpp's names); others: see resolve_detail
AUTO_DETAIL: dict[str, str] = {
    "idefics3": "quick",
    "qwen2vl_merger": "standard",
    "qwen2.5vl_merger": "standard",
    "qwen3vl_merger": "standard",
    "gemma3": "full",
    "mlp": "full",
    "ldp": "full",
    "ldpv2": "full",
}


def resolve_detail(detail: str, projector: str | None) -> str:
    """The fixed level a chosen detail means for this projector ("auto" depends on it; others do not).

    An unknown projector gets "standard": a moderate cap whatever it does with it (tiles or pixels).
    """
    if detail == AUTO:
        return AUTO_DETAIL.get(projector or "", "standard")
    detail_tokens(detail)  # validates
    return detail


def detail_tokens(detail: str) -> int:
    if detail not in DETAIL_LEVELS:
        raise ValueError(f"detail must be one of {tuple(DETAIL_LEVELS)}, got {detail!r}")
    return DETAIL_LEVELS[detail]


@dataclass(frozen=True)
class ImageRef:
    """One view of one photo: ``content_key`` names the photo's bytes (e.g. the catalog's file hash)."""

    path: Path
    content_key: str
    view: str  # "whole" | "zoom"
    max_side: int
    zoom_fraction: float = 1.0
    max_tokens: int = 0  # mtmd's image-token cap (DETAIL_LEVELS); 0 = none
    single_view: bool = False  # idefics3: a photo that fits one tile is shown once (session.py)

    @property
    def variant(self) -> str:
        """Everything besides the content that changes the pixels fed to the vision encoder."""
        v = f"{self.view}-{self.max_side}"
        if self.view == "zoom":
            v += f"-z{self.zoom_fraction:.3f}"
        if self.max_tokens:
            v += f"-t{self.max_tokens}"
        return v + "-1v" if self.single_view else v


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
