"""TensorRT (8.6 or 10.x Python API): an FP16 engine built from the exported ONNX file.

The engine is built with ``tensorrt.Builder`` from an ``OnnxParser`` network and a
``BuilderConfig`` with the FP16 flag (the published latencies' setting), serialised, and cached
on disk under ``$RTMBENCH_CACHE/tensorrt`` (default ``~/.cache/rtmbench``) keyed by the ONNX
file's sha256, the TensorRT version, the GPU name and the precision: building takes minutes,
deserialising milliseconds. Inference binds torch-allocated device buffers with
``set_tensor_address`` and enqueues with ``execute_async_v3`` on a CUDA stream; the timer
records CUDA events on that stream.
"""

from __future__ import annotations

import importlib.util
import re
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ...fileio import sha256_file, write_bytes_atomic
from ...spec.settings import load_settings
from ..export import export_onnx
from ..timing import CudaEventTimer
from .base import Backend, BackendError, BackendUnavailable, Runner, cuda_unavailable_reason

WORKSPACE_BYTES = 4 << 30


def cache_dir() -> Path:
    return load_settings().cache / "tensorrt"


def engine_cache_path(onnx_sha256: str, trt_version: str, gpu_name: str, precision: str) -> Path:
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", gpu_name).strip("-")
    return cache_dir() / f"{onnx_sha256[:16]}_trt{trt_version}_{gpu}_{precision}.engine"


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, opset: int = 17) -> None:
        self.opset = opset

    def unavailable(self, device: str, precision: str) -> str | None:
        if device != "cuda":
            return "TensorRT runs on CUDA GPUs only (use --device cuda)"
        if reason := cuda_unavailable_reason():
            return reason
        if importlib.util.find_spec("tensorrt") is None:
            return "the tensorrt Python package is not installed (pip install 'rtmbench[gpu]')"
        return None

    def build_engine(self, onnx_path: Path, precision: str) -> tuple[bytes, str]:
        """Serialised engine for ``onnx_path`` from the cache, or built (and cached) now."""
        import tensorrt as trt

        path = engine_cache_path(sha256_file(onnx_path), trt.__version__,
                                 torch.cuda.get_device_name(0), precision)
        if path.exists():
            return path.read_bytes(), f"cache hit {path}"
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        flags = 0
        if int(trt.__version__.split(".")[0]) < 10:  # explicit batch is the only mode in 10.x
            flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(onnx_path.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendError(f"TensorRT {trt.__version__} could not parse "
                                     f"{onnx_path}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        if precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BackendError(f"TensorRT {trt.__version__} failed to build an engine "
                                     f"from {onnx_path} (see its log above)")
        data = bytes(serialized)
        write_bytes_atomic(path, data)
        return data, f"built and cached {path}"

    def prepare(self, model: nn.Module, example: Tensor, device: str, precision: str, *,
                include_transfer: bool = False, workdir: Path | None = None,
                onnx_path: Path | None = None) -> Runner:
        if reason := self.unavailable(device, precision):
            raise BackendUnavailable(reason)
        import tensorrt as trt

        workdir = Path(workdir or tempfile.mkdtemp(prefix="rtmbench-trt-"))
        if onnx_path is None:
            onnx_path = export_onnx(model, workdir / "model.onnx", tuple(example.shape[2:]),
                                    batch=example.shape[0], opset=self.opset)
        data, provenance = self.build_engine(Path(onnx_path), precision)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(data)
        context = engine.create_execution_context()
        buffers: dict[str, Tensor] = {}
        input_name = None
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dtype = torch.from_numpy(np.empty(0, trt.nptype(engine.get_tensor_dtype(name)))).dtype
            shape = tuple(engine.get_tensor_shape(name))
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                input_name = name
                buffers[name] = example.to("cuda", dtype).contiguous()
            else:
                buffers[name] = torch.empty(shape, dtype=dtype, device="cuda")
            context.set_tensor_address(name, buffers[name].data_ptr())
        host_in = example.to(buffers[input_name].dtype).contiguous().pin_memory()
        stream = torch.cuda.Stream()

        def run() -> None:
            if include_transfer:
                with torch.cuda.stream(stream):
                    buffers[input_name].copy_(host_in, non_blocking=True)
            if not context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 returned False")

        # keep the engine and runtime alive as long as the runner
        run.keepalive = (runtime, engine, context, buffers)  # type: ignore[attr-defined]
        details = {"tensorrt": trt.__version__, "precision_flag": precision, "engine": provenance,
                   "onnx": str(onnx_path), "gpu": torch.cuda.get_device_name(0),
                   "include_transfer": include_transfer, "workspace_bytes": WORKSPACE_BYTES}
        return Runner(run, CudaEventTimer(stream), details, stream.synchronize)
