"""What a suite may say about each check: one strict spec per check name.

The suite schema (:mod:`.suite`) is built from this registry, so an unknown check name or an
unknown option is an error naming the file, line, field and fix. The checks' implementations
(``rtmbench.run.checks``) register their spec here; the built-in ones are declared below.

A spec also says which units it makes of a model (:meth:`CheckSpec.unit_fields`: plain fields,
no code of the check): the runner and the gate both expand a suite through it
(``rtmbench.records.suite_units``), so what the runner runs and what the gate expects of a run
are one list and cannot disagree.
"""

from __future__ import annotations

from itertools import product
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from .schema import PlainName, Strict, plain_name_problem

RANDOM_INIT = "random-init"  # weights id: seeded PyTorch initialisation (models.build_rtmdet)
WELL_CONDITIONED = "well-conditioned"  # seeded weights that detect something (models.init)
FULL_VAL2017 = 5000

# Bounds on every number that sets how long a unit runs or how much memory it takes: a typo
# (1e29 iterations, 1e400 seconds, a 100000x100000 input) is an error naming the field, not a
# run that never finishes. Generous for real use: a GPU does ~1e5 iterations a minute at most.
MAX_ITERATIONS = 1_000_000
MAX_SECONDS = 3600.0            # per timed phase (warm-up, minimum duration)
MIN_SIDE, MAX_SIDE = 32, 4096   # input width/height: RTMDet's largest stride .. 16 Mpixel
MAX_BATCH = 256
MAX_WORKERS = 64
MAX_IMAGES = 1_000_000          # --limit on a data set (COCO val2017 has 5000)
MAX_SYNTHETIC = 500

Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS, allow_inf_nan=False)]
Side = Annotated[int, Field(ge=MIN_SIDE, le=MAX_SIDE)]

AUTO_DEVICE = "auto"  # cuda where the machine has a GPU, else cpu


def resolve_device(device: str, gpu: str | None) -> str:
    """The device a unit runs on: ``auto`` is cuda where the machine has a GPU (``gpu``: its
    name, as the run's hardware provenance records it; None without one), else cpu; an explicit
    device is kept. The runner plans with this machine's GPU; the gate re-plans a run with the
    GPU the run recorded, so both name the same units."""
    if device != AUTO_DEVICE:
        return device
    return "cuda" if gpu else "cpu"


if TYPE_CHECKING:
    from .zoo import ResolvedModel

# The fields of a unit key besides the model and the check (rtmbench.records.UnitKey).
UNIT_FIELDS = ("backend", "device", "precision", "variant", "input_size", "batch")


class CheckSpec(Strict):
    """A check's suite options, and the units they make of one model."""

    def unit_fields(self, model: ResolvedModel, gpu: str | None = None) -> list[dict[str, Any]]:
        """One dict per unit, in run order, with any of :data:`UNIT_FIELDS` (a missing one
        is None). ``gpu``: the name of the machine's GPU (None without one), for a spec whose
        units depend on it; the runner gives this machine's, the gate the one the run
        recorded. Default: one unit per model."""
        return [{}]


def unit_fields(spec: Any, model: ResolvedModel, gpu: str | None = None) -> list[dict[str, Any]]:
    """The units ``spec`` makes of ``model`` on a machine with ``gpu`` (None: none), every
    field present (None where unset)."""
    method = getattr(spec, "unit_fields", None)
    found = method(model, gpu) if callable(method) else [{}]
    out = []
    for fields in found:
        unknown = set(fields) - set(UNIT_FIELDS)
        if unknown:
            raise TypeError(f"{type(spec).__name__}.unit_fields gave unknown unit fields "
                            f"{sorted(unknown)}; a unit has {', '.join(UNIT_FIELDS)}")
        out.append({name: fields.get(name) for name in UNIT_FIELDS})
    return out


class ComplexitySpec(CheckSpec):
    """Params and FLOPs at the zoo's input size; nothing to configure."""


