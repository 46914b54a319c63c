"""The latency check: one backend, device and precision, timed per :mod:`rtmbench.timing`.

Besides the statistics, each result reports achieved compute: FLOPs (mmengine convention, one
multiply-add = one FLOP, as :mod:`rtmbench.complexity` counts them) divided by the median
latency, and its fraction of a reference measured in the same run on the same backend, device
and precision: a 3x3 256->256 convolution on 1x256x80x80 (channels_last where the backend has
a layout), the machine's achieved peak for the kind of work RTMDet does.

Published latencies are judged against results in :mod:`rtmbench.judge`, never here.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError
from ..spec.zoo import ResolvedModel
from .artifact import example_input
from .backends import (
    BACKENDS,
    DEVICES,
    PRECISIONS,
    BackendError,
    BackendUnavailable,
    Runner,
    get_backend,
)
from .timing import Measurement, Protocol, Timer, collect_environment, measure

REFERENCE_SHAPE = (1, 256, 80, 80)


class ReferenceConv(nn.Module):
    """3x3 convolution, 256 -> 256 channels, stride 1: dense, compute-bound work."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(256, 256, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@dataclass
class LatencyResult:
    status: str  # "measured" | "not run"
    reason: str | None
    backend: str
    device: str
    precision: str
    metrics: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    achieved_gflops: float | None = None
    peak_gflops: float | None = None
    # achieved / peak: how close to the machine's limit this size runs (higher is better)
    fraction_of_peak: float | None = None
    # model latency / reference-conv latency, both measured in this run on this backend: the
    # machine-independent figure the gate compares (higher is slower)
    ratio_to_reference: float | None = None
    model: str | None = None
    input_hw: tuple[int, int] | None = None
    batch: int = 1
    flops: int | None = None
    details: dict = field(default_factory=dict)  # what the backend really ran
    reference: dict | None = None  # the reference convolution's own measurement
    # the timed artifact against the FP32 PyTorch model (measure.accuracy), when asked for
    accuracy: dict | None = None
    # GPU clocks, power, temperature, throttling before/after timing (measure.gpu_conditions)
    gpu_conditions: dict | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        out["input_hw"] = list(self.input_hw) if self.input_hw else None
        return out


def _validate(backend: str, device: str, precision: str) -> None:
    for value, allowed, what in ((backend, BACKENDS, "backend"), (device, DEVICES, "device"),
                                 (precision, PRECISIONS, "precision")):
        if value not in allowed:
            raise InputError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}.")


def count_model_flops(model: nn.Module, example: torch.Tensor) -> int:
    from .complexity import count_flops_mmengine

    return count_flops_mmengine(model.eval(), example)


def _time(backend_name: str, backend_options: dict, module: nn.Module, example: torch.Tensor,
          device: str, precision: str, include_transfer: bool, protocol: Protocol,
          timer: Timer | None, workdir: Path, label: str, progress: bool,
          check: Callable[[Runner], dict] | None = None, probe=None, readings: dict | None = None
          ) -> tuple[Measurement, dict, dict | None]:
    """Prepare, time, then (``check``) measure the accuracy of the very runner timed;
    ``probe`` (NVML) is read into ``readings`` right before and after the timed phase."""
    backend = get_backend(backend_name, **backend_options)
    runner = backend.prepare(module, example, device, precision,
                             include_transfer=include_transfer, workdir=workdir)
    if probe is not None:
        readings["before"] = probe.snapshot()
    measurement = measure(runner.run, protocol, timer or runner.timer, progress, label)
    runner.synchronize()
    if probe is not None:
        readings["after"] = probe.snapshot()
    checked = check(runner) if check is not None else None
    return measurement, runner.details, checked


