"""The app on replicas of every registry model: random weights, real formats (issue 9).

Replicas are generated once per run into the gitignored ``.cache/replicas/v<generator version>/`` (tiny
sizes). The MLLM replicas need llama.cpp's vocab files (``make replica-sources``); without them those
tests skip, unless ``RETLLM_REQUIRE_REPLICAS=1`` (set by ``make test``), where they fail.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from retllm_desktop.devtools.replicas import GENERATOR_VERSION, registry_names, write_replica
from retllm_desktop.devtools.replicas.sources import REPO_ROOT, default_sources_dir, have_sources

CACHE = (
    Path(os.environ.get("RETLLM_REPLICA_CACHE") or REPO_ROOT / ".cache" / "replicas")
    / f"v{GENERATOR_VERSION}"
)
CLIP_NAMES = registry_names("clip")
MLLM_NAMES = registry_names("mllm")


def replica(name: str) -> Path:
    """The tiny replica's model folder (written on first use in this cache, reused after)."""
    return write_replica(name, CACHE, "tiny")


@pytest.fixture(scope="session")
def mllm_sources() -> None:
    if not have_sources():
        msg = f"llama.cpp vocab files missing in {default_sources_dir()} (run `make replica-sources`)"
        if os.environ.get("RETLLM_REQUIRE_REPLICAS") == "1":
            pytest.fail(msg)
        pytest.skip(msg)


# ------------------------------------------------------------------------------------------------ CLIP
# The interface of Xenova/clip-vit-*'s onnx/{vision,text}_model[_quantized].onnx: optimum's ViTOnnxConfig /
# CLIPTextOnnxConfig inputs, transformers.js's scripts/extra/clip.py outputs (projected embeddings only).
XENOVA_IMAGE_IO = ([("pixel_values", 1, ["batch_size", "num_channels", "height", "width"])], "image_embeds")
XENOVA_TEXT_IO = ([("input_ids", 7, ["batch_size", "sequence_length"])], "text_embeds")


def _io(path: Path) -> tuple[list[tuple[str, int, list]], list[tuple[str, int, list]]]:
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph

    def desc(v) -> tuple[str, int, list]:
        t = v.type.tensor_type
        return v.name, t.elem_type, [d.dim_param or d.dim_value for d in t.shape.dim]

    return [desc(v) for v in g.input], [desc(v) for v in g.output]


@pytest.mark.parametrize("name", CLIP_NAMES)
def test_clip_replica_has_the_xenova_interface(name):
    from retllm_desktop.models.hub.registry import load_registry

    entry = load_registry().get(name)
    d = replica(name)
    dim = entry.config["embed_dim"]
    for fname, (inputs, out_name) in (("image.onnx", XENOVA_IMAGE_IO), ("text.onnx", XENOVA_TEXT_IO)):
        got_in, got_out = _io(d / fname)
        assert got_in == inputs
        assert got_out == [(out_name, 1, ["batch_size", dim])]
    quantized = "_quantized" in entry.files[0].path
    import onnx

    ops = {n.op_type for n in onnx.load(str(d / "image.onnx")).graph.node}
    text_ops = {n.op_type for n in onnx.load(str(d / "text.onnx")).graph.node}
    if quantized:  # transformers.js Q8: uint8 ConvInteger where there is a Conv, int8 MatMulInteger elsewhere
        assert {"ConvInteger", "MatMulInteger"} <= ops and "MatMulInteger" in text_ops
    else:
        assert "Conv" in ops and not any("Integer" in o for o in ops | text_ops)


def _ort_embed(path: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, feed)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.mark.parametrize("name", CLIP_NAMES)
def test_clip_replica_through_clipmodel_matches_onnxruntime(name, tmp_path):
    """ClipModel fp32 and int8 (the registry's int8 file, or our own int8 of an fp32 file) vs a bare session."""
    import shutil

    from PIL import Image

    from retllm_desktop.models.clip.towers import ClipModel, quantize_dynamic_int8

    d = tmp_path / name
    shutil.copytree(replica(name), d)
    rng = np.random.default_rng(5)
    photos = [Image.fromarray(rng.integers(0, 256, (90 + 20 * i, 120, 3), dtype=np.uint8)) for i in range(3)]
    texts = ["a dog on the beach", "two red cars at night", "x"]
    variants = [False]
    if "_int8" not in name:
        quantize_dynamic_int8(d)
        variants.append(True)
    for quantized in variants:
        with ClipModel(d, threads=1, quantized=quantized) as model:
            pix = np.stack([model.preprocess(p) for p in photos])
            got_img = model.encode_images(pix)
            got_txt = model.encode_texts(texts)
            ids = model.tokenizer(texts)
            ref_img = _ort_embed(model.image_path, {"pixel_values": pix})
            ref_txt = _ort_embed(model.text_path, {"input_ids": ids.astype(np.int64)})
        assert got_img.shape == (3, model.embed_dim) and got_txt.shape == (3, model.embed_dim)
        np.testing.assert_allclose(got_img, ref_img, atol=1e-5)
        np.testing.assert_allclose(got_txt, ref_txt, atol=1e-5)
        # distinct inputs give distinct unit vectors (the towers really use their input)
        assert np.allclose(np.linalg.norm(got_img, axis=1), 1, atol=1e-5)
        assert np.abs(got_img[0] - got_img[1]).max() > 1e-3 and np.abs(got_txt[0] - got_txt[1]).max() > 1e-3


