"""Fetch a zoo checkpoint into the cache, verified by sha256, from the first source that works.

Sources, in order: ``RTMBENCH_MIRROR`` (a base URL or a local folder holding the same file
names; several may be given, comma-separated), then the zoo entry's ``urls`` (file URLs, base
URLs, or local folders). The hash makes any source trustworthy. ``RTMBENCH_OFFLINE=1`` skips
every network source.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from filelock import FileLock, Timeout

from ..fileio import sha256_file
from ..spec.settings import load_settings
from .cache import cache_dir, known_full_hash, record_verification, recorded_verification
from .download import FetchSettings, copy_local, download
from .errors import (
    DownloadError,
    HashMismatchError,
    OfflineError,
    WeightsUnavailable,
)

if TYPE_CHECKING:
    from ..spec.zoo import ResolvedModel, Weights


@dataclass(frozen=True)
class FetchedCheckpoint:
    path: Path
    file: str
    sha256: str          # all 64 hex digits
    size: int
    source: str          # "cache" | "mirror" | "origin" | "local"
    url: str | None      # where the bytes came from (for "cache": where they first came from)

    def provenance(self) -> dict[str, Any]:
        return {"file": self.file, "url": self.url, "sha256": self.sha256, "size": self.size,
                "source": self.source}


@dataclass(frozen=True)
class Source:
    kind: str        # "mirror" | "origin" | "local"
    location: str    # an http(s) URL of the file, or a local path of the file

    @property
    def remote(self) -> bool:
        return self.location.startswith(("http://", "https://"))


def offline() -> bool:
    return load_settings().offline


def _locate(entry: str, file: str, kind: str) -> Source:
    """One ``urls``/mirror entry -> where ``file`` is: a file URL stays, a base URL or a folder
    gets the file name appended."""
    entry = entry.strip()
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


def _transfer(src: Source, part: Path, settings: FetchSettings, progress: bool) -> None:
    if src.remote:
        download(src.location, part, settings, desc=part.name.removesuffix(".part"),
                 progress=progress)
        return
    path = Path(src.location)
    if not path.is_file():
        raise DownloadError(f"{path}: no such file")
    copy_local(path, part, desc=path.name, progress=progress)


def _fetch_into_cache(file: str, expected: str, urls: list[str], target: Path,
                      settings: FetchSettings, progress: bool) -> FetchedCheckpoint:
    part = target.with_name(file + ".part")
    no_network = offline()
    failures: list[str] = []
    mismatches: list[str] = []
    for src in sources_for(file, urls):
        if no_network and src.remote:
            continue
        try:
            _transfer(src, part, settings, progress)
        except DownloadError as exc:
            failures.append(str(exc))
            continue
        actual = sha256_file(part)
        if not actual.startswith(expected):
            part.unlink(missing_ok=True)  # never keep bytes that failed verification
            mismatches.append(f"{src.location} gave sha256 {actual}, expected {expected}")
            continue
        os.replace(part, target)
        record = record_verification(target, actual, source=src.kind, url=src.location)
        return FetchedCheckpoint(target, file, actual, record["size"], src.kind, src.location)
    if mismatches:
        raise HashMismatchError(
            f"{file}: {'; '.join(mismatches)}. The file was deleted; nothing was cached. The "
            f"source serves a different or damaged file: use another mirror (RTMBENCH_MIRROR)"
            + (f". Other sources failed: {'; '.join(failures)}" if failures else "."))
    if no_network:
        raise OfflineError(
            f"RTMBENCH_OFFLINE=1 and {file} is not in the cache. On a connected machine, "
            f"download {urls[0] if urls else file} and put it at {target} (or in a folder named by "
            f"RTMBENCH_MIRROR), then run again"
            + (f". Local sources tried: {'; '.join(failures)}" if failures else "."))
    raise DownloadError(
        f"could not fetch {file} from any source: {'; '.join(failures) or 'no sources listed'}. "
        f"Set RTMBENCH_MIRROR to a reachable base URL or a local folder holding {file}, or put "
        f"the file at {target} yourself (its sha256 must start with {expected[:8]}).")


def _lock(root: Path, file: str, settings: FetchSettings) -> FileLock:
    lock = FileLock(str(root / f"{file}.lock"), timeout=settings.lock_timeout)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"rtmbench: another process is fetching {file}; waiting for it.", file=sys.stderr)
        try:
            lock.acquire()
        except Timeout:
            raise DownloadError(
                f"waited {settings.lock_timeout:g}s for another process fetching {file} "
                f"(lock {root / (file + '.lock')}); if no such process runs, delete the lock "
                f"file and try again.") from None
    return lock


def fetch_file(file: str, sha256: str, urls: list[str], *, cache: Path | None = None,
               progress: bool = True, settings: FetchSettings | None = None) -> FetchedCheckpoint:
    """The verified local copy of ``file`` (sha256 starting with ``sha256``), fetched if needed."""
    root = cache or cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    settings = settings or FetchSettings.from_env()
    target = root / file
    expected = _expected_hash(root, file, sha256)
    if hit := _from_cache(target, expected):  # the common case: no lock, no hashing
        return hit
    lock = _lock(root, file, settings)
    try:
        if hit := _from_cache(target, expected):  # another process just finished it
            return hit
        return _fetch_into_cache(file, expected, urls, target, settings, progress)
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
                      settings=settings)
