"""The numbers read from the model's next-token logits, and when to take a second look.

Pure functions, no llama here: P(True) / P(False) / entropies from one logits vector, the paper's
comparison value, the rule that combines two looks, and the per-query second-look policy (passed with
every call, never stored on the shared scorer, so concurrent searches with different options cannot race).

Against the RetLLM paper's code (github.com/alivecat05/RETLLM, ``Codes/Qwen_vl.py``):

* ranking value: the paper compares ``int(p * 100) / 100`` (truncated, not rounded): :func:`paper_score`,
  used by ``rerank.py`` as is, float quirks included (``int(0.29 * 100) / 100 == 0.28``);
* tie-break: the paper takes the lower Shannon entropy of the *full-vocabulary* next-token distribution
  (natural log, not normalised): :func:`vocab_entropy`, used as is;
* the entropy that triggers a second look is the paper's VE trigger: top-10 probabilities renormalised,
  divided by ln(10), threshold 0.75 (``entropy`` below);
* P(True) sums the listed single-token spellings of the answer ("True", " True", ...) where the paper
  reads the one token ``"True"``: the first answer token depends on the chat template and vocabulary
  (SentencePiece "▁True", a space after "Assistant:"), and one spelling would read ~0 on some models.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ...errors import RetllmError
from .fine_score import VE_MODES
from .retrace import RETRACE_RATIO, RetraceParams

VE_THRESHOLD = 0.75  # the paper's trigger: a second look when normalised top-10 entropy is above
VE_BAND = (0.35, 0.65)  # ... or when P(True) is inside this band

ENTROPY_TOP_K = 10  # the paper's top-k for the confidence entropy


def answer_stats(
    logits: np.ndarray, true_ids: Sequence[int], false_ids: Sequence[int], top_k: int = ENTROPY_TOP_K
) -> tuple[float, float, float]:
    """(P(True), P(False), normalised top-k entropy) from raw next-token logits (full vocabulary).

    P(True) is the full-vocabulary softmax mass on the answer's single-token spellings. The entropy is
    that of the top-k probabilities renormalised to sum to 1, divided by ln(k) so it lies in [0, 1]
    (0 = one token takes all, 1 = flat), which makes one threshold (0.75) meaningful for any vocabulary.
    """
    x = np.asarray(logits, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise RetllmError("The multimodal model produced non-finite logits.")
    e = np.exp(x - x.max())
    p = e / e.sum()
    p_true = float(p[list(true_ids)].sum()) if len(true_ids) else 0.0
    p_false = float(p[list(false_ids)].sum()) if len(false_ids) else 0.0
    k = min(top_k, p.size)
    top = np.partition(p, p.size - k)[p.size - k :]
    q = top / top.sum()
    q = q[q > 0]
    ent = float(-(q * np.log(q)).sum() / math.log(k)) if k > 1 else 0.0
    return p_true, p_false, min(max(ent, 0.0), 1.0)


def vocab_entropy(logits: np.ndarray) -> float:
    """Shannon entropy (nats) of the full-vocabulary next-token distribution: the paper's tie-break."""
    x = np.asarray(logits, dtype=np.float64)
    z = x - x.max()
    log_p = z - np.log(np.exp(z).sum())
    p = np.exp(log_p)
    return float(max(-(p * log_p).sum(), 0.0))


def paper_score(p: float) -> float:
    """The paper's ranking value: P(True) truncated to 2 decimals exactly as ``int(p * 100) / 100``."""
    return int(p * 100) / 100


def combine_passes(first: tuple[float, ...], second: tuple[float, ...]) -> tuple[float, ...]:
    """Confidence-weighted mean of two looks: c_i = max(1 - H_i, 0.05), x = (c1*x1 + c2*x2) / (c1 + c2).

    ``H_i`` is the normalised top-10 entropy at index 2; every element (P(True), P(False), entropies)
    is averaged with the same weights. Our rule: the paper has no prompt-level second look.
    """
    c1 = max(1.0 - first[2], 0.05)
    c2 = max(1.0 - second[2], 0.05)
    return tuple((c1 * a + c2 * b) / (c1 + c2) for a, b in zip(first, second, strict=True))


@dataclass(frozen=True)
class SecondLook:
    """When the prompt-level second look runs (per query).

    ``mode``: "off" never, "always" every candidate, "auto" when the first look is uncertain: normalised
    top-10 entropy above ``entropy_threshold`` (the paper's trigger, 0.75) or P(True) inside ``band``
    (our addition: a flat True/False split can hide behind a low entropy over other tokens).
    "retrace" takes no second look but the paper's in-layer visual retracing (``retrace.py``): the
    early-exit entropy of a middle layer above ``entropy_threshold`` re-injects the photo's visual
    tokens into the next layer's FFN with ``ratio``; ``layers`` overrides the trigger layer range.
    """

    mode: str = "auto"
    entropy_threshold: float = VE_THRESHOLD
    band: tuple[float, float] | None = VE_BAND
    ratio: float = RETRACE_RATIO
    layers: tuple[int, int] | None = None

    def retrace_params(self) -> RetraceParams | None:
        """The retracing parameters when this policy retraces, else None."""
        if self.mode != "retrace":
            return None
        return RetraceParams(self.entropy_threshold, self.ratio, self.layers)

    def __post_init__(self) -> None:
        if self.mode not in VE_MODES:
            raise ValueError(f"ve must be one of {VE_MODES}")

    def wanted(self, first: tuple[float, float, float]) -> bool:
        if self.mode != "auto":
            return self.mode == "always"
        if first[2] > self.entropy_threshold:
            return True
        if self.band is not None:
            lo, hi = self.band
            return lo <= first[0] <= hi
        return False
