"""Camera RAW files: real DNGs written with pidng, read back through LibRaw (rawpy) by imaging.py."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retllm_desktop import imaging
from retllm_desktop.errors import ImageError
from retllm_desktop.library import Library
from retllm_desktop.search import Query

from .conftest import make_photo


def write_dng(*args, **kwargs) -> Path:
    """helpers_raw.write_dng, imported on use: pidng is a dev dependency the export venv does not carry, and
    ``pytest -m export`` there still collects this module."""
    from .helpers_raw import write_dng as write

    return write(*args, **kwargs)


def scene(w: int = 240, h: int = 160, seed: int = 0) -> np.ndarray:
    """A smooth, asymmetric colour scene (demosaicking keeps it recognisable)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = rng.uniform(40, 200, size=3)
    img = np.stack([base[0] + 50 * x / w, base[1] + 50 * y / h, base[2] + 0 * x], axis=-1)
    img[: h // 3, : w // 4] = (240, 220, 30)  # a yellow block top left: shows rotations
    return img.clip(0, 255).astype(np.uint8)


def close_to(img: Image.Image, rgb: np.ndarray, tol: float = 20.0) -> bool:
    ref = np.asarray(Image.fromarray(rgb).resize(img.size, Image.Resampling.BILINEAR), dtype=float)
    return float(np.abs(np.asarray(img, dtype=float) - ref).mean()) < tol


@pytest.mark.parametrize("ext", ["dng", "CR2", "cr3", "NEF", "arw", "RAF", "orf", "rw2", "pef", "srw", "3fr"])
def test_libraw_formats_are_photos(ext: str) -> None:
    assert imaging.is_supported(f"x/IMG_0001.{ext}") and imaging.is_raw(f"IMG_0001.{ext}")
    assert not imaging.is_raw("IMG_0001.jpg")


def test_dng_without_preview_is_demosaicked_at_half_size(tmp_path: Path) -> None:
    rgb = scene()
    path = write_dng(tmp_path / "a.dng", rgb, make="Testcam", model="TC-1", taken_at="2023:07:01 09:30:15")
    meta = imaging.read_metadata(path)
    assert (meta.width, meta.height, meta.format) == (240, 160, "DNG")
    assert (meta.taken_at, meta.camera_make, meta.camera_model) == ("2023-07-01T09:30:15", "Testcam", "TC-1")
    loaded = imaging.load_photo(path, min_side=64)
    assert loaded.meta == meta and loaded.image.size == (120, 80)  # half size, no preview in the file
    assert loaded.hash == imaging.file_hash(path)
    assert close_to(loaded.image, rgb)
    assert imaging.thumbnail(path, 60).size == (60, 40)


def test_large_enough_preview_is_used_else_demosaic(tmp_path: Path) -> None:
    rgb = scene()
    preview = Image.new("RGB", (300, 200), (10, 200, 10))  # a different picture: shows which path ran
    path = write_dng(tmp_path / "p.dng", rgb, preview=preview)
    fast = imaging.load_rgb(path, min_side=150)
    assert fast.size == (300, 200) and np.asarray(fast)[100, 150, 1] > 180
    slow = imaging.load_rgb(path, min_side=250)  # the preview is too small for that
    assert slow.size == (120, 80) and close_to(slow, rgb)
    assert imaging.load_rgb(path).size == (120, 80)  # a full view wants >= RAW_PREVIEW_MIN_SIDE


def test_orientation_applies_to_preview_and_demosaic(tmp_path: Path) -> None:
    rgb = scene()
    preview = Image.fromarray(rgb).resize((300, 200))
    path = write_dng(tmp_path / "r.dng", rgb, preview=preview, orientation=6)
    meta = imaging.read_metadata(path)
    assert (meta.width, meta.height, meta.orientation) == (160, 240, 6)
    rotated = np.asarray(Image.fromarray(rgb).transpose(Image.Transpose.ROTATE_270))
    via_preview = imaging.load_rgb(path, min_side=150)
    via_demosaic = imaging.load_rgb(path, min_side=250)
    assert via_preview.size == (200, 300) and via_demosaic.size == (80, 120)
    assert close_to(via_preview, rotated) and close_to(via_demosaic, rotated)


def test_exif_found_in_tiff_like_and_embedded_blocks(tmp_path: Path) -> None:
    dng = write_dng(tmp_path / "x.dng", scene(), make="Olympus", model="E-M1", taken_at="2022:01:02 03:04:05")
    orf_like = b"IIRO" + dng.read_bytes()[4:]  # Olympus' magic on a TIFF structure
    fields = imaging._raw_exif(orf_like)
    assert fields["camera_make"] == "Olympus" and fields["taken_at"] == "2022-01-02T03:04:05"
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "FUJIFILM", "X-T5"
    exif.get_ifd(0x8769)[0x9003] = "2021:12:24 18:00:00"
    jpeg = io.BytesIO()
    Image.new("RGB", (32, 32)).save(jpeg, "JPEG", exif=exif)
    raf_like = b"FUJIFILMCCD-RAW 0201" + b"\0" * 80 + jpeg.getvalue() + b"\0" * 100
    fields = imaging._raw_exif(raf_like)
    assert (fields["camera_make"], fields["camera_model"], fields["taken_at"]) == (
        "FUJIFILM",
        "X-T5",
        "2021-12-24T18:00:00",
    )
    assert imaging._raw_exif(b"\0" * 1000 + b"II*\x00garbage") == {}


def test_corrupt_raw_files_are_recorded_failures(tmp_path: Path, library: Library) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    good = write_dng(root / "good.dng", scene())
    (root / "truncated.dng").write_bytes(good.read_bytes()[:3000])
    (root / "noise.nef").write_bytes(np.random.default_rng(1).bytes(20000))
    (root / "empty.cr2").write_bytes(b"")
    (root / "text.arw").write_text("not a raw file")
    for p in root.iterdir():
        with pytest.raises(ImageError) if p.name != "good.dng" else _nothing():
            imaging.load_photo(p, min_side=64)
    library.index_roots([str(root)])
    reasons = {Path(f.path).name: f.reason for f in library.catalog.failures()}
    assert set(reasons) == {"truncated.dng", "noise.nef", "empty.cr2", "text.arw"}
    assert "RAW" in reasons["noise.nef"] and "empty" in reasons["empty.cr2"]
    assert library.catalog.count_photos() == 1
    assert library.catalog.photo_by_path(str(good)).format == "DNG"


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


def test_raw_and_jpeg_of_one_shot_are_one_result(tmp_path: Path, library: Library) -> None:
    root = tmp_path / "photos"
    rgb = scene(seed=3)
    root.mkdir()
    write_dng(root / "IMG_0042.DNG", rgb)
    Image.fromarray(rgb).save(root / "IMG_0042.JPG", quality=92)
    for i in range(6):
        make_photo(root / f"other{i}.jpg", seed=100 + i)
    library.index_roots([str(root)])
    assert library.catalog.count_photos() == 8
    res = library.search_coarse(Query(image=str(root / "IMG_0042.JPG")), top=10).results
    names = [Path(r.path).name for r in res]
    assert "IMG_0042.DNG" not in names and "IMG_0042.JPG" not in names  # the query shot itself
    outside = tmp_path / "query.png"
    Image.fromarray(rgb).save(outside)
    res = library.search_coarse(Query(image=str(outside)), top=10).results
    shot = [r for r in res if Path(r.path).stem == "IMG_0042"]
    assert len(shot) == 1 and len(res) == 7
    files = shot[0].as_dict()["files"]
    assert sorted(Path(f).name for f in files) == ["IMG_0042.DNG", "IMG_0042.JPG"]
    assert files[0] == shot[0].path
    json.dumps(shot[0].as_dict())
    # the twin is listed even when it is not among the results at all (the JPEG has no date: filtered out)
    dated = Query(image=str(outside), date_from="2024-05-01", date_to="2024-05-31")
    res = library.search_coarse(dated, top=5).results
    assert [Path(r.path).name for r in res] == ["IMG_0042.DNG"]
    assert [Path(p).name for p in res[0].companions] == ["IMG_0042.JPG"]
    other = library.search_coarse(Query(image=str(root / "other0.jpg")), top=1).results[0]
    assert other.companions == []


def test_raw_decoding_stays_within_the_memory_budget(tmp_path: Path) -> None:
    import rawpy

    from retllm_desktop import memory_budget

    saved = memory_budget._shared
    try:
        path = write_dng(tmp_path / "a.dng", scene())
        with rawpy.imread(str(path)) as raw:
            need = imaging.raw_demosaic_peak_bytes(raw.sizes)
        assert need >= 240 * 160 * 2
        memory_budget.set_decode_budget(need - 1)
        with pytest.raises(ImageError, match="RAW file too large to decode"):
            imaging.load_photo(path, min_side=64)
        # a file with a (small) preview still gives that preview rather than nothing
        small = write_dng(tmp_path / "b.dng", scene(), preview=Image.new("RGB", (60, 40), (200, 10, 10)))
        assert imaging.load_rgb(small, min_side=100).size == (60, 40)
        budget = memory_budget.set_decode_budget(need)  # exactly enough
        assert imaging.load_photo(path, min_side=64).image.size == (120, 80)
        assert budget.peak == need and budget.in_use == 0
    finally:
        memory_budget._shared = saved
