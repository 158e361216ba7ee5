"""Decoding, orientation, metadata and guards of the one module that reads photo bytes."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retllm_desktop import imaging
from retllm_desktop.errors import ImageError

from .conftest import make_photo


@pytest.mark.parametrize(
    "name,fmt",
    [
        ("a.jpg", "JPEG"),
        ("a.png", "PNG"),
        ("a.webp", "WEBP"),
        ("a.bmp", "BMP"),
        ("a.tiff", "TIFF"),
        ("a.gif", "GIF"),
    ],
)
def test_common_formats_decode_to_rgb(tmp_path: Path, name: str, fmt: str) -> None:
    p = make_photo(tmp_path / name, seed=1, size=(64, 48), fmt=fmt)
    img = imaging.load_rgb(p)
    assert img.mode == "RGB" and img.size == (64, 48)
    meta = imaging.read_metadata(p)
    assert (meta.width, meta.height, meta.format) == (64, 48, fmt)


def test_heic_decodes(tmp_path: Path) -> None:
    import pillow_heif

    src = Image.new("RGB", (64, 32), (200, 30, 30))
    p = tmp_path / "x.heic"
    pillow_heif.from_pillow(src).save(str(p), quality=90)
    img = imaging.load_rgb(p)
    assert img.size == (64, 32)
    r, g, b = np.asarray(img).reshape(-1, 3).mean(axis=0)
    assert r > 150 and g < 80 and b < 80


def test_animated_gif_gives_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (20, 20), c) for c in [(255, 0, 0), (0, 0, 255)]]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0)
    px = np.asarray(imaging.load_rgb(p))[10, 10]
    assert px[0] > 200 and px[2] < 50


def _exif_jpeg(path: Path, orientation: int = 1, **tags) -> Path:
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 10, 10))  # white square top-left of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = tags.get("make", "Canon")
    exif[0x0110] = tags.get("model", "EOS 5D")
    exif.get_ifd(0x8769)[0x9003] = tags.get("taken", "2021:07:14 18:30:05")
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (48.0, 51.0, 29.6), "W", (2.0, 17.0, 40.2)
    img.save(path, exif=exif)
    return path


def test_exif_metadata(tmp_path: Path) -> None:
    meta = imaging.read_metadata(_exif_jpeg(tmp_path / "e.jpg"))
    assert meta.taken_at == "2021-07-14T18:30:05"
    assert (meta.camera_make, meta.camera_model) == ("Canon", "EOS 5D")
    assert meta.gps_lat == pytest.approx(48.858222, abs=1e-5)
    assert meta.gps_lon == pytest.approx(-2.294500, abs=1e-5)


def test_exif_orientation_applied(tmp_path: Path) -> None:
    p = _exif_jpeg(tmp_path / "r.jpg", orientation=6)  # rotate 90° clockwise to display
    meta = imaging.read_metadata(p)
    assert (meta.width, meta.height, meta.orientation) == (20, 40, 6)
    img = np.asarray(imaging.load_rgb(p)).mean(axis=2)
    assert img.shape == (40, 20)
    # Stored top-left white square ends up top-right after a clockwise rotation.
    assert img[:10, 10:].mean() > 200 and img[:10, :10].mean() < 60


def test_draft_decode_keeps_enough_pixels(tmp_path: Path) -> None:
    p = make_photo(tmp_path / "big.jpg", seed=3, size=(2000, 1500))
    img = imaging.load_rgb(p, min_side=224)
    assert min(img.size) >= 224 and img.size[0] < 2000


@pytest.mark.parametrize("mode", ["I;16", "CMYK", "LA", "P"])
def test_unusual_modes_convert(tmp_path: Path, mode: str) -> None:
    if mode == "I;16":
        img = Image.fromarray(np.arange(64 * 32, dtype=np.uint16).reshape(32, 64) * 30).convert("I;16")
        p = tmp_path / "x16.png"
    elif mode == "CMYK":
        img = Image.new("CMYK", (64, 32), (0, 255, 255, 0))
        p = tmp_path / "cmyk.jpg"
    elif mode == "LA":
        img = Image.new("LA", (64, 32), (100, 0))  # fully transparent → composited on white
        p = tmp_path / "la.png"
    else:
        img = Image.new("P", (64, 32), 0)
        img.info["transparency"] = 0
        p = tmp_path / "p.png"
    img.save(p)
    out = imaging.load_rgb(p)
    assert out.mode == "RGB" and out.size == (64, 32)
    if mode == "CMYK":
        assert np.asarray(out)[0, 0, 0] > 200  # cyan-free + magenta + yellow = red
    if mode == "LA":
        assert np.asarray(out).min() == 255


def test_bad_inputs_raise_clear_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "text.png"
    text.write_text("hello")
    truncated = make_photo(tmp_path / "t.jpg", seed=2, size=(400, 300))
    truncated.write_bytes(truncated.read_bytes()[:300])
    with pytest.raises(ImageError, match="empty"):
        imaging.load_rgb(empty)
    with pytest.raises(ImageError, match="not a recognised image"):
        imaging.load_rgb(text)
    with pytest.raises(ImageError):
        imaging.load_rgb(truncated)
    with pytest.raises(ImageError, match="cannot read"):
        imaging.load_rgb(tmp_path / "missing.jpg")


def test_decompression_bomb_guard(tmp_path: Path) -> None:
    # A 40 kB BMP header claiming 30000 x 30000 pixels: refused before any decode.
    w = h = 30000
    header = b"BM" + struct.pack("<IHHI", 54, 0, 0, 54)
    header += struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, 0, 2835, 2835, 0, 0)
    p = tmp_path / "bomb.bmp"
    p.write_bytes(header + b"\0" * 40000)
    with pytest.raises(ImageError, match="too large"):
        imaging.load_rgb(p)


def test_photos_are_opened_read_only(tmp_path: Path) -> None:
    p = make_photo(tmp_path / "ro.jpg", seed=4)
    p.chmod(0o444)
    before = p.read_bytes()
    imaging.load_rgb(p)
    imaging.read_metadata(p)
    imaging.file_hash(p)
    assert p.read_bytes() == before


def test_thumbnail_longest_side(tmp_path: Path) -> None:
    p = make_photo(tmp_path / "th.jpg", seed=5, size=(800, 400))
    assert imaging.thumbnail(p, 128).size == (128, 64)


def test_file_hash_is_content_based(tmp_path: Path) -> None:
    a = make_photo(tmp_path / "a.png", seed=6)
    b = tmp_path / "b.png"
    b.write_bytes(a.read_bytes())
    c = make_photo(tmp_path / "c.png", seed=7)
    assert imaging.file_hash(a) == imaging.file_hash(b) != imaging.file_hash(c)
