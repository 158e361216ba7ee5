"""Multimodal-LLM fine scorer on a synthetic random-weight GGUF pair (real llama.cpp / libmtmd calls)."""

from __future__ import annotations

import base64
import json
import math
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

llama_cpp = pytest.importorskip("llama_cpp")
pytest.importorskip("gguf")

from retllm_desktop.devtools.synthetic_mllm import CHAT_TEMPLATE, write_synthetic_mllm  # noqa: E402
from retllm_desktop.errors import ModelLoadError, ModelNotFoundError  # noqa: E402
from retllm_desktop.models.llm.cache import EmbeddingCache  # noqa: E402
from retllm_desktop.models.llm.scorer import (  # noqa: E402
    MllmConfig,
    MllmScorer,
    answer_stats,
    combine_passes,
    find_mllm_model,
    load_prompts,
    render_prompt,
)

QUERY = "a dog on the beach"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("models")
    write_synthetic_mllm(d, "tiny", seed=0)
    return d


@pytest.fixture(scope="module")
def model_dir(models_dir) -> Path:
    return models_dir / "mllm" / "synthetic-tiny"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(7)
    out = []
    for i in range(4):
        arr = rng.integers(0, 256, (40 + 8 * i, 56, 3), dtype=np.uint8)
        p = d / f"p{i}.png"  # lossless, so mtmd's own decoder sees the same pixels as PIL
        Image.fromarray(arr).save(p)
        out.append(p)
    jpg = d / "p4.jpg"
    Image.fromarray(rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)).save(jpg, quality=90)
    out.append(jpg)
    return out


def make_scorer(model_dir, **kw) -> MllmScorer:
    kw.setdefault("threads", 1)
    kw.setdefault("n_ctx", 1024)
    return MllmScorer(model_dir, **kw)


# --------------------------------------------------------------------------------------- model files
def test_synthetic_pair_loads_and_is_deterministic(models_dir, model_dir, tmp_path):
    meta = json.loads((model_dir / "mllm.json").read_text())
    assert (
        meta["handler"] == "gguf-template"
        and meta["model"] == "model.gguf"
        and meta["mmproj"] == "mmproj.gguf"
    )
    with make_scorer(model_dir) as s:
        s.load()
        assert s.loaded
        assert s.session.n_embd == 64
        assert s.true_token_ids and s.false_token_ids
        assert not set(s.true_token_ids) & set(s.false_token_ids)
    assert not s.loaded
    again = write_synthetic_mllm(tmp_path / "a", "tiny", seed=0)
    other = write_synthetic_mllm(tmp_path / "b", "tiny", seed=1)
    for f in ("model.gguf", "mmproj.gguf"):
        assert (again / f).read_bytes() == (model_dir / f).read_bytes()
        assert (other / f).read_bytes() != (model_dir / f).read_bytes()


def test_find_model_and_missing_model(models_dir, model_dir, tmp_path):
    assert find_mllm_model(models_dir) == model_dir
    assert find_mllm_model(models_dir, "synthetic-tiny") == model_dir
    with pytest.raises(ModelNotFoundError, match="mllm.json"):
        find_mllm_model(tmp_path / "empty")
    with pytest.raises(ModelNotFoundError, match="nope"):
        find_mllm_model(models_dir, "nope")
    broken = tmp_path / "models" / "mllm" / "half"
    broken.mkdir(parents=True)
    shutil.copy(model_dir / "mllm.json", broken / "mllm.json")
    shutil.copy(model_dir / "model.gguf", broken / "model.gguf")
    with pytest.raises(ModelNotFoundError, match="mmproj"):
        MllmConfig.from_dir(broken)
    with pytest.raises(ModelNotFoundError):
        MllmScorer(broken)


