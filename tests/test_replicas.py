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
# The published ONNX interfaces, per download source (written from the exporters' code and the repos'
# documentation, independently of the replica generator):
# * Xenova/* (CLIP, MobileCLIP): optimum's ViTOnnxConfig / CLIPTextOnnxConfig inputs, transformers.js's
#   scripts/extra/clip.py outputs (projected embeddings only);
# * onnx-community/siglip2-*: transformers.js SigLIP exports, both towers output last_hidden_state and
#   pooler_output (the embedding); fp16 files keep float32 inputs and outputs;
# * immich-app/*: immich_model_exporter's torch.onnx.export without dynamic axes: image -> embedding,
#   text (int32) -> embedding.
F, I64, I32 = 1, 7, 6
XENOVA_IO = {
    "image.onnx": (
        [("pixel_values", F, ["batch_size", "num_channels", "height", "width"])],
        ["image_embeds"],
    ),
    "text.onnx": ([("input_ids", I64, ["batch_size", "sequence_length"])], ["text_embeds"]),
}
SIGLIP_TJS_IO = {
    "image.onnx": (
        [("pixel_values", F, ["batch_size", "num_channels", "height", "width"])],
        ["last_hidden_state", "pooler_output"],
    ),
    "text.onnx": (
        [("input_ids", I64, ["batch_size", "sequence_length"])],
        ["last_hidden_state", "pooler_output"],
    ),
}


def published_io(name: str, entry) -> dict:
    repo = entry.hf_repo
    if repo.startswith("immich-app/"):
        s, n = entry.config["image_size"], entry.config["context_length"]
        return {
            "image.onnx": ([("image", F, [1, 3, s, s])], ["embedding"]),
            "text.onnx": ([("text", I32, [1, n])], ["embedding"]),
        }
    if repo.startswith("onnx-community/siglip"):
        return SIGLIP_TJS_IO
    assert repo.startswith("Xenova/"), f"{name}: no published interface recorded for {repo}"
    return XENOVA_IO


def _io(path: Path) -> tuple[list[tuple[str, int, list]], list[tuple[str, int, list]]]:
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph

    def desc(v) -> tuple[str, int, list]:
        t = v.type.tensor_type
        return v.name, t.elem_type, [d.dim_param or d.dim_value for d in t.shape.dim]

    return [desc(v) for v in g.input], [desc(v) for v in g.output]


@pytest.mark.parametrize("name", CLIP_NAMES)
def test_clip_replica_has_the_published_interface(name):
    import onnx

    from retllm_desktop.models.hub.registry import load_registry

    entry = load_registry().get(name)
    d = replica(name)
    dim = entry.config["embed_dim"]
    for fname, (inputs, out_names) in published_io(name, entry).items():
        got_in, got_out = _io(d / fname)
        assert got_in == inputs
        assert [o[0] for o in got_out] == out_names
        emb = got_out[-1]
        assert emb[1] == F and emb[2][-1] == dim and len(emb[2]) == 2  # [batch, D] float32
        assert emb[2][0] == (1 if entry.hf_repo.startswith("immich-app/") else "batch_size")
    paths = " ".join(f.path for f in entry.files)
    image = onnx.load(str(d / "image.onnx"))
    ops = {n.op_type for n in image.graph.node}
    text_ops = {n.op_type for n in onnx.load(str(d / "text.onnx")).graph.node}
    weights = {t.data_type for t in image.graph.initializer if len(t.dims) >= 2}
    if (
        "_quantized" in paths
    ):  # transformers.js Q8: uint8 ConvInteger where there is a Conv, int8 MatMulInteger
        assert {"ConvInteger", "MatMulInteger"} <= ops and "MatMulInteger" in text_ops
    elif "_fp16" in paths:  # fp16 weights, float32 at the edges
        assert weights == {10} and "Cast" in ops and "Conv" in ops
    else:
        assert "Conv" in ops and not any("Integer" in o for o in ops | text_ops) and weights == {1}
    if entry.config.get("tokenizer"):  # the model's own tokenizer ships with it
        assert (d / entry.config["tokenizer"]["file"]).is_file()


