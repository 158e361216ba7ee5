"""Download models (plain HTTP(S) via urllib, no hub client); listing, verifying, removing and adding local
models are in ``installed.py``, the manifest helpers both use in ``manifest.py``.

Download protocol for one registry entry (:func:`download_model`):

* every file is fetched from ``{endpoint}/{hf_repo}/resolve/{revision}/{path}`` into
  ``<models>/<role>/<name>/<file>.part``; the registry pins ``revision`` to a commit and each file's
  ``sha256`` (and size), so a mirror or a moved branch cannot change what gets installed;
* an existing ``.part`` is resumed with ``Range`` + ``If-Range`` (the validator of the response that
  started it, kept in ``<file>.part.json``): a file replaced on the server comes back whole, never spliced;
* the complete file is hashed and compared with the **registry's** sha256 on every path: fresh, resumed,
  answered by 416 (a ``.part`` already full length) and an oversize ``.part``. A resumed file that does not
  match is dropped and fetched afresh once; a fresh one that does not match is deleted and the download
  fails with :class:`IntegrityError`. A server announcing another size or hash than the pinned one
  (``X-Linked-Size`` / ``X-Linked-Etag``) is refused before any byte is written;
* an entry with a file that has no pinned sha256 downloads only with ``allow_unverified=True``
  (``--allow-unverified``; the app asks first); its files are then checked against the hash the server
  announces, if any, and recorded ``verified: false``;
* the file is renamed to its final name with :func:`os.replace` only after the check;
  ``retllm-manifest.json`` (sizes + hashes, used by :func:`verify_models`) and finally ``clip.json`` /
  ``mllm.json`` are written last: a folder without its config file is never taken for a model.

Environment: ``RETLLM_OFFLINE=1`` or ``HF_HUB_OFFLINE=1`` refuse to touch the network;
``RETLLM_HF_ENDPOINT`` (else ``HF_ENDPOINT``) points at a mirror; ``HF_TOKEN`` is sent to the endpoint
host (gated repos) but not to the hosts it redirects to.
"""

from __future__ import annotations

import errno
import http.client
import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import CancelledError
from .manifest import CHUNK, MANIFEST, PART_SUFFIX, read_json, sha256_file, write_json
from .registry import FileSpec, ModelEntry
from .transport import (
    DownloadError,
    _host,
    _http_error,
    _open,
    _Remote,
    _remote_meta,
    _unreachable,
    file_url,
    is_offline,
    raise_offline,
)

PROGRESS_INTERVAL_S = 0.05  # progress callbacks are throttled to this interval (plus one per file)

ProgressCb = Callable[[int, int], None]


class DiskFullError(DownloadError):
    """Not enough free space for the model (the partial file is kept)."""


class IntegrityError(DownloadError):
    """A downloaded file has the wrong size or sha256 (the bad file is deleted)."""


class UnverifiedError(DownloadError):
    """The registry pins no sha256 for a file and the caller did not allow an unverified download."""


META_SUFFIX = ".part.json"  # next to a .part: the URL and validator (ETag / Last-Modified) it came from


def model_dir(
    models_dir: str | os.PathLike[str], entry_or_role: ModelEntry | str, name: str | None = None
) -> Path:
    if isinstance(entry_or_role, ModelEntry):
        return Path(models_dir) / entry_or_role.role / entry_or_role.name
    assert name is not None
    return Path(models_dir) / entry_or_role / name


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


