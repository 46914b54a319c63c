"""Checks: what the runner can run for a model. A check *measures*; it never judges.

Each check turns a :class:`Unit` into an :class:`Outcome` (metrics, the claims the unit is
compared with, provenance). Anything that goes wrong is raised as the error it is and the
runner records it by the error's declared outcome (:mod:`rtmbench.errors`): a missing
prerequisite (no dataset, no GPU, a package not installed, weights no source delivers) is
"not run"; everything else (a hash mismatch, an unsafe pickle, a broken export, a corrupt data
set, a crashing backend, a bug) is "failed". Judging is :mod:`rtmbench.judge`'s.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any, ClassVar, Literal

from ..errors import DatasetMissing, DeviceMissing, PackageMissing
from ..fileio import sha256_file
from ..spec.checks import (
    RANDOM_INIT,
    WELL_CONDITIONED,
    BoxAPSpec,
    ComplexitySpec,
    LatencySpec,
    register_spec,
    unregister_spec,
)
from ..spec.schema import Strict
from ..spec.zoo import Claim, ResolvedModel


@dataclass(frozen=True)
class Unit:
    """One record's worth of work: a model, a check and where it runs."""

    model: ResolvedModel
    check: str
    backend: str | None = None
    device: str | None = None
    precision: str | None = None
    variant: str | None = None  # e.g. the weights id of a box AP unit
    input_size: tuple[int, int] | None = None  # width, height (latency)
    batch: int | None = None

    @property
    def key(self):
        from ..records import UnitKey

        return UnitKey(model=self.model.name, check=self.check, backend=self.backend,
                       device=self.device, precision=self.precision, variant=self.variant,
                       input_size=self.input_size, batch=self.batch)

    @property
    def label(self) -> str:
        where = "/".join(p for p in (self.backend, self.device, self.precision, self.variant)
                         if p)
        return f"{self.model.size} {self.check}" + (f" {where}" if where else "")


@dataclass
class Outcome:
    status: Literal["measured", "not run"]
    reason: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    claim: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass
class CheckContext:
    suite: Any  # the SuiteBase being run
    work_dir: Path
    hardware: dict[str, Any]
    progress: bool = True


class Check:
    name: ClassVar[str]
    Spec: ClassVar[type[Strict]]

    def units(self, model: ResolvedModel, spec: Any) -> list[Unit]:
        return [Unit(model, self.name)]

    def claims(self, unit: Unit, spec: Any, ctx: CheckContext) -> dict[str, Any]:
        """The published figures this unit is compared with, as records store them."""
        return {}

    def run(self, unit: Unit, spec: Any, ctx: CheckContext) -> Outcome:
        raise NotImplementedError


_REGISTRY: dict[str, type[Check]] = {}


def register_check(cls: type[Check]) -> type[Check]:
    _REGISTRY[cls.name] = cls
    register_spec(cls.name, cls.Spec)
    return cls


def unregister_check(name: str) -> None:
    _REGISTRY.pop(name, None)
    unregister_spec(name)


def registered_checks() -> dict[str, type[Check]]:
    return dict(_REGISTRY)


def get_check(name: str) -> Check:
    return _REGISTRY[name]()


