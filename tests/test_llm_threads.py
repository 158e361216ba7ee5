"""Threads of the LLM check (issue 18): one fewer while the library indexes, the verdict unchanged.

Real llama.cpp calls on the tiny SmolVLM replica (the text model takes the new count in place, mtmd's
vision context is opened again) and a real index run of a library.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retllm_desktop.models.llm.scorer import MllmScorer
from tests.conftest import make_photo
from tests.test_replicas import mllm_sources, replica  # noqa: F401 - the fixture

Q = "a red car in the snow"


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("threads")
    return [make_photo(d / f"p{i}.jpg", seed=40 + i, size=(640, 480)) for i in range(2)]


@pytest.mark.usefixtures("mllm_sources")
def test_the_policy_sets_the_threads_of_both_models_and_keeps_the_verdict(photos):
    wanted = [2]
    with MllmScorer(replica("smolvlm-500m"), threads=2) as two:
        base = [two.score(p, text=Q, ve="off", candidate_key=f"k{i}") for i, p in enumerate(photos)]
    with MllmScorer(replica("smolvlm-500m"), threads=2) as s:
        s.thread_policy = lambda: wanted[0]
        first = s.score(photos[0], text=Q, ve="off", candidate_key="k0")
        assert (s.session.threads, s.session._mtmd_threads) == (2, 2)
        wanted[0] = 1  # background work started: the next check runs on one thread, vision included
        second = s.score(photos[1], text=Q, ve="off", candidate_key="k1")
        assert s.stats["encode"] == 2  # the second photo went through the re-opened vision context
        assert (s.session.threads, s.session._mtmd_threads) == (1, 1)
        wanted[0] = 5  # never more than the scorer was given
        again = s.score(photos[0], text=Q + " at night", ve="off", candidate_key="k0")
        assert s.session.threads == 2
        assert np.isfinite(again.p_true)
    for got, want in zip((first, second), base, strict=True):
        assert got.p_true == pytest.approx(want.p_true, abs=1e-4)
        assert got.entropy == pytest.approx(want.entropy, abs=1e-4)


def test_the_library_leaves_a_core_to_its_index_run(tmp_path, clip_models_dir, photo_tree):
    from retllm_desktop.library import Library

    seen: list[int] = []
    with Library(tmp_path / "lib", models_dir=clip_models_dir, threads=2, decode_workers=1) as lib:
        assert lib.check_threads() == 2
        lib.index_roots([str(photo_tree)], progress=lambda *_: seen.append(lib.check_threads()), faces=False)
        assert seen and set(seen) == {1}
        assert lib.check_threads() == 2  # back once the run is over
    with Library(tmp_path / "lib1", models_dir=clip_models_dir, threads=1) as lib:
        lib.index_roots([str(photo_tree)], progress=lambda *_: seen.append(lib.check_threads()), faces=False)
        assert lib.check_threads() == 1 and seen[-1] == 1  # never below one
