"""The regression gate: a run against the published claims and against a baseline run.

Exit codes: 0 nothing regressed, 1 a regression, a miss or a failed unit, 2 unusable input (a
run or baseline that cannot be read, has a corrupt line, or a suite that does not parse).

Every unit of the run becomes one row per metric, judged by :mod:`.judgement` with the gate
suite's tolerances: a failed unit always fails the gate; a unit the baseline measured on the
same hardware and this run did not is a regression (lost coverage), and so is a unit of the
baseline that is absent from the run. Latency is gated only against a same-hardware baseline,
as the ratio to the reference timed in the same run; a contended measurement is not gated, and
the row says so.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import RtmbenchError
from ..records import Record, Run, UnitKey, load_usable_run
from ..spec.suite import SuiteBase, load_suite
from ..spec.zoo import load_zoo
from .judgement import Judgement, Mark, judge_absent, judge_unit, primary_ap


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
    unreliable: bool = False


def metric_label(key: UnitKey, metric: str, record: Record) -> str:
    if record.check == "complexity" and metric == "params":
        return "params"
    if record.check == "complexity":
        conv = (record.claim.get("flops") or {}).get("convention", "mmengine")
        return f"FLOPs ({conv})"
    if record.check == "box_ap" and metric == "agreement":
        weights = f"{key.variant} weights, " if key.variant else ""
        return (f"box AP agreement with golden detections ({weights}"
                f"{record.metrics.get('num_images', '?')} images)")
    if record.check == "box_ap" and metric == "box_ap_delta":
        return (f"box AP {key.where} against PyTorch FP32 "
                f"({record.metrics.get('num_images', '?')} images)")
    if record.check == "box_ap" and record.status.has_measurement and key.input_size:
        found = primary_ap(record.metrics)  # a timed artifact's unit: say which artifact
        return (f"box AP {key.where} ({found[0] if found else '?'}, "
                f"{record.metrics.get('num_images', '?')} images)")
    if record.check == "box_ap" and record.status.has_measurement:
        found = primary_ap(record.metrics)
        weights = f"{key.variant} weights, " if key.variant else ""
        return (f"box AP ({weights}{found[0] if found else '?'}, "
                f"{record.metrics.get('num_images', '?')} images)")
    if record.check == "latency" and record.status.has_measurement and metric == "agreement":
        return f"agreement AP {key.where} (artifact vs PyTorch FP32)"
    if record.check == "latency" and record.status.has_measurement:
        return f"latency {key.where} (ratio to reference)"
    return record.check + (f" {key.where}" if key.where else "")


def _prefix(mark: Mark) -> str:
    return {Mark.OK: "ok", Mark.NOT_COMPARABLE: "ok", Mark.NOT_RUN: "not run",
            Mark.UNRELIABLE: "UNRELIABLE", Mark.MISS: "REGRESSION",
            Mark.REGRESSION: "REGRESSION", Mark.FAILED: "REGRESSION"}[mark]


def rows_for_unit(key: UnitKey, record: Record, judgements: list[Judgement]) -> list[Row]:
    """One row per metric: the claim's and the baseline's judgements side by side."""
    by_metric: dict[str, list[Judgement]] = {}
    for j in judgements:
        by_metric.setdefault(j.metric, []).append(j)
    rows = []
    for metric, js in by_metric.items():
        row = Row(record.model, metric_label(key, metric, record))
        for j in js:
            if j.against == "claim" and j.claimed:
                row.claim = j.claimed
            if j.reference:
                row.baseline = j.reference
            if j.measured:
                row.measured = j.measured
            if j.delta and (j.against != "claim" or row.delta == "—"):
                row.delta = j.delta
        worst = next((j for j in js if j.red), None) or next(
            (j for j in js if j.mark is Mark.UNRELIABLE), None) or js[0]
        row.regression = any(j.red for j in js)
        row.unreliable = any(j.mark is Mark.UNRELIABLE for j in js)
        if record.check == "latency" and record.status.has_measurement and metric == "latency":
            median = record.metrics.get("median_ms")
            ratio = record.metrics.get("ratio_to_reference")
            row.measured = ((f"{ratio:.4f}" if isinstance(ratio, (int, float)) else "no ratio")
                            + (f" ({median:.2f} ms)" if isinstance(median, (int, float)) else ""))
            if not any(j.against == "baseline" for j in js):
                js = js + [Judgement("latency", Mark.NOT_COMPARABLE,
                                     "no baseline measurement; not gated", against="baseline")]
        texts = [j.text for j in ([worst] + [j for j in js if j is not worst])]
        row.verdict = f"{_prefix(worst.mark)}: " + "; ".join(dict.fromkeys(texts))
        rows.append(row)
    return rows


def compare(run: Run, baseline: Run | None, suite: SuiteBase) -> list[Row]:
    base = baseline.latest_by_key() if baseline else {}
    rows: list[Row] = []
    current = run.latest_by_key()
    for key, rec in current.items():
        rows.extend(rows_for_unit(key, rec, judge_unit(rec, base.get(key), suite)))
    for key, old in base.items():
        if key not in current:
            j = judge_absent(old)
            rows.append(Row(old.model, key.label.removeprefix(old.model + " "),
                            baseline=str(old.status), measured="absent",
                            verdict=f"REGRESSION: {j.text}", regression=True))
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


def run_gate(run: str, *, baseline: str | None = None, suite: str = "gate",
             results_dir: str | Path = "results", zoo_path: str | None = None) -> int:
    try:
        current = load_usable_run(run, results_dir, "run")
        base = load_usable_run(baseline, results_dir, "baseline") if baseline else None
        tolerances = load_suite(suite, load_zoo(zoo_path))
    except RtmbenchError as exc:
        print(f"rtmbench gate: unusable input: {exc}", file=sys.stderr)
        return 2
    for r in (current, base):
        if r is not None and r.problems:
            print(f"rtmbench gate: note: {r.describe_problems()}", file=sys.stderr)
    rows = compare(current, base, tolerances)
    print(format_rows(rows))
    bad = [r for r in rows if r.regression]
    unreliable = [r for r in rows if r.unreliable and not r.regression]
    against = f" and baseline {base.path}" if base else " (no baseline given)"
    print(f"\n{len(rows) - len(bad)}/{len(rows)} rows pass against the claims{against}; "
          f"tolerances from suite {tolerances.name}.")
    if unreliable:
        print(f"{len(unreliable)} row(s) UNRELIABLE, not gated (re-measure on a quiet machine): "
              + "; ".join(f"{r.model} {r.metric}" for r in unreliable))
    if bad:
        print(f"{len(bad)} regression(s): " + "; ".join(f"{r.model} {r.metric}" for r in bad))
    return 1 if bad else 0
