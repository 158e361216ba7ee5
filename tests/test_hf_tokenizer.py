"""The model's own tokenizer.json through Hugging Face `tokenizers` (SigLIP 2's Gemma, XLM-R), padded for the tower.

The XLM-R tokenizer.json the replicas use is rebuilt from llama.cpp's copy of XLM-R's vocabulary; here it is
checked against llama.cpp's own SentencePiece-unigram tokenizer on the same vocabulary, string by string,
so the file is XLM-R's tokenization and not just its format.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from retllm_desktop.devtools.replicas.sources import default_sources_dir, have_sources
from retllm_desktop.models.clip.hf_tokenizer import HFTokenizer, TokenizerSpec
from retllm_desktop.models.clip.towers import ClipConfig

MULTILINGUAL = [
    "a dog on the beach",
    "chien sur la plage",
    "Hund am Strand",
    "perro en la playa al atardecer",
    "cane sulla spiaggia",
    "собака на пляже",
    "海滩上的狗",
    "浜辺の犬",
    "해변의 개",
    "كلب على الشاطئ",
    "כלב על החוף",
    "समुद्र तट पर कुत्ता",
    "köpek plajda",
    "pies na plaży, zimą 2019",
    "Ελληνικά γράμματα",
    "café crème brûlée à Paris",
    "  leading and   repeated   spaces  ",
    "UPPER Case And Numbers 12345",
    "emoji 🐶🏖️ and symbols © ® ™",
    "full-width ＡＢＣ１２３ and ligature ﬁ",
    "tab\tand\nnewline",
    "x",
    "",
]


@pytest.fixture(scope="module")
def sources():
    if not have_sources():
        msg = f"llama.cpp vocab files missing in {default_sources_dir()} (run `make replica-sources`)"
        if os.environ.get("RETLLM_REQUIRE_REPLICAS") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return default_sources_dir()


@pytest.fixture(scope="module")
def xlmr_file(sources, tmp_path_factory):
    from retllm_desktop.devtools.replicas.hf_tokenizers import write_tokenizer

    p = tmp_path_factory.mktemp("xlmr") / "tokenizer.json"
    write_tokenizer("xlm-roberta", p, sources)
    return p


@pytest.fixture(scope="module")
def gemma_file(sources, tmp_path_factory):
    from retllm_desktop.devtools.replicas.hf_tokenizers import write_tokenizer

    p = tmp_path_factory.mktemp("gemma") / "tokenizer.json"
    write_tokenizer("gemma-standin", p, sources)
    return p


def test_xlmr_tokenizer_equals_llama_cpp_unigram(xlmr_file, sources):
    import llama_cpp

    from retllm_desktop.devtools.replicas.hf_tokenizers import XLMR_VOCAB_FILE

    llm = llama_cpp.Llama(str(sources / XLMR_VOCAB_FILE), vocab_only=True, verbose=False)
    tok = HFTokenizer(xlmr_file, TokenizerSpec(pad="<pad>"), context_length=512)
    differ = []
    for text in MULTILINGUAL:
        ours = tok.encode(text)
        cleaned = " ".join(text.split())  # open_clip's whitespace cleaning, which HFTokenizer applies
        theirs = llm.tokenize(cleaned.encode("utf-8"), add_bos=True, special=False)
        if ours != theirs:
            differ.append((text, ours, theirs))
    assert not differ, differ
    # anchors: XLM-R's published ids (<s> 0, </s> 2, "▁Hello" 35378, "▁world" 8999)
    assert tok.encode("Hello world") == [0, 35378, 8999, 2]


def test_padding_truncation_and_mask_ids(xlmr_file):
    tok = HFTokenizer(xlmr_file, TokenizerSpec(pad="<pad>"), context_length=8)
    ids = tok(["chien", "une très longue phrase qui ne tient pas dans huit jetons du tout"])
    assert ids.shape == (2, 8) and ids.dtype == np.int64
    assert ids[0, 0] == 0 and 2 in ids[0] and (ids[0, list(ids[0]).index(2) + 1 :] == tok.pad_id).all()
    assert tok.pad_id == 1
    assert ids[1, 0] == 0 and ids[1, -1] == 2  # truncated, the closing </s> kept last
    np.testing.assert_array_equal(tok("chien")[0], ids[0])


def test_siglip_style_lowercase_and_appended_eos(gemma_file):
    spec = TokenizerSpec(pad="<pad>", lowercase=True, add_special_tokens=True, append="<eos>")
    tok = HFTokenizer(gemma_file, spec, context_length=64)
    ids = tok(["A Dog ON the Beach", "a dog on the beach", "word " * 100])
    assert ids.shape == (3, 64)
    np.testing.assert_array_equal(ids[0], ids[1])  # lower-cased first
    n = int((ids[0] != 0).sum())
    assert ids[0, n - 1] == 1 and (ids[0, n:] == 0).all()  # <eos> once, then <pad>
    assert ids[2, -1] == 1 and (ids[2] != 0).all()  # long text: truncated, <eos> last
    assert int(ids.max()) < 256000  # the text tower's vocabulary size
    # no <bos>: SigLIP 2's conversion sets add_bos_token=False
    assert ids[0, 0] != 2


def test_stand_in_gemma_is_gemma_shaped(gemma_file):
    data = json.loads(gemma_file.read_text(encoding="utf-8"))
    assert data["model"]["type"] == "BPE" and data["model"]["byte_fallback"]
    vocab = data["model"]["vocab"]
    assert len(vocab) == 256000 and vocab["<pad>"] == 0 and vocab["<eos>"] == 1 and vocab["<bos>"] == 2
    assert "<0x41>" in vocab  # byte fallback pieces


def test_config_round_trip_and_errors():
    data = {
        "name": "m", "embed_dim": 8, "image_size": 32, "context_length": 16,
        "tokenizer": {"file": "tokenizer.json", "pad": "<pad>", "lowercase": True, "append": "<eos>"},
        "io": {"image_output": "pooler_output"},
        "score": {"kind": "sigmoid", "log_scale": 2.0, "bias": -3.0},
    }  # fmt: skip
    cfg = ClipConfig.from_dict(data)
    assert cfg.tokenizer == TokenizerSpec(pad="<pad>", lowercase=True, append="<eos>")
    again = ClipConfig.from_dict(cfg.to_dict())
    assert again.tokenizer == cfg.tokenizer and again.io == cfg.io and again.score == cfg.score
    assert ClipConfig.from_dict({"embed_dim": 8, "image_size": 32}).tokenizer is None  # the CLIP BPE
    from retllm_desktop.errors import ModelLoadError

    for bad in ({"tokenizer": {"kind": "wordpiece"}}, {"io": {"weird": "x"}}, {"score": {"kind": "softmax"}}):
        with pytest.raises(ModelLoadError):
            ClipConfig.from_dict({"embed_dim": 8, "image_size": 32, **bad})


def test_missing_or_broken_tokenizer_file_is_a_clear_error(tmp_path):
    from retllm_desktop.errors import ModelLoadError, ModelNotFoundError

    with pytest.raises(ModelNotFoundError):
        HFTokenizer(tmp_path / "nope.json", TokenizerSpec(), 8)
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(ModelLoadError):
        HFTokenizer(bad, TokenizerSpec(), 8)


def test_attention_mask_leaves_out_the_tokenizers_padding(tmp_path, sources):
    """A text tower that takes an attention_mask (M-CLIP style) gets 1 for real tokens, 0 for <pad> (id 1)."""
    import shutil

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from retllm_desktop.models.clip.towers import ClipModel

    from .test_replicas import replica  # the run's shared replica cache

    d = tmp_path / "m"
    shutil.copytree(replica("clip-multilingual-b32"), d)
    rng = np.random.default_rng(3)
    table = rng.normal(size=(250002, 512)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["e"], axis=0),
        helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["m", "ax"], ["m3"]),
        helper.make_node("Mul", ["e", "m3"], ["em"]),
        helper.make_node("ReduceSum", ["em", "ax1"], ["embedding"], keepdims=0),
    ]
    inits = [numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.array([2], np.int64), "ax"),
             numpy_helper.from_array(np.array([1], np.int64), "ax1")]  # fmt: skip
    ins = [
        helper.make_tensor_value_info(n, TensorProto.INT32, [1, 77]) for n in ("input_ids", "attention_mask")
    ]
    g = helper.make_graph(nodes, "t", ins, [helper.make_tensor_value_info("embedding", 1, [1, 512])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])
    m.ir_version = 8
    onnx.save(m, str(d / "text.onnx"))
    cfg = json.loads((d / "clip.json").read_text())
    cfg["io"].pop("text_input")
    (d / "clip.json").write_text(json.dumps(cfg))
    with ClipModel(d, threads=1) as model:
        got = model.encode_texts(["chien sur la plage", "x"])
        ids = model.tokenizer(["chien sur la plage", "x"])
    assert model.pad_id == 1 and (ids == 1).any()
    ref = np.stack([table[row[row != 1]].sum(axis=0) for row in ids])
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_registry_siglip2_ids_are_text_and_one_eos_whatever_the_post_processor(gemma_file, tmp_path):
    """SigLIP 2 was trained on text + <eos>, no <bos>. Gemma's usual tokenizer.json post-processor adds
    <bos>; the registry's spec skips the file's specials, so that file gives the same ids as one without."""
    from retllm_desktop.models.hub.registry import load_registry

    spec = TokenizerSpec.from_dict(load_registry().get("siglip2-b16").config["tokenizer"])
    data = json.loads(gemma_file.read_text(encoding="utf-8"))
    data["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<bos>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "special_tokens": {"<bos>": {"id": "<bos>", "ids": [2], "tokens": ["<bos>"]}},
    }
    bos_file = tmp_path / "tokenizer.json"
    bos_file.write_text(json.dumps(data), encoding="utf-8")
    texts = ["A dog on the beach", "chien sur la plage"]
    got = HFTokenizer(bos_file, spec, context_length=64)(texts)
    np.testing.assert_array_equal(got, HFTokenizer(gemma_file, spec, context_length=64)(texts))
    n = int((got[0] != 0).sum())
    assert got[0, 0] != 2 and got[0, n - 1] == 1 and list(got[0]).count(1) == 1
    with_specials = TokenizerSpec.from_dict({**spec.to_dict(), "add_special_tokens": True})
    assert HFTokenizer(bos_file, with_specials, context_length=64)(texts)[0, 0] == 2  # what it avoids