class LatencyTargets(Strict):
    """Every combination of these backends, devices and precisions is one unit."""

    backends: list[Literal["torch", "onnxruntime", "tensorrt", "torch-compile", "openvino"]] = (
        Field(min_length=1))
    devices: list[Literal["cpu", "cuda"]] = Field(min_length=1)
    precisions: list[Literal["fp32", "fp16"]] = Field(min_length=1)
    # ONNX Runtime only: one unit per execution provider (variant "<provider>-ep"); unset: the
    # default provider per device and precision (cpu; cuda for fp32; tensorrt for fp16)
    providers: list[Literal["cpu", "cuda", "tensorrt"]] | None = None

    @model_validator(mode="after")
    def _providers_need_onnxruntime(self) -> LatencyTargets:
        if self.providers is not None and "onnxruntime" not in self.backends:
            raise ValueError("'providers' selects ONNX Runtime execution providers: add "
                             "onnxruntime to this target's backends or remove 'providers'")
        return self


class ArtifactTargets(Strict):
    """Box AP of timed artifacts (``box_ap.backends``), shaped like :class:`LatencyTargets`:
    every combination of these backends, devices and precisions is one unit per weights id.
    ONNX Runtime runs its default provider for the device and precision (no ``providers``:
    a box AP unit's variant is its weights id)."""

    backends: list[Literal["torch", "onnxruntime", "tensorrt", "torch-compile", "openvino"]] = (
        Field(min_length=1))
    devices: list[Literal["cpu", "cuda"]] = Field(min_length=1)
    precisions: list[Literal["fp32", "fp16"]] = Field(min_length=1)


class AccuracySpec(Strict):
    """Check each timed artifact against the FP32 PyTorch model (rtmbench.measure.accuracy):
    raw output errors and agreement AP on ``images`` detection images; a unit whose agreement
    AP is below ``min_agreement_ap`` is judged failed."""

    images: int = Field(default=8, gt=0, le=500)
    min_agreement_ap: float = Field(default=0.9, ge=0, le=1)
    # COCO root ($VARS expanded): its first `images` images, and real box AP too; unset, or
    # not present on this machine: `images` generated images (seeded)
    dataset: str | None = None


class LatencyProtocol(Strict):
    """How long and on what one latency unit runs; also checks ``rtmbench latency``'s flags."""

    min_iterations: int = Field(default=50, gt=0, le=MAX_ITERATIONS)
    min_duration_s: Seconds = 3.0
    warmup_s: Seconds = 1.0
    input_size: tuple[Side, Side] | None = None  # width, height; default: the zoo's
    batch: int = Field(default=1, gt=0, le=MAX_BATCH)


class LatencySpec(LatencyProtocol, CheckSpec):
    targets: list[LatencyTargets] = Field(min_length=1)
    # the timed network's weights: random-init (timing only), well-conditioned (seeded weights
    # that detect something: accuracy checks without a download) or a zoo weights id
    weights: PlainName = RANDOM_INIT
    accuracy: AccuracySpec | None = None
    # A measurement flagged as contended (other processes took the CPU) is timed again, up
    # to this many more times, within remeasure_budget_s seconds (default: as long as the
    # first timing took), and not while the load persists; the record says so
    # (rtmbench.measure.latency.Remeasure).
    remeasure_contended: int = Field(default=2, ge=0, le=10)
    remeasure_budget_s: Seconds | None = None
    # torch-compile units only: inductor's mode; auto = reduce-overhead on CUDA, default on CPU
    compile_mode: Literal["auto", "default", "reduce-overhead", "max-autotune"] = "auto"

    def unit_fields(self, model: ResolvedModel, gpu: str | None = None) -> list[dict[str, Any]]:
        """Every backend x device x precision of every target (x provider for ONNX Runtime
        with ``providers``), once, at the suite's input size (default: the zoo's)."""
        size = tuple(self.input_size or model.input_size)
        seen: dict[tuple, dict[str, Any]] = {}
        for t in self.targets:
            for b, d, p in product(t.backends, t.devices, t.precisions):
                variants = [f"{v}-ep" for v in t.providers] if (
                    b == "onnxruntime" and t.providers) else [None]
                for v in variants:
                    seen.setdefault((b, d, p, v), {
                        "backend": b, "device": d, "precision": p, "variant": v,
                        "input_size": size, "batch": self.batch})
        return list(seen.values())


