"""ONNX export of the tensor-mode network (no NMS, as the published latencies) and its check.

The exported graph takes ``input`` (N x 3 x H x W, normalised) and returns one output per
stride and branch: ``cls_8, cls_16, cls_32`` (class logits) then ``box_8, box_16, box_32``
(ltrb distances in input pixels). BatchNorm is folded into the preceding convolutions before
export by default (inference-only arithmetic, the same a deployment toolchain applies).

Parity: the ONNX file is run in ONNX Runtime (CPU, all graph optimisations) on the same
random input as PyTorch. Each output's max abs error must stay within
``PARITY_ATOL + PARITY_RTOL * max|torch output|`` (box outputs are in pixels, so the bound
scales with them); above it, :class:`ExportError` is raised.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..errors import Outcome, RtmbenchError, require
from ..fileio import keep_mode, open_temp_beside

PARITY_ATOL = 1e-4
PARITY_RTOL = 1e-4


class ExportError(RtmbenchError):
    """The export could not be written, or its outputs disagree with PyTorch: a failure."""

    outcome: ClassVar[Outcome] = "failed"


def output_names(strides: tuple[int, ...]) -> list[str]:
    return [f"cls_{s}" for s in strides] + [f"box_{s}" for s in strides]


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``conv -> bn`` pair (mmcv ConvModule names) fused."""
    folded = copy.deepcopy(model).eval()
    fused: dict[int, nn.Conv2d] = {}  # head convs are shared across levels: fuse per (conv, bn)
    for module in folded.modules():
        conv, bn = getattr(module, "conv", None), getattr(module, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            key = id(bn)
            if key not in fused:
                fused[key] = fuse_conv_bn_eval(conv, bn)
            module.conv, module.bn = fused[key], nn.Identity()
    return folded


class FlatOutputs(nn.Module):
    """Wraps RTMDet so that its outputs are a flat tuple in ``output_names`` order."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        cls_scores, bbox_preds = self.model(x)
        return (*cls_scores, *bbox_preds)


def _strides(model: nn.Module) -> tuple[int, ...]:
    return tuple(getattr(getattr(model, "bbox_head", None), "strides", (8, 16, 32)))


def export_onnx(model: nn.Module, path: str | Path, input_hw: tuple[int, int] = (640, 640),
                batch: int = 1, dynamic_batch: bool = False, opset: int = 17,
                fold_bn: bool = True) -> Path:
    """Write the tensor-mode network to ``path`` (atomically) and return the path.

    ``model`` may also be any module with one tensor input (e.g. the reference convolution):
    its outputs are then named ``output_0..``.
    """
    onnx = require("onnx", "onnx")
    path = Path(path)
    net = fold_batchnorm(model) if fold_bn else copy.deepcopy(model).eval()
    is_detector = hasattr(net, "bbox_head")
    wrapped = FlatOutputs(net) if is_detector else net
    x = torch.zeros(batch, _in_channels(net), *input_hw)
    with torch.no_grad():
        probe = wrapped(x)
    n_out = len(probe) if isinstance(probe, tuple) else 1
    names = output_names(_strides(net)) if is_detector else [f"output_{i}" for i in range(n_out)]
    dynamic_axes = ({n: {0: "batch"} for n in ["input", *names]} if dynamic_batch else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = open_temp_beside(path)  # umask's mode for a new file, the old one's if replaced
    try:
        keep_mode(fd, path)
    finally:
        os.close(fd)
    try:
        with torch.no_grad():
            # The TorchScript exporter: deterministic, fast, and emits exactly this opset.
            torch.onnx.export(wrapped, (x,), str(tmp), opset_version=opset, input_names=["input"],
                              output_names=names, dynamic_axes=dynamic_axes,
                              do_constant_folding=True, dynamo=False)
        onnx.checker.check_model(str(tmp))
        os.replace(tmp, path)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, RtmbenchError):
            raise
        raise ExportError(f"exporting the model to ONNX at {path} failed: {exc}. Check that "
                          f"the directory is writable and the opset ({opset}) is supported by "
                          f"the installed torch ({torch.__version__}).") from exc
    return path


def _in_channels(model: nn.Module) -> int:
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    return first.in_channels


@dataclass
class ParityReport:
    """ONNX Runtime vs PyTorch on one input: per-output max abs error and its bound."""

    max_abs_error: dict[str, float]
    bound: dict[str, float]

    @property
    def worst(self) -> float:
        return max(self.max_abs_error.values())

    @property
    def ok(self) -> bool:
        return all(self.max_abs_error[k] <= self.bound[k] for k in self.max_abs_error)

    def to_dict(self) -> dict:
        return {"max_abs_error": self.max_abs_error, "bound": self.bound, "ok": self.ok,
                "tolerance": {"atol": PARITY_ATOL, "rtol": PARITY_RTOL}}


def ort_cpu_session(onnx_path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session with every graph optimisation enabled."""
    ort = require("onnxruntime", "onnx")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def check_parity(model: nn.Module, onnx_path: str | Path, input_hw: tuple[int, int],
                 batch: int = 1, seed: int = 0) -> ParityReport:
    """Run ``onnx_path`` in ONNX Runtime and ``model`` in PyTorch on one random input."""
    session = ort_cpu_session(onnx_path)
    x = torch.randn(batch, _in_channels(model), *input_hw,
                    generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = model.eval()(x)
    ref = (*ref[0], *ref[1]) if hasattr(model, "bbox_head") else (
        ref if isinstance(ref, tuple) else (ref,))
    names = [o.name for o in session.get_outputs()]
    got = session.run(names, {session.get_inputs()[0].name: x.numpy()})
    errors, bounds = {}, {}
    for name, expected, actual in zip(names, ref, got, strict=True):
        errors[name] = float((expected - torch.from_numpy(actual)).abs().max())
        bounds[name] = PARITY_ATOL + PARITY_RTOL * float(expected.abs().max())
    return ParityReport(errors, bounds)


def export_and_check(model: nn.Module, path: str | Path, input_hw: tuple[int, int] = (640, 640),
                     batch: int = 1, dynamic_batch: bool = False, opset: int = 17,
                     fold_bn: bool = True) -> ParityReport:
    """Export, then fail with :class:`ExportError` if ONNX Runtime disagrees with PyTorch."""
    path = export_onnx(model, path, input_hw, batch, dynamic_batch, opset, fold_bn)
    report = check_parity(model, path, input_hw, batch)
    if not report.ok:
        bad = ", ".join(f"{k}: {v:.3g} > {report.bound[k]:.3g}"
                        for k, v in report.max_abs_error.items() if v > report.bound[k])
        raise ExportError(f"the ONNX file {path} disagrees with PyTorch beyond the tolerance "
                          f"(max abs error > {PARITY_ATOL} + {PARITY_RTOL} x max|output|): "
                          f"{bad}. Try another --opset or export without BN folding "
                          f"(--no-fold-bn) to find the step that diverges.")
    return report
