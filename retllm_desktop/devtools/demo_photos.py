"""A generated photo set with visible content for demos, screenshots and GUI tests.

    python -m retllm_desktop.devtools.demo_photos OUT [-n 24]

Each photo is a simple coloured scene (a red car on a road, a blue sky with clouds, a green forest, a
sunset over the sea, a snowy mountain, a yellow flower, shapes...) with its label written on it, saved
as JPEG with EXIF capture dates spread over several years (so date filters do something) and a camera
make/model. Only Pillow is needed; the same ``seed`` always gives the same files.
"""

from __future__ import annotations

import argparse
import random
import sys
from datetime import datetime, timedelta
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

_TAG_MAKE, _TAG_MODEL, _TAG_DATETIME = 0x010F, 0x0110, 0x0132
_IFD_EXIF, _TAG_DATETIME_ORIGINAL = 0x8769, 0x9003


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _sky(d: ImageDraw.ImageDraw, w: int, h: int, top: tuple, bottom: tuple, until: float = 1.0) -> None:
    n = int(h * until)
    for y in range(n):
        t = y / max(n - 1, 1)
        d.line([(0, y), (w, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))


def _cloud(d: ImageDraw.ImageDraw, x: int, y: int, s: int) -> None:
    for dx, dy, r in ((0, 0, s), (s, -s // 2, int(s * 1.2)), (2 * s, 0, s), (s, s // 3, s)):
        d.ellipse([x + dx - r, y + dy - r, x + dx + r, y + dy + r], fill=(250, 250, 255))


def _red_car(d, w, h, rnd):
    _sky(d, w, h, (120, 180, 240), (200, 225, 250), 0.6)
    d.rectangle([0, int(h * 0.6), w, h], fill=(70, 70, 75))
    d.rectangle([0, int(h * 0.78), w, int(h * 0.8)], fill=(230, 230, 230))
    x, y = int(w * rnd.uniform(0.15, 0.3)), int(h * 0.5)
    d.rounded_rectangle([x, y, x + int(w * 0.5), y + int(h * 0.18)], 18, fill=(210, 25, 30))
    d.rounded_rectangle(
        [x + int(w * 0.1), y - int(h * 0.12), x + int(w * 0.38), y + 4], 16, fill=(200, 20, 25)
    )
    d.rectangle([x + int(w * 0.13), y - int(h * 0.09), x + int(w * 0.35), y - 6], fill=(170, 210, 235))
    for cx in (x + int(w * 0.1), x + int(w * 0.4)):
        r = int(h * 0.07)
        d.ellipse([cx - r, y + int(h * 0.18) - r, cx + r, y + int(h * 0.18) + r], fill=(20, 20, 20))


def _blue_sky(d, w, h, rnd):
    _sky(d, w, h, (40, 110, 230), (150, 200, 255))
    for _ in range(rnd.randint(2, 4)):
        _cloud(d, rnd.randint(0, w - 120), rnd.randint(40, int(h * 0.7)), rnd.randint(25, 45))


def _green_forest(d, w, h, rnd):
    _sky(d, w, h, (170, 215, 190), (210, 235, 210), 0.5)
    d.rectangle([0, int(h * 0.5), w, h], fill=(40, 100, 40))
    for _ in range(14):
        x, base = rnd.randint(-20, w), rnd.randint(int(h * 0.55), h)
        s = rnd.randint(40, 90)
        d.rectangle([x - 6, base - s // 3, x + 6, base], fill=(90, 60, 30))
        d.polygon(
            [(x, base - 2 * s), (x - s // 2, base - s // 3), (x + s // 2, base - s // 3)],
            fill=(20, 120 + rnd.randint(0, 60), 30),
        )


def _sunset_beach(d, w, h, rnd):
    _sky(d, w, h, (250, 120, 60), (255, 200, 120), 0.6)
    r = int(h * 0.12)
    cx, cy = int(w * rnd.uniform(0.3, 0.7)), int(h * 0.55)
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(255, 230, 90))
    d.rectangle([0, int(h * 0.6), w, int(h * 0.8)], fill=(40, 90, 160))
    d.rectangle([0, int(h * 0.8), w, h], fill=(235, 210, 150))


def _snowy_mountain(d, w, h, rnd):
    _sky(d, w, h, (100, 150, 220), (220, 235, 250))
    peak = int(w * rnd.uniform(0.35, 0.65))
    d.polygon([(peak, int(h * 0.15)), (-50, h), (w + 50, h)], fill=(110, 110, 130))
    d.polygon(
        [(peak, int(h * 0.15)), (peak - 70, int(h * 0.38)), (peak + 70, int(h * 0.38))], fill=(250, 250, 255)
    )
    d.rectangle([0, int(h * 0.85), w, h], fill=(240, 245, 255))


def _yellow_flower(d, w, h, rnd):
    d.rectangle([0, 0, w, h], fill=(60, 140, 60))
    cx, cy, r = w // 2 + rnd.randint(-40, 40), h // 2, int(h * 0.12)
    d.line([(cx, cy), (cx, h)], fill=(30, 90, 30), width=10)
    for i in range(8):
        import math

        a = i * math.pi / 4
        px, py = cx + int(math.cos(a) * r * 1.4), cy + int(math.sin(a) * r * 1.4)
        d.ellipse([px - r, py - r, px + r, py + r], fill=(255, 220, 30))
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(150, 80, 20))


def _purple_shapes(d, w, h, rnd):
    d.rectangle([0, 0, w, h], fill=(235, 230, 245))
    for _ in range(6):
        x, y, s = rnd.randint(0, w - 80), rnd.randint(0, h - 80), rnd.randint(40, 110)
        colour = (120 + rnd.randint(0, 60), 40, 160 + rnd.randint(0, 60))
        if rnd.random() < 0.5:
            d.ellipse([x, y, x + s, y + s], fill=colour)
        else:
            d.rectangle([x, y, x + s, y + s], fill=colour)


def _night_city(d, w, h, rnd):
    _sky(d, w, h, (10, 10, 40), (40, 30, 80))
    for x in range(0, w, 60):
        bh = rnd.randint(int(h * 0.3), int(h * 0.8))
        d.rectangle([x, h - bh, x + 50, h], fill=(30, 30, 45))
        for wy in range(h - bh + 10, h - 10, 22):
            for wx in (x + 8, x + 28):
                if rnd.random() < 0.6:
                    d.rectangle([wx, wy, wx + 12, wy + 12], fill=(255, 220, 120))


SCENES = {
    "red car": _red_car,
    "blue sky": _blue_sky,
    "green forest": _green_forest,
    "sunset beach": _sunset_beach,
    "snowy mountain": _snowy_mountain,
    "yellow flower": _yellow_flower,
    "purple shapes": _purple_shapes,
    "city at night": _night_city,
}

CAMERAS = (
    ("Canon", "EOS R6"),
    ("NIKON CORPORATION", "NIKON Z 6"),
    ("Apple", "iPhone 13"),
    ("FUJIFILM", "X-T4"),
)


def write_demo_photos(
    out_dir: str | Path, n: int = 24, size: tuple[int, int] = (640, 480), seed: int = 0
) -> list[Path]:
    """Write ``n`` labelled scene photos (cycling through :data:`SCENES`) into ``out_dir``; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(seed)
    names = list(SCENES)
    start = datetime(2019, 3, 1, 9, 30)
    font = _font(max(18, size[1] // 12))
    paths: list[Path] = []
    for i in range(n):
        label = names[i % len(names)]
        w, h = size
        img = Image.new("RGB", (w, h))
        d = ImageDraw.Draw(img)
        SCENES[label](d, w, h, rnd)
        # The label, on a translucent band so it is readable on any scene.
        band = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        bd = ImageDraw.Draw(band)
        bd.rectangle([0, h - h // 7, w, h], fill=(0, 0, 0, 130))
        img = Image.alpha_composite(img.convert("RGBA"), band).convert("RGB")
        d = ImageDraw.Draw(img)
        d.text((16, h - h // 7 + 8), f"{label}  #{i + 1}", fill=(255, 255, 255), font=font)
        taken = start + timedelta(days=i * 53 + rnd.randint(0, 20), minutes=rnd.randint(0, 600))
        make, model = CAMERAS[i % len(CAMERAS)]
        exif = Image.Exif()
        exif[_TAG_MAKE] = make
        exif[_TAG_MODEL] = model
        exif[_TAG_DATETIME] = taken.strftime("%Y:%m:%d %H:%M:%S")
        exif.get_ifd(_IFD_EXIF)[_TAG_DATETIME_ORIGINAL] = taken.strftime("%Y:%m:%d %H:%M:%S")
        path = out / f"{i + 1:03d}-{label.replace(' ', '-')}.jpg"
        img.save(path, "JPEG", quality=88, exif=exif.tobytes())
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m retllm_desktop.devtools.demo_photos", description=__doc__)
    p.add_argument("out", type=Path)
    p.add_argument("-n", type=int, default=24, help="number of photos (default 24)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    paths = write_demo_photos(args.out, n=args.n, seed=args.seed)
    print(f"wrote {len(paths)} photos to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
