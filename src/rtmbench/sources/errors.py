"""What can go wrong with a checkpoint, each as an error a user can act on.

Each class says what a check records when it escapes (see :mod:`rtmbench.errors`): weights no
source can deliver are a missing prerequisite ("not run"); a file that arrives but is not the
published one, is unsafe to unpickle or does not fit the model is a failure.
"""

from __future__ import annotations

from typing import ClassVar

from ..errors import MissingPrerequisite, Outcome, RtmbenchError


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
