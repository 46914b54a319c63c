"""The local checkpoint cache: where files live, and what we remember about verifying them.

Next to each verified file sits ``<file>.verified.json`` with its full sha256, size and mtime:
while size and mtime are unchanged the file is trusted without hashing it again. ``hashes.json``
remembers the full sha256 of every file ever verified, so a later pull of the same file (from
any source, after the cache was cleared) is checked on all 64 hex digits, not on the 8 the
file name carries.
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

from ..fileio import sha256_file, write_json_atomic
from ..spec.settings import load_settings
from .errors import CacheNotWritable, DownloadError, UnsafeCachePath

SIDECAR_SUFFIX = ".verified.json"
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def not_writable(directory: Path, exc: OSError) -> CacheNotWritable:
    """The error for a cache rtmbench cannot create or write, saying what to do."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        fix = "free some space there, or point RTMBENCH_CACHE at a disk with room"
    else:
        fix = ("set RTMBENCH_CACHE to a directory you can write (e.g. "
               "RTMBENCH_CACHE=$HOME/.cache/rtmbench), or make this one writable for you")
    return CacheNotWritable(f"the checkpoint cache {directory} cannot be written ({reason}"
                            f"{f': {exc.filename}' if exc.filename else ''}): {fix}.")


def ensure_cache(root: Path) -> Path:
    """Create ``root`` if needed; a CacheNotWritable naming it when that is not possible."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise not_writable(root, exc) from None
    if not root.is_dir():
        raise CacheNotWritable(f"the checkpoint cache {root} is not a directory: set "
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


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def recorded_verification(path: Path) -> dict[str, Any] | None:
    """The sidecar of ``path`` if it still describes the file on disk (same size and mtime)."""
    record = _read_json(sidecar_path(path))
    if not isinstance(record, dict):
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    if record.get("size") != st.st_size or record.get("mtime_ns") != st.st_mtime_ns:
        return None
    return record


def record_verification(path: Path, sha256: str, *, source: str, url: str | None) -> dict:
    st = path.stat()
    record = {"file": path.name, "sha256": sha256, "size": st.st_size,
              "mtime_ns": st.st_mtime_ns, "source": source, "url": url,
              "verified_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json_atomic(sidecar_path(path), record)
    remember_full_hash(path.parent, path.name, sha256)
    return record


def file_sha256(path: Path) -> str:
    """Full sha256 of ``path``, from its sidecar when that is still valid, else by hashing."""
    record = recorded_verification(path)
    if record and isinstance(record.get("sha256"), str) and len(record["sha256"]) == 64:
        return record["sha256"]
    return sha256_file(path)


def known_full_hash(root: Path, file: str) -> str | None:
    known = _read_json(root / "hashes.json")
    value = known.get(file) if isinstance(known, dict) else None
    return value if isinstance(value, str) and len(value) == 64 else None


def remember_full_hash(root: Path, file: str, sha256: str) -> None:
    # Fetches of different files may update hashes.json at once: read-modify-write under a lock.
    path, lock = root / "hashes.json", root / "hashes.json.lock"
    refuse_link(lock, "a lock file")
    try:
        with FileLock(str(lock), timeout=60):
            known = _read_json(path)
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
