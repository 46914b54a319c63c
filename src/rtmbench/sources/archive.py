"""Extract the selected members of a verified zip archive, refusing anything unsafe.

Python's :mod:`zipfile` reads the archive; its own ``extract()`` is not used: it silently
*rewrites* unsafe names (drops ``..``, strips a leading ``/``) instead of refusing them, writes
a symbolic-link entry as a file holding the link's target, and has no limits. Here, before a
single byte is written, every entry of the archive's directory is checked and the archive is
refused (:class:`DatasetArchiveError`, "failed") if any entry

- is absolute (``/x``, ``\\x``, ``C:x``), has a ``..`` segment, a backslash or a NUL;
- is a symbolic link, a device, a FIFO or a socket (by its Unix mode), or is encrypted;

and if it has more than :data:`MAX_MEMBERS` entries, if the selected members would extract to
more than :func:`extracted_cap` bytes, or if a member larger than 1 MiB claims a compression
ratio above :data:`MAX_RATIO` (a zip bomb). Only members matching the zoo's ``extract``
patterns are written (``*`` never crosses a ``/``), each into a new file (``O_EXCL``,
``O_NOFOLLOW``, mode 0o666 less the umask) under a folder the caller has just created; a
member the zoo gives a sha256 for is hashed as it is written and must match. The archive is
hashed again from the very file descriptor it is read through, so a file swapped in the cache
after it was verified is not extracted. zipfile itself checks each member's CRC-32 and stops
at its declared size.

No well-kept library offers this (refuse-on-unsafe with caps and per-member hashes);
``shutil.unpack_archive`` and ``tarfile``'s filters do not apply to zip.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ..fileio import sha256_stream
from ..spec.zoo import Archive, member_matches
from .cache import CLOEXEC, NOFOLLOW, SPACE_ERRNOS, not_writable, open_nofollow
from .fetch_errors import CacheNotWritable, DatasetArchiveError

MAX_MEMBERS = 200_000      # entries in one archive (val2017.zip: 5,001)
MAX_RATIO = 200            # uncompressed / compressed, members over RATIO_FLOOR (JSON: ~5-10)
RATIO_FLOOR = 1 << 20
COPY_CHUNK = 1 << 20
_DRIVE = re.compile(r"[A-Za-z]:")


def extracted_cap(archive: Archive) -> int:
    """The most bytes one archive's selected members may extract to: twice the archive, plus
    64 MiB (COCO's images are stored almost uncompressed; its annotations compress ~6x, and
    only 25 MB of them are extracted)."""
    return 2 * archive.size + (64 << 20)


@dataclass(frozen=True)
class Extracted:
    files: int
    bytes: int
    member_sha256: dict[str, str]  # the members the zoo gives a hash for, as verified


def entry_problem(info: zipfile.ZipInfo) -> str | None:
    """Why extracting ``info`` (even unselected) makes the archive unsafe; None if it is fine."""
    name = info.orig_filename
    if "\x00" in name:
        return "has a NUL character in its name"
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "is an absolute path"
    if "\\" in name:
        return "has a backslash in its name (a Windows path separator)"
    if ".." in name.split("/"):
        return "has a '..' segment (it would land outside the target folder)"
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if info.create_system == 3 and kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return ("is a symbolic link" if kind == stat.S_IFLNK else
                f"is a special file (mode {oct(mode)})")
    if info.flag_bits & 0x1:
        return "is encrypted"
    return None


def _refuse(where: str, why: str) -> DatasetArchiveError:
    return DatasetArchiveError(f"{where}: {why}. Nothing was extracted. The archive is not the "
                               f"published one (its hash was checked against the zoo's): delete "
                               f"it and check the zoo's data set entry and its sources.")


def select(zf: zipfile.ZipFile, archive: Archive, where: str) -> list[zipfile.ZipInfo]:
    """The members to extract, after checking every entry and the caps."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise _refuse(where, f"it has {len(infos):,} entries, more than {MAX_MEMBERS:,}")
    chosen: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        if problem := entry_problem(info):
            raise _refuse(where, f"entry {info.orig_filename!r} {problem}")
        if info.is_dir() or not any(member_matches(info.filename, p) for p in archive.extract):
            continue
        if info.filename in chosen:
            raise _refuse(where, f"entry {info.filename!r} appears twice")
        if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(
                info.compress_size, 1):
            raise _refuse(where, f"entry {info.filename!r} would expand {info.compress_size:,} "
                                 f"bytes to {info.file_size:,} (more than {MAX_RATIO}x)")
        chosen[info.filename] = info
        total += info.file_size
    cap = extracted_cap(archive)
    if total > cap:
        raise _refuse(where, f"its selected members would extract to {total:,} bytes, more than "
                             f"{cap:,} (twice the archive plus 64 MiB)")
    missing = sorted(set(archive.members) - set(chosen))
    if missing:
        raise _refuse(where, f"it lacks {', '.join(missing)}, which the zoo gives a sha256 for")
    if not chosen:
        raise _refuse(where, f"no entry matches {', '.join(archive.extract)}")
    return list(chosen.values())


