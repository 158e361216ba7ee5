"""Generated bursts and distinct scenes from real photographs, to measure near-duplicate folding.

A *burst* is what a camera does in one second: the same scene shifted by a few pixels, re-exposed,
slightly cropped or zoomed, recompressed. *Distinct scenes* are different photographs, and different
non-overlapping parts of one photograph (a harder negative: same light, same camera, same colours).

The real photographs come from scikit-image's ``skimage/data`` (bundled with the wheel, no download);
without scikit-image, Pillow-drawn scenes from :mod:`demo_photos` stand in.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

# Colour and grey photographs in skimage/data (names as in the wheel); small or synthetic ones left out.
SKIMAGE_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "camera.png",
    "coins.png",
    "moon.png",
    "page.png",
    "text.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "ihc.png",
    "horse.png",
    "cell.png",
)


@dataclass(frozen=True)
class Shot:
    scene: str  # the scene this shot shows: shots of one scene form a burst
    variant: str  # how it was made ("base", "shift", "exposure", "crop", …)
    image: Image.Image


def real_photos() -> list[tuple[str, Image.Image]]:
    """(name, RGB image) for each bundled scikit-image photograph that exists; [] without scikit-image."""
    try:
        import skimage
    except ImportError:
        return []
    data = Path(skimage.__file__).parent / "data"
    out = []
    for name in SKIMAGE_PHOTOS:
        path = data / name
        if path.exists():
            with Image.open(path) as img:
                out.append((path.stem, img.convert("RGB")))
    return out


def scenes(min_side: int = 256) -> Iterator[tuple[str, Image.Image]]:
    """Distinct scenes: each photograph, and the two halves of the larger ones as scenes of their own."""
    for name, img in real_photos():
        w, h = img.size
        yield name, img
        if min(w, h) >= 2 * min_side or max(w, h) >= 2 * min_side:
            if w >= h:
                yield f"{name}-left", img.crop((0, 0, w // 2, h))
                yield f"{name}-right", img.crop((w - w // 2, 0, w, h))
            else:
                yield f"{name}-top", img.crop((0, 0, w, h // 2))
                yield f"{name}-bottom", img.crop((0, h - h // 2, w, h))


def burst(img: Image.Image, rng: np.random.Generator, n: int = 6) -> list[tuple[str, Image.Image]]:
    """``n`` shots of one scene as a camera's burst mode takes them (the first one is the scene as is)."""
    w, h = img.size
    out = [("base", img)]
    kinds = ["shift", "exposure", "crop", "zoom", "shift+exposure", "recompress"]
    for i in range(n - 1):
        kind = kinds[i % len(kinds)]
        shot = img
        if "shift" in kind:  # camera moved a little: up to 4 % of the frame
            dx, dy = (int(rng.integers(-1, 2) * rng.uniform(0.01, 0.04) * s) for s in (w, h))
            shot = shot.crop((max(dx, 0), max(dy, 0), w + min(dx, 0), h + min(dy, 0)))
        if "exposure" in kind:  # auto-exposure changed: ±1/3 to ±2/3 EV
            shot = ImageEnhance.Brightness(shot).enhance(float(rng.choice([0.65, 0.8, 1.25, 1.5])))
        if kind == "crop":  # a tighter framing: 85-95 % of the frame
            f = rng.uniform(0.85, 0.95)
            cw, ch = int(w * f), int(h * f)
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            shot = shot.crop((x0, y0, x0 + cw, y0 + ch))
        if kind == "zoom":  # zoomed in on the centre by 5-10 %, same output size
            f = rng.uniform(0.90, 0.95)
            cw, ch = int(w * f), int(h * f)
            shot = shot.crop(((w - cw) // 2, (h - ch) // 2, (w + cw) // 2, (h + ch) // 2)).resize((w, h))
        if kind == "recompress":  # a different JPEG quality, a little sensor noise
            arr = np.asarray(shot, dtype=np.float32) + rng.normal(0, 4, size=(h, w, 3))
            shot = Image.fromarray(arr.clip(0, 255).astype(np.uint8))
        out.append((kind, shot))
    return out


def shot_set(seed: int = 0, burst_size: int = 6, min_side: int = 256) -> list[Shot]:
    """One burst per distinct scene (the scenes themselves being the distinct-scene negatives)."""
    rng = np.random.default_rng(seed)
    shots: list[Shot] = []
    for name, img in scenes(min_side):
        for variant, image in burst(img, rng, burst_size):
            shots.append(Shot(name, variant, image))
    return shots
