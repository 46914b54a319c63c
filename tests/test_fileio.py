from __future__ import annotations

import hashlib
import os

from rtmbench.fileio import append_durable, sha256_file, write_bytes_atomic, write_if_changed


def test_atomic_write_creates_parents_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a" / "b" / "file.bin"
    write_bytes_atomic(target, b"one")
    write_bytes_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]


def test_write_if_changed_keeps_an_identical_file_untouched(tmp_path):
    target = write_bytes_atomic(tmp_path / "r.md", b"same")
    os.utime(target, ns=(1, 1))
    write_if_changed(target, b"same")
    assert target.stat().st_mtime_ns == 1
    write_if_changed(target, b"new")
    assert target.read_bytes() == b"new" and target.stat().st_mtime_ns != 1


def test_append_durable_and_sha256(tmp_path):
    path = tmp_path / "log.jsonl"
    append_durable(path, b"a\n")
    append_durable(path, b"b\n")
    assert path.read_bytes() == b"a\nb\n"
    assert sha256_file(path) == hashlib.sha256(b"a\nb\n").hexdigest()