def _verified_handle(path: Path, archive: Archive):
    """``path`` opened without following a link and hashed through that handle: the bytes
    extracted are the bytes verified."""
    handle = os.fdopen(open_nofollow(path, "a data set archive"), "rb")
    actual, _ = sha256_stream(handle)
    if actual != archive.sha256:
        handle.close()
        raise DatasetArchiveError(
            f"{path} has sha256 {actual}, but the zoo gives {archive.sha256}: it changed since "
            f"it was verified. Nothing was extracted; delete it and fetch again.")
    handle.seek(0)
    return handle


def _make_parents(staging: Path, name: str) -> Path:
    """The destination of member ``name`` under ``staging``, its folders made (never through
    a link: ``mkdir`` fails on anything already there that is not a folder we made)."""
    folder = staging
    *dirs, base = name.split("/")
    for part in dirs:
        folder = folder / part
        try:
            os.mkdir(folder)  # 0o777 less the umask
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(folder).st_mode):
                raise
    return folder / base


def _write_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, want: str | None,
                  where: str, bar: tqdm) -> str:
    digest = hashlib.sha256()
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | CLOEXEC, 0o666)
    written = 0
    with os.fdopen(fd, "wb") as out, zf.open(info) as src:
        while chunk := src.read(COPY_CHUNK):
            written += len(chunk)
            if written > info.file_size:  # zipfile stops at the declared size; belt and braces
                raise _refuse(where, f"entry {info.filename!r} holds more than it declares")
            if want:
                digest.update(chunk)
            out.write(chunk)
            bar.update(len(chunk))
    actual = digest.hexdigest() if want else ""
    if want and actual != want:
        raise DatasetArchiveError(
            f"{where}: member {info.filename} has sha256 {actual}, but the zoo gives {want}. "
            f"Nothing was kept. The archive matched its own hash, so the zoo's two hashes "
            f"disagree: check the zoo's data set entry.")
    return actual


def extract(path: Path, archive: Archive, staging: Path, *, progress: bool = True
            ) -> Extracted:
    """Extract ``archive``'s selected members from the cached file ``path`` into the new
    folder ``staging`` (the caller removes it on any error)."""
    where = f"{path.name} ({path})"
    with _verified_handle(path, archive) as handle:
        try:
            zf = zipfile.ZipFile(handle)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise _refuse(where, f"it is not a zip archive rtmbench can read ({exc})") from None
        with zf:
            chosen = select(zf, archive, where)
            total = sum(i.file_size for i in chosen)
            hashes: dict[str, str] = {}
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=f"extracting {path.name}", file=sys.stderr, disable=not progress,
                      dynamic_ncols=True) as bar:
                for info in chosen:
                    want = archive.members.get(info.filename)
                    try:
                        dest = _make_parents(staging, info.filename)
                        got = _write_member(zf, info, dest, want, where, bar)
                    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                        raise _refuse(where, f"entry {info.filename!r} is damaged ({exc})"
                                      ) from None
                    except (FileExistsError, NotADirectoryError):
                        raise _refuse(where, f"entry {info.filename!r} collides with a file "
                                             f"another archive of the data set extracted"
                                      ) from None
                    if want:
                        hashes[info.filename] = got
    return Extracted(len(chosen), total, hashes)


def write_error(folder: Path, exc: OSError, staging: Path) -> CacheNotWritable:
    """A write into ``staging`` failed: on a full disk, say that the half-extracted folder
    was deleted, where, and what to do."""
    if exc.errno not in SPACE_ERRNOS:
        return not_writable(folder, exc)
    return CacheNotWritable(
        f"the disk holding {folder} is full ({exc.strerror or exc}) while extracting: the "
        f"half-extracted folder {staging.name} was deleted to free its space. Free some space "
        f"there (df -h '{folder}'; COCO val2017 needs about 0.8 GB besides its archives), or "
        f"extract elsewhere (--coco-dir DIR, or RTMBENCH_CACHE on a disk with room), then fetch "
        f"again.")
