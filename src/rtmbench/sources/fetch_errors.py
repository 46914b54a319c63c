"""What can go wrong with a fetched file (a checkpoint, a data set's archive), each as an
error a user can act on.

Each class says what a check records when it escapes (see :mod:`rtmbench.errors`): weights or
data no source can deliver are a missing prerequisite ("not run"); a file that arrives but is
not the published one, is unsafe to unpickle or to extract, or does not fit the model is a
failure.
"""

from __future__ import annotations

from typing import ClassVar

from ..errors import DatasetError, DatasetMissing, MissingPrerequisite, Outcome, RtmbenchError


class CheckpointError(RtmbenchError):
    """Base of every checkpoint problem: fetching, verifying or loading."""

    outcome: ClassVar[Outcome] = "failed"


class WeightsUnavailable(MissingPrerequisite, CheckpointError):
    """The zoo publishes no such weights (e.g. RTMDet-x in MMYOLO's format)."""

    outcome: ClassVar[Outcome] = "not run"


class DownloadError(MissingPrerequisite, CheckpointError):
    """No source could deliver the file (unreachable, 404, stalled, interrupted)."""

    outcome: ClassVar[Outcome] = "not run"


class OfflineError(DownloadError):
    """RTMBENCH_OFFLINE=1 and the file is not in the cache nor in a local folder."""

    outcome: ClassVar[Outcome] = "not run"


class HashMismatchError(CheckpointError):
    """A delivered file's sha256 differs from the one the zoo (or an earlier pull) recorded."""

    outcome: ClassVar[Outcome] = "failed"


class UnsafeCheckpointError(CheckpointError):
    """Unpickling the file would need objects outside the allow-list (it could run code)."""

    outcome: ClassVar[Outcome] = "failed"


class CheckpointMismatchError(CheckpointError):
    """The checkpoint's tensors do not fit the model (another size, architecture or layout)."""

    outcome: ClassVar[Outcome] = "failed"


class SizeLimitError(CheckpointError):
    """A source sent (or announced) more bytes than the file can have: the zoo's ``size``, or
    ``RTMBENCH_MAX_DOWNLOAD_BYTES`` when the zoo gives none. The download is cut off as soon as
    the limit is passed, never completed first. "failed", like a hash mismatch: the source
    serves something that is not the published file (or the limit is set too low)."""

    outcome: ClassVar[Outcome] = "failed"


class CacheNotWritable(CheckpointError):
    """The checkpoint cache cannot be created or written (read-only, another user's, a path
    through a regular file, a full disk).

    "failed", not "not run": nothing is missing from the machine that a check could do
    without; the user's configuration points at a place rtmbench cannot use, and every unit
    needing weights would be skipped silently if this were a missing prerequisite. The message
    names the directory and the fix (``RTMBENCH_CACHE=...`` a writable directory)."""

    outcome: ClassVar[Outcome] = "failed"


class UnsafeCachePath(CheckpointError):
    """A path rtmbench writes in the cache (``<file>.part``, ``<file>.lock``, the file itself)
    is a symbolic link or not a regular file. rtmbench never follows links there: whoever can
    write a shared cache could otherwise make another user's fetch write anywhere. "failed":
    someone must look at the cache."""

    outcome: ClassVar[Outcome] = "failed"


class DatasetArchiveError(DatasetError):
    """A data set's archive arrived but cannot be used: its sha256 (or an extracted member's)
    is not the zoo's, a source sent more than its size, an entry is unsafe (an absolute path,
    '..', a link, a device), or it passes the extraction caps (member count, extracted size,
    compression ratio). Nothing of it is extracted. "failed"; ``rtmbench fetch`` exits 2, as
    for a checkpoint whose hash does not match (a bad file)."""

    outcome: ClassVar[Outcome] = "failed"
    exit_code: ClassVar[int] = 2


class DatasetUnavailable(DatasetMissing):
    """No source could deliver a data set's archive (unreachable, offline and not at hand):
    "not run" (exit 3); the message says which files to put where."""

    outcome: ClassVar[Outcome] = "not run"
