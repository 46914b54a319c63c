"""``hf://OWNER/REPO[@REVISION][/SUBDIR]`` sources: a file from a Hugging Face Hub model
repository (``hf://datasets/OWNER/REPO...``: a dataset repository), through huggingface_hub
(which does the Hub's protocol, ``HF_TOKEN`` for private or gated repositories, proxies, and
retries/resume within a download).

huggingface_hub keeps its own cache (``HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``).
rtmbench never trusts it: the file is copied from there into ``<cache>/<file>.part`` and
verified by sha256 like the bytes of any other source. When a copy from huggingface_hub's
cache fails verification (a damaged or replaced blob) it is downloaded once more with
``force_download`` before the source is refused.

Offline (``RTMBENCH_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``) an hf:// source only looks in
huggingface_hub's cache (``try_to_load_from_cache``: no request of any kind).
The deadline and size cap apply as bytes arrive (a progress-bar class that huggingface_hub
calls for every chunk raises when either is passed); the size cap also to the copy out of
huggingface_hub's cache (a local copy has no deadline).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..spec.hfref import HfRef
from ..spec.settings import load_settings
from .download import FetchSettings, Limits, copy_local, ssl_context
from .fetch_errors import DownloadError, SizeLimitError

_CLIENT_BUNDLE: list[str | None] = []  # the CA bundle huggingface_hub's client was built with


@dataclass(frozen=True)
class HfResult:
    path: Path      # in huggingface_hub's cache
    url: str        # hf://OWNER/REPO@COMMIT/PATH: what was really fetched
    downloaded: int  # bytes that came over the network in this call (0: from its cache)


class _Abort(Exception):
    """Raised inside huggingface_hub's download loop; carries the rtmbench error."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _guarded_bar(limits: Limits, where: str, progress: bool, counter: list[int]) -> type:
    """A tqdm class huggingface_hub updates for every chunk it receives: it stops the download
    (by raising) once the size cap or the deadline is passed."""

    class GuardedBar(tqdm):
        def __init__(self, *args, **kwargs) -> None:
            kwargs.pop("name", None)
            kwargs["disable"] = not progress
            kwargs.setdefault("file", sys.stderr)
            super().__init__(*args, **kwargs)
            if self.total is not None and self.total > limits.cap:
                raise _Abort(limits.too_large(where, int(self.total), announced=True))

        def update(self, n: float | None = 1) -> bool | None:
            counter[0] += int(n or 0)
            if self.n + (n or 0) > limits.cap:
                raise _Abort(limits.too_large(where, int(self.n + (n or 0)), announced=False))
            if limits.expired():
                raise _Abort(limits.deadline_passed(where))
            return super().update(n)

    return GuardedBar


def _configure_client(settings: FetchSettings) -> None:
    """huggingface_hub's shared httpx2 client honours the proxy variables and SSL_CERT_FILE
    itself; a CA bundle given to rtmbench (RTMBENCH_CA_BUNDLE, REQUESTS_CA_BUNDLE,
    CURL_CA_BUNDLE) is handed to it here, once per bundle.

    rtmbench talks to the sources it is given and nothing else: huggingface_hub's user-agent
    "telemetry" (its AI-agent detection) would fetch a registry from its *default* endpoint,
    read once at import, whatever endpoint a download uses; it is turned off."""
    import huggingface_hub.constants as hf_constants

    hf_constants.HF_HUB_DISABLE_TELEMETRY = True
    if _CLIENT_BUNDLE and _CLIENT_BUNDLE[0] == settings.ca_bundle:
        return
    import httpx2
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils import _http

    verify = ssl_context(settings.ca_bundle)
    hook = getattr(_http, "hf_request_event_hook", None)  # offline mode, request ids

    def factory() -> httpx2.Client:
        return httpx2.Client(event_hooks={"request": [hook]} if hook else {},
                             follow_redirects=True, timeout=None, verify=verify)

    # unset again: huggingface_hub's own client, not the factory of an earlier bundle
    set_client_factory(factory if settings.ca_bundle else _http.default_client_factory)
    _CLIENT_BUNDLE[:] = [settings.ca_bundle]


