"""The compact index big libraries switch to: real faiss files, recall vs exact, reopen, deletion, crashes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from retllm_desktop.vector_index import VectorIndex

DIM = 64


def _clustered(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(60, DIM)).astype(np.float32)
    x = centers[rng.integers(0, 60, n)] + 0.5 * rng.normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _exact(vecs: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int) -> set[int]:
    return set(ids[np.argsort(-(vecs @ q))[:k]].tolist())


def _recall(idx: VectorIndex, vecs: np.ndarray, ids: np.ndarray, queries: np.ndarray) -> float:
    hits = sum(len(set(idx.search(q, 10)[0].tolist()) & _exact(vecs, ids, q, 10)) for q in queries)
    return hits / (10 * len(queries))


def _index(path: Path) -> VectorIndex:
    return VectorIndex(path, DIM, exact_threshold=500, compact_threshold=1000)


def test_grows_into_compact_keeps_recall_and_reopens(tmp_path: Path) -> None:
    vecs, ids = _clustered(4000), np.arange(1, 4001)
    queries = _clustered(50, seed=7)
    idx = _index(tmp_path / "i.hnsw")
    idx.add(ids[:900], vecs[:900])
    assert idx._compact is None  # small libraries keep hnswlib
    idx.add(ids[900:], vecs[900:])
    assert idx._compact is not None and len(idx) == 4000
    assert _recall(idx, vecs, ids, queries) >= 0.97
    found, scores = idx.search(vecs[41], 5)
    assert found[0] == 42 and abs(scores[0] - 1.0) < 1e-2 and np.all(np.diff(scores) <= 1e-6)
    before = [idx.search(q, 10)[0].tolist() for q in queries[:10]]
    idx.save()
    meta = json.loads(idx.meta_path.read_text())
    assert meta["backend"] == "compact" and meta["rows"] == 4000
    assert idx._compact.store_path.stat().st_size == 4000 * DIM * 2

    again = _index(tmp_path / "i.hnsw")
    assert again.loaded_from_disk and again._compact is not None and again.ids() == set(ids.tolist())
    assert [again.search(q, 10)[0].tolist() for q in queries[:10]] == before


def test_delete_update_and_filters_survive_save(tmp_path: Path) -> None:
    vecs, ids = _clustered(3000), np.arange(3000)
    idx = _index(tmp_path / "i.hnsw")
    idx.add(ids, vecs)
    assert idx.remove([5, 6, 99999]) == 2 and 5 not in idx and len(idx) == 2998
    assert 5 not in idx.search(vecs[5], 50)[0]
    fresh = _clustered(1, seed=99)[0]
    idx.add([7], fresh[None])  # a re-embedded photo: its new vector, not the old one
    assert idx.search(fresh, 1)[0][0] == 7
    idx.save()
    idx.add([8], fresh[None])  # after a save: appended rows and the mapped file together
    assert set(idx.search(fresh, 2)[0].tolist()) == {7, 8}
    idx.save()

    again = _index(tmp_path / "i.hnsw")
    assert 5 not in again and 6 not in again and len(again) == 2998
    assert 5 not in again.search(vecs[5], 50)[0]
    assert set(again.search(fresh, 2)[0].tolist()) == {7, 8}
    allowed = set(range(100, 400))  # a narrow filter is answered exactly, among allowed photos only
    got, _ = again.search(vecs[250], 10, allowed=allowed)
    keep = np.array(sorted(allowed))
    assert set(got.tolist()) == _exact(vecs[keep], keep, vecs[250], 10)
    again.add([5], vecs[5:6])  # a deleted photo comes back
    assert again.search(vecs[5], 1)[0][0] == 5


def test_rebuild_goes_compact_and_reconcile_repairs(tmp_path: Path) -> None:
    vecs, ids = _clustered(2500), np.arange(2500)

    def chunks(wanted):
        wanted = np.array(sorted(wanted))
        for s in range(0, len(wanted), 700):
            yield wanted[s : s + 700], vecs[wanted[s : s + 700]]

    idx = _index(tmp_path / "i.hnsw")
    idx.reconcile(set(ids.tolist()), chunks)
    assert idx._compact is not None and len(idx) == 2500
    assert _recall(idx, vecs, ids, _clustered(30, seed=3)) >= 0.97
    idx.save()
    idx = _index(tmp_path / "i.hnsw")
    assert idx.reconcile(set(range(2400)), chunks) == (0, 100)  # ghosts deleted, nothing rebuilt
    assert 2450 not in idx and len(idx) == 2400
    idx.save()
    idx.rebuild(chunks(range(300)), expected=300)  # shrunk below the threshold: hnswlib again
    assert idx._compact is None and len(idx) == 300
    idx.save()
    assert idx.path.exists() and not list(tmp_path.glob("i.hnsw.[cs]*"))
    assert _index(tmp_path / "i.hnsw").search(vecs[7], 1)[0][0] == 7


def test_uncommitted_save_is_ignored_and_old_generations_go(tmp_path: Path) -> None:
    vecs, ids = _clustered(2000), np.arange(2000)
    idx = _index(tmp_path / "i.hnsw")
    idx.add(ids[:1500], vecs[:1500])
    idx.save()
    first = idx._compact.file("index")
    idx.add(ids[1500:], vecs[1500:])
    idx.save()
    store = idx._compact.store_path
    assert store.stat().st_size == 2000 * DIM * 2 and first.exists()  # kept for readers opening it
    idx.remove([1, 2])
    idx.save()
    assert not first.exists()  # two generations back: gone

    with open(store, "ab") as fh:  # a save killed after appending rows, before its sidecar
        fh.write(b"\1" * (DIM * 2 * 3 + 5))
    meta_before = idx.meta_path.read_bytes()
    again = _index(tmp_path / "i.hnsw")
    assert again.loaded_from_disk and len(again) == 1998 and 1 not in again
    assert again.search(vecs[10], 1)[0][0] == 10
    assert store.stat().st_size > 2000 * DIM * 2 and idx.meta_path.read_bytes() == meta_before  # read-only
    again.add([1], vecs[1:2])  # the writer's next save overwrites the stray tail
    again.save()
    assert store.stat().st_size == 2001 * DIM * 2
    assert _index(tmp_path / "i.hnsw").search(vecs[1], 1)[0][0] == 1

    meta = json.loads(again.meta_path.read_text())
    meta["rows"] = 1999  # a sidecar that names files it does not match: they are not trusted
    again.meta_path.write_text(json.dumps(meta))
    broken = _index(tmp_path / "i.hnsw")
    assert not broken.loaded_from_disk and len(broken) == 0


def test_big_hnswlib_index_from_before_migrates_on_open(tmp_path: Path) -> None:
    vecs, ids = _clustered(1500), np.arange(1500)
    old = VectorIndex(tmp_path / "i.hnsw", DIM, exact_threshold=500)
    old.compact_threshold = 10**9  # how an older version wrote it: hnswlib at any size
    old.add(ids, vecs)
    old.save()
    assert "backend" not in json.loads(old.meta_path.read_text())
    idx = _index(tmp_path / "i.hnsw")
    assert idx.loaded_from_disk and idx._compact is not None and len(idx) == 1500 and idx.dirty
    assert idx.search(vecs[3], 1)[0][0] == 3
    idx.save()
    assert not idx.path.exists()  # the big hnswlib file is gone once the compact one is committed
    assert _index(tmp_path / "i.hnsw")._compact is not None
