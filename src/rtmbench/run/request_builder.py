"""The one way to make a measurement's request from what a user asked for: ``rtmbench latency``
and ``rtmbench export`` build theirs from their flags, the runner's latency check from a
suite's unit, both here, so that a flag and a suite field with the same meaning are checked
against the same bounds (:class:`rtmbench.spec.check_specs.LatencyProtocol`) and turned into
the same backend options.

Torch-free: the command line builds its request, and says what is wrong with it, before
anything heavy is imported. A value out of bounds is a :class:`RequestError` (an
:class:`~rtmbench.errors.InputError`) naming the field; the command line names its flag
instead (:meth:`RequestError.naming`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import ValidationError

from ..errors import InputError, Outcome
from ..measure.requests import (
    BackendOptions,
    ExportRequest,
    LatencyRequest,
    Protocol,
    Remeasure,
)
from ..spec.check_specs import LatencyProtocol


class RequestError(InputError):
    """Values out of their bounds: ``problems`` is one ``(field, value, why)`` per value."""

    outcome: ClassVar[Outcome] = "failed"  # the request must be fixed

    def __init__(self, problems: list[tuple[str, Any, str]]) -> None:
        self.problems = problems
        super().__init__(self.naming({}))

    def __reduce__(self):  # pickled (a worker process's error) with its problems, not text
        return type(self), (self.problems,)

    def naming(self, names: Mapping[str, str]) -> str:
        """The message with each field called by ``names`` (e.g. the command line's flags)."""
        return "; ".join(f"{names.get(field, field)} {value}: {why}"
                         for field, value, why in self.problems) + "."


def _protocol(fields: Mapping[str, Any]) -> LatencyProtocol:
    """``fields`` (LatencyProtocol's: min_iterations, min_duration_s, warmup_s, input_size,
    batch) checked against the suites' bounds."""
    try:
        return LatencyProtocol(**fields)
    except ValidationError as exc:
        raise RequestError([(str(e["loc"][0]) if e["loc"] else "value", e["input"], e["msg"])
                            for e in exc.errors()]) from None


def backend_options(backend: str, *, layout: str | None = None, provider: str | None = None,
                    typing: str | None = None, compile_mode: str = "auto") -> BackendOptions:
    """The options that apply to ``backend``, the others dropped: ``layout`` (torch and
    torch-compile), ``provider`` (ONNX Runtime's execution provider), ``typing`` (TensorRT,
    and ONNX Runtime's TensorRT provider), ``compile_mode`` (torch-compile: inductor's mode,
    ``auto`` by default); None: the backend's default."""
    return BackendOptions(
        layout=layout if backend in ("torch", "torch-compile") else None,
        provider=provider if backend == "onnxruntime" else None,
        typing=typing if backend in ("tensorrt", "onnxruntime") else None,
        compile_mode=compile_mode if backend == "torch-compile" else None)


def latency_request(backend: str, device: str, precision: str, *,
                    protocol: Mapping[str, Any] | None = None,
                    options: BackendOptions | None = None, include_transfer: bool = False,
                    reference: bool = True, remeasure: Remeasure | None = None
                    ) -> LatencyRequest:
    """The request of one latency measurement.

    ``protocol``: any of :class:`~rtmbench.spec.check_specs.LatencyProtocol`'s fields
    (``min_iterations``, ``min_duration_s``, ``warmup_s``, ``input_size`` as width and height,
    default the zoo's, and ``batch``), checked against its bounds; the others take its
    defaults. ``options``: :func:`backend_options`. ``remeasure``: how a contended timing is
    taken again (default :class:`~rtmbench.measure.requests.Remeasure`'s: twice at most,
    within as long as the first timing took)."""
    checked = _protocol(protocol or {})
    size = checked.input_size
    return LatencyRequest(
        backend=backend, device=device, precision=precision,
        input_hw=(size[1], size[0]) if size else None, batch=checked.batch,
        protocol=Protocol(warmup_s=checked.warmup_s, min_iterations=checked.min_iterations,
                          min_duration_s=checked.min_duration_s),
        include_transfer=include_transfer, reference=reference,
        options=options or backend_options(backend),
        remeasure=remeasure if remeasure is not None else Remeasure())


def export_request(input_size: tuple[int, int], batch: int = 1, *, dynamic_batch: bool = False,
                   opset: int = 17, fold_bn: bool = True, precision: str = "fp32",
                   fp16_converter: str = "auto") -> ExportRequest:
    """The request of one ONNX export: ``input_size`` (width, height) and ``batch`` within the
    latency units' bounds (the artifacts they time are these exports), the rest as
    :class:`~rtmbench.measure.requests.ExportRequest` says."""
    checked = _protocol({"input_size": input_size, "batch": batch})
    width, height = checked.input_size
    return ExportRequest(input_hw=(height, width), batch=checked.batch,
                         dynamic_batch=dynamic_batch, opset=opset, fold_bn=fold_bn,
                         precision=precision, fp16_converter=fp16_converter)


__all__ = ["RequestError", "backend_options", "export_request", "latency_request"]
