"""How much of a photo the LLM sees (issue 18): mtmd's image-token cap really changes the tiles/tokens.

Real llama.cpp calls on the tiny replicas of the registry's models (real projector types and
preprocessing keys): SmolVLM's idefics3 tiling, Qwen2.5-VL's dynamic resolution, Gemma 3's fixed size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retllm_desktop.models.llm.images import (
    DETAIL_LEVELS,
    ImageRef,
    detail_tokens,
    prepare_image,
    resolve_detail,
)
from retllm_desktop.models.llm.scorer import MllmScorer
from tests.test_replicas import mllm_sources, replica  # noqa: F401 - the fixture

pytestmark = pytest.mark.usefixtures("mllm_sources")
Q = "a dog on the beach"


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    from PIL import Image

    rng = np.random.default_rng(3)
    p = tmp_path_factory.mktemp("detail") / "photo.jpg"
    Image.fromarray(rng.integers(0, 255, (1536, 2048, 3), dtype=np.uint8)).save(p, quality=90)
    return p


def _layout(name: str, detail: str, photo: Path) -> tuple[int, int]:
    with MllmScorer(replica(name), threads=2, detail=detail) as s:
        return s.image_layout(photo)


def test_smolvlm_quick_is_the_overview_alone(photo):
    """idefics3: overview + 4x3 tiles of 64 tokens by default (preproc_image_size 2048 at 1024 px); capped
    to one tile, mtmd makes that tile + an overview of the same pixels, and the session keeps one."""
    full = _layout("smolvlm-500m", "full", photo)
    quick = _layout("smolvlm-500m", "quick", photo)
    standard = _layout("smolvlm-500m", "standard", photo)
    assert full == (13, 13 * 64)
    assert quick == (1, 64)
    assert quick[1] < standard[1] < full[1] and standard[0] == standard[1] // 64


def test_the_dropped_tile_repeats_the_overview(photo):
    """Why the single view loses no detail: on a 1 x 1 grid mtmd's tile and overview both show the whole photo
    at 512 px (the tile letterboxed, the overview stretched), 64 tokens each; the kept prompt is
    SmolVLM's own single-image layout: <fake_token_around_image><global-img> + 64 image tokens +
    <fake_token_around_image>."""
    from retllm_desktop.models.llm.session import ImageInput

    with MllmScorer(replica("smolvlm-500m"), threads=2, detail="quick") as s:
        s.load()
        sess = s.session
        marks = sess._find_tile_marks()
        assert marks is not None
        img = prepare_image(s._ref(photo, "k", "whole"))
        image = ImageInput("k", img.width, img.height, img.tobytes())
        sess._tile_marks = None  # mtmd's own layout
        both = sess.tokenize("Look: " + sess.marker + " Answer.", [image])
        try:
            kinds = [seg[0] for seg in both.segments]
            assert kinds == ["text", "image", "text", "image", "text"]
            mc = sess._mc
            grids = [
                (mc.mtmd_image_tokens_get_nx(t), mc.mtmd_image_tokens_get_ny(t))
                for t in (
                    mc.mtmd_input_chunk_get_tokens_image(seg[1]) for seg in both.segments if seg[0] == "image"
                )
            ]
            assert grids[0] == grids[1] and grids[0][0] * grids[0][1] == 64
            assert both.segments[0][1][-2:] == [marks.fake, marks.first_tile]
        finally:
            sess.free(both)
        sess._tile_marks = marks
        one = sess.tokenize("Look: " + sess.marker + " Answer.", [image])
        try:
            kinds = [seg[0] for seg in one.segments]
            assert kinds == ["text", "image", "text"]
            before, after = one.segments[0][1], one.segments[2][1]
            assert before[-2:] == [marks.fake, marks.overview] and marks.first_tile not in before
            assert after[0] == marks.fake
            assert one.image_tokens["k"] == 64 and one.pos_after[-1] == len(before) + 64 + len(after)
        finally:
            sess.free(one)


def test_qwen_quick_caps_the_tokens_and_gemma_is_fixed(photo):
    qwen_full = _layout("qwen2.5-vl-3b", "full", photo)
    qwen_quick = _layout("qwen2.5-vl-3b", "quick", photo)
    assert qwen_full == (1, 192)  # 448 x 336 px at 28 px per token
    assert qwen_quick[0] == 1 and qwen_quick[1] <= DETAIL_LEVELS["quick"] < qwen_full[1]
    assert _layout("gemma-3-4b", "quick", photo) == _layout("gemma-3-4b", "full", photo) == (1, 256)


def test_auto_detail_is_per_projector(photo):
    """The default: SmolVLM's fewest tiles, Qwen2.5-VL's whole 448-px photo (not quick's ~250 px)."""
    with MllmScorer(replica("smolvlm-500m"), threads=2) as s:  # default detail
        assert (s.projector, s.detail) == ("idefics3", "quick")
        assert s.image_layout(photo) == (1, 64)
    with MllmScorer(replica("qwen2.5-vl-3b"), threads=2, detail="auto") as s:
        assert (s.projector, s.detail) == ("qwen2.5vl_merger", "standard")
        assert s.image_layout(photo) == _layout("qwen2.5-vl-3b", "full", photo) == (1, 192)
    with MllmScorer(replica("gemma-3-4b"), threads=2, detail="auto") as s:
        assert (s.projector, s.detail) == ("gemma3", "full")


def test_resolve_detail_keeps_a_chosen_level():
    assert resolve_detail("quick", "qwen2.5vl_merger") == "quick"  # a choice is never overridden
    assert resolve_detail("auto", "some_future_projector") == "standard"
    assert resolve_detail("auto", None) == "standard"
    with pytest.raises(ValueError):
        resolve_detail("huge", "idefics3")


def test_scoring_works_at_every_detail_and_the_caches_keep_them_apart(photo, tmp_path):
    from retllm_desktop.models.llm.cache import EmbeddingCache

    cache = EmbeddingCache(tmp_path / "emb")
    scores = {}
    for detail in ("quick", "full", "quick"):
        with MllmScorer(replica("smolvlm-500m"), threads=2, detail=detail, cache=cache) as s:
            f = s.score(photo, text=Q, ve="off", candidate_key="k1")
            assert 0.0 <= f.p_true <= 1.0 and np.isfinite(f.entropy)
            scores.setdefault(detail, []).append((f.p_true, s.stats["encode"]))
    (quick1, enc1), (quick2, enc2) = scores["quick"]
    assert enc1 == 1 and enc2 == 0  # the second quick run read its own cached rows...
    assert quick2 == pytest.approx(quick1, abs=1e-6)  # ... and they are the quick ones, not full's
    assert scores["full"][0][1] == 1  # full never took quick's rows


def test_detail_names_the_cache_variant():
    a = ImageRef(Path("x"), "h", "whole", 1024, 1.0, detail_tokens("quick"))
    b = ImageRef(Path("x"), "h", "whole", 1024, 1.0, detail_tokens("full"))
    assert a.variant != b.variant and b.variant == "whole-1024"
    single = ImageRef(Path("x"), "h", "whole", 1024, 1.0, detail_tokens("quick"), single_view=True)
    assert single.variant not in (a.variant, b.variant)  # rows of the two-chunk layout are never reused
    with pytest.raises(ValueError):
        detail_tokens("huge")


def _with_flash(tmp_path: Path, flash: bool | None, name: str = "") -> Path:
    """The SmolVLM replica's files under a description that sets (or leaves out) its flash_attn key."""
    import json

    src = replica("smolvlm-500m")
    d = tmp_path / f"flash-{flash}{name}"
    d.mkdir()
    meta = json.loads((src / "mllm.json").read_text(encoding="utf-8"))
    meta.pop("flash_attn", None)
    if flash is not None:
        meta["flash_attn"] = flash
    (d / "mllm.json").write_text(json.dumps(meta), encoding="utf-8")
    for f in ("model.gguf", "mmproj.gguf"):
        (d / f).symlink_to(src / f)
    return d


def test_flash_attention_comes_from_the_model_entry_and_keeps_the_verdict(tmp_path, photo):
    """Registry data decides flash attention per model (on for SmolVLM and Qwen2.5-VL-3B, where bench_replicas
    measured it faster); an explicit argument wins; the check's probabilities are the same either way."""
    from retllm_desktop.models.hub.registry import load_registry

    assert load_registry().get("smolvlm-500m").config.get("flash_attn") is True
    assert load_registry().get("qwen2.5-vl-3b").config.get("flash_attn") is True
    assert not load_registry().get("qwen2.5-vl-7b").config.get("flash_attn")  # measured: no clear gain
    scores = {}
    for flash in (True, False, None):
        with MllmScorer(_with_flash(tmp_path, flash), threads=2) as s:
            assert s.session.flash_attn is bool(flash)  # no key: off
            scores[flash] = s.score(photo, text=Q, ve="off")
    with MllmScorer(_with_flash(tmp_path, True, "-overridden"), threads=2, flash_attn=False) as s:
        assert s.session.flash_attn is False
    on, off = scores[True], scores[False]
    assert abs(on.p_true - off.p_true) < 0.01 and abs(on.p_false - off.p_false) < 0.01
    assert scores[None].p_true == off.p_true
