"""The local checkpoint cache: where files live, and what we remember about verifying them.

Next to each verified file sits ``<file>.verified.json`` with its full sha256, size and mtime:
while size and mtime are unchanged the file is trusted without hashing it again. ``hashes.json``
remembers the full sha256 of every file ever verified, so a later pull of the same file (from
any source, after the cache was cleared) is checked on all 64 hex digits, not on the 8 the
file name carries.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from filelock import FileLock

from ..fileio import sha256_file, write_json_atomic
from ..spec.settings import load_settings

SIDECAR_SUFFIX = ".verified.json"


def cache_dir() -> Path:
    """``RTMBENCH_CACHE``, default ``~/.cache/rtmbench``; created on first use."""
    root = load_settings().cache
    root.mkdir(parents=True, exist_ok=True)
    return root


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
    path = root / "hashes.json"
    with FileLock(str(root / "hashes.json.lock"), timeout=60):
        known = _read_json(path)
        known = known if isinstance(known, dict) else {}
        if known.get(file) != sha256:
            known[file] = sha256
            write_json_atomic(path, known)
