"""Fetch a zoo checkpoint into the cache, verified by sha256, from the first source that works.

Sources, in order: ``RTMBENCH_MIRROR`` (a base URL, a local folder or an ``hf://`` repository
holding the same file names; several may be given, comma-separated), then the zoo entry's
``urls`` (file URLs, base URLs, local folders, ``hf://`` repositories). The hash makes any
source trustworthy. ``RTMBENCH_OFFLINE=1`` skips every network source (an ``hf://`` source then
only looks in huggingface_hub's cache).

The cache never follows a link: ``<file>.part``, ``<file>.lock`` and ``<file>`` must be regular
files (or absent), the part is opened with ``O_NOFOLLOW``, and a zoo file name is a plain name
(:func:`rtmbench.spec.zoo.file_name_problem`), so nothing is written outside the cache.
A part remembers its source in ``<file>.part.source``: it is only ever resumed from that
source, and bytes that fail verification are blamed on the source that sent them.

Lock files (``<file>.lock``, ``hashes.json.lock``) stay in the cache on purpose: they are
``flock`` locks, which the kernel releases when the holding process ends, however it ends, so
a lock file left by a killed process never blocks a later fetch; there is one per file name,
reused by every fetch of that file (they never pile up), and deleting them is only safe while
no fetch runs (a waiting process would lock the deleted file while a new one locks another).
"""

from __future__ import annotations

import errno
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from filelock import FileLock, Timeout

from ..errors import InputError
from ..fileio import sha256_file, write_bytes_atomic
from ..spec.hfref import is_hf, parse_hf
from ..spec.settings import load_settings
from ..spec.zoo import file_name_problem
from .cache import (
    cache_dir,
    ensure_cache,
    known_full_hash,
    not_writable,
    record_verification,
    recorded_verification,
    refuse_link,
)
from .download import FetchSettings, copy_local, download
from .errors import (
    CheckpointError,
    DownloadError,
    HashMismatchError,
    OfflineError,
    SizeLimitError,
    WeightsUnavailable,
)

if TYPE_CHECKING:
    from ..spec.zoo import ResolvedModel, Weights

PART_SOURCE_SUFFIX = ".part.source"
CACHE_WRITE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.ENOTDIR,
                      getattr(errno, "EDQUOT", errno.ENOSPC)}


@dataclass(frozen=True)
class FetchedCheckpoint:
    path: Path
    file: str
    sha256: str          # all 64 hex digits
    size: int
    source: str          # "cache" | "mirror" | "origin" | "local"
    url: str | None      # where the bytes came from (for "cache": where they first came from);
                         # hf://OWNER/REPO@COMMIT/PATH for a Hub repository

    def provenance(self) -> dict[str, Any]:
        return {"file": self.file, "url": self.url, "sha256": self.sha256, "size": self.size,
                "source": self.source}


@dataclass(frozen=True)
class Source:
    kind: str        # "mirror" | "origin" | "local"
    location: str    # an http(s) URL of the file, hf://OWNER/REPO[@REV]/PATH, or a local path

    @property
    def remote(self) -> bool:
        return self.location.startswith(("http://", "https://"))

    @property
    def hub(self) -> bool:
        return is_hf(self.location)


def offline() -> bool:
    return load_settings().offline


def _locate(entry: str, file: str, kind: str) -> Source:
    """One ``urls``/mirror entry -> where ``file`` is: a file URL stays, a base URL, a folder or
    an hf:// repository (folder) gets the file name appended."""
    entry = entry.strip()
    if is_hf(entry):
        try:
            ref = parse_hf(entry, file)
        except ValueError as exc:
            raise InputError(f"source {entry!r} (RTMBENCH_MIRROR or the zoo's urls): "
                             f"{exc}.") from None
        return Source(kind, ref.url(file))
    if entry.startswith(("http://", "https://")):
        last = unquote(urlsplit(entry).path.rsplit("/", 1)[-1])
        return Source(kind, entry if last == file else entry.rstrip("/") + "/" + file)
    path = Path(unquote(urlsplit(entry).path) if entry.startswith("file://") else entry)
    path = Path(os.path.expandvars(path)).expanduser()
    if path.name != file:
        path = path / file
    return Source("local" if kind == "origin" else kind, str(path))


def sources_for(file: str, urls: list[str]) -> list[Source]:
    mirrors = load_settings().mirrors
    found = [_locate(m, file, "mirror") for m in mirrors]
    found += [_locate(u, file, "origin") for u in urls]
    return list(dict.fromkeys(found))  # drop repeats, keep order


