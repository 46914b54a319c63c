"""Moving bytes into ``<cache>/<file>.part``: HTTP(S) with timeouts, retries, Range resume, an
overall deadline and a size cap, or a copy from a local folder. Verifying and renaming is the
caller's job (fetch.py).

HTTP goes through httpx2, the maintained successor of httpx that huggingface_hub itself uses
(one HTTP client for every source): it reads ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` and
``NO_PROXY``, tunnels HTTPS through a proxy, and verifies certificates against
``RTMBENCH_CA_BUNDLE`` (or ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, read in
:mod:`rtmbench.spec.settings`), else ``SSL_CERT_FILE``/``SSL_CERT_DIR``, else the system store.
"""

from __future__ import annotations

import ssl
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
from tqdm import tqdm

from ..spec.settings import load_settings
from .cache import SPACE_ERRNOS, not_writable, open_part, refuse_link
from .fetch_errors import CacheNotWritable, DownloadError, SizeLimitError

MAX_REDIRECTS = 5
PERMANENT_STATUSES = {400, 401, 403, 404, 405, 410, 451}
COPY_CHUNK = 1 << 20


@dataclass(frozen=True)
class FetchSettings:
    """Network behaviour; every field can be set from the environment (see ``from_env``)."""

    connect_timeout: float = 10.0   # seconds to open the connection (and TLS handshake)
    read_timeout: float = 30.0      # seconds without a byte before the server counts as stalled
    retries: int = 3                # further attempts per source after the first one
    backoff: float = 1.0            # seconds before the first retry, doubled after each
    lock_timeout: float = 3600.0    # how long to wait for another process fetching the file
    deadline: float = 7200.0        # seconds one source may take for one file, all attempts
    max_bytes: int = 2 << 30        # size cap of a file whose size the zoo does not give
    ca_bundle: str | None = None    # CA certificates (PEM file or folder); None: see module doc

    @classmethod
    def from_env(cls) -> FetchSettings:
        """From ``RTMBENCH_CONNECT_TIMEOUT``, ``_READ_TIMEOUT``, ``_RETRIES``, ``_BACKOFF``,
        ``_LOCK_TIMEOUT``, ``_DOWNLOAD_DEADLINE``, ``_MAX_DOWNLOAD_BYTES`` and ``_CA_BUNDLE``
        (:mod:`rtmbench.spec.settings`)."""
        s = load_settings()
        return cls(connect_timeout=s.connect_timeout, read_timeout=s.read_timeout,
                   retries=s.retries, backoff=s.backoff, lock_timeout=s.lock_timeout,
                   deadline=s.download_deadline, max_bytes=s.max_download_bytes,
                   ca_bundle=str(s.ca_bundle) if s.ca_bundle else None)


@dataclass(frozen=True)
class Limits:
    """What one file from one source may cost: at most ``cap`` bytes, until ``deadline``
    (``time.monotonic()``)."""

    cap: int
    exact: bool      # the cap is the file's size as the zoo gives it
    deadline: float
    seconds: float   # the deadline's length, for messages

    @classmethod
    def start(cls, settings: FetchSettings, size: int | None) -> Limits:
        return cls(size or settings.max_bytes, size is not None,
                   time.monotonic() + settings.deadline, settings.deadline)

    def too_large(self, where: str, got: int, announced: bool) -> SizeLimitError:
        what = (f"the zoo's size of the file ({self.cap:,} bytes)" if self.exact else
                f"RTMBENCH_MAX_DOWNLOAD_BYTES={self.cap}")
        verb = "announces" if announced else "sent more than"
        fix = ("it serves another file: use another source" if self.exact else
               "if the file really is that large, raise RTMBENCH_MAX_DOWNLOAD_BYTES; otherwise "
               "the source serves another file: use another one")
        return SizeLimitError(f"{where} {verb} {got:,} bytes, more than {what}; the transfer "
                              f"was stopped and its bytes deleted. {fix}.")

    def expired(self) -> bool:
        return time.monotonic() > self.deadline

    def deadline_passed(self, where: str, detail: str = "") -> DownloadError:
        """The source took longer than the deadline; ``detail``: what was received."""
        return DownloadError(f"{where}: not finished within RTMBENCH_DOWNLOAD_DEADLINE="
                             f"{self.seconds:g}s{f' ({detail})' if detail else ''}; use a faster "
                             f"source or raise the deadline")


class _Transient(Exception):
    """Worth another attempt: dropped connection, 5xx, bad resume."""


class _Permanent(Exception):
    """Retrying cannot help: 404, 403, untrusted certificate, ..."""


class _DeadlinePassed(Exception):
    """The source took longer than RTMBENCH_DOWNLOAD_DEADLINE for this file."""


