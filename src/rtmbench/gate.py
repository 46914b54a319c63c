"""The regression gate: a run against the published claims and against a baseline run.

Exit codes: 0 nothing regressed, 1 a regression beyond tolerance, 2 unusable input.
- params and FLOPs: must match their claims (at the published precision) and the baseline
  (within tolerance, either direction: the architecture must not change).
- box AP: must not fall below its claim or the baseline by more than the tolerance; compared
  with a baseline only on the same dataset, weights and image count.
- latency: never against milliseconds of another machine. Only against a baseline from the
  same hardware, as the ratio to a reference measured in the same run (``ratio_to_reference``),
  which must not grow beyond the tolerance. Published latencies are shown, never gated.
- a failed unit always regresses; a unit the baseline measured on the same hardware and this run
  could not run is a regression too (lost coverage).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checks import primary_ap
from .errors import InputError, RtmbenchError
from .provenance import same_hardware
from .records import Record, Run, read_run, resolve_run
from .suite import SuiteBase, load_suite
from .zoo import load_zoo

MEASURED = ("measured", "verified")


@dataclass
class Row:
    model: str
    metric: str
    claim: str = "—"
    baseline: str = "—"
    measured: str = "—"
    delta: str = "—"
    verdict: str = ""
    regression: bool = False


def _hardware(record: Record | None) -> dict[str, Any] | None:
    return record.provenance.get("hardware") if record else None


def _complexity_rows(rec: Record, base: Record | None, suite: SuiteBase) -> list[Row]:
    rows = []
    for metric in ("params", "flops"):
        claim = rec.claim.get(metric, {})
        field = "params" if metric == "params" else f"flops_{claim.get('convention', 'mmengine')}"
        value = rec.metrics.get(field)
        if value is None:
            continue
        scale, unit = (1e6, "M") if metric == "params" else (1e9, "G")
        label = metric if metric == "params" else f"FLOPs ({field.removeprefix('flops_')})"
        row = Row(rec.model, label, measured=f"{value / scale:.4f} {unit}")
        verdict = rec.verdict.get(metric)
        if claim:
            row.claim = f"{claim['value']:.{claim.get('decimals', 2)}f} {unit}"
        notes = []
        if verdict and verdict.get("ok") is False:
            row.regression = True
            notes.append("misses the published claim")
        elif verdict and verdict.get("ok"):
            notes.append("matches claim")
        old = base.metrics.get(field) if base and base.status in MEASURED else None
        if old is not None:
            row.baseline = f"{old / scale:.4f} {unit}"
            row.delta = f"{(value - old) / old * 100:+.3f}%"
            if not suite.tolerance(metric).allows(value - old, old):
                row.regression = True
                notes.append(f"changed beyond {suite.tolerance(metric).describe()}")
            else:
                notes.append("same as baseline")
        row.verdict = ("REGRESSION: " if row.regression else "ok: ") + ", ".join(notes or ["—"])
        rows.append(row)
    return rows


def _same_ap_footing(a: Record, b: Record) -> bool:
    keys = ("dataset",)
    return (all(a.provenance.get(k) == b.provenance.get(k) for k in keys)
            and a.metrics.get("num_images") == b.metrics.get("num_images")
            and (a.provenance.get("checkpoint") or {}).get("weights")
            == (b.provenance.get("checkpoint") or {}).get("weights"))


def _box_ap_row(rec: Record, base: Record | None, suite: SuiteBase) -> Row:
    found = primary_ap(rec.metrics)
    row = Row(rec.model, "box AP")
    if found is None:
        return Row(rec.model, "box AP", verdict="REGRESSION: no AP in the record",
                   regression=True)
    convention, ap = found
    weights = f"{rec.variant} weights, " if rec.variant else ""
    row.metric = f"box AP ({weights}{convention}, {rec.metrics.get('num_images', '?')} images)"
    row.measured = f"{ap:.2f}"
    notes = []
    claim, verdict = rec.claim.get("box_ap"), rec.verdict.get("box_ap", {})
    if claim:
        row.claim = f"{claim['value']:.{claim.get('decimals', 1)}f}"
    if verdict.get("ok") is False:
        row.regression = True
        notes.append(f"below the published claim: {verdict.get('text')}")
    elif verdict.get("text"):
        notes.append(verdict["text"])
    old = primary_ap(base.metrics) if base and base.status in MEASURED else None
    if old is not None and _same_ap_footing(rec, base):
        row.baseline, row.delta = f"{old[1]:.2f}", f"{ap - old[1]:+.2f}"
        tol = suite.tolerance("box_ap")
        if ap < old[1] and not tol.allows(ap - old[1], old[1]):
            row.regression = True
            notes.append(f"dropped beyond {tol.describe()}")
        else:
            notes.append(f"within {tol.describe()} of baseline")
    elif old is not None:
        notes.append("baseline on other data/weights: not compared")
    row.verdict = ("REGRESSION: " if row.regression else "ok: ") + "; ".join(notes or ["—"])
    return row


def _latency_row(rec: Record, base: Record | None, suite: SuiteBase) -> Row:
    where = f"{rec.backend}/{rec.device}/{rec.precision}"
    ratio, median = rec.metrics.get("ratio_to_reference"), rec.metrics.get("median_ms")
    row = Row(rec.model, f"latency {where} (ratio to reference)")
    row.measured = (f"{ratio:.4f}" if ratio is not None else "no ratio") + (
        f" ({median:.2f} ms)" if median is not None else "")
    claim = rec.claim.get("latency")
    if claim:
        row.claim = f"{claim['value']} ms ({claim.get('hardware')})"
    if base is None or base.status not in MEASURED:
        row.verdict = "ok: no baseline measurement; not gated"
    elif not same_hardware(_hardware(rec), _hardware(base)):
        row.verdict = "ok: baseline from different hardware; not gated"
    elif ratio is None or base.metrics.get("ratio_to_reference") is None:
        row.verdict = "ok: no reference ratio in run or baseline; not gated"
    else:
        old = base.metrics["ratio_to_reference"]
        row.baseline, row.delta = f"{old:.4f}", f"{(ratio - old) / old * 100:+.1f}%"
        tol = suite.tolerance("latency")
        if ratio > old and not tol.allows(ratio - old, old):
            row.regression = True
            row.verdict = f"REGRESSION: slower relative to the reference beyond {tol.describe()}"
        else:
            row.verdict = f"ok: within {tol.describe()} of baseline (same hardware)"
    return row


def _status_row(rec: Record, base: Record | None) -> Row | None:
    """Rows for records that hold no measurement: failures and units that did not run."""
    where = "/".join(p for p in (rec.backend, rec.device, rec.precision, rec.variant) if p)
    metric = rec.check + (f" {where}" if where else "")
    if rec.status == "failed":
        return Row(rec.model, metric, measured="failed", verdict=f"REGRESSION: failed: "
                   f"{rec.reason}", regression=True)
    if rec.status == "not run":
        lost = (base is not None and base.status in MEASURED
                and same_hardware(_hardware(rec), _hardware(base)))
        return Row(rec.model, metric, measured="not run",
                   baseline="measured" if base and base.status in MEASURED else "—",
                   verdict=("REGRESSION: measured in the baseline on this hardware, now not run: "
                            if lost else "not run: ") + str(rec.reason), regression=lost)
    return None


def compare(run: Run, baseline: Run | None, suite: SuiteBase) -> list[Row]:
    base = baseline.latest_by_key() if baseline else {}
    rows: list[Row] = []
    for key, rec in run.latest_by_key().items():
        old = base.get(key)
        status_row = _status_row(rec, old)
        if status_row is not None:
            rows.append(status_row)
        elif rec.check == "complexity":
            rows.extend(_complexity_rows(rec, old, suite))
        elif rec.check == "box_ap":
            rows.append(_box_ap_row(rec, old, suite))
        elif rec.check == "latency":
            rows.append(_latency_row(rec, old, suite))
        else:
            rows.append(Row(rec.model, rec.check, measured=rec.status,
                            verdict="ok: not a gated check"))
    current = run.latest_by_key()
    for key, old in base.items():
        if key not in current:
            rows.append(Row(old.model, " ".join(p for p in key[1:] if p), baseline=old.status,
                            measured="absent", verdict="REGRESSION: in the baseline, absent "
                            "from this run", regression=True))
    return rows


def format_rows(rows: list[Row]) -> str:
    head = ["model", "metric", "claim", "baseline", "measured", "delta", "verdict"]
    table = [head] + [[r.model, r.metric, r.claim, r.baseline, r.measured, r.delta, r.verdict]
                      for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |"
             for line in table]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def load_usable_run(ref: str | Path, results_dir: str | Path, what: str) -> Run:
    run = read_run(resolve_run(ref, results_dir))
    if not run.records:
        raise InputError(f"{what} {run.path} holds no readable record; give a run made by "
                         f"`rtmbench run`.")
    return run


def run_gate(run: str, *, baseline: str | None = None, suite: str = "gate",
             results_dir: str | Path = "results", zoo_path: str | None = None) -> int:
    try:
        current = load_usable_run(run, results_dir, "run")
        base = load_usable_run(baseline, results_dir, "baseline") if baseline else None
        tolerances = load_suite(suite, load_zoo(zoo_path))
    except RtmbenchError as exc:
        print(f"rtmbench gate: unusable input: {exc}", file=sys.stderr)
        return 2
    rows = compare(current, base, tolerances)
    print(format_rows(rows))
    bad = [r for r in rows if r.regression]
    against = f" and baseline {base.path}" if base else " (no baseline given)"
    print(f"\n{len(rows) - len(bad)}/{len(rows)} rows ok against the claims{against}; "
          f"tolerances from suite {tolerances.name}.")
    if bad:
        print(f"{len(bad)} regression(s): " + "; ".join(f"{r.model} {r.metric}" for r in bad))
    return 1 if bad else 0
