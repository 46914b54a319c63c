"""Checks: what the runner can run for a model. Each is registered with its own suite spec.

A check turns every missing prerequisite (no dataset, no checkpoint, no GPU, no backend, a
module not installed) into a "not run: <reason>" outcome; the runner never sees those as
exceptions. The box AP and latency checks import their measuring modules lazily, inside ``run``.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from .errors import RtmbenchError
from .schema import Strict
from .zoo import Claim, ResolvedModel

RANDOM_INIT = "random-init"  # weights id: seeded random weights, for smoke runs without files
FULL_VAL2017 = 5000


@dataclass(frozen=True)
class Unit:
    """One record's worth of work: a model, a check and where it runs."""

    model: ResolvedModel
    check: str
    backend: str | None = None
    device: str | None = None
    precision: str | None = None
    variant: str | None = None  # e.g. the weights id of a box AP unit

    @property
    def key(self) -> tuple[str, str, str | None, str | None, str | None, str | None]:
        return (self.model.name, self.check, self.backend, self.device, self.precision,
                self.variant)

    @property
    def label(self) -> str:
        where = "/".join(p for p in (self.backend, self.device, self.precision, self.variant)
                         if p)
        return f"{self.model.size} {self.check}" + (f" {where}" if where else "")


@dataclass
class Outcome:
    status: Literal["measured", "verified", "failed", "not run"]
    reason: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    claim: dict[str, Any] = field(default_factory=dict)
    verdict: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)


class NotRun(Exception):
    """Raised inside a check when a prerequisite is missing; becomes a "not run" outcome."""


def not_run(reason: str, **extra: Any) -> Outcome:
    return Outcome("not run", reason=reason, **extra)


@dataclass
class CheckContext:
    suite: Any  # SuiteBase (not imported: suite imports this module)
    work_dir: Path
    hardware: dict[str, Any]
    progress: bool = True


class Check:
    name: ClassVar[str]
    Spec: ClassVar[type[Strict]]

    def units(self, model: ResolvedModel, spec: Any) -> list[Unit]:
        return [Unit(model, self.name)]

    def run(self, unit: Unit, spec: Any, ctx: CheckContext) -> Outcome:
        raise NotImplementedError


_REGISTRY: dict[str, type[Check]] = {}


def register_check(cls: type[Check]) -> type[Check]:
    _REGISTRY[cls.name] = cls
    return cls


def unregister_check(name: str) -> None:
    _REGISTRY.pop(name, None)


def registered_checks() -> dict[str, type[Check]]:
    return dict(_REGISTRY)


def get_check(name: str) -> Check:
    return _REGISTRY[name]()


def claim_dict(claim: Claim) -> dict[str, Any]:
    """A claim as a record stores it: value, its published decimals, and its conditions."""
    data = claim.model_dump(mode="json", exclude_none=True)
    data["value"] = float(claim.value)
    data["decimals"] = claim.decimals
    data["unit"] = claim.unit_name
    return data


