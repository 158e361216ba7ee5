"""Real DNG files for tests, written with pidng (raw Bayer data, EXIF, optional embedded JPEG preview)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from pidng.defs import CalibrationIlluminant, CFAPattern, DNGVersion, PhotometricInterpretation
from pidng.dng import DNG, Tag, dngIFD, dngTag
from PIL import Image

# XYZ -> linear sRGB (x10000): the "camera" sees linear sRGB, so LibRaw renders the photo as it was.
_XYZ_TO_SRGB = [32406, -15372, -4986, -9689, 18758, 415, 557, -2040, 10570]
_COLOR_MATRIX = [[v, 10000] for v in _XYZ_TO_SRGB]


def _ifd_tag(tag: tuple, ifd: dngIFD) -> dngTag:
    """A tag pointing at a sub-IFD (pidng's own constructor fails on these under Python 3)."""
    t = dngTag(Tag.NewSubfileType, [0])
    t.Type, t.TagId, t.DataType = tag, tag[0], tag[1]
    t.rawValue, t.subIFD, t.Value, t.DataCount = [ifd], ifd, b"\0\0\0\0", 1
    return t


def bayer(rgb: np.ndarray, bits: int = 12) -> np.ndarray:
    """An RGGB mosaic of an 8-bit sRGB image, linearised and scaled to ``bits``."""
    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    rgb = np.round((rgb[:h, :w] / 255.0) ** 2.2 * ((1 << bits) - 1)).astype(np.uint32)
    out = np.empty((h, w), np.uint16)
    out[0::2, 0::2] = rgb[0::2, 0::2, 0]
    out[0::2, 1::2] = rgb[0::2, 1::2, 1]
    out[1::2, 0::2] = rgb[1::2, 0::2, 1]
    out[1::2, 1::2] = rgb[1::2, 1::2, 2]
    return out


def write_dng(
    path: Path,
    rgb: np.ndarray,
    *,
    preview: Image.Image | None = None,
    make: str = "Testcam",
    model: str = "TC-1",
    taken_at: str | None = "2024:05:17 14:03:09",
    orientation: int = 1,
) -> Path:
    """A DNG whose raw data is ``rgb`` mosaicked; with ``preview``, IFD0 is that JPEG (as cameras write)."""
    raw = bayer(rgb)
    h, w = raw.shape
    raw_tags = [
        dngTag(Tag.NewSubfileType, [0]),
        dngTag(Tag.ImageWidth, [w]),
        dngTag(Tag.ImageLength, [h]),
        dngTag(Tag.TileWidth, [w]),
        dngTag(Tag.TileLength, [h]),
        dngTag(Tag.Compression, [1]),
        dngTag(Tag.PhotometricInterpretation, [PhotometricInterpretation.Color_Filter_Array]),
        dngTag(Tag.SamplesPerPixel, [1]),
        dngTag(Tag.BitsPerSample, [16]),
        dngTag(Tag.CFARepeatPatternDim, [2, 2]),
        dngTag(Tag.CFAPattern, CFAPattern.RGGB),
        dngTag(Tag.BlackLevel, [0]),
        dngTag(Tag.WhiteLevel, [(1 << 12) - 1]),
    ]
    main_tags = [
        dngTag(Tag.Make, make),
        dngTag(Tag.Model, model),
        dngTag(Tag.UniqueCameraModel, f"{make} {model}"),
        dngTag(Tag.DNGVersion, DNGVersion.V1_4),
        dngTag(Tag.DNGBackwardVersion, DNGVersion.V1_0),
        dngTag(Tag.ColorMatrix1, _COLOR_MATRIX),
        dngTag(Tag.CalibrationIlluminant1, [CalibrationIlluminant.D65]),
        dngTag(Tag.AsShotNeutral, [[1, 1], [1, 1], [1, 1]]),
        dngTag(Tag.Orientation, [orientation]),
    ]
    if taken_at:
        exif = dngIFD()
        exif.tags.append(dngTag(Tag.DateTimeOriginal, taken_at))
        main_tags += [dngTag(Tag.DateTime, taken_at), _ifd_tag(Tag.EXIF_IFD, exif)]
    dng = DNG()
    dng.ImageDataStrips.append(raw.tobytes())
    raw_offsets = dngTag(Tag.TileOffsets, [0])
    raw_tags += [raw_offsets, dngTag(Tag.TileByteCounts, [len(dng.ImageDataStrips[0])])]
    ifd0 = dngIFD()
    if preview is None:
        ifd0.tags = main_tags + raw_tags
    else:
        buf = io.BytesIO()
        preview.convert("RGB").save(buf, "JPEG", quality=90)
        jpeg = buf.getvalue()
        dng.ImageDataStrips.append(jpeg)
        sub = dngIFD()
        sub.tags = raw_tags
        prev_offsets = dngTag(Tag.StripOffsets, [0])
        ifd0.tags = main_tags + [
            dngTag(Tag.NewSubfileType, [1]),
            dngTag(Tag.ImageWidth, [preview.width]),
            dngTag(Tag.ImageLength, [preview.height]),
            dngTag(Tag.BitsPerSample, [8, 8, 8]),
            dngTag(Tag.Compression, [7]),
            dngTag(Tag.PhotometricInterpretation, [6]),
            dngTag(Tag.SamplesPerPixel, [3]),
            dngTag(Tag.RowsPerStrip, [preview.height]),
            prev_offsets,
            dngTag(Tag.StripByteCounts, [len(jpeg)]),
            _ifd_tag(Tag.SubIFD, sub),
        ]
    dng.IFDs.append(ifd0)
    total = dng.dataLen()
    raw_offsets.setValue([dng.StripOffsets[0]])
    if preview is not None:
        prev_offsets.setValue([dng.StripOffsets[1]])
    buf = bytearray(total)
    dng.setBuffer(buf)
    dng.write()
    path.write_bytes(bytes(buf))
    return path