@pytest.mark.parametrize(
    "which,how",
    [
        ("model.gguf", "garbage"),
        ("model.gguf", "truncate"),
        ("mmproj.gguf", "garbage"),
        ("mmproj.gguf", "truncate"),
    ],
)
def test_corrupt_gguf_raises_model_load_error(model_dir, tmp_path, which, how):
    d = tmp_path / "m"
    shutil.copytree(model_dir, d)
    target = d / which
    data = target.read_bytes()
    target.write_bytes(b"\x00garbage" * 100 if how == "garbage" else data[: len(data) // 2])
    s = make_scorer(d)
    with pytest.raises(ModelLoadError):
        s.load()
    s.close()


def test_registry_entries():
    from retllm_desktop.models.hub.registry import load_registry

    reg = load_registry()  # the one parser of mllm_models.toml
    assert reg.default_mllm == "smolvlm-500m"
    mllms = reg.by_role("mllm")
    assert {e.config["handler"] for e in mllms} == {"llava15", "qwen25vl", "gguf-template"}
    for e in mllms:
        assert e.hf_repo and e.licence
        assert [f.name for f in e.files] == ["model.gguf", "mmproj.gguf"]
        assert all(f.path.endswith(".gguf") for f in e.files)


# --------------------------------------------------------------------------------------- prompts
MSG1 = [
    {"role": "user", "content": [{"type": "image", "ref": "C"}, {"type": "text", "text": "Match: a dog?"}]}
]
MSG2 = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "Query image: "},
            {"type": "image", "ref": "Q"},
            {"type": "text", "text": "\nCandidate image: "},
            {"type": "image", "ref": "C"},
            {"type": "text", "text": "\nSame?"},
        ],
    },
    {"role": "assistant", "content": "True"},
    {"role": "user", "content": [{"type": "image", "ref": "Z"}, {"type": "text", "text": "Again?"}]},
]
LLAVA_SYS = (
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the human's questions."
)


def test_render_llava15():
    # LLaVA-1.5's own format (not llama-cpp-python's handler template, which glues "ASSISTANT:" to the
    # question and moves every image before the text): images interleaved with their labels.
    assert render_prompt("llava15", MSG1) == (
        LLAVA_SYS + " USER: <__media__>\nMatch: a dog? ASSISTANT:",
        ["C"],
    )
    text, refs = render_prompt("llava15", MSG2)
    assert text == (
        LLAVA_SYS + " USER: Query image: <__media__>\n\nCandidate image: <__media__>\n\nSame?"
        " ASSISTANT: True</s> USER: <__media__>\nAgain? ASSISTANT:"
    )
    assert refs == ["Q", "C", "Z"]


def test_render_qwen25vl():
    # As Qwen25VLChatHandler renders, except that the generation prompt keeps its trailing newline.
    assert render_prompt("qwen25vl", MSG1) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<__media__>Match: a dog?<|im_end|>\n<|im_start|>assistant\n",
        ["C"],
    )
    text, refs = render_prompt("qwen25vl", MSG2)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "Query image: <__media__>\nCandidate image: <__media__>\nSame?<|im_end|>\n"
        "<|im_start|>assistant\nTrue<|im_end|>\n<|im_start|>user\n<__media__>Again?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert refs == ["Q", "C", "Z"]


