"""The plan of a run, shown before it starts: every unit, where it runs, whether it will run or
be "not run" and why, and how long it should take.

``rtmbench run SUITE --plan`` prints it and runs nothing; every run prints its summary first.

Whether a unit runs: each check's :meth:`~.checks.Check.missing` raises the very
:class:`~rtmbench.errors.MissingPrerequisite` its ``run`` would raise (no GPU, no data set, no
package, weights that are unavailable or, offline, not in the cache), so the plan's reason is
the reason the record would get. Nothing is downloaded, built or written.

How long, in wall seconds, from the best source there is:

1. ``history``: the same unit (same key) finished on the same machine (CPU model, usable
   cores, GPU) in an earlier run under the results directory: the median of its recorded
   durations (``provenance.duration_s``, written by every run).
2. ``model``: otherwise a cost model. This machine's speed is measured when the plan is made:
   the reference convolution (the latency check's 3x3 256->256 conv on 1x256x80x80) timed with
   torch for about half a second per device. A network's time per image is that reference's
   time times the network's *ratio to the reference*: the ratio recorded for the same size,
   backend, device and precision in the committed runs (it depends far less on the machine
   than milliseconds do: the gate compares it across runs for that reason), else its FLOPs
   over the reference's at the fraction of peak RTMDet reaches (:data:`FRACTION_OF_PEAK`).
   Around that time per image the model adds each check's fixed work (building weights,
   exporting, compiling, counting FLOPs, the accuracy check, scoring) with constants measured
   on a 2-core CPU VM (see the comments). Downloads are not estimated (their speed is the
   network's): a unit that must fetch weights or COCO says so.

The estimate is a plan's, not a measurement: ``benchmarks/bench_reproduce_cpu.py`` compares it with
a real run's wall time.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import MissingPrerequisite, RtmbenchError
from ..spec.check_specs import FULL_VAL2017, RANDOM_INIT, WELL_CONDITIONED
from .checks import CheckContext, Unit, get_check

REFERENCE_GFLOP = 256 * 256 * 9 * 80 * 80 / 1e9  # multiply-adds (mmengine's FLOPs): 3.77
FRACTION_OF_PEAK = {"cpu": 0.6, "cuda": 0.1}  # RTMDet vs the reference conv when no ratio is
# recorded: tiny reached 0.62 of the conv's GFLOP/s on a Xeon CPU, and at batch 1 on an H100
# tiny ran at 4 % and x at 26 % of it (docs/performance.md's older figures)
# Fixed work, in seconds or in multiples of one CPU forward at the zoo's input size (measured on
# the project's 2-core VMs; they scale with the machine through the forward's time):
WELL_CONDITIONED_FORWARDS = 12  # calibrating the seeded weights (x: ~10 s)
FLOP_COUNT_FORWARDS = 3         # mmengine's jit-traced FLOP count
EXPORT_FORWARDS = 4             # an ONNX export and its check in ONNX Runtime
PREPARE_S = {"torch": 0.5, "onnxruntime": 2.0, "openvino": 3.0, "torch-compile": 15.0,
             "tensorrt": 90.0}  # engine or session building beyond the export
DECODE_S = 0.01                 # one COCO image decoded, resized and padded (one worker)
SCORE_S = 0.003                 # COCOeval per image (faster-coco-eval)
GPU_BATCH_GAIN = 4.0            # a batch of 32 over batch 1, per image, on a GPU
PER_UNIT_S = 0.3                # records, provenance, bookkeeping


@dataclass
class PlannedUnit:
    """One unit of the plan: what it is, whether it runs, its estimated wall time."""

    unit: Unit
    status: str                 # "run" | "not run" | "fail"
    reason: str | None = None   # why not run, or why it will fail
    seconds: float = 0.0
    basis: str = ""             # how the estimate was made
    notes: list[str] = field(default_factory=list)  # e.g. "fetches the mmyolo weights"

    def to_dict(self) -> dict[str, Any]:
        key = self.unit.key
        return {"unit": key.model_dump(mode="json"), "label": key.label, "status": self.status,
                "reason": self.reason, "estimate_s": round(self.seconds, 1),
                "basis": self.basis, "notes": self.notes}


@dataclass
class Plan:
    suite: str
    units: list[PlannedUnit]
    machine: dict[str, Any]
    resumed: int = 0  # units already recorded (a resume skips them)

    @property
    def seconds(self) -> float:
        return sum(u.seconds for u in self.units)

    def count(self, status: str) -> int:
        return sum(u.status == status for u in self.units)


def _duration_text(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# --------------------------------------------------------------------------- speed
class Rates:
    """What the plan knows of speeds: recorded unit durations on this machine, recorded ratios
    to the reference convolution, and the reference's time measured here and now."""

    def __init__(self, records: Iterable, machine: dict[str, Any]) -> None:
        from ..judge.judgement import same_hardware

        self.machine = machine
        self.durations: dict[Any, list[float]] = {}
        self.ratios: dict[tuple, list[float]] = {}
        for record in records:
            duration = record.provenance.get("duration_s")
            if (isinstance(duration, (int, float)) and record.status.has_measurement
                    and same_hardware(record.hardware, machine)):
                self.durations.setdefault(record.key, []).append(float(duration))
            ratio = record.metrics.get("ratio_to_reference")
            if record.check == "latency" and isinstance(ratio, (int, float)) \
                    and not record.metrics.get("contention"):
                key = (record.model, record.backend, record.device, record.precision,
                       tuple(record.input_size or ()), record.batch or 1)
                self.ratios.setdefault(key, []).append(float(ratio))
        self._reference_ms: dict[str, float | None] = {}

    def learned(self, unit: Unit) -> float | None:
        found = self.durations.get(unit.key)
        return statistics.median(found) if found else None

    def reference_ms(self, device: str) -> float | None:
        """The reference convolution's median time on ``device`` (torch, fp32 on the CPU and
        fp16 on CUDA, channels_last), measured once per plan; None where it cannot run."""
        if device not in self._reference_ms:
            self._reference_ms[device] = _time_reference(device)
        return self._reference_ms[device]

    def ratio(self, model: str, backend: str, device: str, precision: str,
              size: tuple[int, int], batch: int, flops: float | None) -> tuple[float, str]:
        """The network's latency over the reference's: recorded, else from FLOPs."""
        for b in (backend, "torch", "onnxruntime"):  # the same backend's first
            found = self.ratios.get((model, b, device, precision, size, batch))
            if found:
                how = "recorded ratio" + ("" if b == backend else f" of {b}")
                return statistics.median(found), how
        gflop = (flops or 8e9) / 1e9 * batch
        return gflop / REFERENCE_GFLOP / FRACTION_OF_PEAK[device], "FLOPs"