def lazy_import(module: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PackageMissing(f"{what} needs {module}, which cannot be imported here ({exc})"
                             ) from None


# --------------------------------------------------------------------------- complexity
@register_check
class ComplexityCheck(Check):
    name = "complexity"
    Spec = ComplexitySpec

    def claims(self, unit: Unit, spec: ComplexitySpec, ctx: CheckContext) -> dict[str, Any]:
        entry = unit.model
        return {c.metric: entry.claim_record(c) | ({"convention": "parameters"}
                                                   if c.metric == "params" else {})
                for c in entry.claims if c.metric in ("params", "flops")}

    def run(self, unit: Unit, spec: ComplexitySpec, ctx: CheckContext) -> Outcome:
        from ..measure.complexity import measure_complexity

        report = measure_complexity(unit.model)
        return Outcome("measured", metrics=report.metrics())


# --------------------------------------------------------------------------- latency
def latency_claim(model: ResolvedModel, unit: Unit, gpu: str | None) -> Claim | None:
    """The published latency for this backend and precision; the one on this GPU if any."""
    from ..judge.judgement import same_gpu

    fitting = [c for c in model.claims_for("latency")
               if c.backend == unit.backend and c.precision == unit.precision]
    same = [c for c in fitting if unit.device == "cuda" and same_gpu(c.hardware, gpu)]
    return (same or fitting or [None])[0]


@register_check
class LatencyCheck(Check):
    name = "latency"
    Spec = LatencySpec

    def units(self, model: ResolvedModel, spec: LatencySpec) -> list[Unit]:
        size = tuple(spec.input_size or model.input_size)
        seen: dict[tuple, Unit] = {}
        for t in spec.targets:
            for b, d, p in product(t.backends, t.devices, t.precisions):
                variants = [f"{v}-ep" for v in t.providers] if (
                    b == "onnxruntime" and t.providers) else [None]
                for v in variants:
                    seen.setdefault((b, d, p, v), Unit(model, self.name, b, d, p, variant=v,
                                                       input_size=size, batch=spec.batch))
        return list(seen.values())

    @staticmethod
    def backend_options(unit: Unit, spec: LatencySpec) -> dict[str, Any]:
        """The ONNX Runtime provider of an ``<provider>-ep`` unit, inductor's mode of a
        torch-compile unit; nothing otherwise."""
        if unit.backend == "onnxruntime" and unit.variant and unit.variant.endswith("-ep"):
            return {"provider": unit.variant.removesuffix("-ep")}
        if unit.backend == "torch-compile":
            return {"mode": spec.compile_mode}
        return {}

    def claims(self, unit: Unit, spec: LatencySpec, ctx: CheckContext) -> dict[str, Any]:
        claim = latency_claim(unit.model, unit, ctx.hardware.get("gpu"))
        return {"latency": unit.model.claim_record(claim)} if claim else {}

    def run(self, unit: Unit, spec: LatencySpec, ctx: CheckContext) -> Outcome:
        latency = lazy_import("rtmbench.measure.latency", "latency")
        width, height = unit.input_size
        options = self.backend_options(unit, spec)
        backend = lazy_import("rtmbench.measure.backends", "latency").get_backend(
            unit.backend, **options)
        if reason := backend.unavailable(unit.device, unit.precision):  # before any building
            return Outcome("not run", reason=reason, provenance={
                "environment": latency.collect_environment(), "input_hw": [height, width],
                "batch": spec.batch})
        from .model import build

        built = build(unit.model, spec.weights, progress=ctx.progress)
        images, settings, described = None, None, None
        if spec.accuracy is not None:
            images, described = accuracy_images(unit, spec, ctx)
            settings = self._test_settings(unit.model, spec.weights)
        attempts = 0
        while True:  # a contended measurement is taken again (spec.remeasure_contended)
            attempts += 1
            # every attempt checks its own artifact: a re-measure rebuilds it (a recompile, an
            # autotuned engine), and the record's accuracy must be the timed artifact's
            result = latency.measure_latency(
                unit.model, unit.backend, unit.device, unit.precision, model=built.model,
                input_hw=(height, width), batch=spec.batch, warmup_s=spec.warmup_s,
                min_iterations=spec.min_iterations, min_duration_s=spec.min_duration_s,
                reference=True, accuracy_images=images, test_settings=settings,
                backend_options=options)
            contended = result.status == "measured" and _contended(result)
            if not contended or attempts > spec.remeasure_contended:
                break
        provenance = {"environment": result.environment, "input_hw": [height, width],
                      "batch": spec.batch, "checkpoint": built.provenance,
                      "details": result.details, "attempts": attempts}
        if described:
            provenance["accuracy_dataset"] = described
        if result.gpu_conditions is not None:
            provenance["gpu_conditions"] = result.gpu_conditions
        if result.status != "measured":
            return Outcome("not run", reason=result.reason or "the latency module gave no "
                           "reason", provenance=provenance)
        reference = (result.reference or {}).get("metrics", {})
        metrics = {**result.metrics, "contention": _contended(result),
                   "reference_contention": bool(reference.get("contention")),
                   "achieved_gflops": result.achieved_gflops,
                   "peak_gflops": result.peak_gflops,
                   "fraction_of_peak": result.fraction_of_peak,
                   "ratio_to_reference": result.ratio_to_reference,
                   "reference_median_ms": (result.reference or {}).get("metrics", {})
                   .get("median_ms")}
        if result.accuracy is not None:
            metrics |= {**result.accuracy, "min_agreement_ap": spec.accuracy.min_agreement_ap}
        if "compile_s" in result.details:  # torch-compile: compile time, apart from latency
            metrics["compile_s"] = result.details["compile_s"]
        return Outcome("measured", metrics=metrics, provenance=provenance)

    @staticmethod
    def _test_settings(model: ResolvedModel, weights: str):
        from ..models.postprocess import TestSettings

        _, cfg = model.evaluation_test_cfg(weights)
        return TestSettings.from_test_cfg(cfg.model_dump())


def accuracy_images(unit: Unit, spec: LatencySpec, ctx: CheckContext):
    """The detection images of a latency unit's accuracy check, at the timed input size: the
    spec's COCO set when it is present here, else seeded generated images (and why)."""
    accuracy = lazy_import("rtmbench.measure.accuracy", "the accuracy check")
    acc = spec.accuracy
    root, described, real = None, None, False
    if acc.dataset is not None:
        try:
            root, described = resolve_dataset(BoxAPSpec(dataset=acc.dataset), ctx.work_dir)
            real = True
        except DatasetMissing as exc:
            described = f"COCO not present ({exc}); "
    if root is None:
        root, synthetic = resolve_dataset(BoxAPSpec(synthetic=acc.images), ctx.work_dir)
        described = (described or "") + synthetic
    key = (str(root), acc.images, tuple(unit.input_size), unit.model.name, described, real)
    if key not in _ACCURACY_IMAGES:  # decoded once for a model's units, not once per unit
        _ACCURACY_IMAGES.clear()
        _ACCURACY_IMAGES[key] = accuracy.load_images(
            unit.model, root, acc.images, tuple(unit.input_size), described=described,
            real_coco=real)
    return _ACCURACY_IMAGES[key], described


_ACCURACY_IMAGES: dict[tuple, Any] = {}  # the latest set only: a model's units run in a row


def _contended(result: Any) -> bool:
    """Other processes took the CPU while the model *or* its reference was timed."""
    reference = (result.reference or {}).get("metrics", {})
    return bool(result.metrics.get("contention") or reference.get("contention"))


# --------------------------------------------------------------------------- box AP
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
        raise DatasetMissing(f"{var} is not set: point it at a COCO 2017 directory holding "
                             f"val2017/ and annotations/instances_val2017.json")
    root = Path(text).expanduser()
    if not root.is_dir():
        raise DatasetMissing(f"no COCO dataset at {root} (expected val2017/ and "
                             f"annotations/instances_val2017.json there)")
    return root, str(root)


def golden_path(spec: BoxAPSpec, ctx: CheckContext) -> Path:
    """Golden detections named by a suite: relative to the suite file's folder."""
    path = Path(spec.golden)
    if not path.is_absolute() and getattr(ctx.suite, "path", None) is not None:
        path = Path(ctx.suite.path).parent / path
    return path


@register_check
class BoxAPCheck(Check):
    name = "box_ap"
    Spec = BoxAPSpec

    def units(self, model: ResolvedModel, spec: BoxAPSpec) -> list[Unit]:
        """One unit per weights id (the PyTorch model, judged by its claim), then one per
        ``backends`` target x weights id: a timed artifact, whose key also has the input size
        and batch it is made for (which also sets it apart from the model's own unit)."""
        ids = spec.weights if isinstance(spec.weights, list) else [spec.weights]
        units = [Unit(model, self.name, "torch", spec.device, spec.precision, variant=w)
                 for w in ids]
        size = tuple(model.input_size)
        for t in spec.backends or []:
            for b, d, p in product(t.backends, t.devices, t.precisions):
                units += [Unit(model, self.name, b, d, p, variant=w, input_size=size,
                               batch=spec.artifact_batch) for w in ids]
        return list(dict.fromkeys(units))

    def claims(self, unit: Unit, spec: BoxAPSpec, ctx: CheckContext) -> dict[str, Any]:
        """The published AP of the weights a unit evaluates (none for generated data), and
        the golden detections it must agree with, if the suite names them. A timed
        artifact's unit has none: it is judged by its difference from the PyTorch model."""
        out: dict[str, Any] = {}
        if _is_artifact(unit):
            return out
        if spec.golden is not None:
            path = golden_path(spec, ctx)
            out["agreement"] = {"value": spec.min_agreement_ap, "unit": "AP",
                                "golden": spec.golden,
                                "golden_sha256": sha256_file(path) if path.is_file() else None}
        if spec.synthetic is not None or unit.variant in (RANDOM_INIT, WELL_CONDITIONED):
            return out
        claim = unit.model.box_ap_claim(unit.variant)
        return out | ({"box_ap": unit.model.claim_record(claim)} if claim else {})

    def run(self, unit: Unit, spec: BoxAPSpec, ctx: CheckContext) -> Outcome:
        if _is_artifact(unit):
            return self._run_artifact(unit, spec, ctx)
        if spec.device == "cuda" and not ctx.hardware.get("gpu"):
            raise DeviceMissing("needs a CUDA GPU; torch sees none on this machine")
        root, described = resolve_dataset(spec, ctx.work_dir)  # first: the likeliest reason
        evaluation = lazy_import("rtmbench.measure.evaluation", "box AP")
        from .model import build

        built = build(unit.model, unit.variant, progress=ctx.progress)
        cfg_name, test_cfg = unit.model.evaluation_test_cfg(unit.variant)
        result = evaluation.evaluate(
            unit.model, root, model=built.model.to(spec.device),
            out_dir=ctx.work_dir / f"box_ap-{unit.model.size}-{unit.variant or 'default'}",
            limit=spec.limit, batch_size=spec.batch_size, workers=spec.workers,
            device=spec.device, progress=ctx.progress,
            test_cfg=test_cfg, precision=spec.precision)
        provenance = {"checkpoint": built.provenance, "dataset": described,
                      "test_cfg": {"name": cfg_name, **test_cfg.model_dump()},
                      "detections": str(result.detections_path)}
        metrics = {"num_images": result.num_images, **result.metrics}
        if spec.golden is not None:
            metrics["agreement_ap"] = self._agreement(result, root, golden_path(spec, ctx))
        return Outcome("measured", metrics=metrics, provenance=provenance)

    def _run_artifact(self, unit: Unit, spec: BoxAPSpec, ctx: CheckContext) -> Outcome:
        """The box AP of the artifact the latency check times (``Backend.prepare`` ->
        ``Runner.infer``, :mod:`rtmbench.measure.artifact`) and of the PyTorch FP32 model on
        the same images; both evaluations resume like any other."""
        backends = lazy_import("rtmbench.measure.backends", "box AP")
        where = {"input_hw": [unit.input_size[1], unit.input_size[0]], "batch": unit.batch}
        try:
            self._artifact_missing(unit, spec, ctx)  # before any building
        except backends.BackendUnavailable as exc:
            return Outcome("not run", reason=str(exc), provenance=where)
        root, described = resolve_dataset(spec, ctx.work_dir)
        evaluation = lazy_import("rtmbench.measure.evaluation", "box AP")
        from ..measure.artifact import ArtifactSpec
        from .model import build

        built = build(unit.model, unit.variant, progress=ctx.progress)
        cfg_name, test_cfg = unit.model.evaluation_test_cfg(unit.variant)
        limit = spec.artifact_limit or spec.limit
        reference = self._reference(unit, spec, ctx, root, built.model, test_cfg, limit)
        artifact = ArtifactSpec(unit.backend, unit.device, unit.precision)
        result = evaluation.evaluate(
            unit.model, root, model=built.model,
            out_dir=ctx.work_dir / (f"box_ap-{unit.model.size}-{unit.variant or 'default'}-"
                                    f"{artifact.label.replace('/', '-')}-bs{unit.batch}"),
            limit=limit, batch_size=unit.batch, workers=spec.workers, device=unit.device,
            progress=ctx.progress, test_cfg=test_cfg, precision=unit.precision,
            artifact=artifact)
        ap, ref_ap = result.metrics["coco"]["AP"], reference.metrics["coco"]["AP"]
        provenance = {**where, "checkpoint": built.provenance, "dataset": described,
                      "test_cfg": {"name": cfg_name, **test_cfg.model_dump()},
                      "detections": str(result.detections_path),
                      "artifact": result.manifest.get("artifact"),
                      "reference": {"what": "the PyTorch FP32 model (TF32 off on cuda)",
                                    "device": reference.manifest.get("device"),
                                    "num_images": reference.num_images,
                                    "detections": str(reference.detections_path)}}
        metrics = {"num_images": result.num_images, **result.metrics,
                   "reference_box_ap": ref_ap, "box_ap_delta": ap - ref_ap}
        return Outcome("measured", metrics=metrics, provenance=provenance)

    @staticmethod
    def _artifact_missing(unit: Unit, spec: BoxAPSpec, ctx: CheckContext) -> None:
        """What a timed artifact's unit lacks here, raised as its "not run" error, without any
        work: the backend (package, GPU, provider), then the data set."""
        backends = lazy_import("rtmbench.measure.backends", "box AP")
        if reason := backends.get_backend(unit.backend).unavailable(unit.device,
                                                                    unit.precision):
            raise backends.BackendUnavailable(reason)
        if spec.synthetic is None:
            resolve_dataset(spec, ctx.work_dir)

    @staticmethod
    def _reference(unit: Unit, spec: BoxAPSpec, ctx: CheckContext, root: Path, model: Any,
                   test_cfg: Any, limit: int | None) -> Any:
        """The PyTorch FP32 model on the artifact's images, on its device (in true FP32 on a
        GPU): the model's own unit's evaluation when it is that (CPU, same images)."""
        evaluation = lazy_import("rtmbench.measure.evaluation", "box AP")
        from ..measure.artifact import true_fp32

        device = "cuda" if unit.device == "cuda" else "cpu"
        name = f"box_ap-{unit.model.size}-{unit.variant or 'default'}"
        if not (device == spec.device == "cpu" and limit == spec.limit):
            name += f"-reference-{device}-{limit or 'all'}"
        with true_fp32():
            return evaluation.evaluate(
                unit.model, root, model=model, out_dir=ctx.work_dir / name, limit=limit,
                batch_size=spec.batch_size, workers=spec.workers, device=device,
                progress=ctx.progress, test_cfg=test_cfg, precision="fp32")

    @staticmethod
    def _agreement(result: Any, root: Path, golden: Path) -> float:
        import json

        from ..data import CocoDataset
        from ..measure.agreement import agreement_ap, load_golden

        dataset = CocoDataset(root, check_images=False)
        detections = json.loads(Path(result.detections_path).read_text())
        return agreement_ap(detections, load_golden(golden), [im.id for im in dataset.images],
                            dataset.cat_ids)


def _is_artifact(unit: Unit) -> bool:
    """A box AP unit of a timed artifact (``box_ap.backends``): only those have an input size
    and batch in their key; the model's own units never had one."""
    return unit.check == "box_ap" and unit.input_size is not None


__all__ = ["Check", "CheckContext", "Outcome", "Unit", "register_check", "unregister_check",
           "registered_checks", "get_check", "RANDOM_INIT"]