def _commit_of(path: str, ref: HfRef) -> str | None:
    """The commit a file in huggingface_hub's cache belongs to (.../snapshots/COMMIT/PATH)."""
    parts = Path(path).parts
    depth = len(Path(ref.path_of("x")).parts)  # the path inside the repository
    if len(parts) > depth + 1 and parts[-depth - 2] == "snapshots":
        return parts[-depth - 1]
    return None


def _explain(exc: Exception, url: str) -> DownloadError:
    from huggingface_hub import errors as hf

    token = ("if the repository is private or gated, set HF_TOKEN (or run `hf auth login`) "
             "with access to it")
    if isinstance(exc, hf.LocalEntryNotFoundError):
        return DownloadError(f"{url}: the Hub could not be reached and the file is not in "
                             f"huggingface_hub's cache ({exc.__class__.__name__}); check "
                             f"HF_ENDPOINT and the proxy variables (HTTPS_PROXY, NO_PROXY)")
    if isinstance(exc, hf.GatedRepoError):
        return DownloadError(f"{url}: the repository is gated: accept its conditions on the Hub "
                             f"and set HF_TOKEN")
    if isinstance(exc, hf.RepositoryNotFoundError):
        return DownloadError(f"{url}: repository not found (HTTP "
                             f"{getattr(exc.response, 'status_code', '?')}); {token}")
    if isinstance(exc, hf.RevisionNotFoundError):
        return DownloadError(f"{url}: no such revision in the repository")
    if isinstance(exc, hf.RemoteEntryNotFoundError):
        return DownloadError(f"{url}: no such file in the repository")
    if isinstance(exc, hf.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        hint = f"; {token}" if status in (401, 403) else ""
        return DownloadError(f"{url}: HTTP {status} from the Hub{hint}")
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return DownloadError(f"{url}: {type(exc).__name__}: {first}")


def download_hf(ref: HfRef, file: str, settings: FetchSettings, *, offline: bool,
                force: bool = False, progress: bool = True, size: int | None = None) -> HfResult:
    """Get ``file`` of ``ref`` into huggingface_hub's cache (or find it there): where it is,
    the ``hf://`` URL with the commit it resolved to, and how many bytes were downloaded."""
    import httpx2
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    s = load_settings()
    where = ref.url(file)
    if offline or s.hf_offline:  # a lookup in huggingface_hub's cache: no request at all
        found = try_to_load_from_cache(ref.repo_id, ref.path_of(file), cache_dir=s.hf_cache,
                                       revision=ref.revision, repo_type=ref.repo_type)
        if not isinstance(found, str):
            raise DownloadError(f"{where}: not in huggingface_hub's cache"
                                f"{f' ({s.hf_cache})' if s.hf_cache else ''}, and offline "
                                f"(RTMBENCH_OFFLINE or HF_HUB_OFFLINE) allows no download")
        return HfResult(Path(found), ref.url(file, _commit_of(found, ref)), 0)
    limits = Limits.start(settings, size)
    counter = [0]
    _configure_client(settings)
    try:
        path = hf_hub_download(
            ref.repo_id, ref.path_of(file), revision=ref.revision, endpoint=s.hf_endpoint,
            cache_dir=s.hf_cache, force_download=force, repo_type=ref.repo_type,
            etag_timeout=max(settings.connect_timeout, settings.read_timeout),
            tqdm_class=_guarded_bar(limits, where, progress, counter))
    except _Abort as abort:
        raise abort.error from None
    except (OSError, ValueError, httpx2.HTTPError) as exc:  # HfHubHTTPError is an OSError
        raise _explain(exc, where) from None
    commit = _commit_of(str(path), ref)
    return HfResult(Path(path), ref.url(file, commit), counter[0])


def fetch_hf(ref: HfRef, file: str, part: Path, settings: FetchSettings, *, offline: bool,
             force: bool = False, progress: bool = True, size: int | None = None) -> HfResult:
    """:func:`download_hf`, then a copy into ``part`` (which the caller verifies)."""
    got = download_hf(ref, file, settings, offline=offline, force=force, progress=progress,
                      size=size)
    try:
        copy_local(got.path, part, desc=file, progress=False, size=size, settings=settings)
    except SizeLimitError as exc:
        raise SizeLimitError(f"{got.url}: {exc}") from None
    return got
