"""One small interface for every inference engine the latency check times.

``Backend.prepare(model, example, device, precision, options)`` turns a PyTorch module and an
example input into a :class:`Runner` (``options``, :class:`PrepareOptions`: whether the timed
call copies the input to the device, where files go, an ONNX file to use instead of exporting):
``runner.run()`` performs one inference on the prepared input, ``runner.timer`` times one call
with the synchronisation that engine needs (CUDA events on the engine's stream, or a wall clock
around a blocking call), ``runner.synchronize()`` waits for all queued work, and
``runner.details`` says what really ran (layout, providers, engine). ``runner.infer(x)`` gives
the artifact's outputs for another input ``x`` of the prepared shape (host FP32 tensors, in the
exported graph's output order ``cls_8.. box_32``): the accuracy check compares them with the
PyTorch reference on the same inputs.

A backend that cannot run here says why: ``unavailable(device, precision)`` returns the exact
reason (no GPU, package missing, provider missing) and ``prepare`` raises
:class:`BackendUnavailable` for reasons found only while preparing.
"""

from __future__ import annotations

import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from torch import Tensor, nn

from ...errors import MissingPrerequisite, Outcome, PackageMissing, RtmbenchError, require
from ..timing import Timer


class BackendUnavailable(MissingPrerequisite):
    """This backend cannot run in this environment (no GPU, package or provider missing);
    ``str(exc)`` is the exact reason. The unit is "not run"."""

    outcome: ClassVar[Outcome] = "not run"


class BackendError(RtmbenchError):
    """The backend is here but broke: it could not parse or build the model, or crashed while
    running it. The unit is "failed"."""

    outcome: ClassVar[Outcome] = "failed"


@dataclass
class Runner:
    run: Callable[[], object]
    timer: Timer
    details: dict = field(default_factory=dict)
    synchronize: Callable[[], None] = lambda: None
    # The latest outputs, where the engine exposes them (correctness checks of e.g. graphs).
    outputs: Callable[[], object] | None = None
    # The outputs for a given input of the prepared shape: host FP32 tensors in the exported
    # graph's order (cls_8, cls_16, cls_32, box_8, box_16, box_32); every backend gives it.
    infer: Callable[[Tensor], list[Tensor]] | None = None


@dataclass(frozen=True)
class PrepareOptions:
    """How :meth:`Backend.prepare` builds, beyond the model, input, device and precision.

    ``include_transfer``: each timed call copies the input from (pinned) host memory to the
    device first (GPU backends; the CPU has nothing to copy). ``workdir``: where the backend
    writes its files (ONNX export, engine caches); None: a new temporary folder.
    ``onnx_path``: an ONNX file to build from instead of exporting the model (the ONNX
    backends)."""

    include_transfer: bool = False
    workdir: Path | None = None
    onnx_path: Path | None = None

    def folder(self, backend: str) -> Path:
        """``workdir``, or a new temporary folder named for ``backend``."""
        return Path(self.workdir or tempfile.mkdtemp(prefix=f"rtmbench-{backend}-"))


class Backend(ABC):
    name: str

    @abstractmethod
    def unavailable(self, device: str, precision: str) -> str | None:
        """``None`` if this backend can run on ``device`` at ``precision``; else why not."""

    @abstractmethod
    def prepare(self, model: nn.Module, example: Tensor, device: str, precision: str,
                options: PrepareOptions | None = None) -> Runner:
        """Build the engine for ``model`` and return a runner bound to ``example``
        (``options``: :class:`PrepareOptions`, default all off)."""

    def autotuned(self, device: str, precision: str) -> bool:
        """Whether :meth:`prepare` picks kernels by timing them (cuDNN's benchmark mode,
        inductor's autotuning): such an artifact built while other processes took the machine
        may be a worse one, so a contended measurement prepares it again before it is timed
        again. A deterministic artifact (the same kernels whatever the load) is only timed
        again. Default: deterministic."""
        return False


def cuda_unavailable_reason() -> str | None:
    """Why torch cannot use a CUDA GPU here, or ``None`` when it can."""
    import torch

    if not torch.backends.cuda.is_built():
        return f"the installed torch {torch.__version__} was built without CUDA"
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible (torch.cuda.is_available() is False)"
    return None


def import_package(module: str, extra: str | None = None) -> tuple[object | None, str | None]:
    """``(module, None)``, or ``(None, why)`` when it (or a package it needs) is not installed.
    Installed and failing to import (a missing shared library, a broken install) raises
    :class:`rtmbench.errors.PackageBroken`: that unit failed, it is not "not run"."""
    try:
        return require(module, extra or "gpu"), None
    except PackageMissing as exc:
        return None, str(exc)
