"""What one measurement is asked to do, as one typed value: a latency request and an export
request. Plain data, no torch: the command line and the runner build them (through
:mod:`rtmbench.run.request_builder`, which checks them against the suites' bounds) before anything
heavy is imported, and the measuring functions take them whole.

- :class:`Protocol`: how long one timing runs and what counts as contention
  (:mod:`.timing` runs it);
- :class:`Remeasure`: how a contended timing is taken again (:mod:`.latency`);
- :class:`BackendOptions`: what a backend is built with (provider, typing, compile mode,
  layout);
- :class:`LatencyRequest`: one latency unit: backend, device, precision, input, batch, the
  three above, and whether the input copy and the reference convolution are timed;
- :class:`ExportRequest`: one ONNX export (:mod:`.export`).

Messages name the fields (``device``, ``opset``), never a command-line flag: the command line
names its own flags when it prints them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError

# The inference backends, devices and precisions a latency unit or an artifact may name
# (rtmbench.measure.backends re-exports them).
BACKENDS = ("torch", "onnxruntime", "tensorrt", "torch-compile", "openvino")
DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "fp16")
ONNX_PRECISIONS = ("fp32", "fp16")
FP16_CONVERTERS = ("auto", "onnxconverter-common", "modelopt")


def check_names(backend: str, device: str, precision: str) -> None:
    """An :class:`InputError` naming the field when a backend, device or precision is unknown."""
    for value, allowed, what in ((backend, BACKENDS, "backend"), (device, DEVICES, "device"),
                                 (precision, PRECISIONS, "precision")):
        if value not in allowed:
            raise InputError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}.")


@dataclass(frozen=True)
class Protocol:
    """The timing protocol (:mod:`.timing`'s module docstring says what each field does)."""

    warmup_s: float = 1.0
    # A few calls even when one already exceeds warmup_s: the first (cold) call is never typical.
    min_warmup_iterations: int = 3
    min_iterations: int = 50
    min_duration_s: float = 3.0
    outlier_factor: float = 3.0
    max_remeasure: int = 20
    # Upper bound so a very slow model still ends: never more than this many kept samples.
    max_iterations: int = 100_000
    # Machine-level contention: other processes used more than this many cores on average.
    busy_other_cores: float = 0.25
    # Sustained contention, once established, ends the timing: when other processes kept more
    # than busy_other_cores busy over the first contended_after_s seconds of timing (and at
    # least contended_min_iterations samples), the run is flagged and stops there. A flagged
    # run is never judged, so timing on would only multiply a busy machine's time. None: off.
    contended_after_s: float | None = 1.0
    contended_min_iterations: int = 5


@dataclass(frozen=True)
class Remeasure:
    """How a contended measurement is taken again (suites: ``latency.remeasure_contended``,
    ``latency.remeasure_budget_s``).

    Only the timing is repeated: the artifact that was timed is timed again, and prepared again
    first only when its build picks kernels by timing them (:meth:`Backend.autotuned`); its
    accuracy is checked once, after the last timing, on the artifact that timing measured.
    Attempts stop when ``attempts`` more were made, when the next one would take the unit past
    ``budget_s`` seconds of re-measuring (default: as long as the first timing took plus
    ``quiet_s``, room for one attempt like the first, so a unit never takes more than about
    twice its quiet time), or when the machine stays busy: before
    each further attempt the load is watched for ``quiet_s`` seconds, and if other processes
    still keep more than the protocol's ``busy_other_cores`` busy the contention is sustained
    and waiting for it would only multiply the run's time. The record then says it was
    measured under contention (not judged, shown ⚠️) and why the attempts stopped."""

    attempts: int = 2
    budget_s: float | None = None
    quiet_s: float = 1.0


NO_REMEASURE = Remeasure(attempts=0)

# BackendOptions' fields -> the backend constructors' keyword arguments
_KWARGS = {"layout": "layout", "provider": "provider", "typing": "typing",
           "compile_mode": "mode"}


@dataclass(frozen=True)
class BackendOptions:
    """What a backend is built with, beyond its device and precision; None: its default.

    ``layout``: torch and torch-compile's memory layout; ``provider``: ONNX Runtime's execution
    provider; ``typing``: TensorRT's (and ONNX Runtime's TensorRT provider's) weak or strong
    typing; ``compile_mode``: torch-compile's inductor mode. Which of them apply to which
    backend is decided in one place, :func:`rtmbench.run.request_builder.backend_options`.
    ``extra``: other keyword arguments of the backend's constructor, for benchmarks' variants
    (``fold_bn``, ``session_config``, OpenVINO's ``config``) and tests' fakes (``buffers``);
    nothing a user sets."""

    layout: str | None = None
    provider: str | None = None
    typing: str | None = None
    compile_mode: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any] | None) -> BackendOptions:
        """The options of a backend constructor's keyword arguments (``mode`` is
        ``compile_mode``; the rest go to ``extra``)."""
        kwargs = dict(kwargs or {})
        named = {name: kwargs.pop(key) for name, key in _KWARGS.items() if key in kwargs}
        return cls(**named, extra=kwargs)

    def kwargs(self) -> dict[str, Any]:
        """The backend constructor's keyword arguments (:func:`get_backend`'s ``options``)."""
        named = {key: getattr(self, name) for name, key in _KWARGS.items()
                 if getattr(self, name) is not None}
        return named | dict(self.extra)


