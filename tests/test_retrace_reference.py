"""Visual retracing checked against a numpy forward pass of the tiny synthetic llama model (issue 15).

The reference (embeddings, RMSNorm, RoPE, causal attention over the whole prompt incl. the image rows,
SwiGLU FFN, final norm, output head) is written from the GGUF tensors alone, rounding Q, K, V and the
attention weights to f16 as llama.cpp's f16 KV cache and CPU matmul do. Tolerances: logits 1e-4 absolute
(measured 1.6e-5 plain, 1.4e-5 retraced), early-exit entropy 1e-5 (measured 4e-7). The retraced run
moves the logits by ~2.6, so a missing or misplaced edit cannot pass.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retllm_desktop.devtools.synthetic_mllm import write_synthetic_mllm
from retllm_desktop.models.llm.answer import SecondLook
from retllm_desktop.models.llm.prompting import build_parts
from retllm_desktop.models.llm.retrace import RetraceParams, retraced_ffn_output, top_k_entropy
from retllm_desktop.models.llm.scorer import MllmScorer

LOGIT_TOL = 1e-4
ENTROPY_TOL = 1e-5
QUERY = "a dog on the beach"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return write_synthetic_mllm(tmp_path_factory.mktemp("models"), "tiny", seed=0)


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("photos") / "p.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (48, 56, 3), dtype=np.uint8)).save(p)
    return p


def _f16(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16).astype(np.float64)


class Reference:
    """Float64 numpy forward pass of a llama-architecture GGUF (f32 tensors, no GQA tricks needed)."""

    def __init__(self, path: Path):
        from gguf import GGUFReader

        r = GGUFReader(str(path))
        self.t = {t.name: np.asarray(t.data, dtype=np.float64).reshape(list(reversed(t.shape.tolist())))
                  for t in r.tensors}  # fmt: skip
        f = r.fields
        self.n_layer = int(f["llama.block_count"].parts[-1][0])
        self.n_head = int(f["llama.attention.head_count"].parts[-1][0])
        self.n_head_kv = int(f["llama.attention.head_count_kv"].parts[-1][0])
        self.eps = float(f["llama.attention.layer_norm_rms_epsilon"].parts[-1][0])
        self.base = float(f["llama.rope.freq_base"].parts[-1][0])

    def norm(self, x: np.ndarray, w: str) -> np.ndarray:
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + self.eps) * self.t[w]

    def rope(self, x: np.ndarray, pos: np.ndarray) -> np.ndarray:  # x: (T, H, hd), llama.cpp "normal" pairs
        hd = x.shape[-1]
        theta = pos[:, None] * self.base ** (-np.arange(0, hd, 2) / hd)
        c, s = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2], out[..., 1::2] = a * c - b * s, a * s + b * c
        return out

    def forward(self, emb: np.ndarray, edit=None):  # noqa: ANN001
        """Logits of the last position, early-exit hidden states per layer; ``edit(layer, h, out)``."""
        t, T = self.t, emb.shape[0]
        pos = np.arange(T, dtype=np.float64)
        x = emb.astype(np.float64)
        hd = x.shape[1] // self.n_head
        mask = np.triu(np.full((T, T), -np.inf), 1)
        hidden = []
        for i in range(self.n_layer):
            p = f"blk.{i}."
            h = self.norm(x, p + "attn_norm.weight")
            q = self.rope((h @ t[p + "attn_q.weight"].T).reshape(T, self.n_head, hd), pos)
            k = self.rope((h @ t[p + "attn_k.weight"].T).reshape(T, self.n_head_kv, hd), pos)
            v = (h @ t[p + "attn_v.weight"].T).reshape(T, self.n_head_kv, hd)
            q, k, v = _f16(q), _f16(k), _f16(v)  # llama.cpp's KV cache is f16; its CPU matmul rounds Q too
            att = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd) + mask
            att = np.exp(att - att.max(-1, keepdims=True))
            att = _f16(att / att.sum(-1, keepdims=True))
            o = np.einsum("hqk,khd->qhd", att, v).reshape(T, -1)
            x = x + o @ t[p + "attn_output.weight"].T
            h = self.norm(x, p + "ffn_norm.weight")
            g = h @ t[p + "ffn_gate.weight"].T
            out = ((g / (1 + np.exp(-g))) * (h @ t[p + "ffn_up.weight"].T)) @ t[p + "ffn_down.weight"].T
            if edit is not None:
                out[-1] = edit(i, h[-1], out[-1])
            x = x + out
            hidden.append(x[-1].copy())
        logits = t["output.weight"] @ self.norm(x[-1], "output_norm.weight")
        return logits, hidden

    def early_entropy(self, hidden: np.ndarray) -> float:
        return top_k_entropy(self.t["output.weight"] @ self.norm(hidden, "output_norm.weight"))


def _setup(model_dir: Path, photo: Path):
    s = MllmScorer(model_dir, threads=1, n_ctx=1024)
    s.load()
    images = s._images(photo, None, None, None)
    msgs = [{"role": "user", "content": build_parts(s.prompts["score"]["text"]["parts"], QUERY, images)}]
    prompt = s._prepare(msgs)
    plain = s.session.evaluate(prompt, embeddings=s.embeddings, states=None)
    visual = s.embeddings.get(s._emb_key(images["candidate"]))
    rows = []
    tok_emb = Reference(s.config.model_path).t["token_embd.weight"]
    for kind, payload, _key, _first in prompt.segments:
        rows.append(tok_emb[payload] if kind == "text" else visual.astype(np.float64))
    return s, prompt, plain, visual, np.concatenate(rows)


def test_reference_matches_llama_cpp_with_and_without_retracing(model_dir, photo):
    ref = Reference(model_dir / "model.gguf")
    s, prompt, plain, visual, emb = _setup(model_dir, photo)
    try:
        # (1) plain forward pass
        want, hidden = ref.forward(emb)
        assert np.abs(plain - want).max() < LOGIT_TOL
        # (3) early-exit entropies at every trigger layer (threshold above 1: nothing fires)
        none = s.session.retrace(prompt, visual, RetraceParams(threshold=2.0, layers=(0, 0)))
        assert none.trigger_layer is None and none.edited_layer is None
        assert np.array_equal(none.logits, plain)  # the second context reproduces the scoring one bit for bit
        assert abs(none.entropies[0] - ref.early_entropy(hidden[0])) < ENTROPY_TOL
        # (2) retracing at layer 1 (trigger at layer 0) with ratio 0.3
        params = RetraceParams(threshold=0.0, ratio=0.3, layers=(0, 0))
        got = s.session.retrace(prompt, visual, params)
        assert (got.trigger_layer, got.edited_layer) == (0, 1)
        g1 = float(np.mean(np.abs(ref.t["blk.1.ffn_gate.weight"])))

        def edit(i, h, out):  # noqa: ANN001, ANN202
            return retraced_ffn_output(out, h, visual, g1, 0.3).astype(np.float64) if i == 1 else out

        want_rt, _ = ref.forward(emb, edit)
        assert np.abs(got.logits - want_rt).max() < LOGIT_TOL
        assert np.abs(want_rt - want).max() > 100 * LOGIT_TOL  # the edit really moves the logits
    finally:
        s.session.free(prompt)
        s.close()


def test_retrace_mode_scores_deterministic_and_cache_identical(model_dir, photo, tmp_path):
    from retllm_desktop.models.llm.cache import EmbeddingCache

    pol = SecondLook("retrace", entropy_threshold=0.0, layers=(0, 0))
    with MllmScorer(model_dir, threads=1, n_ctx=1024, cache=EmbeddingCache(tmp_path / "c.db")) as s:
        a = s.score(photo, text=QUERY, ve=pol)
        b = s.score(photo, text=QUERY, ve=pol)  # memory caches (embedding, KV snapshot) hit
        off = s.score(photo, text=QUERY, ve="off")
    with MllmScorer(model_dir, threads=1, n_ctx=1024, cache=EmbeddingCache(tmp_path / "c.db")) as s2:
        c = s2.score(photo, text=QUERY, ve=pol)  # disk embedding cache hit
        assert c.cache_hit
    assert a.ve_used and a.retrace_layer == 1
    assert a.score == b.score == c.score
    assert a.first_pass_score == off.score and a.score != off.score
