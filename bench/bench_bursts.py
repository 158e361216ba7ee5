"""Near-duplicate folding: how many burst shots fold, how many distinct scenes fold by mistake.

    python bench/bench_bursts.py [--models DIR --clip-model NAME] [--sizes tiny,realistic]

Bursts are generated from real photographs (scikit-image's bundled ``skimage/data``): shifted,
re-exposed, cropped, zoomed and recompressed shots of one scene (:mod:`retllm_desktop.devtools.bursts`).
Distinct scenes are the other photographs and the halves of the larger ones. For each CLIP model the
script measures the cosine of every burst pair and every distinct pair, and runs the search's folding
(embedding + a 5 s time window) over a timeline where a burst's shots are 0.2-1 s apart and the next scene
is shot 1-30 s later, for thresholds 0.80-1.00; the threshold is the one with the most folding at <= 1 %
false folds. Baselines in the same run: no folding, and folding by the embedding alone.

Every shot also knows where and with what it was taken, as a trip's photos do: the scenes are shot around
Lisbon (a burst's shots within 10 m of each other, one scene in six without GPS, one in seven without a camera
model). Two kinds of *twins* are added, copies of a burst's embeddings taken at the very same seconds: one
third of the scenes again in Kyoto, Nairobi or Valparaíso (same camera), one quarter again by another camera
at the same spot. Folding by embedding and time folds every twin into its original; the place and camera test
(``near_duplicates.could_be_one_sequence``) must fold none, at the same fold rate on the original bursts.
The threshold is still chosen on embedding + time alone (as before the place test), so runs compare.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import quiet_start, save, synthetic_models  # noqa: E402
from retllm_desktop import near_duplicates  # noqa: E402
from retllm_desktop.devtools.bursts import shot_set  # noqa: E402
from retllm_desktop.models.clip.towers import ClipModel, find_clip_model  # noqa: E402

MAX_FALSE_FOLDS = 0.01
LISBON = (38.7223, -9.1393)
FAR_AWAY = {"Kyoto": (35.0116, 135.7681), "Nairobi": (-1.2921, 36.8219), "Valparaiso": (-33.0472, -71.6127)}
CAMERA, OTHER_CAMERA = "Canon EOS R6", "iPhone 15 Pro"


def metres_to_deg(lat: float, dn_m: float, de_m: float) -> tuple[float, float]:
    return dn_m / 111_320.0, de_m / (111_320.0 * float(np.cos(np.radians(lat))))


def trip(scenes: list[str], rng: np.random.Generator) -> list[near_duplicates.Where]:
    """Where each shot was taken: each scene somewhere within ~3 km of Lisbon's centre, its shots within
    10 m of each other; every 6th scene without GPS, every 7th without a camera model."""
    order = list(dict.fromkeys(scenes))
    spot: dict[str, tuple[float | None, float | None, str | None]] = {}
    for n, sc in enumerate(order):
        dlat, dlon = metres_to_deg(LISBON[0], *rng.uniform(-3000, 3000, size=2))
        lat, lon = (None, None) if n % 6 == 5 else (LISBON[0] + dlat, LISBON[1] + dlon)
        spot[sc] = (lat, lon, None if n % 7 == 6 else CAMERA)
    out = []
    for sc in scenes:
        lat, lon, cam = spot[sc]
        if lat is not None and lon is not None:
            dlat, dlon = metres_to_deg(lat, *rng.uniform(-5, 5, size=2))
            lat, lon = lat + dlat, lon + dlon
        out.append(near_duplicates.Where(lat, lon, cam.casefold() if cam else None))
    return out


def add_twins(
    vectors: np.ndarray, scenes: list[str], times: list[float], wheres: list[near_duplicates.Where]
) -> tuple[np.ndarray, list[str], list[float], list[near_duplicates.Where], list[bool]]:
    """Copies of some bursts at the same seconds: elsewhere on Earth, or by another camera on the spot."""
    order = list(dict.fromkeys(scenes))
    extra_v, extra_s, extra_t, extra_w = [], [], [], []
    far = list(FAR_AWAY.items())
    for n, sc in enumerate(order):
        idx = [i for i, s in enumerate(scenes) if s == sc]
        first = wheres[idx[0]]
        if n % 3 == 0 and first.lat is not None:  # the same moment in another city, same camera model
            city, (lat, lon) = far[(n // 3) % len(far)]
            for i in idx:
                extra_v.append(vectors[i])
                extra_s.append(f"{sc}@{city}")
                extra_t.append(times[i])
                extra_w.append(near_duplicates.Where(lat, lon, wheres[i].camera))
        if n % 4 == 1 and first.camera is not None:  # another camera beside this one
            for i in idx:
                extra_v.append(vectors[i])
                extra_s.append(f"{sc}#other-camera")
                extra_t.append(times[i])
                extra_w.append(near_duplicates.Where(wheres[i].lat, wheres[i].lon, OTHER_CAMERA.casefold()))
    twin = [False] * len(scenes) + [True] * len(extra_s)
    return (
        np.concatenate([vectors, np.stack(extra_v)]) if extra_v else vectors,
        scenes + extra_s,
        times + extra_t,
        wheres + extra_w,
        twin,
    )


def embed(clip: ClipModel, images: list) -> np.ndarray:
    vecs = []
    for start in range(0, len(images), 16):
        batch = np.stack([clip.preprocess(img) for img in images[start : start + 16]])
        vecs.append(clip.encode_images(batch))
    v = np.concatenate(vecs).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def pair_stats(values: np.ndarray) -> dict:
    return {
        "pairs": int(values.size),
        "min": round(float(values.min()), 4),
        "p5": round(float(np.percentile(values, 5)), 4),
        "median": round(float(np.median(values)), 4),
        "p95": round(float(np.percentile(values, 95)), 4),
        "max": round(float(values.max()), 4),
    }


def timeline(scenes: list[str], rng: np.random.Generator) -> list[float]:
    """Capture times: a burst's shots 0.2-1 s apart, the next scene 1-30 s after the previous burst."""
    order = list(dict.fromkeys(scenes))
    rng.shuffle(order)
    shot_times: dict[str, list[float]] = {}
    t0 = 0.0
    for s in order:
        n = scenes.count(s)
        steps = np.concatenate([[0.0], rng.uniform(0.2, 1.0, size=n - 1)])
        shot_times[s] = list(t0 + np.cumsum(steps))
        t0 = shot_times[s][-1] + float(rng.uniform(1.0, 30.0))
    seen: dict[str, int] = {}
    times = []
    for s in scenes:
        times.append(shot_times[s][seen.get(s, 0)])
        seen[s] = seen.get(s, 0) + 1
    return times