# ------------------------------------------------------------------------------------------------ MLLMs
SCORER_CASES = MLLM_NAMES

# The answer pieces each real vocabulary has as single tokens (ids are those of the published vocabulary,
# except SmolVLM's, whose vocabulary here is StarCoder's: see its mllm.json replica note).
ANSWER_PIECES = {
    "gpt2-bpe": (
        {"True", "ĠTrue", "true", "Ġtrue", "TRUE"},
        {"False", "ĠFalse", "false", "Ġfalse", "FALSE"},
    ),
    "gemma": ({"True", "▁True", "true", "▁true", "TRUE"}, {"False", "▁False", "false", "▁false", "FALSE"}),
    "llama-spm": ({"▁True", "▁true", "▁TRUE"}, {"▁False", "▁false", "▁FALSE"}),
}
QWEN_IDS = ({2514, 3007, 1866, 830, 20611}, {4049, 3557, 3849, 895, 30351})
FAMILY = {"smolvlm": "gpt2-bpe", "qwen2.5-vl": "gpt2-bpe", "gemma-3": "gemma", "llama-spm": "llama-spm"}
QUERY = "a dog on the beach"


def mllm(name: str) -> Path:
    return replica(name)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    """Lossless photos no larger than any registry image_max_side: mtmd's decoder sees PIL's pixels."""
    from .conftest import make_photo

    d = tmp_path_factory.mktemp("replica-photos")
    return [make_photo(d / f"p{i}.png", seed=i, size=(320 - 40 * i, 240)) for i in range(3)]


def _scorer(name: str, **kw):
    from retllm_desktop.models.llm.scorer import MllmScorer

    kw.setdefault("threads", 1)
    kw.setdefault("n_ctx", 4096)  # SmolVLM: ~1,100 positions per look (overview + tiles)
    return MllmScorer(mllm(name), **kw)


@pytest.mark.parametrize("name", MLLM_NAMES)
def test_mllm_replica_is_the_published_format(name, mllm_sources):
    from retllm_desktop.devtools import templates
    from retllm_desktop.devtools.replicas.specs import SPECS
    from retllm_desktop.devtools.replicas.tokenizer import CONTROL, read_kv
    from retllm_desktop.models.hub.registry import load_registry

    spec, d = SPECS[name], mllm(name)
    meta = __import__("json").loads((d / "mllm.json").read_text())
    assert meta["handler"] == load_registry().get(name).config["handler"]
    text, proj = read_kv(d / "model.gguf"), read_kv(d / "mmproj.gguf")
    arch = spec.text.arch
    assert text["general.architecture"] == arch and text[f"{arch}.attention.head_count"] == 4
    if spec.template:
        assert text["tokenizer.chat_template"] == templates.load(name)
    else:
        assert "tokenizer.chat_template" not in text  # mys/ggml_llava-v1.5-7b has none
    assert proj["clip.projector_type"] == spec.vision.projector
    for key in ("image_size", "patch_size"):
        assert proj[f"clip.vision.{key}"] == getattr(spec.vision, key)
    assert proj["clip.vision.image_mean"] == pytest.approx(spec.vision.mean)
    assert proj["clip.vision.image_std"] == pytest.approx(spec.vision.std)
    for key, value in spec.vision.extra.items():
        if key != "clip.vision.n_wa_pattern":  # tiny: 2 blocks, so the pattern is 2 (real: 8)
            assert proj[key] == value
    tokens, types = text["tokenizer.ggml.tokens"], text["tokenizer.ggml.token_type"]
    specials = {
        "smolvlm": {1: "<|im_start|>", 49189: "<fake_token_around_image>", 49279: "<end_of_utterance>"},
        "qwen2.5-vl": {151644: "<|im_start|>", 151652: "<|vision_start|>", 151655: "<|image_pad|>"},
        "gemma-3": {105: "<start_of_turn>", 106: "<end_of_turn>", 255999: "<start_of_image>"},
        "llama-spm": {1: "<s>", 2: "</s>"},
    }[spec.tokenizer.recipe]
    for i, piece in specials.items():
        assert tokens[i] == piece and types[i] == CONTROL
    n_vocab = {"smolvlm": 49280, "qwen2.5-vl": 151936, "gemma-3": 262208, "llama-spm": 32000}
    assert len(tokens) == n_vocab[spec.tokenizer.recipe]
    assert meta["replica"]["tokenizer"] == spec.tokenizer.note
    with _scorer(name) as s:
        s.load()  # llama.cpp + libmtmd accept the pair (mmproj output width = text n_embd)


