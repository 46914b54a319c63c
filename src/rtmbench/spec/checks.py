"""What a suite may say about each check: one strict spec per check name.

The suite schema (:mod:`.suite`) is built from this registry, so an unknown check name or an
unknown option is an error naming the file, line, field and fix. The checks' implementations
(``rtmbench.run.checks``) register their spec here; the built-in ones are declared below.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .schema import Strict

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


class ComplexitySpec(Strict):
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


class LatencySpec(LatencyProtocol):
    targets: list[LatencyTargets] = Field(min_length=1)
    # the timed network's weights: random-init (timing only), well-conditioned (seeded weights
    # that detect something: accuracy checks without a download) or a zoo weights id
    weights: str = RANDOM_INIT
    accuracy: AccuracySpec | None = None
    # A measurement flagged as contended (other processes took the CPU) is taken again, up
    # to this many more times; if every attempt is contended the record says so.
    remeasure_contended: int = Field(default=2, ge=0, le=10)
    # torch-compile units only: inductor's mode; auto = reduce-overhead on CUDA, default on CPU
    compile_mode: Literal["auto", "default", "reduce-overhead", "max-autotune"] = "auto"


class BoxAPSpec(Strict):
    """COCO box AP of a zoo checkpoint: on a COCO directory, or on ``synthetic: N`` generated
    images (smoke runs: exercises the whole pipeline, no claim applies)."""

    dataset: str | None = None  # COCO root (val2017/, annotations/); $VARS are expanded
    synthetic: int | None = Field(default=None, gt=0, le=MAX_SYNTHETIC)
    limit: int | None = Field(default=None, gt=0, le=MAX_IMAGES)
    # zoo weights id(s): one unit each; None: the first available; or "random-init"
    weights: str | list[str] | None = None
    device: Literal["cpu", "cuda"] = "cpu"
    precision: Literal["fp32", "fp16"] = "fp32"  # fp16: CUDA only
    batch_size: int = Field(default=8, gt=0, le=MAX_BATCH)
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

    @model_validator(mode="after")
    def _one_dataset(self) -> BoxAPSpec:
        if (self.dataset is None) == (self.synthetic is None):
            raise ValueError("give exactly one of 'dataset' (a COCO directory) or "
                             "'synthetic' (a number of generated images)")
        if self.precision == "fp16" and self.device != "cuda":
            raise ValueError("precision fp16 needs device cuda (CPU evaluation runs in fp32)")
        return self


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
