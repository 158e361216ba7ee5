"""ClipTokenizer == open_clip.tokenize, on committed fixtures and (with the export extra) live."""

from __future__ import annotations

import numpy as np
import pytest

from retllm_desktop.errors import ModelNotFoundError
from retllm_desktop.models.clip.tokenizer import ClipTokenizer
from tests.helpers_clip import TOKENIZER_TEXTS, load_tokenizer_cases

CASES = load_tokenizer_cases()


@pytest.fixture(scope="module")
def tok() -> ClipTokenizer:
    return ClipTokenizer()


def test_fixture_covers_helper_texts():
    assert [c["text"] for c in CASES] == TOKENIZER_TEXTS
    assert any(len(c["ids"]) == 77 for c in CASES), "fixture lacks a truncated (> 77 tokens) case"


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_matches_open_clip_fixture(tok, case):
    out = tok(case["text"])
    assert out.dtype == np.int64 and out.shape == (1, 77)
    expected = np.zeros(77, np.int64)
    expected[: len(case["ids"])] = case["ids"]
    np.testing.assert_array_equal(out[0], expected)


def test_batch_equals_single(tok):
    texts = [c["text"] for c in CASES]
    batch = tok(texts)
    assert batch.shape == (len(texts), 77)
    for i, t in enumerate(texts):
        np.testing.assert_array_equal(batch[i], tok(t)[0])


def test_special_structure_and_truncation(tok):
    long = "dog " * 200
    ids = tok([long, ""])
    assert ids[0, 0] == tok.sot_token_id == 49406
    assert ids[0, -1] == tok.eot_token_id == 49407
    assert (ids[0, 1:-1] == tok.encode("dog")[0]).all()
    assert ids[1, :3].tolist() == [49406, 49407, 0]
    # EOT is the largest id in every row: the text tower pools at argmax(input_ids).
    assert (ids.argmax(axis=1) == [76, 1]).all()


def test_custom_context_length_and_roundtrip(tok):
    ids = ClipTokenizer(context_length=8)("a photo of a very fluffy dog on grass")
    assert ids.shape == (1, 8) and ids[0, -1] == 49407
    assert tok.decode(tok.encode("A Photo of a Dog!")).strip() == "a photo of a dog !"
    assert tok.vocab_size == 49408


def test_missing_vocab_raises(tmp_path):
    with pytest.raises(ModelNotFoundError, match="vocab"):
        ClipTokenizer(tmp_path / "nope.txt.gz")


@pytest.mark.export
def test_live_against_open_clip(tok):
    open_clip = pytest.importorskip("open_clip")
    texts = TOKENIZER_TEXTS + [
        "Ünïcödé & <b>html</b> &nbsp; tags",
        "x" * 500,
        "🙂" * 60,
        "the quick brown fox jumps over the lazy dog " * 12,
        "1234567890 0.5 -3 +7 1e9",
    ]
    expected = open_clip.tokenize(texts).numpy()
    np.testing.assert_array_equal(tok(texts), expected)
    np.testing.assert_array_equal(
        ClipTokenizer(context_length=16)(texts), open_clip.tokenize(texts, 16).numpy()
    )