@pytest.mark.parametrize("name", MLLM_NAMES)
def test_answer_pieces_are_real_single_tokens(name, mllm_sources):
    from retllm_desktop.devtools.replicas.specs import SPECS
    from retllm_desktop.devtools.replicas.tokenizer import read_kv

    tokens = read_kv(mllm(name) / "model.gguf")["tokenizer.ggml.tokens"]
    with _scorer(name) as s:
        true_ids, false_ids = s.true_token_ids, s.false_token_ids
    want_true, want_false = ANSWER_PIECES[FAMILY[SPECS[name].tokenizer.recipe]]
    assert {tokens[i] for i in true_ids} == want_true and len(true_ids) == len(want_true)
    assert {tokens[i] for i in false_ids} == want_false and len(false_ids) == len(want_false)
    if name.startswith("qwen"):
        assert (set(true_ids), set(false_ids)) == QWEN_IDS


def _data_uri(path: Path) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def _handler_logits(name: str, photo: Path) -> tuple[np.ndarray, str]:
    """Raw next-token logits from llama-cpp-python's own chat-handler pipeline, and the prompt it ran.

    gguf-template models: MTMDChatHandler on the same messages (it renders the GGUF's template itself).
    qwen25vl / llava15: our prompt deliberately differs from those handlers' templates (see render_prompt),
    so their engine runs our rendered prompt verbatim; the difference itself is checked by the caller.
    """
    import llama_cpp
    from llama_cpp.llama_chat_format import Llava15ChatHandler, MTMDChatHandler

    from retllm_desktop.models.llm.scorer import load_prompts, render_prompt

    meta = __import__("json").loads((mllm(name) / "mllm.json").read_text())
    parts = load_prompts()["score"]["text"]["parts"]
    uri = _data_uri(photo)
    if meta["handler"] == "gguf-template":
        handler = MTMDChatHandler(
            clip_model_path=str(mllm(name) / "mmproj.gguf"), verbose=False, use_gpu=False
        )
        content = [
            {"type": "image_url", "image_url": {"url": uri}}
            if p == "<candidate>"
            else {"type": "text", "text": p.replace("{query}", QUERY)}
            for p in parts
        ]
        prompt = None
    else:

        class Verbatim(Llava15ChatHandler):
            DEFAULT_SYSTEM_MESSAGE = None
            CHAT_FORMAT = "{{ messages[0]['content'][0]['text'] }}"

        msgs = [{"role": "user", "content": [
            {"type": "image", "ref": photo} if p == "<candidate>" else {"type": "text", "text": p.replace("{query}", QUERY)}
            for p in parts
        ]}]  # fmt: skip
        prompt, _ = render_prompt(meta["handler"], msgs, marker=uri)
        handler = Verbatim(clip_model_path=str(mllm(name) / "mmproj.gguf"), verbose=False)
        content = [{"type": "text", "text": prompt}, {"type": "image_url", "image_url": {"url": uri}}]
    llm = llama_cpp.Llama(
        str(mllm(name) / "model.gguf"), n_ctx=2048, n_threads=1, verbose=False, chat_handler=handler
    )
    try:
        llm.create_chat_completion(
            messages=[{"role": "user", "content": content}], max_tokens=1, temperature=0.0
        )
        raw = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(llm.n_vocab(),))
        return raw.astype(np.float64), prompt or ""
    finally:
        llm.close()


