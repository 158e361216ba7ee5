"""Visual retracing (the RetLLM paper's visual enhancement, after MemVR): the numbers, no llama here.

``session.py`` runs one decode of the question tail with a llama.cpp eval callback and hands this
module the hidden states it reads; this module says whether and how to edit them. The paper's code
(github.com/alivecat05/RETLLM, ``Codes/modeling_qwen2_5_vl_sdw.py``, ``Multi_layers_fusion`` with
``starting_layer=5, ending_layer=16, entropy_threshold=0.75, retracing_ratio=0.12, method='adapt'``)
does, per forward pass:

1. after each decoder layer ``L`` with ``5 < L < 16``: logits = lm_head(hidden state of the last
   position), entropy = Shannon entropy of the softmax of the top-10 logits / ln(10);
2. the first layer whose entropy is above 0.75 arms the *next* layer's MLP (``L + 1``), once per pass;
3. that MLP returns ``(1 - r) * out + r * a * mean|out| / mean|a|`` with ``out`` its usual output and
   ``a = act(x @ (s1 Z).T) @ (s2 Z)``, ``x`` the MLP input (the normalised hidden state), ``Z`` the
   input embeddings, ``s1 = mean|W_gate| / mean|Z|``, ``s2 = mean|W_down| / mean|Z|``, ``r = 0.12``.

Our choices where the paper's code does not carry over or leaves things open (README "Visual
enhancement"):

* **final norm**: we apply the model's final RMSNorm before the output head (the usual early-exit
  read-out; the paper's code feeds the raw hidden state to ``lm_head``, which on a llama.cpp model
  would measure the residual stream's scale rather than the model's doubt);
* **trigger layers** scale with depth: the paper's 6..15 of Qwen2.5-VL-7B's 28 layers becomes
  ``round(6/28 n) .. round(15/28 n)``, capped at ``n - 2`` so a next layer exists (``trigger_layers``);
* **Z** is the candidate photo's visual tokens (the mmproj output the scorer caches), not every input
  embedding of the pass as in the paper's code (a llama.cpp decode of the question tail sees only the
  tail; MemVR retraces visual tokens). Columns beyond the text width (deepstack) are dropped;
* **one position**: only the scoring position (last token) is edited and ``mean|out|`` is that row's
  (the paper edits every position of the pass; only the last one reaches P(True) in the same pass);
* **activation**: SiLU for every architecture (the paper's Qwen MLP); ``s2`` cancels in the magnitude
  matching; ``s1`` uses ``ffn_gate`` (``ffn_up`` where a model has no gate);
* **head precision**: the output head is dequantised once with gguf-py; f32 files stay f32, anything
  else is kept as f16 and multiplied in f32 blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RETRACE_THRESHOLD = 0.75  # paper: entropy_threshold
RETRACE_RATIO = 0.12  # paper: retracing_ratio (0.05-0.35 noted in its code)
PAPER_LAYERS = (6, 15, 28)  # paper: 5 < layer < 16 of a 28-layer model
TOP_K = 10
_BLOCK = 8192  # rows of the head per f32 block


@dataclass(frozen=True)
class RetraceParams:
    """When and how much to retrace. ``layers`` = inclusive trigger range (None: scaled paper range)."""

    threshold: float = RETRACE_THRESHOLD
    ratio: float = RETRACE_RATIO
    layers: tuple[int, int] | None = None

    def trigger_layers(self, n_layer: int) -> range:
        if self.layers is not None:
            lo, hi = self.layers
        else:
            a, b, n = PAPER_LAYERS
            lo, hi = round(a / n * n_layer), round(b / n * n_layer)
        hi = min(hi, n_layer - 2)
        return range(max(lo, 0), hi + 1)


@dataclass
class RetraceResult:
    """Logits after the retraced decode and what happened on the way (for scores and tests)."""

    logits: np.ndarray
    entropies: dict[int, float] = field(default_factory=dict)  # early-exit entropy per trigger layer
    trigger_layer: int | None = None  # first layer over the threshold
    edited_layer: int | None = None  # the layer whose FFN output was edited (trigger + 1)


_SCALAR = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUF value type -> bytes


class _Gguf:
    """Just enough of a GGUF file: scalar metadata and memory-mapped tensors.

    gguf-py's ``GGUFReader`` turns every vocabulary string into numpy parts (over a minute for
    Gemma 3's 262k tokens); this skips arrays by length and reads only what retracing needs.
    """

    def __init__(self, path: Path):
        import struct

        self.buf = np.memmap(path, dtype=np.uint8, mode="r")
        b = memoryview(self.buf)  # struct on a memoryview: no numpy object per read
        pos = 4 + 4
        n_tensors, n_kv = struct.unpack_from("<QQ", b, pos)
        pos += 16
        self.meta: dict[str, object] = {}

        def string(at: int) -> tuple[str, int]:
            (n,) = struct.unpack_from("<Q", b, at)
            return bytes(b[at + 8 : at + 8 + n]).decode("utf-8", "replace"), at + 8 + n

        def value(t: int, at: int) -> tuple[object, int]:
            if t == 8:
                return string(at)
            if t == 9:
                (it, n) = struct.unpack_from("<IQ", b, at)
                at += 12
                if it in _SCALAR:
                    return None, at + n * _SCALAR[it]
                if it == 8:  # strings (vocabularies): skip by length
                    for _ in range(n):
                        at += 8 + struct.unpack_from("<Q", b, at)[0]
                    return None, at
                for _ in range(n):
                    _v, at = value(it, at)
                return None, at
            fmt = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}[
                t
            ]
            return struct.unpack_from("<" + fmt, b, at)[0], at + _SCALAR[t]

        for _ in range(n_kv):
            key, pos = string(pos)
            (t,) = struct.unpack_from("<I", b, pos)
            self.meta[key], pos = value(t, pos + 4)
        self.tensors: dict[str, tuple[list[int], int, int]] = {}
        for _ in range(n_tensors):
            name, pos = string(pos)
            (nd,) = struct.unpack_from("<I", b, pos)
            dims = list(struct.unpack_from(f"<{nd}Q", b, pos + 4))
            qtype, offset = struct.unpack_from("<IQ", b, pos + 4 + 8 * nd)
            pos += 4 + 8 * nd + 12
            self.tensors[name] = (dims, qtype, offset)
        align = int(self.meta.get("general.alignment", 32))  # type: ignore[call-overload]
        self.data_start = -(-pos // align) * align

    def qtype(self, name: str) -> int:
        return self.tensors[name][1]

    def matrix(self, name: str) -> np.ndarray:
        """Tensor ``name`` dequantised to f32, shape (rows, row length)."""
        from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
        from gguf.quants import dequantize

        dims, qtype, offset = self.tensors[name]
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType(qtype)]
        rows = int(np.prod(dims[1:])) if len(dims) > 1 else 1
        row_bytes = dims[0] // block * size
        start = self.data_start + offset
        raw = self.buf[start : start + rows * row_bytes].reshape(rows, row_bytes)
        return np.asarray(dequantize(raw, GGMLQuantizationType(qtype)), dtype=np.float32).reshape(rows, -1)


class EarlyExit:
    """The model's final norm + output head, read from the GGUF once, and the per-layer FFN scales."""

    def __init__(self, model_path: Path):
        g = _Gguf(model_path)
        arch = str(g.meta["general.architecture"])
        self.n_layer = int(g.meta[f"{arch}.block_count"])  # type: ignore[call-overload]
        self.eps = float(g.meta.get(f"{arch}.attention.layer_norm_rms_epsilon", 1e-6))  # type: ignore[arg-type]
        head = "output.weight" if "output.weight" in g.tensors else "token_embd.weight"
        w = g.matrix(head)
        self.head = w if g.qtype(head) == 0 else w.astype(np.float16)  # 0 = F32
        self.norm = g.matrix("output_norm.weight").reshape(-1)
        self._g = g
        self._gate_scale: dict[int, float] = {}

    def logits(self, hidden: np.ndarray) -> np.ndarray:
        """Output-head logits of one hidden state (final RMSNorm applied)."""
        x = np.asarray(hidden, dtype=np.float32)
        x = x / np.sqrt(np.mean(x * x, dtype=np.float32) + np.float32(self.eps)) * self.norm
        if self.head.dtype == np.float32:
            return self.head @ x
        return np.concatenate(
            [self.head[i : i + _BLOCK].astype(np.float32) @ x for i in range(0, len(self.head), _BLOCK)]
        )

    def entropy(self, hidden: np.ndarray) -> float:
        """The paper's trigger: entropy of the softmax of the top-10 logits, divided by ln(10)."""
        return top_k_entropy(self.logits(hidden))

    def gate_scale(self, layer: int) -> float:
        """mean|W_gate| of ``layer`` (``ffn_up`` if the model has no gate), computed once per layer."""
        if layer not in self._gate_scale:
            name = f"blk.{layer}.ffn_gate.weight"
            if name not in self._g.tensors:
                name = f"blk.{layer}.ffn_up.weight"
            self._gate_scale[layer] = float(np.mean(np.abs(self._g.matrix(name)), dtype=np.float64))
        return self._gate_scale[layer]


