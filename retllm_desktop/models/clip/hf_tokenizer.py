"""A model's own ``tokenizer.json`` run by Hugging Face's ``tokenizers`` (Rust), padded to the text tower's shape.

SigLIP 2 (Gemma's SentencePiece-BPE vocabulary), XLM-RoBERTa (SentencePiece unigram) and every other
family ship a ``tokenizer.json``: its normalizer, pre-tokenizer, model and post-processor (special tokens)
are the model's, so no tokenizer is written by hand here. What the file cannot say is how the ONNX text
tower wants its input shaped, which the model folder's ``clip.json`` ``tokenizer`` table gives:

* ``pad`` — the padding token (its id fills the row up to ``context_length``); the towers that mask
  padding compute the mask from it;
* ``lowercase`` — lower-case the text first (SigLIP was trained on lower-cased captions);
* ``add_special_tokens`` — apply the file's post-processor (XLM-R: ``<s> … </s>``); SigLIP 2's text
  tower instead wants no ``<bos>``, so it is ``false`` there and ``append`` adds ``<eos>``;
* ``append`` — a token appended after the text (when the post-processor did not end with it).

Whitespace is collapsed and stripped first (open_clip's default cleaning).
Truncation keeps the first ``context_length`` tokens and, when the sequence ends with a special token
(``</s>``, ``<eos>``), keeps that token as the last one, like ``transformers``' ``truncation=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ModelLoadError, ModelNotFoundError

TOKENIZER_FILENAME = "tokenizer.json"


@dataclass(frozen=True)
class TokenizerSpec:
    """The ``tokenizer`` table of ``clip.json`` (see the module docstring)."""

    file: str = TOKENIZER_FILENAME
    pad: str = "<pad>"
    lowercase: bool = False
    add_special_tokens: bool = True
    append: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TokenizerSpec:
        unknown = set(data) - {"kind", "file", "pad", "lowercase", "add_special_tokens", "append"}
        if unknown:
            raise ValueError(f"unknown tokenizer keys {sorted(unknown)}")
        return cls(
            file=str(data.get("file", TOKENIZER_FILENAME)),
            pad=str(data.get("pad", "<pad>")),
            lowercase=bool(data.get("lowercase", False)),
            add_special_tokens=bool(data.get("add_special_tokens", True)),
            append=None if data.get("append") in (None, "") else str(data["append"]),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "tokenizer.json", "file": self.file, "pad": self.pad}
        out.update(lowercase=self.lowercase, add_special_tokens=self.add_special_tokens)
        if self.append:
            out["append"] = self.append
        return out


class HFTokenizer:
    """``HFTokenizer(path, spec, 64)(["a dog"])`` -> int64 ``(1, 64)``; same call shape as ``ClipTokenizer``."""

    def __init__(self, path: str | Path, spec: TokenizerSpec, context_length: int):
        try:
            from tokenizers import Tokenizer
        except ImportError as e:  # a dependency of the package; only a broken install lacks it
            raise ModelLoadError("the `tokenizers` package is missing: pip install tokenizers") from e
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelNotFoundError(f"tokenizer file not found: {self.path}")
        try:
            self._tok = Tokenizer.from_file(str(self.path))
        except Exception as e:  # the Rust side raises plain Exception
            raise ModelLoadError(f"cannot read tokenizer {self.path}: {e}") from e
        self._tok.no_padding()
        self._tok.no_truncation()
        self.spec = spec
        self.context_length = int(context_length)
        if self.context_length < 2:
            raise ModelLoadError("context_length must be >= 2")
        self.pad_id = self._id(spec.pad)
        self.append_id = self._id(spec.append) if spec.append else None
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)

    def _id(self, token: str) -> int:
        i = self._tok.token_to_id(token)
        if i is None:
            raise ModelLoadError(f"{self.path}: the tokenizer has no token {token!r}")
        return int(i)

    def encode(self, text: str) -> list[int]:
        """Ids of one text before padding (special tokens included, truncated to the context)."""
        return self._encode_batch([text])[0]

    def _encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        # whitespace collapsed and stripped first, as open_clip's default `clean="whitespace"` (and Immich)
        # do: a fast SentencePiece tokenizer would otherwise turn a trailing space into a "▁" token
        texts = [" ".join(t.split()) for t in texts]
        if self.spec.lowercase:
            texts = [t.lower() for t in texts]
        encs = self._tok.encode_batch(list(texts), add_special_tokens=self.spec.add_special_tokens)
        rows: list[list[int]] = []
        n = self.context_length
        for enc in encs:
            ids = list(enc.ids)
            ends_special = bool(enc.special_tokens_mask) and enc.special_tokens_mask[-1] == 1
            if self.append_id is not None and (not ids or ids[-1] != self.append_id):
                ids.append(self.append_id)
                ends_special = True
            if len(ids) > n:
                ids = ids[: n - 1] + [ids[-1]] if ends_special else ids[:n]
            rows.append(ids)
        return rows

    def __call__(self, texts: Sequence[str] | str, context_length: int | None = None) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        if context_length is not None and int(context_length) != self.context_length:
            raise ValueError("this text tower takes exactly context_length tokens")
        out = np.full((len(texts), self.context_length), self.pad_id, dtype=np.int64)
        for row, ids in enumerate(self._encode_batch(texts)):
            out[row, : len(ids)] = ids
        return out


__all__ = ["TOKENIZER_FILENAME", "HFTokenizer", "TokenizerSpec"]
