"""What one measurement is asked to do, as one typed value. Plain data, no torch: the command
line can build and check a request before anything heavy is imported, and the measuring
functions take it whole.

- :class:`ExportRequest`: one ONNX export (:mod:`.export`).

Messages name the fields (``device``, ``opset``), never a command-line flag: the command line
names its own flags when it prints them.
"""

from __future__ import annotations

from dataclasses import dataclass

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
           "ExportRequest", "check_names"]
