"""The timed artifact as a detector: what ``rtmbench evaluate --backend`` runs on every image.

An *artifact* is what a backend makes of the model: a BN-folded channels_last network (torch),
an inductor-compiled graph (torch-compile), an ONNX export in an ONNX Runtime session or an
OpenVINO compiled model, a TensorRT engine. :func:`prepare_artifact` makes it exactly as the
latency check does (``Backend.prepare`` with the same example input, the same ONNX export
arguments, TensorRT's engine cache and its key: ONNX sha256, TensorRT version, GPU, precision,
typing), so that the box AP of ``evaluate --backend X --batch-size B`` is the AP of the engine
``latency --backend X --batch B`` times. Every backend gives its outputs through one path,
``Runner.infer`` (host FP32 tensors in the exported graph's order ``cls_8 .. box_32``), and
the evaluation post-processes them with the same batched post-processing whatever the backend
(:func:`rtmbench.models.postprocess_batched`), so an AP difference belongs to the artifact,
never to the harness.

Batches: every artifact has static shapes, ``batch x 3 x H x W`` (the ONNX file is exported
with a fixed batch, the TensorRT engine is built for it, torch-compile compiles with
``dynamic=False`` and refuses to recompile, the CUDA graph replays one shape). A short batch
(the last one) is padded with copies of its last image to the artifact's batch and the
padding's outputs are dropped, as the latency check's accuracy check does.

:meth:`Artifact.identity` is what a resumed evaluation must find again in its ``run.json``:
backend, device, precision, batch, input size, the backend's options and what it reports
about itself (provider, typing, compile mode, precision hints, runtime versions), the ONNX
file's sha256 and the TensorRT engine's. Thread counts and file paths are left out (they do
not change what is computed, and shards run on other machines); a rebuilt TensorRT engine is
another artifact (its sha256 differs), so a resume never mixes two engines' detections.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.metadata
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..fileio import sha256_file
from .backends import BackendUnavailable, PrepareOptions, Runner, get_backend
from .requests import check_names

# What a backend's ``details`` say that decides what it computes (the rest: threads, paths,
# timings, say how it ran, not what).
IDENTITY_DETAILS = (
    "provider", "session_config", "onnx_precision", "fp16_converter", "opset", "bn_folded",
    "layout", "dtype", "onednn_fusion", "cuda_graphs", "cudnn_tf32", "compile_mode", "freezing",
    "dynamic", "fullgraph", "typing", "tensorrt", "builder_flags", "network_flags", "engine_sha256",
    "openvino", "requested_config", "inference_precision_hint", "performance_hint", "gpu")
RUNTIME_PACKAGES = {"onnxruntime": ("onnxruntime", "onnxruntime-gpu")}


def example_input(batch: int, input_hw: tuple[int, int]) -> Tensor:
    """The example a backend is prepared with (shapes, bindings, torch-compile's own check):
    the same seeded tensor the latency check uses, so both prepare the same artifact."""
    return torch.randn(batch, 3, *input_hw, generator=torch.Generator().manual_seed(0))


@dataclass(frozen=True)
class ArtifactSpec:
    """Which artifact: a backend at a device and precision, with backend options (e.g.
    ``provider`` for onnxruntime, ``typing`` for TensorRT, ``mode`` for torch-compile)."""

    backend: str
    device: str = "cpu"
    precision: str = "fp32"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_names(self.backend, self.device, self.precision)  # an InputError naming the field

    @property
    def label(self) -> str:
        return f"{self.backend}/{self.device}/{self.precision}"


@dataclass
class Artifact:
    spec: ArtifactSpec
    runner: Runner
    batch: int
    input_hw: tuple[int, int]
    identity: dict[str, Any]

    def forward(self, x: Tensor) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """``(cls_scores, bbox_preds)`` for ``x`` (n x 3 x H x W, n <= batch), as the PyTorch
        model returns them: padded to the artifact's batch, run, padding dropped."""
        n = x.shape[0]
        if n > self.batch or tuple(x.shape[2:]) != self.input_hw:
            raise InputError(f"the {self.spec.label} artifact takes {self.batch} x 3 x "
                             f"{self.input_hw[0]} x {self.input_hw[1]}, got "
                             f"{tuple(x.shape)}")
        padded = pad_batch(x, self.batch)
        outputs = [o[:n] for o in self.runner.infer(padded)]
        levels = len(outputs) // 2
        return tuple(outputs[:levels]), tuple(outputs[levels:])


def pad_batch(x: Tensor, batch: int) -> Tensor:
    """``x`` with copies of its last image appended up to ``batch`` images."""
    missing = batch - x.shape[0]
    if missing <= 0:
        return x
    return torch.cat([x, x[-1:].expand(missing, *x.shape[1:])])


def _plain(value: Any) -> Any:
    """A JSON value for the manifest: objects (a test's buffers) by their type name."""
    try:
        return json.loads(json.dumps(value, sort_keys=True))
    except (TypeError, ValueError):
        return f"<{type(value).__name__}>"


def _runtime_version(backend: str) -> str | None:
    for package in RUNTIME_PACKAGES.get(backend, ()):
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def identity_of(spec: ArtifactSpec, details: dict, batch: int,
                input_hw: tuple[int, int]) -> dict[str, Any]:
    """The artifact's identity for ``run.json`` (module docstring)."""
    identity: dict[str, Any] = {
        "backend": spec.backend, "device": spec.device, "precision": spec.precision,
        "batch": batch, "input_hw": list(input_hw),
        "options": {k: _plain(v) for k, v in sorted(spec.options.items())},
        "torch": torch.__version__}
    if version := _runtime_version(spec.backend):
        identity[spec.backend] = version
    for key in IDENTITY_DETAILS:
        if key in details:
            identity[key] = _plain(details[key])
    onnx = details.get("onnx")
    if onnx and Path(onnx).is_file():
        identity["onnx_sha256"] = sha256_file(Path(onnx))
    return identity


def prepare_artifact(spec: ArtifactSpec, model: nn.Module, input_hw: tuple[int, int],
                     batch: int, workdir: Path) -> Artifact:
    """Build ``spec``'s artifact of ``model`` for ``batch x 3 x H x W`` inputs, as the latency
    check does; :class:`BackendUnavailable` ("not run") with the reason when it cannot run
    here, the backend's own errors ("failed") when it breaks."""
    backend = get_backend(spec.backend, **spec.options)
    if reason := backend.unavailable(spec.device, spec.precision):
        raise BackendUnavailable(reason)
    first = next(model.parameters())
    if first.device.type != "cpu" or first.dtype != torch.float32:  # leave the caller's as is
        model = copy.deepcopy(model).cpu().float()
    model = model.eval()
    input_hw = (int(input_hw[0]), int(input_hw[1]))
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    runner = backend.prepare(model, example_input(batch, input_hw), spec.device, spec.precision,
                             PrepareOptions(workdir=workdir))
    if runner.infer is None:
        raise BackendUnavailable(f"the {spec.backend} runner cannot give its outputs for an "
                                 f"input, so it cannot be evaluated")
    return Artifact(spec, runner, batch, input_hw,
                    identity_of(spec, runner.details, batch, input_hw))


@contextlib.contextmanager
def true_fp32():
    """TF32 off while the FP32 reference runs on a GPU: it is the FP32 model, not an
    approximation of it (no-op on a CPU)."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.allow_tf32, matmul.allow_tf32
    cudnn.allow_tf32 = matmul.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = saved
