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
import dataclasses
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..spec.zoo import ResolvedModel
from .artifact import example_input
from .backends import (
    BackendError,
    BackendUnavailable,
    PrepareOptions,
    Runner,
    get_backend,
)
from .requests import NO_REMEASURE, LatencyRequest, Protocol, Remeasure
from .timing import (
    Measurement,
    Timer,
    collect_environment,
    measure,
    other_cores_during,
)

if TYPE_CHECKING:
    from .accuracy import AccuracyCheck

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


def count_model_flops(model: nn.Module, example: torch.Tensor) -> int:
    from .complexity import count_flops_mmengine

    return count_flops_mmengine(model.eval(), example)


class _Artifact:
    """A backend's prepared artifact for one module and input: its runner, timed on demand.
    ``request`` says which backend (and its options), device, precision and whether the input
    copy is timed."""

    def __init__(self, request: LatencyRequest, module: nn.Module, example: torch.Tensor,
                 workdir: Path) -> None:
        self.backend = get_backend(request.backend, **request.options.kwargs())
        self.request, self.module, self.example = request, module, example
        self.workdir = workdir
        self.builds = 0
        self.prepare()

    def prepare(self) -> None:
        start = time.monotonic()
        self.builds += 1
        workdir = self.workdir if self.builds == 1 else self.workdir / f"build-{self.builds}"
        self.runner = self.backend.prepare(
            self.module, self.example, self.request.device, self.request.precision,
            PrepareOptions(include_transfer=self.request.include_transfer, workdir=workdir))
        self.prepare_s = time.monotonic() - start

    @property
    def autotuned(self) -> bool:
        return self.backend.autotuned(self.request.device, self.request.precision)

    def time(self, protocol: Protocol, timer: Timer | None, progress: bool, label: str,
             probe=None, readings: dict | None = None) -> Measurement:
        """The protocol on this runner; ``probe`` (NVML) is read into ``readings`` right before
        and after the timed phase."""
        if probe is not None:
            readings["before"] = probe.snapshot()
        measurement = measure(self.runner.run, protocol, timer or self.runner.timer, progress,
                              label)
        self.runner.synchronize()
        if probe is not None:
            readings["after"] = probe.snapshot()
        return measurement


def measure_latency(model_entry: ResolvedModel, request: LatencyRequest,
                    model: nn.Module | None = None, *, timer: Timer | None = None,
                    progress: bool = False, accuracy: AccuracyCheck | None = None
                    ) -> LatencyResult:
    """Time ``model`` (default: the zoo entry's architecture) as ``request``
    (:class:`~.requests.LatencyRequest`) says: backend and its options, device, precision,
    input size (default the zoo's), batch, timing protocol, reference convolution, input copy,
    and how a contended timing is taken again (``request.remeasure``).

    ``timer`` replaces the backend's clock (tests). ``accuracy``
    (:class:`.accuracy.AccuracyCheck`, images at the request's input size): after timing, the
    same runner's outputs are compared with ``model`` in FP32 on its images
    (``result.accuracy``), post-processed with its test settings (default: the zoo's).
    Returns a "not run" result with the exact reason when the backend cannot run here.
    """
    environment = collect_environment()
    width, height = model_entry.input_size
    input_hw = request.input_hw or (height, width)
    batch = request.batch
    base = dict(backend=request.backend, device=request.device, precision=request.precision,
                environment=environment, model=model_entry.name, input_hw=input_hw, batch=batch)
    reason = get_backend(request.backend, **request.options.kwargs()).unavailable(
        request.device, request.precision)
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
    check = _accuracy_check(model_entry, request, model, accuracy)
    probe, no_probe, readings = None, None, {}
    if request.device == "cuda":  # clocks, power, temperature, throttling around the timing
        from .gpu_conditions import open_probe

        probe, no_probe = open_probe()
    label = f"{model_entry.size} {request.label}"
    with tempfile.TemporaryDirectory(prefix="rtmbench-latency-") as tmp:
        try:
            artifact = _Artifact(request, model, example, Path(tmp) / "model")
            ref_artifact = (_reference_artifact(request, Path(tmp) / "reference")
                            if request.reference else None)
            timing = _Timing(request, timer, progress, (probe, readings))
            meas, ref_meas = timing.until_quiet(artifact, ref_artifact, label)
            details = artifact.runner.details
            accuracy_metrics = check(artifact.runner) if check is not None else None
            ref = _reference_result(ref_meas, ref_artifact) if ref_meas is not None else None
        except BackendUnavailable as exc:
            return LatencyResult("not run", str(exc), **base)
    if len(timing.attempts) > 1 or timing.stopped:
        details = {**details, "remeasure": {"attempts": timing.attempts,
                                            "stopped": timing.stopped}}
    metrics = meas.stats(batch)
    flops = count_model_flops(model, example)
    achieved = flops / (metrics["median_ms"] / 1e3) / 1e9
    gpu_conditions = None
    if request.device == "cuda":
        from .gpu_conditions import conditions

        gpu_conditions = conditions(readings.get("before"), readings.get("after"),
                                    probe.system() if probe is not None else None, no_probe)
        metrics |= {"throttled": gpu_conditions["throttled"],
                    "throttle_reasons": gpu_conditions["throttle_reasons"]}
    result = LatencyResult("measured", None, metrics=metrics, achieved_gflops=achieved,
                           flops=flops, details=details, accuracy=accuracy_metrics,
                           gpu_conditions=gpu_conditions, **base)
    if ref is not None:
        result.reference = ref
        result.peak_gflops = ref["achieved_gflops"]
        result.fraction_of_peak = achieved / ref["achieved_gflops"]
        result.ratio_to_reference = metrics["median_ms"] / ref["metrics"]["median_ms"]
    return result


