"""The one place that reads photo bytes: open, orient, draft-decode, metadata, thumbnails.

Photos are only ever opened read-only (``open(path, "rb")``); nothing here writes next to them.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from .errors import ImageError
from .memory_budget import decode_budget

try:  # HEIC/HEIF support is optional at import time but a declared dependency.
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_AVAILABLE = True
except Exception:  # pragma: no cover - only when the wheel is missing for a platform
    HEIF_AVAILABLE = False

try:  # camera RAW files through LibRaw; a declared dependency, optional at import time like HEIF
    import rawpy

    RAW_AVAILABLE = True
except Exception:  # pragma: no cover - only when the wheel is missing for a platform
    RAW_AVAILABLE = False

# The RAW formats LibRaw reads (camera makers' own and DNG).
RAW_EXTENSIONS = frozenset(
    {".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf", ".rw2",
     ".rwl", ".pef", ".ptx", ".srw", ".3fr", ".fff", ".iiq", ".erf", ".kdc", ".dcr", ".mrw", ".mos",
     ".mef", ".x3f", ".gpr", ".raw"}
)  # fmt: skip
SUPPORTED_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif"}
) | (RAW_EXTENSIONS if RAW_AVAILABLE else frozenset())

# Decompression-bomb guard: a real 300 MP panorama is fine, a 20k x 20k PNG bomb is not.
MAX_PIXELS = 300_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
ImageFile.LOAD_TRUNCATED_IMAGES = False

_TAG_ORIENTATION = 0x0112
_TAG_MAKE = 0x010F
_TAG_MODEL = 0x0110
_TAG_DATETIME = 0x0132
_IFD_EXIF = 0x8769
_IFD_GPS = 0x8825
_TAG_DATETIME_ORIGINAL = 0x9003
_TAG_DATETIME_DIGITIZED = 0x9004


def is_supported(path: str | Path) -> bool:
    return Path(path).suffix.lower() in SUPPORTED_EXTENSIONS


def is_raw(path: str | Path) -> bool:
    return Path(path).suffix.lower() in RAW_EXTENSIONS


def shot_key(path: str | Path) -> str:
    """Folder + file name without extension: a RAW file and the camera's JPEG of the same shot share it."""
    p = str(path)
    stem, _ = os.path.splitext(p)
    return os.path.normcase(stem)


@dataclass(frozen=True)
class PhotoMeta:
    """What the catalog stores about a photo besides its path; width/height are as displayed (oriented)."""

    width: int
    height: int
    format: str | None
    taken_at: str | None = None  # ISO 8601, local time as the camera wrote it
    camera_make: str | None = None
    camera_model: str | None = None
    gps_lat: float | None = None
    gps_lon: float | None = None
    orientation: int = 1


