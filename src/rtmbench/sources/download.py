"""Moving bytes into ``<cache>/<file>.part``: HTTP(S) with timeouts, retries and Range resume,
or a copy from a local folder. Verifying and renaming is the caller's job (fetch.py)."""

from __future__ import annotations

import http.client
import re
import ssl
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from tqdm import tqdm

from ..spec.settings import load_settings
from .errors import DownloadError

CHUNK = 1 << 16
MAX_REDIRECTS = 5
PERMANENT_STATUSES = {400, 401, 403, 404, 405, 410, 451}


@dataclass(frozen=True)
class FetchSettings:
    """Network behaviour; every field can be set from the environment (see ``from_env``)."""

    connect_timeout: float = 10.0   # seconds to open the connection (and TLS handshake)
    read_timeout: float = 30.0      # seconds without a byte before the server counts as stalled
    retries: int = 3                # further attempts per source after the first one
    backoff: float = 1.0            # seconds before the first retry, doubled after each
    lock_timeout: float = 3600.0    # how long to wait for another process fetching the file

    @classmethod
    def from_env(cls) -> FetchSettings:
        """From ``RTMBENCH_CONNECT_TIMEOUT``, ``_READ_TIMEOUT``, ``_RETRIES``, ``_BACKOFF`` and
        ``_LOCK_TIMEOUT`` (:mod:`rtmbench.spec.settings`)."""
        s = load_settings()
        return cls(connect_timeout=s.connect_timeout, read_timeout=s.read_timeout,
                   retries=s.retries, backoff=s.backoff, lock_timeout=s.lock_timeout)


class _Transient(Exception):
    """Worth another attempt: dropped connection, 5xx, bad resume."""


class _Permanent(Exception):
    """Retrying cannot help: 404, 403, ..."""


def _connect(url: str, settings: FetchSettings) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=settings.connect_timeout,
            context=ssl.create_default_context())
    elif parts.scheme == "http":
        conn = http.client.HTTPConnection(parts.hostname, parts.port,
                                          timeout=settings.connect_timeout)
    else:
        raise _Permanent(f"unsupported URL scheme {parts.scheme!r}")
    conn.connect()
    conn.sock.settimeout(settings.read_timeout)  # from now on: the stall timeout
    return conn


def _request(url: str, headers: dict[str, str], settings: FetchSettings
             ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """GET ``url`` following redirects; the caller closes the connection."""
    for _ in range(MAX_REDIRECTS + 1):
        conn = _connect(url, settings)
        parts = urlsplit(url)
        path = parts.path or "/"
        conn.request("GET", path + (f"?{parts.query}" if parts.query else ""), headers=headers)
        resp = conn.getresponse()
        if resp.status in (301, 302, 303, 307, 308) and resp.getheader("Location"):
            url = urljoin(url, resp.getheader("Location"))
            conn.close()
            continue
        return conn, resp
    raise _Permanent(f"more than {MAX_REDIRECTS} redirects")


def _resume_start(resp: http.client.HTTPResponse) -> int | None:
    match = re.match(r"bytes (\d+)-\d+/", resp.getheader("Content-Range") or "")
    return int(match.group(1)) if match else None


def _attempt(url: str, part: Path, settings: FetchSettings, desc: str, progress: bool) -> None:
    """One GET, resuming ``part`` with Range if it holds bytes; raises _Transient/_Permanent."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "rtmbench", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    conn, resp = _request(url, headers, settings)
    try:
        if resp.status == 416:  # the partial file is not a prefix of this one: start over
            part.unlink(missing_ok=True)
            raise _Transient("server refused to resume (HTTP 416); restarting from zero")
        if resp.status in PERMANENT_STATUSES:
            raise _Permanent(f"HTTP {resp.status} {resp.reason}")
        if resp.status not in (200, 206):
            raise _Transient(f"HTTP {resp.status} {resp.reason}")
        if resp.status == 206 and _resume_start(resp) != offset:
            part.unlink(missing_ok=True)
            got = resp.getheader("Content-Range")
            raise _Transient(f"server resumed at the wrong offset ({got}); restarting from zero")
        if resp.status == 200:
            offset = 0  # no resume support: the body is the whole file
        length = resp.getheader("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        with open(part, "ab" if offset else "wb") as out, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                desc=desc, file=sys.stderr, disable=not progress, dynamic_ncols=True) as bar:
            while chunk := resp.read(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
        size = part.stat().st_size
        if total is not None and size != total:
            raise _Transient(f"connection closed after {size} of {total} bytes")
    finally:
        conn.close()


def download(url: str, part: Path, settings: FetchSettings, *, desc: str,
             progress: bool = True) -> None:
    """Fill ``part`` with the body of ``url``: retries with exponential backoff, resumes what an
    earlier attempt (or an interrupted run) left in ``part``."""
    problem = "no attempt made"
    for attempt in range(settings.retries + 1):
        if attempt:
            delay = settings.backoff * 2 ** (attempt - 1)
            print(f"rtmbench: {problem}; retry {attempt}/{settings.retries} in {delay:g}s "
                  f"({url})", file=sys.stderr)
            time.sleep(delay)
        try:
            _attempt(url, part, settings, desc, progress)
            return
        except _Permanent as exc:
            raise DownloadError(f"{url}: {exc}") from None
        except TimeoutError:
            problem = (f"no data for {settings.read_timeout:g}s (connect timeout "
                       f"{settings.connect_timeout:g}s): the server stalled or is unreachable")
        except (_Transient, OSError, http.client.HTTPException) as exc:
            transient = isinstance(exc, _Transient)
            problem = str(exc) if transient else f"{type(exc).__name__}: {exc}"
    raise DownloadError(f"{url}: {problem} (after {settings.retries + 1} attempts)")


def copy_local(source: Path, part: Path, *, desc: str, progress: bool = True) -> None:
    """Copy a file from a local folder into ``part``, with the same progress bar."""
    with open(source, "rb") as src, open(part, "wb") as out, tqdm(
            total=source.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
            desc=desc, file=sys.stderr, disable=not progress, dynamic_ncols=True) as bar:
        while chunk := src.read(1 << 20):
            out.write(chunk)
            bar.update(len(chunk))