def test_render_gguf_template():
    assert render_prompt("gguf-template", MSG1, chat_template=CHAT_TEMPLATE) == (
        "<|im_start|>user\n<__media__>Match: a dog?<|im_end|>\n<|im_start|>assistant\n",
        ["C"],
    )
    text, refs = render_prompt("gguf-template", MSG2, chat_template=CHAT_TEMPLATE, marker="<M>")
    assert text == (
        "<|im_start|>user\nQuery image: <M>\nCandidate image: <M>\nSame?<|im_end|>\n"
        "<|im_start|>assistant\nTrue<|im_end|>\n<|im_start|>user\n<M>Again?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert refs == ["Q", "C", "Z"]
    with pytest.raises(ModelLoadError):
        render_prompt("gguf-template", MSG1, chat_template=None)


def test_prompts_file_has_all_kinds():
    p = load_prompts()
    for section in ("score", "ve", "explain"):
        for kind in ("text", "composed", "image"):
            parts = p[section][kind]["parts"]
            assert "<candidate>" in parts
            assert ("<query>" in parts) == (kind != "text" and section != "ve")
            if section != "explain" and kind != "image":  # the paper quotes the query: "<{query}>"
                assert any("<{query}>" in part for part in parts)
    assert (
        "Does the image match the caption: <{query}>? Please directly output True or False"
        in p["score"]["text"]["parts"]
    )


# --------------------------------------------------------------------------------------- probabilities
def test_vocab_entropy_is_the_full_distribution_entropy():
    from retllm_desktop.models.llm.answer import vocab_entropy

    logits = np.array([math.log(5.0), math.log(3.0)] + [0.0] * 18)
    p = np.array([5.0, 3.0] + [1.0] * 18) / 26
    assert vocab_entropy(logits) == pytest.approx(float(-(p * np.log(p)).sum()))
    assert vocab_entropy(np.zeros(50)) == pytest.approx(math.log(50))


def test_answer_stats_math():
    logits = np.zeros(20)
    logits[3] = math.log(5.0)  # p3 = 5/26 (18 ones + 5 + 3)
    logits[7] = math.log(3.0)  # p7 = 3/26
    pt, pf, h = answer_stats(logits, [3], [7, 8])
    assert pt == pytest.approx(5 / 26) and pf == pytest.approx(4 / 26)
    top = np.array([5, 3] + [1] * 8, dtype=float)
    q = top / top.sum()
    assert h == pytest.approx(-(q * np.log(q)).sum() / math.log(10))
    assert answer_stats(np.zeros(50), [0], [1])[2] == pytest.approx(1.0)
    peaked = np.zeros(50)
    peaked[0] = 100
    assert (
        answer_stats(peaked, [0], [1])[0] == pytest.approx(1.0) and answer_stats(peaked, [0], [1])[2] < 1e-6
    )


def test_scores_match_builtin_chat_handler(model_dir, photos):
    """P(True)/entropy vs. raw logits from llama-cpp-python's own MTMDChatHandler pipeline."""
    from llama_cpp.llama_chat_format import MTMDChatHandler

    with make_scorer(model_dir) as s:
        got = s.score(photos[0], text=QUERY, ve="off")
        prompt_parts = load_prompts()["score"]["text"]["parts"]
    handler = MTMDChatHandler(clip_model_path=str(model_dir / "mmproj.gguf"), verbose=False, use_gpu=False)
    llm = llama_cpp.Llama(
        str(model_dir / "model.gguf"), n_ctx=1024, n_threads=1, verbose=False, chat_handler=handler
    )
    try:
        uri = "data:image/png;base64," + base64.b64encode(photos[0].read_bytes()).decode()
        content = [{"type": "image_url", "image_url": {"url": uri}}]
        content += [
            {"type": "text", "text": p.replace("{query}", QUERY)} for p in prompt_parts if p != "<candidate>"
        ]
        captured = []

        def grab(input_ids, logits):
            captured.append(np.array(logits, dtype=np.float64))
            return logits

        llm.create_chat_completion(
            messages=[{"role": "user", "content": content}],
            max_tokens=1,
            temperature=0.0,
            logits_processor=llama_cpp.LogitsProcessorList([grab]),
        )
        raw = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(llm.n_vocab(),))
        raw = raw.astype(np.float64)
        assert np.abs(captured[0] - raw).max() < 1e-4
        true_ids = sorted(
            {
                t[0]
                for v in ("True", " True", "true", " true", "TRUE")
                if len(t := llm.tokenize(v.encode(), add_bos=False)) == 1
            }
        )
        false_ids = sorted(
            {
                t[0]
                for v in ("False", " False", "false", " false", "FALSE")
                if len(t := llm.tokenize(v.encode(), add_bos=False)) == 1
            }
        )
    finally:
        llm.close()
    p = np.exp(raw - raw.max())
    p /= p.sum()
    top = np.sort(p)[-10:]
    top /= top.sum()
    ent = float(-(top * np.log(top)).sum() / np.log(10))
    assert got.p_true == pytest.approx(p[true_ids].sum(), rel=1e-6, abs=1e-9)
    assert got.p_false == pytest.approx(p[false_ids].sum(), rel=1e-6, abs=1e-9)
    assert got.entropy == pytest.approx(ent, abs=1e-5)
    assert 0 < got.p_true < 1 and got.score == got.p_true == got.first_pass_score and not got.ve_used