def _expected_hash(root: Path, file: str, zoo_sha256: str) -> str:
    """The zoo's hash (8 or 64 hex digits), upgraded to all 64 once a pull has recorded them."""
    full = known_full_hash(root, file)
    return full if full and full.startswith(zoo_sha256) else zoo_sha256


def _from_cache(target: Path, expected: str) -> FetchedCheckpoint | None:
    refuse_link(target, "a cached checkpoint")
    if not target.is_file():
        return None
    record = recorded_verification(target)
    if record is None:  # copied in by hand, or touched since: hash it once and remember
        actual = sha256_file(target)
        if not actual.startswith(expected):
            raise HashMismatchError(
                f"the cached file {target} has sha256 {actual}, but {expected} is expected: it "
                f"is not the published checkpoint (or it is damaged). Delete it and fetch again.")
        record = record_verification(target, actual, source="cache", url=None)
    elif not record["sha256"].startswith(expected):
        raise HashMismatchError(
            f"the cached file {target} was verified as sha256 {record['sha256']}, but the zoo now "
            f"expects {expected}; delete {target} and fetch again.")
    return FetchedCheckpoint(target, target.name, record["sha256"], record["size"], "cache",
                             record.get("url"))


def _part_source(part: Path) -> Path:
    return part.with_name(part.name.removesuffix(".part") + PART_SOURCE_SUFFIX)


def _claim_part(part: Path, src: Source) -> None:
    """Make ``part`` this source's: a part another source (or an unknown one) left is deleted,
    never resumed from here; then the part's source is written down before any byte."""
    refuse_link(part, "a partial download")
    marker = _part_source(part)
    if part.exists():
        try:
            owner = marker.read_text(encoding="utf-8").strip() if not marker.is_symlink() \
                else None
        except OSError:
            owner = None
        if owner == src.location:
            return
        part.unlink()
    write_bytes_atomic(marker, src.location.encode("utf-8"))


def _forget_part(part: Path) -> None:
    part.unlink(missing_ok=True)
    _part_source(part).unlink(missing_ok=True)


def _transfer(src: Source, part: Path, settings: FetchSettings, progress: bool,
              size: int | None, no_network: bool, force: bool) -> tuple[str, bool]:
    """Bytes of ``src`` into ``part``: (the URL they really came from, whether they were
    served from huggingface_hub's cache rather than downloaded now)."""
    desc = part.name.removesuffix(".part")
    if src.hub:
        from .hf import fetch_hf

        got = fetch_hf(parse_hf(src.location, desc), desc, part, settings, offline=no_network,
                       force=force, progress=progress, size=size)
        return got.url, got.downloaded == 0
    if src.remote:
        download(src.location, part, settings, desc=desc, progress=progress, size=size)
        return src.location, False
    path = Path(src.location)
    if not path.is_file():
        raise DownloadError(f"{path}: no such file")
    copy_local(path, part, desc=path.name, progress=progress, size=size, settings=settings)
    return src.location, False


def _fetch_into_cache(file: str, expected: str, urls: list[str], target: Path,
                      settings: FetchSettings, progress: bool,
                      size: int | None) -> FetchedCheckpoint:
    part = target.with_name(file + ".part")
    no_network = offline()
    failures: list[str] = []
    mismatches: list[str] = []
    oversize: list[str] = []
    for src in sources_for(file, urls):
        if no_network and src.remote:
            continue
        force = False
        while True:
            _claim_part(part, src)
            try:
                url, from_hub_cache = _transfer(src, part, settings, progress, size,
                                                no_network, force)
            except SizeLimitError as exc:
                _forget_part(part)
                oversize.append(str(exc))
                break
            except DownloadError as exc:
                failures.append(str(exc))
                if not part.exists():  # nothing to resume: no marker either
                    _forget_part(part)
                break
            actual = sha256_file(part)
            if actual.startswith(expected):
                os.replace(part, target)
                _part_source(part).unlink(missing_ok=True)
                record = record_verification(target, actual, source=src.kind, url=url)
                return FetchedCheckpoint(target, file, actual, record["size"], src.kind, url)
            _forget_part(part)  # never keep bytes that failed verification
            if from_hub_cache and not force and not no_network:
                # huggingface_hub's cached copy is damaged or replaced: download it again.
                print(f"rtmbench: {url} from huggingface_hub's cache has sha256 {actual}, not "
                      f"{expected}; downloading it again.", file=sys.stderr)
                force = True
                continue
            where = f"{url} (huggingface_hub's cache)" if from_hub_cache else url
            mismatches.append(f"{where} gave sha256 {actual}, expected {expected}")
            break
    others = f". Other sources failed: {'; '.join(failures)}" if failures else "."
    if mismatches:
        raise HashMismatchError(
            f"{file}: {'; '.join(mismatches + oversize)}. The file was deleted; nothing was "
            f"cached. The source serves a different or damaged file: use another mirror "
            f"(RTMBENCH_MIRROR){others}")
    if oversize:
        raise SizeLimitError(f"{file}: {'; '.join(oversize)} Nothing was cached{others}")
    if no_network:
        raise OfflineError(
            f"RTMBENCH_OFFLINE=1 and {file} is not in the cache. On a connected machine, "
            f"download {urls[0] if urls else file} and put it at {target} (or in a folder named by "
            f"RTMBENCH_MIRROR), then run again"
            + (f". Local sources tried: {'; '.join(failures)}" if failures else "."))
    raise DownloadError(
        f"could not fetch {file} from any source: {'; '.join(failures) or 'no sources listed'}. "
        f"Set RTMBENCH_MIRROR to a reachable base URL, a local folder or an hf://OWNER/REPO "
        f"holding {file}, or put the file at {target} yourself (its sha256 must start with "
        f"{expected[:8]}).")


