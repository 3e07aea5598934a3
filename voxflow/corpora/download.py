"""Resumable HTTP(S) downloads with retries, progress lines and checksum verification.

A download writes ``<dest>.part`` (resumed with a Range request after an interruption), checks
the expected digest(s), then renames the part onto ``dest``; ``dest`` therefore only ever exists
complete. A file failing its checksum is kept as ``<dest>.bad`` for inspection, never deleted.
A file without a published checksum can be fetched under trust on first use (``trust_on_first_use``):
its sha256 is recorded in ``<dest>.sha256`` (``sha256sum`` format) after the first complete download
and every later run checks the file, or a new download of it, against that record (digests, stamps and
records: :mod:`voxflow.corpora.checksums`).
Credentials (basic auth or extra headers) come from arguments or the environment and are never
written to logs or error messages.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import hashlib
import http.client
import json
import logging
import os
import re
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator, Mapping

from voxflow.corpora.checksums import (
    digest_mismatches,
    expected_digests,
    file_digests,
    read_tofu_record,
    record_verified,
    tofu_record_path,
    verify_file,
    write_tofu_record,
)
from voxflow.errors import VoxflowError

log = logging.getLogger(__name__)

ENV_USER = "VOXFLOW_DOWNLOAD_USER"
ENV_PASSWORD = "VOXFLOW_DOWNLOAD_PASSWORD"
ENV_HEADERS = "VOXFLOW_DOWNLOAD_HEADERS"  # JSON object of extra request headers, e.g. a bearer token
TIMEOUT_S = 60.0
MAX_BACKOFF_S = 60.0
USER_AGENT = "voxflow-download/1"
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
_SENSITIVE = {"authorization", "cookie", "proxy-authorization"}


class _TransientError(Exception):
    """A failure worth retrying (connection reset, truncated body, 5xx)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def redact_url(url: str) -> str:
    """``url`` without user:password and without a query string (which may hold a token)."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "?..." if parts.query else "", ""))


def _credentials(user: str | None, password: str | None, headers: Mapping[str, str] | None,
                 url_user: str | None, url_password: str | None) -> dict[str, str]:
    """Request headers carrying credentials: arguments first, then the URL's userinfo, then the environment."""
    out: dict[str, str] = {}
    env_headers = os.environ.get(ENV_HEADERS)
    if env_headers:
        try:
            parsed = json.loads(env_headers)
        except json.JSONDecodeError as exc:
            raise VoxflowError(f"environment variable {ENV_HEADERS}: not a JSON object: {exc.msg}") from None
        if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
            raise VoxflowError(f"environment variable {ENV_HEADERS}: must be a JSON object of string values")
        out.update(parsed)
    out.update(headers or {})
    user = user if user is not None else url_user if url_user is not None else os.environ.get(ENV_USER)
    if password is None:
        password = url_password if url_password is not None else os.environ.get(ENV_PASSWORD)
    if user is not None:
        token = base64.b64encode(f"{user}:{password or ''}".encode()).decode("ascii")
        out["Authorization"] = f"Basic {token}"
    return out


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows redirects but drops credential headers when the redirect leaves the original host."""

    def __init__(self, secret_headers: set[str]):
        self.secret_headers = {h.lower() for h in secret_headers} | _SENSITIVE

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urllib.parse.urlsplit(newurl).netloc != urllib.parse.urlsplit(req.full_url).netloc:
            for name in list(new.headers):
                if name.lower() in self.secret_headers:
                    del new.headers[name]
        return new


class _Progress:
    """Prints ``<name>: 42% (1.1 GiB of 2.6 GiB) 11.0 MiB/s`` to stderr every ``step_pct`` percent."""

    def __init__(self, name: str, enabled: bool, step_pct: float = 5.0, unknown_step: int = 256 << 20):
        self.name, self.enabled, self.step_pct, self.unknown_step = name, enabled, step_pct, unknown_step
        self.total: int | None = None
        self.next_mark = 0.0
        self.t0 = time.monotonic()
        self.start_bytes = 0

    def start(self, done: int, total: int | None) -> None:
        self.total, self.start_bytes, self.t0 = total, done, time.monotonic()
        self.next_mark = self._mark_after(done)

    def _mark_after(self, done: int) -> float:
        if self.total:
            pct = 100.0 * done / self.total
            return (int(pct // self.step_pct) + 1) * self.step_pct
        return float((done // self.unknown_step + 1) * self.unknown_step)

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        value = 100.0 * done / self.total if self.total else float(done)
        if value < self.next_mark and not (self.total and done >= self.total):
            return
        self.next_mark = self._mark_after(done)
        rate = (done - self.start_bytes) / max(time.monotonic() - self.t0, 1e-6)
        if self.total:
            head = f"{100.0 * done / self.total:3.0f}% ({_size(done)} of {_size(self.total)})"
        else:
            head = f"{_size(done)}"
        print(f"{self.name}: {head} {_size(rate)}/s", file=sys.stderr, flush=True)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


@contextlib.contextmanager
def _lock(dest: Path) -> Iterator[None]:
    lock_path = dest.with_name(dest.name + ".lock")
    with open(lock_path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise VoxflowError(f"{dest}: another process is downloading this file "
                                   f"({lock_path} is locked)") from None
            raise
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)  # the lock file stays: removing it would race with a new locker


def _content_range_start_total(value: str | None) -> tuple[int | None, int | None]:
    """Parse ``bytes START-END/TOTAL`` or ``bytes */TOTAL``."""
    if not value:
        return None, None
    m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value)
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


def _retry_after(headers) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if value and value.strip().isdigit():
        return float(value.strip())
    return None


def _attempt(opener, url: str, part: Path, headers: dict[str, str], hashers: dict, chunk_bytes: int,
             progress: _Progress, shown: str) -> None:
    """One request: resume or restart ``part`` and stream the body into it, updating ``hashers``."""
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **headers})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = opener.open(req, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        with contextlib.closing(exc):
            if exc.code == 416 and have:
                _, total = _content_range_start_total(exc.headers.get("Content-Range"))
                if total == have:
                    return  # the part is already complete
                log.warning("%s: server refused to resume at byte %d; restarting from zero", shown, have)
                part.unlink()
                _reset(hashers)
                raise _TransientError("range not satisfiable; restarting") from None
            if exc.code in _RETRY_STATUS:
                raise _TransientError(f"HTTP {exc.code} {exc.reason}", _retry_after(exc.headers)) from None
            hint = (f" (check {ENV_USER}/{ENV_PASSWORD}, {ENV_HEADERS} or the mirror)"
                    if exc.code in (401, 403) else "")
            raise VoxflowError(f"{shown}: HTTP {exc.code} {exc.reason}{hint}") from None
    with contextlib.closing(resp):
        status = getattr(resp, "status", 200)
        length = resp.headers.get("Content-Length")
        expected_len = int(length) if length and length.isdigit() else None
        if have and status == 206:
            start, total = _content_range_start_total(resp.headers.get("Content-Range"))
            if start != have:
                raise VoxflowError(f"{shown}: server resumed at byte {start}, asked for {have}")
            mode = "ab"
        else:
            if have:
                log.info("%s: server does not support resuming (HTTP %d); restarting from zero", shown, status)
            have, mode = 0, "wb"
            _reset(hashers)
            total = expected_len
        progress.start(have, total)
        received = 0
        with open(part, mode) as out:
            while True:
                try:
                    chunk = resp.read(chunk_bytes)
                except (http.client.IncompleteRead, ConnectionError, socket.timeout, OSError) as exc:
                    out.flush()
                    raise _TransientError(f"connection lost after {have + received} bytes: {exc}") from None
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise VoxflowError(f"{part}: cannot write the download: {exc.strerror or exc}") from None
                for h in hashers.values():
                    h.update(chunk)
                received += len(chunk)
                progress.update(have + received)
        if expected_len is not None and received < expected_len:
            raise _TransientError(f"connection closed after {have + received} of {have + expected_len} bytes")


def _reset(hashers: dict) -> None:
    for algo in list(hashers):
        hashers[algo] = hashlib.new(algo)


def _hash_existing(part: Path, hashers: dict, chunk_bytes: int) -> None:
    if part.exists():
        with open(part, "rb") as f:
            while chunk := f.read(chunk_bytes):
                for h in hashers.values():
                    h.update(chunk)


def download(url: str, dest: str | os.PathLike, sha256: str | None = None, md5: str | None = None,
             retries: int = 5, backoff_s: float = 1.0, chunk_bytes: int = 1 << 20, progress: bool = True,
             headers: Mapping[str, str] | None = None, user: str | None = None,
             password: str | None = None, trust_on_first_use: bool = False) -> Path:
    """Download ``url`` to ``dest`` (resuming, retrying, verifying); return ``dest``.

    A present ``dest`` matching the checksum(s) (or present, when none is given) is left alone
    without any request. Connection errors and HTTP 408/429/5xx are retried ``retries`` times with
    exponential back-off (``backoff_s * 2**k``, capped at 60 s, or the server's Retry-After);
    an attempt that made progress resets the count. Basic-auth credentials come from
    ``user``/``password``, the URL, or $VOXFLOW_DOWNLOAD_USER/$VOXFLOW_DOWNLOAD_PASSWORD; extra
    headers from ``headers`` or $VOXFLOW_DOWNLOAD_HEADERS (a JSON object).

    ``trust_on_first_use`` (only when no checksum is given): the first complete download's sha256 is
    recorded in ``<dest>.sha256`` and from then on acts as the expected checksum.
    """
    dest = Path(dest)
    expected = expected_digests(sha256, md5)
    tofu = trust_on_first_use and not expected
    recorded = read_tofu_record(dest) if tofu else None
    if recorded:
        sha256, expected = recorded, {"sha256": recorded}
    shown = f"{dest} ({redact_url(url)})"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise VoxflowError(f"{dest}: only http(s) URLs can be downloaded, got {redact_url(url)!r}")
    if dest.is_file():
        if verify_file(dest, sha256, md5):
            if tofu and not recorded:
                record = write_tofu_record(dest, file_digests(dest)["sha256"])
                log.warning("%s: present, no published checksum; its sha256 is now trusted and recorded in %s",
                            dest, record)
            log.info("%s: present%s; nothing to download", dest, " and verified" if expected else "")
            return dest
        bad = dest.with_name(dest.name + ".bad")
        log.warning("%s: present but fails its checksum; moved aside to %s and downloading again", dest, bad)
        os.replace(dest, bad)
    dest.parent.mkdir(parents=True, exist_ok=True)
    clean_url = url
    if parts.username is not None or parts.password is not None:
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        clean_url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    secret = _credentials(user, password, headers,
                          urllib.parse.unquote(parts.username) if parts.username is not None else None,
                          urllib.parse.unquote(parts.password) if parts.password is not None else None)
    opener = urllib.request.build_opener(_RedirectHandler(set(secret)))
    part = dest.with_name(dest.name + ".part")
    with _lock(dest):
        hashers = {a: hashlib.new(a) for a in (expected or {"sha256": ""})}
        _hash_existing(part, hashers, chunk_bytes)
        meter = _Progress(dest.name, progress)
        failures = 0
        while True:
            before = part.stat().st_size if part.exists() else 0
            try:
                _attempt(opener, clean_url, part, secret, hashers, chunk_bytes, meter, shown)
                break
            except _TransientError as exc:
                after = part.stat().st_size if part.exists() else 0
                failures = 0 if after > before else failures + 1
                if failures > retries:
                    raise VoxflowError(f"{shown}: download failed after {retries} retries: {exc}") from None
                delay = min(backoff_s * 2 ** max(failures - 1, 0), MAX_BACKOFF_S)
                if exc.retry_after is not None:
                    delay = min(max(delay, exc.retry_after), MAX_BACKOFF_S)
                log.warning("%s: %s; retrying in %.1f s", shown, exc, delay)
                time.sleep(delay)
            except (urllib.error.URLError, ConnectionError, socket.timeout, http.client.HTTPException) as exc:
                failures += 1
                reason = getattr(exc, "reason", exc)
                if failures > retries:
                    raise VoxflowError(f"{shown}: download failed after {retries} retries: {reason}") from None
                delay = min(backoff_s * 2 ** (failures - 1), MAX_BACKOFF_S)
                log.warning("%s: %s; retrying in %.1f s", shown, reason, delay)
                time.sleep(delay)
        got = {a: h.hexdigest() for a, h in hashers.items()}
        wrong = digest_mismatches(got, expected)
        if wrong:
            bad = dest.with_name(dest.name + ".bad")
            os.replace(part, bad)
            detail = "; ".join(f"expected {a} {expected[a]}, got {got[a]}" for a in wrong)
            origin = ""
            if recorded:
                origin = (f"; the expected digest was recorded on the first download in {tofu_record_path(dest)}:"
                          " delete that record only if the upstream file changed on purpose")
            raise VoxflowError(f"{dest}: checksum mismatch: {detail} (the downloaded file is kept as {bad}){origin}")
        os.replace(part, dest)
        if expected:
            record_verified(dest, got)
        if tofu and not recorded:
            record = write_tofu_record(dest, got["sha256"])
            log.warning("%s: no published checksum; trusting this first download, sha256 %s recorded in %s",
                        dest, got["sha256"], record)
        log.info("%s: downloaded%s", dest, " and verified" if expected else " (no checksum to verify)")
    return dest