def _accuracy_check(model_entry: ResolvedModel, request: LatencyRequest, model: nn.Module,
                    accuracy: AccuracyCheck | None) -> Callable[[Runner], dict] | None:
    """The accuracy check of the timed runner, as a function of it (None: none asked for)."""
    if accuracy is None:
        return None
    from .accuracy import artifact_accuracy

    accuracy = accuracy.for_model(model_entry)

    def check(runner: Runner) -> dict:
        if runner.infer is None:
            raise BackendError(f"the {request.backend} runner cannot give its outputs for an "
                               f"input")
        # the reference on the unit's GPU (in true FP32) when torch has one, else the CPU
        where = ("cuda" if request.device == "cuda" and torch.cuda.is_available()
                 else "cpu")
        return artifact_accuracy(runner.infer, model, accuracy, request.batch,
                                 reference_device=where)

    return check


class _Timing:
    """The timings of one unit: the model's artifact and its reference, timed again while
    contended as the request's re-measure policy allows (:class:`~.requests.Remeasure`).
    ``attempts`` logs each timing; ``stopped`` says why no further one was made (None: the
    last was quiet)."""

    def __init__(self, request: LatencyRequest, timer: Timer | None, progress: bool,
                 gpu_probe: tuple) -> None:
        self.protocol, self.policy = request.protocol, request.remeasure
        self.timer, self.progress = timer, progress
        self.probe, self.readings = gpu_probe
        self.attempts: list[dict] = []
        self.stopped: str | None = None

    def until_quiet(self, artifact: _Artifact, ref_artifact: _Artifact | None, label: str
                    ) -> tuple[Measurement, Measurement | None]:
        """The last timing of ``artifact`` and of ``ref_artifact`` (None: no reference)."""
        spent = 0.0  # seconds of re-measuring (waiting for quiet and rebuilds included)
        while True:
            start = time.monotonic()
            meas = artifact.time(self.protocol, self.timer, self.progress, label, self.probe,
                                 self.readings)
            ref_meas = (ref_artifact.time(self.protocol, self.timer, self.progress,
                                          "reference conv")
                        if ref_artifact is not None else None)
            timed_s = time.monotonic() - start
            if self.attempts:
                spent += timed_s
            contended = meas.contention or bool(ref_meas and ref_meas.contention)
            self.attempts.append({"contention": contended, "timed_s": round(timed_s, 3),
                                  "other_processes_cores": _rounded(meas.other_cores),
                                  "builds": artifact.builds})
            if not contended:
                return meas, ref_meas
            self.stopped, waited = _next_attempt(self.policy, self.attempts, spent, artifact,
                                                 self.protocol)
            spent += waited
            if self.stopped:
                return meas, ref_meas
            if artifact.autotuned:  # its kernels were picked while the machine was busy
                rebuild = time.monotonic()
                artifact.prepare()
                if ref_artifact is not None:
                    ref_artifact.prepare()
                spent += time.monotonic() - rebuild


