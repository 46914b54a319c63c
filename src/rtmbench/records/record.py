"""The record: one line of ``results/<run-id>.jsonl``, typed and versioned (pydantic).

A record is one unit of work (a model x a check x where it ran) with its status:

- ``measured``: a measurement was made; ``metrics`` hold it (validated per check: a NaN, an
  infinity or a missing metric makes the line unusable, never "ok");
- ``verified``: measured, and every published claim it carries matched when it was recorded;
- ``failed``: something is wrong (``reason`` says what); the gate always fails on it;
- ``not run``: a prerequisite is missing here (``reason`` says which); never judged.

``claim`` holds the published figures the unit is compared with, keyed by metric, with their
conditions. ``verdict`` is the judgement made when the record was written, kept for the people
and scripts who read records; ``rtmbench gate`` and ``rtmbench report`` always judge again from
``metrics`` and ``claim`` (:mod:`rtmbench.judge`), with the tolerances they are given.

Schema history (:func:`migrate` reads every older version):
- 1 (no ``schema_version`` field): the unit key had no input size nor batch; a latency
  record kept them in ``provenance.input_hw`` (height, width) and ``provenance.batch``.
- 2: ``schema_version``; ``input_size`` (width, height) and ``batch`` in the unit key;
  latency claims carry ``input_size`` and ``batch``. Later additions, all optional (older
  records stay valid): latency ``agreement_ap``, ``min_agreement_ap``, ``output_max_*_error``,
  ``throttled``, ``throttle_reasons``; ``provenance.fingerprint`` (the machine, computed from
  the provenance for records without it: :mod:`.fingerprint`); box AP ``reference_box_ap`` and
  ``box_ap_delta`` (a timed artifact's unit: its key has the backend, device, precision, input
  size and batch).
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .fingerprint import Fingerprint, check_stored, fingerprint_of

SCHEMA_VERSION = 2


class Status(StrEnum):
    MEASURED = "measured"
    VERIFIED = "verified"
    FAILED = "failed"
    NOT_RUN = "not run"

    @property
    def has_measurement(self) -> bool:
        return self in (Status.MEASURED, Status.VERIFIED)


MEASURED_STATUSES = (Status.MEASURED, Status.VERIFIED)

Finite = Annotated[float, Field(allow_inf_nan=False)]
Positive = Annotated[float, Field(allow_inf_nan=False, gt=0)]


class UnitKey(BaseModel):
    """What identifies a unit: resume, baselines and reports match records on it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    check: str
    backend: str | None = None
    device: str | None = None
    precision: str | None = None
    variant: str | None = None  # e.g. the weights id of a box AP unit
    input_size: tuple[int, int] | None = None  # width, height (latency units)
    batch: int | None = None

    @property
    def where(self) -> str:
        """``torch/cpu/fp32 320x320 bs1``: everything but the model and the check."""
        parts = [p for p in (self.backend, self.device, self.precision, self.variant) if p]
        text = "/".join(parts)
        if self.input_size:
            text += f" {self.input_size[0]}x{self.input_size[1]}"
        if self.batch is not None and self.batch != 1:
            text += f" bs{self.batch}"
        return text.strip()

    @property
    def label(self) -> str:
        return f"{self.model} {self.check}" + (f" {self.where}" if self.where else "")


