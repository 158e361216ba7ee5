"""A corpus of awkward and broken files, generated here: each is indexed correctly or gets a recorded reason.

Also: the photo tree is byte-identical after a full index + watch session (photos are opened read-only).
"""

from __future__ import annotations

import io
import os
import re
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retllm_desktop.imaging import load_rgb
from retllm_desktop.watcher import LibraryWatcher
from tests.helpers_watch import check_consistent, make_models, open_library, tree_digest, write_photo

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return make_models(tmp_path_factory.mktemp("models"))


def upright() -> Image.Image:
    """An asymmetric test card: any flip or rotation changes its pixels."""
    arr = np.zeros((48, 80, 3), dtype=np.uint8)
    arr[:, :40] = (200, 30, 30)
    arr[:24, 40:] = (30, 200, 30)
    arr[24:, 40:] = (30, 30, 200)
    arr[:8, :8] = (255, 255, 0)
    return Image.fromarray(arr)


# Stored pixels for EXIF orientation o are the inverse of the transform a viewer applies.
_INVERSE = {
    1: [],
    2: [Image.Transpose.FLIP_LEFT_RIGHT],
    3: [Image.Transpose.ROTATE_180],
    4: [Image.Transpose.FLIP_TOP_BOTTOM],
    5: [Image.Transpose.TRANSPOSE],
    6: [Image.Transpose.ROTATE_90],
    7: [Image.Transpose.TRANSVERSE],
    8: [Image.Transpose.ROTATE_270],
}


def write_oriented(path: Path, orientation: int) -> None:
    img = upright()
    for op in _INVERSE[orientation]:
        img = img.transpose(op)
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, format="PNG", exif=exif)  # lossless, so "the same upright pixels" is exact


