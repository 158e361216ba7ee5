"""The rows the catalog hands out: plain dataclasses, no SQL (shared by every group of catalog queries)."""

from __future__ import annotations

from dataclasses import dataclass

PHOTO_COLUMNS = (
    "id",
    "root_id",
    "path",
    "size",
    "mtime_ns",
    "hash",
    "width",
    "height",
    "format",
    "taken_at",
    "camera_make",
    "camera_model",
    "gps_lat",
    "gps_lon",
    "orientation",
    "status",
    "added_at",
    "updated_at",
)


@dataclass
class Root:
    id: int
    path: str
    online: bool
    last_scan_at: float | None


@dataclass
class Photo:
    id: int
    root_id: int
    path: str
    size: int
    mtime_ns: int
    hash: str
    width: int | None = None
    height: int | None = None
    format: str | None = None
    taken_at: str | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    gps_lat: float | None = None
    gps_lon: float | None = None
    orientation: int | None = None
    status: str = "ok"
    added_at: float = 0.0
    updated_at: float = 0.0

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in PHOTO_COLUMNS}


@dataclass
class PlaceCount:
    """One entry of the Places list: a city, region or country and how many photos were taken there."""

    key: str  # "city:<geonameid>", "region:US.TX", "country:PT" (what search filters on)
    kind: str
    name: str
    country: str | None
    region: str | None
    photos: int


@dataclass
class Failure:
    path: str
    reason: str
    size: int | None
    mtime_ns: int | None
    failed_at: float


SKIPPED_PREFIX = "skipped: "  # failures rows for special files the scanner passes over on purpose