def ssl_context(ca_bundle: str | None) -> ssl.SSLContext | bool:
    """Certificate verification for HTTPS: the given bundle (file or folder), else httpx2's
    default (SSL_CERT_FILE/SSL_CERT_DIR, then the system store)."""
    if not ca_bundle:
        return True
    path = Path(ca_bundle)
    try:
        if path.is_dir():
            return ssl.create_default_context(capath=str(path))
        return ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        raise DownloadError(
            f"the CA bundle {path} (RTMBENCH_CA_BUNDLE, REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE) "
            f"cannot be used: {exc}. Point it at a PEM file or a folder of certificates, or "
            f"unset it to use the system's.") from None


def http_client(settings: FetchSettings) -> httpx2.Client:
    """A client that honours the proxy variables and the CA bundle; closed by the caller."""
    return httpx2.Client(
        timeout=httpx2.Timeout(settings.read_timeout, connect=settings.connect_timeout),
        follow_redirects=True, max_redirects=MAX_REDIRECTS, trust_env=True,
        verify=ssl_context(settings.ca_bundle),
        headers={"User-Agent": "rtmbench", "Accept-Encoding": "identity"})


def write_failed(target: Path, exc: OSError, what: str, written: int) -> CacheNotWritable:
    """A write into the cache failed: on a full disk (or quota) the caller has deleted what it
    was writing, and the message says so; else the cache is not writable."""
    if exc.errno not in SPACE_ERRNOS:
        return not_writable(target.parent, exc)
    return CacheNotWritable(
        f"the disk holding {target.parent} is full ({exc.strerror or exc}) after {written:,} "
        f"bytes: {what} {target.name} was deleted to free its space. Free some space there "
        f"(df -h '{target.parent}'), or point RTMBENCH_CACHE at a disk with room, then fetch "
        f"again.")


def _write(out, chunk: bytes, part: Path, written: int) -> None:
    """All of ``chunk`` into the unbuffered ``out``; a full disk deletes ``part`` (a partial
    download must not keep the disk full), any write error is CacheNotWritable."""
    view = memoryview(chunk)
    try:
        while view:
            view = view[out.write(view):]
    except OSError as exc:  # a full disk, a cache turned read-only: not the source's fault
        if exc.errno in SPACE_ERRNOS:
            out.close()
            part.unlink(missing_ok=True)
        raise write_failed(part, exc, "the partial download", written) from None


def _part_size(part: Path) -> int:
    refuse_link(part, "a partial download")
    return part.stat().st_size if part.exists() else 0


def _resume_start(resp: httpx2.Response) -> int | None:
    value = resp.headers.get("Content-Range", "")
    head, _, _ = value.partition("/")
    if head.startswith("bytes ") and "-" in head:
        start = head[6:].split("-", 1)[0]
        return int(start) if start.isdigit() else None
    return None


def _attempt(client: httpx2.Client, url: str, part: Path, limits: Limits,
             settings: FetchSettings, desc: str, progress: bool) -> None:
    """One GET, resuming ``part`` with Range if it holds bytes; raises _Transient/_Permanent,
    _DeadlinePassed or SizeLimitError (with ``part`` deleted)."""
    offset = _part_size(part)
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    left = limits.deadline - time.monotonic()
    if left <= 0:
        raise _DeadlinePassed()
    # No single wait may outlast the deadline; between reads the loop below checks it.
    timeout = httpx2.Timeout(min(settings.read_timeout, left),
                             connect=min(settings.connect_timeout, left))
    with client.stream("GET", url, headers=headers, timeout=timeout) as resp:
        if resp.status_code == 416:  # the partial file is not a prefix of this one
            part.unlink(missing_ok=True)
            raise _Transient("server refused to resume (HTTP 416); restarting from zero")
        if resp.status_code in PERMANENT_STATUSES:
            raise _Permanent(f"HTTP {resp.status_code} {resp.reason_phrase}")
        if resp.status_code not in (200, 206):
            raise _Transient(f"HTTP {resp.status_code} {resp.reason_phrase}")
        if resp.status_code == 206 and _resume_start(resp) != offset:
            part.unlink(missing_ok=True)
            got = resp.headers.get("Content-Range")
            raise _Transient(f"server resumed at the wrong offset ({got}); restarting from zero")
        if resp.status_code == 200:
            offset = 0  # no resume support: the body is the whole file
        length = resp.headers.get("Content-Length", "")
        total = offset + int(length) if length.isdigit() else None
        if total is not None and total > limits.cap:
            part.unlink(missing_ok=True)
            raise limits.too_large(url, total, announced=True)
        fd = open_part(part, append=bool(offset))
        received = offset
        with open(fd, "wb", buffering=0, closefd=True) as out, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                desc=desc, file=sys.stderr, disable=not progress, dynamic_ncols=True) as bar:
            try:
                # iter_raw: every piece as it arrives (iter_bytes(n) would wait for n bytes,
                # and a trickling server would never reach the deadline check).
                for chunk in resp.iter_raw():
                    received += len(chunk)
                    if received > limits.cap:
                        out.close()
                        part.unlink(missing_ok=True)
                        raise limits.too_large(url, received, announced=False)
                    _write(out, chunk, part, received - len(chunk))
                    bar.update(len(chunk))
                    if limits.expired():
                        raise _DeadlinePassed()
            except httpx2.TimeoutException:
                raise
            except httpx2.TransportError as exc:
                raise _Transient(f"connection closed after {received} of {total} bytes "
                                 f"({type(exc).__name__})") from None
        if total is not None and received != total:
            raise _Transient(f"connection closed after {received} of {total} bytes")