def _ort_embed(path: Path, rows: np.ndarray, output: str) -> np.ndarray:
    """A bare onnxruntime session and the named output: the whole batch at once, or one row at a time for
    exports with a fixed batch of 1 (dynamic int8 quantises per batch, so the two differ there)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    dtype = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}[inp.type]
    if inp.shape[0] == 1:
        out = np.stack([sess.run([output], {inp.name: row[None].astype(dtype)})[0][0] for row in rows])
    else:
        (out,) = sess.run([output], {inp.name: rows.astype(dtype)})
    return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.mark.parametrize("name", CLIP_NAMES)
def test_clip_replica_through_clipmodel_matches_onnxruntime(name, tmp_path):
    """ClipModel (via the registry's clip.json) fp32/fp16 and int8 vs bare sessions on the same inputs."""
    import shutil

    from PIL import Image

    from retllm_desktop.models.clip.towers import ClipModel, quantize_dynamic_int8
    from retllm_desktop.models.hub.registry import load_registry

    entry = load_registry().get(name)
    d = tmp_path / name
    shutil.copytree(replica(name), d)
    rng = np.random.default_rng(5)
    photos = [Image.fromarray(rng.integers(0, 256, (90 + 20 * i, 120, 3), dtype=np.uint8)) for i in range(3)]
    texts = ["a dog on the beach", "two red cars at night", "x"]
    io = published_io(name, entry)
    outs = (io["image.onnx"][1][-1], io["text.onnx"][1][-1])
    variants = [False]
    paths = " ".join(f.path for f in entry.files)
    if "_int8" not in name and "_fp16" not in paths:
        quantize_dynamic_int8(d)
        variants.append(True)
    for quantized in variants:
        with ClipModel(d, threads=1, quantized=quantized) as model:
            pix = np.stack([model.preprocess(p) for p in photos])
            got_img = model.encode_images(pix)
            got_txt = model.encode_texts(texts)
            ids = model.tokenizer(texts)
            ref_img = _ort_embed(model.image_path, pix, outs[0])
            ref_txt = _ort_embed(model.text_path, ids, outs[1])
        assert got_img.shape == (3, entry.config["embed_dim"]) == got_txt.shape
        assert ids.shape == (3, entry.config["context_length"])
        tol = 1e-5
        np.testing.assert_allclose(got_img, ref_img, atol=tol)
        np.testing.assert_allclose(got_txt, ref_txt, atol=tol)
        # distinct inputs give distinct unit vectors (the towers really use their input)
        assert np.allclose(np.linalg.norm(got_img, axis=1), 1, atol=1e-5)
        assert np.abs(got_img[0] - got_img[1]).max() > 1e-3 and np.abs(got_txt[0] - got_txt[1]).max() > 1e-3


def _models_with(tmp_path: Path, *names: str) -> Path:
    """A models folder holding these registry replicas (symlinked: the replica cache stays read-only)."""
    models = tmp_path / "models"
    (models / "clip").mkdir(parents=True)
    for n in names:
        (models / "clip" / n).symlink_to(replica(n), target_is_directory=True)
    return models


@pytest.fixture(scope="module")
def library_photos(tmp_path_factory) -> Path:
    from .conftest import make_photo

    d = tmp_path_factory.mktemp("replica-library")
    for i in range(4):
        make_photo(d / f"p{i}.jpg", seed=40 + i, size=(200 + 30 * i, 150))
    return d


@pytest.mark.parametrize("name", CLIP_NAMES)
def test_fresh_library_indexes_and_searches_with_each_clip(name, tmp_path, library_photos):
    from retllm_desktop.library import Library

    models = _models_with(tmp_path, name)
    with Library(tmp_path / "lib", models_dir=models, clip_model=name, threads=1, decode_workers=1,
                 batch_size=3, read_text=False) as lib:  # fmt: skip
        summary = lib.index_roots([str(library_photos)])
        assert summary.added == 4 and summary.failed == 0
        (update,) = list(lib.search("a dog on the beach", top=10))
        assert len(update.results) == 4
        q = lib.clip.encode_texts(["a dog on the beach"])[0]
        for r in update.results:  # scores are this model's cosines of the stored vectors
            stored = lib.catalog.embedding(r.photo.id, lib.clip.key)
            assert stored.shape == (lib.clip.embed_dim,)
            assert np.isclose(float(q @ stored), r.score, atol=1e-4)


def test_switching_between_registry_families_never_mixes(tmp_path, library_photos):
    """MobileCLIP (512-d, CLIP BPE) -> SigLIP 2 (768-d, Gemma tokenizer): old vectors until the new set is whole."""
    import threading

    from retllm_desktop.library import Library
    from retllm_desktop.models.clip.identity import display_name

    a, b = "mobileclip-s0", "siglip2-b16"
    models = _models_with(tmp_path, a, b)

    def open_lib(clip: str) -> Library:
        return Library(tmp_path / "lib", models_dir=models, clip_model=clip, threads=1, decode_workers=1,
                       batch_size=2, read_text=False)  # fmt: skip

    def top(lib: Library) -> list[tuple[str, float]]:
        (u,) = list(lib.search("a red square", top=8))
        return [(r.path, round(r.score, 5)) for r in u.results]

    with open_lib(a) as lib:
        lib.index_roots([str(library_photos)])
        before = top(lib)
    with open_lib(b) as lib:
        assert lib.search_model == a and top(lib) == before
        cancel = threading.Event()
        lib.index_roots(
            progress=lambda stage, done, total: cancel.set() if done >= 2 else None, cancel=cancel
        )
        counts = {display_name(k): n for k, n in lib.catalog.embedding_models().items()}
        assert counts[a] == 4 and 0 < counts.get(b, 0) < 4
        assert lib.search_model == a and top(lib) == before  # partial SigLIP vectors are never searched
        lib.index_roots()
        assert lib.search_model == b
        after = top(lib)
        q = lib.clip.encode_texts(["a red square"])[0]
        assert q.shape == (768,)
        for path, score in after:
            stored = lib.catalog.embedding(lib.catalog.photo_by_path(path).id, lib.clip.key)
            assert np.isclose(float(q @ stored), score, atol=1e-4)


def test_siglip_scores_become_probabilities_with_its_scale_and_bias():
    from retllm_desktop.models.clip.towers import ClipModel

    siglip, clip = ClipModel(replica("siglip2-b16")), ClipModel(replica("clip-vit-b32"))
    cos = np.array([-0.1, 0.0, 0.1, 0.2])
    p = siglip.match_probability(cos)
    expected = 1 / (1 + np.exp(-(np.exp(4.724453449249268) * cos - 16.771724700927734)))
    np.testing.assert_allclose(p, expected)
    assert p[1] < 1e-6 < p[3] and np.all(np.diff(p) > 0)  # monotone: ranking by cosine is unchanged
    assert clip.match_probability(cos) is None  # CLIP-style models have no per-pair probability


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
    # the handler's mtmd context sets no image-token cap and no flash attention: compare like with like
    with _scorer(name, detail="full", flash_attn=False) as s:
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