# --------------------------------------------------------------------------------------- visual enhancement
def test_ve_modes(model_dir, photos):
    with make_scorer(model_dir, ve_threshold=1.01, ambiguous_band=None) as s:
        off = s.score(photos[1], text=QUERY, ve="off")
        auto_no = s.score(photos[1], text=QUERY, ve="auto")  # entropy <= 1 < 1.01: no trigger
        assert not off.ve_used and not auto_no.ve_used
        assert auto_no.score == pytest.approx(off.score, abs=1e-6)
        decoded = s.stats["images_decoded"]
        always = s.score(photos[1], text=QUERY, ve="always")
        assert always.ve_used
        # same context continued: only the second look's image is decoded (first pass state reused)
        assert s.stats["images_decoded"] - decoded == 1
        first, second = s.last_passes
        assert always.first_pass_score == pytest.approx(off.score, abs=1e-6)
        assert (always.p_true, always.p_false, always.entropy) == pytest.approx(combine_passes(first, second))
        assert second[0] != first[0]
    with make_scorer(model_dir, ve_threshold=0.0, ambiguous_band=None) as s:
        assert s.score(photos[1], text=QUERY, ve="auto").ve_used  # entropy > 0 triggers
        assert not s.score(photos[1], text=QUERY, ve="off").ve_used
    with make_scorer(model_dir, ve_threshold=1.01, ambiguous_band=(0.0, 1.0)) as s:
        assert s.score(photos[1], text=QUERY, ve="auto").ve_used  # inside the ambiguous band
    with make_scorer(model_dir) as s, pytest.raises(ValueError):
        s.score(photos[1], text=QUERY, ve="sometimes")


def test_combine_passes_rule():
    assert combine_passes((0.2, 0.8, 1.0), (0.9, 0.1, 0.0)) == pytest.approx(
        ((0.05 * 0.2 + 0.9) / 1.05, (0.05 * 0.8 + 0.1) / 1.05, 0.05 / 1.05)
    )


# --------------------------------------------------------------------------------------- caching
def test_embedding_cache_identical_scores_and_skips_encoding(model_dir, photos, tmp_path):
    queries = [QUERY, "a red car"]
    with make_scorer(model_dir) as ref:  # no disk cache at all
        expected = {(q, i): ref.score(p, text=q, ve="always") for q in queries for i, p in enumerate(photos)}
    cache_dir = tmp_path / "emb"
    with make_scorer(model_dir, cache=EmbeddingCache(cache_dir, 10**8)) as s:
        cold = [s.score(p, text=QUERY, ve="always") for p in photos]
        assert s.stats["encode"] == 2 * len(photos)  # whole + zoom view per photo
        assert not any(f.cache_hit for f in cold)
        # a different query over the same photos in the same process: no encoding, KV snapshots reused
        warm = [s.score(p, text="a red car", ve="always") for p in photos]
        assert s.stats["encode"] == 2 * len(photos)
        assert s.stats["state_restores"] >= len(photos)
        assert all(f.cache_hit for f in warm)
    for i in range(len(photos)):
        for got, q in ((cold[i], QUERY), (warm[i], "a red car")):
            exp = expected[(q, i)]
            assert got.p_true == pytest.approx(exp.p_true, abs=1e-5)
            assert got.entropy == pytest.approx(exp.entropy, abs=1e-5)
            assert got.first_pass_score == pytest.approx(exp.first_pass_score, abs=1e-5)
    # survives a new scorer instance (new process would see the same files)
    with make_scorer(model_dir, cache=EmbeddingCache(cache_dir, 10**8)) as s2:
        again = [s2.score(p, text=QUERY, ve="always") for p in photos]
        assert s2.stats["encode"] == 0 and s2.stats["embedding_disk_hits"] >= len(photos)
        assert all(f.cache_hit for f in again)
    for i, got in enumerate(again):
        assert got.p_true == pytest.approx(expected[(QUERY, i)].p_true, abs=1e-5)
        assert got.entropy == pytest.approx(expected[(QUERY, i)].entropy, abs=1e-5)


