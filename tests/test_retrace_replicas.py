"""Visual retracing on the replica of every registry architecture (issue 15).

Per model: the graph nodes the hook reads exist (an early-exit entropy for every trigger layer, an edit
of the next layer's FFN output), the paper's trigger fires, the edit changes P(True), and scores are
deterministic and identical from the caches (embedding + KV snapshot, memory and disk). SmolVLM's
overview + tile chunks included.
"""

from __future__ import annotations

import pytest

from retllm_desktop.models.llm.answer import SecondLook
from retllm_desktop.models.llm.retrace import RetraceParams

from .test_replicas import QUERY, SCORER_CASES, _scorer, mllm_sources, photos  # noqa: F401


@pytest.mark.parametrize("name", SCORER_CASES)
def test_retrace_mechanics_on_replica(name, photos, mllm_sources, tmp_path):  # noqa: F811
    from retllm_desktop.models.llm.cache import EmbeddingCache

    def caches():
        return {
            "cache": EmbeddingCache(tmp_path / "emb", 256 * 1024**2),
            "state_disk_cache": EmbeddingCache(tmp_path / "kv", 256 * 1024**2),
        }

    with _scorer(name, **caches()) as s:
        s.load()
        n_layer = s.session.early_exit().n_layer
        layers = list(RetraceParams().trigger_layers(n_layer))
        assert layers, n_layer
        # every trigger layer's l_out is read (a threshold above 1 never fires) ...
        quiet = s.score(photos[0], text=QUERY, ve=SecondLook("retrace", entropy_threshold=2.0))
        assert sorted(s.last_retrace.entropies) == layers and not quiet.ve_used
        assert quiet.score == quiet.first_pass_score  # the retracing context reproduces the scoring one
        # ... and a threshold just under the first layer's entropy fires there (random weights sit on
        # either side of the paper's 0.75), editing the next layer's FFN output
        first = s.last_retrace.entropies[layers[0]]
        pol = SecondLook("retrace", entropy_threshold=first - 1e-3)
        fs = s.score(photos[0], text=QUERY, ve=pol)
        res = s.last_retrace
        assert res.trigger_layer == layers[0] and fs.retrace_layer == res.trigger_layer + 1
        assert fs.ve_used and fs.score != fs.first_pass_score
        again = s.score(photos[0], text=QUERY, ve=pol)  # live KV / memory caches
        assert (again.p_true, again.p_false, again.entropy) == (fs.p_true, fs.p_false, fs.entropy)
    with _scorer(name, **caches()) as restarted:  # embeddings and KV snapshots from disk
        cached = restarted.score(photos[0], text=QUERY, ve=pol)
        assert restarted.stats["encode"] == 0
    assert (cached.p_true, cached.p_false, cached.entropy) == (fs.p_true, fs.p_false, fs.entropy)
