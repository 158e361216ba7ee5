"""HTTP for model downloads: one request with ``Range`` / ``If-Range``, the Hub's metadata headers
(``X-Linked-Size`` / ``X-Linked-Etag`` on its redirect), and one-line messages for what goes wrong."""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from ... import __version__
from ...errors import RetllmError
from .registry import FileSpec, ModelEntry

TIMEOUT_S = 30.0
DEFAULT_ENDPOINT = "https://huggingface.co"
ENV_ENDPOINT = "RETLLM_HF_ENDPOINT"
OFFLINE_ENVS = ("RETLLM_OFFLINE", "HF_HUB_OFFLINE")


class DownloadError(RetllmError):
    """A download failed; the message says why and what to do (a ``.part`` file is kept for resuming)."""


class OfflineError(DownloadError):
    """Offline mode is on, or the server cannot be reached."""


def is_offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on") for k in OFFLINE_ENVS)


def raise_offline(what: str) -> None:
    """One message for every network action refused in offline mode."""
    raise OfflineError(
        f"offline mode is on ({' / '.join(k for k in OFFLINE_ENVS if os.environ.get(k))}): {what}; unset it, "
        "or install files you already have with `retllm-desktop models add`"
    )


def hf_endpoint(base_url: str | None = None) -> str:
    return (
        base_url or os.environ.get(ENV_ENDPOINT) or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    ).rstrip("/")


def file_url(entry: ModelEntry, spec: FileSpec, base_url: str | None = None) -> str:
    path = urllib.parse.quote(spec.path)
    rev = urllib.parse.quote(entry.revision, safe="")
    return f"{hf_endpoint(base_url)}/{entry.hf_repo}/resolve/{rev}/{path}"


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
    validator: str | None = None  # for If-Range: a strong ETag, else Last-Modified


def _validator(headers: Any) -> str | None:
    etag = (headers.get("ETag") or "").strip()
    if etag and not etag.startswith("W/"):
        return etag
    return (headers.get("Last-Modified") or "").strip() or None


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
    return _Remote(total, sha, _validator(resp_headers))


def _open(url: str, offset: int, validator: str | None = None) -> tuple[Any, _RecordingRedirects]:
    redirects = _RecordingRedirects()
    opener = urllib.request.build_opener(redirects)
    req = urllib.request.Request(url, headers={"User-Agent": f"retllm-desktop/{__version__}"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
        if validator:  # only if the file is still the one the .part came from; else the whole file
            req.add_header("If-Range", validator)
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


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc or url
