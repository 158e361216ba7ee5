"""The index run tells the truth: counts add up, special files are listed as skipped (never opened, never
silent), and library warnings (PIL's "Corrupt EXIF data") go to the log file, not the terminal."""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path

from .conftest import make_photo
from .test_cli import run


def _adds_up(s: dict) -> bool:
    return s["added"] + s["updated"] + s["moved"] + s["unchanged"] + s["offline"] == s["total"]


def test_counts_add_up_on_a_rerun_with_bad_files(tmp_path: Path, clip_models_dir: Path) -> None:
    photos = tmp_path / "photos"
    for i in range(10):
        make_photo(photos / f"p{i}.jpg", seed=700 + i)
    for i in range(3):
        (photos / f"bad{i}.jpg").write_bytes(b"not an image %d" % i)
    args = ["--library", str(tmp_path / "lib"), "--models", str(clip_models_dir), "--threads", "1", "--json"]
    first = json.loads(run("index", *args, str(photos)).stdout)
    assert (first["added"], first["failed"], first["unchanged"], first["total"]) == (10, 3, 0, 10)
    again = json.loads(run("index", *args).stdout)
    # unchanged failures are not retried (status lists them); they are not "unchanged photos" either
    assert (again["added"], again["failed"], again["unchanged"], again["total"]) == (0, 0, 10, 10)
    (photos / "p0.jpg").unlink()
    make_photo(photos / "p1.jpg", seed=9999)  # changed content
    third = json.loads(run("index", *args).stdout)
    assert (third["removed"], third["updated"], third["unchanged"], third["total"]) == (1, 1, 8, 9)
    assert all(_adds_up(s) for s in (first, again, third))


def test_special_files_are_listed_as_skipped(tmp_path: Path, clip_models_dir: Path) -> None:
    photos = tmp_path / "photos"
    make_photo(photos / "album" / "ok.jpg", seed=1)
    os.mkfifo(photos / "pipe.jpg")  # opening it would block forever
    os.symlink(photos / "nowhere.jpg", photos / "dangling.jpg")
    os.symlink(photos / "loop.jpg", photos / "loop.jpg")
    os.symlink(photos, photos / "album" / "back-to-top")
    args = ["--library", str(tmp_path / "lib"), "--models", str(clip_models_dir), "--threads", "1"]
    for _ in range(2):  # the same on a re-run: listed, never counted as failed
        s = json.loads(run("index", *args, "--json", str(photos)).stdout)
        assert (s["added"] + s["unchanged"], s["failed"], s["skipped"]) == (1, 0, 4)
    st = json.loads(run("status", *args, "--json").stdout)
    assert st["failures"] == 0 and st["failed_files"] == [] and st["skipped"] == 4
    reasons = {Path(f["path"]).name: f["reason"] for f in st["skipped_files"]}
    assert reasons["pipe.jpg"] == "skipped: a named pipe (FIFO), not a photo file"
    assert reasons["dangling.jpg"].startswith("skipped: dangling symlink")
    assert reasons["loop.jpg"] == "skipped: symlink loop"
    assert "already scanned" in reasons["back-to-top"]
    text = run("status", *args).stdout
    assert "skipped (not photo files): 4" in text
    assert sum(line.startswith("  skipped: ") for line in text.splitlines()) == 4


def test_library_warnings_go_to_the_log_not_the_terminal(tmp_path: Path, clip_models_dir: Path) -> None:
    from PIL import Image

    photos = tmp_path / "photos"
    src = make_photo(tmp_path / "src.jpg", seed=3)
    buf = io.BytesIO()
    Image.open(src).save(buf, format="JPEG")
    jpg = buf.getvalue()
    app1 = b"Exif\x00\x00" + b"MM\x00\x2a\x00\x00\x00\x08" + b"\xff\xff" + bytes(range(60))
    seg = b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1
    photos.mkdir()
    (photos / "corrupt_exif.jpg").write_bytes(jpg[:2] + seg + jpg[2:])
    log = tmp_path / "logs" / "retllm.log"
    args = ["--library", str(tmp_path / "lib"), "--models", str(clip_models_dir), "--threads", "1"]
    r = run("index", *args, str(photos), env={"RETLLM_LOG": str(log)})
    assert r.returncode == 0 and "1 added" in r.stdout
    assert "EXIF" not in r.stderr and "Warning" not in r.stderr, r.stderr
    assert "Corrupt EXIF" in log.read_text()
