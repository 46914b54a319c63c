"""File primitives every module shares: hashing, atomic writes, durable appends.

Nothing a user ran may be lost or half-written: whole files are written to a temporary name in
the same directory and renamed over the target (``os.replace`` is atomic on POSIX), and
append-only files get each write as one ``O_APPEND`` call followed by ``fsync``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` all at once: readers see the old file or the new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, data: Any) -> Path:
    return write_bytes_atomic(path, json.dumps(data).encode("utf-8"))


def write_if_changed(path: str | Path, data: bytes) -> Path:
    """Atomic write, skipped when the bytes are already there (keeps mtimes of unchanged files)."""
    path = Path(path)
    if path.exists() and path.read_bytes() == data:
        return path
    return write_bytes_atomic(path, data)


def append_durable(path: str | Path, data: bytes) -> None:
    """Append ``data`` in one O_APPEND write (never interleaved with another writer's) and
    make it durable before returning."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