def lazy_import(module: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise NotRun(f"{what} needs {module}, which cannot be imported here ({exc})") from None


# --------------------------------------------------------------------------- complexity
class ComplexitySpec(Strict):
    """Params and FLOPs at the zoo's input size; nothing to configure."""


@register_check
class ComplexityCheck(Check):
    name = "complexity"
    Spec = ComplexitySpec

    def run(self, unit: Unit, spec: ComplexitySpec, ctx: CheckContext) -> Outcome:
        from .complexity import measure_complexity

        report = measure_complexity(unit.model)
        metrics: dict[str, Any] = {"params": report.params, "input_hw": list(report.input_hw)}
        metrics.update({f"flops_{conv}": n for conv, n in report.flops.items()})
        claims = {c.metric: c for c in unit.model.claims if c.metric in ("params", "flops")}
        claim = {m: claim_dict(c) | {"convention": v.convention}
                 for v in report.verdicts for m, c in claims.items() if m == v.metric}
        verdict = {v.metric: {"ok": v.ok, "text": v.explanation} for v in report.verdicts}
        status = "verified" if report.verdicts and report.ok else "measured"
        return Outcome(status, metrics=metrics, claim=claim, verdict=verdict)


# --------------------------------------------------------------------------- latency
class LatencyTargets(Strict):
    """Every combination of these backends, devices and precisions is one unit."""

    backends: list[Literal["torch", "onnxruntime", "tensorrt"]] = Field(min_length=1)
    devices: list[Literal["cpu", "cuda"]] = Field(min_length=1)
    precisions: list[Literal["fp32", "fp16"]] = Field(min_length=1)


class LatencySpec(Strict):
    targets: list[LatencyTargets] = Field(min_length=1)
    min_iterations: int = Field(default=50, gt=0)
    min_duration_s: float = Field(default=3.0, ge=0)
    warmup_s: float = Field(default=1.0, ge=0)
    input_size: tuple[int, int] | None = None  # width, height; default: the zoo's
    batch: int = Field(default=1, gt=0)


def hardware_matches(claimed: str, gpu: str | None) -> bool:
    """'NVIDIA RTX 3090' matches torch's 'NVIDIA GeForce RTX 3090' (rtmbench.latency's rule)."""
    from .latency import same_gpu

    return same_gpu(claimed, gpu)


def latency_claim(model: ResolvedModel, unit: Unit, gpu: str | None) -> Claim | None:
    """The published latency for this backend and precision; the one on this GPU if any."""
    fitting = [c for c in model.claims_for("latency")
               if c.backend == unit.backend and c.precision == unit.precision]
    same = [c for c in fitting if unit.device == "cuda" and hardware_matches(c.hardware, gpu)]
    return (same or fitting or [None])[0]


def judge_latency(claim: Claim, median_ms: float, unit: Unit, gpu: str | None,
                  tolerance: Any) -> dict:
    """Absolute milliseconds are judged only on the claim's own GPU, within the suite's latency
    tolerance; anywhere else the claim is shown beside the measurement, not compared."""
    if unit.device != "cuda" or not hardware_matches(claim.hardware, gpu):
        return {"ok": None, "text": f"different hardware: claim is on {claim.hardware}, "
                f"measured on {gpu if unit.device == 'cuda' else 'CPU'}"}
    claimed = float(claim.value)
    delta = median_ms - claimed
    ok = delta <= 0 or tolerance.allows(delta, claimed)
    return {"ok": ok, "text": f"{median_ms:.2f} ms vs {claim.value} ms on {claim.hardware} "
            f"({delta / claimed * 100:+.0f}%, tolerance {tolerance.describe()})"}


@register_check
class LatencyCheck(Check):
    name = "latency"
    Spec = LatencySpec

    def units(self, model: ResolvedModel, spec: LatencySpec) -> list[Unit]:
        seen: dict[tuple, Unit] = {}
        for t in spec.targets:
            for b, d, p in product(t.backends, t.devices, t.precisions):
                seen.setdefault((b, d, p), Unit(model, self.name, b, d, p))
        return list(seen.values())

    def run(self, unit: Unit, spec: LatencySpec, ctx: CheckContext) -> Outcome:
        claim_obj = latency_claim(unit.model, unit, ctx.hardware.get("gpu"))
        claim = {"latency": claim_dict(claim_obj)} if claim_obj else {}
        try:
            latency = lazy_import("rtmbench.latency", "latency")
        except NotRun as exc:
            return not_run(str(exc), claim=claim)
        width, height = spec.input_size or unit.model.input_size
        result = latency.measure_latency(
            unit.model, unit.backend, unit.device, unit.precision, input_hw=(height, width),
            batch=spec.batch, warmup_s=spec.warmup_s, min_iterations=spec.min_iterations,
            min_duration_s=spec.min_duration_s, reference=True)
        provenance = {"environment": result.environment, "input_hw": [height, width],
                      "batch": spec.batch}
        if result.status != "measured":
            return not_run(result.reason or "latency module gave no reason",
                           claim=claim, provenance=provenance)
        metrics = {**result.metrics, "achieved_gflops": result.achieved_gflops,
                   "peak_gflops": result.peak_gflops,
                   "fraction_of_peak": result.fraction_of_peak,
                   "ratio_to_reference": result.ratio_to_reference,
                   "reference_median_ms": (result.reference or {}).get("metrics", {})
                   .get("median_ms")}
        verdict = ({"latency": judge_latency(claim_obj, result.metrics["median_ms"], unit,
                                             ctx.hardware.get("gpu"),
                                             ctx.suite.tolerance("latency"))} if claim_obj
                   else {"latency": {"ok": None, "text": "no published claim for "
                                     f"{unit.backend}/{unit.device}/{unit.precision}"}})
        return Outcome("measured", metrics=metrics, claim=claim, verdict=verdict,
                       provenance=provenance)


# --------------------------------------------------------------------------- box AP
class BoxAPSpec(Strict):
    """COCO box AP of a zoo checkpoint: on a COCO directory, or on ``synthetic: N`` generated
    images (smoke runs: exercises the whole pipeline, no claim applies)."""

    dataset: str | None = None  # COCO root (val2017/, annotations/); $VARS are expanded
    synthetic: int | None = Field(default=None, gt=0, le=500)
    limit: int | None = Field(default=None, gt=0)
    # zoo weights id(s): one unit each; None: the first available; or "random-init"
    weights: str | list[str] | None = None
    device: Literal["cpu", "cuda"] = "cpu"
    batch_size: int = Field(default=8, gt=0)
    workers: int = Field(default=2, ge=0)

    @model_validator(mode="after")
    def _one_dataset(self) -> BoxAPSpec:
        if (self.dataset is None) == (self.synthetic is None):
            raise ValueError("give exactly one of 'dataset' (a COCO directory) or "
                             "'synthetic' (a number of generated images)")
        return self


def ap_percent(value: float) -> float:
    """Records keep pycocotools' fractions (0..1, or -1 where a category has no ground truth);
    claims are percentages."""
    return value * 100.0


def resolve_dataset(spec: BoxAPSpec, work_dir: Path) -> tuple[Path, str]:
    if spec.synthetic is not None:
        data = lazy_import("rtmbench.data", "a synthetic dataset")
        root = work_dir / f"synthetic-coco-{spec.synthetic}"
        if not (root / ".complete").exists():
            root = Path(data.make_synthetic_coco(root, spec.synthetic, seed=0))
            (root / ".complete").touch()
        return root, f"synthetic ({spec.synthetic} generated images)"
    text = os.path.expandvars(spec.dataset)
    if "$" in text:
        var = text[text.index("$"):].split("/")[0].strip("${}")
        raise NotRun(f"{var} is not set: point it at a COCO 2017 directory holding val2017/ "
                     f"and annotations/instances_val2017.json")
    root = Path(text).expanduser()
    if not root.is_dir():
        raise NotRun(f"no COCO dataset at {root} (expected val2017/ and "
                     f"annotations/instances_val2017.json there)")
    return root, str(root)


def build_model_with_weights(model_entry: ResolvedModel, weights_id: str | None,
                             progress: bool) -> tuple[Any, dict[str, Any]]:
    """The network with the requested weights; returns it and the checkpoint's provenance."""
    import torch

    from .models import build_rtmdet

    if weights_id == RANDOM_INIT:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = build_rtmdet(model_entry.architecture.to_arch(), model_entry.num_classes)
        return model.eval(), {"weights": RANDOM_INIT, "seed": 0}
    ckpt = lazy_import("rtmbench.checkpoints", "a checkpoint")
    try:
        fetched = ckpt.fetch_weights(model_entry, weights_id, progress=progress)
    except RtmbenchError as exc:
        raise NotRun(f"checkpoint not available: {exc}") from None
    model = build_rtmdet(model_entry.architecture.to_arch(), model_entry.num_classes)
    weights_id = weights_id or model_entry.default_weights_id()
    layout = model_entry.weights_by_id(weights_id).layout  # declared, not guessed
    info = ckpt.load_checkpoint(model, fetched.path, layout=layout)
    return model.eval(), {**fetched.provenance(), **info, "weights": weights_id}


def judge_box_ap(claim: Claim, measured: dict[str, dict[str, float]], num_images: int,
                 limit: int | None, tolerance: Any) -> dict[str, Any]:
    convention = claim.convention or "coco"  # RTMDet's configs: maxDets sorted to (1, 10, 100)
    if convention not in measured:
        return {"ok": None, "text": f"no AP under the claim's convention {convention!r}"}
    ap = ap_percent(measured[convention]["AP"])
    if limit is not None and num_images < FULL_VAL2017:
        return {"ok": None, "text": f"{ap:.1f} on {num_images} images: a subset is not "
                f"comparable with the full-val2017 claim {claim.value}"}
    delta = ap - float(claim.value)
    ok = delta >= 0 or tolerance.allows(delta, float(claim.value))
    return {"ok": ok, "text": f"{ap:.2f} vs {claim.value} ({delta:+.2f}, tolerance "
            f"{tolerance.describe()}, {convention} maxDets)"}


@register_check
class BoxAPCheck(Check):
    name = "box_ap"
    Spec = BoxAPSpec

    def units(self, model: ResolvedModel, spec: BoxAPSpec) -> list[Unit]:
        ids = spec.weights if isinstance(spec.weights, list) else [spec.weights]
        return [Unit(model, self.name, "torch", spec.device, "fp32", variant=w) for w in ids]

    def claim_for(self, model: ResolvedModel, spec: BoxAPSpec,
                  weights: str | None) -> Claim | None:
        """The published AP of the weights a unit evaluates (none for generated data)."""
        if spec.synthetic is not None or weights == RANDOM_INIT:
            return None
        return model.box_ap_claim(weights)

    def run(self, unit: Unit, spec: BoxAPSpec, ctx: CheckContext) -> Outcome:
        claim_obj = self.claim_for(unit.model, spec, unit.variant)
        claim = {"box_ap": claim_dict(claim_obj)} if claim_obj else {}
        try:
            return self._measure(unit, spec, ctx, claim_obj, claim)
        except NotRun as exc:  # keep the claim: the report shows what was not checked
            return not_run(str(exc), claim=claim)

    def _measure(self, unit: Unit, spec: BoxAPSpec, ctx: CheckContext, claim_obj: Claim | None,
                 claim: dict[str, Any]) -> Outcome:
        if spec.device == "cuda" and not ctx.hardware.get("gpu"):
            raise NotRun("needs a CUDA GPU; torch sees none on this machine")
        root, described = resolve_dataset(spec, ctx.work_dir)  # first: the likeliest reason
        evaluation = lazy_import("rtmbench.evaluation", "box AP")
        model, checkpoint = build_model_with_weights(unit.model, unit.variant, ctx.progress)
        try:
            result = evaluation.evaluate(unit.model, root, model=model.to(spec.device),
                                         out_dir=ctx.work_dir / f"box_ap-{unit.model.size}-"
                                         f"{unit.variant or 'default'}",
                                         limit=spec.limit, batch_size=spec.batch_size,
                                         workers=spec.workers, device=spec.device,
                                         progress=ctx.progress,
                                         test_cfg=unit.model.test_cfg_for(claim_obj)
                                         if claim_obj else None)
        except RtmbenchError as exc:  # DatasetError and friends: the data, not our bug
            raise NotRun(f"dataset {described} is not usable: {exc}") from None
        if claim_obj is not None:
            verdict = judge_box_ap(claim_obj, result.metrics, result.num_images, spec.limit,
                                   ctx.suite.tolerance("box_ap"))
        else:
            why = ("generated data" if spec.synthetic is not None else
                   f"weights {unit.variant or 'default'}")
            verdict = {"ok": None, "text": f"no published claim for {why}"}
        provenance = {"checkpoint": checkpoint, "dataset": described,
                      "detections": str(result.detections_path)}
        return Outcome("measured", metrics={"num_images": result.num_images, **result.metrics},
                       claim=claim, verdict={"box_ap": verdict}, provenance=provenance)


def primary_ap(metrics: dict[str, Any]) -> tuple[str, float] | None:
    """(convention, AP in percent) of a box AP record: the claims' convention (coco) first."""
    for convention in ("coco", "mmdet-proposal"):
        if isinstance(metrics.get(convention), dict) and "AP" in metrics[convention]:
            return convention, ap_percent(metrics[convention]["AP"])
    return None


__all__ = ["Check", "CheckContext", "Outcome", "Unit", "NotRun", "not_run", "register_check",
           "unregister_check", "registered_checks", "get_check", "claim_dict", "ap_percent",
           "primary_ap", "RANDOM_INIT"]