def top_k_entropy(logits: np.ndarray, k: int = TOP_K) -> float:
    x = np.asarray(logits, dtype=np.float64)
    k = min(k, x.size)
    top = np.partition(x, x.size - k)[x.size - k :]
    z = top - top.max()
    p = np.exp(z) / np.exp(z).sum()
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / math.log(k)) if k > 1 else 0.0


def retraced_ffn_output(
    out: np.ndarray, h: np.ndarray, z: np.ndarray, gate_scale: float, ratio: float
) -> np.ndarray:
    """The paper's edited MLP output for one position: ``(1-r) out + r a mean|out|/mean|a|``.

    ``a = silu(s1 h @ Z.T) @ Z`` with ``s1 = gate_scale / mean|Z|``; ``out`` is returned unchanged
    when the memory read is all zeros.
    """
    out = np.asarray(out, dtype=np.float32)
    zz = np.asarray(z, dtype=np.float32)[:, : out.shape[0]]
    s1 = np.float32(gate_scale / max(float(np.mean(np.abs(zz))), 1e-12))
    pre = (zz @ np.asarray(h, dtype=np.float32)) * s1
    act = pre / (np.float32(1) + np.exp(-pre))
    a = act @ zz
    mean_a = float(np.mean(np.abs(a)))
    if mean_a == 0.0:
        return out
    scale = np.float32(float(np.mean(np.abs(out))) / mean_a)
    r = np.float32(ratio)
    return (np.float32(1) - r) * out + r * scale * a


