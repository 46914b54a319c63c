"""The local cache: where fetched files live, and what rtmbench remembers about them.

**Trust comes from a hash, never from a file in the cache.** Whoever can write a shared cache
can change a checkpoint in place and restore its size and mtime (``utime``), and can write any
sidecar next to it; a sidecar alone can therefore vouch for nothing. So:

- every cache hit is hashed again (:func:`rtmbench.sources.fetch.fetch_file`), and loading a
  checkpoint hashes the very bytes it unpickles and compares them with the zoo's hash
  (:func:`rtmbench.sources.load.load_checkpoint`): a file changed in place, replaced between
  the fetch and the load, or described by a planted sidecar is refused, and the sha256 that
  ``fetch --json`` and the records show is always the one just computed.
- What it costs: sha256 ran at 1.0-1.04 GB/s here (hashlib/OpenSSL 3.0 on this project's
  2-core Xeon VM, a 100 MiB file, 3 runs, other jobs running): the largest checkpoint, x
  (~380 MB), takes ~0.37 s per hash, ~0.75 s per build (fetch, then load), before an
  evaluation of minutes to hours; loading reads those bytes anyway.
- Not chosen: a sidecar authenticated with a per-user key kept outside the cache (an HMAC
  over the hash, inode and ctime, which ``utime`` cannot restore) would resist other users,
  but not a swap between the check and the load, and it adds a key to keep; hashing what is
  loaded closes both for well under a second.

Files kept here besides the fetched ones:

- ``<file>.verified.json``: provenance only (the source and URL the file came from, when). It
  is shown only when its sha256 equals the hash just computed; its hash is never believed.
- ``hashes.json``: the full 64-hex sha256 of every file verified here, which upgrades a zoo
  hash of 8 hex digits (OpenMMLab's file names) on later pulls. It can only make verification
  stricter: an entry is used only if it starts with the zoo's digits, and then the file must
  equal it; a forged entry can refuse a good file (delete ``hashes.json``), never accept a file
  that the zoo's digits alone would refuse.
- Neither is ever read through a symbolic link (``O_NOFOLLOW``): a link there is
  :class:`UnsafeCachePath`, like a link anywhere else in the cache.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from ..fileio import sha256_stream, write_json_atomic
from ..spec.settings import load_settings
from .fetch_errors import CacheNotWritable, DownloadError, UnsafeCachePath

SIDECAR_SUFFIX = ".verified.json"
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)
NONBLOCK = getattr(os, "O_NONBLOCK", 0)
MAX_JSON_BYTES = 16 << 20  # a bookkeeping file larger than this was not written by rtmbench
SPACE_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def not_writable(directory: Path, exc: OSError) -> CacheNotWritable:
    """The error for a cache rtmbench cannot create or write, saying what to do."""
    reason = exc.strerror or str(exc)
    if exc.errno in SPACE_ERRNOS:
        fix = "free some space there, or point RTMBENCH_CACHE at a disk with room"
    else:
        fix = ("set RTMBENCH_CACHE to a directory you can write (e.g. "
               "RTMBENCH_CACHE=$HOME/.cache/rtmbench), or make this one writable for you")
    return CacheNotWritable(f"the rtmbench cache {directory} cannot be written ({reason}"
                            f"{f': {exc.filename}' if exc.filename else ''}): {fix}.")


def ensure_cache(root: Path) -> Path:
    """Create ``root`` if needed; a CacheNotWritable naming it when that is not possible."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise not_writable(root, exc) from None
    if not root.is_dir():
        raise CacheNotWritable(f"the rtmbench cache {root} is not a directory: set "
                               f"RTMBENCH_CACHE to a directory you can write.")
    return root


def cache_dir() -> Path:
    """``RTMBENCH_CACHE``, default ``~/.cache/rtmbench``; created on first use."""
    return ensure_cache(load_settings().cache)


