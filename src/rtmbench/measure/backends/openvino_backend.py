"""OpenVINO on the CPU, from the FP32 ONNX file :mod:`..export` writes (BN folded, opset 17).

What runs (all of it recorded in ``details``, read back from the compiled model):

- ``openvino.Core().read_model(onnx)`` then ``compile_model(model, "CPU", config)``: the
  current API (the ``openvino.runtime`` namespace is deprecated since 2025);
- ``config``: ``PERFORMANCE_HINT: LATENCY`` (one stream, every core on one request: what a
  batch-1 deployment uses) and ``INFERENCE_PRECISION_HINT: f32``. The precision hint is not
  optional: on a CPU with AVX512_BF16 or AMX OpenVINO's default inference precision is
  *bf16*, which is another artifact (measured here: outputs off by up to 5e-3 instead of
  6e-8). ``options`` (``config=...``) add or override properties, e.g. ``NUM_STREAMS``,
  ``INFERENCE_NUM_THREADS``, ``ENABLE_CPU_PINNING`` (the benchmark tries them);
- one synchronous infer request; the input is handed over as a tensor sharing the caller's
  memory, the outputs are read from the request's output tensors by name (the exported
  graph's order ``cls_8 .. box_32``).

``precision`` fp32 only: fp16 is measured on CUDA backends (OpenVINO's CPU plugin computes f16
only on CPUs with AVX512_FP16 or on ARM, which rtmbench has not run). ``device`` cpu only
(OpenVINO's GPU and NPU plugins are not wired up). Without the ``openvino`` package
(``pip install 'rtmbench[openvino]'``) the backend is "not run" with that reason.
"""

from __future__ import annotations

import importlib.util
import weakref

import numpy as np
import torch
from torch import Tensor, nn

from ..export import backend_onnx, onnx_metadata
from ..timing import Timer
from .base import Backend, BackendError, BackendUnavailable, PrepareOptions, Runner

BASE_CONFIG = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
# Read back from the compiled model into ``details``: what really ran.
REPORTED = ("PERFORMANCE_HINT", "INFERENCE_PRECISION_HINT", "NUM_STREAMS",
            "INFERENCE_NUM_THREADS", "ENABLE_CPU_PINNING", "EXECUTION_MODE_HINT",
            "CPU_DENORMALS_OPTIMIZATION", "PERF_COUNT")


class _Live:
    """One prepared model's OpenVINO objects, destroyed strictly in the reverse order of their
    creation across every model of the process.

    OpenVINO's CPU plugin gives the thread that runs an inference request a signal stack of
    its own (``sigaltstack``) and, when the request is destroyed, puts back the one it found.
    Destroyed out of order (the model's request before its reference convolution's), the
    second puts back the first's stack, already freed: the next signal delivered to that
    thread (a child process ending, Ctrl-C) then kills the process with a segmentation fault
    (seen in the test suite). So a runner's objects are released when the runner is gone
    *and* every younger runner's are released: a stack discipline."""

    _stack: list[_Live] = []

    def __init__(self, core, compiled, request, x: np.ndarray) -> None:
        self.objects = [request, compiled, core]  # released in this order: request first
        self.x = x
        self.alive = True
        self.holders = 0
        _Live._stack.append(self)

    def held_by(self, *functions) -> None:
        """Release these objects once every one of ``functions`` (the runner's closures) is
        gone."""
        for function in functions:
            self.holders += 1
            weakref.finalize(function, self.drop)

    def drop(self) -> None:
        self.holders -= 1
        if self.holders == 0:
            self.release()

    @property
    def request(self):
        return self.objects[0]

    def release(self) -> None:
        self.alive = False
        while _Live._stack and not _Live._stack[-1].alive:
            gone = _Live._stack.pop()
            while gone.objects:
                gone.objects.pop(0)  # the last reference: OpenVINO's destructor runs now


def _text(value) -> str:
    """A property as plain text: ``<Type: 'float32'>`` -> ``f32``, enums by name."""
    name = getattr(value, "name", None)
    if hasattr(value, "get_type_name"):  # openvino.Type
        return value.get_type_name()
    if name is not None and not isinstance(value, (bool, int, str)):
        return str(name)
    return str(value)