def _time_reference(device: str) -> float | None:
    import torch

    from ..measure.backends import get_backend
    from ..measure.latency import REFERENCE_SHAPE, ReferenceConv
    from ..measure.timing import Protocol, measure

    precision = "fp16" if device == "cuda" else "fp32"
    backend = get_backend("torch")
    if backend.unavailable(device, precision):
        return None
    example = torch.randn(*REFERENCE_SHAPE, generator=torch.Generator().manual_seed(1))
    runner = backend.prepare(ReferenceConv().eval(), example, device, precision)
    protocol = Protocol(warmup_s=0.1, min_iterations=5, min_duration_s=0.3)
    stats = measure(runner.run, protocol, runner.timer, load_probe=False).stats()
    return float(stats["median_ms"])


# --------------------------------------------------------------------------- estimates
def _flops(model) -> float | None:
    claim = next(iter(model.claims_for("flops")), None)
    return float(claim.value) * 1e9 if claim is not None else None


class _Estimator:
    def __init__(self, rates: Rates) -> None:
        self.rates = rates
        self.weights_built: set[tuple[str, str]] = set()
        self.images_loaded: set[tuple[str, tuple]] = set()

    def forward_s(self, model, backend: str, device: str, precision: str,
                  size: tuple[int, int] | None = None, batch: int = 1) -> tuple[float, str]:
        """Seconds of one forward, and how that was found."""
        size = tuple(size or model.input_size)
        ref = self.rates.reference_ms(device)
        if ref is None:
            return 0.0, "no reference on this machine"
        pixels = size[0] * size[1] / (model.input_size[0] * model.input_size[1])
        flops = _flops(model)
        ratio, how = self.rates.ratio(model.name, backend, device, precision, size, batch,
                                      flops * pixels if flops else None)
        return ratio * ref / 1e3, how

    def weights_s(self, model, weights: str | None, notes: list[str]) -> float:
        """Seconds to get the unit's weights (once per model and weights in a run)."""
        key = (model.name, str(weights))
        if key in self.weights_built:
            return 0.0
        self.weights_built.add(key)
        if weights == WELL_CONDITIONED:
            cpu, _ = self.forward_s(model, "torch", "cpu", "fp32")
            return WELL_CONDITIONED_FORWARDS * cpu
        if weights == RANDOM_INIT:
            return 0.0
        if _weights_cached(model, weights) is False:
            notes.append(f"fetches the {weights or 'default'} weights (download time not "
                         f"included)")
        return 1.0  # loading and hashing a checkpoint

    def complexity(self, unit: Unit) -> tuple[float, str]:
        cpu, how = self.forward_s(unit.model, "torch", "cpu", "fp32")
        return 2 * FLOP_COUNT_FORWARDS * cpu + PER_UNIT_S, f"model ({how})"

    def latency(self, unit: Unit, spec, notes: list[str]) -> tuple[float, str]:
        model = unit.model
        per_call, how = self.forward_s(model, unit.backend, unit.device, unit.precision,
                                       unit.input_size, spec.batch)
        ref_call = (self.rates.reference_ms(unit.device) or 0.0) / 1e3
        cpu_at_size, _ = self.forward_s(model, "torch", "cpu", "fp32", unit.input_size)
        seconds = self.weights_s(model, spec.weights, notes)

        def timed(call: float) -> float:
            warmup = max(spec.warmup_s, 3 * call)
            return warmup + max(spec.min_duration_s, spec.min_iterations * call)

        seconds += timed(per_call) + timed(ref_call)
        seconds += PREPARE_S.get(unit.backend, 1.0)
        if unit.backend in ("onnxruntime", "openvino", "tensorrt"):
            seconds += EXPORT_FORWARDS * cpu_at_size
        seconds += FLOP_COUNT_FORWARDS * cpu_at_size
        if spec.accuracy is not None:
            images = spec.accuracy.images
            seconds += images * (cpu_at_size + per_call / spec.batch) + 0.5
            key = (model.name, tuple(unit.input_size))
            if key not in self.images_loaded:
                self.images_loaded.add(key)
                seconds += images * DECODE_S
        return seconds + PER_UNIT_S, f"model ({how})"

    def box_ap(self, unit: Unit, spec, notes: list[str]) -> tuple[float, str]:
        model = unit.model
        images = spec.synthetic or min(spec.limit or FULL_VAL2017, FULL_VAL2017)
        seconds = self.weights_s(model, unit.variant, notes)
        forward, how = self.forward_s(model, "torch", unit.device, unit.precision)
        if unit.device == "cuda":
            from ..measure.evaluation import default_workers

            forward = max(forward / GPU_BATCH_GAIN, DECODE_S / default_workers("cuda"))
        else:
            forward += DECODE_S / 2  # two loader workers beside the forward
        seconds += images * (forward + SCORE_S)
        return seconds + PER_UNIT_S, f"model ({how}, {images} images)"