@dataclass(frozen=True)
class LatencyRequest:
    """One latency measurement (:func:`rtmbench.measure.latency.measure_latency`).

    ``input_hw``: (height, width); None: the zoo's input size. ``include_transfer``: the
    host-to-device input copy is timed too. ``reference``: the reference convolution is
    measured beside the model on the same backend (the achieved-peak ratio)."""

    backend: str
    device: str = "cpu"
    precision: str = "fp32"
    input_hw: tuple[int, int] | None = None
    batch: int = 1
    protocol: Protocol = field(default_factory=Protocol)
    include_transfer: bool = False
    reference: bool = True
    options: BackendOptions = field(default_factory=BackendOptions)
    remeasure: Remeasure = NO_REMEASURE

    def __post_init__(self) -> None:
        check_names(self.backend, self.device, self.precision)
        if self.input_hw is not None:
            object.__setattr__(self, "input_hw", (int(self.input_hw[0]), int(self.input_hw[1])))

    @property
    def label(self) -> str:
        return f"{self.backend}/{self.device}/{self.precision}"


@dataclass(frozen=True)
class ExportRequest:
    """One ONNX export (:func:`rtmbench.measure.export.export_onnx`): ``input_hw`` (height,
    width) and ``batch`` of the input it is made for (a dynamic batch axis with
    ``dynamic_batch``), the ONNX ``opset``, BatchNorm folded into the convolutions
    (``fold_bn``), ``precision`` fp32, or fp16 (FP16 weights and activations, FP32 input and
    outputs) converted by ``fp16_converter``."""

    input_hw: tuple[int, int] = (640, 640)
    batch: int = 1
    dynamic_batch: bool = False
    opset: int = 17
    fold_bn: bool = True
    precision: str = "fp32"
    fp16_converter: str = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_hw", (int(self.input_hw[0]), int(self.input_hw[1])))
        for value, allowed, what in ((self.precision, ONNX_PRECISIONS, "ONNX precision"),
                                     (self.fp16_converter, FP16_CONVERTERS, "FP16 converter")):
            if value not in allowed:
                raise InputError(f"unknown {what} {value!r}; use one of {', '.join(allowed)}.")


__all__ = ["BACKENDS", "DEVICES", "PRECISIONS", "ONNX_PRECISIONS", "FP16_CONVERTERS",
           "BackendOptions", "ExportRequest", "LatencyRequest", "NO_REMEASURE", "Protocol",
           "Remeasure", "check_names"]
