"""Real tokenizers for the replicas, rebuilt from llama.cpp's vocab-only GGUFs (``models/ggml-vocab-*.gguf``).

Each recipe starts from the token list, types, merges and scores of a vocab file and adds what the
published model file has on top (the model's own special tokens at their real ids, its special-token ids
and flags). What differs from the real file is said in ``specs.TokenizerSpec.note``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


@dataclass
class Vocab:
    model: str  # tokenizer.ggml.model
    pre: str | None  # tokenizer.ggml.pre
    tokens: list[str]
    types: list[int]
    merges: list[str] = field(default_factory=list)
    scores: list[float] | None = None
    ids: dict[str, int] = field(default_factory=dict)  # bos, eos, unk, pad -> id
    flags: dict[str, bool] = field(default_factory=dict)  # add_bos_token, add_eos_token, add_space_prefix

    def set(self, i: int, piece: str, ttype: int) -> None:
        while len(self.tokens) <= i:
            self.tokens.append(f"[PAD{len(self.tokens)}]")
            self.types.append(UNUSED)
            if self.scores is not None:
                self.scores.append(-1000.0)
        self.tokens[i] = piece
        self.types[i] = ttype

    def write(self, w: Any) -> None:
        w.add_tokenizer_model(self.model)
        if self.pre:
            w.add_tokenizer_pre(self.pre)
        w.add_token_list(self.tokens)
        w.add_token_types(self.types)
        if self.scores is not None:
            w.add_token_scores(self.scores)
        if self.merges:
            w.add_token_merges(self.merges)
        for key, tid in self.ids.items():
            getattr(w, f"add_{key}_token_id")(tid)
        for key, value in self.flags.items():
            getattr(w, f"add_{key}")(value)


_SCALAR = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}


def read_kv(path: Path) -> dict[str, Any]:
    """The key/value section of a GGUF file (a small fast reader: gguf-py's takes a minute on 780k strings)."""
    data = path.read_bytes()
    if data[:4] != b"GGUF":
        raise ValueError(f"{path} is not a GGUF file")
    pos = 8
    (_n_tensors, n_kv) = struct.unpack_from("<QQ", data, pos)
    pos += 16

    def string() -> str:
        nonlocal pos
        (n,) = struct.unpack_from("<Q", data, pos)
        pos += 8 + n
        return data[pos - n : pos].decode("utf-8")

    def value(vtype: int) -> Any:
        nonlocal pos
        if vtype == 8:
            return string()
        if vtype == 9:
            (etype, n) = struct.unpack_from("<IQ", data, pos)
            pos += 12
            if etype == 8:
                return [string() for _ in range(n)]
            fmt = _SCALAR[etype]
            size = struct.calcsize(fmt)
            out = list(struct.unpack_from(f"<{n}{fmt[1]}", data, pos))
            pos += n * size
            return out
        fmt = _SCALAR[vtype]
        (v,) = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return v

    kv: dict[str, Any] = {}
    for _ in range(n_kv):
        key = string()
        (vtype,) = struct.unpack_from("<I", data, pos)
        pos += 4
        kv[key] = value(vtype)
    return kv


def read_vocab(path: Path) -> Vocab:
    kv = read_kv(path)
    scores = kv.get("tokenizer.ggml.scores")
    return Vocab(
        model=kv["tokenizer.ggml.model"],
        pre=kv.get("tokenizer.ggml.pre"),
        tokens=list(kv["tokenizer.ggml.tokens"]),
        types=[int(t) for t in kv["tokenizer.ggml.token_type"]],
        merges=list(kv.get("tokenizer.ggml.merges") or []),
        scores=[float(x) for x in scores] if scores else None,
    )


# SmolLM2's special tokens (ids 0-16) and SmolVLM's added tokens (tokenizer.json of SmolVLM-*-Instruct).
_SMOLLM2_SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>", "<reponame>", "<file_sep>", "<filename>",
    "<gh_stars>", "<issue_start>", "<issue_comment>", "<issue_closed>", "<jupyter_start>", "<jupyter_text>",
    "<jupyter_code>", "<jupyter_output>", "<jupyter_script>", "<empty_output>",
]  # fmt: skip


