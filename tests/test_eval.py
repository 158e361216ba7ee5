"""Evaluation harness: recall maths against hand-computed values, caption formats, end-to-end runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from retllm_desktop import cli
from retllm_desktop.errors import RetllmError
from retllm_desktop.eval import (
    i2t_recall,
    load_eval_set,
    protocol_caption_image,
    rank_desc,
    recall_from_rankings,
    run_eval,
    t2i_recall,
)

from .conftest import make_photo

# 6 captions x 3 images; caption c belongs to image c // 2.
SCORES = np.array(
    [
        [0.9, 0.1, 0.2],  # c0 (img0): img0 ranked 1st
        [0.3, 0.8, 0.1],  # c1 (img0): 2nd
        [0.5, 0.4, 0.6],  # c2 (img1): 3rd
        [0.1, 0.7, 0.2],  # c3 (img1): 1st
        [0.2, 0.3, 0.1],  # c4 (img2): 3rd
        [0.4, 0.2, 0.6],  # c5 (img2): 1st
    ]
)
TRUTH = [0, 0, 1, 1, 2, 2]


def test_recall_on_a_fixed_score_matrix_by_hand():
    # text->image: hits at rank 1 for c0, c3, c5; rank 2 for c1; rank 3 for c2, c4
    assert t2i_recall(SCORES, TRUTH, ks=(1, 2, 3)) == pytest.approx(
        {"R@1": 50.0, "R@2": 400 / 6, "R@3": 100.0}
    )
    # image->text, per image column:
    #   img0: c0 .9 > c2 .5 > c5 .4 > c1 .3 ... -> own caption c0 at rank 1
    #   img1: c1 .8 > c3 .7 > ...               -> own caption c3 at rank 2
    #   img2: c2 .6 = c5 .6 (tie: lower index first) -> own caption c5 at rank 2
    assert i2t_recall(SCORES, TRUTH, ks=(1, 2, 3)) == pytest.approx(
        {"R@1": 100 / 3, "R@2": 100.0, "R@3": 100.0}
    )
    assert rank_desc(SCORES.T)[2].tolist() == [2, 5, 0, 3, 1, 4]


def test_recall_from_rankings_and_protocol_mapping():
    assert protocol_caption_image(2) == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    rankings = [[3, 1, 2], [1, 2, 3], [2, 3, 1], [3, 2]]
    relevant = [1, 1, {1, 3}, 1]
    # first relevant hit: q0 at rank 2, q1 at 1, q2 at 2 (3 is relevant too), q3 never
    assert recall_from_rankings(rankings, relevant, ks=(1, 2, 10)) == {"R@1": 25.0, "R@2": 75.0, "R@10": 75.0}
    with pytest.raises(ValueError):
        recall_from_rankings([[1]], [1, 2])


def _images(folder: Path, n: int, seed: int = 0) -> list[str]:
    names = []
    for i in range(n):
        name = f"{1000 + i}.jpg"
        make_photo(folder / name, seed=seed + i, size=(96, 80))
        names.append(name)
    return names


CAPTION_WORDS = ["dog", "beach", "sunset", "car", "mountain", "cat", "person", "red", "blue", "green"]


def _tsv(path: Path, names: list[str], per_image: int = 5) -> Path:
    lines = []
    for i, n in enumerate(names):
        for j in range(per_image):
            lines.append(f"{n}#{j}\ta {CAPTION_WORDS[(i + j) % 10]} near a {CAPTION_WORDS[(3 * i + j) % 10]}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_caption_formats(tmp_path):
    imgs = tmp_path / "imgs"
    names = _images(imgs, 3)
    ds = load_eval_set(imgs, _tsv(tmp_path / "caps.tsv", names), "flickr30k")
    assert len(ds.images) == 3 and len(ds.captions) == 15 and ds.caption_image == protocol_caption_image(3)
    assert ds.images[1] == imgs / names[1]
    assert any("1000 images" in w for w in ds.warnings)  # not the standard split size
    assert load_eval_set(imgs, tmp_path / "caps.tsv", "flickr30k", limit=2).captions == ds.captions[:10]

    karpathy = {
        "images": [
            {
                "filename": n,
                "split": "test" if i < 2 else "train",
                "sentences": [{"raw": f"s{i}.{j}"} for j in range(6)],
            }
            for i, n in enumerate(names)
        ]
    }
    (tmp_path / "dataset_flickr30k.json").write_text(json.dumps(karpathy))
    ds = load_eval_set(imgs, tmp_path / "dataset_flickr30k.json", "coco")
    assert len(ds.images) == 2 and ds.captions[5] == "s1.0" and len(ds.captions) == 10  # first 5 of 6
    assert any("first 5" in w for w in ds.warnings)

    pairs = [{"image": names[0], "caption": ["x", "y"]}, {"image": names[2], "caption": "z"}]
    (tmp_path / "pairs.json").write_text(json.dumps(pairs))
    ds = load_eval_set(imgs, tmp_path / "pairs.json", "pairs")
    assert (ds.captions, ds.caption_image, ds.warnings) == (["x", "y", "z"], [0, 0, 1], [])

    with pytest.raises(RetllmError, match="needs 5 captions per image"):
        load_eval_set(imgs, tmp_path / "pairs.json", "flickr30k")
    (tmp_path / "missing.tsv").write_text("nope.jpg\ta caption\n")
    with pytest.raises(RetllmError, match="not found: .*nope.jpg"):
        load_eval_set(imgs, tmp_path / "missing.tsv", "pairs")
    (tmp_path / "bad.tsv").write_text("no tab here\n")
    with pytest.raises(RetllmError, match="bad.tsv:1"):
        load_eval_set(imgs, tmp_path / "bad.tsv", "pairs")


def test_run_eval_coarse_end_to_end_matches_the_score_matrix(tmp_path, clip_models_dir):
    """Coarse recall from the app's query path equals recall from the full CLIP score matrix."""
    from retllm_desktop.models.clip.towers import ClipModel, find_clip_model

    imgs = tmp_path / "imgs"
    names = _images(imgs, 4, seed=10)
    ds = load_eval_set(imgs, _tsv(tmp_path / "caps.tsv", names), "flickr30k")
    report = run_eval(ds, models_dir=clip_models_dir, modes=["coarse"], threads=1)
    (m,) = report.modes
    assert m.status == "ok" and m.queries == 20 and m.stage_ms_per_query > 0
    with ClipModel(find_clip_model(clip_models_dir), threads=1) as clip:
        img = clip.encode_image_paths([imgs / n for n in names])
        txt = clip.encode_texts(ds.captions)
    scores = txt @ img.T
    assert m.t2i == pytest.approx(t2i_recall(scores, ds.caption_image), abs=1e-9)
    assert m.i2t == pytest.approx(i2t_recall(scores, ds.caption_image), abs=1e-6)
    assert m.t2i["R@10"] == 100.0  # only 4 images
    assert report.index_seconds > 0 and "coarse" in report.table()
    assert not list(tmp_path.glob("**/catalog.db"))  # the throwaway library is gone