class OpenVINOBackend(Backend):
    name = "openvino"

    def __init__(self, opset: int = 17, config: dict | None = None,
                 profiling: bool = False) -> None:
        self.opset = opset
        self.config = {**BASE_CONFIG, **(config or {})}
        if profiling:  # per-layer counters (ov::enable_profiling), for the benchmark's profile
            self.config["PERF_COUNT"] = True

    def unavailable(self, device: str, precision: str) -> str | None:
        if device != "cpu":
            return ("rtmbench runs OpenVINO on the CPU only (its GPU and NPU plugins are not "
                    "wired up); use device cpu")
        if precision != "fp32":
            return ("OpenVINO on cpu is measured in fp32 only (INFERENCE_PRECISION_HINT f32): "
                    "its CPU plugin computes f16 only on CPUs with AVX512_FP16 or on ARM; fp16 "
                    "is measured on cuda")
        if importlib.util.find_spec("openvino") is None:
            return "the openvino package is not installed (pip install 'rtmbench[openvino]')"
        return None

    def prepare(self, model: nn.Module, example: Tensor, device: str, precision: str,
                options: PrepareOptions | None = None) -> Runner:
        if reason := self.unavailable(device, precision):
            raise BackendUnavailable(reason)
        import openvino as ov

        options = options or PrepareOptions()
        include_transfer, onnx_path = options.include_transfer, options.onnx_path
        onnx_path = backend_onnx(model, example, self.opset, "fp32", onnx_path,
                                 options.folder("ov"))
        core = ov.Core()
        try:
            network = core.read_model(str(onnx_path))
            compiled = core.compile_model(network, "CPU", self.config)
        except RuntimeError as exc:  # OpenVINO reports parse and compile failures so
            raise BackendError(f"OpenVINO {ov.__version__} could not read or compile "
                               f"{onnx_path} with {self.config}: {exc}") from exc
        live = _Live(core, compiled, compiled.create_infer_request(),
                     np.ascontiguousarray(example.numpy().astype(np.float32)))
        names = [o.get_any_name() for o in compiled.outputs]
        del core, compiled, network  # held by `live` alone from here on
        live.request.set_input_tensor(ov.Tensor(live.x, shared_memory=True))

        def run() -> None:
            live.request.infer()  # synchronous: returns when the outputs are written

        def infer(new: Tensor) -> list[Tensor]:
            data = np.ascontiguousarray(new.detach().cpu().numpy().astype(np.float32))
            live.request.set_input_tensor(ov.Tensor(data, shared_memory=True))
            try:
                live.request.infer()
                return [torch.from_numpy(live.request.get_tensor(n).data.copy()).float()
                        for n in names]
            finally:  # the timed input again
                live.request.set_input_tensor(ov.Tensor(live.x, shared_memory=True))

        run.keepalive = live  # type: ignore[attr-defined]
        details = {"openvino": ov.__version__, "device": "CPU",
                   "cpu": _text(live.objects[2].get_property("CPU", "FULL_DEVICE_NAME")),
                   "requested_config": {k: _text(v) for k, v in self.config.items()},
                   "bn_folded": True, "opset": self.opset, "onnx": str(onnx_path),
                   "onnx_precision": onnx_metadata(onnx_path).get("rtmbench.precision", "fp32"),
                   "include_transfer": include_transfer, "outputs": names}
        for key in REPORTED:
            try:
                details[key.lower()] = _text(live.objects[1].get_property(key))
            except RuntimeError:  # a property this version does not report
                continue
        live.held_by(run, infer)
        return Runner(run, Timer(), details, infer=infer)


def profiling_info(runner: Runner) -> list[dict]:
    """Per-layer counters of the runner's latest inference (prepared with ``profiling=True``,
    OpenVINO's ``ov::enable_profiling``): layer name, layer type, the kernel that ran
    (``exec_type``, e.g. ``brgconv_avx512_1x1``) and its real time in microseconds."""
    request = runner.run.keepalive.request  # type: ignore[attr-defined]
    return [{"name": p.node_name, "type": p.node_type, "exec_type": p.exec_type,
             "real_us": p.real_time.total_seconds() * 1e6, "status": str(p.status)}
            for p in request.get_profiling_info()]
