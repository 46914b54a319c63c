"""Inference engines behind one interface: ``torch``, ``onnxruntime``, ``tensorrt``,
``torch-compile``, ``openvino``."""

from __future__ import annotations

from ...errors import InputError
from ..requests import BACKENDS, DEVICES, PRECISIONS
from .base import (
    Backend,
    BackendError,
    BackendUnavailable,
    PrepareOptions,
    Runner,
)


def get_backend(name: str, **options) -> Backend:
    """The backend called ``name``; ``options`` go to its constructor (e.g. layout)."""
    if name == "torch":
        from .torch_backend import TorchBackend

        return TorchBackend(**options)
    if name == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(**options)
    if name == "tensorrt":
        from .tensorrt_backend import TensorRTBackend

        return TensorRTBackend(**options)
    if name == "torch-compile":
        from .compile_backend import CompileBackend

        return CompileBackend(**options)
    if name == "openvino":
        from .openvino_backend import OpenVINOBackend

        return OpenVINOBackend(**options)
    raise InputError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}.")


__all__ = ["BACKENDS", "DEVICES", "PRECISIONS", "Backend", "BackendError", "BackendUnavailable",
           "PrepareOptions", "Runner", "get_backend"]

from ..._aliases import renamed  # noqa: E402

# Renamed modules, still importable under their old names (rtmbench._aliases).
renamed("rtmbench.measure.backends.onednn", "rtmbench.measure.onednn_fusion")