# ------------------------------------------------------------------------ typed metrics
class _Metrics(BaseModel):
    """Metrics of one check: the named fields are required and typed; more may follow.

    Validated strictly (:meth:`Record._consistent`): the judge reads the raw values, so a
    "26.0" string or a ``true`` where a number belongs must be an error, not coerced in the
    check and then read as "no value" (or as 1.0) by the judge."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class ComplexityMetrics(_Metrics):
    params: int = Field(gt=0)
    flops_mmengine: int = Field(gt=0)
    flops_mmengine_act: int = Field(gt=0, alias="flops_mmengine+act")
    input_hw: tuple[int, int]

    @field_validator("input_hw", mode="before")
    @classmethod
    def _json_pair(cls, value: Any) -> Any:  # JSON has no tuples; strict validation wants one
        return tuple(value) if isinstance(value, list) else value

    def flops(self, convention: str) -> int:
        return self.flops_mmengine_act if convention == "mmengine+act" else self.flops_mmengine


APValue = Annotated[float, Field(allow_inf_nan=False, ge=-1.0, le=1.0)]


class BoxAPMetrics(_Metrics):
    num_images: int = Field(gt=0)
    coco: dict[str, APValue] | None = None
    mmdet_proposal: dict[str, APValue] | None = Field(default=None, alias="mmdet-proposal")
    # A timed artifact's unit (suites' box_ap.backends): the PyTorch FP32 model's AP on the same
    # images and this artifact's AP minus it (fractions, as the AP tables; coco convention)
    reference_box_ap: APValue | None = None
    box_ap_delta: Annotated[float, Field(allow_inf_nan=False, ge=-2.0, le=2.0)] | None = None

    @model_validator(mode="after")
    def _has_ap(self) -> BoxAPMetrics:
        if not any(isinstance(m, dict) and "AP" in m for m in (self.coco, self.mmdet_proposal)):
            raise ValueError("a box AP record needs 'AP' under 'coco' or 'mmdet-proposal'")
        return self

    def ap(self, convention: str = "coco") -> float | None:
        table = self.coco if convention == "coco" else self.mmdet_proposal
        return table.get("AP") if table else None


class LatencyMetrics(_Metrics):
    median_ms: Positive
    mean_ms: Positive | None = None
    min_ms: Positive | None = None
    p90_ms: Positive | None = None
    p99_ms: Positive | None = None
    stdev_ms: Finite | None = None
    cv: Finite | None = None
    samples: int | None = Field(default=None, gt=0)
    contention: bool = False
    # timing ended once sustained contention was established (rtmbench.measure.timing)
    stopped_early: bool = False
    ratio_to_reference: Positive | None = None
    reference_median_ms: Positive | None = None
    samples_ms: list[Positive] | None = None  # kept per-iteration times, for the rank test
    # the timed artifact against the FP32 PyTorch model (rtmbench.measure.accuracy); the judge
    # fails a unit whose agreement_ap is below the min_agreement_ap stored with it
    agreement_ap: APValue | None = None
    agreement_ap50: APValue | None = None
    min_agreement_ap: APValue | None = None
    output_max_abs_error: Finite | None = None
    output_max_rel_error: Finite | None = None
    accuracy_images: int | None = Field(default=None, gt=0)
    # GPU records: NVML's clock event reasons during timing (rtmbench.measure.gpu_conditions)
    throttled: bool | None = None
    throttle_reasons: list[str] | None = None

    @model_validator(mode="after")
    def _agrees_with_itself(self) -> LatencyMetrics:
        """The figures the gate reads must tell one story: ``median_ms`` is the median of the
        kept samples, ``ratio_to_reference`` is ``median_ms / reference_median_ms``. A record
        that contradicts itself (edited by hand, or a bug) is unusable, never judged on
        whichever figure the judge happens to read."""
        problems = latency_contradictions(self)
        if problems:
            raise ValueError("the record contradicts itself: " + "; ".join(problems))
        return self


# What a latency record keeps of its samples (rtmbench.measure.timing.kept_samples_ms): every
# one rounded to 0.1 µs (4 decimals in ms), or at most this many, evenly spaced in time order.
STORED_SAMPLES_MAX = 2000
SAMPLE_ROUNDING_MS = 1e-4
RATIO_RTOL = 1e-6  # ratio_to_reference is stored as computed: only float noise may differ


def latency_contradictions(m: LatencyMetrics) -> list[str]:
    """Where a latency record's figures disagree with each other, each naming the fields."""
    out = []
    if m.stopped_early and not m.contention:
        out.append("stopped_early says the timing ended under sustained contention, but "
                   "contention is false")
    samples = m.samples_ms
    if samples:
        n = len(samples)
        if m.samples is not None and n != min(m.samples, STORED_SAMPLES_MAX):
            out.append(f"samples says {m.samples} iterations but samples_ms keeps {n} (every "
                       f"sample is kept up to {STORED_SAMPLES_MAX}, then "
                       f"{STORED_SAMPLES_MAX} evenly spaced)")
        ordered = sorted(samples)
        middle = (ordered[(n - 1) // 2] + ordered[n // 2]) / 2
        complete = m.samples == n if m.samples is not None else n < STORED_SAMPLES_MAX
        slack = SAMPLE_ROUNDING_MS + 1e-9 * m.median_ms
        if complete and abs(middle - m.median_ms) > slack:
            out.append(f"median_ms {m.median_ms:.6g} is not the median of samples_ms "
                       f"({middle:.6g}, {n} samples)")
        elif not complete:  # a subsample: the full median lies well inside its middle half
            low, high = ordered[n // 4], ordered[(3 * n) // 4 - 1 if n >= 4 else n - 1]
            if not low - slack <= m.median_ms <= high + slack:
                out.append(f"median_ms {m.median_ms:.6g} lies outside the middle half of "
                           f"samples_ms ({low:.6g} .. {high:.6g}, {n} of {m.samples or '?'} "
                           f"samples kept)")
    if m.ratio_to_reference is not None and m.reference_median_ms is not None:
        expected = m.median_ms / m.reference_median_ms
        if abs(m.ratio_to_reference - expected) > RATIO_RTOL * expected:
            out.append(f"ratio_to_reference {m.ratio_to_reference:.6g} is not median_ms / "
                       f"reference_median_ms ({m.median_ms:.6g} / "
                       f"{m.reference_median_ms:.6g} = {expected:.6g})")
    return out


class ClaimFields(BaseModel):
    """What the judge reads of every stored claim, validated strictly like the metrics: a
    published value that is a number, the decimals it was published with, and (FLOPs) a
    counting convention the judge knows. More keys (source, hardware, rounding...) may follow."""

    model_config = ConfigDict(extra="allow", strict=True)

    value: Finite
    decimals: int | None = Field(default=None, ge=0, le=12)


FLOPS_CONVENTIONS = ("mmengine", "mmengine+act")  # what ComplexityMetrics records, by name

METRICS: dict[str, type[_Metrics]] = {"complexity": ComplexityMetrics, "box_ap": BoxAPMetrics,
                                      "latency": LatencyMetrics}


def _first_non_finite(value: Any, path: str = "") -> str | None:
    """Where a NaN or infinity hides in nested JSON values, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path or "(value)"
    if isinstance(value, dict):
        for k, v in value.items():
            if found := _first_non_finite(v, f"{path}.{k}" if path else str(k)):
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            if found := _first_non_finite(v, f"{path}[{i}]"):
                return found
    return None


# ------------------------------------------------------------------------ the record
class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)

    schema_version: int = SCHEMA_VERSION
    run: str = Field(min_length=1)
    model: str = Field(min_length=1)
    check: str = Field(min_length=1)
    backend: str | None = None
    device: str | None = None
    precision: str | None = None
    variant: str | None = None
    input_size: tuple[int, int] | None = None
    batch: int | None = Field(default=None, gt=0)
    status: Status
    reason: str | None = None
    metrics: dict[str, Any] = {}
    claim: dict[str, dict[str, Any]] = {}
    verdict: dict[str, dict[str, Any]] = {}
    provenance: dict[str, Any] = {}

    @model_validator(mode="after")
    def _consistent(self) -> Record:
        if self.schema_version != SCHEMA_VERSION:
            raise ValueError(f"schema_version {self.schema_version} is not {SCHEMA_VERSION}; "
                             f"read records through rtmbench.records.parse_record")
        for name in ("metrics", "claim", "provenance"):
            if where := _first_non_finite(getattr(self, name)):
                raise ValueError(f"{name}.{where} is not a finite number")
        if "fingerprint" in self.provenance and (
                why := check_stored(self.provenance["fingerprint"])):
            raise ValueError(f"provenance.fingerprint: {why}")
        for metric, claim in self.claim.items():
            try:
                ClaimFields.model_validate(claim)
            except ValidationError as exc:
                err = exc.errors()[0]
                loc = ".".join(str(p) for p in err["loc"])
                raise ValueError(f"claim.{metric}.{loc}: {err['msg']}") from None
            if metric == "flops" and claim.get("convention", "mmengine") not in \
                    FLOPS_CONVENTIONS:
                raise ValueError(f"claim.flops.convention {claim.get('convention')!r} is none "
                                 f"of {', '.join(FLOPS_CONVENTIONS)}")
        if self.status.has_measurement:
            typed = METRICS.get(self.check)
            if typed is not None:
                try:
                    typed.model_validate(self.metrics, strict=True)
                except ValidationError as exc:
                    err = exc.errors()[0]
                    loc = ".".join(str(p) for p in err["loc"])
                    msg = err["msg"].removeprefix("Value error, ")
                    if not loc:  # the metrics as a whole (they contradict each other)
                        raise ValueError(f"metrics: {msg}") from None
                    raise ValueError(f"metrics.{loc}: {msg} (a {self.status} "
                                     f"{self.check} record needs it)") from None
        elif not (self.reason and self.reason.strip()):
            raise ValueError(f"a '{self.status}' record needs a reason")
        return self

    @property
    def key(self) -> UnitKey:
        return UnitKey(model=self.model, check=self.check, backend=self.backend,
                       device=self.device, precision=self.precision, variant=self.variant,
                       input_size=self.input_size, batch=self.batch)

    def typed_metrics(self) -> _Metrics | None:
        """The metrics as their check's model (None for a record without a measurement)."""
        typed = METRICS.get(self.check)
        if typed is None or not self.status.has_measurement:
            return None
        return typed.model_validate(self.metrics, strict=True)

    @property
    def hardware(self) -> dict[str, Any] | None:
        return self.provenance.get("hardware")

    @property
    def fingerprint(self) -> Fingerprint:
        """The machine it was measured on (:mod:`.fingerprint`): stored, or computed from
        the provenance of a record written before fingerprints were stored."""
        return fingerprint_of(self.provenance)

    def to_json(self) -> str:
        import json

        data = self.model_dump(mode="json")
        return json.dumps(data, sort_keys=True, ensure_ascii=False, allow_nan=False)


class SchemaError(ValueError):
    """A record line that no reader of this version can use."""


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """A record of any known schema version as the current version's fields."""
    if not isinstance(data, dict):
        raise SchemaError(f"a record is a JSON object, found {type(data).__name__}")
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise SchemaError(f"schema_version must be an integer, found {version!r}")
    if version > SCHEMA_VERSION:
        raise SchemaError(f"schema_version {version} was written by a newer rtmbench (this one "
                          f"reads up to {SCHEMA_VERSION}); upgrade rtmbench to read it")
    if version < 1:
        raise SchemaError(f"schema_version {version} does not exist")
    if version == 1:
        data = _migrate_1_to_2(data)
    return data


def _migrate_1_to_2(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    out["schema_version"] = 2
    prov = out.get("provenance") if isinstance(out.get("provenance"), dict) else {}
    if out.get("check") == "latency":
        hw = prov.get("input_hw")
        if isinstance(hw, list) and len(hw) == 2:
            out.setdefault("input_size", [hw[1], hw[0]])
        if isinstance(prov.get("batch"), int):
            out.setdefault("batch", prov["batch"])
        claim = out.get("claim", {}).get("latency") if isinstance(out.get("claim"), dict) else None
        if isinstance(claim, dict):
            # Version 1 latency claims were all published at the zoo's 640x640, batch 1.
            out["claim"] = {**out["claim"], "latency": {"input_size": [640, 640], "batch": 1,
                                                        **claim}}
    return out


def parse_record(data: Any) -> Record:
    """A record from decoded JSON of any known schema version (raises SchemaError or
    pydantic's ValidationError)."""
    return Record.model_validate(migrate(data))