def test_fine_modes_unavailable_without_llm(tmp_path, clip_models_dir):
    imgs = tmp_path / "imgs"
    names = _images(imgs, 2)
    ds = load_eval_set(imgs, _tsv(tmp_path / "caps.tsv", names), "flickr30k")
    report = run_eval(ds, models_dir=clip_models_dir, threads=1)
    by_mode = {m.mode: m for m in report.modes}
    assert by_mode["coarse"].status == "ok"
    assert by_mode["fine"].status == by_mode["fine+second-look"].status == "unavailable"
    assert "unavailable" in report.table()


def test_cli_eval_all_modes_with_synthetic_llm(tmp_path, full_models_dir, capsys):
    imgs = tmp_path / "imgs"
    names = _images(imgs, 3, seed=20)
    caps = _tsv(tmp_path / "caps.tsv", names)
    argv = ["eval", "--models", str(full_models_dir), "--images", str(imgs), "--captions", str(caps)]
    argv += ["--k", "2", "--limit", "2", "--threads", "1", "--json"]
    assert cli.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["protocol"], out["images"], out["captions"], out["k"]) == ("flickr30k", 2, 10, 2)
    modes = out["modes"]
    assert set(modes) == {"coarse", "fine", "fine+second-look", "fine+retrace"}
    for name in ("fine", "fine+second-look", "fine+retrace"):
        m = modes[name]
        assert m["status"] == "ok", m
        assert m["i2t"] is None and m["queries"] == 10 and m["stage_ms_per_query"] > 0
        assert set(m["t2i"]) == {"R@1", "R@5", "R@10"}
        # top-2 reranking of 2 images cannot change R@5/R@10 (every image is in the list)
        assert m["t2i"]["R@5"] == modes["coarse"]["t2i"]["R@5"] == 100.0
    assert out["mllm_model"]
    assert cli.main(argv[:-1] + ["--modes", "coarse"]) == 0
    table = capsys.readouterr().out
    assert "T2I R@1" in table and "coarse" in table and "fine" not in table.split("\n", 2)[2]


def test_eval_names_our_second_look_not_the_papers_ve(tmp_path, clip_models_dir):
    """The third mode is our prompt-level second look; the old name still selects it, and the table
    says what it is."""
    from retllm_desktop.eval import MODES

    assert "fine+ve" not in MODES and "fine+second-look" in MODES
    imgs = tmp_path / "imgs"
    names = _images(imgs, 2)
    ds = load_eval_set(imgs, _tsv(tmp_path / "caps.tsv", names), "flickr30k")
    report = run_eval(ds, models_dir=clip_models_dir, threads=1, modes=["coarse", "fine+ve"])
    assert [m.mode for m in report.modes] == ["coarse", "fine+second-look"]
    assert "not the paper's in-layer visual enhancement" in report.table()
