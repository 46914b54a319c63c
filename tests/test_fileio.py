from __future__ import annotations

import hashlib
import os
import stat

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


def test_new_files_follow_the_umask_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        written = write_bytes_atomic(tmp_path / "README.md", b"table")
        appended = tmp_path / "run.jsonl"
        append_durable(appended, b"{}\n")
        os.umask(0o002)
        shared = write_bytes_atomic(tmp_path / "hashes.json", b"{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(written.stat().st_mode) == 0o644
    assert stat.S_IMODE(appended.stat().st_mode) == 0o644
    assert stat.S_IMODE(shared.stat().st_mode) == 0o664


def test_replaced_files_keep_their_mode(tmp_path):
    target = tmp_path / "README.md"
    target.write_bytes(b"old")
    target.chmod(0o640)
    old = os.umask(0o077)  # would give 0o600 to a new file: the old mode must win
    try:
        write_bytes_atomic(target, b"new")
        write_if_changed(target, b"newer")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"newer"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_atomic_write_replaces_a_symlink_instead_of_writing_through_it(tmp_path):
    outside = tmp_path / "outside"
    outside.write_bytes(b"precious")
    link = tmp_path / "cache" / "hashes.json"
    link.parent.mkdir()
    link.symlink_to(outside)
    write_bytes_atomic(link, b"{}")
    assert outside.read_bytes() == b"precious" and not link.is_symlink()
