"""The one judge: a record against its published claim, and against a baseline record.

Gate, report and the runner (for the informational ``verdict`` it stores) all call this module;
nothing else decides whether a number is good. It reads records only (``metrics``, ``claim``,
``provenance``), so old records are re-judged without re-measuring, with whatever tolerances
the caller passes (a suite's).

Marks (:class:`Mark`): ``ok``; ``miss`` (misses its published claim), ``regression`` (worse than
the baseline beyond tolerance) and ``failed`` (the unit failed, its timed artifact's
agreement AP with the PyTorch model is below the threshold stored with it, or a timed
artifact's box AP is below the PyTorch FP32 model's on the same images by more than the
``box_ap_delta`` tolerance) are red and fail the gate;
``not comparable`` (measured, but no claim or baseline on equal footing), ``not run`` (a
missing prerequisite) and ``unreliable`` (a contended or throttled measurement, neither passed
nor failed: re-measure it) are not.

Equal footing:
- params and FLOPs: the claim's own counting convention, at the precision it was published
  with (its decimals, rounded or truncated as the claim says);
- box AP: the claim's AP convention, on all of val2017 (a subset is not comparable); a
  baseline only on the same data set, image count and weights;
- latency: a claim only where GPU, backend, precision, batch and input size all match its
  conditions; a baseline only from the same machine (the same fingerprint: hardware, usable
  cores, threads, driver and the timing packages' versions), compared as the ratio to the
  reference convolution timed in the same run (never raw milliseconds of two runs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Any, Protocol

from ..records import FLOPS_CONVENTIONS, Record, Status

FULL_VAL2017 = 5000
SCALE = {"params": Decimal(10) ** 6, "flops": Decimal(10) ** 9}
CHECK_METRICS = {"complexity": ("params", "flops"), "box_ap": ("box_ap",),
                 "latency": ("latency",)}


class Mark(StrEnum):
    OK = "ok"
    MISS = "miss"
    REGRESSION = "regression"
    FAILED = "failed"
    NOT_COMPARABLE = "not comparable"
    NOT_RUN = "not run"
    UNRELIABLE = "unreliable"

    @property
    def red(self) -> bool:
        return self in (Mark.MISS, Mark.REGRESSION, Mark.FAILED)

    @property
    def ok(self) -> bool | None:
        """True/False/None, the shape records have always stored (None: not judged)."""
        if self is Mark.OK:
            return True
        return False if self.red else None


class ToleranceLike(Protocol):
    def allows(self, delta: float, reference: float) -> bool: ...
    def describe(self) -> str: ...


class Tolerances(Protocol):
    def tolerance(self, metric: str) -> ToleranceLike: ...


@dataclass(frozen=True)
class Judgement:
    metric: str
    mark: Mark
    text: str
    against: str = "claim"  # "claim", "baseline" or "status"
    claimed: str | None = None
    reference: str | None = None  # the baseline's value, as shown
    measured: str | None = None
    delta: str | None = None

    @property
    def red(self) -> bool:
        return self.mark.red

    def as_verdict(self) -> dict[str, Any]:
        return {"ok": self.mark.ok, "mark": str(self.mark), "text": self.text}


# ------------------------------------------------------------------------ helpers
def _gpu_key(name: str) -> str:
    """'NVIDIA GeForce RTX 3090' and 'NVIDIA RTX 3090' name the same card."""
    words = re.sub(r"[^a-z0-9]+", " ", name.lower()).split()
    return " ".join(w for w in words if w not in ("nvidia", "geforce", "tesla"))


def same_gpu(claimed: str | None, gpu: str | None) -> bool:
    return bool(claimed and gpu) and _gpu_key(claimed) == _gpu_key(gpu)


def same_hardware(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """The same CPU model, core count and GPU: a unit measured in a baseline on such a machine
    and not run now lost coverage. (Latency itself is compared only between records of one
    machine fingerprint, :mod:`rtmbench.records.fingerprint`, which also names the timing
    packages' versions.)"""
    if not a or not b:
        return False
    return all(a.get(k) == b.get(k) for k in ("cpu", "cores", "gpu"))


def record_gpu(record: Record) -> str | None:
    env = record.provenance.get("environment") or {}
    return (record.hardware or {}).get("gpu") or env.get("gpu")


def ap_percent(value: float) -> float:
    """Records keep pycocotools' fractions (0..1, or -1 where nothing could be scored);
    claims are percentages."""
    return value * 100.0


def primary_ap(metrics: dict[str, Any]) -> tuple[str, float] | None:
    """(convention, AP in percent) of a box AP record: the claims' convention (coco) first."""
    for convention in ("coco", "mmdet-proposal"):
        table = metrics.get(convention)
        if isinstance(table, dict) and isinstance(table.get("AP"), (int, float)):
            return convention, ap_percent(table["AP"])
    return None


def flops_field(claim: dict[str, Any] | None) -> str:
    return f"flops_{(claim or {}).get('convention', 'mmengine')}"


def _decimals(claim: dict[str, Any], default: int = 2) -> int:
    value = claim.get("decimals", default)
    return value if isinstance(value, int) and value >= 0 else default


def _claim_text(claim: dict[str, Any], default_decimals: int = 2) -> str:
    return f"{claim['value']:.{_decimals(claim, default_decimals)}f}"


def published_form(measured: int, metric: str, claim: dict[str, Any]) -> Decimal:
    """``measured`` in the claim's unit, with the claim's decimals and rounding."""
    quantum = Decimal(1).scaleb(-_decimals(claim))
    mode = ROUND_DOWN if claim.get("rounding") == "truncate" else ROUND_HALF_EVEN
    return (Decimal(measured) / SCALE[metric]).quantize(quantum, rounding=mode)


def _fmt(measured: int, metric: str, digits: int = 3) -> str:
    return f"{Decimal(measured) / SCALE[metric]:.{digits}f}"


# ------------------------------------------------------------------------ claims
def judge_complexity_claim(metric: str, claim: dict[str, Any],
                           metrics: dict[str, Any]) -> Judgement:
    """Params or FLOPs against a claim: equal when written as the claim was published."""
    convention = claim.get("convention") or ("parameters" if metric == "params" else "mmengine")
    value = metrics["params"] if metric == "params" else metrics[f"flops_{convention}"]
    claimed = Decimal(str(claim["value"])).quantize(Decimal(1).scaleb(-_decimals(claim)))
    shown = published_form(value, metric, claim)
    unit = "M" if metric == "params" else "G"
    exact = _fmt(value, metric)
    if shown == claimed:
        parts = [f"matches: {exact} {unit}"]
        if claim.get("rounding") == "truncate":
            rounded = published_form(value, metric, {**claim, "rounding": "round"})
            parts.append(f"truncated to {claimed}" + (
                f" (rounding would give {rounded})" if rounded != claimed else ""))
        else:
            parts.append(f"rounds to {claimed}")
        text = ", ".join(parts)
        if metric == "flops":
            others = [f"{c} gives {_fmt(metrics[f'flops_{c}'], 'flops')} "
                      f"({(metrics[f'flops_{c}'] - value) / value * 100:+.2f}%)"
                      for c in FLOPS_CONVENTIONS if c != convention and f"flops_{c}" in metrics]
            text += f"; counted {convention}" + ("; " + "; ".join(others) if others else "")
        mark = Mark.OK
    else:
        text = (f"MISS: {exact} {unit} under '{convention}' is published as {shown}, claim is "
                f"{claimed}")
        if metric == "flops":
            others = [f"{c}: {_fmt(metrics[f'flops_{c}'], 'flops')}" for c in FLOPS_CONVENTIONS
                      if c != convention and f"flops_{c}" in metrics]
            if others:
                text += f" ({'; '.join(others)})"
        mark = Mark.MISS
    return Judgement(metric, mark, text, claimed=f"{claimed} {unit}",
                     measured=f"{exact} {unit}")


def judge_box_ap_claim(claim: dict[str, Any], metrics: dict[str, Any],
                       tolerance: ToleranceLike) -> Judgement:
    convention = claim.get("convention") or "coco"
    table = metrics.get(convention)
    claimed = _claim_text(claim, 1)
    if not isinstance(table, dict) or "AP" not in table:
        return Judgement("box_ap", Mark.NOT_COMPARABLE,
                         f"no AP under the claim's convention {convention!r}", claimed=claimed)
    ap = ap_percent(table["AP"])
    images = metrics.get("num_images")
    if not isinstance(images, int) or images < FULL_VAL2017:
        return Judgement("box_ap", Mark.NOT_COMPARABLE,
                         f"{ap:.1f} on {images} images: a subset is not comparable with the "
                         f"full-val2017 claim {claimed}", claimed=claimed, measured=f"{ap:.2f}")
    value = float(claim["value"])
    delta = ap - value
    ok = delta >= 0 or tolerance.allows(delta, value)
    return Judgement("box_ap", Mark.OK if ok else Mark.MISS,
                     f"{ap:.2f} vs {claimed} ({delta:+.2f}, tolerance {tolerance.describe()}, "
                     f"{convention} maxDets)", claimed=claimed, measured=f"{ap:.2f}",
                     delta=f"{delta:+.2f}")


def latency_conditions_differ(record: Record, claim: dict[str, Any]) -> list[str]:
    """The claim's conditions this latency record does not share (empty: equal footing)."""
    gpu = record_gpu(record) if record.device == "cuda" else None
    differ = []
    if not same_gpu(claim.get("hardware"), gpu):
        where = gpu if record.device == "cuda" else "CPU"
        differ.append(f"hardware: claim on {claim.get('hardware')}, measured on {where}")
    for field in ("backend", "precision"):
        if claim.get(field) is not None and claim.get(field) != getattr(record, field):
            differ.append(f"{field}: claim {claim.get(field)}, measured {getattr(record, field)}")
    if (claim.get("batch") or 1) != (record.batch or 1):
        differ.append(f"batch: claim {claim.get('batch') or 1}, measured {record.batch or 1}")
    claimed_size = claim.get("input_size")
    if claimed_size and record.input_size and list(claimed_size) != list(record.input_size):
        differ.append(f"input size: claim {claimed_size[0]}x{claimed_size[1]}, measured "
                      f"{record.input_size[0]}x{record.input_size[1]}")
    return differ


def contention_reason(record: Record) -> str | None:
    """Why a latency measurement cannot be trusted (other processes, GPU throttling), or None."""
    m = record.metrics
    if m.get("contention"):
        cores = m.get("other_processes_cores")
        return ("contended: other processes took the CPU during timing"
                + (f" ({cores:.2f} cores on average)" if isinstance(cores, (int, float)) else "")
                + "; re-measure on a quiet machine")
    if m.get("throttled"):
        return f"the GPU was throttled during timing ({m.get('throttle_reasons') or 'see record'})"
    return None


def judge_latency_claim(record: Record, claim: dict[str, Any],
                        tolerance: ToleranceLike) -> Judgement:
    median = record.metrics["median_ms"]
    claimed = f"{claim['value']} ms ({claim.get('hardware')})"
    if reason := contention_reason(record):  # first: unreliable in every view, compared or not
        return Judgement("latency", Mark.UNRELIABLE, reason, claimed=claimed,
                         measured=f"{median:.2f} ms")
    differ = latency_conditions_differ(record, claim)
    if differ:
        return Judgement("latency", Mark.NOT_COMPARABLE, "not comparable: " + "; ".join(differ),
                         claimed=claimed, measured=f"{median:.2f} ms")
    value = float(claim["value"])
    delta = median - value
    ok = delta <= 0 or tolerance.allows(delta, value)
    return Judgement("latency", Mark.OK if ok else Mark.MISS,
                     f"{median:.2f} ms vs {claim['value']} ms on {claim.get('hardware')} "
                     f"({delta / value * 100:+.0f}%, tolerance {tolerance.describe()})",
                     claimed=claimed, measured=f"{median:.2f} ms",
                     delta=f"{delta / value * 100:+.1f}%")


def judge_golden_agreement(claim: dict[str, Any], metrics: dict[str, Any]) -> Judgement:
    """Detections against golden detections: agreement AP at least the claimed minimum."""
    minimum = float(claim["value"])
    value = metrics.get("agreement_ap")
    golden = claim.get("golden", "the golden detections")
    if not isinstance(value, (int, float)):
        return Judgement("agreement", Mark.MISS, f"no agreement AP with {golden} was measured",
                         claimed=f"≥ {minimum:g}")
    ok = value >= minimum
    text = (f"agreement AP {value:.4f} with {golden} "
            + (f"≥ {minimum:g}" if ok else f"< {minimum:g}: the detections changed (resize, "
               f"pad, colour order, box decoding, clipping or NMS?)"))
    return Judgement("agreement", Mark.OK if ok else Mark.MISS, text, claimed=f"≥ {minimum:g}",
                     measured=f"{value:.4f}")


def _metrics_of(record: Record) -> tuple[str, ...]:
    metrics = CHECK_METRICS.get(record.check, ())
    if record.check == "box_ap" and ("agreement" in record.claim
                                     or "agreement_ap" in record.metrics):
        metrics = (*metrics, "agreement")
    return metrics


def judge_agreement(record: Record) -> Judgement | None:
    """A latency record's timed artifact against the FP32 PyTorch model (MLPerf's TEST01 idea):
    below the ``min_agreement_ap`` stored with it, the unit failed: a fast wrong engine is a
    failure, not a result. None when the record has no agreement AP."""
    m = record.metrics
    ap = m.get("agreement_ap")
    if record.check != "latency" or not isinstance(ap, (int, float)):
        return None
    threshold = m.get("min_agreement_ap")
    images = m.get("accuracy_images", "?")
    rel = m.get("output_max_rel_error")
    errors = (f"; max output error {rel:.2g} of the output range"
              if isinstance(rel, (int, float)) else "")
    measured = f"{ap:.3f}"
    if not isinstance(threshold, (int, float)):
        return Judgement("agreement", Mark.NOT_COMPARABLE,
                         f"agreement AP {ap:.3f} on {images} images (no threshold stored)"
                         + errors, measured=measured)
    if ap < threshold:
        return Judgement("agreement", Mark.FAILED,
                         f"FAILED: the timed artifact disagrees with the PyTorch FP32 model: "
                         f"agreement AP {ap:.3f} < {threshold:g} on {images} images{errors}; "
                         f"a fast wrong engine is a failure, not a result",
                         claimed=f">= {threshold:g}", measured=measured,
                         delta=f"{ap - threshold:+.3f}")
    return Judgement("agreement", Mark.OK,
                     f"agreement AP {ap:.3f} >= {threshold:g} on {images} images{errors}",
                     claimed=f">= {threshold:g}", measured=measured,
                     delta=f"{ap - threshold:+.3f}")


def judge_box_ap_delta(record: Record, tolerances: Tolerances) -> Judgement | None:
    """A timed artifact's box AP against the PyTorch FP32 model's on the same images
    (``box_ap.backends`` units): losing more than the ``box_ap_delta`` tolerance (AP points)
    fails the unit, as a fast wrong engine does. None for a record without ``box_ap_delta``."""
    m = record.metrics
    delta, reference = m.get("box_ap_delta"), m.get("reference_box_ap")
    if record.check != "box_ap" or not isinstance(delta, (int, float)):
        return None
    tol = tolerances.tolerance("box_ap_delta")
    points = ap_percent(delta)
    ref = ap_percent(reference) if isinstance(reference, (int, float)) else None
    ref_text = f"{ref:.2f}" if ref is not None else "?"
    images = m.get("num_images", "?")
    shown = f"{points:+.2f}"
    if points < 0 and not tol.allows(points, ref or 0.0):
        return Judgement("box_ap_delta", Mark.FAILED,
                         f"FAILED: the artifact loses {-points:.2f} AP against the PyTorch FP32 "
                         f"model on the same {images} images ({ref_text} -> "
                         f"{(ref or 0.0) + points:.2f}), beyond {tol.describe()}: a fast wrong "
                         f"engine is a failure, not a result",
                         claimed=f"drop within {tol.describe()}", reference=ref_text,
                         measured=shown, delta=shown)
    return Judgement("box_ap_delta", Mark.OK,
                     f"ΔAP {shown} against the PyTorch FP32 model ({ref_text}) on the same "
                     f"{images} images, within {tol.describe()}",
                     claimed=f"drop within {tol.describe()}", reference=ref_text,
                     measured=shown, delta=shown)


def judge_claims(record: Record, tolerances: Tolerances) -> list[Judgement]:
    """One judgement per metric the record's check produces (records with a measurement);
    a latency record with an accuracy check also gets its ``agreement`` judgement."""
    if not record.status.has_measurement:
        return []
    out = []
    for metric in _metrics_of(record):
        claim = record.claim.get(metric)
        if metric == "agreement":
            out.append(judge_golden_agreement(claim, record.metrics) if claim else
                       Judgement(metric, Mark.NOT_COMPARABLE, "no golden detections named"))
            continue
        if not claim:
            if metric == "latency" and (reason := contention_reason(record)):
                out.append(Judgement(metric, Mark.UNRELIABLE, reason))
                continue
            what = f"{record.key.where}" if record.key.where else record.check
            out.append(Judgement(metric, Mark.NOT_COMPARABLE, f"no published claim for {what}"))
        elif metric in ("params", "flops"):
            out.append(judge_complexity_claim(metric, claim, record.metrics))
        elif metric == "box_ap":
            out.append(judge_box_ap_claim(claim, record.metrics, tolerances.tolerance(metric)))
        else:
            out.append(judge_latency_claim(record, claim, tolerances.tolerance(metric)))
    if (agreement := judge_agreement(record)) is not None:
        out.append(agreement)
    if (artifact := judge_box_ap_delta(record, tolerances)) is not None:
        out.append(artifact)
    return out


# ------------------------------------------------------------------------ baselines
def _same_ap_footing(a: Record, b: Record) -> bool:
    weights = [(r.provenance.get("checkpoint") or {}).get("weights") for r in (a, b)]
    return (a.provenance.get("dataset") == b.provenance.get("dataset")
            and a.metrics.get("num_images") == b.metrics.get("num_images")
            and weights[0] == weights[1])


def _complexity_baseline(rec: Record, base: Record, tolerances: Tolerances) -> list[Judgement]:
    out = []
    for metric in ("params", "flops"):
        field = "params" if metric == "params" else flops_field(rec.claim.get("flops"))
        value, old = rec.metrics.get(field), base.metrics.get(field)
        if not isinstance(old, (int, float)) or not isinstance(value, (int, float)):
            out.append(Judgement(metric, Mark.NOT_COMPARABLE, f"baseline has no {field}",
                                 against="baseline"))
            continue
        scale, unit = (1e6, "M") if metric == "params" else (1e9, "G")
        tol = tolerances.tolerance(metric)
        ok = tol.allows(value - old, old)
        percent = (value - old) / old * 100 if old else float("inf")
        delta = f"{percent:+.3f}%"
        if value != old and float(f"{percent:.3f}") == 0:  # +1 of millions: show its size
            change = value - old
            shown = f"{int(change):+,d}" if float(change).is_integer() else f"{change:+g}"
            delta = f"{shown} ({percent:+.2g}%)"
        out.append(Judgement(
            metric, Mark.OK if ok else Mark.REGRESSION,
            "same as baseline" if value == old else (f"within {tol.describe()} of baseline"
                                                     if ok else f"changed beyond "
                                                     f"{tol.describe()} (the architecture "
                                                     f"must not change)"),
            against="baseline", reference=f"{old / scale:.4f} {unit}",
            measured=f"{value / scale:.4f} {unit}", delta=delta))
    return out


def _box_ap_baseline(rec: Record, base: Record, tolerances: Tolerances) -> Judgement:
    now, old = primary_ap(rec.metrics), primary_ap(base.metrics)
    if now is None or old is None:
        return Judgement("box_ap", Mark.NOT_COMPARABLE, "no AP to compare", against="baseline")
    if not _same_ap_footing(rec, base):
        return Judgement("box_ap", Mark.NOT_COMPARABLE,
                         "baseline on other data/weights: not compared", against="baseline",
                         reference=f"{old[1]:.2f}", measured=f"{now[1]:.2f}")
    tol = tolerances.tolerance("box_ap")
    delta = now[1] - old[1]
    bad = delta < 0 and not tol.allows(delta, old[1])
    return Judgement("box_ap", Mark.REGRESSION if bad else Mark.OK,
                     f"dropped beyond {tol.describe()}" if bad
                     else f"within {tol.describe()} of baseline", against="baseline",
                     reference=f"{old[1]:.2f}", measured=f"{now[1]:.2f}", delta=f"{delta:+.2f}")


def _latency_baseline(rec: Record, base: Record, tolerances: Tolerances) -> Judgement:
    ratio, old = rec.metrics.get("ratio_to_reference"), base.metrics.get("ratio_to_reference")
    shown = f"{ratio:.4f}" if isinstance(ratio, (int, float)) else "no ratio"
    if (ours := rec.fingerprint) != (theirs := base.fingerprint):
        return Judgement("latency", Mark.NOT_COMPARABLE,
                         f"baseline from another machine ({'; '.join(theirs.differences(ours))})"
                         f"; not gated", against="baseline", measured=shown)
    if not isinstance(ratio, (int, float)) and isinstance(old, (int, float)):
        # what the baseline could be compared on is gone: lost coverage, not a pass
        return Judgement("latency", Mark.REGRESSION,
                         "the baseline has a ratio to the reference and this run has none (was "
                         "the reference convolution not timed?): the latency can no longer be "
                         "gated", against="baseline", reference=f"{old:.4f}", measured=shown)
    if not isinstance(ratio, (int, float)) or not isinstance(old, (int, float)):
        # same hardware, yet nothing to compare: shown as unreliable, never as a plain "ok"
        return Judgement("latency", Mark.UNRELIABLE,
                         "no reference ratio in run or baseline (timed without the reference "
                         "convolution?); not gated", against="baseline", measured=shown)
    for which, r in (("this run", rec), ("the baseline", base)):
        if reason := contention_reason(r):
            return Judgement("latency", Mark.UNRELIABLE, f"{which} is unreliable ({reason}); "
                             f"not gated", against="baseline", reference=f"{old:.4f}",
                             measured=shown)
    tol = tolerances.tolerance("latency")
    alpha = getattr(tol, "alpha", 0.01)
    delta = f"{(ratio - old) / old * 100:+.1f}%"
    beyond = ratio > old and not tol.allows(ratio - old, old)
    return latency_verdict(
        beyond, rank_test(normalised_samples(rec), normalised_samples(base), alpha), alpha,
        slower=f"slower relative to the reference beyond {tol.describe()} ({delta})",
        within=f"within {tol.describe()} of baseline on the same machine",
        against="baseline", reference=f"{old:.4f}", measured=shown, delta=delta)


def rank_test(now: list[float] | None, then: list[float] | None,
              alpha: float) -> tuple[float | None, str]:
    """One-sided Mann-Whitney U that ``now`` is slower than ``then``: (p, how it is shown). p is
    None where no test could decide: no samples, or too few for any p-value below ``alpha``."""
    if not now or not then:
        return None, "no samples for a rank test"
    from scipy.stats import mannwhitneyu

    if (least := least_p_value_of(len(now), len(then))) >= alpha:
        return None, (f"too few samples for a rank test at {alpha:g} (the smallest p-value "
                      f"possible is {least:.2g})")
    p = float(mannwhitneyu(now, then, alternative="greater").pvalue)
    return p, f"p={p:.2g}"


def latency_verdict(beyond: bool, test: tuple[float | None, str], alpha: float, *,
                    slower: str, within: str, **fields: Any) -> Judgement:
    """The one rule a latency is judged by, against a baseline or a history: beyond the
    tolerance and significantly slower (or beyond it with no rank test possible) is a
    regression; beyond it but not significant is noise; else within. ``slower`` and ``within``
    say against what; ``fields`` are the judgement's other fields."""
    p, shown_p = test
    if beyond and (p is None or p < alpha):
        why = (f"{slower} and " + (f"significant (Mann-Whitney U, {shown_p} < {alpha:g})"
                                   if p is not None
                                   else f"{shown_p}: judged on the medians alone"))
        return Judgement("latency", Mark.REGRESSION, why, **fields)
    if beyond:
        why = (f"{slower} but not significant (Mann-Whitney U, {shown_p} ≥ {alpha:g}): noise, "
               f"not gated")
    else:
        why = f"{within} ({shown_p})"
    return Judgement("latency", Mark.OK, why, **fields)


def normalised_samples(record: Record) -> list[float] | None:
    """A latency record's samples divided by its same-run reference median: the per-iteration
    form of ``ratio_to_reference``, comparable between runs on the same hardware."""
    samples, ref = record.metrics.get("samples_ms"), record.metrics.get("reference_median_ms")
    if not isinstance(samples, list) or len(samples) < 3 or not isinstance(ref, (int, float)):
        return None
    return [s / ref for s in samples]


def least_p_value_of(n1: int, n2: int) -> float:
    """The smallest one-sided Mann-Whitney U p-value samples of n1 and n2 values allow."""
    from math import comb

    return 1.0 / comb(n1 + n2, n1) if n1 and n2 else 1.0


def judge_baseline(record: Record, base: Record | None,
                   tolerances: Tolerances) -> list[Judgement]:
    """The record against the baseline's record of the same unit (both measured)."""
    if base is None or not base.status.has_measurement or not record.status.has_measurement:
        return []
    if record.check == "complexity":
        return _complexity_baseline(record, base, tolerances)
    if record.check == "box_ap":
        return [_box_ap_baseline(record, base, tolerances)]
    if record.check == "latency":
        return [_latency_baseline(record, base, tolerances)]
    return []


# ------------------------------------------------------------------------ a whole unit
def judge_status(record: Record, base: Record | None) -> Judgement | None:
    """The judgement of a record that holds no measurement (failed or not run)."""
    if record.status == Status.FAILED:
        return Judgement(record.check, Mark.FAILED, f"failed: {record.reason}",
                         against="status", measured="failed")
    if record.status == Status.NOT_RUN:
        lost = (base is not None and base.status.has_measurement
                and same_hardware(record.hardware, base.hardware))
        if lost:
            return Judgement(record.check, Mark.REGRESSION,
                             f"measured in the baseline on this hardware, now not run: "
                             f"{record.reason}", against="status", measured="not run",
                             reference="measured")
        return Judgement(record.check, Mark.NOT_RUN, str(record.reason),
                         against="status", measured="not run",
                         reference="measured" if base and base.status.has_measurement else None)
    return None


def judge_unit(record: Record, base: Record | None, tolerances: Tolerances) -> list[Judgement]:
    """Everything the gate says about one unit: its status, its claims, its baseline."""
    if (status := judge_status(record, base)) is not None:
        return [status]
    judgements = judge_claims(record, tolerances) + judge_baseline(record, base, tolerances)
    if not judgements:  # a unit nobody can judge must not vanish from gate or report
        judgements = [Judgement(record.check, Mark.FAILED,
                                f"nothing in this rtmbench judges a '{record.check}' record "
                                "(a mistyped check name, or a check of another version or "
                                "plugin): a unit that cannot be judged does not pass",
                                against="status", measured=str(record.status))]
    return judgements


def judge_absent(base: Record) -> Judgement:
    """A unit the baseline has and the run does not (the suite lost coverage)."""
    return Judgement(base.check, Mark.REGRESSION, "in the baseline, absent from this run",
                     against="status", reference=str(base.status), measured="absent")


def run_time_verdict(record: Record, tolerances: Tolerances) -> tuple[Status, dict[str, dict]]:
    """What the runner stores with a new record: its status (``verified`` when every claim it
    carries matched) and the verdicts, judged with the run's own suite tolerances."""
    judgements = judge_claims(record, tolerances)
    verdict = {j.metric: j.as_verdict() for j in judgements}
    status = record.status
    claimed = [j for j in judgements if record.claim.get(j.metric)]
    if status == Status.MEASURED and claimed and all(j.mark is Mark.OK for j in claimed):
        status = Status.VERIFIED
    return status, verdict
