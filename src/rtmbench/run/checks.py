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
import string
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

from ..errors import DatasetMissing, DeviceMissing, import_problem
from ..fileio import sha256_file
from ..measure.requests import LatencyRequest, Remeasure
from ..records import UnitKey
from ..spec.check_specs import (
    RANDOM_INIT,
    WELL_CONDITIONED,
    BoxAPSpec,
    ComplexitySpec,
    LatencySpec,
    register_spec,
    resolve_device,
    unit_fields,
    unregister_spec,
)
from ..spec.schema import Strict
from ..spec.zoo import Claim, ResolvedModel
from .request_builder import backend_options, latency_request


@dataclass(frozen=True)
class Unit:
    """One record's worth of work: the zoo model and the unit's key (the check and where it
    runs: :class:`rtmbench.records.UnitKey`, what records, resume and the gate match on).
    ``unit.check``, ``unit.backend``... read the key."""

    model: ResolvedModel
    key: UnitKey

    @classmethod
    def of(cls, model: ResolvedModel, check: str, backend: str | None = None,
           device: str | None = None, precision: str | None = None, variant: str | None = None,
           input_size: tuple[int, int] | None = None, batch: int | None = None) -> Unit:
        return cls(model, UnitKey(model=model.name, check=check, backend=backend,
                                  device=device, precision=precision, variant=variant,
                                  input_size=input_size, batch=batch))

    def __getattr__(self, name: str) -> Any:
        if name in UnitKey.model_fields and name != "model":
            return getattr(self.key, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

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
        """The units of ``model``: what its spec's ``unit_fields`` says (a check declares its
        units on its spec, where the gate reads them too; it does not override this)."""
        return [Unit.of(model, self.name, **f) for f in unit_fields(spec, model)]

    def claims(self, unit: Unit, spec: Any, ctx: CheckContext) -> dict[str, Any]:
        """The published figures this unit is compared with, as records store them."""
        return {}

    def missing(self, unit: Unit, spec: Any, ctx: CheckContext) -> None:
        """Raise the :class:`~rtmbench.errors.MissingPrerequisite` that :meth:`run` would raise
        on this machine (no GPU, data set, package, weights), before any work: what the plan
        (:mod:`.plan`) shows. Cheap and without side effects; ``run`` calls it first."""

    def run(self, unit: Unit, spec: Any, ctx: CheckContext) -> Outcome:
        raise NotImplementedError


_REGISTRY: dict[str, type[Check]] = {}


def register_check(cls: type[Check]) -> type[Check]:
    if cls.units is not Check.units:
        raise TypeError(f"check {cls.name!r} overrides Check.units: declare its units on its "
                        f"spec instead ({cls.Spec.__name__}.unit_fields, see "
                        f"rtmbench.spec.check_specs.CheckSpec), so that the gate, which never "
                        f"imports the checks, expects the same units the runner runs")
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


def weights_missing(model: ResolvedModel, weights: str | None) -> None:
    """Raise what fetching ``weights`` would raise for a missing prerequisite, known without
    fetching: weights the zoo says were never published, or, offline with no mirror and only
    network sources, a file that is not in the cache."""
    if weights in (RANDOM_INIT, WELL_CONDITIONED):
        return
    sources = lazy_import("rtmbench.sources", "checkpoints")
    chosen = sources.choose_weights(model, weights)  # WeightsUnavailable
    from ..spec.settings import load_settings

    settings = load_settings()
    remote_only = all(u.startswith(("http://", "https://")) for u in chosen.urls)
    if (settings.offline and chosen.file and not settings.mirrors and remote_only
            and not (settings.cache / chosen.file).is_file()):
        raise sources.OfflineError(
            f"RTMBENCH_OFFLINE=1 and {chosen.file} is not in the cache. On a connected "
            f"machine, download {chosen.urls[0] if chosen.urls else chosen.file} and put it at "
            f"{settings.cache / chosen.file} (or in a folder named by RTMBENCH_MIRROR), then "
            f"run again.")


def lazy_import(module: str, what: str) -> Any:
    """Import one of rtmbench's heavier modules when a unit needs it. A third-party package it
    needs that is not installed is "not run" (PackageMissing); one that is installed and fails
    to import is "failed" (PackageBroken); an ImportError of rtmbench's own code is a bug and
    propagates as itself (the runner records it as failed, with its traceback)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        problem = import_problem(module, exc, what=what)
        if problem is exc:
            raise
        raise problem from None


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

    @staticmethod
    def request(unit: Unit, spec: LatencySpec) -> LatencyRequest:
        """The unit's request (:func:`rtmbench.run.request_builder.latency_request`): the suite's
        protocol at the unit's input size and batch, with the reference convolution; the ONNX
        Runtime provider of an ``<provider>-ep`` unit, inductor's mode of a torch-compile
        unit; a contended timing taken again, the artifact kept unless its build is
        autotuned, within a time budget, and not at all while the machine stays busy."""
        ep = unit.variant.removesuffix("-ep") if unit.variant and unit.variant.endswith(
            "-ep") else None
        return latency_request(
            unit.backend, unit.device, unit.precision,
            protocol={"min_iterations": spec.min_iterations,
                      "min_duration_s": spec.min_duration_s, "warmup_s": spec.warmup_s,
                      "input_size": unit.input_size, "batch": spec.batch},
            options=backend_options(unit.backend, provider=ep, compile_mode=spec.compile_mode),
            reference=True, remeasure=Remeasure(attempts=spec.remeasure_contended,
                                                budget_s=spec.remeasure_budget_s))

    def claims(self, unit: Unit, spec: LatencySpec, ctx: CheckContext) -> dict[str, Any]:
        claim = latency_claim(unit.model, unit, ctx.hardware.get("gpu"))
        return {"latency": unit.model.claim_record(claim)} if claim else {}

    def missing(self, unit: Unit, spec: LatencySpec, ctx: CheckContext) -> None:
        backends = lazy_import("rtmbench.measure.backends", "latency")
        backend = backends.get_backend(unit.backend, **self.request(unit, spec).options.kwargs())
        if reason := backend.unavailable(unit.device, unit.precision):
            raise backends.BackendUnavailable(reason)
        weights_missing(unit.model, spec.weights)

    def run(self, unit: Unit, spec: LatencySpec, ctx: CheckContext) -> Outcome:
        latency = lazy_import("rtmbench.measure.latency", "latency")
        width, height = unit.input_size
        backends = lazy_import("rtmbench.measure.backends", "latency")
        try:
            self.missing(unit, spec, ctx)  # before any building
        except backends.BackendUnavailable as exc:
            return Outcome("not run", reason=str(exc), provenance={
                "environment": latency.collect_environment(), "input_hw": [height, width],
                "batch": spec.batch})
        from .build import build

        built = build(unit.model, spec.weights, progress=ctx.progress)
        check, described = None, None
        if spec.accuracy is not None:
            images, described = accuracy_images(unit, spec, ctx)
            accuracy = lazy_import("rtmbench.measure.accuracy", "the accuracy check")
            check = accuracy.AccuracyCheck(images, self._test_settings(unit.model, spec.weights))
        result = latency.measure_latency(unit.model, self.request(unit, spec), built.model,
                                         accuracy=check)
        attempts = len((result.details.get("remeasure") or {}).get("attempts") or [None])
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
    from ..data.coco import ENV_VAR, default_coco_root, missing_coco_reason

    values = {k: v for k, v in os.environ.items() if v}  # an empty variable is an unset one
    if ENV_VAR in spec.dataset and (coco := default_coco_root()) is not None:
        values[ENV_VAR] = str(coco)  # set, or fetched by `rtmbench fetch --coco`
    text = string.Template(spec.dataset).safe_substitute(values)
    if "$" in text:
        var = text[text.index("$"):].split("/")[0].strip("${}")
        if var == ENV_VAR:
            raise DatasetMissing(missing_coco_reason())
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

    def missing(self, unit: Unit, spec: BoxAPSpec, ctx: CheckContext) -> None:
        if _is_artifact(unit):
            self._artifact_missing(unit, spec, ctx)
            return
        if unit.device == "cuda" and not ctx.hardware.get("gpu"):
            raise DeviceMissing("needs a CUDA GPU; torch sees none on this machine")
        if spec.synthetic is None:
            resolve_dataset(spec, ctx.work_dir)  # the likeliest reason; generated sets exist
        weights_missing(unit.model, unit.variant)

    def run(self, unit: Unit, spec: BoxAPSpec, ctx: CheckContext) -> Outcome:
        if _is_artifact(unit):
            return self._run_artifact(unit, spec, ctx)
        self.missing(unit, spec, ctx)
        root, described = resolve_dataset(spec, ctx.work_dir)
        evaluation = lazy_import("rtmbench.measure.evaluation", "box AP")
        cfg_name, test_cfg = unit.model.evaluation_test_cfg(unit.variant)
        request = evaluation.resolve_request(evaluation.EvaluationRequest(
            coco_root=root, out_dir=ctx.work_dir / _work_name(unit), limit=spec.limit,
            test_cfg=test_cfg, device=unit.device, precision=spec.precision,
            batch_size=spec.batch_size, workers=spec.workers, progress=ctx.progress))
        from .build import build

        built = build(unit.model, unit.variant, progress=ctx.progress)
        result = evaluation.evaluate(unit.model, built.model, request)
        provenance = {"checkpoint": built.provenance, "dataset": described,
                      "evaluation": {k: result.manifest.get(k) for k in
                                     ("device", "batch_size", "precision", "network")
                                     if k in result.manifest},
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
        from ..measure.artifact import ArtifactSpec, true_fp32
        from .build import build

        cfg_name, test_cfg = unit.model.evaluation_test_cfg(unit.variant)
        artifact = ArtifactSpec(unit.backend, unit.device, unit.precision)
        asked = evaluation.EvaluationRequest(
            coco_root=root, out_dir=ctx.work_dir / (f"{_work_name(unit)}-"
                                                    f"{artifact.label.replace('/', '-')}"
                                                    f"-bs{unit.batch}"),
            limit=spec.artifact_limit or spec.limit, test_cfg=test_cfg, device=unit.device,
            precision=unit.precision, batch_size=unit.batch, workers=spec.workers,
            artifact=artifact, progress=ctx.progress)
        request = evaluation.resolve_request(asked)
        reference_request = self._reference_request(unit, spec, ctx, asked)
        built = build(unit.model, unit.variant, progress=ctx.progress)
        with true_fp32():  # the FP32 model itself, not TF32's approximation of it
            reference = evaluation.evaluate(unit.model, built.model, reference_request)
        result = evaluation.evaluate(unit.model, built.model, request)
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
        weights_missing(unit.model, unit.variant)

    @staticmethod
    def _reference_request(unit: Unit, spec: BoxAPSpec, ctx: CheckContext,
                           artifact: Any) -> Any:
        """The PyTorch FP32 model on the ``artifact`` request's images, on its device (run in
        true FP32 on a GPU): the model's own unit's evaluation when it is that (CPU, same
        images)."""
        evaluation = lazy_import("rtmbench.measure.evaluation", "box AP")
        device = "cuda" if unit.device == "cuda" else "cpu"
        name, limit = _work_name(unit), artifact.limit
        own = resolve_device(spec.device, ctx.hardware.get("gpu"))  # the model's own unit's
        if not (device == own == "cpu" and limit == spec.limit):
            name += f"-reference-{device}-{limit or 'all'}"
        return evaluation.resolve_request(replace(
            artifact, out_dir=ctx.work_dir / name, device=device, precision="fp32",
            batch_size=spec.batch_size, artifact=None))

    @staticmethod
    def _agreement(result: Any, root: Path, golden: Path) -> float:
        from ..data import CocoDataset
        from ..data.coco import read_json
        from ..measure.agreement import agreement_ap, load_golden

        dataset = CocoDataset(root, check_images=False)
        detections = read_json(Path(result.detections_path), "detections file")
        return agreement_ap(detections, load_golden(golden), [im.id for im in dataset.images],
                            dataset.cat_ids)


def _work_name(unit: Unit) -> str:
    """The folder, under the run's work directory, of a box AP unit's model evaluation."""
    return f"box_ap-{unit.model.size}-{unit.variant or 'default'}"


def _is_artifact(unit: Unit) -> bool:
    """A box AP unit of a timed artifact (``box_ap.backends``): only those have an input size
    and batch in their key; the model's own units never had one."""
    return unit.check == "box_ap" and unit.input_size is not None


__all__ = ["Check", "CheckContext", "Outcome", "Unit", "register_check", "unregister_check",
           "registered_checks", "get_check", "RANDOM_INIT"]