def _weights_cached(model, weights: str | None) -> bool | None:
    """Whether the zoo weights are in rtmbench's cache (None: not a zoo file)."""
    from ..spec.settings import load_settings

    try:
        entry = model.weights_by_id(weights) if weights else model.weights_by_id(
            model.default_weights_id())
    except (RtmbenchError, TypeError):
        return None
    if not entry.file:
        return None
    return (load_settings().cache / entry.file).is_file()


# --------------------------------------------------------------------------- the plan
def make_plan(suite, units: list[tuple[Unit, Any]], ctx: CheckContext, records: Iterable = (),
              resumed: int = 0) -> Plan:
    """Each unit's status, reason and estimate (see the module docstring)."""
    rates = Rates(records, ctx.hardware)
    estimator = _Estimator(rates)
    planned = []
    for unit, spec in units:
        item = PlannedUnit(unit, "run")
        try:
            get_check(unit.check).missing(unit, spec, ctx)
        except MissingPrerequisite as exc:
            item.status, item.reason = "not run", " ".join(str(exc).split())
        except RtmbenchError as exc:
            item.status, item.reason = "fail", " ".join(str(exc).split())
        if item.status == "run":
            learned = rates.learned(unit)
            estimate = getattr(estimator, unit.check, None)
            if learned is not None:
                item.seconds, item.basis = learned, "history: this unit on this machine"
            elif estimate is not None:
                args = (unit,) if unit.check == "complexity" else (unit, spec, item.notes)
                item.seconds, item.basis = estimate(*args)
            else:
                item.basis = "no estimate for this check"
        planned.append(item)
    return Plan(suite.name, planned, ctx.hardware, resumed)


def format_plan(plan: Plan, *, table: bool = True) -> str:
    """The plan as people read it: a table of units (``table``), then the summary."""
    from ..tables import markdown_table

    lines = []
    if table:
        rows = [[p.unit.key.label, p.status if p.status != "run" else "runs",
                 _duration_text(p.seconds) if p.status == "run" else "—",
                 "; ".join([*(p.notes), *([p.reason] if p.reason else [])]) or p.basis]
                for p in plan.units]
        lines += [markdown_table(["unit", "will", "estimate", "why / how"], rows), ""]
    lines.append(summary(plan))
    return "\n".join(lines)


def summary(plan: Plan) -> str:
    """Units, missing prerequisites and estimated time, in a few lines."""
    hw = plan.machine or {}
    where = f"{hw.get('cpu', '?')} ({hw.get('cores', '?')} cores), GPU: {hw.get('gpu') or 'none'}"
    runs = plan.count("run")
    head = (f"plan for suite {plan.suite} on {where}: {len(plan.units)} units"
            + (f" ({plan.resumed} already recorded)" if plan.resumed else "")
            + f"; {runs} will run, about {_duration_text(plan.seconds)}")
    if plan.count("fail"):
        head += f"; {plan.count('fail')} will fail"
    lines = [head + "."]
    reasons: dict[tuple[str, str], int] = {}
    for p in plan.units:
        if p.status != "run":
            reasons[(p.status, p.reason or "?")] = reasons.get((p.status, p.reason or "?"), 0) + 1
    for (status, reason), count in sorted(reasons.items(), key=lambda item: -item[1]):
        lines.append(f"  {count} {'not run' if status == 'not run' else 'will fail'}: {reason}")
    notes = sorted({n for p in plan.units for n in p.notes})
    lines += [f"  note: {n}" for n in notes]
    return "\n".join(lines)