def refuse_link(path: Path, what: str) -> None:
    """UnsafeCachePath when ``path`` exists but is a symbolic link or not a regular file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        raise UnsafeCachePath(
            f"{path} ({what}) is {kind}: rtmbench never follows links or writes through them "
            f"in its cache (whoever can write a shared cache could point it at any file). "
            f"Nothing was written. Remove it (rm '{path}') and check who can write to "
            f"{path.parent}.")


def open_part(part: Path, *, append: bool) -> int:
    """Open ``part`` for writing without following a link, as a private regular file: a
    symbolic link, a hard link to another file or a non-file there is UnsafeCachePath, an
    unwritable cache CacheNotWritable."""
    refuse_link(part, "a partial download")
    # Never O_TRUNC: a hard link is only seen after opening, and must not be truncated.
    flags = os.O_WRONLY | os.O_CREAT | NOFOLLOW | CLOEXEC | (os.O_APPEND if append else 0)
    try:
        fd = os.open(part, flags, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            refuse_link(part, "a partial download")
        raise not_writable(part.parent, exc) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise UnsafeCachePath(
            f"{part} (a partial download) is {'a hard link' if st.st_nlink != 1 else 'special'}"
            f": writing it would change another file. Nothing was written. Remove it (rm "
            f"'{part}') and check who can write to {part.parent}.")
    if not append:
        os.ftruncate(fd, 0)
    return fd


def open_nofollow(path: Path, what: str) -> int:
    """``path`` opened for reading without following a link: a link or a non-file there is
    UnsafeCachePath (never opened: a FIFO would block); FileNotFoundError when absent."""
    refuse_link(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW | CLOEXEC | NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a link planted since the check
            refuse_link(path, what)
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        refuse_link(path, what)
        raise UnsafeCachePath(f"{path} ({what}) is not a regular file; remove it.")
    return fd


def hash_cached(path: Path, what: str) -> tuple[str, int]:
    """(sha256, size) of the cache file ``path``, read without following a link."""
    with os.fdopen(open_nofollow(path, what), "rb") as f:
        return sha256_stream(f)


def read_json(path: Path, what: str) -> Any:
    """A bookkeeping JSON file of the cache, read without following a link: None when it is
    absent, unreadable or not JSON (it is rewritten), UnsafeCachePath when it is a link."""
    try:
        fd = open_nofollow(path, what)
    except FileNotFoundError:
        return None
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_JSON_BYTES + 1)
    if len(data) > MAX_JSON_BYTES:
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def recorded_provenance(path: Path, sha256: str) -> dict[str, Any] | None:
    """Where ``path`` came from, from its sidecar, if the sidecar describes the bytes whose
    hash was just computed (``sha256``); its claims are never trusted otherwise."""
    record = read_json(sidecar_path(path), "a verification record")
    if not isinstance(record, dict) or record.get("sha256") != sha256:
        return None
    return record


def record_verification(path: Path, sha256: str, *, source: str, url: str | None,
                        size: int) -> dict:
    refuse_link(sidecar_path(path), "a verification record")
    record = {"file": path.name, "sha256": sha256, "size": size, "source": source, "url": url,
              "verified_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json_atomic(sidecar_path(path), record)
    remember_full_hash(path.parent, path.name, sha256)
    return record


def known_full_hash(root: Path, file: str) -> str | None:
    known = read_json(root / "hashes.json", "the cache's record of full hashes")
    value = known.get(file) if isinstance(known, dict) else None
    return value if isinstance(value, str) and len(value) == 64 else None


def remember_full_hash(root: Path, file: str, sha256: str) -> None:
    # Fetches of different files may update hashes.json at once: read-modify-write under a lock.
    path, lock = root / "hashes.json", root / "hashes.json.lock"
    refuse_link(lock, "a lock file")
    try:
        with FileLock(str(lock), timeout=60):
            known = read_json(path, "the cache's record of full hashes")
            known = known if isinstance(known, dict) else {}
            if known.get(file) != sha256:
                known[file] = sha256
                write_json_atomic(path, known)
    except Timeout:  # an OSError too (TimeoutError): busy, not unwritable
        raise DownloadError(f"another rtmbench process held {lock} for 60 s; wait for it to "
                            f"finish (or remove the lock if no rtmbench is running) and fetch "
                            f"again.") from None
    except OSError as exc:  # filelock refuses a link planted since the check (O_NOFOLLOW)
        refuse_link(lock, "a lock file")
        raise not_writable(root, exc) from None