def file_hash(path: str | Path, chunk: int = 1 << 20) -> str:
    """Content hash used to recognise moved/renamed photos without re-embedding them."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _read(path: str | Path) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ImageError(f"cannot read file: {e.strerror or e}") from e
    if not data:
        raise ImageError("empty file (0 bytes)")
    return data


def _ext(path: str | Path) -> str:
    return Path(path).suffix.lstrip(".").upper()


def _hash_bytes(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _open(path: str | Path, data: bytes | None = None) -> Image.Image:
    """Open lazily (header only) with clear errors for everything Pillow can throw."""
    if data is None:
        data = _read(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"image too large (decompression bomb guard, > {MAX_PIXELS:,} pixels)") from e
    except UnidentifiedImageError as e:
        raise ImageError("not a recognised image") from e
    except Exception as e:  # Pillow plugins raise anything
        raise ImageError(f"cannot open image: {e}") from e
    if img.width * img.height > MAX_PIXELS:
        raise ImageError(f"image too large (decompression bomb guard, > {MAX_PIXELS:,} pixels)")
    return img


def _exif_orientation(img: Image.Image) -> int:
    try:
        value = int(img.getexif().get(_TAG_ORIENTATION, 1))
    except Exception:  # corrupt EXIF must not stop us
        return 1
    return value if 1 <= value <= 8 else 1


def _parse_exif_datetime(value: object) -> str | None:
    if not value:
        return None
    text = value.decode(errors="ignore") if isinstance(value, bytes) else str(value)
    text = text.strip().strip("\x00")
    for fmt in ("%Y:%m:%d %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y:%m:%d %H:%M", "%Y:%m:%d"):
        try:
            return datetime.strptime(text[: len(datetime.now().strftime(fmt))], fmt).isoformat()
        except ValueError:
            continue
    return None


def _gps_to_degrees(values: object, ref: object) -> float | None:
    try:
        d, m, s = (float(v) for v in values)  # type: ignore[union-attr]
    except Exception:
        return None
    deg = d + m / 60.0 + s / 3600.0
    if isinstance(ref, bytes):
        ref = ref.decode(errors="ignore")
    if str(ref).strip().upper() in ("S", "W"):
        deg = -deg
    if not np.isfinite(deg):
        return None
    return round(deg, 7)


def _gps_fix(gps: dict) -> tuple[float | None, float | None]:
    """Latitude and longitude from the GPS IFD, or neither: out of range, half a fix, or the (0, 0) that
    cameras without a fix write are no position at all."""
    lat = _gps_to_degrees(gps.get(2), gps.get(1))
    lon = _gps_to_degrees(gps.get(4), gps.get(3))
    if lat is None or lon is None or abs(lat) > 90 or abs(lon) > 180 or (lat == 0 and lon == 0):
        return None, None
    return lat, lon


def _clean_text(value: object) -> str | None:
    if value is None:
        return None
    text = value.decode(errors="ignore") if isinstance(value, bytes) else str(value)
    text = text.replace("\x00", "").strip()
    return text or None


def read_metadata(path: str | Path) -> PhotoMeta:
    """Header + EXIF only (no pixel decode): size as displayed, capture time, camera, GPS."""
    if is_raw(path):
        return _raw_load(_read(path), _ext(path), None)[0]
    img = _open(path)
    try:
        return _metadata(img)
    finally:
        img.close()


def _metadata(img: Image.Image) -> PhotoMeta:
    orientation = _exif_orientation(img)
    w, h = img.size
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    try:
        fields = _exif_fields(img.getexif())
    except Exception:  # corrupt EXIF: keep the pixels, drop the metadata
        fields = {}
    return PhotoMeta(width=w, height=h, format=img.format, orientation=orientation, **fields)


def _exif_fields(exif: Image.Exif) -> dict:
    """Capture time, camera and GPS from an EXIF block (any field may be missing: None)."""
    fields: dict = {}
    try:
        fields["camera_make"] = _clean_text(exif.get(_TAG_MAKE))
        fields["camera_model"] = _clean_text(exif.get(_TAG_MODEL))
        sub = exif.get_ifd(_IFD_EXIF)
        fields["taken_at"] = _parse_exif_datetime(
            sub.get(_TAG_DATETIME_ORIGINAL) or sub.get(_TAG_DATETIME_DIGITIZED) or exif.get(_TAG_DATETIME)
        )
        gps = exif.get_ifd(_IFD_GPS)
        if gps and 2 in gps and 4 in gps:
            fields["gps_lat"], fields["gps_lon"] = _gps_fix(gps)
    except Exception:  # corrupt EXIF: keep what was read so far
        pass
    return fields


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any mode (16-bit, CMYK, palette+alpha, LA, float) to 8-bit RGB; alpha composited onto white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        img = Image.fromarray(((arr - lo) * scale).clip(0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def load_rgb(path: str | Path, min_side: int | None = None) -> Image.Image:
    """Decode a photo to an oriented RGB image.

    With ``min_side`` the JPEG decoder is asked for a reduced-scale decode (``Image.draft``) that keeps
    both sides >= ``min_side``: ~4x faster for a 12 MP photo that will be shrunk to 224 px anyway.
    Animated images give their first frame. A RAW file gives its embedded preview when that is large
    enough, else a half-size demosaic.
    """
    if is_raw(path):
        return _raw_load(_read(path), _ext(path), min_side or RAW_PREVIEW_MIN_SIDE, pixels=True)[1]
    img = _open(path)
    try:
        return _decode(img, min_side)
    finally:
        img.close()


@dataclass
class LoadedPhoto:
    meta: PhotoMeta
    image: Image.Image
    hash: str


def load_photo(path: str | Path, min_side: int | None = None) -> LoadedPhoto:
    """Metadata, decoded pixels and content hash from a single read of the file (the indexer's path)."""
    data = _read(path)
    if is_raw(path):
        meta, image = _raw_load(data, _ext(path), min_side or RAW_PREVIEW_MIN_SIDE, pixels=True)
        return LoadedPhoto(meta, image, _hash_bytes(data))
    img = _open(path, data)
    try:
        meta = _metadata(img)
        return LoadedPhoto(meta, _decode(img, min_side), _hash_bytes(data))
    finally:
        img.close()


# Bytes per pixel of a decoded frame by mode; the peak of a decode adds the RGB conversion and the
# orientation copy (3 + 3), and 16-bit / float modes a float64 working array (8).
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
_WIDE_MODES = ("I", "F", "I;16", "I;16B", "I;16L", "I;16N")


def decode_peak_bytes(img: Image.Image) -> int:
    """What decoding ``img`` (at its current, possibly draft-reduced size) needs in memory at its peak."""
    decoded = _MODE_BYTES.get(img.mode, 4 if img.mode in ("RGBA", "CMYK", "I", "F", "RGBX") else 3)
    extra = 6 + (8 if img.mode in _WIDE_MODES else 0)
    return img.width * img.height * (decoded + extra)


def _decode(img: Image.Image, min_side: int | None) -> Image.Image:
    orientation = _exif_orientation(img)
    if min_side and img.format == "JPEG":
        img.draft("RGB", (min_side, min_side))
    with decode_budget().reserve(decode_peak_bytes(img)):  # shared by all decoding threads
        try:
            img.seek(0)
            img.load()
        except Exception as e:
            raise ImageError(f"cannot decode image: {e}") from e
        if img.width < 1 or img.height < 1:
            raise ImageError("image has no pixels")
        out = _apply_orientation(_to_rgb(img), orientation)
        if out is img:  # already RGB and upright: detach from the file before closing it
            out = img.copy()
        return out


_ORIENT_OPS = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (Image.Transpose.ROTATE_180,),
    4: (Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (Image.Transpose.TRANSPOSE,),
    6: (Image.Transpose.ROTATE_270,),
    7: (Image.Transpose.TRANSVERSE,),
    8: (Image.Transpose.ROTATE_90,),
}


def _apply_orientation(img: Image.Image, orientation: int) -> Image.Image:
    for op in _ORIENT_OPS.get(orientation, ()):
        img = img.transpose(op)
    return img


def thumbnail(path: str | Path, size: int) -> Image.Image:
    """An oriented RGB thumbnail whose longer side is ``size`` (for grids and previews)."""
    img = load_rgb(path, min_side=size)
    img.thumbnail((size, size), Image.Resampling.BICUBIC)
    return img


# --- camera RAW (LibRaw via rawpy) -----------------------------------------------------------------------

# Without a size wish (a full view), the embedded preview is used when its shorter side has at least this
# many pixels; smaller previews (some cameras embed only a 160 px thumbnail) mean a half-size demosaic.
RAW_PREVIEW_MIN_SIDE = 1000
_LIBRAW_FLIP_TO_ORIENTATION = {0: 1, 3: 3, 5: 8, 6: 6}
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*")
_TIFF_LIKE_MAGICS = (b"IIRO", b"IIRS", b"IIU\x00")  # Olympus ORF, Panasonic RW2: TIFF with another magic


def _raw_load(
    data: bytes, ext: str, min_side: int | None, pixels: bool = False
) -> tuple[PhotoMeta, Image.Image | None]:
    """Metadata and (with ``pixels``) an oriented RGB image of a RAW file's bytes; LibRaw errors are ImageError."""
    if not RAW_AVAILABLE:
        raise ImageError("RAW files need the rawpy package")
    raw = rawpy.RawPy()
    try:
        try:
            raw.open_buffer(io.BytesIO(data))
            sizes = raw.sizes
        except Exception as e:  # LibRaw raises its own error classes, all "cannot read"
            raise ImageError(f"cannot read RAW file: {_libraw_reason(e)}") from e
        orientation = _LIBRAW_FLIP_TO_ORIENTATION.get(int(sizes.flip), 1)
        w, h = int(sizes.width), int(sizes.height)
        if w < 1 or h < 1:
            raise ImageError("RAW file has no image")
        if w * h > MAX_PIXELS:
            raise ImageError(f"image too large (decompression bomb guard, > {MAX_PIXELS:,} pixels)")
        if orientation in (6, 8):
            w, h = h, w
        fields = _raw_exif(data)
        if not fields.get("taken_at"):
            fields["taken_at"] = _raw_timestamp(raw)
        meta = PhotoMeta(width=w, height=h, format=ext or "RAW", orientation=orientation, **fields)
        image = _raw_pixels(raw, min_side, orientation) if pixels else None
        return meta, image
    finally:
        raw.close()


def _libraw_reason(e: Exception) -> str:
    text = str(e.args[0] if e.args else e)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    text = text.rsplit("unknown file: ", 1)[-1]  # LibRaw prefixes a stream name to some messages
    return text or type(e).__name__


def _raw_timestamp(raw: object) -> str | None:
    try:
        ts = raw.other.timestamp  # type: ignore[attr-defined]
    except Exception:
        return None
    if not ts or ts.year < 1980:  # LibRaw reports 0 (the epoch) when the file has no date
        return None
    return ts.replace(tzinfo=None, microsecond=0).isoformat()


def _raw_exif(data: bytes) -> dict:
    """Camera, capture time and GPS from the TIFF/EXIF blocks inside a RAW file.

    Most RAW formats are TIFF files (DNG, CR2, NEF, ARW, PEF, …; ORF and RW2 with their own magic); CR3
    keeps TIFF blocks in boxes and RAF inside its embedded JPEG. Every TIFF header near the start is read;
    the first value found for each field wins.
    """
    head = data[: 4 << 20]
    starts = [0] if head[:4] in _TIFF_LIKE_MAGICS else []
    for magic in _TIFF_MAGICS:
        pos = head.find(magic)
        while pos >= 0 and len(starts) < 8:
            starts.append(pos)
            pos = head.find(magic, pos + 4)
    fields: dict = {}
    for start in sorted(set(starts)):
        block = data[start:]
        if start == 0 and head[:4] in _TIFF_LIKE_MAGICS:
            block = b"II*\x00" + block[4:]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Pillow warns about damaged blocks: we just skip them
                exif = Image.Exif()
                exif.load(block)
                found = _exif_fields(exif)
        except Exception:  # a chance match of the magic bytes, or a damaged block
            continue
        for key, value in found.items():
            if value is not None and fields.get(key) is None:
                fields[key] = value
        if all(fields.get(k) for k in ("taken_at", "camera_make", "camera_model")):
            break
    if fields.get("gps_lat") is None or fields.get("gps_lon") is None:
        fields.pop("gps_lat", None)
        fields.pop("gps_lon", None)
    return fields


def _raw_pixels(raw: object, min_side: int | None, orientation: int) -> Image.Image:
    """The embedded preview when both its sides reach ``min_side``, else a half-size demosaic."""
    preview = _raw_preview(raw)
    if preview is not None and min(preview.size) >= (min_side or RAW_PREVIEW_MIN_SIDE):
        return _apply_orientation(preview, orientation)
    try:
        with decode_budget().reserve(raw_demosaic_peak_bytes(raw.sizes), "RAW file"):  # type: ignore[attr-defined]
            rgb = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)  # type: ignore[attr-defined]
    except ImageError:
        if preview is not None:  # too large to demosaic here, but a usable (small) preview
            return _apply_orientation(preview, orientation)
        raise
    except Exception as e:
        if preview is not None:  # undecodable sensor data but a usable (small) preview
            return _apply_orientation(preview, orientation)
        raise ImageError(f"cannot decode RAW file: {_libraw_reason(e)}") from e
    if rgb.ndim != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ImageError("RAW file has no pixels")
    return Image.fromarray(np.ascontiguousarray(rgb[..., :3]), "RGB")  # LibRaw already applied the flip


