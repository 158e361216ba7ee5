"""``tokenizer.json`` files for the CLIP replicas, rebuilt from llama.cpp's vocab-only GGUFs (offline sources).

* XLM-RoBERTa (the multilingual CLIP's text tower): **the real vocabulary**. llama.cpp's
  ``ggml-vocab-nomic-bert-moe.gguf`` (Nomic's XLM-R-based embedder) carries XLM-R's 250,002 SentencePiece
  unigram pieces with their scores, the fairseq id layout (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3,
  ``<mask>`` 250001) and SentencePiece's precompiled normalisation map; padded to 250,048 with unused
  ``[PAD…]`` entries, which are dropped. Written in the layout ``transformers`` gives XLM-R's
  ``tokenizer.json`` (Precompiled + collapse-spaces normaliser, Metaspace, ``<s> $A </s>``).
  ``tests/test_hf_tokenizer.py`` checks it against llama.cpp's own unigram tokenizer on many strings.
* SigLIP 2's Gemma tokenizer (256,000 pieces, Gemma 1/2's vocabulary) is **not** in the llama.cpp
  sources. What stands in: Gemma 4's BPE vocabulary from ``ggml-vocab-gemma-4.gguf``, cut to the first
  256,000 ids (merges whose result falls outside are dropped), in the format of Gemma's ``tokenizer.json``
  (spaces as ``▁``, byte fallback, ``$A <eos>`` as ``transformers``' SigLIP 2 conversion sets it). Same
  family, size and special-token ids (``<pad>`` 0, ``<eos>`` 1, ``<bos>`` 2, ``<unk>`` 3); the ids of
  ordinary words differ from the real file.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from .tokenizer import CONTROL, read_kv

XLMR_VOCAB_FILE = "ggml-vocab-nomic-bert-moe.gguf"
GEMMA_VOCAB_FILE = "ggml-vocab-gemma-4.gguf"
XLMR_SIZE = 250002
SIGLIP2_VOCAB_SIZE = 256000

XLMR_NOTE = (
    "XLM-RoBERTa's real 250,002-piece SentencePiece unigram vocabulary, scores and normalisation map, from "
    "llama.cpp's ggml-vocab-nomic-bert-moe.gguf, written as transformers writes XLM-R's tokenizer.json."
)
GEMMA_NOTE = (
    "Stand-in: SigLIP 2's own Gemma vocabulary (256,000 pieces) is not available offline; Gemma 4's BPE "
    "vocabulary (llama.cpp's ggml-vocab-gemma-4.gguf) cut to 256,000 ids, with the real special-token ids "
    "and Gemma's tokenizer.json layout. Token ids of ordinary words differ from the real file."
)


def _added(i: int, piece: str, lstrip: bool = False) -> dict[str, Any]:
    return {
        "id": i, "content": piece, "single_word": False, "lstrip": lstrip, "rstrip": False,
        "normalized": False, "special": True,
    }  # fmt: skip


def _special(piece: str, i: int) -> dict[str, Any]:
    return {"id": piece, "ids": [i], "tokens": [piece]}


def xlmr_tokenizer(vocab_gguf: Path) -> dict[str, Any]:
    kv = read_kv(vocab_gguf)
    tokens: list[str] = kv["tokenizer.ggml.tokens"][:XLMR_SIZE]
    scores: list[float] = kv["tokenizer.ggml.scores"][:XLMR_SIZE]
    if tokens[:4] != ["<s>", "<pad>", "</s>", "<unk>"] or tokens[-1] != "<mask>":
        raise ValueError(f"{vocab_gguf} does not hold XLM-R's vocabulary layout")
    charsmap = bytes(int(b) & 0xFF for b in kv["tokenizer.ggml.precompiled_charsmap"])
    specials = {0: "<s>", 1: "<pad>", 2: "</s>", 3: "<unk>", XLMR_SIZE - 1: "<mask>"}
    vocab = [
        [t, 0.0 if i in specials else float(s)] for i, (t, s) in enumerate(zip(tokens, scores, strict=True))
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [_added(i, t, lstrip=t == "<mask>") for i, t in specials.items()],
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(charsmap).decode("ascii")},
                {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "},
            ],
        },
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [
                {"SpecialToken": {"id": "<s>", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "</s>", "type_id": 0}},
            ],
            "pair": [
                {"SpecialToken": {"id": "<s>", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "</s>", "type_id": 0}},
                {"SpecialToken": {"id": "</s>", "type_id": 0}},
                {"Sequence": {"id": "B", "type_id": 0}},
                {"SpecialToken": {"id": "</s>", "type_id": 0}},
            ],
            "special_tokens": {"<s>": _special("<s>", 0), "</s>": _special("</s>", 2)},
        },
        "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
        "model": {"type": "Unigram", "unk_id": 3, "vocab": vocab, "byte_fallback": False},
    }


def gemma_standin_tokenizer(vocab_gguf: Path, size: int = SIGLIP2_VOCAB_SIZE) -> dict[str, Any]:
    kv = read_kv(vocab_gguf)
    tokens: list[str] = kv["tokenizer.ggml.tokens"][:size]
    types: list[int] = kv["tokenizer.ggml.token_type"][:size]
    if tokens[:4] != ["<pad>", "<eos>", "<bos>", "<unk>"]:
        raise ValueError(f"{vocab_gguf} does not hold Gemma's special-token layout")
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = []
    for m in kv["tokenizer.ggml.merges"]:
        a, _, b = m.partition(" ")
        if a in vocab and b in vocab and (a + b) in vocab:
            merges.append([a, b])
    added = [_added(i, t) for i, (t, ty) in enumerate(zip(tokens, types, strict=True)) if ty == CONTROL]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "<eos>", "type_id": 0}},
            ],
            "pair": [
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "<eos>", "type_id": 0}},
                {"Sequence": {"id": "B", "type_id": 1}},
                {"SpecialToken": {"id": "<eos>", "type_id": 1}},
            ],
            "special_tokens": {"<eos>": _special("<eos>", 1)},
        },
        "decoder": {
            "type": "Sequence",
            "decoders": [
                {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
            ],
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": "<unk>",
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": True,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": merges,
        },  # fmt: skip
    }


BUILDERS = {"xlm-roberta": (XLMR_VOCAB_FILE, xlmr_tokenizer, XLMR_NOTE),
            "gemma-standin": (GEMMA_VOCAB_FILE, gemma_standin_tokenizer, GEMMA_NOTE)}  # fmt: skip


def write_tokenizer(kind: str, dest: Path, sources: Path | None = None) -> str:
    """Write ``dest`` (a tokenizer.json) of ``kind``; returns the note saying how it relates to the real file."""
    from .sources import vocab_path

    vocab_file, build, note = BUILDERS[kind]
    data = build(vocab_path(vocab_file, sources))
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, dest)
    return note
