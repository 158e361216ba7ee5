"""The face pass on real faces: detection recall and cost (HOG vs CNN), verification, grouping, face size.

Data: the deepface project's public face-verification images in ``../shared/data/faces-deepface`` with its
``master.csv`` (300 pairs over 25 photos of 9 people, same person or not), used in place. Models: dlib's
published weights from the ``face_recognition_models`` package (real, not synthetic).

Reports
* detection: for HOG (several detector sizes / upsampling) and the CNN (mmod) detector, the share of the 25
  labelled photos where a face was found, faces found in the group photos, and ms per photo;
* verification: accuracy of "same person" at each distance threshold on the 300 pairs, the best threshold,
  and the ROC point (true / false positive rate) at the thresholds the app uses;
* grouping: pairwise precision ("purity": pairs put together that are the same person) and recall
  ("completeness": same-person pairs put together), BCubed F, and people formed — for Chinese whispers and
  for Immich's rule (nearest face with a person within a distance; new person from min_faces matches),
  at several thresholds, and for the app's own incremental grouping (people.group_faces) on a real catalog;
* face size: accuracy when each photo is shrunk so the face is N px wide (what "too small" means);
* cost of the face pass per photo on this machine: a photo without a face, one face, a group.

The run waits for a quiet machine (bench/_common.quiet_start) and saves the load at its start and end;
the CNN's cost is also given as a multiple of HOG's in the same run, which holds on a loaded machine too.

    python bench/bench_faces.py [--quick]
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from _common import load_average, peak_rss_mb, percentiles, quiet_start, save  # noqa: E402
from PIL import Image  # noqa: E402

from retllm_desktop.imaging import load_rgb  # noqa: E402
from retllm_desktop.models.faces import MIN_FACE_PX, FaceModel  # noqa: E402
from retllm_desktop.people import chinese_whispers  # noqa: E402

FACES = Path(
    os.environ.get("RETLLM_FACES_DIR", Path(__file__).resolve().parents[2] / "shared/data/faces-deepface")
)
if not FACES.is_dir():
    FACES = Path("/work/shared/data/faces-deepface")
GROUPS = ("couple.jpg", "selfie-many-people.jpg")


def labelled() -> tuple[list[str], dict[str, int], list[tuple[str, str, bool]]]:
    """(photos, photo → identity, pairs) from master.csv; identities are the connected 'Yes' pairs."""
    rows = list(csv.DictReader(open(FACES / "master.csv")))
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            x = parent[x]
        return x

    for r in rows:
        find(r["file_x"]), find(r["file_y"])
        if r["Decision"] == "Yes":
            parent[find(r["file_x"])] = find(r["file_y"])
    photos = sorted(parent, key=lambda s: int("".join(c for c in s if c.isdigit()) or 0))
    roots = sorted({find(p) for p in photos})
    ident = {p: roots.index(find(p)) for p in photos}
    pairs = [(r["file_x"], r["file_y"], r["Decision"] == "Yes") for r in rows]
    return photos, ident, pairs


def decode(name: str, side: int = 2048) -> Image.Image:
    img = load_rgb(FACES / name, min_side=side // 2)
    if max(img.size) > side:
        img.thumbnail((side, side), Image.Resampling.LANCZOS)
    return img


def detection(photos: list[str], settings: list[dict]) -> dict:
    images = {p: decode(p) for p in [*photos, *GROUPS]}
    out = {}
    for cfg in settings:
        model = FaceModel(**cfg)
        model.find(images[photos[0]])  # load
        found, times, group = 0, [], {}
        for p in photos:
            t = time.perf_counter()
            faces = model.find(images[p])
            times.append(time.perf_counter() - t)
            found += int(any(f.embedding is not None for f in faces))
        for g in GROUPS:
            group[g] = len(model.find(images[g]))
        name = f"{cfg['detector']}-{cfg.get('detect_side', 1024)}-up{cfg.get('upsample', 1)}"
        out[name] = {
            "photos_with_face": found,
            "of": len(photos),
            "recall": round(found / len(photos), 3),
            "faces_in_group_photos": group,
            "ms_per_photo": percentiles(times),
        }
        print(name, out[name]["recall"], group, out[name]["ms_per_photo"]["p50_ms"], flush=True)
        model.close()
    return out


def embeddings(photos: list[str], model: FaceModel) -> dict[str, np.ndarray]:
    """The largest recognisable face of each labelled photo."""
    out = {}
    for p in photos:
        faces = [f for f in model.find(decode(p)) if f.embedding is not None]
        if faces:
            out[p] = faces[0].embedding
    return out


def verification(emb: dict[str, np.ndarray], pairs: list[tuple[str, str, bool]], marks: list[float]) -> dict:
    d = np.array([np.linalg.norm(emb[a] - emb[b]) for a, b, _ in pairs if a in emb and b in emb])
    same = np.array([s for a, b, s in pairs if a in emb and b in emb])
    table = {}
    for t in np.round(np.arange(0.30, 0.81, 0.05), 2):
        pred = d <= t
        table[f"{t:.2f}"] = round(float((pred == same).mean()), 4)
    best = max(table, key=lambda k: (table[k], -abs(float(k) - 0.5)))
    roc = {}
    for t in marks:
        pred = d <= t
        roc[f"{t:.2f}"] = {
            "accuracy": round(float((pred == same).mean()), 4),
            "tpr": round(float(pred[same].mean()), 4),
            "fpr": round(float(pred[~same].mean()), 4),
        }
    return {
        "pairs": int(len(d)),
        "same": int(same.sum()),
        "accuracy_by_threshold": table,
        "best_threshold": float(best),
        "best_accuracy": table[best],
        "roc_points": roc,
        "same_distance": {"max": round(float(d[same].max()), 3), "mean": round(float(d[same].mean()), 3)},
        "different_distance": {
            "min": round(float(d[~same].min()), 3),
            "mean": round(float(d[~same].mean()), 3),
        },
    }


def pair_scores(labels: list[int], truth: list[int]) -> dict:
    """Pairwise precision (purity) / recall (completeness) and BCubed F of a grouping (-1 = no person)."""
    n = len(labels)
    tp = fp = fn = 0
    for i in range(n):
        for j in range(i + 1, n):
            together = labels[i] >= 0 and labels[i] == labels[j]
            same = truth[i] == truth[j]
            tp += together and same
            fp += together and not same
            fn += same and not together
    bp, br = [], []
    for i in range(n):
        mine = {j for j in range(n) if labels[i] >= 0 and labels[j] == labels[i]} or {i}
        theirs = {j for j in range(n) if truth[j] == truth[i]}
        bp.append(len(mine & theirs) / len(mine))
        br.append(len(mine & theirs) / len(theirs))
    p, r = statistics.mean(bp), statistics.mean(br)
    return {
        "purity": round(tp / (tp + fp), 4) if tp + fp else 1.0,
        "completeness": round(tp / (tp + fn), 4) if tp + fn else 1.0,
        "bcubed_f": round(2 * p * r / (p + r), 4),
        "people": len({x for x in labels if x >= 0}),
        "mixed_people": sum(
            1
            for lab in {x for x in labels if x >= 0}
            if len({truth[i] for i in range(n) if labels[i] == lab}) > 1
        ),
        "unplaced": sum(1 for x in labels if x < 0),
    }


def immich_rule(vecs: np.ndarray, max_distance: float, min_faces: int) -> list[int]:
    """Immich's facial-recognition job, in order: a face with ``min_faces`` matches (itself included) within
    ``max_distance`` is "core"; it takes the person of a match, else of the nearest face with a person
    within the distance, else founds one; non-core faces are deferred and then only join a person."""
    n = len(vecs)
    d = np.linalg.norm(vecs[:, None, :] - vecs[None, :, :], axis=2)
    person = [-1] * n
    nxt = 0
    deferred = []
    for stage in (0, 1):
        for i in range(n) if stage == 0 else deferred:
            near = [j for j in np.argsort(d[i]) if d[i, j] <= max_distance]
            core = len(near) >= min_faces
            if not core and stage == 0:
                deferred.append(i)
                continue
            pid = next((person[j] for j in near[:min_faces] if person[j] >= 0), -1)
            if pid < 0:
                with_person = [j for j in near if person[j] >= 0]
                pid = person[with_person[0]] if with_person else -1
            if pid < 0 and core:
                pid, nxt = nxt, nxt + 1
            person[i] = pid
    return person


def grouping(emb: dict[str, np.ndarray], ident: dict[str, int], thresholds: list[float]) -> dict:
    names = sorted(emb)
    vecs = np.stack([emb[n] for n in names])
    truth = [ident[n] for n in names]
    out: dict[str, dict] = {"faces": len(names), "people": len(set(truth))}
    for t in thresholds:
        out[f"chinese_whispers@{t:.2f}"] = pair_scores(chinese_whispers(vecs, t).tolist(), truth)
        for m in (1, 2, 3):
            out[f"immich@{t:.2f},min_faces={m}"] = pair_scores(immich_rule(vecs, t, m), truth)
    return out


def app_grouping(photos: list[str], ident: dict[str, int]) -> dict:
    """The app's own pipeline on a real catalog: index half the photos, then the rest (incremental)."""
    from retllm_desktop.devtools.synthetic_clip import write_synthetic_clip
    from retllm_desktop.library import Library

    with tempfile.TemporaryDirectory() as tmp:
        tmp_p = Path(tmp)
        models = tmp_p / "models"
        write_synthetic_clip(models, "tiny", seed=0)
        first, second = tmp_p / "photos" / "a", tmp_p / "photos" / "b"
        first.mkdir(parents=True)
        second.mkdir(parents=True)
        for i, p in enumerate(photos):
            (first if i % 2 == 0 else second).joinpath(p).symlink_to(FACES / p)
        with Library(tmp_p / "lib", models_dir=models, threads=1, read_text=False) as lib:
            t = time.perf_counter()
            lib.index_roots([str(first)])
            lib.index_roots([str(second)])
            seconds = time.perf_counter() - t
            people = lib.people(min_faces=1)
        label = {}
        for k, person in enumerate(people):
            for path in person["photos"]:
                label[Path(path).name] = k
        names = sorted(photos)
        scores = pair_scores([label.get(n, -1) for n in names], [ident[n] for n in names])
        scores["index_seconds"] = round(seconds, 1)
        return scores