def proxy_for(url: str) -> str | None:
    """The proxy the environment routes ``url`` through (as httpx2 reads it), for messages."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass_environment(parts.hostname or "", proxies):
        return None
    return proxy


def _certificate_problem(exc: BaseException) -> bool:
    while exc is not None:
        if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(
                exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def download(url: str, part: Path, settings: FetchSettings, *, desc: str,
             progress: bool = True, size: int | None = None) -> None:
    """Fill ``part`` with the body of ``url``: retries with exponential backoff, resumes what an
    earlier attempt (or an interrupted run) left in ``part``; at most ``size`` bytes (else
    ``settings.max_bytes``), within ``settings.deadline`` seconds."""
    limits = Limits.start(settings, size)
    problem = "no attempt made"
    with http_client(settings) as client:
        for attempt in range(settings.retries + 1):
            if attempt:
                delay = settings.backoff * 2 ** (attempt - 1)
                if time.monotonic() + delay > limits.deadline:
                    break
                print(f"rtmbench: {problem}; retry {attempt}/{settings.retries} in {delay:g}s "
                      f"({url})", file=sys.stderr)
                time.sleep(delay)
            try:
                _attempt(client, url, part, limits, settings, desc, progress)
                return
            except _Permanent as exc:
                raise DownloadError(f"{url}: {exc}") from None
            except _DeadlinePassed:
                break
            except httpx2.TimeoutException:
                problem = (f"no data for {settings.read_timeout:g}s (connect timeout "
                           f"{settings.connect_timeout:g}s): the server stalled or is "
                           f"unreachable")
            except httpx2.ProxyError as exc:
                problem = (f"the proxy failed ({exc}); check HTTPS_PROXY, HTTP_PROXY, "
                           f"ALL_PROXY and NO_PROXY")
            except httpx2.TooManyRedirects:
                raise DownloadError(f"{url}: more than {MAX_REDIRECTS} redirects") from None
            except (httpx2.UnsupportedProtocol, httpx2.InvalidURL) as exc:
                raise DownloadError(f"{url}: not a URL rtmbench can fetch ({exc})") from None
            except (_Transient, httpx2.TransportError, OSError) as exc:
                if _certificate_problem(exc):
                    raise DownloadError(
                        f"{url}: the server's TLS certificate is not trusted ({exc}). If a "
                        f"proxy or your organisation re-signs HTTPS, point RTMBENCH_CA_BUNDLE "
                        f"(or REQUESTS_CA_BUNDLE, SSL_CERT_FILE) at its CA certificate "
                        f"(PEM).") from None
                if isinstance(exc, httpx2.ConnectError) and (proxy := proxy_for(url)):
                    problem = (f"{type(exc).__name__}: {exc} (through the proxy {proxy}, "
                               f"from HTTPS_PROXY, HTTP_PROXY or ALL_PROXY; NO_PROXY lists "
                               f"hosts to reach directly)")
                    continue
                transient = isinstance(exc, _Transient)
                problem = str(exc) if transient else f"{type(exc).__name__}: {exc}"
        else:
            raise DownloadError(f"{url}: {problem} (after {settings.retries + 1} attempts)")
    have = part.stat().st_size if part.exists() else 0
    kept = ", kept: the next run resumes them from this source" if have else ""
    last = f"; before that: {problem}" if attempt else ""
    raise limits.deadline_passed(url, f"{have:,} bytes received{kept}{last}")


def copy_local(source: Path, part: Path, *, desc: str, progress: bool = True,
               size: int | None, settings: FetchSettings) -> None:
    """Copy a file from a local folder (or huggingface_hub's cache) into ``part``, with the same
    progress bar and size cap (``settings.max_bytes``; no deadline for a local copy)."""
    limits = Limits.start(settings, size)
    try:
        src = open(source, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise DownloadError(f"{source}: cannot be read ({exc.strerror})") from None
    with src:
        total = Path(source).stat().st_size
        if total > limits.cap:
            raise limits.too_large(str(source), total, announced=True)
        fd = open_part(part, append=False)
        copied = 0
        with open(fd, "wb", buffering=0, closefd=True) as out, tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                file=sys.stderr, disable=not progress, dynamic_ncols=True) as bar:
            while chunk := src.read(COPY_CHUNK):
                copied += len(chunk)
                if copied > limits.cap:  # the file grew while being copied
                    out.close()
                    part.unlink(missing_ok=True)
                    raise limits.too_large(str(source), copied, announced=False)
                _write(out, chunk, part, copied - len(chunk))
                bar.update(len(chunk))
