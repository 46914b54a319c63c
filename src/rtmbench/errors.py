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

import errno
import os
from typing import ClassVar, Literal

Outcome = Literal["failed", "not run"]


class RtmbenchError(Exception):
    """Base of every error that is the user's input or environment, not a bug of ours."""

    exit_code: ClassVar[int] = 2
    outcome: ClassVar[Outcome] = "failed"


class Failed(RtmbenchError):
    """What a command found is wrong: a failed unit, a regression, a missed claim. Its exit
    code (1) is what ``run``, ``gate`` and ``complexity`` return then."""

    outcome: ClassVar[Outcome] = "failed"
    exit_code: ClassVar[int] = 1


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


class OutputNotWritable(RtmbenchError):
    """rtmbench cannot write its results (a full disk, a quota, a read-only place): what was
    written before is kept; free space (or fix the place) and resume."""

    outcome: ClassVar[Outcome] = "failed"


# OSError numbers that mean "this machine cannot store the output", not a bug of ours.
STORAGE_ERRNOS = frozenset(getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EROFS", "EFBIG")
                           if hasattr(errno, name))


def storage_problem(exc: BaseException) -> str | None:
    """``"No space left on device: /path"`` when ``exc`` is a full disk, a quota or a
    read-only file system; None for any other error."""
    if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or os.strerror(exc.errno)}{where}"
    return None


class NonFiniteOutputs(RtmbenchError):
    """A network or engine gave NaN or infinite outputs (an FP16 overflow, broken weights, a
    wrong engine): nothing computed from them is a result. The unit is "failed"."""

    outcome: ClassVar[Outcome] = "failed"
    exit_code: ClassVar[int] = 1


class PackageBroken(RtmbenchError):
    """An optional package is installed here but importing it fails (a missing shared library,
    a damaged or mismatched installation): something is wrong, so the unit is "failed"."""

    outcome: ClassVar[Outcome] = "failed"
    exit_code: ClassVar[int] = 1


def _top(name: str) -> str:
    return name.partition(".")[0]


def _installed(top: str) -> bool:
    """Whether the top-level module ``top`` can be found (imported or not)."""
    import importlib.util

    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):  # a module in sys.modules without __spec__: it is there
        return True


def describe_installed(top: str) -> str:
    """``'onnxruntime 1.32.0 at /site-packages/onnxruntime'``: what is installed as ``top``."""
    import importlib.metadata
    import importlib.util

    try:
        dists = importlib.metadata.packages_distributions().get(top, [])
        versions = [f"{d} {importlib.metadata.version(d)}" for d in dict.fromkeys(dists)]
    except Exception:  # noqa: BLE001 - damaged metadata: the version is unknown, nothing more
        versions = []
    try:
        spec = importlib.util.find_spec(top)
        where = (spec.origin if spec and spec.origin not in (None, "namespace")
                 else ", ".join(spec.submodule_search_locations or []) if spec else "")
    except (ImportError, ValueError):
        where = ""
    what = ", ".join(versions) or f"{top} (version unknown)"
    return what + (f" at {where}" if where else "")


def _origin(exc: BaseException) -> str | None:
    """The module whose code raised ``exc``: the innermost frame outside the import system."""
    origin = None
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if not frame.f_code.co_filename.startswith("<"):  # <frozen importlib._bootstrap>
            origin = frame.f_globals.get("__name__")
        tb = tb.tb_next
    return origin


def import_problem(module: str, exc: ImportError, *, extra: str | None = None,
                   what: str = "this") -> BaseException:
    """What an ImportError met while importing ``module`` means, as the error to raise:

    - :class:`PackageMissing` ("not run"): a third-party package is not installed, ``module``
      itself or one that importing it needs (``ModuleNotFoundError.name``, and
      ``importlib.util.find_spec`` finds no such top-level module);
    - :class:`PackageBroken` ("failed"): the package is installed, but importing it failed
      (an ImportError raised inside it: a missing shared library, mismatched versions);
    - ``exc`` itself: an ImportError of rtmbench's own code, a bug (the runner records it as
      failed with its traceback; the command line shows the traceback).
    """
    name = getattr(exc, "name", None)
    if name and _top(name) == "rtmbench":
        return exc  # a module or a name of ours that does not exist
    hint = f" Install it with: pip install 'rtmbench[{extra}]'." if extra else ""
    if isinstance(exc, ModuleNotFoundError) and name and not _installed(_top(name)):
        if _top(name) == _top(module):
            return PackageMissing(f"{what} needs the Python package '{_top(name)}', which is "
                                  f"not installed here ({exc}).{hint}")
        return PackageMissing(f"{what} needs {module}, which needs the Python package "
                              f"'{_top(name)}': it is not installed here ({exc}). Install it "
                              f"(pip install {_top(name)}).")
    broken = _top(name) if name else _top(_origin(exc) or "")
    if not broken or broken == "rtmbench":
        return exc  # raised by rtmbench's own code
    return PackageBroken(
        f"{what} needs {module}; the package '{broken}' is installed "
        f"({describe_installed(broken)}) but importing it failed: {type(exc).__name__}: "
        f"{exc}. Repair that installation (a missing shared library, mismatched versions) "
        f"or uninstall it.{hint}")


def require(module: str, extra: str):
    """Import an optional dependency, or raise :class:`PackageMissing` saying how to get it
    (:class:`PackageBroken` when it is installed and its import fails; see
    :func:`import_problem`)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        problem = import_problem(module, exc, extra=extra)
        if problem is exc:
            raise
        raise problem from exc