def _rounded(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def _next_attempt(policy: Remeasure, attempts: list[dict], spent: float, artifact: _Artifact,
                  protocol: Protocol) -> tuple[str | None, float]:
    """(why no further attempt is made, or None; seconds spent deciding)."""
    if len(attempts) > policy.attempts:
        return (f"contended in all {len(attempts)} attempts" if policy.attempts else
                "contended; re-measuring is off"), 0.0
    # default: room for one more attempt like the first (and the wait for quiet before it)
    budget = (policy.budget_s if policy.budget_s is not None
              else attempts[0]["timed_s"] + policy.quiet_s)
    cost = attempts[-1]["timed_s"] + (artifact.prepare_s if artifact.autotuned else 0.0)
    if spent + policy.quiet_s + cost > budget:
        return (f"contended; another attempt (~{cost:.0f} s) would pass the re-measure budget "
                f"of {budget:.0f} s"), 0.0
    start = time.monotonic()
    others = other_cores_during(policy.quiet_s)
    waited = time.monotonic() - start
    if others is not None and others > protocol.busy_other_cores:
        return (f"contended, and other processes still kept {others:.2f} cores busy: the load "
                f"is sustained; re-measure on a quiet machine"), waited
    return None, waited


def _reference_artifact(request: LatencyRequest, workdir: Path) -> _Artifact:
    """The reference convolution, prepared on the same backend, device and precision."""
    conv = ReferenceConv().eval()
    example = torch.randn(*REFERENCE_SHAPE, generator=torch.Generator().manual_seed(1))
    options = request.options
    if request.backend in ("torch", "torch-compile"):  # the machine's peak: the fast layout
        options = dataclasses.replace(options, layout="channels_last")
    return _Artifact(dataclasses.replace(request, options=options, include_transfer=False),
                     conv, example, workdir)


def _reference_result(meas: Measurement, artifact: _Artifact) -> dict:
    """The reference convolution's measurement as a result keeps it."""
    stats = meas.stats()
    flops = count_model_flops(artifact.module, artifact.example)
    return {"what": "3x3 conv 256->256 on 1x256x80x80", "flops": flops, "metrics": stats,
            "achieved_gflops": flops / (stats["median_ms"] / 1e3) / 1e9,
            "details": artifact.runner.details}


def describe_details(details: dict) -> str:
    """What a backend ran, for people: ``layout channels_last, bn_folded yes, ...`` (nested
    values and the re-measure log are left to the JSON output and the record)."""
    def shown(value) -> str:
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, float):
            return f"{value:.3g}"
        if isinstance(value, (list, tuple)):
            return "/".join(str(v) for v in value)
        return str(value)

    parts = [f"{key.replace('_', ' ')} {shown(value)}" for key, value in details.items()
             if key != "remeasure" and not isinstance(value, dict) and value is not None]
    return ", ".join(parts) or "(nothing reported)"


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
                                                      if m["contention"] else "")
                     + ("; timing stopped once the load was sustained"
                        if m.get("stopped_early") else ""))
        lines.append(f"  achieved {result.achieved_gflops:.1f} GFLOP/s "
                     f"({result.flops / 1e9:.3f} GFLOPs, mmengine convention)")
        if result.peak_gflops:
            lines.append(f"  reference conv {result.peak_gflops:.1f} GFLOP/s on the same backend:"
                         f" {result.fraction_of_peak:.2f} of peak; latency = "
                         f"{result.ratio_to_reference:.2f}x the reference conv's")
        if "compile_s" in result.details:
            lines.append(f"  compiled in {result.details['compile_s']:.1f} s "
                         f"({result.details.get('mode')}); not part of the latency")
        lines.append(f"  ran: {describe_details(result.details)}")
        if "remeasure" in result.details:
            tries = result.details["remeasure"]["attempts"]
            lines.append(f"  timed {len(tries)} time(s): "
                         + ", ".join("contended" if t["contention"] else "quiet" for t in tries)
                         + (f"; stopped: {result.details['remeasure']['stopped']}"
                            if result.details["remeasure"].get("stopped") else ""))
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

# Remeasure and NO_REMEASURE are defined in .requests; importable from here as before
__all__ = ["LatencyRequest", "LatencyResult", "NO_REMEASURE", "Protocol", "ReferenceConv",
           "Remeasure", "count_model_flops", "format_result", "measure_latency"]
