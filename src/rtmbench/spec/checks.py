"""What a suite may say about each check: one strict spec per check name.

The suite schema (:mod:`.suite`) is built from this registry, so an unknown check name or an
unknown option is an error naming the file, line, field and fix. The checks' implementations
(``rtmbench.run.checks``) register their spec here; the built-in ones are declared below.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .schema import Strict

RANDOM_INIT = "random-init"  # weights id: seeded PyTorch initialisation (models.build_rtmdet)
FULL_VAL2017 = 5000


class ComplexitySpec(Strict):
    """Params and FLOPs at the zoo's input size; nothing to configure."""


class LatencyTargets(Strict):
    """Every combination of these backends, devices and precisions is one unit."""

    backends: list[Literal["torch", "onnxruntime", "tensorrt", "torch-compile"]] = Field(
        min_length=1)
    devices: list[Literal["cpu", "cuda"]] = Field(min_length=1)
    precisions: list[Literal["fp32", "fp16"]] = Field(min_length=1)


class LatencySpec(Strict):
    targets: list[LatencyTargets] = Field(min_length=1)
    min_iterations: int = Field(default=50, gt=0)
    min_duration_s: float = Field(default=3.0, ge=0)
    warmup_s: float = Field(default=1.0, ge=0)
    input_size: tuple[int, int] | None = None  # width, height; default: the zoo's
    batch: int = Field(default=1, gt=0)
    # torch-compile units only: inductor's mode; auto = reduce-overhead on CUDA, default on CPU
    compile_mode: Literal["auto", "default", "reduce-overhead", "max-autotune"] = "auto"


class BoxAPSpec(Strict):
    """COCO box AP of a zoo checkpoint: on a COCO directory, or on ``synthetic: N`` generated
    images (smoke runs: exercises the whole pipeline, no claim applies)."""

    dataset: str | None = None  # COCO root (val2017/, annotations/); $VARS are expanded
    synthetic: int | None = Field(default=None, gt=0, le=500)
    limit: int | None = Field(default=None, gt=0)
    # zoo weights id(s): one unit each; None: the first available; or "random-init"
    weights: str | list[str] | None = None
    device: Literal["cpu", "cuda"] = "cpu"
    precision: Literal["fp32", "fp16"] = "fp32"  # fp16: CUDA only
    batch_size: int = Field(default=8, gt=0)
    workers: int | None = Field(default=None, ge=0)  # None: sized to the machine (evaluation)

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