def measure_latency(model_entry: ResolvedModel, backend: str, device: str, precision: str, *,
                    model: nn.Module | None = None, input_hw: tuple[int, int] | None = None,
                    batch: int = 1, warmup_s: float = 1.0, min_iterations: int = 50,
                    min_duration_s: float = 3.0, include_transfer: bool = False,
                    reference: bool = True, backend_options: dict | None = None,
                    timer: Timer | None = None, progress: bool = False,
                    accuracy_images=None, test_settings=None) -> LatencyResult:
    """Time ``model`` (default: the zoo entry's architecture) on one backend.

    ``input_hw`` is (height, width), default the zoo's input size. ``timer`` replaces the
    backend's clock (tests); ``backend_options`` go to the backend (e.g. ``layout``).
    ``accuracy_images`` (:class:`.accuracy.AccuracyImages`, at ``input_hw``): after timing,
    the same runner's outputs are compared with ``model`` in FP32 on them
    (``result.accuracy``), post-processed with ``test_settings`` (default: the zoo's).
    Returns a "not run" result with the exact reason when the backend cannot run here.
    """
    _validate(backend, device, precision)
    environment = collect_environment()
    width, height = model_entry.input_size
    input_hw = tuple(input_hw) if input_hw else (height, width)
    base = dict(backend=backend, device=device, precision=precision, environment=environment,
                model=model_entry.name, input_hw=input_hw, batch=batch)
    options = backend_options or {}
    reason = get_backend(backend, **options).unavailable(device, precision)
    if reason:
        return LatencyResult("not run", reason, **base)
    if model is None:
        from ..models import build_rtmdet

        model = build_rtmdet(model_entry.architecture.model_dump(), model_entry.num_classes)
    first = next(model.parameters())
    if first.device.type != "cpu" or first.dtype != torch.float32:  # leave the caller's as is
        model = copy.deepcopy(model).cpu().float()
    model.eval()
    example = example_input(batch, input_hw)  # what evaluate --backend prepares with, too
    protocol = Protocol(warmup_s=warmup_s, min_iterations=min_iterations,
                        min_duration_s=min_duration_s)
    check = None
    if accuracy_images is not None:
        from ..models.postprocess import TestSettings
        from .accuracy import artifact_accuracy

        settings = test_settings or TestSettings.from_test_cfg(model_entry.test_cfg.model_dump())

        def check(runner: Runner) -> dict:
            if runner.infer is None:
                raise BackendError(f"the {backend} runner cannot give its outputs for an input")
            # the reference on the unit's GPU (in true FP32) when torch has one, else the CPU
            where = device if device == "cuda" and torch.cuda.is_available() else "cpu"
            return artifact_accuracy(runner.infer, model, accuracy_images, settings, batch,
                                     reference_device=where)

    probe, no_probe, readings = None, None, {}
    if device == "cuda":  # clocks, power, temperature, throttling around the timed phase
        from .gpu_conditions import open_probe

        probe, no_probe = open_probe()
    with tempfile.TemporaryDirectory(prefix="rtmbench-latency-") as tmp:
        try:
            meas, details, accuracy = _time(
                backend, options, model, example, device, precision, include_transfer,
                protocol, timer, Path(tmp) / "model",
                f"{model_entry.size} {backend}/{device}/{precision}", progress, check,
                probe, readings)
            ref = None
            if reference:
                ref = _measure_reference(backend, options, device, precision, protocol, timer,
                                         Path(tmp) / "reference", progress)
        except BackendUnavailable as exc:
            return LatencyResult("not run", str(exc), **base)
    metrics = meas.stats(batch)
    flops = count_model_flops(model, example)
    achieved = flops / (metrics["median_ms"] / 1e3) / 1e9
    gpu_conditions = None
    if device == "cuda":
        from .gpu_conditions import conditions

        gpu_conditions = conditions(readings.get("before"), readings.get("after"),
                                    probe.system() if probe is not None else None, no_probe)
        metrics |= {"throttled": gpu_conditions["throttled"],
                    "throttle_reasons": gpu_conditions["throttle_reasons"]}
    result = LatencyResult("measured", None, metrics=metrics, achieved_gflops=achieved,
                           flops=flops, details=details, accuracy=accuracy,
                           gpu_conditions=gpu_conditions, **base)
    if ref is not None:
        result.reference = ref
        result.peak_gflops = ref["achieved_gflops"]
        result.fraction_of_peak = achieved / ref["achieved_gflops"]
        result.ratio_to_reference = metrics["median_ms"] / ref["metrics"]["median_ms"]
    return result


