"""ONNX Runtime on the exported graph (BN folded, opset 17, every graph optimisation).

Which execution provider, which ONNX file (FP32 or FP16, :mod:`..export`) and which provider
options, per provider and precision (all recorded in ``details``):

- ``cpu`` (CPUExecutionProvider), fp32: the FP32 file; intra-op threads = usable cores.
- ``cuda`` (CUDAExecutionProvider), fp32: the FP32 file; default options, I/O on the GPU.
- ``cuda``, fp16: the FP16 file (FP32 I/O); default options, cuDNN runs FP16 convolutions.
- ``tensorrt`` (TensorrtExecutionProvider), fp16 with TensorRT < 11: the FP32 file and
  ``trt_fp16_enable=True`` (weak typing, BuilderFlag.FP16: the published setting).
- ``tensorrt``, fp16 with TensorRT 11 or an unknown version: the FP16 file (FP32 I/O) and
  ``trt_fp16_enable=False`` (a strongly typed network with the file's types).
- ``tensorrt``, fp32: the FP32 file, ``trt_fp16_enable=False``.

On ``trt_fp16_enable``: for TensorRT > 8, ONNX Runtime's TensorRT provider creates its network
with ``NetworkDefinitionCreationFlag::kSTRONGLY_TYPED`` unless FP16 or INT8 is enabled, and sets
``BuilderFlag::kFP16`` (a weakly typed network) when ``trt_fp16_enable`` is on
(``tensorrt_execution_provider.cc``, microsoft/onnxruntime PR #24298). TensorRT 11 has no
``kFP16`` (NVIDIA's TensorRT 10.x -> 11.x migration guide; ONNX Runtime >= 1.27 supports 11.x),
so there FP16 must come from the FP16 file with the option off. What ``trt_fp16_enable`` does
on TensorRT 11 was not verified here (no onnxruntime-gpu with TensorRT 11 ran); it is never set
there. The TensorRT version the provider loads is read from the installed ``tensorrt`` wheels;
when none is found, the strongly typed path (valid on 10.x and 11.x) is used.

Default provider by device and precision: cpu/fp32 -> cpu, cuda/fp32 -> cuda, cuda/fp16 ->
tensorrt (``provider=`` picks another). ONNX Runtime silently falls back to the CPU when a
provider fails to load; the session's real providers are checked, and a fallback is reported as
"not run".
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..export import backend_onnx, onnx_metadata
from ..timing import Timer
from .base import (
    Backend,
    BackendUnavailable,
    PrepareOptions,
    Runner,
    cuda_unavailable_reason,
    import_package,
)

PROVIDER_NAMES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                  "tensorrt": "TensorrtExecutionProvider"}
DEFAULT_PROVIDER = {("cpu", "fp32"): "cpu", ("cuda", "fp32"): "cuda", ("cuda", "fp16"): "tensorrt"}
PROVIDER_DEVICE = {"cpu": "cpu", "cuda": "cuda", "tensorrt": "cuda"}
TRT_WHEELS = ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu13-libs",
              "tensorrt-cu12-libs", "tensorrt_libs")


def tensorrt_version_for_provider() -> str | None:
    """The TensorRT version ONNX Runtime's TensorRT provider will load, from the installed
    wheels (None: none found, e.g. a system TensorRT)."""
    for name in TRT_WHEELS:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def provider_config(provider: str, precision: str, trt_version: str | None = None,
                    typing: str = "auto") -> dict:
    """Which ONNX file and provider options ``provider`` gets at ``precision`` (the table in
    the module docstring): ``{"onnx_precision", "options", "typing"?}``."""
    from .tensorrt_backend import TYPINGS

    if typing not in TYPINGS:  # the same choices as the TensorRT backend's (a typo is no mode)
        raise ValueError(f"typing must be one of {TYPINGS}, not {typing!r}")
    if provider == "tensorrt":
        major = int(trt_version.split(".")[0]) if trt_version else None
        if typing == "auto":  # 8.x networks are never strongly typed; fp16: weak where it exists
            typing = "weak" if major is not None and (major < 9 or (
                precision == "fp16" and major < 11)) else "strong"
        if typing == "weak" and major is not None and major >= 11:
            raise BackendUnavailable(f"TensorRT {trt_version} has no weak typing "
                                     f"(BuilderFlag.FP16 was removed in 11.x): the "
                                     f"TensorRT provider can only run the FP16 ONNX there")
        fp16_flag = typing == "weak" and precision == "fp16"
        return {"onnx_precision": "fp16" if precision == "fp16" and not fp16_flag else "fp32",
                "options": {"trt_fp16_enable": fp16_flag}, "typing": typing}
    return {"onnx_precision": precision, "options": {}}


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, opset: int = 17, threads: int | None = None, provider: str | None = None,
                 typing: str = "auto", session_config: dict[str, str] | None = None) -> None:
        if provider is not None and provider not in PROVIDER_NAMES:
            raise ValueError(f"provider must be one of {list(PROVIDER_NAMES)}, not {provider!r}")
        self.opset = opset
        self.threads = threads or len(os.sched_getaffinity(0))
        self.provider, self.typing = provider, typing
        # SessionOptions.add_session_config_entry pairs (e.g. session.intra_op.allow_spinning):
        # the benchmark tries them; none by default
        self.session_config = dict(session_config or {})

    def autotuned(self, device: str, precision: str) -> bool:
        # the CUDA provider's cuDNN algorithm search and TensorRT's tactics are timed; the CPU
        # provider's kernels are chosen by shape alone
        return device == "cuda"

    def provider_for(self, device: str, precision: str) -> str | None:
        return self.provider or DEFAULT_PROVIDER.get((device, precision))

    def unavailable(self, device: str, precision: str) -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return ("the onnxruntime package is not installed (pip install 'rtmbench[onnx]', "
                    "or onnxruntime-gpu for CUDA)")
        provider = self.provider_for(device, precision)
        if device == "cpu" and precision == "fp16":
            return ("ONNX Runtime on cpu is measured in fp32 only: its CPU provider has no FP16 "
                    "convolution kernels on x86 (it would insert Casts and compute in FP32); "
                    "fp16 is measured on cuda")
        if provider is None or PROVIDER_DEVICE[provider] != device:
            return f"ONNX Runtime's {provider} provider does not run on {device}"
        if device == "cuda" and (reason := cuda_unavailable_reason()):
            return reason
        ort, reason = import_package("onnxruntime", "onnx")  # installed and broken: raises
        if reason:
            return reason
        name = PROVIDER_NAMES[provider]
        available = ort.get_available_providers()
        if name not in available:
            return (f"onnxruntime {ort.__version__} has no {name} (available: "
                    f"{', '.join(available)}); install onnxruntime-gpu with a matching CUDA"
                    + (" and TensorRT" if provider == "tensorrt" else ""))
        return None

    def _session(self, onnx_path: Path, provider: str, provider_options: dict, workdir: Path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        for key, value in self.session_config.items():
            options.add_session_config_entry(key, str(value))
        name = PROVIDER_NAMES[provider]
        if provider == "tensorrt":
            provider_options = {**provider_options, "trt_engine_cache_enable": True,
                                "trt_engine_cache_path": str(workdir / "ort-trt-cache")}
        session = ort.InferenceSession(str(onnx_path), options,
                                       providers=[(name, provider_options)])
        if session.get_providers()[0] != name:
            raise BackendUnavailable(f"ONNX Runtime could not load {name} and fell back to "
                                     f"{session.get_providers()}")
        return session, provider_options

    def prepare(self, model: nn.Module, example: Tensor, device: str, precision: str,
                options: PrepareOptions | None = None) -> Runner:
        if reason := self.unavailable(device, precision):
            raise BackendUnavailable(reason)
        import onnxruntime as ort

        options = options or PrepareOptions()
        include_transfer, onnx_path = options.include_transfer, options.onnx_path

        provider = self.provider_for(device, precision)
        trt_version = tensorrt_version_for_provider() if provider == "tensorrt" else None
        config = provider_config(provider, precision, trt_version, self.typing)
        workdir = options.folder("ort")
        onnx_path = backend_onnx(model, example, self.opset, config["onnx_precision"],
                                 onnx_path, workdir)
        session, provider_options = self._session(onnx_path, provider, config["options"],
                                                  workdir)
        x = np.ascontiguousarray(example.numpy().astype(np.float32))
        binding = session.io_binding()
        input_name = session.get_inputs()[0].name
        if device == "cuda" and not include_transfer:
            binding.bind_ortvalue_input(input_name, ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0))
        else:
            binding.bind_cpu_input(input_name, x)
        for out in session.get_outputs():
            binding.bind_output(out.name, "cuda" if device == "cuda" else "cpu")

        def run() -> None:
            # Blocking: ONNX Runtime synchronises its stream before returning.
            session.run_with_iobinding(binding)

        def infer(new: Tensor) -> list[Tensor]:
            got = session.run(None, {input_name: np.ascontiguousarray(
                new.numpy().astype(np.float32))})
            return [torch.from_numpy(np.asarray(o)).float() for o in got]

        meta = onnx_metadata(onnx_path)
        details = {"provider": PROVIDER_NAMES[provider], "providers": session.get_providers(),
                   "provider_options": provider_options, "threads": self.threads,
                   "graph_optimization": "ORT_ENABLE_ALL", "opset": self.opset,
                   "bn_folded": True, "onnx": str(onnx_path),
                   "onnx_precision": meta.get("rtmbench.precision", config["onnx_precision"]),
                   "include_transfer": include_transfer}
        if "typing" in config:
            details |= {"typing": config["typing"], "tensorrt": trt_version or "unknown"}
        if self.session_config:
            details["session_config"] = {k: str(v) for k, v in self.session_config.items()}
        if "rtmbench.fp16_converter" in meta:
            details["fp16_converter"] = meta["rtmbench.fp16_converter"]
        return Runner(run, Timer(), details, infer=infer)
