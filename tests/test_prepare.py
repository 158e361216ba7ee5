"""The prepare pass (issue 18): photos' image embeddings stored ahead, so a check skips the vision tower.

Real llama.cpp on the tiny SmolVLM / Qwen2.5-VL replicas, real files, real subprocesses for Ctrl+C,
kill -9 and a full disk (RLIMIT_FSIZE, as in test_crash_safety).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from retllm_desktop.library import Library
from retllm_desktop.models.llm.prepared import PreparedStore, decode_rows, encode_rows
from retllm_desktop.models.llm.scorer import MllmScorer
from retllm_desktop.prepare_pass import TopkHits, prepare_order
from tests.conftest import make_photo
from tests.test_replicas import mllm_sources, replica  # noqa: F401 - the fixture

REPO = Path(__file__).resolve().parents[1]
Q = "a dog on the beach"
# P(True) read from prepared rows vs the vision tower's own float32 rows (measured on the replicas: the
# largest difference seen was well below these; random weights are more sensitive than trained ones)
TOLERANCE = {"f16": 0.01, "i8": 0.05}
pytestmark = pytest.mark.usefixtures("mllm_sources")


def test_codecs_round_trip_and_a_damaged_entry_is_a_miss(tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((128, 96)).astype(np.float32) * 3
    for codec, bound in (("f16", 3e-3), ("i8", 0.5 / 127)):
        back = decode_rows(encode_rows(emb, codec), 128, 96, codec)
        rel = np.abs(back - emb).max(axis=1) / np.abs(emb).max(axis=1)
        assert rel.max() <= bound
    store = PreparedStore(tmp_path, "ns", "i8")
    n = store.put("k", emb, 640, 480)
    assert n == store.size("k") and store.usage().photos == 1
    arr, w, h = store.get("k")
    assert (w, h) == (640, 480) and arr.shape == emb.shape
    assert store.get("other") is None
    path = next(tmp_path.glob("ns/*/*.pemb"))
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0xFF
    path.write_bytes(bytes(blob))
    assert store.get("k") is None and not path.exists()  # damaged: dropped, never served
    (tmp_path / "old-model").mkdir()
    (tmp_path / "old-model" / "x.pemb").write_bytes(b"12345")
    assert store.drop_other_namespaces() == 5 and not (tmp_path / "old-model").exists()


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("prep-photos")
    return [make_photo(d / f"p{i}.jpg", seed=40 + i, size=(640, 480)) for i in range(3)]


@pytest.mark.parametrize("name", ["smolvlm-500m", "qwen2.5-vl-3b"])
@pytest.mark.parametrize("codec", ["f16", "i8"])
def test_a_prepared_check_skips_the_vision_tower_and_matches_within_tolerance(name, codec, photos, tmp_path):
    d = replica(name)
    with MllmScorer(d, threads=2) as plain:
        cold = [plain.score(p, text=Q, ve="off", candidate_key=f"h{i}").p_true for i, p in enumerate(photos)]
        assert plain.stats["encode"] == len(photos)
    with MllmScorer(d, threads=2, prepared_dir=tmp_path, prepared_codec=codec) as prep:
        assert not prep.ready(photos[0], "h0")
        for i, p in enumerate(photos):
            assert prep.prepare_photo(p, f"h{i}") > 0
            assert prep.prepare_photo(p, f"h{i}") == 0  # already there
        assert all(prep.ready(p, f"h{i}") for i, p in enumerate(photos))
    with MllmScorer(d, threads=2, prepared_dir=tmp_path, prepared_codec=codec) as fresh:
        warm = [fresh.score(p, text=Q, ve="off", candidate_key=f"h{i}").p_true for i, p in enumerate(photos)]
        assert fresh.stats["encode"] == 0 and fresh.stats["prepared_hits"] == len(photos)
    diff = np.abs(np.array(warm) - np.array(cold))
    assert diff.max() <= TOLERANCE[codec], (name, codec, diff)


def test_prepare_order_is_newest_first_then_top_k_count():
    from retllm_desktop.catalog import Photo

    def ph(i, taken, h):
        return Photo(id=i, root_id=1, path=f"/p/{i}.jpg", size=1, mtime_ns=10**18, hash=h, taken_at=taken)

    got = prepare_order(
        [
            ph(1, "2020-01-01", "a"),
            ph(2, "2024-05-01", "b"),
            ph(3, "2020-01-01", "c"),
            ph(4, None, "d"),
            ph(5, "2024-05-01", "b"),
        ],  # fmt: skip
        {"c": 3, "a": 1},
    )
    # photo 4 has only its file date (2001-09); a copy (5) of a prepared content is skipped
    assert [p.id for p in got] == [2, 3, 1, 4]


# ------------------------------------------------------------------------------------------ the pass
@pytest.fixture
def models(tmp_path, clip_models_dir) -> Path:
    m = tmp_path / "models"
    (m / "mllm").mkdir(parents=True)
    os.symlink(clip_models_dir / "clip", m / "clip")
    os.symlink(replica("smolvlm-500m"), m / "mllm" / "smolvlm-500m")
    return m


def _library_with(tmp_path: Path, models: Path, n: int, **kw) -> tuple[Library, list[Path]]:
    root = tmp_path / "photos"
    paths = []
    for i in range(n):
        p = make_photo(root / f"img{i:02d}.jpg", seed=i, size=(320, 240))
        t = 1_600_000_000 + i * 86_400  # img00 oldest ... newest last
        os.utime(p, (t, t))
        paths.append(p)
    lib = Library(tmp_path / "lib", models_dir=models, threads=2, **kw)
    lib.index_roots([str(root)], text=False)
    return lib, paths


def _prepared_paths(lib: Library) -> set[str]:
    store = lib.mllm.prepared
    return {
        p.path for p in lib.catalog.photos_by_ids(lib.catalog.photo_ids()).values()
        if store.has(lib.mllm.prepared_key(p.path, p.hash))
    }  # fmt: skip


def test_the_pass_fills_the_budget_newest_first_and_resumes(tmp_path, models):
    lib, paths = _library_with(tmp_path, models, 5)
    with lib:
        s = lib.prepare()
        assert (s.prepared, s.failed, s.error) == (5, 0, None)
        per_photo = s.bytes // 5
        assert lib.status().prepared_photos == 5 and lib.status().prepared_bytes == s.bytes
        again = lib.prepare()
        assert (again.prepared, again.kept) == (0, 5)
        lib.prepare_budget_bytes = int(per_photo * 2.5)  # room for two: the two newest stay
        s = lib.prepare()
        assert (s.removed, s.over_budget, s.photos) == (3, 3, 2)
        assert _prepared_paths(lib) == {str(paths[4]), str(paths[3])}
        # a search's checks skip the vision tower for them
        from retllm_desktop.rerank import RerankOptions

        enc = lib.mllm.stats["encode"]
        list(lib.search("a photo", top=5, rerank=RerankOptions(k=5, ve="off")))
        assert lib.mllm.stats["encode"] - enc == 3 and lib.mllm.stats["prepared_hits"] >= 2


def test_a_model_or_detail_change_drops_what_the_old_one_prepared(tmp_path, models):
    lib, _ = _library_with(tmp_path, models, 2)
    with lib:
        lib.prepare()
        old = lib.mllm.prepared.dir
    with Library(tmp_path / "lib", models_dir=models, threads=2, llm_detail="standard") as lib2:
        assert lib2.status().prepared_photos == 0  # the other detail's rows are not this one's
        s = lib2.prepare()
        assert s.dropped_bytes > 0 and not old.exists() and s.prepared == 2
        store = lib2.mllm.prepared
        assert store.dir != old and [d.name for d in store.root.iterdir() if d.is_dir()] == [store.namespace]


def test_top_k_hits_are_counted_when_the_llm_checks(tmp_path, models):
    from retllm_desktop.rerank import RerankOptions

    lib, _ = _library_with(tmp_path, models, 4)
    with lib:
        list(lib.search("a photo", top=4, rerank=RerankOptions(k=2, ve="off")))
        hits = TopkHits(lib.path / "cache" / "prepared" / "topk-hits.json").load()
        assert sorted(hits.values()) == [1, 1] and len(hits) == 2


def test_prepared_photos_are_checked_first_with_a_time_estimate(tmp_path, models):
    from retllm_desktop.rerank import RerankOptions

    lib, paths = _library_with(tmp_path, models, 4)
    with lib:
        lib.prepare_budget_bytes = 1  # nothing fits
        lib.prepare()
        coarse = next(iter(lib.search("a photo", top=4)))
        last = coarse.results[-1].photo
        lib.mllm.prepare_photo(last.path, last.hash)  # only the coarse last one is prepared
        order = []
        real = lib.mllm.score

        def spy(path, **kw):
            order.append(str(path))
            return real(path, **kw)

        lib.mllm.score = spy
        ups = list(lib.search("a photo", top=4, rerank=RerankOptions(k=4, ve="off")))
        assert order[0] == last.path  # checked first: its verdict is on screen soonest
        after_first = [u for u in ups if u.phase == "rerank" and u.done >= 1]
        assert after_first and all(u.eta_s is not None and u.eta_s > 0 for u in after_first)
        assert ups[-1].phase == "done" and ups[-1].eta_s is None
        assert json.loads(json.dumps(after_first[0].as_dict()))["rerank_eta_s"] > 0


# ------------------------------------------------------------------------------ kill, Ctrl+C, disk full
def _cli(lib_dir: Path, models: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "retllm_desktop", "prepare", "--library", str(lib_dir), "--models",
            str(models), "--threads", "2", *extra]  # fmt: skip


def _wait_for_entry(lib_dir: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while not list((lib_dir / "cache" / "prepared").glob("*/*/*.pemb")):
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout
        time.sleep(0.05)


def test_ctrl_c_then_resume_and_kill_9_then_resume(tmp_path, models):
    lib, _ = _library_with(tmp_path, models, 8)
    lib.close()
    lib_dir = tmp_path / "lib"
    p = subprocess.Popen(
        _cli(lib_dir, models), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _wait_for_entry(lib_dir, p)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, (out, err)
    assert "cancelled, run again to resume" in out and "Traceback" not in err
    for f in (lib_dir / "cache" / "prepared").glob("*/*/*.pemb"):
        f.unlink()  # start over for the kill -9 run
    p = subprocess.Popen(_cli(lib_dir, models), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for_entry(lib_dir, p)
    p.kill()
    p.wait()
    r = subprocess.run(_cli(lib_dir, models, "--json"), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["photos"] == 8 and s["failed"] == 0 and s["kept"] >= 1
    assert not list((lib_dir / "cache" / "prepared").glob("*/*/.tmp-*"))
    with Library(lib_dir, models_dir=models, threads=2) as lib:
        store = lib.mllm.prepared
        photos = lib.catalog.photos_by_ids(lib.catalog.photo_ids()).values()
        assert all(store.get(lib.mllm.prepared_key(p.path, p.hash)) is not None for p in photos)
    st = subprocess.run(
        [sys.executable, "-m", "retllm_desktop", "status", "--library", str(lib_dir), "--models", str(models), "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert json.loads(st.stdout)["prepared_photos"] == 8


FSIZE_CHILD = textwrap.dedent(
    """
    import resource, signal, sys
    from retllm_desktop.models.llm import prepared
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    real_put = prepared.PreparedStore.put

    def put(self, *a, **kw):  # the library and model are open: from now on no file may grow past 2 KB
        resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))  # (smaller than one prepared photo)
        return real_put(self, *a, **kw)

    prepared.PreparedStore.put = put
    from retllm_desktop.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE (POSIX)")
def test_a_full_disk_stops_the_pass_with_the_reason_and_nothing_half_written(tmp_path, models):
    lib, _ = _library_with(tmp_path, models, 3)
    lib.close()
    lib_dir = tmp_path / "lib"
    script = tmp_path / "fsize.py"
    script.write_text(FSIZE_CHILD)
    args = _cli(lib_dir, models)[3:]
    r = subprocess.run(
        [sys.executable, str(script), *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 1 and "disk is full" in r.stderr and "Traceback" not in r.stderr, (
        r.stdout,
        r.stderr,
    )
    prepared = lib_dir / "cache" / "prepared"
    assert not list(prepared.glob("*/*/*.pemb")) and not list(prepared.glob("*/*/.tmp-*"))
    r = subprocess.run(_cli(lib_dir, models, "--json"), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and json.loads(r.stdout)["photos"] == 3
