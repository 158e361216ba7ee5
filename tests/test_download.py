"""Model downloads against a loopback HTTP server (127.0.0.1 only; nothing touches the internet).

The server serves synthetic files under the Hub's URL scheme ({endpoint}/{repo}/resolve/{rev}/{path}),
supports Range requests with an ETag and If-Range (as the Hub's CDN does), and can cut a transfer mid-file,
fail with 500/404, redirect (with the Hub's X-Linked-* headers on the redirect), lie about the sha256,
change a file between two requests, or ignore Range altogether. Disk-full is simulated by monkeypatching
``download._write_chunk`` (the one place that writes to a .part file) to raise OSError(ENOSPC), and the
free-space pre-check by monkeypatching ``shutil.disk_usage``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import threading
import urllib.parse
from collections import namedtuple
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from retllm_desktop import cli
from retllm_desktop.errors import CancelledError, RetllmError
from retllm_desktop.models.clip.towers import ClipModel, find_clip_model, list_clip_models
from retllm_desktop.models.hub import download as dl
from retllm_desktop.models.hub.download import DiskFullError, DownloadError, IntegrityError, download_model
from retllm_desktop.models.hub.installed import (
    add_local_clip,
    add_local_mllm,
    installed_models,
    remove_model,
    verify_models,
)
from retllm_desktop.models.hub.registry import FileSpec, ModelEntry
from retllm_desktop.models.hub.transport import OfflineError

REPO = "test-org/tiny-clip"


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)
    redirects: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    cut_once: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before the connection drops
    ignore_range: set[str] = field(default_factory=set)  # paths answered 200 (whole file) to any Range
    if_range_log: list[str | None] = field(default_factory=list)
    log: list[tuple[str, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        st: ServerState = self.server.state  # type: ignore[attr-defined]
        path = urllib.parse.unquote(self.path)
        rng = self.headers.get("Range")
        with st.lock:
            st.log.append((path, rng))
        if path in st.status:
            self._empty(st.status[path])
            return
        if path in st.redirects:
            target, extra = st.redirects[path]
            self._empty(302, {"Location": target, **extra})
            return
        data = st.files.get(path)
        if data is None:
            self._empty(404)
            return
        etag = f'"{hashlib.sha256(data).hexdigest()[:16]}"'  # changes with the content, as a CDN's does
        if_range = self.headers.get("If-Range")
        with st.lock:
            st.if_range_log.append(if_range)
        start = 0
        if rng and path not in st.ignore_range and (if_range is None or if_range == etag):
            start = int(rng.split("=", 1)[1].split("-", 1)[0])
            if start >= len(data):
                self._empty(416, {"Content-Range": f"bytes */{len(data)}", "ETag": etag})
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)  # no Range, Range ignored, or If-Range no longer matches: whole file
        self.send_header("ETag", etag)
        for k, v in st.headers.get(path, {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        with st.lock:
            cut = st.cut_once.pop(path, None)
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def _empty(self, code: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()


Server = namedtuple("Server", "url state")


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.state = ServerState()  # type: ignore[attr-defined]
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_address[1]}", httpd.state)  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch):
    for k in ("RETLLM_OFFLINE", "HF_HUB_OFFLINE", "RETLLM_HF_ENDPOINT", "HF_ENDPOINT", "HF_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    for k in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(dl.time, "sleep", lambda s: None)  # no back-off waits in tests


def _blob(n: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def serve_clip(
    server: Server, *, image: bytes, text: bytes, with_sha: bool = True, name: str = "tiny"
) -> ModelEntry:
    files = []
    for ours, theirs, data in (
        ("image.onnx", "onnx/vision model.onnx", image),
        ("text.onnx", "onnx/text_model.onnx", text),
    ):
        server.state.files[f"/{REPO}/resolve/main/{theirs}"] = data
        files.append(
            FileSpec(ours, theirs, len(data) if with_sha else None, _sha(data) if with_sha else None)
        )
    return ModelEntry(
        name=name,
        role="clip",
        hf_repo=REPO,
        files=tuple(files),
        licence="MIT",
        config={"embed_dim": 64, "image_size": 64, "image_model": "image.onnx", "text_model": "text.onnx"},
    )


def _paths(server: Server, name: str) -> str:
    return f"/{REPO}/resolve/main/{name}"


def test_normal_download_layout_manifest_and_progress(server, tmp_path):
    image, text = _blob(300_000, 1), _blob(120_000, 2)
    entry = serve_clip(server, image=image, text=text)
    seen: list[tuple[int, int]] = []
    dest = download_model(
        entry, tmp_path / "models", progress=lambda d, t: seen.append((d, t)), base_url=server.url
    )
    assert dest == tmp_path / "models" / "clip" / "tiny"
    assert (dest / "image.onnx").read_bytes() == image and (dest / "text.onnx").read_bytes() == text
    assert not list(dest.glob("*.part"))
    cfg = json.loads((dest / "clip.json").read_text())
    assert cfg["name"] == "tiny" and cfg["embed_dim"] == 64 and cfg["source"]["hf_repo"] == REPO
    manifest = json.loads((dest / dl.MANIFEST).read_text())
    assert (
        manifest["files"]["image.onnx"]["sha256"] == _sha(image)
        and manifest["files"]["image.onnx"]["verified"]
    )
    assert seen[-1] == (len(image) + len(text), len(image) + len(text))
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:], strict=False))
    assert list_clip_models(tmp_path / "models") == [dest]
    # URL scheme: {endpoint}/{repo}/resolve/{revision}/{path} (quoted)
    assert (_paths(server, "onnx/vision model.onnx"), None) in server.state.log
    # a second call finds everything in place and does not touch the network
    n = len(server.state.log)
    assert download_model(entry, tmp_path / "models", base_url=server.url) == dest
    assert len(server.state.log) == n
    (m,) = installed_models(tmp_path / "models")
    assert (m.name, m.role, m.complete, m.source) == ("tiny", "clip", True, "download")
    assert (
        m.size_bytes
        == len(image) + len(text) + (dest / "clip.json").stat().st_size + (dest / dl.MANIFEST).stat().st_size
    )


def test_endpoint_from_env_and_hub_metadata_on_redirect(server, tmp_path, monkeypatch):
    """No hash in the registry: the X-Linked-Etag / X-Linked-Size the Hub puts on its redirect are checked."""
    image, text = _blob(50_000, 3), _blob(40_000, 4)
    entry = serve_clip(server, image=image, text=text, with_sha=False)
    for theirs, data in (("onnx/vision model.onnx", image), ("onnx/text_model.onnx", text)):
        src = _paths(server, theirs)
        cdn = "/cdn/" + _sha(data)
        server.state.files[cdn] = server.state.files.pop(src)
        meta = {"X-Linked-Etag": f'"{_sha(data)}"', "X-Linked-Size": str(len(data))}
        server.state.redirects[src] = (cdn, meta)
    monkeypatch.setenv("RETLLM_HF_ENDPOINT", server.url)
    dest = download_model(entry, tmp_path, allow_unverified=True)
    manifest = json.loads((dest / dl.MANIFEST).read_text())
    # checked against the server's own hash, which proves the transfer, not the content: unverified
    assert all(rec["checked_against"] == "server" for rec in manifest["files"].values())
    assert not any(rec["verified"] for rec in manifest["files"].values())
    # the server now claims a different hash: the file is rejected and deleted
    (tmp_path / "clip").rename(tmp_path / "old")
    src = _paths(server, "onnx/text_model.onnx")
    cdn, meta = server.state.redirects[src]
    server.state.redirects[src] = (cdn, {**meta, "X-Linked-Etag": "0" * 64})
    with pytest.raises(IntegrityError, match="corrupt"):
        download_model(entry, tmp_path, allow_unverified=True)
    assert not (tmp_path / "clip" / "tiny" / "clip.json").exists()
    assert not (tmp_path / "clip" / "tiny" / "text.onnx.part").exists()


def test_resume_after_interrupted_transfer(server, tmp_path):
    image, text = _blob(400_000, 5), _blob(10_000, 6)
    entry = serve_clip(server, image=image, text=text)
    server.state.cut_once[_paths(server, "onnx/vision model.onnx")] = 150_000
    with pytest.raises(DownloadError, match="resume"):
        download_model(entry, tmp_path, base_url=server.url, retries=0)
    dest = tmp_path / "clip" / "tiny"
    part = dest / "image.onnx.part"
    assert part.stat().st_size == 150_000
    assert not (dest / "image.onnx").exists() and not (dest / "clip.json").exists()
    assert list_clip_models(tmp_path) == []  # a partial download is never taken for a model
    assert [m.complete for m in installed_models(tmp_path)] == [False]
    assert verify_models(tmp_path)[0].status == "partial"
    download_model(entry, tmp_path, base_url=server.url, retries=0)
    assert (dest / "image.onnx").read_bytes() == image
    assert (_paths(server, "onnx/vision model.onnx"), "bytes=150000-") in server.state.log


def test_interrupted_transfer_is_resumed_automatically(server, tmp_path):
    image, text = _blob(200_000, 7), _blob(10_000, 8)
    entry = serve_clip(server, image=image, text=text)
    server.state.cut_once[_paths(server, "onnx/vision model.onnx")] = 70_000
    dest = download_model(entry, tmp_path, base_url=server.url)  # default retries=2
    assert (dest / "image.onnx").read_bytes() == image
    assert (_paths(server, "onnx/vision model.onnx"), "bytes=70000-") in server.state.log


def test_wrong_sha256_rejected(server, tmp_path):
    image, text = _blob(30_000, 9), _blob(10_000, 10)
    entry = serve_clip(server, image=image, text=text)
    server.state.files[_paths(server, "onnx/text_model.onnx")] = _blob(10_000, 99)  # same size, other bytes
    with pytest.raises(IntegrityError, match="sha256"):
        download_model(entry, tmp_path, base_url=server.url)
    dest = tmp_path / "clip" / "tiny"
    assert not (dest / "text.onnx").exists() and not (dest / "text.onnx.part").exists()
    assert not (dest / "clip.json").exists()
    assert (
        dest / "image.onnx"
    ).read_bytes() == image  # the good file stays; a retry only fetches the bad one


def test_server_error_and_not_found(server, tmp_path):
    entry = serve_clip(server, image=_blob(1000, 11), text=_blob(1000, 12))
    path = _paths(server, "onnx/vision model.onnx")
    server.state.status[path] = 500
    with pytest.raises(DownloadError, match="HTTP 500"):
        download_model(entry, tmp_path, base_url=server.url, retries=2)
    assert [p for p, _ in server.state.log].count(path) == 3  # retried, then a clear error
    server.state.status[path] = 404
    with pytest.raises(DownloadError, match="HTTP 404.*not on the server"):
        download_model(entry, tmp_path, base_url=server.url)
    assert not (tmp_path / "clip" / "tiny" / "clip.json").exists()


def test_disk_full_keeps_partial_for_resume(server, tmp_path, monkeypatch):
    """Simulated: the .part write raises OSError(ENOSPC) after the first chunk."""
    image, text = _blob(300_000, 13), _blob(10_000, 14)
    entry = serve_clip(server, image=image, text=text)
    monkeypatch.setattr(dl, "CHUNK", 64 * 1024)
    real_write = dl._write_chunk
    calls = {"n": 0}

    def full_disk(f, data):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(f, data)

    monkeypatch.setattr(dl, "_write_chunk", full_disk)
    with pytest.raises(DiskFullError, match="disk full"):
        download_model(entry, tmp_path, base_url=server.url)
    part = tmp_path / "clip" / "tiny" / "image.onnx.part"
    assert 0 < part.stat().st_size < len(image)
    monkeypatch.setattr(dl, "_write_chunk", real_write)
    dest = download_model(entry, tmp_path, base_url=server.url)
    assert (dest / "image.onnx").read_bytes() == image
    assert any(r and r.startswith("bytes=") for p, r in server.state.log)


def test_not_enough_free_space_checked_before_writing(server, tmp_path, monkeypatch):
    entry = serve_clip(server, image=_blob(100_000, 15), text=_blob(1000, 16))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(dl.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(DiskFullError, match="more needed"):
        download_model(entry, tmp_path, base_url=server.url)


@pytest.mark.parametrize("var", ["RETLLM_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_mode_never_touches_network(server, tmp_path, monkeypatch, var):
    entry = serve_clip(server, image=_blob(1000, 17), text=_blob(1000, 18))
    monkeypatch.setenv(var, "1")
    with pytest.raises(OfflineError, match=f"offline mode is on \\({var}\\)"):
        download_model(entry, tmp_path, base_url=server.url)
    assert server.state.log == []
    monkeypatch.delenv(var)
    download_model(entry, tmp_path, base_url=server.url)
    monkeypatch.setenv(var, "1")  # installed models need no network
    assert download_model(entry, tmp_path, base_url=server.url).is_dir()


def test_unreachable_server_is_a_clear_error(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    entry = ModelEntry("x", "clip", "o/x", (FileSpec("image.onnx", "a"), FileSpec("text.onnx", "b")))
    with pytest.raises(OfflineError, match="cannot reach 127.0.0.1"):
        download_model(entry, tmp_path, base_url=f"http://127.0.0.1:{port}", allow_unverified=True)


def test_cancel_keeps_partial(server, tmp_path, monkeypatch):
    image, text = _blob(300_000, 19), _blob(1000, 20)
    entry = serve_clip(server, image=image, text=text)
    monkeypatch.setattr(dl, "CHUNK", 32 * 1024)
    monkeypatch.setattr(dl, "PROGRESS_INTERVAL_S", 0.0)
    cancel = threading.Event()

    def progress(done, total):
        if done >= 64 * 1024:
            cancel.set()

    with pytest.raises(CancelledError):
        download_model(entry, tmp_path, progress=progress, cancel=cancel, base_url=server.url)
    assert (tmp_path / "clip" / "tiny" / "image.onnx.part").stat().st_size >= 64 * 1024
    assert download_model(entry, tmp_path, base_url=server.url)  # resumes


def test_verify_and_remove(server, tmp_path):
    image, text = _blob(20_000, 21), _blob(20_000, 22)
    dest = download_model(serve_clip(server, image=image, text=text), tmp_path, base_url=server.url)
    (r,) = verify_models(tmp_path)
    assert (r.status, r.files) == ("ok", {"image.onnx": "ok", "text.onnx": "ok"})
    with open(dest / "text.onnx", "r+b") as f:  # flip one byte, same size
        f.write(bytes([text[0] ^ 0xFF]))
    assert verify_models(tmp_path)[0].status == "corrupt"
    (dest / "image.onnx").unlink()
    r = verify_models(tmp_path, ["tiny"])[0]
    assert r.status == "missing" and "image.onnx: missing" in r.detail
    with pytest.raises(RetllmError, match="not installed"):
        verify_models(tmp_path, ["nope"])
    # a repair download re-fetches only what is broken
    server.state.log.clear()
    download_model(
        serve_clip(server, image=image, text=text), tmp_path, base_url=server.url, verify_existing=True
    )
    assert verify_models(tmp_path)[0].status == "ok"
    assert [p.rsplit("/", 1)[1] for p, _ in server.state.log] == ["vision model.onnx", "text_model.onnx"]
    assert remove_model(tmp_path, "tiny") == dest and not dest.exists()
    with pytest.raises(RetllmError, match="not installed"):
        remove_model(tmp_path, "tiny")


def test_add_local_clip_symlinks_and_renames(tmp_path):
    from retllm_desktop.devtools.synthetic_clip import write_synthetic_clip

    src = write_synthetic_clip(tmp_path / "elsewhere", "tiny", seed=3, check=False)
    models = tmp_path / "models"
    dest = add_local_clip(src, models, name="my-clip")
    assert (dest / "image.onnx").is_symlink() and os.path.samefile(dest / "image.onnx", src / "image.onnx")
    assert find_clip_model(models, "my-clip") == dest
    with ClipModel(dest, threads=1) as m:
        assert m.name == "my-clip" and m.encode_texts(["a dog"]).shape == (1, 64)
    (r,) = verify_models(models)
    assert r.status == "unverified"
    with pytest.raises(RetllmError, match="already installed"):
        add_local_clip(src, models, name="my-clip")
    with pytest.raises(RetllmError, match="no clip.json"):
        add_local_clip(tmp_path, models)
    remove_model(models, "my-clip")
    assert (src / "image.onnx").is_file()  # the user's files are untouched


def test_add_local_mllm_links_not_copies(tmp_path):
    g, mp = tmp_path / "Foo-Q4.gguf", tmp_path / "mmproj-foo.gguf"
    g.write_bytes(b"GGUF" + b"\0" * 100)
    mp.write_bytes(b"GGUF" + b"\1" * 50)
    dest = add_local_mllm(g, mp, tmp_path / "models", handler="qwen25vl")
    assert dest.name == "foo-q4"
    meta = json.loads((dest / "mllm.json").read_text())
    assert (meta["model"], meta["mmproj"], meta["handler"]) == ("model.gguf", "mmproj.gguf", "qwen25vl")
    assert (dest / "model.gguf").is_symlink() and os.path.samefile(dest / "mmproj.gguf", mp)
    (m,) = installed_models(tmp_path / "models")
    assert (m.role, m.source, m.complete) == ("mllm", "local", True)
    assert verify_models(tmp_path / "models")[0].status == "unverified"
    not_gguf = tmp_path / "x.bin"
    not_gguf.write_bytes(b"nope")
    with pytest.raises(RetllmError, match="not a GGUF"):
        add_local_mllm(not_gguf, mp, tmp_path / "models", name="x")
    g.unlink()  # the linked file vanished
    assert verify_models(tmp_path / "models")[0].status == "missing"
    remove_model(tmp_path / "models", "foo-q4")
    assert mp.is_file()


def test_downloaded_synthetic_clip_loads_and_encodes(server, tmp_path):
    """End to end: real (synthetic) ONNX towers served, downloaded and loaded by ClipModel."""
    from retllm_desktop.devtools.synthetic_clip import write_synthetic_clip

    src = write_synthetic_clip(tmp_path / "src", "tiny", seed=0, check=False)
    entry = serve_clip(server, image=(src / "image.onnx").read_bytes(), text=(src / "text.onnx").read_bytes())
    dest = download_model(entry, tmp_path / "models", base_url=server.url)
    with ClipModel(find_clip_model(tmp_path / "models", "tiny"), threads=1) as m:
        with ClipModel(src, threads=1) as ref:
            np.testing.assert_allclose(
                m.encode_texts(["a red car"]), ref.encode_texts(["a red car"]), atol=1e-6
            )
    assert dest.name == "tiny"


def test_cli_models_commands(server, tmp_path, capsys):
    image, text = _blob(5000, 23), _blob(5000, 24)
    serve_clip(server, image=image, text=text)
    reg = tmp_path / "reg.toml"
    reg.write_text(
        f"""
