"""ONNX export of the tensor-mode network (no NMS, as the published latencies) and its check.

The exported graph takes ``input`` (N x 3 x H x W, normalised) and returns one output per
stride and branch: ``cls_8, cls_16, cls_32`` (class logits) then ``box_8, box_16, box_32``
(ltrb distances in input pixels). BatchNorm is folded into the preceding convolutions before
export by default (inference-only arithmetic, the same a deployment toolchain applies).

What is exported is one :class:`~.requests.ExportRequest`: input size and batch (or a dynamic
batch axis), opset, BN folding, precision and FP16 converter.

Precision (``precision="fp16"``): the FP32 graph is exported, then converted so that weights
and activations are FP16 while the input and outputs stay FP32, with one Cast at each edge
(``keep_io_types``, what ModelOpt AutoCast gives and what TensorRT 11's strongly typed networks
need: "FP16 comes from an ONNX model that is already FP16", NVIDIA's "Migrating from TensorRT
10.x to 11.x", docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/). The converter is
ModelOpt AutoCast (``modelopt.onnx.autocast.convert_to_mixed_precision``) when it is installed
and asked for, else onnxconverter-common's ``convert_float_to_float16(keep_io_types=True)``
with its default op block list (Resize stays FP32: nearest upsampling is exact either way).
The file's metadata says which (``rtmbench.precision``, ``rtmbench.fp16_converter``).

Parity: the ONNX file is run in ONNX Runtime (CPU, all graph optimisations) on the same
random input as PyTorch (the FP32 model, always). Each output's max abs error must stay within
``atol + rtol * max|torch output|`` (box outputs are in pixels, so the bound scales with them):
``PARITY_ATOL/RTOL`` for FP32, ``FP16_PARITY_ATOL/RTOL`` for FP16; above it,
:class:`ExportError` is raised.

How the FP16 tolerance was chosen (well-conditioned weights, ``models.init``):
FP16 arithmetic itself (the BN-folded network run in torch.float16 on the CPU, FP32
accumulation as GPU tensor cores do) stays within 8.7e-4 x max|output| of the FP32 model on every
output, for all five sizes at 160x160 and tiny/s at 640x640 (worst: tiny cls_8). The FP16 ONNX in
ONNX Runtime's CPU provider stays within 3.5e-4 x max|output|: that provider has no FP16
convolution kernels on x86, so it inserts Casts and computes in FP32 with FP16-rounded weights
(what the CPU check proves is that the graph is well typed and its weights are right, not that
FP16 arithmetic is accurate; the accuracy check of each latency unit does that on the device).
The bound, ``1e-3 + 5e-3 x max|output|``, is 5 FP16 machine epsilons (2^-10) of the output
range: about 6x the worst FP16 error measured, and far below what a wrong graph gives (another
seed's weights: errors of the order of the outputs themselves).
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..errors import Outcome, PackageMissing, RtmbenchError, import_problem, require
from ..fileio import keep_mode, open_temp_beside
from .requests import FP16_CONVERTERS, ExportRequest

PARITY_ATOL = 1e-4
PARITY_RTOL = 1e-4
FP16_PARITY_ATOL = 1e-3
FP16_PARITY_RTOL = 5e-3


def parity_tolerance(precision: str) -> tuple[float, float]:
    """(atol, rtol) an ONNX file of ``precision`` must meet against the FP32 PyTorch model."""
    return (FP16_PARITY_ATOL, FP16_PARITY_RTOL) if precision == "fp16" else (PARITY_ATOL,
                                                                             PARITY_RTOL)


class ExportError(RtmbenchError):
    """The export could not be written, or its outputs disagree with PyTorch: a failure.

    ``fields``: the :class:`~.requests.ExportRequest` fields whose change may fix it (the
    message names them in words; the command line adds its flags for them)."""

    outcome: ClassVar[Outcome] = "failed"

    def __init__(self, *args: object, fields: tuple[str, ...] = ()) -> None:
        super().__init__(*args)
        self.fields = tuple(fields)

    def __reduce__(self):  # pickled (a worker process's error) with its fields
        return _export_error, (self.args, self.fields)


def _export_error(args: tuple, fields: tuple[str, ...]) -> ExportError:
    return ExportError(*args, fields=fields)


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


def export_request_for(example: Tensor, opset: int, precision: str) -> ExportRequest:
    """The export a backend builds from: static shapes, those of ``example`` (N x 3 x H x W),
    BN folded, the default FP16 converter."""
    return ExportRequest(input_hw=tuple(example.shape[2:]), batch=int(example.shape[0]),
                         opset=opset, precision=precision)


def backend_onnx(model: nn.Module, example: Tensor, opset: int, precision: str,
                 given: str | Path | None, workdir: Path) -> Path:
    """The ONNX file an ONNX-reading backend builds from: ``given`` (a file exported before,
    :class:`~.backends.base.PrepareOptions`' ``onnx_path``) when there is one, else the model
    exported now into ``workdir`` as ``model-<precision>.onnx`` (:func:`export_request_for`)."""
    if given is not None:
        return Path(given)
    return export_onnx(model, workdir / f"model-{precision}.onnx",
                       export_request_for(example, opset, precision))


def export_onnx(model: nn.Module, path: str | Path,
                request: ExportRequest | None = None) -> Path:
    """Write the tensor-mode network to ``path`` (atomically) and return the path; what is
    exported: ``request`` (:class:`~.requests.ExportRequest`, default 640x640, batch 1,
    opset 17, BN folded, FP32).

    ``model`` may also be any module with one tensor input (e.g. the reference convolution):
    its outputs are then named ``output_0..``. ``precision="fp16"``: FP16 weights and
    activations, FP32 input and outputs (see the module docstring; ``fp16_converter`` is
    ``auto``, ``onnxconverter-common`` or ``modelopt``).
    """
    request = request or ExportRequest()
    onnx = require("onnx", "onnx")
    path = Path(path)
    opset = request.opset
    net = fold_batchnorm(model) if request.fold_bn else copy.deepcopy(model).eval()
    is_detector = hasattr(net, "bbox_head")
    wrapped = FlatOutputs(net) if is_detector else net
    x = torch.zeros(request.batch, _in_channels(net), *request.input_hw)
    with torch.no_grad():
        probe = wrapped(x)
    n_out = len(probe) if isinstance(probe, tuple) else 1
    names = output_names(_strides(net)) if is_detector else [f"output_{i}" for i in range(n_out)]
    dynamic_axes = ({n: {0: "batch"} for n in ["input", *names]} if request.dynamic_batch
                    else None)
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
        if request.precision == "fp16":
            converted = convert_to_fp16(onnx.load(str(tmp)), request.fp16_converter)
            onnx.save(converted, str(tmp))
        else:
            _set_metadata(onnx, str(tmp), {"rtmbench.precision": "fp32"})
        onnx.checker.check_model(str(tmp))
        os.replace(tmp, path)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, RtmbenchError):
            raise
        raise ExportError(f"exporting the model to ONNX at {path} failed: {exc}. Check that "
                          f"the directory is writable and the opset ({opset}) is supported by "
                          f"the installed torch ({torch.__version__}).",
                          fields=("opset",)) from exc
    return path


def _set_metadata(onnx, path: str, values: dict[str, str]) -> None:
    model = onnx.load(path)
    _merge_metadata(model, values)
    onnx.save(model, path)


def _merge_metadata(model, values: dict[str, str]) -> None:
    existing = {p.key: p for p in model.metadata_props}
    for key, value in values.items():
        prop = existing.get(key) or model.metadata_props.add()
        prop.key, prop.value = key, value


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """The ``rtmbench.*`` metadata of an exported file (precision, FP16 converter)."""
    onnx = require("onnx", "onnx")
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props if p.key.startswith("rtmbench.")}


def _modelopt_autocast():
    """ModelOpt AutoCast's module, or None when ModelOpt (or a package its ONNX part needs) is
    not installed; installed and failing to import raises PackageBroken."""
    import importlib

    try:
        return importlib.import_module("modelopt.onnx.autocast")
    except ImportError as exc:
        problem = import_problem("modelopt.onnx.autocast", exc,
                                 what="the FP16 converter 'modelopt'")
        if isinstance(problem, PackageMissing):
            return None
        raise problem from exc


def convert_to_fp16(model, converter: str = "auto"):
    """``model`` (an FP32 ``onnx.ModelProto``) with FP16 weights and activations and FP32
    input/outputs (Casts at the edges), its metadata naming the converter that did it.

    ``auto``: ModelOpt AutoCast when installed, else onnxconverter-common. Either result is
    checked against PyTorch by :func:`check_parity` with the FP16 tolerance.
    """
    if converter not in FP16_CONVERTERS:
        raise ExportError(f"unknown FP16 converter {converter!r}; use one of "
                          f"{', '.join(FP16_CONVERTERS)}.")
    autocast = _modelopt_autocast() if converter in ("auto", "modelopt") else None
    if converter == "modelopt" and autocast is None:
        raise PackageMissing("the FP16 converter 'modelopt' needs NVIDIA ModelOpt "
                             "(pip install nvidia-modelopt[onnx]); or use the FP16 converter "
                             "onnxconverter-common.")
    if autocast is not None:
        # NVIDIA's TensorRT 11 migration guide: convert_to_mixed_precision(onnx_path=...,
        # low_precision_type="fp16", keep_io_types=True). It takes a path.
        with tempfile.TemporaryDirectory(prefix="rtmbench-autocast-") as tmp:
            src = Path(tmp) / "fp32.onnx"
            require("onnx", "onnx").save(model, str(src))
            converted = autocast.convert_to_mixed_precision(
                onnx_path=str(src), low_precision_type="fp16", keep_io_types=True)
        name = f"modelopt-autocast {_version('nvidia-modelopt')}"
    else:
        float16 = require("onnxconverter_common.float16", "onnx")
        with warnings.catch_warnings():
            # "the float32 number 8e-08 will be truncated": tiny weights round to FP16's
            # smallest values, which the tolerance check below accounts for
            warnings.filterwarnings("ignore", message=".*will be truncated.*")
            converted = float16.convert_float_to_float16(model, keep_io_types=True)
        name = f"onnxconverter-common {_version('onnxconverter-common')}"
    _merge_metadata(converted, {"rtmbench.precision": "fp16", "rtmbench.fp16_converter": name})
    return converted


def _version(package: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown)"


def _in_channels(model: nn.Module) -> int:
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    return first.in_channels


@dataclass
class ParityReport:
    """ONNX Runtime vs PyTorch on one input: per-output max abs error and its bound."""

    max_abs_error: dict[str, float]
    bound: dict[str, float]
    precision: str = "fp32"
    # max abs error / max|PyTorch output|, per output
    relative_error: dict[str, float] = field(default_factory=dict)

    @property
    def worst(self) -> float:
        return max(self.max_abs_error.values())

    @property
    def ok(self) -> bool:
        return all(self.max_abs_error[k] <= self.bound[k] for k in self.max_abs_error)

    @property
    def worst_relative(self) -> float:
        return max(self.relative_error.values(), default=0.0)

    def to_dict(self) -> dict:
        atol, rtol = parity_tolerance(self.precision)
        return {"max_abs_error": self.max_abs_error, "relative_error": self.relative_error,
                "bound": self.bound, "ok": self.ok, "precision": self.precision,
                "tolerance": {"atol": atol, "rtol": rtol}}


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
                 batch: int = 1, probe: Tensor | None = None,
                 precision: str | None = None) -> ParityReport:
    """Run ``onnx_path`` in ONNX Runtime and ``model`` (FP32) in PyTorch on one input: ``probe``
    (e.g. real or generated images through the test pipeline: what the model is for), else
    seeded Gaussian noise of ``batch x 3 x H x W``; the tolerance is the file's precision's
    (from its metadata unless ``precision`` is given). ONNX Runtime unable to load or run the
    file is an ExportError."""
    precision = precision or onnx_metadata(onnx_path).get("rtmbench.precision", "fp32")
    atol, rtol = parity_tolerance(precision)
    x = probe if probe is not None else torch.randn(
        batch, _in_channels(model), *input_hw, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model.eval()(x)
    ref = (*ref[0], *ref[1]) if hasattr(model, "bbox_head") else (
        ref if isinstance(ref, tuple) else (ref,))
    try:
        session = ort_cpu_session(onnx_path)
        names = [o.name for o in session.get_outputs()]
        got = session.run(names, {session.get_inputs()[0].name: x.numpy()})
    except RtmbenchError:
        raise
    except Exception as exc:  # onnxruntime's Fail, InvalidGraph, RuntimeError...
        raise ExportError(f"ONNX Runtime could not run the exported file {onnx_path}: "
                          f"{type(exc).__name__}: {exc}") from exc
    errors, bounds, relative = {}, {}, {}
    for name, expected, actual in zip(names, ref, got, strict=True):
        errors[name] = float((expected - torch.from_numpy(actual).float()).abs().max())
        scale = float(expected.abs().max())
        bounds[name] = atol + rtol * scale
        relative[name] = errors[name] / scale if scale > 0 else errors[name]
    return ParityReport(errors, bounds, precision, relative)


def export_and_check(model: nn.Module, path: str | Path, request: ExportRequest | None = None,
                     probe: Tensor | None = None) -> ParityReport:
    """Export ``request`` (:func:`export_onnx`), check the file in ONNX Runtime against
    PyTorch (on ``probe``, batch x 3 x H x W, when given; see :func:`check_parity`), and only
    then put it at ``path``.

    The file is written and checked under a temporary name beside ``path`` and renamed onto it
    once it passed (atomic: same directory). A failed check (:class:`ExportError`), an error
    or Ctrl-C removes it: ``path`` is then exactly as before (absent, or the file it held).
    """
    request = request or ExportRequest()
    precision = request.precision
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, unchecked = open_temp_beside(path)
    except OSError as exc:
        raise ExportError(f"cannot write the ONNX file beside {path} ({exc.strerror}); choose "
                          f"a writable path.") from None
    os.close(fd)
    try:
        try:
            written = Path(export_onnx(model, unchecked, request))
            report = check_parity(model, written, request.input_hw, request.batch, probe,
                                  precision)
        except ExportError as exc:
            # the message names the file the user asked for, not the temporary one
            raise ExportError(f"{str(exc).replace(str(unchecked), str(path))} "
                              f"{_untouched(path)}", fields=exc.fields) from exc
        atol, rtol = parity_tolerance(precision)
        if not report.ok:
            bad = ", ".join(f"{k}: {v:.3g} > {report.bound[k]:.3g}"
                            for k, v in report.max_abs_error.items() if v > report.bound[k])
            raise ExportError(f"the ONNX export for {path} disagrees with PyTorch beyond the "
                              f"tolerance of {precision} files (max abs error > {atol} + {rtol} "
                              f"x max|output|): {bad}. Try another opset, or export without "
                              f"BN folding, to find the step that diverges. "
                              f"{_untouched(path)}", fields=("opset", "fold_bn"))
        fd = os.open(written, os.O_RDONLY)
        try:
            keep_mode(fd, path)  # a replaced file keeps its permissions
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(written, path)
    except BaseException:
        unchecked.unlink(missing_ok=True)
        raise
    return report


def _untouched(path: Path) -> str:
    return (f"{path} was left as it was." if path.exists()
            else f"Nothing was written to {path}.")
