"""TensorRT 8.6, 10.x and 11.x (Python API): an engine built from the exported ONNX file.

Typing, the one thing that differs between the majors (``typing``, recorded in ``details``):

- ``weak``: an FP32 ONNX file and ``BuilderFlag.FP16``; TensorRT picks FP16 or FP32 kernels
  per layer. The published latencies' setting (TensorRT 8.4.3 ``--fp16``), and what 8.6 and
  10.x still offer (10.x deprecates it: weak typing is deprecated since 10.12).
- ``strong``: a strongly typed network from the FP16 ONNX file (:mod:`..export`,
  ``precision="fp16"``: FP16 weights and activations, FP32 input/outputs); every tensor has the
  type the graph gives it. TensorRT 11.x knows nothing else: it removed ``BuilderFlag.FP16`` and
  every other weak-typing flag ("Strongly Typed Networks Are Now Required", NVIDIA's "Migrating
  from TensorRT 10.x to 11.x", docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/
  tensorrt-10x-to-11x.html; the Python reference lists ``BuilderFlag.FP16`` under "Removed
  Python APIs", replacement "Strong typing with ModelOpt AutoCast").
  ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` exists since 9.x/10.x (required there to
  opt in; on 11.x networks are always strongly typed and the flag is accepted and ignored).

``typing="auto"`` (the default) is ``weak`` where ``BuilderFlag.FP16`` exists (8.6, 10.x:
closest to the published setting) and ``strong`` where it does not (11.x); ``weak`` or
``strong`` may be asked for, and a version without that mode is "not run" with the reason.
``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` is set on 8.x only (the ONNX parser needs it
there; 10.x deprecates it, networks are always explicit batch; 11.x has no such flag).

The engine is serialised and cached on disk under ``$RTMBENCH_CACHE/tensorrt`` (default
``~/.cache/rtmbench``) keyed by the ONNX file's sha256, the TensorRT version, the GPU name, the
precision and the typing: building takes minutes, deserialising milliseconds. Inference binds
device buffers with ``set_tensor_address`` and enqueues with ``execute_async_v3`` on a stream;
the timer records events on that stream. A parser or builder failure is a
:class:`BackendError` ("failed"); a missing package, GPU or typing mode is
:class:`BackendUnavailable` ("not run").

Where the buffers live is one small object (:class:`CudaBuffers`), so the whole path runs in
tests against API-surface fakes of TensorRT 8.6, 10 and 11 with host buffers
(``tests/fakes/tensorrt_*.py``); none of it has run on a real TensorRT in this repository's CI.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ...errors import RtmbenchError
from ...fileio import sha256_file, write_bytes_atomic
from ...spec.settings import load_settings
from ..export import backend_onnx, onnx_metadata
from ..timing import CudaEventTimer, Timer
from .base import (
    Backend,
    BackendError,
    BackendUnavailable,
    PrepareOptions,
    Runner,
    cuda_unavailable_reason,
    import_package,
)

WORKSPACE_BYTES = 4 << 30
TYPINGS = ("auto", "weak", "strong")


def cache_dir() -> Path:
    return load_settings().cache / "tensorrt"


def engine_cache_path(onnx_sha256: str, trt_version: str, gpu_name: str, precision: str,
                      typing: str = "weak") -> Path:
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", gpu_name).strip("-")
    return cache_dir() / f"{onnx_sha256[:16]}_trt{trt_version}_{gpu}_{precision}_{typing}.engine"


def major_version(trt) -> int:
    return int(str(trt.__version__).split(".")[0])


@dataclass(frozen=True)
class BuildPlan:
    """How an engine is built on the installed TensorRT: what ``details`` records."""

    typing: str  # "weak" | "strong"
    onnx_precision: str  # the ONNX file it is built from: "fp32" | "fp16"
    network_flags: tuple[str, ...]
    builder_flags: tuple[str, ...]

    def describe(self) -> str:
        if self.typing == "weak":
            how = "weakly typed, " + ("BuilderFlag.FP16" if self.builder_flags
                                      else "no precision flag")
        else:
            how = "strongly typed"
        return f"{how}, from the {self.onnx_precision.upper()} ONNX"


def plan_build(trt, precision: str, typing: str = "auto") -> BuildPlan:
    """The typing mode and flags for ``precision`` on the installed ``trt`` module (see the
    module docstring); raises :class:`BackendUnavailable` when it has no such mode."""
    if typing not in TYPINGS:
        raise ValueError(f"typing must be one of {TYPINGS}, not {typing!r}")
    version = trt.__version__
    has_fp16_flag = hasattr(trt.BuilderFlag, "FP16")
    creation = trt.NetworkDefinitionCreationFlag
    has_strong = hasattr(creation, "STRONGLY_TYPED") or major_version(trt) >= 11
    if typing == "auto":
        typing = "weak" if has_fp16_flag else "strong"
    if typing == "weak" and not has_fp16_flag:
        raise BackendUnavailable(
            f"TensorRT {version} has no weak typing (TensorRT 11 removed BuilderFlag.FP16 and "
            f"every weak-typing flag); use typing 'strong' (the FP16 ONNX) or TensorRT < 11")
    if typing == "strong" and not has_strong:
        raise BackendUnavailable(
            f"TensorRT {version} has no strongly typed networks "
            f"(NetworkDefinitionCreationFlag.STRONGLY_TYPED came with 9.x/10.x); use typing "
            f"'weak' (BuilderFlag.FP16), the published setting")
    network_flags = []
    if major_version(trt) < 10:
        network_flags.append("EXPLICIT_BATCH")  # the 8.x ONNX parser needs it
    if typing == "strong" and hasattr(creation, "STRONGLY_TYPED"):
        network_flags.append("STRONGLY_TYPED")  # required on 10.x, ignored on 11.x
    builder_flags = ("FP16",) if typing == "weak" and precision == "fp16" else ()
    onnx_precision = "fp16" if typing == "strong" and precision == "fp16" else "fp32"
    return BuildPlan(typing, onnx_precision, tuple(network_flags), builder_flags)


class CudaBuffers:
    """Device memory, streams and the clock for the engine's I/O (torch's CUDA)."""

    device = "cuda"

    def stream(self):
        return torch.cuda.Stream()

    def handle(self, stream) -> int:
        return stream.cuda_stream

    def timer(self, stream) -> Timer:
        return CudaEventTimer(stream)

    def gpu_name(self) -> str:
        return torch.cuda.get_device_name(0)

    def pinned(self, x: Tensor) -> Tensor:
        return x.pin_memory()


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, opset: int = 17, typing: str = "auto",
                 buffers: CudaBuffers | None = None) -> None:
        if typing not in TYPINGS:
            raise ValueError(f"typing must be one of {TYPINGS}, not {typing!r}")
        self.opset, self.typing = opset, typing
        self.buffers = buffers or CudaBuffers()

    # autotuned() stays False: TensorRT times its tactics, but the engine is built once and
    # cached (by ONNX, TensorRT version, GPU, precision and typing): the cached engine is the
    # artifact users deploy, and a contended measurement times that same engine again.

    def unavailable(self, device: str, precision: str) -> str | None:
        if device != "cuda":
            return "TensorRT runs on CUDA GPUs only (use device cuda)"
        if reason := cuda_unavailable_reason():
            return reason
        if importlib.util.find_spec("tensorrt") is None:
            return "the tensorrt Python package is not installed (pip install 'rtmbench[gpu]')"
        return import_package("tensorrt", "gpu")[1]  # installed and broken: raises

    def build_engine(self, onnx_path: Path, precision: str, plan: BuildPlan | None = None
                     ) -> tuple[bytes, str]:
        """Serialised engine for ``onnx_path`` from the cache, or built (and cached) now."""
        import tensorrt as trt

        plan = plan or plan_build(trt, precision, self.typing)
        path = engine_cache_path(sha256_file(onnx_path), trt.__version__,
                                 self.buffers.gpu_name(), precision, plan.typing)
        if path.exists():
            return path.read_bytes(), f"cache hit {path}"
        logger = trt.Logger(trt.Logger.WARNING)
        try:
            builder = trt.Builder(logger)
            flags = 0
            for name in plan.network_flags:
                flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
            network = builder.create_network(flags)
            parser = trt.OnnxParser(network, logger)
            if not parser.parse(onnx_path.read_bytes()):
                errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
                raise BackendError(f"TensorRT {trt.__version__} could not parse "
                                   f"{onnx_path}: {errors}")
            config = builder.create_builder_config()
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
            for name in plan.builder_flags:
                config.set_flag(getattr(trt.BuilderFlag, name))
            serialized = builder.build_serialized_network(network, config)
        except RtmbenchError:
            raise
        except Exception as exc:  # the bindings raise TypeError/RuntimeError on bad input
            raise BackendError(f"TensorRT {trt.__version__} failed while building from "
                               f"{onnx_path} ({plan.describe()}): {type(exc).__name__}: "
                               f"{exc}") from exc
        if serialized is None:
            raise BackendError(f"TensorRT {trt.__version__} failed to build an engine "
                               f"from {onnx_path} ({plan.describe()}; see its log above)")
        data = bytes(serialized)
        write_bytes_atomic(path, data)
        return data, f"built and cached {path}"

    def prepare(self, model: nn.Module, example: Tensor, device: str, precision: str,
                options: PrepareOptions | None = None) -> Runner:
        if reason := self.unavailable(device, precision):
            raise BackendUnavailable(reason)
        import tensorrt as trt

        options = options or PrepareOptions()
        include_transfer, onnx_path = options.include_transfer, options.onnx_path
        plan = plan_build(trt, precision, self.typing)
        onnx_path = backend_onnx(model, example, self.opset, plan.onnx_precision, onnx_path,
                                 options.folder("trt"))
        data, provenance = self.build_engine(onnx_path, precision, plan)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise BackendError(f"TensorRT {trt.__version__} could not deserialise the engine "
                               f"({provenance}); delete the cached file to rebuild it")
        context = engine.create_execution_context()
        device_ = self.buffers.device
        buffers: dict[str, Tensor] = {}
        input_name, output_names = None, []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dtype = torch.from_numpy(np.empty(0, trt.nptype(engine.get_tensor_dtype(name)))).dtype
            shape = tuple(engine.get_tensor_shape(name))
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                input_name = name
                buffers[name] = example.to(device_, dtype).contiguous()
            else:
                output_names.append(name)
                buffers[name] = torch.empty(shape, dtype=dtype, device=device_)
            context.set_tensor_address(name, buffers[name].data_ptr())
        host_in = self.buffers.pinned(example.to(buffers[input_name].dtype).contiguous())
        stream = self.buffers.stream()
        handle = self.buffers.handle(stream)

        def run() -> None:
            if include_transfer:
                with torch.cuda.stream(stream):
                    buffers[input_name].copy_(host_in, non_blocking=True)
            if not context.execute_async_v3(handle):
                raise BackendError("TensorRT execute_async_v3 returned False")

        def infer(x: Tensor) -> list[Tensor]:
            """The engine's outputs for ``x`` (host FP32 tensors, in the engine's order)."""
            stream.synchronize()
            buffers[input_name].copy_(x.to(buffers[input_name].dtype))
            if not context.execute_async_v3(handle):
                raise BackendError("TensorRT execute_async_v3 returned False")
            stream.synchronize()
            return [buffers[n].detach().float().cpu().clone() for n in output_names]

        # keep the engine and runtime alive as long as the runner
        run.keepalive = (runtime, engine, context, buffers)  # type: ignore[attr-defined]
        meta = onnx_metadata(onnx_path)
        details = {"tensorrt": trt.__version__, "typing": plan.typing,
                   "build": plan.describe(), "builder_flags": list(plan.builder_flags),
                   "network_flags": list(plan.network_flags),
                   "onnx_precision": meta.get("rtmbench.precision", plan.onnx_precision),
                   "engine": provenance, "engine_sha256": hashlib.sha256(data).hexdigest(),
                   "onnx": str(onnx_path),
                   "gpu": self.buffers.gpu_name(), "include_transfer": include_transfer,
                   "workspace_bytes": WORKSPACE_BYTES}
        if "rtmbench.fp16_converter" in meta:
            details["fp16_converter"] = meta["rtmbench.fp16_converter"]
        return Runner(run, self.buffers.timer(stream), details, stream.synchronize,
                      outputs=lambda: [buffers[n] for n in output_names], infer=infer)
