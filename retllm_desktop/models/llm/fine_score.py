"""What the multimodal LLM says about one candidate: the data the fine stage passes up to ranking."""

from __future__ import annotations

from dataclasses import dataclass

VE_MODES = ("off", "auto", "always", "retrace")


@dataclass(frozen=True)
class FineScore:
    """Result of scoring one candidate with the multimodal LLM.

    ``score`` is the final P(True) (after the second look when used), ``first_pass_score`` the P(True)
    of the first look; probabilities are full-vocabulary softmax mass on the answer token variants.
    ``entropy`` is the normalised entropy of the top-10 next-token probabilities (0 = certain, 1 = flat;
    the paper's visual-enhancement trigger); ``vocab_entropy`` the full-vocabulary entropy in nats (the
    paper's ranking tie-break). After a second look both are confidence-weighted means of the two looks.
    With ``ve="retrace"`` there is no second look: the numbers are those of the retraced decode and
    ``ve_used`` says whether an early-exit entropy fired (``retrace_layer`` = the edited layer).
    """

    p_true: float
    p_false: float
    entropy: float
    ve_used: bool
    score: float
    first_pass_score: float
    seconds: float = 0.0
    cache_hit: bool = False
    first_pass_entropy: float | None = None
    vocab_entropy: float | None = None
    retrace_layer: int | None = None  # the layer whose FFN output was retraced (``ve="retrace"``)
