"""ONNX Runtime on the exported graph (BN folded, opset 17, every graph optimisation).

Execution providers by device and precision:
- cpu/fp32: CPUExecutionProvider, intra-op threads = usable cores;
- cuda/fp32: CUDAExecutionProvider, input and outputs bound on the GPU (I/O binding);
- cuda/fp16: TensorrtExecutionProvider with FP16 enabled (ONNX Runtime's CUDA provider runs
  an fp32 graph in fp32; half precision there comes from TensorRT).
ONNX Runtime silently falls back to the CPU when a provider fails to load; the session's real
providers are checked, and a fallback is reported as "not run".
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import numpy as np
from torch import Tensor, nn

from ..export import export_onnx
from ..timing import Timer
from .base import Backend, BackendUnavailable, Runner, cuda_unavailable_reason

PROVIDERS = {("cpu", "fp32"): "CPUExecutionProvider",
             ("cuda", "fp32"): "CUDAExecutionProvider",
             ("cuda", "fp16"): "TensorrtExecutionProvider"}


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, opset: int = 17, threads: int | None = None) -> None:
        self.opset = opset
        self.threads = threads or len(os.sched_getaffinity(0))

    def unavailable(self, device: str, precision: str) -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return ("the onnxruntime package is not installed (pip install 'rtmbench[onnx]', "
                    "or onnxruntime-gpu for CUDA)")
        provider = PROVIDERS.get((device, precision))
        if provider is None:
            return (f"ONNX Runtime on {device} runs this fp32 graph in fp32 only; fp16 is "
                    f"measured on cuda through the TensorRT execution provider")
        if device == "cuda" and (reason := cuda_unavailable_reason()):
            return reason
        import onnxruntime as ort

        available = ort.get_available_providers()
        if provider not in available:
            return (f"onnxruntime {ort.__version__} has no {provider} (available: "
                    f"{', '.join(available)}); install onnxruntime-gpu with a matching CUDA"
                    + (" and TensorRT" if "Tensorrt" in provider else ""))
        return None

    def _session(self, onnx_path: Path, provider: str, workdir: Path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        provider_options: dict = {}
        if provider == "TensorrtExecutionProvider":
            provider_options = {"trt_fp16_enable": True, "trt_engine_cache_enable": True,
                                "trt_engine_cache_path": str(workdir / "ort-trt-cache")}
        providers = [(provider, provider_options)]
        session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        if session.get_providers()[0] != provider:
            raise BackendUnavailable(f"ONNX Runtime could not load {provider} and fell back to "
                                     f"{session.get_providers()}")
        return session

    def prepare(self, model: nn.Module, example: Tensor, device: str, precision: str, *,
                include_transfer: bool = False, workdir: Path | None = None,
                onnx_path: Path | None = None) -> Runner:
        if reason := self.unavailable(device, precision):
            raise BackendUnavailable(reason)
        workdir = Path(workdir or tempfile.mkdtemp(prefix="rtmbench-ort-"))
        if onnx_path is None:
            onnx_path = export_onnx(model, workdir / "model.onnx", tuple(example.shape[2:]),
                                    batch=example.shape[0], opset=self.opset)
        provider = PROVIDERS[(device, precision)]
        session = self._session(onnx_path, provider, workdir)
        x = np.ascontiguousarray(example.numpy().astype(np.float32))
        binding = session.io_binding()
        input_name = session.get_inputs()[0].name
        if device == "cuda" and not include_transfer:
            import onnxruntime as ort

            binding.bind_ortvalue_input(input_name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
        else:
            binding.bind_cpu_input(input_name, x)
        for out in session.get_outputs():
            binding.bind_output(out.name, "cuda" if device == "cuda" else "cpu")

        def run() -> None:
            # Blocking: ONNX Runtime synchronises its stream before returning.
            session.run_with_iobinding(binding)

        details = {"providers": session.get_providers(), "threads": self.threads,
                   "graph_optimization": "ORT_ENABLE_ALL", "opset": self.opset,
                   "bn_folded": True, "onnx": str(onnx_path), "include_transfer": include_transfer}
        return Runner(run, Timer(), details)