def png_with_size(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose header claims width x height (a decompression bomb's signature)."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return bytes(data)


def build_corpus(root: Path) -> tuple[dict[str, str], list[str]]:
    """Returns ({file: expected failure-reason regex}, [files that must be indexed])."""
    bad: dict[str, str] = {}
    good: list[str] = []

    def add_good(p: Path) -> None:
        good.append(str(p))

    full = write_photo(root / "full.jpg", 1, size=(160, 120))
    data = full.read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 2])
    bad["truncated.jpg"] = r"truncated|cannot decode|broken"
    (root / "zero.jpg").write_bytes(b"")
    bad["zero.jpg"] = r"empty file"
    (root / "notes.jpg").write_text("this is a text file with an image extension\n" * 20)
    bad["notes.jpg"] = r"not a recognised image"
    (root / "bomb.png").write_bytes(png_with_size(40_000, 40_000))
    bad["bomb.png"] = r"decompression bomb"
    (root / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(500))
    bad["garbage.png"] = r"cannot open|not a recognised|cannot decode"
    add_good(full)

    Image.new("RGB", (1, 1), (10, 200, 30)).save(root / "one_pixel.png")
    add_good(root / "one_pixel.png")
    Image.new("CMYK", (64, 48), (0, 255, 255, 0)).save(root / "cmyk.jpg", format="JPEG")
    add_good(root / "cmyk.jpg")
    arr16 = (np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20).astype(np.uint16)
    Image.fromarray(arr16).save(root / "sixteen_bit.png")
    add_good(root / "sixteen_bit.png")
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(root / "animated.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    add_good(root / "animated.gif")
    pal = Image.new("P", (40, 30))
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.paste(1, (0, 0, 20, 30))
    pal.save(root / "palette_alpha.png", transparency=0)
    add_good(root / "palette_alpha.png")
    rgba = Image.new("RGBA", (40, 30), (0, 0, 255, 128))
    rgba.save(root / "rgba.png")
    add_good(root / "rgba.png")
    (root / "orient").mkdir()
    for o in range(1, 9):
        write_oriented(root / "orient" / f"o{o}.png", o)
        add_good(root / "orient" / f"o{o}.png")

    # JPEG with a corrupt EXIF segment: the pixels are fine, the metadata is dropped.
    buf = io.BytesIO()
    Image.open(full).save(buf, format="JPEG")
    jpg = buf.getvalue()
    app1 = b"Exif\x00\x00" + b"MM\x00\x2a\x00\x00\x00\x08" + b"\xff\xff" + os.urandom(60)
    seg = b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
    (root / "corrupt_exif.jpg").write_bytes(jpg[:2] + seg + jpg[2:])
    add_good(root / "corrupt_exif.jpg")

    write_photo(root / "panorama.jpg", 3, size=(12000, 400))  # 4.8 MP, 30:1
    add_good(root / "panorama.jpg")

    long_name = ("très_long_nom_été_" * 20)[:200] + ".jpg"  # 230 bytes in UTF-8 (the limit is 255)
    assert 220 < len(long_name.encode()) <= 255
    write_photo(root / long_name, 4)
    add_good(root / long_name)
    deep = root / "/".join(["nested_folder_" + str(i) for i in range(30)])
    write_photo(deep / "deep.jpg", 5)
    add_good(deep / "deep.jpg")
    emoji = root / "🐶 plage, 海 — été.jpeg"
    write_photo(emoji, 6)
    add_good(emoji)

    if sys.platform != "darwin":  # macOS (APFS) refuses names that are not valid UTF-8
        raw = os.fsencode(str(root)) + b"/latin1_caf\xe9_\xff.jpg"  # not valid UTF-8
        write_photo(Path(os.fsdecode(raw)), 7)
        bad["latin1_caf\\xe9_\\xff.jpg"] = r"not valid UTF-8"

    os.mkdir(root / "loop")
    os.symlink(root / "loop", root / "loop" / "again")  # a directory symlink loop
    os.symlink(root / "self.jpg", root / "self.jpg")  # a symlink to itself (ELOOP)
    os.symlink(root / "missing.jpg", root / "dangling.jpg")
    os.mkdir(root / "folder.jpg")  # a folder with an image extension
    if hasattr(os, "mkfifo"):
        os.mkfifo(root / "pipe.jpg")  # opening it would block forever: must never be opened
    return bad, good


def test_bad_file_corpus_never_stops_a_run_and_each_failure_has_a_reason(tmp_path, models):
    root = tmp_path / "photos"
    root.mkdir()
    bad, good = build_corpus(root)
    with open_library(tmp_path / "lib", models) as lib:
        s = lib.index_roots([str(root)])
        failures = {Path(f.path).name: f.reason for f in lib.catalog.failures(skipped=False)}
        skipped = {Path(f.path).name for f in lib.catalog.failures(skipped=True)}
        indexed = {p.path for p in lib.catalog.photos_in_root(lib.roots()[0].id)}
        missing = [g for g in good if g not in indexed]
        assert not missing, f"not indexed: {missing}; failures: {failures}"
        for name, pattern in bad.items():
            assert name in failures, f"{name} has no recorded failure: {failures}"
            assert re.search(pattern, failures[name], re.I), f"{name}: {failures[name]!r}"
        assert set(failures) == set(bad), failures
        assert s.failed == len(bad) and s.added + s.reused == len(good)
        # special files are passed over on purpose, and listed as skipped (the FIFO never opened)
        want = {"self.jpg", "dangling.jpg", "again"} | ({"pipe.jpg"} if hasattr(os, "mkfifo") else set())
        assert skipped == want and s.skipped == len(want)
        check_consistent(lib)
        # A second run neither retries unchanged failures nor re-embeds anything.
        s2 = lib.index_roots()
        assert (s2.added, s2.updated, s2.failed) == (0, 0, 0)


def test_all_eight_exif_orientations_give_the_same_upright_pixels_and_embedding(tmp_path, models):
    root = tmp_path / "orient"
    root.mkdir()
    for o in range(1, 9):
        write_oriented(root / f"o{o}.png", o)
    want = np.asarray(upright())
    for o in range(1, 9):
        got = np.asarray(load_rgb(root / f"o{o}.png"))
        assert got.shape == want.shape and np.array_equal(got, want), f"orientation {o}"
    with open_library(tmp_path / "lib", models) as lib:
        lib.index_roots([str(root)])
        photos = {Path(p.path).name: p for p in lib.catalog.photos_in_root(lib.roots()[0].id)}
        assert len(photos) == 8
        assert all((p.width, p.height) == (80, 48) for p in photos.values())
        vecs = [lib.catalog.embedding(photos[f"o{o}.png"].id, lib.clip.key) for o in range(1, 9)]
        for o, v in enumerate(vecs[1:], 2):
            assert np.allclose(v, vecs[0], atol=1e-5), f"orientation {o} embeds differently"


def test_file_vanishing_mid_run_is_recorded_not_fatal(tmp_path, models):
    root = tmp_path / "photos"
    for i in range(12):
        write_photo(root / f"p{i:02d}.jpg", i)
    victim = root / "p11.jpg"

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "embedding" and done == 0 and victim.exists():
            victim.unlink()  # listed by the scan, gone before it is decoded

    with open_library(tmp_path / "lib", models) as lib:
        s = lib.index_roots([str(root)], progress=progress)
        assert s.added == 11 and s.failed == 1
        (f,) = lib.catalog.failures()
        assert f.path == str(victim) and re.search(r"cannot read|no such file", f.reason, re.I)


@pytest.mark.skipif(IS_ROOT, reason="running as root: file permissions do not stop root from reading")
def test_unreadable_permissions_get_a_reason(tmp_path, models):
    root = tmp_path / "photos"
    p = write_photo(root / "secret.jpg", 1)
    write_photo(root / "ok.jpg", 2)
    os.chmod(p, 0)
    try:
        with open_library(tmp_path / "lib", models) as lib:
            s = lib.index_roots([str(root)])
            assert s.added == 1 and s.failed == 1
            assert "permission" in lib.catalog.failures()[0].reason.lower()
    finally:
        os.chmod(p, 0o644)


def test_photo_tree_is_byte_identical_after_index_and_watch_session(tmp_path, models):
    root = tmp_path / "photos"
    root.mkdir()
    build_corpus(root)
    for i in range(10):
        write_photo(root / "album" / f"a{i}.jpg", 100 + i)
    before = tree_digest(root)
    with open_library(tmp_path / "lib", models) as lib:
        lib.index_roots([str(root)])
        w = LibraryWatcher(lib, debounce_s=0.1, batch_window_s=0.2, root_check_s=0.3).start()
        try:
            assert w.wait_idle(30, settle_s=0.3)
            new = write_photo(tmp_path / "incoming.jpg", 999)
            os.replace(new, root / "album" / "incoming.jpg")  # one event for the watcher to index
            assert w.wait_idle(30, settle_s=0.6)
            assert lib.catalog.photo_by_path(str(root / "album" / "incoming.jpg")) is not None
            lib.index_roots()
        finally:
            w.stop()
    after = tree_digest(root)
    added = str(root / "album" / "incoming.jpg")
    assert added in after
    del after[added]
    # Same files, same bytes, same mtimes; nothing (thumbnails, sidecars, locks) written into the tree.
    changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
    changed.discard(str(root / "album"))  # the folder's own mtime changed when we added a file to it
    assert not changed, sorted(changed)