def _lock(root: Path, file: str, settings: FetchSettings) -> FileLock:
    path = root / f"{file}.lock"
    refuse_link(path, "a lock file")
    lock = FileLock(str(path), timeout=settings.lock_timeout)
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            print(f"rtmbench: another process is fetching {file}; waiting for it.",
                  file=sys.stderr)
            try:
                lock.acquire()
            except Timeout:
                raise DownloadError(
                    f"waited {settings.lock_timeout:g}s for another process fetching {file} "
                    f"(lock {path}); if no such process runs, delete the lock file and try "
                    f"again.") from None
    except OSError as exc:  # filelock opens with O_NOFOLLOW: a link planted after our check
        refuse_link(path, "a lock file")
        raise not_writable(root, exc) from None
    return lock


def fetch_file(file: str, sha256: str, urls: list[str], *, cache: Path | None = None,
               progress: bool = True, settings: FetchSettings | None = None,
               size: int | None = None) -> FetchedCheckpoint:
    """The verified local copy of ``file`` (sha256 starting with ``sha256``, ``size`` bytes if
    given), fetched if needed."""
    if problem := file_name_problem(file):
        raise CheckpointError(f"refusing to fetch: {problem}.")
    root = ensure_cache(cache) if cache else cache_dir()
    settings = settings or FetchSettings.from_env()
    target = root / file
    expected = _expected_hash(root, file, sha256)
    if hit := _from_cache(target, expected):  # the common case: no lock, no hashing
        return hit
    refuse_link(root / "hashes.json.lock", "a lock file")  # used after the download
    lock = _lock(root, file, settings)
    try:
        if hit := _from_cache(target, expected):  # another process just finished it
            return hit
        try:
            return _fetch_into_cache(file, expected, urls, target, settings, progress, size)
        except OSError as exc:  # writing in the cache (reading a source is a DownloadError)
            if exc.errno in CACHE_WRITE_ERRNOS:
                raise not_writable(root, exc) from None
            raise
    finally:
        lock.release()


def choose_weights(model: ResolvedModel, weights_id: str | None) -> Weights:
    if weights_id is not None:
        weights = model.weights_by_id(weights_id)
        if weights.unavailable:
            others = ", ".join(w.id for w in model.weights if not w.unavailable)
            raise WeightsUnavailable(f"{model.name} weights {weights_id!r} are unavailable: "
                                  f"{weights.unavailable}. Choose another with --weights "
                                  f"({others}).")
        return weights
    default = model.default_weights_id()
    if default is None:
        raise WeightsUnavailable(f"{model.name} lists no available weights in the zoo.")
    return model.weights_by_id(default)


def fetch_weights(model: ResolvedModel, weights_id: str | None = None, *, progress: bool = True,
                  settings: FetchSettings | None = None) -> FetchedCheckpoint:
    """Fetch one zoo weights entry (default: the first that is not ``unavailable``)."""
    weights = choose_weights(model, weights_id)
    assert weights.file and weights.sha256  # the zoo schema guarantees both when available
    return fetch_file(weights.file, weights.sha256, weights.urls, progress=progress,
                      settings=settings, size=weights.size)
