"""Errors a user can act on. The CLI prints them as one paragraph, never as a traceback.

Every error class declares, in its own body, what a check records when it escapes a unit
(``outcome``):

- ``"not run"``: a prerequisite is missing here (no data set, no GPU, an optional package not
  installed, weights that no source can deliver). Nothing was judged; the gate does not fail.
- ``"failed"``: something is wrong (a checkpoint whose hash does not match, an unsafe pickle, a
  broken export, a corrupt data set, a backend that crashed, an evaluation directory holding
  other settings). The gate always fails on it.

``tests/test_errors.py`` walks every subclass and checks that each one declares it.
"""

from __future__ import annotations

from typing import ClassVar, Literal

Outcome = Literal["failed", "not run"]


class RtmbenchError(Exception):
    """Base of every error that is the user's input or environment, not a bug of ours."""

    exit_code: ClassVar[int] = 2
    outcome: ClassVar[Outcome] = "failed"


class MissingPrerequisite(RtmbenchError):
    """Something the unit needs is absent on this machine; the unit is "not run"."""

    outcome: ClassVar[Outcome] = "not run"
    exit_code: ClassVar[int] = 3


class InputError(RtmbenchError):
    """A zoo, suite, results or other input file that does not parse into its schema."""

    outcome: ClassVar[Outcome] = "failed"


class DatasetError(RtmbenchError):
    """A data set (COCO annotations, images, detections) that exists but is not usable."""

    outcome: ClassVar[Outcome] = "failed"


class DatasetMissing(MissingPrerequisite, DatasetError):
    """No data set was given, or nothing is at the given place."""

    outcome: ClassVar[Outcome] = "not run"


class PackageMissing(MissingPrerequisite):
    """An optional Python package a command needs is not installed."""

    outcome: ClassVar[Outcome] = "not run"


class DeviceMissing(MissingPrerequisite):
    """The unit needs a device (a CUDA GPU) this machine does not have."""

    outcome: ClassVar[Outcome] = "not run"


class NonFiniteOutputs(RtmbenchError):
    """A network or engine gave NaN or infinite outputs (an FP16 overflow, broken weights, a
    wrong engine): nothing computed from them is a result. The unit is "failed"."""

    outcome: ClassVar[Outcome] = "failed"
    exit_code: ClassVar[int] = 1


def require(module: str, extra: str):
    """Import an optional dependency, or raise :class:`PackageMissing` saying how to get it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PackageMissing(
            f"this needs the Python package '{module}', which cannot be imported here ({exc}). "
            f"Install it with: pip install 'rtmbench[{extra}]'.") from exc