def face_size(
    photos: list[str], pairs: list[tuple[str, str, bool]], model: FaceModel, threshold: float
) -> dict:
    """Accuracy on the pairs when every photo is shrunk so that its face is ``s`` px wide."""
    base = {}
    for p in photos:
        img = decode(p)
        faces = [f for f in model.find(img) if f.embedding is not None]
        if faces:
            base[p] = (img, faces[0])
    import dlib

    out = {}
    for s in (20, 30, 40, 50, 60, 70, 80, 100, 120):
        emb = {}
        for p, (img, face) in base.items():
            w = (face.box[2] - face.box[0]) * img.size[0]
            k = min(1.0, s / w)
            small = img.resize(
                (max(1, round(img.size[0] * k)), max(1, round(img.size[1] * k))), Image.Resampling.BILINEAR
            )
            W, H = small.size
            rect = dlib.rectangle(
                int(face.box[0] * W), int(face.box[1] * H), int(face.box[2] * W), int(face.box[3] * H)
            )
            rgb = np.ascontiguousarray(np.asarray(small))
            model.load()
            shape = model._landmarks(rgb, rect)
            emb[p] = np.asarray(model._resnet.compute_face_descriptor(rgb, shape), np.float32)
        d = np.array([np.linalg.norm(emb[a] - emb[b]) for a, b, _ in pairs if a in emb and b in emb])
        same = np.array([x for a, b, x in pairs if a in emb and b in emb])
        pred = d <= threshold
        out[f"{s}px"] = {
            "accuracy": round(float((pred == same).mean()), 4),
            "tpr": round(float(pred[same].mean()), 4),
            "fpr": round(float(pred[~same].mean()), 4),
        }
        print("face size", s, out[f"{s}px"], flush=True)
    return out


