"""hnswlib wrapper: persistence, deletion, growth, reconcile, exact vs approximate agreement."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from retllm_desktop.vector_index import VectorIndex


def _unit(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_add_search_persist_reload(tmp_path: Path) -> None:
    vecs = _unit(300)
    idx = VectorIndex(tmp_path / "i.hnsw", 16)
    idx.add(range(1, 301), vecs)  # grows past the initial capacity
    ids, scores = idx.search(vecs[41], 5)
    assert ids[0] == 42 and scores[0] > 0.999
    assert np.all(np.diff(scores) <= 1e-6)
    idx.save()
    again = VectorIndex(tmp_path / "i.hnsw", 16)
    assert again.loaded_from_disk and len(again) == 300
    assert again.search(vecs[41], 1)[0][0] == 42


def test_delete_and_revive(tmp_path: Path) -> None:
    vecs = _unit(20)
    idx = VectorIndex(tmp_path / "i.hnsw", 16)
    idx.add(range(20), vecs)
    assert idx.remove([3, 4, 99]) == 2
    assert 3 not in idx and len(idx) == 18
    assert 3 not in idx.search(vecs[3], 20)[0]
    idx.save()
    idx = VectorIndex(tmp_path / "i.hnsw", 16)
    assert 3 not in idx and len(idx) == 18
    idx.add([3], vecs[3:4])
    assert idx.search(vecs[3], 1)[0][0] == 3
    idx.add([500, 501], _unit(2, seed=9))  # may reuse the deleted slot of 4
    assert len(idx) == 21 and 4 not in idx


def test_exact_and_hnsw_agree(tmp_path: Path) -> None:
    vecs = _unit(2000, dim=32, seed=1)
    idx = VectorIndex(tmp_path / "i.hnsw", 32)
    idx.add(range(2000), vecs)
    q = _unit(20, dim=32, seed=2)
    hits = 0
    for v in q:
        exact = set(idx.search(v, 10, exact=True)[0].tolist())
        approx = set(idx.search(v, 10, exact=False)[0].tolist())
        hits += len(exact & approx)
    assert hits / 200 >= 0.95


def test_filtered_search(tmp_path: Path) -> None:
    vecs = _unit(100)
    idx = VectorIndex(tmp_path / "i.hnsw", 16)
    idx.add(range(100), vecs)
    allowed = {5, 6, 7}
    for exact in (True, False):
        ids, _ = idx.search(vecs[50], 10, allowed=allowed, exact=exact)
        assert set(ids.tolist()) == allowed


def test_reconcile_adds_missing_and_drops_ghosts(tmp_path: Path) -> None:
    vecs = _unit(50)
    store = {i: vecs[i] for i in range(50)}
    idx = VectorIndex(tmp_path / "i.hnsw", 16)
    idx.add(range(40), vecs[:40])
    idx.add([777], _unit(1, seed=5))  # a ghost: not in the catalog
    idx.save()
    idx = VectorIndex(tmp_path / "i.hnsw", 16)

    def fetch(ids):
        ids = list(ids)
        if ids:
            yield np.array(ids), np.stack([store[i] for i in ids])

    added, removed = idx.reconcile(set(store), fetch)
    assert (added, removed) == (10, 1)
    assert idx.ids() == set(store)


def test_corrupt_file_starts_empty_and_is_rebuilt(tmp_path: Path) -> None:
    (tmp_path / "i.hnsw").write_bytes(b"garbage")
    (tmp_path / "i.hnsw.json").write_text("{broken")
    idx = VectorIndex(tmp_path / "i.hnsw", 16)
    assert len(idx) == 0 and not idx.loaded_from_disk
    vecs = _unit(5)
    idx.reconcile(set(range(5)), lambda ids: iter([(np.array(list(ids)), vecs[list(ids)])]))
    assert len(idx) == 5
