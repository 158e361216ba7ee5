"""The shared real face photos (deepface's public verification set) and who is who in them.

They are used in place from ``../shared/data/faces-deepface`` (never copied into the repository); tests copy
the few they need into their own temporary photo folders, which stand for a user's photos.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

_HERE = Path(__file__).resolve()
FACES = Path(os.environ.get("RETLLM_FACES_DIR", _HERE.parents[2] / "shared" / "data" / "faces-deepface"))
if not FACES.is_dir():
    FACES = Path("/work/shared/data/faces-deepface")

needs_faces = pytest.mark.skipif(
    not (FACES / "master.csv").is_file(), reason=f"the shared face photos are not in {FACES}"
)


def identities() -> dict[str, int]:
    """photo name → identity (the connected 'same person' pairs of master.csv)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            x = parent[x]
        return x

    with open(FACES / "master.csv", newline="") as f:
        for r in csv.DictReader(f):
            find(r["file_x"]), find(r["file_y"])
            if r["Decision"] == "Yes":
                parent[find(r["file_x"])] = find(r["file_y"])
    roots = sorted({find(p) for p in parent})
    return {p: roots.index(find(p)) for p in parent}


def by_identity() -> list[list[str]]:
    """The labelled photos grouped by person, largest group first."""
    groups: dict[int, list[str]] = {}
    for name, who in identities().items():
        groups.setdefault(who, []).append(name)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: (-len(g), g[0]))


def copy_photos(names: list[str], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for n in names:
        dest = folder / n
        shutil.copyfile(FACES / n, dest)
        out.append(dest)
    return out


def side_by_side(a: str, b: str, dest: Path, height: int = 700) -> Path:
    """A 'photo of two people': two of the shared photos next to each other."""
    imgs = []
    for n in (a, b):
        im = Image.open(FACES / n).convert("RGB")
        imgs.append(im.resize((round(im.width * height / im.height), height)))
    out = Image.new("RGB", (sum(i.width for i in imgs) + 40, height), (128, 128, 128))
    x = 0
    for im in imgs:
        out.paste(im, (x, 0))
        x += im.width + 40
    dest.parent.mkdir(parents=True, exist_ok=True)
    out.save(dest, quality=92)
    return dest


def distant_face(name: str, dest: Path, box_px: int, canvas: tuple[int, int] = (900, 650)) -> Path:
    """A photo where the person of ``name`` stands far away: the photo shrunk so that the face detector's box
    around the face is about ``box_px`` wide, pasted into a larger grey scene."""
    from retllm_desktop.models.faces import FaceModel

    with Image.open(FACES / name) as im:
        full = im.convert("RGB")
    with FaceModel() as model:
        face = max(model.find(full), key=lambda f: f.box[2] - f.box[0])
    k = box_px / ((face.box[2] - face.box[0]) * full.width)
    small = full.resize(
        (max(1, round(full.width * k)), max(1, round(full.height * k))), Image.Resampling.LANCZOS
    )
    scene = Image.new("RGB", canvas, (118, 124, 120))
    scene.paste(small, ((canvas[0] - small.width) // 2, (canvas[1] - small.height) // 3))
    dest.parent.mkdir(parents=True, exist_ok=True)
    scene.save(dest, quality=94)
    return dest
