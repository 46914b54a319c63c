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
import time
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
    PrepareOptions,
    Runner,
    get_backend,
)
from .timing import (
    Measurement,
    Protocol,
    Timer,
    collect_environment,
    measure,
    other_cores_during,
)

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


@dataclass(frozen=True)
class Remeasure:
    """How a contended measurement is taken again (suites: ``latency.remeasure_contended``,
    ``latency.remeasure_budget_s``).

    Only the timing is repeated: the artifact that was timed is timed again, and prepared again
    first only when its build picks kernels by timing them (:meth:`Backend.autotuned`); its
    accuracy is checked once, after the last timing, on the artifact that timing measured.
    Attempts stop when ``attempts`` more were made, when the next one would take the unit past
    ``budget_s`` seconds of re-measuring (default: as long as the first timing took, so a unit
    never takes more than about twice its quiet time), or when the machine stays busy: before
    each further attempt the load is watched for ``quiet_s`` seconds, and if other processes
    still keep more than the protocol's ``busy_other_cores`` busy the contention is sustained
    and waiting for it would only multiply the run's time. The record then says it was
    measured under contention (not judged, shown ⚠️) and why the attempts stopped."""

    attempts: int = 2
    budget_s: float | None = None
    quiet_s: float = 1.0


NO_REMEASURE = Remeasure(attempts=0)


class _Artifact:
    """A backend's prepared artifact for one module and input: its runner, timed on demand."""

    def __init__(self, backend_name: str, options: dict, module: nn.Module,
                 example: torch.Tensor, device: str, precision: str, include_transfer: bool,
                 workdir: Path) -> None:
        self.backend = get_backend(backend_name, **options)
        self.args = (module, example, device, precision)
        self.include_transfer, self.workdir = include_transfer, workdir
        self.builds = 0
        self.prepare()

    def prepare(self) -> None:
        start = time.monotonic()
        self.builds += 1
        workdir = self.workdir if self.builds == 1 else self.workdir / f"build-{self.builds}"
        self.runner = self.backend.prepare(*self.args, PrepareOptions(
            include_transfer=self.include_transfer, workdir=workdir))
        self.prepare_s = time.monotonic() - start

    @property
    def autotuned(self) -> bool:
        return self.backend.autotuned(*self.args[2:])

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


def measure_latency(model_entry: ResolvedModel, backend: str, device: str, precision: str, *,
                    model: nn.Module | None = None, input_hw: tuple[int, int] | None = None,
                    batch: int = 1, warmup_s: float = 1.0, min_iterations: int = 50,
                    min_duration_s: float = 3.0, include_transfer: bool = False,
                    reference: bool = True, backend_options: dict | None = None,
                    timer: Timer | None = None, progress: bool = False,
                    accuracy_images=None, test_settings=None,
                    remeasure: Remeasure | None = None) -> LatencyResult:
    """Time ``model`` (default: the zoo entry's architecture) on one backend.

    ``input_hw`` is (height, width), default the zoo's input size. ``timer`` replaces the
    backend's clock (tests); ``backend_options`` go to the backend (e.g. ``layout``).
    ``accuracy_images`` (:class:`.accuracy.AccuracyImages`, at ``input_hw``): after timing,
    the same runner's outputs are compared with ``model`` in FP32 on them
    (``result.accuracy``), post-processed with ``test_settings`` (default: the zoo's).
    ``remeasure`` (:class:`Remeasure`): how a contended timing is taken again (default: not).
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
    policy = remeasure or NO_REMEASURE
    label = f"{model_entry.size} {backend}/{device}/{precision}"
    with tempfile.TemporaryDirectory(prefix="rtmbench-latency-") as tmp:
        try:
            artifact = _Artifact(backend, options, model, example, device, precision,
                                 include_transfer, Path(tmp) / "model")
            ref_artifact = _reference_artifact(backend, options, device, precision,
                                               Path(tmp) / "reference") if reference else None
            attempts: list[dict] = []
            spent = 0.0  # seconds of re-measuring (waiting for quiet and rebuilds included)
            stopped = None
            while True:
                start = time.monotonic()
                meas = artifact.time(protocol, timer, progress, label, probe, readings)
                ref_meas = (ref_artifact.time(protocol, timer, progress, "reference conv")
                            if ref_artifact is not None else None)
                timed_s = time.monotonic() - start
                if attempts:
                    spent += timed_s
                contended = meas.contention or bool(ref_meas and ref_meas.contention)
                attempts.append({"contention": contended, "timed_s": round(timed_s, 3),
                                 "other_processes_cores": _rounded(meas.other_cores),
                                 "builds": artifact.builds})
                if not contended:
                    break
                stopped, waited = _next_attempt(policy, attempts, spent, artifact, protocol)
                spent += waited
                if stopped:
                    break
                if artifact.autotuned:  # its kernels were picked while the machine was busy
                    rebuild = time.monotonic()
                    artifact.prepare()
                    if ref_artifact is not None:
                        ref_artifact.prepare()
                    spent += time.monotonic() - rebuild
            details = artifact.runner.details
            accuracy = check(artifact.runner) if check is not None else None
            ref = _reference_result(ref_meas, ref_artifact) if ref_meas is not None else None
        except BackendUnavailable as exc:
            return LatencyResult("not run", str(exc), **base)
    if len(attempts) > 1 or stopped:
        details = {**details, "remeasure": {"attempts": attempts, "stopped": stopped}}
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


def _rounded(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def _next_attempt(policy: Remeasure, attempts: list[dict], spent: float, artifact: _Artifact,
                  protocol: Protocol) -> tuple[str | None, float]:
    """(why no further attempt is made, or None; seconds spent deciding)."""
    if len(attempts) > policy.attempts:
        return (f"contended in all {len(attempts)} attempts" if policy.attempts else
                "contended; re-measuring is off"), 0.0
    budget = policy.budget_s if policy.budget_s is not None else attempts[0]["timed_s"]
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


def _reference_artifact(backend: str, options: dict, device: str, precision: str,
                        workdir: Path) -> _Artifact:
    """The reference convolution, prepared on the same backend."""
    conv = ReferenceConv().eval()
    example = torch.randn(*REFERENCE_SHAPE, generator=torch.Generator().manual_seed(1))
    if backend in ("torch", "torch-compile"):  # the machine's peak: always the fast layout
        options = options | {"layout": "channels_last"}
    return _Artifact(backend, options, conv, example, device, precision, False, workdir)


def _reference_result(meas: Measurement, artifact: _Artifact) -> dict:
    """The reference convolution's measurement as a result keeps it."""
    stats = meas.stats()
    conv, example = artifact.args[0], artifact.args[1]
    flops = count_model_flops(conv, example)
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