class _Part:
    """A ``.part`` file and its sidecar (the URL and validator of the response that wrote it)."""

    def __init__(self, dest_dir: Path, spec: FileSpec, url: str) -> None:
        self.path = dest_dir / (spec.name + PART_SUFFIX)
        self.meta = dest_dir / (spec.name + META_SUFFIX)
        self.url = url

    def size(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def validator(self) -> str | None:
        data = read_json(self.meta) or {}
        return data.get("validator") if data.get("url") == self.url else None

    def remember(self, remote: _Remote) -> None:
        write_json(self.meta, {"url": self.url, "validator": remote.validator, "total": remote.total})

    def drop(self) -> None:
        self.path.unlink(missing_ok=True)
        self.meta.unlink(missing_ok=True)


def _refuse_other_file(entry: ModelEntry, spec: FileSpec, remote: _Remote, part: _Part) -> None:
    """The server announces another size or hash than the pinned ones: refuse before writing a byte."""
    if spec.sha256 and remote.sha256 and remote.sha256 != spec.sha256:
        got, want = f"sha256 {remote.sha256[:12]}…", f"the pinned {spec.sha256[:12]}…"
    elif spec.size is not None and remote.total is not None and remote.total != spec.size:
        got, want = f"{remote.total} bytes", f"the pinned {spec.size}"
    else:
        return
    part.drop()
    raise IntegrityError(
        f"{spec.path} from {_host(part.url)} is not the file the registry pins for {entry.name} "
        f"(the server offers {got}, not {want}; revision {entry.revision[:12]}): nothing was installed — "
        "use the official endpoint or another mirror"
    )


class _Retry(Exception):
    """A transient failure: tried again while attempts remain, else ``final`` is raised."""

    def __init__(self, final: DownloadError) -> None:
        super().__init__(str(final))
        self.final = final


def _transfer(
    entry: ModelEntry, spec: FileSpec, part: _Part, totals: _Totals, base: int, cancel: threading.Event | None
) -> tuple[_Remote, bool] | None:
    """One request, streamed into the ``.part``: (what the server said, whether the ``.part`` also holds
    bytes from an earlier response), or None to start over at once (a ``.part`` longer than the file)."""
    url, offset = part.url, part.size()
    if spec.size is not None and offset > spec.size:
        part.drop()  # longer than the pinned file: cannot be a prefix of it
        offset = 0
    try:
        resp, redirects = _open(url, offset, part.validator() if offset else None)
    except urllib.error.HTTPError as e:
        full = (e.headers.get("Content-Range") or "").rpartition("/")[2] if e.headers else ""
        e.close()
        if e.code == 416 and offset:  # nothing after `offset`: full length (hashed by the caller) or longer
            remote = _Remote(int(full) if full.isdigit() else None, None)
            if remote.total is not None and offset > remote.total:
                part.drop()
                return None
            return remote, True
        if e.code >= 500:
            raise _Retry(_http_error(e, url)) from None
        raise _http_error(e, url) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", e)
        if isinstance(reason, socket.gaierror):
            raise _unreachable(url, reason) from None
        raise _Retry(_unreachable(url, reason)) from None
    with resp:
        remote = _remote_meta(redirects.seen, resp.status, resp.headers)
        if resp.status == 200:
            offset = 0  # the whole file (no Range, Range ignored, or If-Range failed): start over
        elif resp.status == 206:
            start = resp.headers.get("Content-Range", "").partition(" ")[2].partition("-")[0]
            if start.strip() != str(offset):
                raise DownloadError(
                    f"server sent an unexpected range ({resp.headers.get('Content-Range')}) for {url}"
                )
        else:
            raise DownloadError(f"download failed: HTTP {resp.status} for {url}")
        _refuse_other_file(entry, spec, remote, part)
        size = spec.size or remote.total
        if size is not None:
            totals.total = max(totals.total, base + size)
            _check_space(part.path.parent, part.path, size - offset)
        part.remember(remote)
        totals.done = base + offset  # bytes of a discarded attempt are not counted twice
        try:
            _stream(resp, part.path, offset, totals, cancel, entry)
        except (http.client.HTTPException, ConnectionError, TimeoutError) as e:
            raise _Retry(
                DownloadError(
                    f"download of {spec.path} was interrupted ({type(e).__name__}: {e}); "
                    "run it again to resume from where it stopped"
                )
            ) from None
    return remote, offset > 0


def _fetch_file(
    entry: ModelEntry,
    spec: FileSpec,
    dest_dir: Path,
    totals: _Totals,
    cancel: threading.Event | None,
    base_url: str | None,
    retries: int,
    allow_unverified: bool = False,
) -> dict[str, Any]:
    """Fetch one file into ``dest_dir/spec.name`` (via ``.part``); return its manifest record.

    Why so careful: the bytes that end up installed must be the pinned ones, whichever way they arrived
    (fresh, resumed, a ``.part`` already full length or longer, a server that ignores Range or whose
    file changed between two runs). A resumed file that fails its check is fetched afresh once."""
    part = _Part(dest_dir, spec, file_url(entry, spec, base_url))
    base, attempts, fresh_retry = totals.done, 0, False
    while True:
        if cancel is not None and cancel.is_set():
            raise CancelledError(f"download of {entry.name} cancelled; run it again to resume")
        try:
            result = _transfer(entry, spec, part, totals, base, cancel)
        except _Retry as r:
            if attempts >= retries:
                raise r.final from None
            attempts += 1
            time.sleep(0.1 * attempts)
            continue
        if result is None:
            continue
        remote, resumed = result
        got, size = part.size(), spec.size or remote.total
        if size is not None and got < size:
            if attempts >= retries:
                raise DownloadError(
                    f"download of {spec.path} stopped at {_human(got)} of {_human(size)}; "
                    "run it again to resume"
                )
            attempts += 1
            continue
        want = spec.sha256 or (remote.sha256 if allow_unverified else None)
        # a resumed file with nothing to check it against is not trusted: only a whole fresh transfer is
        bad = (size is not None and got > size) or got == 0 or (want is None and resumed)
        digest = None if bad else sha256_file(part.path, cancel)
        if bad or (want is not None and digest != want):
            part.drop()
            if resumed and not fresh_retry:
                fresh_retry = True
                continue
            if digest is None or want is None:
                raise IntegrityError(
                    f"{spec.path}: got {got} bytes, expected {size}; the file was deleted"
                    if (size is not None and got > size) or got == 0
                    else f"{spec.path}: a resumed download with no hash to check it was dropped; run it again"
                )
            raise IntegrityError(
                f"{spec.path} from {entry.hf_repo} is corrupt: sha256 {digest[:12]}… expected {want[:12]}… "
                f"({'pinned in the registry' if spec.sha256 else 'announced by the server'}); "
                "the bad file was deleted — run the download again, or try another mirror"
            )
        os.replace(part.path, dest_dir / spec.name)
        part.meta.unlink(missing_ok=True)
        return {
            "path": spec.path,
            "url": part.url,
            "size": got,
            "sha256": digest,
            "verified": spec.sha256 is not None,
            "checked_against": "registry" if spec.sha256 else ("server" if want else None),
        }


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
    allow_unverified: bool = False,
) -> Path:
    """Install registry ``entry`` into ``<models_dir>/<role>/<name>/`` and return that folder.

    ``progress(done_bytes, total_bytes)`` is called from this thread (throttled); ``total_bytes`` grows
    when a file's size becomes known. Setting ``cancel`` stops at the next chunk with
    :class:`CancelledError` (the ``.part`` file stays and the next call resumes). Raises
    :class:`OfflineError`, :class:`DiskFullError`, :class:`IntegrityError` or :class:`DownloadError`
    (all :class:`RetllmError`) with a one-line, actionable message. Already-installed files are kept
    when their size matches (``verify_existing=True`` re-hashes them, so a corrupt one is fetched again).
    A file without a pinned sha256 raises :class:`UnverifiedError` unless ``allow_unverified``.
    """
    dest = model_dir(models_dir, entry)
    cfg_path = dest / entry.config_filename
    manifest_path = dest / MANIFEST
    old_manifest = read_json(manifest_path) or {}
    have = old_manifest.get("files", {}) if old_manifest.get("hf_repo") == entry.hf_repo else {}
    todo = [s for s in entry.files if not _installed_ok(dest / s.name, s, have.get(s.name), verify_existing)]
    if not todo and cfg_path.is_file():
        if _mark_pinned(old_manifest.get("files") or {}, entry):  # checked before the pins existed
            write_json(manifest_path, old_manifest)
        if progress:
            progress(entry.approx_bytes, entry.approx_bytes)
        return dest
    unpinned = [s.path for s in todo if not s.sha256]
    if unpinned and not allow_unverified:
        raise UnverifiedError(
            f"{entry.name}: the registry pins no sha256 for {', '.join(unpinned)}, so the download could not be "
            "verified; run it with --allow-unverified to accept the server's word (recorded as unverified), "
            "or pick a pinned model"
        )
    if is_offline():
        raise_offline(f"cannot download {entry.name}")
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
    _mark_pinned({k: v for k, v in records.items() if k not in {s.name for s in todo}}, entry)
    for s in todo:
        (dest / s.name).unlink(missing_ok=True)
        before = totals.done
        records[s.name] = _fetch_file(entry, s, dest, totals, cancel, base_url, retries, allow_unverified)
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
    write_json(manifest_path, manifest)
    write_json(cfg_path, entry.config_data())
    return dest


def _mark_pinned(records: dict[str, Any], entry: ModelEntry) -> bool:
    """Kept files whose recorded hash is the pinned one count as verified; True if a record changed."""
    changed = False
    for spec in entry.files:
        rec = records.get(spec.name)
        if isinstance(rec, dict) and spec.sha256 and rec.get("sha256") == spec.sha256:
            if rec.get("checked_against") != "registry":
                rec.update(verified=True, checked_against="registry")
                changed = True
    return changed


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
