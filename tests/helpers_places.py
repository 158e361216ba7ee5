"""Photos carrying real GPS EXIF (written by Pillow) at known coordinates of real places."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from PIL import Image

from .conftest import make_photo

# (latitude, longitude) of landmarks, from their Wikipedia/GeoNames entries.
LISBON = (38.7107, -9.1365)  # Praça do Comércio
EIFFEL_TOWER = (48.8584, 2.2945)
TIMES_SQUARE = (40.7580, -73.9855)
SYDNEY_OPERA = (-33.8568, 151.2153)
BUENOS_AIRES = (-34.6037, -58.3816)  # Obelisco
REYKJAVIK = (64.1466, -21.9426)
PARIS_TEXAS = (33.6609, -95.5555)
KEHL = (48.5690, 7.8150)  # German bank of the Rhine
STRASBOURG = (48.5816, 7.7508)  # cathedral, 5 km west, in France
EL_PASO = (31.7587, -106.4869)
CIUDAD_JUAREZ = (31.6904, -106.4245)
OFF_PORTUGAL = (38.70, -9.85)  # ~45 km out at sea west of Lisbon: Portugal, no city
MID_ATLANTIC = (30.0, -40.0)
NORTH_POLE = (90.0, 0.0)
SOUTH_POLE = (-90.0, 0.0)
LONGYEARBYEN = (78.2232, 15.6267)


def _dms(value: float) -> tuple[Fraction, Fraction, Fraction]:
    value = abs(value)
    d = int(value)
    m = int((value - d) * 60)
    s = round(((value - d) * 60 - m) * 60, 4)
    return Fraction(d), Fraction(m), Fraction(s).limit_denominator(10000)


def gps_photo(
    path: Path,
    lat: float | None,
    lon: float | None,
    seed: int = 0,
    taken: str | None = None,
    gps_ifd: dict | None = None,
) -> Path:
    """A JPEG with its GPS IFD set the way cameras do (degrees/minutes/seconds rationals + N/S/E/W refs)."""
    make_photo(path, seed=seed)
    img = Image.open(path)
    img.load()
    exif = Image.Exif()
    if taken:
        exif.get_ifd(0x8769)[0x9003] = taken
    if gps_ifd is not None:
        exif.get_ifd(0x8825).update(gps_ifd)
    elif lat is not None and lon is not None:
        gps = exif.get_ifd(0x8825)
        gps[1] = "N" if lat >= 0 else "S"
        gps[2] = _dms(lat)
        gps[3] = "E" if lon >= 0 else "W"
        gps[4] = _dms(lon)
    img.save(path, exif=exif)
    return path


def write_trip(root: Path) -> Path:
    """Four Lisbon photos from summer 2019, three Paris photos from Christmas 2021, two without GPS or date."""
    for i in range(4):
        gps_photo(root / f"lisbon{i}.jpg", *LISBON, seed=i, taken=f"2019:07:{10 + i:02d} 12:00:00")
    for i in range(3):
        gps_photo(root / f"paris{i}.jpg", *EIFFEL_TOWER, seed=10 + i, taken=f"2021:12:{24 + i} 18:00:00")
    for i in range(2):
        gps_photo(root / f"home{i}.jpg", None, None, seed=20 + i)
    return root