def test_corrupt_cache_entry_is_ignored(model_dir, photos, tmp_path):
    cache = EmbeddingCache(tmp_path / "emb", 10**8)
    with make_scorer(model_dir, cache=cache) as s:
        base = s.score(photos[2], text=QUERY, ve="off")
    files = list((tmp_path / "emb").glob("*/*.emb"))
    assert len(files) == 1
    data = files[0].read_bytes()
    files[0].write_bytes(data[:-10] + b"\xff" * 10)  # flip the tail: CRC mismatch
    with make_scorer(model_dir, cache=EmbeddingCache(tmp_path / "emb", 10**8)) as s:
        got = s.score(photos[2], text=QUERY, ve="off")
        assert s.stats["encode"] == 1  # corrupt entry treated as a miss and re-encoded
    assert got.p_true == pytest.approx(base.p_true, abs=1e-6)
    assert files[0].read_bytes() == data  # rewritten with the good embedding


def test_query_image_encoded_once_and_prefix_reused(model_dir, photos):
    with make_scorer(model_dir) as s:
        comp = [s.score(p, text=QUERY, query_image=photos[0], ve="off") for p in photos[1:4]]
        assert s.stats["encode"] == 1 + 3
        img_only = s.score(photos[1], query_image=photos[0], ve="off")
        assert s.stats["encode"] == 4
    assert all(0 < f.p_true < 1 for f in comp + [img_only])
    # query prefix reuse does not change results
    with make_scorer(model_dir) as fresh:
        alone = fresh.score(photos[3], text=QUERY, query_image=photos[0], ve="off")
    assert alone.p_true == pytest.approx(comp[2].p_true, abs=1e-5)