def _measure_reference(backend: str, options: dict, device: str, precision: str,
                       protocol: Protocol, timer: Timer | None, workdir: Path,
                       progress: bool) -> dict:
    """The reference convolution, timed on the same backend with the same protocol."""
    conv = ReferenceConv().eval()
    example = torch.randn(*REFERENCE_SHAPE, generator=torch.Generator().manual_seed(1))
    if backend in ("torch", "torch-compile"):  # the machine's peak: always the fast layout
        options = options | {"layout": "channels_last"}
    meas, details, _ = _time(backend, options, conv, example, device, precision, False,
                             protocol, timer, workdir, "reference conv", progress)
    stats = meas.stats()
    flops = count_model_flops(conv, example)
    return {"what": "3x3 conv 256->256 on 1x256x80x80", "flops": flops, "metrics": stats,
            "achieved_gflops": flops / (stats["median_ms"] / 1e3) / 1e9, "details": details}


def format_result(result: LatencyResult) -> str:
    """A human-readable summary: statistics, achieved compute, environment."""
    head = (f"{result.model} {result.backend}/{result.device}/{result.precision} "
            f"batch {result.batch} input {result.input_hw[1]}x{result.input_hw[0]} (WxH)")
    lines = [head]
    if result.status != "measured":
        lines.append(f"  not run: {result.reason}")
    else:
        m = result.metrics
        lines.append(f"  median {m['median_ms']:.3f} ms  mean {m['mean_ms']:.3f}  "
                     f"min {m['min_ms']:.3f}  p90 {m['p90_ms']:.3f}  p99 {m['p99_ms']:.3f}  "
                     f"stdev {m['stdev_ms']:.3f}  CV {m['cv']:.3f}")
        lines.append(f"  throughput {m['throughput_ips']:.1f} img/s over {m['samples']} samples"
                     f" ({m['warmup_iterations']} warm-up); outliers re-measured: "
                     f"{m['outliers_remeasured']}" + ("  ** CONTENTION: run flagged **"
                                                      if m["contention"] else ""))
        lines.append(f"  achieved {result.achieved_gflops:.1f} GFLOP/s "
                     f"({result.flops / 1e9:.3f} GFLOPs, mmengine convention)")
        if result.peak_gflops:
            lines.append(f"  reference conv {result.peak_gflops:.1f} GFLOP/s on the same backend:"
                         f" {result.fraction_of_peak:.2f} of peak; latency = "
                         f"{result.ratio_to_reference:.2f}x the reference conv's")
        if "compile_s" in result.details:
            lines.append(f"  compiled in {result.details['compile_s']:.1f} s "
                         f"({result.details.get('mode')}); not part of the latency")
        lines.append(f"  ran: {result.details}")
        if result.accuracy:
            a = result.accuracy
            lines.append(f"  accuracy vs PyTorch FP32 on {a['accuracy_images']} images: "
                         f"agreement AP {a['agreement_ap']:.3f} (AP50 {a['agreement_ap50']:.3f})"
                         f", max output error {a['output_max_abs_error']:.3g} "
                         f"({a['output_max_rel_error']:.2g} of the output range)"
                         + (f", box AP {a['artifact_box_ap']:.3f} vs {a['reference_box_ap']:.3f}"
                            if "artifact_box_ap" in a else ""))
    env = result.environment
    lines.append("  environment: " + ", ".join(f"{k}={v}" for k, v in env.items()))
    return "\n".join(lines)
