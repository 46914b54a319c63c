"""What can go wrong with a checkpoint, each as an error a user can act on."""

from __future__ import annotations

from ..errors import RtmbenchError


class CheckpointError(RtmbenchError):
    """Base of every checkpoint problem: fetching, verifying or loading."""


class DownloadError(CheckpointError):
    """No source could deliver the file (unreachable, 404, stalled, interrupted)."""


class HashMismatchError(CheckpointError):
    """A delivered file's sha256 differs from the one the zoo (or an earlier pull) recorded."""


class OfflineError(CheckpointError):
    """RTMBENCH_OFFLINE=1 and the file is not in the cache nor in a local folder."""


class UnsafeCheckpointError(CheckpointError):
    """Unpickling the file would need objects outside the allow-list (it could run code)."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint's tensors do not fit the model (another size, architecture or layout)."""