class BoxAPSpec(CheckSpec):
    """COCO box AP of a zoo checkpoint: on a COCO directory, or on ``synthetic: N`` generated
    images (smoke runs: exercises the whole pipeline, no claim applies)."""

    dataset: str | None = None  # COCO root (val2017/, annotations/); $VARS are expanded
    synthetic: int | None = Field(default=None, gt=0, le=MAX_SYNTHETIC)
    limit: int | None = Field(default=None, gt=0, le=MAX_IMAGES)
    # zoo weights id(s): one unit each; None: the first available; or "random-init"
    weights: str | list[str] | None = None  # plain names: a unit's work folder is named by it
    # auto: cuda where this machine has a GPU, else cpu (the unit key records which ran)
    device: Literal["auto", "cpu", "cuda"] = AUTO_DEVICE
    precision: Literal["fp32", "fp16"] = "fp32"  # fp16: CUDA only; the claims are FP32
    # images per forward; None: suited to the device (rtmbench.measure.evaluation)
    batch_size: int | None = Field(default=None, gt=0, le=MAX_BATCH)
    # data-loader worker processes; None: sized to the machine (rtmbench.measure.evaluation)
    workers: int | None = Field(default=None, ge=0, le=MAX_WORKERS)
    # Golden detections (a path relative to the suite file) the run's detections must agree
    # with: agreement AP (rtmbench.measure.agreement) at least min_agreement_ap, else the unit
    # is red. The smoke suite's regression check of the whole detection pipeline.
    golden: str | None = None
    min_agreement_ap: float = Field(default=0.99, gt=0, le=1)
    # The artifacts the latency check times, evaluated like the model (rtmbench.measure.
    # artifact): one unit per target x weights id, each with its AP, the PyTorch FP32 model's
    # AP on the same images and the difference (box_ap_delta); a drop beyond the suite's
    # tolerances.box_ap_delta fails the unit.
    backends: list[ArtifactTargets] | None = None
    # Each artifact is made for this many images per inference (static shapes, as `latency
    # --batch` makes it; 1 = the latency units' default, the very artifact they time).
    artifact_batch: int = Field(default=1, gt=0, le=MAX_BATCH)
    # First N images for the artifact units and their PyTorch FP32 reference (default: limit).
    artifact_limit: int | None = Field(default=None, gt=0, le=MAX_IMAGES)

    @field_validator("weights")
    @classmethod
    def _plain_names(cls, value: str | list[str] | None) -> str | list[str] | None:
        for name in [value] if isinstance(value, str) else value or []:
            if problem := plain_name_problem(name):
                raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _one_dataset(self) -> BoxAPSpec:
        if (self.dataset is None) == (self.synthetic is None):
            raise ValueError("give exactly one of 'dataset' (a COCO directory) or "
                             "'synthetic' (a number of generated images)")
        if self.precision == "fp16" and self.device != "cuda":
            raise ValueError("precision fp16 needs device cuda (CPU evaluation runs in fp32; "
                             "with device auto a CPU-only machine would run it in fp32)")
        return self

    def unit_fields(self, model: ResolvedModel, gpu: str | None = None) -> list[dict[str, Any]]:
        """One unit per weights id (None: the model's first available weights): the PyTorch
        model, judged by its claim; then one per ``backends`` target x weights id: a timed
        artifact, whose key also has the input size and batch it is made for (which also sets
        it apart from the model's own unit)."""
        ids = self.weights if isinstance(self.weights, list) else [self.weights]
        device = resolve_device(self.device, gpu)  # the unit key records where it runs
        units = [{"backend": "torch", "device": device, "precision": self.precision,
                  "variant": w} for w in ids]
        size = tuple(model.input_size)
        for t in self.backends or []:
            for b, d, p in product(t.backends, t.devices, t.precisions):
                units += [{"backend": b, "device": d, "precision": p, "variant": w,
                           "input_size": size, "batch": self.artifact_batch} for w in ids]
        return units


_SPECS: dict[str, type[Strict]] = {}


def register_spec(name: str, spec: type[Strict]) -> None:
    _SPECS[name] = spec


def unregister_spec(name: str) -> None:
    _SPECS.pop(name, None)


def registered_specs() -> dict[str, type[Strict]]:
    return dict(_SPECS)


for _name, _spec in (("complexity", ComplexitySpec), ("latency", LatencySpec),
                     ("box_ap", BoxAPSpec)):
    register_spec(_name, _spec)