default_preset = "p"
[presets.p]
clip = "tiny"
[[clip]]
name = "tiny"
hf_repo = "{REPO}"
size_mb = 0.01
licence = "MIT"
files = [
  {{ name = "image.onnx", path = "onnx/vision model.onnx", sha256 = "{_sha(image)}" }},
  {{ name = "text.onnx", path = "onnx/text_model.onnx", size = {len(text)} }},
]
config = {{ embed_dim = 64, image_size = 64 }}
"""
    )
    models = str(tmp_path / "models")
    common = ["--models", models, "--json"]

    def run(*argv):
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    # text.onnx has no sha256 in this registry: refused unless the user says so explicitly
    code, out, err = run("models", "download", "--registry", str(reg), "--endpoint", server.url, *common)
    assert code == 1 and "--allow-unverified" in err and len(err.strip().splitlines()) == 1
    assert server.state.log == [] and not (tmp_path / "models" / "clip" / "tiny" / "clip.json").exists()
    code, out, _ = run(
        "models", "download", "--allow-unverified", "--registry", str(reg), "--endpoint", server.url, *common
    )
    assert code == 0 and json.loads(out)["installed"][0]["name"] == "tiny"
    assert json.loads(out)["installed"][0]["verified"] is False
    code, out, _ = run("models", "list", "--registry", str(reg), *common)
    data = json.loads(out)
    assert code == 0 and data["registry"][0]["installed"] and data["default_preset"] == "p"
    assert data["registry"][0]["pinned"] is False and data["installed"][0]["verified"] is False
    code, out, _ = run("models", "list", "--registry", str(reg), "--models", models)
    (line,) = [ln for ln in out.splitlines() if " tiny " in ln]
    assert "unverified" in line
    code, out, _ = run("models", "verify", *common)
    assert code == 0 and json.loads(out)["ok"]
    code, out, _ = run("models", "path", "--models", models)
    assert out.strip() == models
    code, out, err = run("models", "download", "nope", "--registry", str(reg), "--models", models)
    assert code == 1 and "unknown model 'nope'" in err
    code, _, err = run("models", "add", "--models", models)
    assert code == 1 and "--clip DIR" in err
    code, out, _ = run("models", "remove", "tiny", *common)
    assert code == 0 and not Path(json.loads(out)["removed"]).exists()
    code, _, _ = run("models")
    assert code == 2


@pytest.mark.export
def test_cli_export_clip_prints_parity(tmp_path, capsys):
    pytest.importorskip("open_clip")
    code = cli.main(["models", "export-clip", "--arch", "ViT-S-32", str(tmp_path), "--name", "exp"])
    out = capsys.readouterr().out
    assert code == 0 and "parity vs torch: max abs diff" in out
    assert list_clip_models(tmp_path) == [tmp_path / "clip" / "exp"]


# ------------------------------------------------------------------------------------------------
# Pinned downloads: the registry's sha256 is checked on every path; the server's word is never enough


def _one_file(
    server: Server, data: bytes, *, pin: str = "sha+size", path: str = "onnx/model.onnx"
) -> ModelEntry:
    """A one-file entry served at ``path``; ``pin`` is "sha+size", "sha" or "none"."""
    server.state.files[f"/{REPO}/resolve/main/{path}"] = data
    spec = FileSpec(
        "image.onnx",
        path,
        len(data) if pin == "sha+size" else None,
        _sha(data) if pin in ("sha+size", "sha") else None,
    )
    cfg = {"embed_dim": 8, "image_model": "image.onnx", "text_model": "image.onnx"}
    return ModelEntry(name="one", role="clip", hf_repo=REPO, files=(spec,), config=cfg)


def _dl(entry: ModelEntry, tmp_path: Path, server: Server, pin: str, **kw) -> Path:
    if pin == "none":
        kw["allow_unverified"] = True
    return download_model(entry, tmp_path, base_url=server.url, **kw)


def test_unpinned_entry_downloads_only_when_allowed_explicitly(server, tmp_path):
    data = _blob(30_000, 40)
    entry = _one_file(server, data, pin="none")
    with pytest.raises(dl.UnverifiedError, match="--allow-unverified") as e:
        download_model(entry, tmp_path, base_url=server.url)
    assert "onnx/model.onnx" in str(e.value) and "\n" not in str(e.value)
    assert server.state.log == [] and not (tmp_path / "clip").exists()  # nothing asked, nothing written
    dest = download_model(entry, tmp_path, base_url=server.url, allow_unverified=True)
    assert (dest / "image.onnx").read_bytes() == data
    rec = json.loads((dest / dl.MANIFEST).read_text())["files"]["image.onnx"]
    assert rec["verified"] is False and rec["sha256"] == _sha(data)
    (m,) = installed_models(tmp_path)
    assert m.verified is False
    assert verify_models(tmp_path)[0].status == "unverified"


def test_wrong_bytes_with_self_consistent_headers_from_a_mirror(server, tmp_path, monkeypatch):
    """A mirror serving other bytes, with headers that vouch for them, installs nothing."""
    from retllm_desktop.models.hub.registry import load_registry

    entry = load_registry().get("smolvlm-500m")  # the default preset's LLM, as shipped
    junk = _blob(200_000, 41)
    for spec in entry.files:
        headers = {"X-Linked-Etag": f'"{_sha(junk)}"', "X-Linked-Size": str(len(junk))}
        for rev in ("main", entry.revision):
            path = f"/{entry.hf_repo}/resolve/{rev}/{spec.path}"
            server.state.files[path] = junk
            server.state.headers[path] = headers
    monkeypatch.setenv("RETLLM_HF_ENDPOINT", server.url)
    with pytest.raises(IntegrityError, match="pinned") as e:
        download_model(entry, tmp_path)
    assert "\n" not in str(e.value)
    dest = tmp_path / "mllm" / "smolvlm-500m"
    assert not dest.exists() or not [p.name for p in dest.iterdir() if p.name != dl.MANIFEST]
    assert all(f"/resolve/{entry.revision}/" in p for p, _ in server.state.log)  # the pinned commit

    # same-size wrong bytes, self-consistent headers, pinned entry: the bytes are deleted
    data, wrong = _blob(50_000, 42), _blob(50_000, 43)
    one = _one_file(server, wrong)
    one = ModelEntry(
        **{**one.__dict__, "files": (FileSpec("image.onnx", "onnx/model.onnx", len(data), _sha(data)),)}
    )
    server.state.headers[f"/{REPO}/resolve/main/onnx/model.onnx"] = {"X-Linked-Etag": _sha(wrong)}
    with pytest.raises(IntegrityError, match="pinned"):
        download_model(one, tmp_path, base_url=server.url)
    server.state.headers.clear()  # no hash header at all: caught by hashing the bytes
    with pytest.raises(IntegrityError, match="sha256"):
        download_model(one, tmp_path, base_url=server.url)
    assert [p.name for p in (tmp_path / "clip" / "one").iterdir()] == []


@pytest.mark.parametrize("pin", ["sha+size", "sha", "none"])
def test_full_length_part_answered_by_416_is_checked(server, tmp_path, pin):
    """A .part as long as the file (a corrupt one here) gets 416: it is hashed, never just installed."""
    data = _blob(80_000, 44)
    entry = _one_file(server, data, pin=pin)
    dest = tmp_path / "clip" / "one"
    dest.mkdir(parents=True)
    (dest / "image.onnx.part").write_bytes(_blob(80_000, 45))
    out = _dl(entry, tmp_path, server, pin)
    assert (out / "image.onnx").read_bytes() == data  # the bad part was dropped and fetched afresh
    rec = json.loads((out / dl.MANIFEST).read_text())["files"]["image.onnx"]
    assert rec["verified"] is (pin != "none")
    assert ("/test-org/tiny-clip/resolve/main/onnx/model.onnx", "bytes=80000-") in server.state.log
    assert server.state.log[-1][1] is None  # the last request was a fresh one


@pytest.mark.parametrize("pin", ["sha+size", "sha", "none"])
def test_oversize_part_answered_by_416_is_dropped(server, tmp_path, pin):
    data = _blob(60_000, 46)
    entry = _one_file(server, data, pin=pin)
    dest = tmp_path / "clip" / "one"
    dest.mkdir(parents=True)
    (dest / "image.onnx.part").write_bytes(data + _blob(5_000, 47))  # right bytes, then extra ones
    out = _dl(entry, tmp_path, server, pin)
    assert (out / "image.onnx").read_bytes() == data
    assert not (dest / "image.onnx.part").exists()


def test_remote_file_changed_mid_resume(server, tmp_path):
    """Resuming sends If-Range: a file replaced on the server is fetched whole, never spliced."""
    old, new = _blob(120_000, 48), _blob(120_000, 49)
    path = f"/{REPO}/resolve/main/onnx/model.onnx"
    entry_new = _one_file(server, old)  # served: old
    entry_new = ModelEntry(
        **{**entry_new.__dict__, "files": (FileSpec("image.onnx", "onnx/model.onnx", len(new), _sha(new)),)}
    )
    server.state.cut_once[path] = 50_000
    with pytest.raises(DownloadError, match="resume"):
        download_model(entry_new, tmp_path, base_url=server.url, retries=0)
    server.state.files[path] = new  # the repo moved on while we were away
    dest = download_model(entry_new, tmp_path, base_url=server.url, retries=0)
    assert (dest / "image.onnx").read_bytes() == new
    assert server.state.if_range_log[-1] is not None  # the resume was conditional

    # pinned to the old file, and the server now has another: fails cleanly, nothing kept
    entry_old = _one_file(server, old)
    server.state.files[path] = old
    server.state.cut_once[path] = 50_000
    with pytest.raises(DownloadError, match="resume"):
        download_model(entry_old, tmp_path / "b", base_url=server.url, retries=0)
    server.state.files[path] = new
    with pytest.raises(IntegrityError, match="sha256"):
        download_model(entry_old, tmp_path / "b", base_url=server.url, retries=0)
    assert [p.name for p in (tmp_path / "b" / "clip" / "one").iterdir()] == []


def test_server_ignoring_range_restarts_from_zero(server, tmp_path, monkeypatch):
    """A resume answered with the whole file starts the .part over, and progress does not count twice."""
    monkeypatch.setattr(dl, "PROGRESS_INTERVAL_S", 0.0)  # every chunk reported
    data = _blob(150_000, 50)
    entry = _one_file(server, data)
    path = f"/{REPO}/resolve/main/onnx/model.onnx"
    server.state.ignore_range.add(path)
    server.state.cut_once[path] = 40_000  # the first transfer breaks; the retry's Range is ignored
    seen: list[tuple[int, int]] = []
    dest = download_model(entry, tmp_path, progress=lambda d, t: seen.append((d, t)), base_url=server.url)
    assert (dest / "image.onnx").read_bytes() == data  # not 40 000 old bytes + the whole file
    assert (path, "bytes=40000-") in server.state.log
    assert (40_000, len(data)) in seen
    assert all(d <= t == len(data) for d, t in seen), seen  # never more than the file


def test_export_clip_honours_offline_mode(tmp_path, capsys, monkeypatch):
    from retllm_desktop.models.clip import export

    calls = []
    monkeypatch.setattr(export, "export_clip", lambda *a, **k: calls.append(a) or {})
    monkeypatch.setenv("RETLLM_OFFLINE", "1")
    code = cli.main(["models", "export-clip", "--arch", "ViT-B-32", "--pretrained", "openai", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "offline" in err and calls == []


def test_setup_dialog_marks_and_asks_before_an_unverified_download(tmp_path, monkeypatch):
    """The app shows which models are unverified and downloads one only after an explicit yes."""
    pytest.importorskip("pytestqt")
    from PySide6.QtWidgets import QApplication, QLabel, QMessageBox, QPushButton

    from retllm_desktop.gui import setup_dialog as sd

    app = QApplication.instance() or QApplication([])
    calls: list[dict] = []
    monkeypatch.setattr(dl, "download_model", lambda *a, **k: calls.append(k))  # no network here
    answers: list[QMessageBox.StandardButton] = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: answers.pop(0))
    # an installed download that no pin vouches for is shown as such
    fake = tmp_path / "mllm" / "smolvlm-256m"
    fake.mkdir(parents=True)
    (fake / "mllm.json").write_text('{"name": "smolvlm-256m"}')
    (fake / dl.MANIFEST).write_text(json.dumps({"files": {"model.gguf": {"sha256": "0" * 64}}}))
    dlg = sd.SetupDialog(str(tmp_path), "no CLIP model", None)
    try:
        texts = [w.text() for w in dlg.findChildren(QLabel)]
        (b16,) = [t for t in texts if "<b>clip-vit-b16</b>" in t]
        (b32,) = [t for t in texts if "<b>clip-vit-b32</b>" in t]
        (s256,) = [t for t in texts if "<b>smolvlm-256m</b>" in t]
        assert "unverified" in b16 and "unverified" not in b32
        assert "installed, unverified" in s256 and "installed" not in b32
        buttons = {b.accessibleName(): b for b in dlg.findChildren(QPushButton)}

        def click_and_wait(button_name: str, n: int) -> None:
            buttons[button_name].click()
            for _ in range(500):
                app.processEvents()
                if len(calls) >= n and all(w.done.is_set() for w in dlg._downloads.values()):
                    return
                dlg.pool.wait(10)

        answers.append(QMessageBox.StandardButton.No)
        click_and_wait("Download clip-vit-b16", 0)
        assert calls == [] and not answers and "clip-vit-b16" not in dlg._downloads  # declined: nothing
        answers.append(QMessageBox.StandardButton.Yes)
        click_and_wait("Download clip-vit-b16", 1)
        assert calls[-1]["allow_unverified"] is True and not answers
        click_and_wait("Download clip-vit-b32", 2)  # pinned: no question asked
        assert calls[-1]["allow_unverified"] is False
    finally:
        dlg.pool.cancel_all()
        dlg.pool.wait(5000)
        dlg.deleteLater()


def test_verify_holds_downloads_to_the_registry_pins(server, tmp_path, capsys):
    """A model fetched unverified (or before the pins existed) is checked against the pins later."""
    from retllm_desktop.models.hub.registry import Registry

    image, text = _blob(20_000, 51), _blob(20_000, 52)
    unpinned = serve_clip(server, image=image, text=text, with_sha=False)
    download_model(unpinned, tmp_path, base_url=server.url, allow_unverified=True)
    assert verify_models(tmp_path)[0].status == "unverified"

    def registry(image_sha: str, text_sha: str) -> Registry:
        files = (FileSpec("image.onnx", "onnx/vision model.onnx", sha256=image_sha),
                 FileSpec("text.onnx", "onnx/text_model.onnx", sha256=text_sha))  # fmt: skip
        return Registry({"tiny": ModelEntry(**{**unpinned.__dict__, "files": files})}, {})

    (r,) = verify_models(tmp_path, registry=registry(_sha(image), _sha(b"another text tower")))
    assert (r.status, r.files["image.onnx"], r.files["text.onnx"]) == ("mismatch", "ok", "mismatch")
    (r,) = verify_models(tmp_path, registry=registry(_sha(image), _sha(text)))
    assert r.status == "ok"
    assert installed_models(tmp_path)[0].verified is False  # until a download re-checks it:
    download_model(registry(_sha(image), _sha(text)).get("tiny"), tmp_path, verify_existing=True)
    assert installed_models(tmp_path)[0].verified is True
    # the CLI fails on a mismatch (one line per model, exit 1)
    reg = tmp_path / "reg.toml"
    reg.write_text(
        f'[[clip]]\nname = "tiny"\nhf_repo = "{REPO}"\nconfig = {{ embed_dim = 64, image_size = 64 }}\n'
        f'files = [{{ name = "image.onnx", path = "a", sha256 = "{_sha(b"x")}" }},'
        f' {{ name = "text.onnx", path = "b" }}]\n'
    )
    code = cli.main(["models", "verify", "--models", str(tmp_path), "--registry", str(reg)])
    out = capsys.readouterr().out
    assert code == 1 and "tiny" in out and "mismatch" in out


def test_resume_through_the_hubs_redirect_keeps_if_range(server, tmp_path):
    """The Hub redirects /resolve/ to a CDN: Range and If-Range must reach the CDN, pins still rule."""
    data = _blob(90_000, 53)
    entry = _one_file(server, data)
    src = f"/{REPO}/resolve/main/onnx/model.onnx"
    cdn = "/cdn/" + _sha(data)
    server.state.files[cdn] = server.state.files.pop(src)
    server.state.redirects[src] = (cdn, {"X-Linked-Etag": _sha(data), "X-Linked-Size": str(len(data))})
    server.state.cut_once[cdn] = 30_000
    with pytest.raises(DownloadError, match="resume"):
        download_model(entry, tmp_path, base_url=server.url, retries=0)
    dest = download_model(entry, tmp_path, base_url=server.url, retries=0)
    assert (dest / "image.onnx").read_bytes() == data
    assert (cdn, "bytes=30000-") in server.state.log and server.state.if_range_log[-1] is not None


def test_siglip2_layout_downloads_its_tokenizer_and_loads(server, tmp_path):
    """The registry's SigLIP 2 entry (its paths and clip.json), served with a replica's bytes: the
    tokenizer.json comes down with the towers, is verified, and ClipModel tokenizes with it."""
    import dataclasses

    from retllm_desktop.models.hub.registry import load_registry

    from .test_replicas import replica

    src = replica("siglip2-b16")
    real = load_registry().get("siglip2-b16")
    files = []
    for f in real.files:
        data = (src / f.name).read_bytes()
        server.state.files[f"/{REPO}/resolve/main/{f.path}"] = data
        files.append(dataclasses.replace(f, size=len(data), sha256=_sha(data)))
    entry = dataclasses.replace(real, hf_repo=REPO, revision="main", files=tuple(files))
    dest = download_model(entry, tmp_path / "models", base_url=server.url)
    assert (dest / "tokenizer.json").is_file()
    (res,) = verify_models(tmp_path / "models", registry=None)
    assert res.status == "ok" and res.files["tokenizer.json"] == "ok"
    (dest / "tokenizer.json").write_bytes(b"{}")  # a damaged tokenizer is noticed like a damaged tower
    (res,) = verify_models(tmp_path / "models")
    assert res.files["tokenizer.json"] == "corrupt"
    (dest / "tokenizer.json").write_bytes((src / "tokenizer.json").read_bytes())
    with ClipModel(dest, threads=1) as m, ClipModel(src, threads=1) as ref:
        assert m.config.tokenizer is not None and m.config.context_length == 64
        np.testing.assert_array_equal(m.tokenizer(["A Dog"]), ref.tokenizer(["a dog"]))
        np.testing.assert_allclose(m.encode_texts(["a dog"]), ref.encode_texts(["a dog"]), atol=1e-6)
