"""Download, verify, list, remove and register models (plain HTTP(S) via urllib, no hub client).

Download protocol for one registry entry (:func:`download_model`):

* every file is fetched from ``{endpoint}/{hf_repo}/resolve/{revision}/{path}`` into
  ``<models>/<role>/<name>/<file>.part``; an existing ``.part`` is resumed with an HTTP ``Range`` request;
* the complete file is checked against the expected size and sha256 (from the registry, else the
  ``X-Linked-Size`` / ``X-Linked-Etag`` headers the Hugging Face Hub sends for LFS files, else the
  ``Content-Length``) and only then renamed to its final name with :func:`os.replace`;
* ``retllm-manifest.json`` (sizes + hashes, used by :func:`verify_models`) and finally ``clip.json`` /
  ``mllm.json`` are written last: a folder without its config file is never taken for a model.

Environment: ``RETLLM_OFFLINE=1`` or ``HF_HUB_OFFLINE=1`` refuse to touch the network;
``RETLLM_HF_ENDPOINT`` (else ``HF_ENDPOINT``) points at a mirror; ``HF_TOKEN`` is sent to the endpoint
host (gated repos) but not to the hosts it redirects to.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ... import __version__
from ...errors import CancelledError, ModelLoadError, ModelNotFoundError, RetllmError
from .registry import CONFIG_FILES, ROLES, FileSpec, ModelEntry

DEFAULT_ENDPOINT = "https://huggingface.co"
ENV_ENDPOINT = "RETLLM_HF_ENDPOINT"
OFFLINE_ENVS = ("RETLLM_OFFLINE", "HF_HUB_OFFLINE")
MANIFEST = "retllm-manifest.json"
PART_SUFFIX = ".part"
CHUNK = 1 << 20
TIMEOUT_S = 30.0
PROGRESS_INTERVAL_S = 0.05  # progress callbacks are throttled to this interval (plus one per file)
GGUF_MAGIC = b"GGUF"

ProgressCb = Callable[[int, int], None]


class DownloadError(RetllmError):
    """A download failed; the message says why and what to do (a ``.part`` file is kept for resuming)."""


class OfflineError(DownloadError):
    """Offline mode is on, or the server cannot be reached."""


class DiskFullError(DownloadError):
    """Not enough free space for the model (the partial file is kept)."""


class IntegrityError(DownloadError):
    """A downloaded file has the wrong size or sha256 (the bad file is deleted)."""


def is_offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on") for k in OFFLINE_ENVS)


def hf_endpoint(base_url: str | None = None) -> str:
    return (
        base_url or os.environ.get(ENV_ENDPOINT) or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    ).rstrip("/")


def file_url(entry: ModelEntry, spec: FileSpec, base_url: str | None = None) -> str:
    path = urllib.parse.quote(spec.path)
    rev = urllib.parse.quote(entry.revision, safe="")
    return f"{hf_endpoint(base_url)}/{entry.hf_repo}/resolve/{rev}/{path}"


def model_dir(
    models_dir: str | os.PathLike[str], entry_or_role: ModelEntry | str, name: str | None = None
) -> Path:
    if isinstance(entry_or_role, ModelEntry):
        return Path(models_dir) / entry_or_role.role / entry_or_role.name
    assert name is not None
    return Path(models_dir) / entry_or_role / name


def sha256_file(path: Path, cancel: threading.Event | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            if cancel is not None and cancel.is_set():
                raise CancelledError("verification cancelled")
            h.update(chunk)
    return h.hexdigest()


def _write_chunk(f, data: bytes) -> None:
    """One write to a ``.part`` file (a seam for the disk-full test)."""
    f.write(data)


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _disk_full(path: Path, need: int | None = None) -> DiskFullError:
    extra = f" ({_human(need)} more needed)" if need else ""
    return DiskFullError(
        f"disk full while writing {path}{extra}: free some space (or choose another models folder with "
        "--models / RETLLM_MODELS) and run the download again — it resumes where it stopped"
    )


# ------------------------------------------------------------------------------------------------
# HTTP


class _RecordingRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects, remember every redirect response's headers (the Hub puts the file's size and
    sha256 on the first one), and drop credentials when leaving the original host."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self.seen.append(headers)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if (
            new is not None
            and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc
        ):
            new.remove_header("Authorization")
        return new


@dataclass
class _Remote:
    total: int | None  # full file size
    sha256: str | None


def _remote_meta(headers_list: list[Any], status: int, resp_headers: Any) -> _Remote:
    total = sha = None
    for h in [*headers_list, resp_headers]:
        etag = (h.get("X-Linked-Etag") or h.get("X-Linked-ETag") or "").strip().strip('"').lower()
        if sha is None and len(etag) == 64 and all(c in "0123456789abcdef" for c in etag):
            sha = etag
        size = h.get("X-Linked-Size")
        if total is None and size and size.isdigit():
            total = int(size)
    if status == 206:
        full = resp_headers.get("Content-Range", "").rpartition("/")[2]  # bytes START-END/TOTAL
        if total is None and full.isdigit():
            total = int(full)
    elif total is None:
        cl = resp_headers.get("Content-Length")
        if cl and cl.isdigit():
            total = int(cl)
    return _Remote(total, sha)


def _open(url: str, offset: int) -> tuple[Any, _RecordingRedirects]:
    redirects = _RecordingRedirects()
    opener = urllib.request.build_opener(redirects)
    req = urllib.request.Request(url, headers={"User-Agent": f"retllm-desktop/{__version__}"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    return opener.open(req, timeout=TIMEOUT_S), redirects


def _http_error(e: urllib.error.HTTPError, url: str) -> DownloadError:
    if e.code == 404:
        hint = "the file is not on the server (renamed in the repo? wrong mirror?)"
    elif e.code in (401, 403):
        hint = "access denied: the repo may be gated — accept its licence on the Hub and set HF_TOKEN"
    elif e.code == 429:
        hint = "rate-limited by the server; try again later"
    elif e.code >= 500:
        hint = "server error; try again later (the download resumes)"
    else:
        hint = "unexpected HTTP status"
    return DownloadError(f"download failed: HTTP {e.code} {e.reason} for {url} — {hint}")


def _unreachable(url: str, reason: object) -> OfflineError:
    host = urllib.parse.urlsplit(url).netloc
    return OfflineError(
        f"cannot reach {host} ({reason}): check the internet connection, or set {ENV_ENDPOINT} to a mirror, "
        "or install files you already have with `retllm-desktop models add`"
    )


# ------------------------------------------------------------------------------------------------
# One file


@dataclass
class _Totals:
    done: int = 0
    total: int = 0
    callback: ProgressCb | None = None
    last: float = 0.0

    def report(self, force: bool = False) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        if force or now - self.last >= PROGRESS_INTERVAL_S:
            self.last = now
            self.callback(self.done, max(self.total, self.done))


def _fetch_file(
    entry: ModelEntry,
    spec: FileSpec,
    dest_dir: Path,
    totals: _Totals,
    cancel: threading.Event | None,
    base_url: str | None,
    retries: int,
) -> dict[str, Any]:
    """Fetch one file into ``dest_dir/spec.name`` (via ``.part``); return its manifest record."""
    final = dest_dir / spec.name
    part = dest_dir / (spec.name + PART_SUFFIX)
    url = file_url(entry, spec, base_url)
    attempts = 0
    restarted = False

    def retry() -> bool:
        nonlocal attempts
        if attempts >= retries:
            return False
        attempts += 1
        time.sleep(0.1 * attempts)
        return True

    while True:
        if cancel is not None and cancel.is_set():
            raise CancelledError(f"download of {entry.name} cancelled; run it again to resume")
        offset = part.stat().st_size if part.exists() else 0
        remote = _Remote(None, None)
        try:
            resp, redirects = _open(url, offset)
        except urllib.error.HTTPError as e:
            e.close()
            if e.code == 416 and offset:
                pass  # nothing after `offset`: the part is already complete (checked below)
            elif e.code >= 500 and retry():
                continue
            else:
                raise _http_error(e, url) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as e:
            reason = getattr(e, "reason", e)
            if not isinstance(reason, socket.gaierror) and retry():
                continue
            raise _unreachable(url, reason) from None
        else:
            with resp:
                status = resp.status
                remote = _remote_meta(redirects.seen, status, resp.headers)
                if status == 200:
                    offset = 0  # a full response (also when the server ignored Range): start over
                elif status == 206:
                    start = resp.headers.get("Content-Range", "").partition(" ")[2].partition("-")[0]
                    if start.strip() != str(offset):
                        raise DownloadError(
                            f"server sent an unexpected range ({resp.headers.get('Content-Range')}) for {url}"
                        )
                else:
                    raise DownloadError(f"download failed: HTTP {status} for {url}")
                size = spec.size or remote.total
                if size is not None:
                    totals.total = max(totals.total, totals.done + size - offset)
                    _check_space(dest_dir, part, size - offset)
                try:
                    _stream(resp, part, offset, totals, cancel, entry)
                except (http.client.HTTPException, ConnectionError, TimeoutError) as e:
                    if retry():
                        continue
                    raise DownloadError(
                        f"download of {spec.path} was interrupted ({type(e).__name__}: {e}); "
                        "run it again to resume from where it stopped"
                    ) from None
        got = part.stat().st_size if part.exists() else 0
        size = spec.size or remote.total
        sha = spec.sha256 or remote.sha256
        if size is not None and got < size:
            if retry():
                continue
            raise DownloadError(
                f"download of {spec.path} stopped at {_human(got)} of {_human(size)}; run it again to resume"
            )
        if size is not None and got > size or (size is None and got == 0):
            part.unlink(missing_ok=True)
            if not restarted:
                restarted = True
                continue
            raise IntegrityError(f"{spec.path}: got {got} bytes, expected {size}; the file was deleted")
        digest = sha256_file(part, cancel)
        if sha is not None and digest != sha:
            part.unlink()
            raise IntegrityError(
                f"{spec.path} from {entry.hf_repo} is corrupt: sha256 {digest[:12]}… expected {sha[:12]}…; "
                "the bad file was deleted — run the download again"
            )
        os.replace(part, final)
        return {"path": spec.path, "url": url, "size": got, "sha256": digest, "verified": sha is not None}


def _check_space(dest_dir: Path, part: Path, remaining: int | None) -> None:
    if not remaining:
        return
    try:
        free = shutil.disk_usage(dest_dir).free
    except OSError:
        return
    if free < remaining + (16 << 20):
        raise _disk_full(part, remaining + (16 << 20) - free)


def _stream(
    resp, part: Path, offset: int, totals: _Totals, cancel: threading.Event | None, entry: ModelEntry
) -> None:
    mode = "ab" if offset else "wb"
    with open(part, mode) as f:
        while True:
            if cancel is not None and cancel.is_set():
                f.flush()
                raise CancelledError(f"download of {entry.name} cancelled; run it again to resume")
            data = resp.read(CHUNK)
            if not data:
                break
            try:
                _write_chunk(f, data)
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise _disk_full(part) from None
                raise DownloadError(f"cannot write {part}: {e.strerror or e}") from None
            totals.done += len(data)
            totals.report()


# ------------------------------------------------------------------------------------------------
# Public API


def download_model(
    entry: ModelEntry,
    models_dir: str | os.PathLike[str],
    progress: ProgressCb | None = None,
    cancel: threading.Event | None = None,
    base_url: str | None = None,
    retries: int = 2,
    verify_existing: bool = False,
) -> Path:
    """Install registry ``entry`` into ``<models_dir>/<role>/<name>/`` and return that folder.

    ``progress(done_bytes, total_bytes)`` is called from this thread (throttled); ``total_bytes`` grows
    when a file's size becomes known. Setting ``cancel`` stops at the next chunk with
    :class:`CancelledError` (the ``.part`` file stays and the next call resumes). Raises
    :class:`OfflineError`, :class:`DiskFullError`, :class:`IntegrityError` or :class:`DownloadError`
    (all :class:`RetllmError`) with a one-line, actionable message. Already-installed files are kept
    when their size matches (``verify_existing=True`` re-hashes them, so a corrupt one is fetched again).
    """
    dest = model_dir(models_dir, entry)
    cfg_path = dest / entry.config_filename
    manifest_path = dest / MANIFEST
    old_manifest = _read_json(manifest_path) or {}
    have = old_manifest.get("files", {}) if old_manifest.get("hf_repo") == entry.hf_repo else {}
    todo = [s for s in entry.files if not _installed_ok(dest / s.name, s, have.get(s.name), verify_existing)]
    if not todo and cfg_path.is_file():
        if progress:
            progress(entry.approx_bytes, entry.approx_bytes)
        return dest
    if is_offline():
        raise OfflineError(
            f"offline mode is on ({' / '.join(k for k in OFFLINE_ENVS if os.environ.get(k))}): cannot download "
            f"{entry.name}; unset it, or install files you already have with `retllm-desktop models add`"
        )
    dest.mkdir(parents=True, exist_ok=True)
    cfg_path.unlink(missing_ok=True)  # repairing: the folder is not a model until it is complete again
    totals = _Totals(callback=progress)
    for s in entry.files:
        if s not in todo:
            totals.done += (dest / s.name).stat().st_size
    totals.total = totals.done + sum((s.size or (int(s.size_mb * 1e6) if s.size_mb else 0)) for s in todo)
    records = dict(have)
    for s in entry.files:
        if s not in todo and s.name not in records:
            records[s.name] = {"path": s.path, "size": (dest / s.name).stat().st_size, "sha256": None}
    for s in todo:
        (dest / s.name).unlink(missing_ok=True)
        before = totals.done
        records[s.name] = _fetch_file(entry, s, dest, totals, cancel, base_url, retries)
        totals.done = before + records[s.name]["size"]
        totals.total = max(totals.total, totals.done)
        totals.report(force=True)
    manifest = {
        "name": entry.name,
        "role": entry.role,
        "hf_repo": entry.hf_repo,
        "revision": entry.revision,
        "licence": entry.licence,
        "installed_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "files": records,
    }
    _write_json(manifest_path, manifest)
    _write_json(cfg_path, entry.config_data())
    return dest


def _installed_ok(path: Path, spec: FileSpec, record: dict | None, rehash: bool = False) -> bool:
    """A final (renamed) file was verified when it was placed; trust it if its size still matches
    (with ``rehash``: if its sha256 still matches the registry's or the recorded one)."""
    if not path.is_file():
        return False
    record = record or {}
    size = path.stat().st_size
    want_size = spec.size if spec.size is not None else record.get("size")
    want_sha = spec.sha256 or record.get("sha256")
    if want_size is None or size != want_size:
        return False
    if spec.sha256 and record.get("sha256") and record["sha256"] != spec.sha256:
        return False  # the registry now expects another file
    if rehash and want_sha:
        return sha256_file(path) == want_sha
    return True


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


@dataclass
class InstalledModel:
    name: str  # folder name (what --clip-model / --mllm-model take)
    role: str
    path: str
    complete: bool  # has its config file (a folder without one is a partial download)
    size_bytes: int
    source: str  # "download" | "local" | "export" | "synthetic" | "unknown"
    config_name: str | None = None  # clip.json "name": the key embeddings are stored under
    files: dict[str, str] = field(default_factory=dict)  # file -> target, for linked local files

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _dir_size(d: Path) -> int:
    total = 0
    for p in d.iterdir():
        try:
            if p.is_file():
                total += p.stat().st_size  # follows symlinks: the size of the linked file
        except OSError:
            pass
    return total


def installed_models(models_dir: str | os.PathLike[str]) -> list[InstalledModel]:
    """Model folders under ``<models_dir>/clip`` and ``<models_dir>/mllm`` (partial downloads included)."""
    out: list[InstalledModel] = []
    for role in ROLES:
        root = Path(models_dir) / role
        if not root.is_dir():
            continue
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            cfg = _read_json(d / CONFIG_FILES[role])
            manifest = _read_json(d / MANIFEST)
            if cfg is None and manifest is None and not any(d.glob("*" + PART_SUFFIX)):
                continue
            src = (cfg or {}).get("source")
            if isinstance(src, dict):
                source = str(src.get("kind") or "unknown")
            elif manifest is not None:
                source = "download"
            elif cfg is not None and ("arch" in cfg or "pretrained" in cfg):
                source = "export"
            elif cfg is not None and "synthetic_seed" in cfg:
                source = "synthetic"
            else:
                source = "unknown"
            links = {p.name: os.readlink(p) for p in d.iterdir() if p.is_symlink()}
            out.append(
                InstalledModel(
                    name=d.name,
                    role=role,
                    path=str(d),
                    complete=cfg is not None,
                    size_bytes=_dir_size(d),
                    source=source,
                    config_name=(cfg or {}).get("name"),
                    files=links,
                )
            )
    return out


@dataclass
class VerifyResult:
    name: str
    role: str
    status: str  # "ok" | "corrupt" | "missing" | "unverified" | "partial"
    detail: str = ""
    files: dict[str, str] = field(default_factory=dict)  # file -> "ok" | "corrupt" | "missing" | "unverified"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _referenced_files(role: str, cfg: dict) -> list[str]:
    if role == "clip":
        names = [cfg.get("image_model", "image.onnx"), cfg.get("text_model", "text.onnx")]
    else:
        names = [cfg.get("model", "model.gguf"), cfg.get("mmproj", "mmproj.gguf")]
    return [str(n) for n in names if n]


def verify_models(
    models_dir: str | os.PathLike[str], names: list[str] | None = None, cancel: threading.Event | None = None
) -> list[VerifyResult]:
    """Re-hash every installed model's files against its download manifest.

    ``ok``: all files present with the recorded size and sha256; ``corrupt``: a size or hash differs;
    ``missing``: a file (or a linked file's target) is gone; ``unverified``: the files are there but no
    hash is known (local or exported models); ``partial``: an unfinished download.
    """
    results: list[VerifyResult] = []
    for m in installed_models(models_dir):
        if names and m.name not in names:
            continue
        d = Path(m.path)
        if not m.complete:
            results.append(
                VerifyResult(m.name, m.role, "partial", "unfinished download: run `models download` again")
            )
            continue
        cfg = _read_json(d / CONFIG_FILES[m.role]) or {}
        manifest = _read_json(d / MANIFEST) or {}
        recorded: dict[str, dict] = manifest.get("files", {}) or {}
        states: dict[str, str] = {}
        for fname in sorted(set(recorded) | set(_referenced_files(m.role, cfg))):
            p = d / fname
            rec = recorded.get(fname)
            if not p.is_file():
                states[fname] = "missing"
            elif rec is None or not rec.get("sha256"):
                states[fname] = "unverified"
            elif p.stat().st_size != rec.get("size"):
                states[fname] = "corrupt"
            else:
                states[fname] = "ok" if sha256_file(p, cancel) == rec["sha256"] else "corrupt"
        bad = {k: v for k, v in states.items() if v in ("missing", "corrupt")}
        if any(v == "missing" for v in bad.values()):
            status = "missing"
        elif bad:
            status = "corrupt"
        elif any(v == "unverified" for v in states.values()):
            status = "unverified"
        else:
            status = "ok"
        detail = ", ".join(f"{k}: {v}" for k, v in bad.items())
        results.append(VerifyResult(m.name, m.role, status, detail, states))
    if names:
        found = {r.name for r in results}
        for n in names:
            if n not in found:
                raise ModelNotFoundError(f"model {n!r} is not installed in {models_dir}")
    return results


def remove_model(models_dir: str | os.PathLike[str], name: str, role: str | None = None) -> Path:
    """Delete an installed model folder (linked local files are unlinked, their targets are left alone)."""
    matches = [m for m in installed_models(models_dir) if m.name == name and (role is None or m.role == role)]
    if not matches:
        have = ", ".join(f"{m.role}/{m.name}" for m in installed_models(models_dir)) or "none"
        raise ModelNotFoundError(f"model {name!r} is not installed in {models_dir} (installed: {have})")
    if len(matches) > 1:
        raise RetllmError(f"both clip/{name} and mllm/{name} exist: say which with --role")
    d = Path(matches[0].path)
    (d / CONFIG_FILES[matches[0].role]).unlink(missing_ok=True)  # first: never a half-removed "model"
    shutil.rmtree(d)
    return d


def _link_or_copy(src: Path, dst: Path) -> str:
    dst.unlink(missing_ok=True)
    try:
        os.symlink(src, dst)
        return "symlink"
    except (OSError, NotImplementedError):
        shutil.copy2(src, dst)
        return "copy"


def _check_name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise RetllmError(f"invalid model name {name!r}")
    return name


def add_local_clip(
    src_dir: str | os.PathLike[str], models_dir: str | os.PathLike[str], name: str | None = None
) -> Path:
    """Register a CLIP folder the user already has (clip.json + ONNX files, our layout).

    The ONNX files (and the tokenizer vocab, if any) are **symlinked** into ``<models>/clip/<name>/``
    (copied where symlinks are not allowed); clip.json is written anew with ``name`` (default: the
    source's config name), which is the key the library stores this model's embeddings under.
    """
    from ..clip.tokenizer import VOCAB_FILENAME
    from ..clip.towers import ClipConfig

    src = Path(src_dir).expanduser().resolve()
    if not src.is_dir():
        raise ModelNotFoundError(f"not a folder: {src}")
    if not (src / "clip.json").is_file():
        raise ModelNotFoundError(
            f"{src} has no clip.json: `models add --clip` takes a folder in the layout of "
            "`retllm-desktop models export-clip` (clip.json, image.onnx, text.onnx)"
        )
    cfg = ClipConfig.load(src)
    name = _check_name(name or cfg.name)
    dest = Path(models_dir) / "clip" / name
    if dest.resolve() == src:
        raise RetllmError(f"{src} is already in the models folder")
    if (dest / "clip.json").exists():
        raise RetllmError(
            f"a CLIP model named {name!r} is already installed ({dest}); remove it first or pick --name"
        )
    files = [cfg.image_model, cfg.text_model]
    files += [f for f in (cfg.quantized_image_model, cfg.quantized_text_model, VOCAB_FILENAME) if f]
    for f in files[:2]:
        if not (src / f).is_file():
            raise ModelNotFoundError(f"CLIP model file missing: {src / f}")
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        if (src / f).is_file():
            _link_or_copy(src / f, dest / f)
    data = json.loads((src / "clip.json").read_text(encoding="utf-8"))
    data["name"] = name
    data.setdefault("source", {"kind": "local", "path": str(src)})
    ClipConfig.from_dict(data)  # still valid
    _write_json(dest / "clip.json", data)
    return dest


def _check_gguf(path: Path, what: str) -> Path:
    p = path.expanduser().resolve()
    if not p.is_file():
        raise ModelNotFoundError(f"{what} not found: {path}")
    with open(p, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise ModelLoadError(f"{p} is not a GGUF file")
    return p


def add_local_mllm(
    gguf: str | os.PathLike[str],
    mmproj: str | os.PathLike[str],
    models_dir: str | os.PathLike[str],
    name: str | None = None,
    handler: str = "gguf-template",
) -> Path:
    """Register a multimodal LLM the user already has (text-model GGUF + mmproj GGUF).

    The multi-GB files are **symlinked** as ``model.gguf`` / ``mmproj.gguf`` into
    ``<models>/mllm/<name>/``; where symlinks are not allowed, ``mllm.json`` records their absolute paths
    instead (nothing is copied).
    """
    g = _check_gguf(Path(gguf), "LLM GGUF file")
    mp = _check_gguf(Path(mmproj), "mmproj GGUF file")
    name = _check_name(name or g.stem.lower())
    dest = Path(models_dir) / "mllm" / name
    if (dest / "mllm.json").exists():
        raise RetllmError(
            f"an LLM named {name!r} is already installed ({dest}); remove it first or pick --name"
        )
    dest.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {"name": name, "handler": handler, "chat_format": None}
    for key, src, fname in (("model", g, "model.gguf"), ("mmproj", mp, "mmproj.gguf")):
        link = dest / fname
        link.unlink(missing_ok=True)
        try:
            os.symlink(src, link)
            meta[key] = fname
        except (OSError, NotImplementedError):
            meta[key] = str(src)
    meta["source"] = {"kind": "local", "model": str(g), "mmproj": str(mp)}
    _write_json(dest / "mllm.json", meta)
    return dest
