"""Host-memory stand-ins for a GPU's buffers and streams, so that the TensorRT backend's binding
and enqueue path runs against the TensorRT fakes on a CPU. A FAKE: nothing timed with it is a
GPU measurement."""

from __future__ import annotations

from types import SimpleNamespace

from rtmbench.measure.backends.tensorrt_backend import CudaBuffers
from rtmbench.measure.timing import Timer


class HostBuffers(CudaBuffers):
    device = "cpu"

    def stream(self):
        return SimpleNamespace(synchronize=lambda: None, cuda_stream=0)

    def handle(self, stream) -> int:
        return 0

    def timer(self, stream) -> Timer:
        return Timer()

    def gpu_name(self) -> str:
        return "FAKE GPU (host buffers)"

    def pinned(self, x):
        return x