def test_thread_safety(model_dir, photos):
    with make_scorer(model_dir) as s:
        seq = [s.score(p, text=QUERY, ve="off").p_true for p in photos]
        s.clear_state_cache()
        results: dict[int, float] = {}

        def work(i):
            results[i] = s.score(photos[i], text=QUERY, ve="off").p_true

        threads = [threading.Thread(target=work, args=(i,)) for i in range(len(photos))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert [results[i] for i in range(len(photos))] == pytest.approx(seq, abs=1e-5)


# --------------------------------------------------------------------------------------- explain
def test_explain_streams_text(model_dir, photos):
    with make_scorer(model_dir) as s:
        pieces = list(s.explain(photos[0], text=QUERY, max_tokens=12))
        assert pieces and all(isinstance(p, str) and p for p in pieces)
        assert "\n" not in "".join(pieces)
        assert "\ufffd" not in "".join(pieces)  # the random model's stray bytes never show as boxes
        assert s.stats["tokens_evaluated"] < 200  # one token per step after the prompt, not re-evaluations
        # greedy: deterministic
        assert list(s.explain(photos[0], text=QUERY, max_tokens=12)) == pieces
        # scoring still works and is unaffected afterwards
        a = s.score(photos[0], text=QUERY, ve="off")
    with make_scorer(model_dir) as fresh:
        assert fresh.score(photos[0], text=QUERY, ve="off").p_true == pytest.approx(a.p_true, abs=1e-5)


# --------------------------------------------------------------------------------------- cache unit tests
def test_embedding_cache_roundtrip_eviction_restart(tmp_path):
    c = EmbeddingCache(tmp_path, max_bytes=3 * 4200)
    arrs = {
        k: np.random.default_rng(i).standard_normal((16, 64)).astype(np.float32) for i, k in enumerate("abcd")
    }
    c.put("a", arrs["a"], {"nx": 3, "ny": 4})
    got = c.get("a")
    assert got is not None and np.array_equal(got.array, arrs["a"]) and got.meta == {"nx": 3, "ny": 4}
    assert c.get("zzz") is None
    import os
    import time

    for i, k in enumerate("bc"):
        c.put(k, arrs[k])
        t = time.time() - 100 + i
        os.utime(c._path(k), (t, t))
    t = time.time() - 200
    os.utime(c._path("a"), (t, t))
    assert c.get("a") is not None  # touching "a" makes it most recent
    c.put("d", arrs["d"])  # over budget: evicts the least recently used ("b")
    assert "b" not in c and "a" in c and "c" in c and "d" in c
    assert c.total_bytes <= 3 * 4200
    c2 = EmbeddingCache(tmp_path, max_bytes=3 * 4200)  # restart
    assert np.array_equal(c2.get("d").array, arrs["d"])
    # wrong-key header (hash collision simulation) and garbage are misses and get deleted
    c2._path("e").parent.mkdir(parents=True, exist_ok=True)
    c2._path("e").write_bytes(c2._path("d").read_bytes())
    assert c2.get("e") is None and not c2._path("e").exists()
    c2._path("f").parent.mkdir(parents=True, exist_ok=True)
    c2._path("f").write_bytes(b"nonsense")
    assert c2.get("f") is None and not c2._path("f").exists()
    assert not list(tmp_path.glob("*/.tmp-*"))  # no temp files left behind


def test_cancel_aborts_inside_llama_and_leaves_a_clean_context(tmp_path):
    import threading

    from retllm_desktop.devtools.synthetic_mllm import write_synthetic_mllm
    from retllm_desktop.errors import CancelledError
    from retllm_desktop.models.llm.scorer import MllmScorer, find_mllm_model

    from .conftest import make_photo

    models = tmp_path / "m"
    write_synthetic_mllm(models, "tiny", seed=0)
    photo = make_photo(tmp_path / "p.jpg", seed=3)
    with MllmScorer(find_mllm_model(models), threads=1) as scorer:
        clean = scorer.score(photo, text="a red car", ve="off")
        cancel = threading.Event()
        cancel.set()
        calls = scorer.stats["tokens_evaluated"]
        with pytest.raises(CancelledError):
            scorer.score(photo, text="a blue boat", ve="off", cancel=cancel)
        # The abort came from llama.cpp's callback during decoding, not from a check before it.
        assert scorer.stats["tokens_evaluated"] == calls
        again = scorer.score(photo, text="a red car", ve="off", cancel=threading.Event())
        assert again.p_true == pytest.approx(clean.p_true, abs=1e-6)
        assert again.entropy == pytest.approx(clean.entropy, abs=1e-6)


def test_kv_snapshots_on_disk_make_a_restart_skip_the_image_tokens(model_dir, photos, tmp_path):
    from retllm_desktop.models.llm.cache import EmbeddingCache

    kv_dir = tmp_path / "kv"
    with make_scorer(model_dir, state_disk_cache=EmbeddingCache(kv_dir, 64 * 1024**2)) as first:
        cold = [first.score(p, text="a red car", ve="off") for p in photos[:3]]
    assert len(EmbeddingCache(kv_dir)) >= 3
    # A new process (new scorer): the KV state after each photo comes from disk, so neither the vision
    # encoder nor the image tokens run again, and a new question gives the same numbers as from scratch.
    with make_scorer(model_dir, state_disk_cache=EmbeddingCache(kv_dir, 64 * 1024**2)) as second:
        again = [second.score(p, text="a red car", ve="off") for p in photos[:3]]
        other = [second.score(p, text="two boats", ve="off") for p in photos[:3]]
        assert second.stats["encode"] == 0 and second.stats["images_decoded"] == 0
        assert second.stats["state_disk_hits"] == 3
    with make_scorer(model_dir) as fresh:
        reference = [fresh.score(p, text="two boats", ve="off") for p in photos[:3]]
    for a, b in zip(cold, again, strict=True):
        assert b.p_true == pytest.approx(a.p_true, abs=1e-6) and b.entropy == pytest.approx(
            a.entropy, abs=1e-6
        )
    for a, b in zip(reference, other, strict=True):
        assert b.p_true == pytest.approx(a.p_true, abs=1e-6) and b.entropy == pytest.approx(
            a.entropy, abs=1e-6
        )
    # A corrupt snapshot file is ignored (and the score recomputed), never loaded into llama.cpp.
    for f in kv_dir.rglob("*"):
        if f.is_file():
            f.write_bytes(f.read_bytes()[:100])
    with make_scorer(model_dir, state_disk_cache=EmbeddingCache(kv_dir, 64 * 1024**2)) as third:
        third.score(photos[0], text="a red car", ve="off")
        assert third.stats["state_disk_hits"] == 0 and third.stats["images_decoded"] == 1


def test_second_look_policy_is_per_call(model_dir, photos):
    """Options travel with each call; nothing a search passes is stored on the shared scorer."""
    from retllm_desktop.models.llm.answer import SecondLook

    with make_scorer(model_dir, ve_threshold=1.01, ambiguous_band=None) as s:
        assert s.score(photos[0], text=QUERY, ve=SecondLook("auto", 0.0, None)).ve_used
        assert not s.score(photos[0], text=QUERY, ve="auto").ve_used  # defaults untouched
        assert s.score(photos[0], text=QUERY, ve="auto", ve_threshold=0.0).ve_used
        assert not s.score(photos[0], text=QUERY, ve="auto").ve_used


def test_smolvlm_template_keeps_the_first_answer_in_the_second_look():
    """SmolVLM's published template loops over content parts: a plain-string turn would render empty.

    Images reach the template as text parts holding the media marker, as llama-cpp-python's
    MTMDChatHandler passes them, so an image-first user turn reads "User: <M>" (HF renders "User:<image>").
    """
    from retllm_desktop.devtools.templates import load

    text, refs = render_prompt("gguf-template", MSG2, chat_template=load("smolvlm-500m"), marker="<M>")
    assert text == (
        "<|im_start|>User: Query image: <M>\nCandidate image: <M>\nSame?<end_of_utterance>\n"
        "Assistant: True<end_of_utterance>\nUser: <M>Again?<end_of_utterance>\nAssistant:"
    )
    assert refs == ["Q", "C", "Z"]


@pytest.mark.parametrize("family", ["qwen2.5-vl", "gemma-3", "smolvlm"])
def test_published_templates_render_every_turn(family):
    from retllm_desktop.devtools.templates import load

    text, _ = render_prompt(
        "gguf-template", MSG2, chat_template=load(family), bos_token="<bos>", marker="<M>"
    )
    assert "True" in text and "Again?" in text and text.count("<M>") == 3


@pytest.fixture(scope="module")
def impostor_dir(tmp_path_factory, model_dir) -> Path:
    """Another text model under the same name with the same mmproj (e.g. `models add --name`)."""
    d = tmp_path_factory.mktemp("other-models")
    other = write_synthetic_mllm(d, "tiny", seed=1)
    shutil.copy(model_dir / "mmproj.gguf", other / "mmproj.gguf")
    assert json.loads((other / "mllm.json").read_text())["name"] == model_dir.name
    return other


def _kv_cache(path: Path) -> EmbeddingCache:
    return EmbeddingCache(path, 64 * 1024**2)


def test_kv_snapshots_on_disk_belong_to_the_exact_text_model(model_dir, impostor_dir, photos, tmp_path):
    kv = tmp_path / "kv"
    with make_scorer(model_dir, state_disk_cache=_kv_cache(kv)) as a:
        a_score = a.score(photos[0], text=QUERY, ve="off")
    with make_scorer(impostor_dir) as b_cold:
        reference = b_cold.score(photos[0], text=QUERY, ve="off")
    assert abs(reference.p_true - a_score.p_true) > 1e-6  # the two text models really differ
    with make_scorer(impostor_dir, state_disk_cache=_kv_cache(kv)) as b:
        got = b.score(photos[0], text=QUERY, ve="off")
        assert b.stats["state_disk_hits"] == 0  # A's snapshot is not B's
    assert got.p_true == pytest.approx(reference.p_true, abs=1e-6)
    assert got.entropy == pytest.approx(reference.entropy, abs=1e-6)


def test_kv_snapshot_key_names_the_llama_cpp_version(model_dir, photos, tmp_path, monkeypatch):
    from retllm_desktop.models.llm import scorer as scorer_mod

    kv = tmp_path / "kv"
    with make_scorer(model_dir, state_disk_cache=_kv_cache(kv)) as a:
        a.score(photos[0], text=QUERY, ve="off")
    monkeypatch.setattr(scorer_mod, "llama_cpp_version", lambda: "9.9.9")
    with make_scorer(model_dir, state_disk_cache=_kv_cache(kv)) as upgraded:
        upgraded.score(photos[0], text=QUERY, ve="off")
        assert upgraded.stats["state_disk_hits"] == 0


def test_a_snapshot_that_fails_to_restore_is_dropped_and_recomputed(model_dir, photos, tmp_path):
    kv = tmp_path / "kv"
    with make_scorer(model_dir, state_disk_cache=_kv_cache(kv)) as a:
        cold = a.score(photos[0], text=QUERY, ve="off")
    cache = _kv_cache(kv)
    keys = cache.keys()
    assert keys
    for k in keys:  # well-formed entries whose bytes llama.cpp rejects (e.g. written by another build)
        entry = cache.get(k)
        junk = np.frombuffer(b"\xff" * entry.array.nbytes, dtype="<f4")
        cache.put(k, junk, entry.meta)
    with make_scorer(model_dir, state_disk_cache=_kv_cache(kv)) as b:
        got = b.score(photos[0], text=QUERY, ve="off")  # never fails the search
        assert b.stats["images_decoded"] == 1  # recomputed from the photo
    assert got.p_true == pytest.approx(cold.p_true, abs=1e-6)
    assert got.entropy == pytest.approx(cold.entropy, abs=1e-6)
    with make_scorer(model_dir, state_disk_cache=_kv_cache(kv)) as c:  # the bad one was replaced
        again = c.score(photos[0], text=QUERY, ve="off")
        assert c.stats["state_disk_hits"] == 1 and c.stats["images_decoded"] == 0
    assert again.p_true == pytest.approx(cold.p_true, abs=1e-6)


def test_cached_embedding_with_another_token_count_falls_back_to_the_photo(model_dir, photos, tmp_path):
    """A cached embedding whose row count no longer fits (e.g. written by another llama.cpp build) is not
    used, and the prompt is rebuilt from the real photo, never from the blank stand-in bitmap."""
    cache = EmbeddingCache(tmp_path / "emb", 64 * 1024**2)
    with make_scorer(model_dir, cache=cache) as a:
        cold = a.score(photos[1], text=QUERY, ve="off")
    (key,) = cache.keys()
    good = cache.get(key)
    cache.put(key, good.array[:-1], good.meta)  # one row short
    with make_scorer(model_dir, cache=EmbeddingCache(tmp_path / "emb", 64 * 1024**2)) as b:
        got = b.score(photos[1], text=QUERY, ve="off")
        assert b.stats["encode"] == 1
    assert got.p_true == pytest.approx(cold.p_true, rel=1e-4, abs=1e-9)
    assert got.entropy == pytest.approx(cold.entropy, rel=1e-4, abs=1e-9)
    healed = EmbeddingCache(tmp_path / "emb").get(key)
    np.testing.assert_allclose(healed.array, good.array, rtol=0, atol=1e-6)  # the photo's, not a blank's
