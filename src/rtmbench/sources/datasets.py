"""Fetch a zoo data set (COCO val2017): its archives like checkpoints, then a safe, atomic
extraction of the members the zoo selects.

1. Each archive the zoo declares (file name, size, full sha256, urls) is fetched by
   :func:`rtmbench.sources.fetch.fetch_file` into ``<RTMBENCH_CACHE>/datasets/``: cache,
   per-source resume, progress, proxies, CA bundles, the deadline, the exact size cap, locks.
   Sources: ``RTMBENCH_COCO_MIRROR`` (folders, base URLs, ``hf://datasets/OWNER/REPO...``),
   then the zoo's urls. A cached archive is hashed again before use.
2. Only the members matching the zoo's ``extract`` patterns are extracted
   (:mod:`rtmbench.sources.archive`: unsafe entries refuse the archive; caps on members,
   size and compression ratio; a member the zoo gives a hash for must match it), into a new
   temporary sibling of the target, ``.<name>.extract-<random>``.
3. The completion marker (:data:`rtmbench.spec.fetched_datasets.COMPLETE_MARKER`, naming the
   archives' and members' hashes) is written into it last, and the folder is renamed into
   place. A kill at any moment leaves either no target or a complete one; the next fetch
   deletes leftover temporary folders (under the data set's lock) and extracts again from the
   cached archives. A complete target whose marker names other archive hashes than the zoo's
   is replaced the same way.

The target is ``<RTMBENCH_CACHE>/datasets/<name>/`` unless the caller names another folder
(``rtmbench fetch --coco --coco-dir DIR``); readers find the default one by
:func:`rtmbench.spec.fetched_datasets.fetched_dataset`. The archives stay in the cache (a
later fetch re-extracts from them without downloading); deleting them is safe.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..fileio import write_json_atomic
from ..spec.fetched_datasets import COMPLETE_MARKER, dataset_dir, datasets_root, is_complete
from ..spec.settings import load_settings
from ..spec.zoo import Dataset
from .archive import extract, write_error
from .cache import ensure_cache, read_json, refuse_link
from .download import FetchSettings
from .fetch import FetchedFile, Mirrors, fetch_file, lock_for, size_text
from .fetch_errors import (
    DatasetArchiveError,
    DatasetUnavailable,
    DownloadError,
    HashMismatchError,
    SizeLimitError,
)

COCO_GUIDE = 'docs/reproducing.md, section "Box AP on COCO val2017"'
COCO_MIRRORS = Mirrors(variable="RTMBENCH_COCO_MIRROR", guide=COCO_GUIDE)
STAGING, OLD = ".extract-", ".old-"


@dataclass(frozen=True)
class FetchedDataset:
    name: str
    path: Path
    source: str                  # "cache": complete already; "extracted": extracted now
    archives: list[FetchedFile] = field(default_factory=list)  # empty for "cache"
    member_sha256: dict[str, str] = field(default_factory=dict)
    files: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.name, "path": str(self.path), "source": self.source,
                "archives": [a.provenance() for a in self.archives],
                "members": self.member_sha256, "files": self.files}


def _marker_record(name: str, dataset: Dataset, members: dict[str, str], files: int) -> dict:
    return {"dataset": name, "archives": {a.file: a.sha256 for a in dataset.archives},
            "members": members, "files": files,
            "extracted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _current(target: Path, dataset: Dataset) -> dict | None:
    """The marker of a complete ``target`` made from the zoo's archives, or None."""
    if not is_complete(target):
        return None
    record = read_json(target / COMPLETE_MARKER, "a data set's completion marker")
    wanted = {a.file: a.sha256 for a in dataset.archives}
    return record if isinstance(record, dict) and record.get("archives") == wanted else None


