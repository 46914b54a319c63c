"""File primitives every module shares: hashing, atomic writes, durable appends.

Nothing a user ran may be lost or half-written: whole files are written to a temporary name in
the same directory and renamed over the target (``os.replace`` is atomic on POSIX), and
append-only files get each write as one ``O_APPEND`` call followed by ``fsync``.

Modes: a new file gets what ``open(path, "w")`` would give it (0o666 less the umask), so a
README or a shared cache stays readable to whoever could read it before; a file that is
replaced keeps its mode. (``tempfile.mkstemp`` would make every file 0o600.)
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any, BinaryIO

CHUNK = 1 << 20


def sha256_stream(f: BinaryIO) -> tuple[str, int]:
    """(sha256, number of bytes) of what is left to read in the binary file ``f``."""
    digest, size = hashlib.sha256(), 0
    while chunk := f.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as f:
        return sha256_stream(f)[0]


NEW_FILE_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                  | getattr(os, "O_CLOEXEC", 0))


def open_temp_beside(path: Path) -> tuple[int, Path]:
    """A new, empty file in ``path``'s directory, open for writing: ``(fd, its path)``.

    Created with ``O_EXCL`` (never an existing file, never through a symbolic link) and mode
    0o666, from which the kernel takes the umask, as for any file a program creates.
    """
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, NEW_FILE_FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file next to {path}")


def keep_mode(fd: int, path: Path) -> None:
    """Give the file open as ``fd`` the mode of ``path`` when ``path`` is a regular file that
    it is about to replace (a replaced file keeps its permissions)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISREG(st.st_mode):
        os.fchmod(fd, stat.S_IMODE(st.st_mode))


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` all at once: readers see the old file or the new, never half.
    A new file follows the umask; a replaced one keeps its mode."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = open_temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            keep_mode(f.fileno(), path)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
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
    make it durable before returning. Should the system write less than all of it, the rest
    is written at once; an error (a full disk) can leave a line cut short at the end of the
    file, which every reader of an append-only file here takes for an interrupted write."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # less the umask
    try:
        view = memoryview(data)
        while view:  # a short write (a disk filling up, a signal): the rest follows at once
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