def cost(model: FaceModel, rounds: int) -> dict:
    """ms of the face pass's model step per photo (decode excluded), no face / one face / a group."""
    model.find(decode("img1.jpg"))  # load the models outside the timings
    from skimage import data as skdata  # real photographs without faces (scikit-image's wheel)

    no_face = Image.fromarray(skdata.coffee()).resize((1600, 1200))
    cases = {"no_face": no_face, "one_face": decode("img1.jpg"), "group": decode("selfie-many-people.jpg")}
    out = {}
    for name, img in cases.items():
        model.find(img)
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            faces = model.find(img)
            times.append(time.perf_counter() - t)
        out[name] = {"faces": len(faces), "size": list(img.size), **percentiles(times)}
    return out


def detector_choice(detection: dict, hog_cost: dict, cnn_cost: dict, hog: str, cnn: str) -> dict:
    """HOG against the CNN in this one run: recall, faces in the group photos, and the CNN's cost as a
    multiple of HOG's (a ratio holds on a loaded machine where the absolute ms do not)."""
    h, c = detection[hog], detection[cnn]
    return {
        "hog": hog,
        "cnn": cnn,
        "recall": {"hog": h["recall"], "cnn": c["recall"]},
        "faces_in_group_photos": {"hog": h["faces_in_group_photos"], "cnn": c["faces_in_group_photos"]},
        "cnn_over_hog_ms_labelled_p50": round(c["ms_per_photo"]["p50_ms"] / h["ms_per_photo"]["p50_ms"], 2),
        "cnn_over_hog_ms_by_case_p50": {
            k: round(cnn_cost[k]["p50_ms"] / hog_cost[k]["p50_ms"], 2) for k in hog_cost if k in cnn_cost
        },
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer detector settings and rounds")
    args = ap.parse_args()
    if not FACES.is_dir():
        print(f"face photos not found in {FACES}", file=sys.stderr)
        return 1
    start_load = quiet_start()  # RETLLM_BENCH_MAX_LOAD / RETLLM_BENCH_WAIT_S (bench/_common.py)
    photos, ident, pairs = labelled()
    t0 = time.time()
    settings = [
        {"detector": "hog", "detect_side": 1024, "upsample": 1},
        {"detector": "hog", "detect_side": 1600, "upsample": 1},
        {"detector": "hog", "detect_side": 800, "upsample": 1},
        {"detector": "hog", "detect_side": 1024, "upsample": 0},
        {"detector": "cnn", "detect_side": 800, "upsample": 0},
        {"detector": "cnn", "detect_side": 1024, "upsample": 0},
    ]
    if args.quick:
        settings = [settings[0], settings[4]]  # HOG as the app runs it, the cheaper CNN setting
    result: dict = {"data": str(FACES), "photos": len(photos), "identities": len(set(ident.values()))}
    result["detection"] = detection(photos, settings)
    model = FaceModel()
    emb = embeddings(photos, model)
    from retllm_desktop import people

    result["verification"] = verification(emb, pairs, [0.4, 0.45, 0.5, 0.55, 0.6])
    result["grouping"] = grouping(emb, ident, [0.4, 0.45, 0.5, 0.55, 0.6])
    result["app_grouping"] = {
        "join_distance": people.JOIN_DISTANCE,
        "link_distance": people.LINK_DISTANCE,
        "min_faces": people.MIN_FACES,
        **app_grouping(photos, ident),
    }
    # Baseline in the same run: one view per face (the plain ResNet vector; what the app stored before).
    with FaceModel(views=1) as one_view:
        emb1 = embeddings(photos, one_view)
        result["one_view_baseline"] = {
            "verification": verification(emb1, pairs, [0.5, 0.55, 0.6]),
            "grouping": grouping(emb1, ident, [0.6]),
            "cost_ms": cost(one_view, 3 if args.quick else 7),
        }
    result["views"] = model.views
    result["face_size"] = face_size(photos, pairs, model, people.JOIN_DISTANCE)
    result["min_face_px"] = MIN_FACE_PX  # the app keeps smaller faces out of people
    rounds = 3 if args.quick else 7
    result["cost_ms"] = cost(model, rounds)
    cnn_cfg = settings[-1]  # the CNN setting measured last above
    with FaceModel(**cnn_cfg) as cnn_model:
        result["cost_ms_cnn"] = cost(cnn_model, rounds)
    result["detector_choice"] = detector_choice(
        result["detection"],
        result["cost_ms"],
        result["cost_ms_cnn"],
        "hog-1024-up1",
        f"cnn-{cnn_cfg['detect_side']}-up{cnn_cfg['upsample']}",
    )
    print("detector choice", result["detector_choice"], flush=True)
    result["seconds"] = round(time.time() - t0, 1)
    result["peak_rss_mb"] = peak_rss_mb()
    # The CNN/HOG ratios above hold on a loaded machine; the absolute ms only on a quiet one.
    result["measured_quiet"] = max(start_load[0], load_average()[0]) <= 1.5
    save("faces", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