def _smolvlm(v: Vocab) -> Vocab:
    if len(v.tokens) != 49152:
        raise ValueError(f"expected the 49152-token StarCoder vocabulary, got {len(v.tokens)}")
    for i, piece in enumerate(_SMOLLM2_SPECIALS):
        v.set(i, piece, CONTROL)
    v.set(49152, "<global-img>", USER_DEFINED)
    i = 49153
    for row in range(1, 7):
        for col in range(1, 7):
            v.set(i, f"<row_{row}_col_{col}>", USER_DEFINED)
            i += 1
    v.set(49189, "<fake_token_around_image>", CONTROL)
    v.set(49190, "<image>", CONTROL)
    for j in range(49191, 49279):
        v.set(j, f"<|reserved_special_token_{j - 49191}|>", CONTROL)
    v.set(49279, "<end_of_utterance>", CONTROL)
    v.pre = "smollm"
    v.ids = {"bos": 1, "eos": 49279, "unk": 0, "pad": 2}
    v.flags = {"add_bos_token": False}
    return v


_QWEN25_ADDED = [
    ("<|object_ref_start|>", CONTROL), ("<|object_ref_end|>", CONTROL), ("<|box_start|>", CONTROL),
    ("<|box_end|>", CONTROL), ("<|quad_start|>", CONTROL), ("<|quad_end|>", CONTROL),
    ("<|vision_start|>", CONTROL), ("<|vision_end|>", CONTROL), ("<|vision_pad|>", CONTROL),
    ("<|image_pad|>", CONTROL), ("<|video_pad|>", CONTROL), ("<tool_call>", USER_DEFINED),
    ("</tool_call>", USER_DEFINED), ("<|fim_prefix|>", USER_DEFINED), ("<|fim_middle|>", USER_DEFINED),
    ("<|fim_suffix|>", USER_DEFINED), ("<|fim_pad|>", USER_DEFINED), ("<|repo_name|>", USER_DEFINED),
    ("<|file_sep|>", USER_DEFINED),
]  # fmt: skip


def _qwen25vl(v: Vocab) -> Vocab:
    if v.tokens[151643:151646] != ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]:
        raise ValueError("not the Qwen2 vocabulary")
    for k, (piece, ttype) in enumerate(_QWEN25_ADDED):
        v.set(151646 + k, piece, ttype)
    v.ids = {"bos": 151643, "eos": 151645, "pad": 151643}
    v.flags = {"add_bos_token": False}
    return v


def _gemma3(v: Vocab) -> Vocab:
    renamed = {
        105: "<start_of_turn>",
        106: "<end_of_turn>",
        255999: "<start_of_image>",
        256000: "<end_of_image>",
    }
    if len(v.tokens) != 262144 or v.tokens[105] != "<|turn>" or v.tokens[255999] != "<|image>":
        raise ValueError("not the Gemma 262144-token vocabulary with Gemma 4's specials")
    for i, piece in renamed.items():
        v.set(i, piece, CONTROL)
    v.set(262144, "<image_soft_token>", CONTROL)
    v.set(262207, "[PAD262207]", UNUSED)  # vocab_size 262208 in gemma-3-4b-it's config.json
    v.ids = {"bos": 2, "eos": 1, "unk": 3, "pad": 0}
    v.flags = {"add_bos_token": True, "add_eos_token": False, "add_space_prefix": False}
    return v


def _llama_spm(v: Vocab) -> Vocab:
    v.ids = {"bos": 1, "eos": 2, "unk": 0}
    v.flags = {"add_bos_token": True, "add_eos_token": False}
    return v


RECIPES = {"smolvlm": _smolvlm, "qwen2.5-vl": _qwen25vl, "gemma-3": _gemma3, "llama-spm": _llama_spm}


def build_vocab(vocab_file: Path, recipe: str) -> Vocab:
    return RECIPES[recipe](read_vocab(vocab_file))
