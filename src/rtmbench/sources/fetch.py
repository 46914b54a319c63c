"""Fetch a file into the cache, verified by sha256, from the first source that works: the zoo's
checkpoints (:func:`fetch_weights`) and the archives of its data sets
(:mod:`rtmbench.sources.datasets`) alike.

Sources, in order: the mirrors (``RTMBENCH_MIRROR`` for checkpoints, ``RTMBENCH_COCO_MIRROR``
for COCO: base URLs, local folders or ``hf://`` repositories holding the same file names;
several may be given, comma-separated), then the zoo entry's ``urls`` (file URLs, base URLs,
local folders, ``hf://`` repositories). The hash makes any source trustworthy, and a file
already in the cache is hashed again before it is used (:mod:`rtmbench.sources.cache`).
``RTMBENCH_OFFLINE=1`` skips every network source (an ``hf://`` source then only looks in
huggingface_hub's cache).

The cache never follows a link: ``<file>``, its parts, their source markers and ``<file>.lock``
must be regular files (or absent), parts are opened with ``O_NOFOLLOW``, and a zoo file name is
a plain name (:func:`rtmbench.spec.zoo.file_name_problem`), so nothing is written outside the
cache.

**Partial downloads are kept per source.** An HTTP(S) source writes ``<file>.part.<tag>``
(``<tag>``: the first 12 hex digits of the sha256 of the source's URL) and names itself in
``<file>.part.<tag>.source`` before the first byte. A part is only ever resumed from the source
that wrote it, and it survives until that source finishes the file, the file is verified from
any source (then every part of it is deleted), or the user deletes it; bytes that fail
verification are deleted and blamed on the source that sent them. A part from a local folder
or huggingface_hub's cache is a copy that cannot be resumed, so it is deleted when the copy
fails. Disk use: each part is cut off at the file's size cap (the zoo's ``size``, else
``RTMBENCH_MAX_DOWNLOAD_BYTES``), so one file's parts take at most (number of HTTP sources
tried) x that cap, and nothing once the file is verified; a write that finds the disk full
deletes the part it was writing. A part left by older versions (``<file>.part`` with
``<file>.part.source``) is adopted by the source it names.

Lock files (``<file>.lock``, ``hashes.json.lock``) stay in the cache on purpose: they are
``flock`` locks, which the kernel releases when the holding process ends, however it ends, so
a lock file left by a killed process never blocks a later fetch; there is one per file name,
reused by every fetch of that file (they never pile up), and deleting them is only safe while
no fetch runs (a waiting process would lock the deleted file while a new one locks another).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from filelock import FileLock, Timeout

from ..errors import InputError
from ..fileio import write_bytes_atomic
from ..spec.hfref import is_hf, parse_hf
from ..spec.settings import load_settings
from ..spec.zoo import file_name_problem
from .cache import (
    cache_dir,
    ensure_cache,
    hash_cached,
    known_full_hash,
    not_writable,
    open_nofollow,
    record_verification,
    recorded_provenance,
    refuse_link,
    sidecar_path,
)
from .download import FetchSettings, copy_local, download
from .fetch_errors import (
    CheckpointError,
    DownloadError,
    HashMismatchError,
    OfflineError,
    SizeLimitError,
    WeightsUnavailable,
)

if TYPE_CHECKING:
    from ..spec.zoo import ResolvedModel, Weights

PART_TAG_DIGITS = 12
SOURCE_SUFFIX = ".source"
LEGACY_PART, LEGACY_SOURCE = ".part", ".part.source"  # one part per file, before per-source
CACHE_WRITE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.ENOTDIR,
                      getattr(errno, "EDQUOT", errno.ENOSPC)}
CHECKPOINT_GUIDE = 'docs/reproducing.md, section "Checkpoints and mirrors"'


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


FetchedFile = FetchedCheckpoint  # what fetch_file gives for any file, checkpoint or archive


@dataclass(frozen=True)
class Mirrors:
    """Where a kind of file is mirrored: the variable that lists the mirrors (read now unless
    ``entries`` are given), what the files are, and the guide that explains mirrors."""

    variable: str = "RTMBENCH_MIRROR"
    entries: tuple[str, ...] | None = None
    guide: str = CHECKPOINT_GUIDE

    def listed(self) -> list[str]:
        if self.entries is not None:
            return list(self.entries)
        settings = load_settings()
        return settings.coco_mirrors if self.variable == "RTMBENCH_COCO_MIRROR" \
            else settings.mirrors


CHECKPOINT_MIRRORS = Mirrors()


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


def sentences(items: Sequence[str]) -> str:
    """Messages joined with '; ', without the full stops some of them end with (a list of
    them is one sentence: no '..' where the caller's own text follows)."""
    return "; ".join(item.rstrip().rstrip(".") for item in items)


def _locate(entry: str, file: str, kind: str, variable: str) -> Source:
    """One ``urls``/mirror entry -> where ``file`` is: a file URL stays, a base URL, a folder or
    an hf:// repository (folder) gets the file name appended."""
    entry = entry.strip()
    if is_hf(entry):
        try:
            ref = parse_hf(entry, file)
        except ValueError as exc:
            raise InputError(f"source {entry!r} ({variable} or the zoo's urls): "
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


def sources_for(file: str, urls: list[str], mirrors: Mirrors = CHECKPOINT_MIRRORS
                ) -> list[Source]:
    found = [_locate(m, file, "mirror", mirrors.variable) for m in mirrors.listed()]
    found += [_locate(u, file, "origin", mirrors.variable) for u in urls]
    return list(dict.fromkeys(found))  # drop repeats, keep order


def _expected_hash(root: Path, file: str, zoo_sha256: str) -> str:
    """The zoo's hash (8 or 64 hex digits), upgraded to all 64 once a pull has recorded them."""
    full = known_full_hash(root, file)
    return full if full and full.startswith(zoo_sha256) else zoo_sha256


def _from_cache(target: Path, expected: str) -> FetchedCheckpoint | None:
    """The cached file, hashed now (never taken on a sidecar's word), or None if absent."""
    try:
        actual, size = hash_cached(target, "a cached file")
    except FileNotFoundError:
        return None
    if not actual.startswith(expected):
        raise HashMismatchError(
            f"the cached file {target} has sha256 {actual}, but {expected} is expected: it "
            f"is not the published file (it was damaged or changed since it was verified). "
            f"Delete it and fetch again.")
    record = recorded_provenance(target, actual)
    if record is None:  # copied in by hand, or its sidecar is stale: describe it afresh
        record = record_verification(target, actual, source="cache", url=None, size=size)
    return FetchedCheckpoint(target, target.name, actual, size, "cache", record.get("url"))


# ---------------------------------------------------------------- partial downloads

def part_for(target: Path, location: str) -> Path:
    """The partial download of ``target`` from the source at ``location``."""
    tag = hashlib.sha256(location.encode("utf-8")).hexdigest()[:PART_TAG_DIGITS]
    return target.with_name(f"{target.name}.part.{tag}")


def _marker(part: Path) -> Path:
    return part.with_name(part.name + SOURCE_SUFFIX)


def parts_of(target: Path) -> list[Path]:
    """Every per-source part of ``target`` in the cache."""
    pattern = re.compile(re.escape(target.name) + rf"\.part\.[0-9a-f]{{{PART_TAG_DIGITS}}}")
    try:
        names = os.listdir(target.parent)
    except OSError:
        return []
    return sorted(target.parent / n for n in names if pattern.fullmatch(n))


def _owner(marker: Path) -> str | None:
    """The source a part's marker names (read without following a link), or None."""
    try:
        fd = open_nofollow(marker, "a partial download's source")
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        text = f.read(8192).decode("utf-8", "replace").strip()
    return text or None


def _adopt_legacy_part(target: Path) -> None:
    """``<file>.part`` from an older rtmbench becomes the part of the source its marker names
    (so that source resumes it); without a marker its source is unknown and it is deleted."""
    legacy, marker = (target.with_name(target.name + s) for s in (LEGACY_PART, LEGACY_SOURCE))
    refuse_link(legacy, "a partial download")
    refuse_link(marker, "a partial download's source")
    if legacy.exists():
        owner = _owner(marker)
        if owner and not (part := part_for(target, owner)).exists():
            refuse_link(part, "a partial download")
            write_bytes_atomic(_marker(part), owner.encode("utf-8"))
            os.replace(legacy, part)
        legacy.unlink(missing_ok=True)
    marker.unlink(missing_ok=True)


def _claim_part(part: Path, src: Source) -> None:
    """Make ``part`` this source's: a part there whose marker names another source (a tag
    collision, an unknown origin) is deleted, never resumed from here; then the part's source
    is written down before any byte."""
    marker = _marker(part)
    refuse_link(part, "a partial download")
    refuse_link(marker, "a partial download's source")
    if part.exists():
        if _owner(marker) == src.location:
            return
        part.unlink()
    write_bytes_atomic(marker, src.location.encode("utf-8"))


def _forget_part(part: Path) -> None:
    part.unlink(missing_ok=True)
    _marker(part).unlink(missing_ok=True)


def _kept_parts(target: Path) -> str:
    """The parts kept for resuming, with their sources, for the final message."""
    kept = []
    for part in parts_of(target):
        try:
            size = os.stat(part, follow_symlinks=False).st_size
        except OSError:
            continue
        kept.append(f"{part.name} ({size:,} bytes from {_owner(_marker(part)) or '?'})")
    return (f" Partial downloads kept for resuming (each from its own source; delete them to "
            f"start over): {', '.join(kept)}.") if kept else ""


# ---------------------------------------------------------------- fetching

def _transfer(src: Source, part: Path, file: str, settings: FetchSettings, progress: bool,
              size: int | None, no_network: bool, force: bool) -> tuple[str, bool]:
    """Bytes of ``src`` into ``part``: (the URL they really came from, whether they were
    served from huggingface_hub's cache rather than downloaded now)."""
    if src.hub:
        from .hf import fetch_hf

        got = fetch_hf(parse_hf(src.location, file), file, part, settings, offline=no_network,
                       force=force, progress=progress, size=size)
        return got.url, got.downloaded == 0
    if src.remote:
        download(src.location, part, settings, desc=file, progress=progress, size=size)
        return src.location, False
    path = Path(src.location)
    if not path.is_file():
        raise DownloadError(f"{path}: no such file")
    copy_local(path, part, desc=path.name, progress=progress, size=size, settings=settings)
    return src.location, False


def _verify_into_place(part: Path, target: Path, expected: str) -> tuple[str, int] | str:
    """Move ``part`` to ``target`` if its sha256 starts with ``expected``: (sha256, size);
    else its sha256 (and it is deleted)."""
    actual, size = hash_cached(part, "a partial download")
    if not actual.startswith(expected):
        _forget_part(part)  # never keep bytes that failed verification
        return actual
    os.replace(part, target)
    for other in parts_of(target):  # verified: no part of this file is needed any more
        _forget_part(other)
    _marker(part).unlink(missing_ok=True)
    return actual, size


def _fetch_into_cache(file: str, expected: str, urls: list[str], target: Path,
                      settings: FetchSettings, progress: bool, size: int | None,
                      mirrors: Mirrors) -> FetchedCheckpoint:
    no_network = offline()
    failures: list[str] = []
    mismatches: list[str] = []
    oversize: list[str] = []
    _adopt_legacy_part(target)
    for src in sources_for(file, urls, mirrors):
        if no_network and src.remote:
            continue
        part = part_for(target, src.location)
        force = False
        while True:
            _claim_part(part, src)
            try:
                url, from_hub_cache = _transfer(src, part, file, settings, progress, size,
                                                no_network, force)
            except SizeLimitError as exc:
                _forget_part(part)
                oversize.append(str(exc))
                break
            except DownloadError as exc:
                failures.append(str(exc))
                if not src.remote or not part.exists() or not part.stat().st_size:
                    _forget_part(part)  # nothing this source can resume
                break
            except BaseException:
                if not part.exists():  # deleted (a full disk, an oversize body): no marker
                    _marker(part).unlink(missing_ok=True)
                raise
            verified = _verify_into_place(part, target, expected)
            if isinstance(verified, tuple):
                actual, got_size = verified
                record_verification(target, actual, source=src.kind, url=url, size=got_size)
                return FetchedCheckpoint(target, file, actual, got_size, src.kind, url)
            if from_hub_cache and not force and not no_network:
                # huggingface_hub's cached copy is damaged or replaced: download it again.
                print(f"rtmbench: {url} from huggingface_hub's cache has sha256 {verified}, not "
                      f"{expected}; downloading it again.", file=sys.stderr)
                force = True
                continue
            where = f"{url} (huggingface_hub's cache)" if from_hub_cache else url
            mismatches.append(f"{where} gave sha256 {verified}, expected {expected}")
            break
    others = f" Other sources failed: {sentences(failures)}." if failures else ""
    guide = f" See {mirrors.guide}."
    if mismatches:
        raise HashMismatchError(
            f"{file}: {sentences(mismatches + oversize)}. The file was deleted; nothing was "
            f"cached. The source serves a different or damaged file: use another mirror "
            f"({mirrors.variable}).{others}{guide}")
    if oversize:
        raise SizeLimitError(f"{file}: {sentences(oversize)}. Nothing was cached.{others}"
                             f"{guide}")
    kept = _kept_parts(target)
    if no_network:
        raise OfflineError(
            f"RTMBENCH_OFFLINE=1 and {file} is not in the cache. On a connected machine, "
            f"download {urls[0] if urls else file} ({size_text(size)}sha256 {expected}) and "
            f"put it at {target}, or in a folder named by {mirrors.variable}, then run again."
            + (f" Local sources tried: {sentences(failures)}." if failures else "") + guide)
    raise DownloadError(
        f"could not fetch {file} from any source: "
        f"{sentences(failures) or 'no sources listed'}. Set {mirrors.variable} to a reachable "
        f"base URL, a local folder or an hf:// repository holding {file}, or put the file at "
        f"{target} yourself (its sha256 must "
        f"{'be' if len(expected) == 64 else 'start with'} {expected}).{kept}{guide}")


def size_text(size: int | None) -> str:
    return f"{size:,} bytes, " if size else ""


def lock_for(root: Path, file: str, settings: FetchSettings) -> FileLock:
    """The lock of ``<root>/<file>.lock``, held while ``file`` is fetched (or extracted)."""
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
               size: int | None = None, mirrors: Mirrors = CHECKPOINT_MIRRORS
               ) -> FetchedCheckpoint:
    """The verified local copy of ``file`` (sha256 starting with ``sha256``, ``size`` bytes if
    given) in ``cache`` (default: the rtmbench cache), fetched if needed from ``mirrors``,
    then ``urls``. A cached copy is hashed again before it is returned."""
    if problem := file_name_problem(file):
        raise CheckpointError(f"refusing to fetch: {problem}.")
    root = ensure_cache(cache) if cache else cache_dir()
    settings = settings or FetchSettings.from_env()
    target = root / file
    expected = _expected_hash(root, file, sha256)
    if hit := _from_cache(target, expected):  # the common case: no lock, one hash
        return hit
    refuse_link(root / "hashes.json.lock", "a lock file")  # used after the download
    refuse_link(sidecar_path(target), "a verification record")  # written after it
    lock = lock_for(root, file, settings)
    try:
        if hit := _from_cache(target, expected):  # another process just finished it
            return hit
        try:
            return _fetch_into_cache(file, expected, urls, target, settings, progress, size,
                                     mirrors)
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