class RetraceHook:
    """What the eval callback does during one retraced decode (session.py calls it; pure numpy)."""

    def __init__(self, early: EarlyExit, params: RetraceParams, visual: np.ndarray):
        self.early, self.params, self.visual = early, params, visual
        self.layers = params.trigger_layers(early.n_layer)
        names: set[bytes] = set()
        for layer in self.layers:
            names |= {
                f"l_out-{layer}".encode(),
                f"ffn_norm-{layer + 1}".encode(),
                f"ffn_out-{layer + 1}".encode(),
            }
        self.names = frozenset(names)
        self.entropies: dict[int, float] = {}
        self.trigger: int | None = None
        self.edited: int | None = None
        self._h: np.ndarray | None = None

    def on_tensor(self, kind: str, layer: int, last_row: np.ndarray) -> np.ndarray | None:
        """Called with the last row of a wanted tensor; returns a replacement row or None."""
        if kind == "l_out" and self.trigger is None:
            ent = self.early.entropy(last_row)
            self.entropies[layer] = ent
            if ent > self.params.threshold:
                self.trigger = layer
        elif kind == "ffn_norm" and self.trigger == layer - 1:
            self._h = last_row.copy()
        elif kind == "ffn_out" and self.trigger == layer - 1 and self._h is not None:
            self.edited = layer
            g = self.early.gate_scale(layer)
            return retraced_ffn_output(last_row, self._h, self.visual, g, self.params.ratio)
        return None