@pytest.mark.parametrize("name", SCORER_CASES)
def test_scores_equal_llama_cpp_python_chat_handler(name, photos, mllm_sources):
    with _scorer(name) as s:
        got = s.score(photos[0], text=QUERY, ve="off")
        true_ids, false_ids = s.true_token_ids, s.false_token_ids
    raw, prompt = _handler_logits(name, photos[0])
    p = np.exp(raw - raw.max())
    p /= p.sum()
    top = np.sort(p)[-10:] / np.sort(p)[-10:].sum()
    entropy = float(-(top * np.log(top)).sum() / np.log(10))
    assert got.p_true == pytest.approx(p[true_ids].sum(), rel=1e-5, abs=1e-9)
    assert got.p_false == pytest.approx(p[false_ids].sum(), rel=1e-5, abs=1e-9)
    assert got.entropy == pytest.approx(entropy, abs=1e-5)
    if name.startswith("qwen"):
        # the one documented deviation from Qwen25VLChatHandler: the "\n" after "<|im_start|>assistant"
        from jinja2.sandbox import ImmutableSandboxedEnvironment
        from llama_cpp.llama_chat_format import Qwen25VLChatHandler

        uri = _data_uri(photos[0])
        theirs = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(
            Qwen25VLChatHandler.CHAT_FORMAT
        ).render(
            messages=[
                {"role": "system", "content": Qwen25VLChatHandler.DEFAULT_SYSTEM_MESSAGE},
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri}},
                                             {"type": "text", "text": prompt.split(uri)[1].split("<|im_end|>")[0]}]},
            ],
            add_generation_prompt=True,
        )  # fmt: skip
        assert prompt == theirs + "\n" and prompt.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("name", SCORER_CASES)
def test_second_look_prompt_contains_the_first_answer(name, photos, mllm_sources, monkeypatch):
    """The prompts mtmd really tokenises: the second look's holds the first answer in the assistant turn."""
    from llama_cpp import mtmd_cpp

    seen: list[str] = []
    real = mtmd_cpp.mtmd_tokenize

    def spy(ctx, chunks, text_ref, bitmaps, n):
        it = text_ref._obj
        seen.append(it.text[: it.text_len].decode("utf-8"))
        return real(ctx, chunks, text_ref, bitmaps, n)

    monkeypatch.setattr(mtmd_cpp, "mtmd_tokenize", spy)
    with _scorer(name) as s:
        s.score(photos[1], text=QUERY, ve="always")
        first = s.last_passes[0]
    answer = "True" if first[0] >= first[1] else "False"
    second = seen[-1]
    between = second[second.index(QUERY) + len(QUERY) : second.index("again")]  # first question .. second
    assert answer in between, between


@pytest.mark.parametrize("name", SCORER_CASES)
def test_cache_restart_and_restore_give_identical_scores(name, photos, mllm_sources, tmp_path):
    from retllm_desktop.models.llm.cache import EmbeddingCache

    def caches():
        return {
            "cache": EmbeddingCache(tmp_path / "emb", 256 * 1024**2),
            "state_disk_cache": EmbeddingCache(tmp_path / "kv", 256 * 1024**2),
        }

    def numbers(fs):
        return (fs.p_true, fs.p_false, fs.entropy)

    with _scorer(name, **caches()) as s:
        cold = [numbers(s.score(p, text=QUERY, ve="off")) for p in photos[:2]]
        warm = [numbers(s.score(p, text=QUERY, ve="off")) for p in photos[:2]]  # live KV / snapshots
        other = [numbers(s.score(p, text="two red cars", ve="off")) for p in photos[:2]]  # restored snapshots
        assert s.stats["encode"] == 2 and s.stats["state_restores"] >= 2
    with _scorer(name, **caches()) as restarted:  # a new process: embeddings and KV states from disk
        again = [numbers(restarted.score(p, text=QUERY, ve="off")) for p in photos[:2]]
        assert restarted.stats["encode"] == 0 and restarted.stats["state_disk_hits"] == 2
    with _scorer(name) as fresh:
        reference = [numbers(fresh.score(p, text="two red cars", ve="off")) for p in photos[:2]]
    for a, b in ((cold, warm), (cold, again), (reference, other)):
        assert np.asarray(b) == pytest.approx(np.asarray(a), abs=1e-6)


@pytest.mark.parametrize("name", SCORER_CASES)
def test_cancel_aborts_and_leaves_a_clean_context(name, photos, mllm_sources):
    import threading

    from retllm_desktop.errors import CancelledError

    with _scorer(name) as s:
        clean = s.score(photos[2], text=QUERY, ve="off")
        cancel = threading.Event()
        cancel.set()
        before = s.stats["tokens_evaluated"]
        with pytest.raises(CancelledError):
            s.score(photos[2], text="a blue boat", ve="off", cancel=cancel)
        assert s.stats["tokens_evaluated"] == before  # aborted inside llama.cpp, not after
        again = s.score(photos[2], text=QUERY, ve="off", cancel=threading.Event())
    assert (again.p_true, again.entropy) == pytest.approx((clean.p_true, clean.entropy), abs=1e-6)


@pytest.mark.parametrize("name", SCORER_CASES)
def test_explain_streams_text(name, photos, mllm_sources):
    with _scorer(name) as s:
        pieces = list(s.explain(photos[0], text=QUERY, max_tokens=8))
        assert pieces and all(isinstance(p, str) and p for p in pieces)
        assert "\n" not in "".join(pieces)
        assert list(s.explain(photos[0], text=QUERY, max_tokens=8)) == pieces  # greedy