def fold_outcome(heads: list[int], scenes: list[str]) -> dict:
    """Folded = joined a group; a false fold joins a group headed by another scene."""
    n_burst = sum(1 for i, s in enumerate(scenes) if scenes.index(s) != i)  # shots beyond the first per scene
    folded = sum(1 for i, h in enumerate(heads) if h != i and scenes[h] == scenes[i])
    false = sum(1 for i, h in enumerate(heads) if h != i and scenes[h] != scenes[i])
    return {
        "results_shown": len(set(heads)),
        "fold_rate": round(folded / max(n_burst, 1), 4),
        "false_folds": false,
        "false_fold_rate": round(false / len(heads), 4),
    }


def measure(clip: ClipModel, shots: list, seed: int) -> dict:
    vectors = embed(clip, [s.image for s in shots])
    scenes = [s.scene for s in shots]
    photo = [s.scene.split("-")[0] for s in shots]
    sims = vectors @ vectors.T
    iu = np.triu_indices(len(shots), 1)
    same = np.array([scenes[i] == scenes[j] for i, j in zip(*iu, strict=True)])
    same_photo = np.array([photo[i] == photo[j] for i, j in zip(*iu, strict=True)])
    s = sims[iu]
    distinct = s[~same]
    rng = np.random.default_rng(seed)
    times = timeline(scenes, rng)
    wheres = trip(scenes, rng)
    order = rng.permutation(len(shots))  # a ranking's order, not the shooting order
    v, t, sc = vectors[order], [times[i] for i in order], [scenes[i] for i in order]
    w = [wheres[i] for i in order]
    window = near_duplicates.DEFAULT_WINDOW_S
    curve = {}
    for step in range(160, 201):  # 0.800 … 1.000
        th = step / 200
        curve[f"{th:.3f}"] = fold_outcome(near_duplicates.fold(v, t, th, window), sc)
    # the threshold: the most folding that keeps false folds at or below MAX_FALSE_FOLDS of all shots
    ok = [k for k, o in curve.items() if o["false_fold_rate"] <= MAX_FALSE_FOLDS]
    threshold = float(max(ok, key=lambda k: (curve[k]["fold_rate"], float(k))))
    # the same shots plus their twins (same seconds, other city or other camera), again in a ranking's order
    xv, xs, xt, xw, xtwin = add_twins(vectors, scenes, times, wheres)
    xo = rng.permutation(len(xs))
    xv, xs, xt, xw, xtwin = (
        xv[xo],
        [xs[i] for i in xo],
        [xt[i] for i in xo],
        [xw[i] for i in xo],
        [xtwin[i] for i in xo],
    )

    def with_twins(heads: list[int]) -> dict:
        out = fold_outcome(heads, xs)
        originals = [i for i, tw in enumerate(xtwin) if not tw]
        out["false_folds_involving_twins"] = sum(
            1 for i, h in enumerate(heads) if h != i and xs[h] != xs[i] and (xtwin[i] or xtwin[h])
        )
        folded = sum(1 for i in originals if heads[i] != i and xs[heads[i]] == xs[i])
        n_burst = sum(1 for i in originals if xs.index(xs[i]) != i)
        out["fold_rate_original_bursts"] = round(folded / max(n_burst, 1), 4)
        return out

    default_th = near_duplicates.DEFAULT_THRESHOLD
    by_variant: dict[str, list[float]] = {}
    base = {sc_: i for i, sc_ in enumerate(scenes) if shots[i].variant == "base"}
    for i, shot in enumerate(shots):
        if shot.variant != "base":
            by_variant.setdefault(shot.variant, []).append(float(sims[i, base[shot.scene]]))
    return {
        "model": clip.name,
        "embed_dim": int(vectors.shape[1]),
        "burst_pairs": pair_stats(s[same]),
        "distinct_photographs": pair_stats(s[~same_photo]),
        "parts_of_one_photograph": pair_stats(s[same_photo & ~same]),
        "cosine_to_base_by_variant": {k: round(float(np.mean(x)), 4) for k, x in sorted(by_variant.items())},
        "threshold": threshold,
        "threshold_rule": f"highest fold rate with false folds <= {MAX_FALSE_FOLDS:.0%} of shots (embedding + time)",
        "burst_pairs_at_threshold": round(float((s[same] >= threshold).mean()), 4),
        "distinct_pairs_at_threshold": round(float((distinct >= threshold).mean()), 5),
        "baseline_no_folding": fold_outcome(list(range(len(sc))), sc),
        "embedding_only": fold_outcome(near_duplicates.fold(v, [0.0] * len(t), threshold, 1.0), sc),
        "embedding_and_time": curve[f"{threshold:.3f}"],
        "embedding_time_place_camera": fold_outcome(near_duplicates.fold(v, t, threshold, window, w), sc),
        "curve_embedding_and_time": {k: curve[k] for k in list(curve)[::4]},
        "at_default_threshold": {
            "threshold": default_th,
            "embedding_and_time": fold_outcome(near_duplicates.fold(v, t, default_th, window), sc),
            "embedding_time_place_camera": fold_outcome(
                near_duplicates.fold(v, t, default_th, window, w), sc
            ),
        },
        "with_twins": {
            "shots": len(xs),
            "twin_shots": int(sum(xtwin)),
            **{
                name: {
                    "threshold": th,
                    "embedding_and_time": with_twins(near_duplicates.fold(xv, xt, th, window)),
                    "embedding_time_place_camera": with_twins(near_duplicates.fold(xv, xt, th, window, xw)),
                }
                for name, th in (("at_threshold", threshold), ("at_default_threshold", default_th))
            },
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, help="a models folder (default: synthetic models)")
    ap.add_argument("--clip-model", help="CLIP model name under <models>/clip/")
    ap.add_argument(
        "--sizes", default="tiny,realistic", help="synthetic CLIP sizes when --models is not given"
    )
    ap.add_argument("--burst", type=int, default=6, help="shots per burst")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    quiet_start()
    shots = shot_set(seed=args.seed, burst_size=args.burst)
    if not shots:
        sys.exit("scikit-image is needed for the real photographs: pip install -e '.[dev]'")
    dirs = (
        [find_clip_model(args.models, args.clip_model)]
        if args.models
        else [find_clip_model(synthetic_models(size)) for size in args.sizes.split(",")]
    )
    runs = []
    for d in dirs:
        with ClipModel(d, threads=2) as clip:
            runs.append(measure(clip, shots, args.seed))
    save(
        "bursts",
        {
            "shots": len(shots),
            "scenes": len({s.scene for s in shots}),
            "burst_size": args.burst,
            "window_s": near_duplicates.DEFAULT_WINDOW_S,
            "max_apart_m": near_duplicates.MAX_APART_M,
            "load_average_1min": round(os.getloadavg()[0], 2),
            "caveat": "random-weight (synthetic) CLIP models: the cosines are not those of a real model",
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
