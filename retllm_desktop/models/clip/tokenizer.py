"""Torch-free port of open_clip's ``SimpleTokenizer`` (the OpenAI CLIP BPE tokenizer).

Gives exactly the ids of ``open_clip.tokenize`` (default ``clean='lower'`` path): ``ftfy.fix_text``,
``html.unescape`` twice, whitespace collapse, lower case, the same regex split and byte-level BPE.
Texts longer than the context are truncated to the first ``context_length`` tokens with the last one
replaced by ``<end_of_text>``.
"""

from __future__ import annotations

import gzip
import html
from functools import lru_cache
from pathlib import Path

import ftfy
import numpy as np
import regex as re

from ...config import resource_path
from ...errors import ModelNotFoundError

VOCAB_FILENAME = "bpe_simple_vocab_16e6.txt.gz"
DEFAULT_CONTEXT_LENGTH = 77
SOT_TOKEN = "<start_of_text>"
EOT_TOKEN = "<end_of_text>"


@lru_cache
def bytes_to_unicode() -> dict[int, str]:
    """Reversible map from utf-8 bytes to printable unicode characters (as in OpenAI CLIP)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def _get_pairs(word: tuple[str, ...]) -> set[tuple[str, str]]:
    return set(zip(word[:-1], word[1:], strict=True))


def basic_clean(text: str) -> str:
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text))
    return text.strip()


def whitespace_clean(text: str) -> str:
    return " ".join(text.split()).strip()


def clean_lower(text: str) -> str:
    return whitespace_clean(basic_clean(text)).lower()


def default_vocab_path() -> Path:
    return resource_path(VOCAB_FILENAME)


class ClipTokenizer:
    """``ClipTokenizer()(["a dog", "a cat"])`` -> int64 array of shape ``(2, context_length)``."""

    def __init__(self, vocab_path: str | Path | None = None, context_length: int = DEFAULT_CONTEXT_LENGTH):
        path = Path(vocab_path) if vocab_path is not None else default_vocab_path()
        if not path.is_file():
            raise ModelNotFoundError(f"CLIP tokenizer vocabulary not found: {path}")
        if context_length < 2:
            raise ValueError("context_length must be >= 2 (start and end tokens)")
        self.vocab_path = path
        self.context_length = int(context_length)
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        with gzip.open(path) as f:
            merges_text = f.read().decode("utf-8").split("\n")
        merges_text = merges_text[1 : 49152 - 256 - 2 + 1]
        merges = [tuple(m.split()) for m in merges_text]
        vocab = list(self.byte_encoder.values())
        vocab = vocab + [v + "</w>" for v in vocab]
        vocab.extend("".join(m) for m in merges)
        special_tokens = [SOT_TOKEN, EOT_TOKEN]
        vocab.extend(special_tokens)
        self.encoder: dict[str, int] = {t: i for i, t in enumerate(vocab)}
        self.decoder: dict[int, str] = {i: t for t, i in self.encoder.items()}
        self.bpe_ranks: dict[tuple[str, ...], int] = {m: i for i, m in enumerate(merges)}
        self._special_cache = {t: t for t in special_tokens}
        self.pat = re.compile(
            "|".join(special_tokens) + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            re.IGNORECASE,
        )
        self.vocab_size = len(self.encoder)
        self.sot_token_id = self.encoder[SOT_TOKEN]
        self.eot_token_id = self.encoder[EOT_TOKEN]
        self._bpe_cached = lru_cache(maxsize=65536)(self._bpe)

    def _bpe(self, token: str) -> str:
        if token in self._special_cache:
            return token
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        pairs = _get_pairs(word)
        if not pairs:
            return token + "</w>"
        ranks = self.bpe_ranks
        inf = float("inf")
        while True:
            bigram = min(pairs, key=lambda pair: ranks.get(pair, inf))
            if bigram not in ranks:
                break
            first, second = bigram
            new_word: list[str] = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new_word.extend(word[i:])
                    break
                new_word.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = _get_pairs(word)
        return " ".join(word)

    def bpe(self, token: str) -> str:
        return self._bpe_cached(token)

    def encode(self, text: str) -> list[int]:
        """BPE ids of ``text`` without start/end tokens."""
        ids: list[int] = []
        for token in self.pat.findall(clean_lower(text)):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self.bpe(token).split(" "))
        return ids

    def decode(self, ids) -> str:
        text = "".join(self.decoder[int(i)] for i in ids)
        raw = bytearray(self.byte_decoder[c] for c in text)
        return raw.decode("utf-8", errors="replace").replace("</w>", " ")

    def __call__(
        self, texts: list[str] | tuple[str, ...] | str, context_length: int | None = None
    ) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        n_ctx = int(context_length or self.context_length)
        out = np.zeros((len(texts), n_ctx), dtype=np.int64)
        for row, text in enumerate(texts):
            tokens = [self.sot_token_id, *self.encode(text), self.eot_token_id]
            if len(tokens) > n_ctx:
                tokens = tokens[:n_ctx]
                tokens[-1] = self.eot_token_id
            out[row, : len(tokens)] = tokens
        return out