def raw_demosaic_peak_bytes(sizes: object) -> int:
    """Memory of a half-size demosaic at its peak: LibRaw's unpacked 16-bit sensor data, its 4 x 16-bit
    half-size working image, and the 8-bit RGB result with our copy of it."""
    raw_px = int(sizes.raw_width) * int(sizes.raw_height)  # type: ignore[attr-defined]
    half_px = (int(sizes.width) // 2 + 1) * (int(sizes.height) // 2 + 1)  # type: ignore[attr-defined]
    return raw_px * 2 + half_px * (8 + 3 + 3)


def _raw_preview(raw: object) -> Image.Image | None:
    try:
        thumb = raw.extract_thumb()  # type: ignore[attr-defined]
    except Exception:  # no preview, or one LibRaw cannot extract
        return None
    try:
        if thumb.format == rawpy.ThumbFormat.JPEG:
            img = Image.open(io.BytesIO(thumb.data))
            with decode_budget().reserve(decode_peak_bytes(img), "RAW preview"):
                img.load()
                return _to_rgb(img)
        arr = np.asarray(thumb.data)
        if arr.ndim == 3 and arr.shape[2] >= 3:
            return Image.fromarray(np.ascontiguousarray(arr[..., :3]).astype(np.uint8), "RGB")
    except Exception:  # a damaged preview: demosaic instead
        return None
    return None