def _check_target(target: Path) -> None:
    """A target that is a link, a file, or a folder of someone else's is an InputError before
    anything is downloaded."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a folder"
        raise InputError(f"{target} is {kind}: give a new or empty folder to extract into (the "
                         f"folder itself, not a link to it).")
    if not is_complete(target) and any(target.iterdir()):
        raise InputError(f"{target} exists and is not a data set rtmbench fetched (it has no "
                         f"{COMPLETE_MARKER}, or is half made by hand): move it away, or give a "
                         f"new or empty folder (--coco-dir DIR).")


def _remove_leftovers(target: Path) -> None:
    """Temporary folders a killed fetch left beside ``target`` (we hold its lock)."""
    prefix = f".{target.name}"
    for entry in target.parent.iterdir():
        rest = entry.name[len(prefix):] if entry.name.startswith(prefix) else ""
        if rest.startswith((STAGING, OLD)) and not entry.is_symlink() and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)


def _offline_help(name: str, missing: list[tuple[Any, str]], root: Path, variable: str) -> str:
    files = "; ".join(f"{a.file} ({size_text(a.size)}sha256 {a.sha256}) from {a.urls[0]}"
                      for a, _ in missing)
    return (f"RTMBENCH_OFFLINE=1 and {name} is not fetched here. On a connected machine, "
            f"download {files}, and put {'them' if len(missing) > 1 else 'it'} in {root} (or "
            f"in a folder named by {variable}), then run `rtmbench fetch --coco` again: nothing "
            f"is downloaded, the files are verified and extracted.")


def _fetch_archives(name: str, dataset: Dataset, root: Path, settings: FetchSettings,
                    progress: bool, mirrors: Mirrors) -> list[FetchedFile]:
    fetched, missing = [], []
    for archive in dataset.archives:
        try:
            fetched.append(fetch_file(archive.file, archive.sha256, archive.urls, cache=root,
                                      progress=progress, settings=settings, size=archive.size,
                                      mirrors=mirrors))
        except (HashMismatchError, SizeLimitError) as exc:  # it arrived, and is not the file
            raise DatasetArchiveError(f"{name}: {exc}") from None
        except DownloadError as exc:  # OfflineError too: not at hand; the others may be
            missing.append((archive, str(exc)))
    if missing and load_settings().offline:
        raise DatasetUnavailable(_offline_help(name, missing, root, mirrors.variable))
    if missing:
        raise DatasetUnavailable(f"{name} could not be fetched: "
                                 + " ".join(error for _, error in missing))
    return fetched


def _install(staging: Path, target: Path) -> None:
    """Rename the complete ``staging`` folder to ``target``: an empty folder there is replaced,
    an outdated fetched one is moved aside first and deleted after."""
    old = None
    if target.exists():
        if is_complete(target):
            old = target.with_name(f".{target.name}{OLD}{secrets.token_hex(4)}")
            os.rename(target, old)
        else:
            os.rmdir(target)  # empty (checked before): nothing of the user's is lost
    os.rename(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def fetch_dataset(dataset: Dataset, name: str, *, target: str | Path | None = None,
                  progress: bool = True, settings: FetchSettings | None = None,
                  mirrors: Mirrors = COCO_MIRRORS) -> FetchedDataset:
    """The complete data set ``name`` (declared by ``dataset``) in ``target`` (default
    ``<RTMBENCH_CACHE>/datasets/<name>``): already there, or fetched and extracted now."""
    settings = settings or FetchSettings.from_env()
    root = ensure_cache(datasets_root())
    target = Path(target).expanduser().absolute() if target else dataset_dir(name)
    _check_target(target)
    if (record := _current(target, dataset)) is not None:  # the common case: nothing to do
        return FetchedDataset(name, target, "cache", files=record.get("files", 0))
    ensure_cache(target.parent)
    refuse_link(root / f"{name}.lock", "a lock file")
    lock = lock_for(root, name, settings)  # one extraction of a data set at a time
    try:
        if (record := _current(target, dataset)) is not None:  # another process finished it
            return FetchedDataset(name, target, "cache", files=record.get("files", 0))
        _check_target(target)
        _remove_leftovers(target)
        fetched = _fetch_archives(name, dataset, root, settings, progress, mirrors)
        staging = target.with_name(f".{target.name}{STAGING}{secrets.token_hex(4)}")
        try:
            os.mkdir(staging)  # 0o777 less the umask, like every folder a program makes
            members, files = {}, 0
            for archive, got in zip(dataset.archives, fetched):
                done = extract(got.path, archive, staging, progress=progress)
                members.update(done.member_sha256)
                files += done.files
            write_json_atomic(staging / COMPLETE_MARKER,
                              _marker_record(name, dataset, members, files))
            _install(staging, target)
        except OSError as exc:  # a full disk, a folder turned read-only, an I/O error
            shutil.rmtree(staging, ignore_errors=True)
            raise write_error(target.parent, exc, staging) from None
        except BaseException:  # a refused archive, Ctrl-C, SIGTERM: nothing half-made stays
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return FetchedDataset(name, target, "extracted", fetched, members, files)
    finally:
        lock.release()
