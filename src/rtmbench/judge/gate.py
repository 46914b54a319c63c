"""The regression gate: a run against the published claims and against a baseline run.

Exit codes: 0 nothing regressed, 1 a regression, a miss, a failed or a missing unit, 2 unusable
input (a run or baseline that cannot be read, has a corrupt line, or a suite that cannot be
found or does not parse).

Every unit of the run becomes one row per metric, judged by :mod:`.judgement` with the
tolerances of ``--suite`` (default: the shipped ``gate`` suite's): a failed unit always fails
the gate; a unit the baseline measured on the same hardware and this run did not is a
regression (lost coverage), and so is a unit of the baseline that is absent from the run.
Latency is gated only against a same-hardware baseline, as the ratio to the reference timed in
the same run; a contended measurement is not gated, and the row says so.

A run is also judged against the units its suite plans (:mod:`.completeness`): a planned unit
without a record (the run was stopped or killed before it) is a red row. The plan is
``--suite``'s when given, else the suite the run records; so ``--suite`` sets both the plan and
the tolerances, and without it the run's own suite gives the plan and the ``gate`` suite the
tolerances (``nox -s gate`` runs the smoke suite and gates it with ``--suite smoke``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import Failed, InputError, RtmbenchError
from ..records import Record, Run, UnitKey, load_usable_run
from ..spec.suite import SuiteBase, load_suite
from ..spec.zoo import load_zoo
from ..tables import markdown_table
from .completeness import Plan, plan_for
from .history import DEFAULT_RUNS, History, NamedStep, find_steps, judge_unit_history, read_history
from .judgement import Judgement, Mark, judge_absent, judge_unit, primary_ap

DEFAULT_TOLERANCES_SUITE = "gate"


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
            if not any(j.against in ("baseline", "history") for j in js):
                js = js + [Judgement("latency", Mark.NOT_COMPARABLE,
                                     "no baseline measurement; not gated", against="baseline")]
        texts = [j.text for j in ([worst] + [j for j in js if j is not worst])]
        row.verdict = f"{_prefix(worst.mark)}: " + "; ".join(dict.fromkeys(texts))
        rows.append(row)
    return rows


def missing_row(key: UnitKey, text: str, base: Record | None = None) -> Row:
    """The red row of a planned unit the run has no record of."""
    return Row(key.model, key.label.removeprefix(key.model + " "),
               baseline=str(base.status) if base is not None else "—", measured="missing",
               verdict=f"REGRESSION: {text}", regression=True)


def compare(run: Run, baseline: Run | None, suite: SuiteBase,
            plan: Plan | None = None) -> list[Row]:
    base = baseline.latest_by_key() if baseline else {}
    rows: list[Row] = []
    current = run.latest_by_key()
    for key, rec in current.items():
        rows.extend(rows_for_unit(key, rec, judge_unit(rec, base.get(key), suite)))
    return rows + absent_rows(run, base, plan)


def absent_rows(run: Run, base: dict[UnitKey, Record], plan: Plan | None) -> list[Row]:
    """Red rows for what the run lacks: units its plan names ("missing") and units the
    baseline has a record of (gone)."""
    current = run.latest_by_key()
    missing = plan.missing(run) if plan is not None else []
    rows = [missing_row(key, plan.missing_text(run), base.get(key)) for key in missing]
    for key, old in base.items():
        if key not in current and key not in missing:
            j = judge_absent(old)
            rows.append(Row(old.model, key.label.removeprefix(old.model + " "),
                            baseline=str(old.status), measured="absent",
                            verdict=f"REGRESSION: {j.text}", regression=True))
    return rows


def compare_history(run: Run, history: History, baseline: Run | None, suite: SuiteBase,
                    plan: Plan | None, size: int) -> tuple[list[Row], list[NamedStep],
                                                            list[Run]]:
    """``gate --history``: each unit against the last ``size`` runs of this machine in the
    history (:mod:`.history`), the baseline where a unit has none; the steps in those runs;
    the runs of this machine used."""
    base = baseline.latest_by_key() if baseline else {}
    name = str(baseline.path) if baseline else None
    runs = history.of_machine(run.fingerprint, until=run.start, exclude=run.path)
    alpha = getattr(suite.tolerance("latency"), "alpha", 0.01)
    rows: list[Row] = []
    found: list[NamedStep] = []
    current = run.latest_by_key()
    for key, rec in current.items():
        rows.extend(rows_for_unit(key, rec, judge_unit_history(rec, runs, base.get(key), suite,
                                                               size, name)))
        found += find_steps(key, runs, size, alpha, footing=rec)
    return rows + absent_rows(run, base, plan), found, runs


def history_summary(run: Run, history: History, used: list[Run], found: list[NamedStep],
                    rows: list[Row], size: int) -> list[str]:
    others = [r for r in history.runs if r.fingerprint != run.fingerprint]
    machines = len({r.fingerprint for r in others})
    lines = [f"History: {history.directory}: {len(history.runs)} run(s); {len(used)} of this "
             f"machine ({run.fingerprint.id}: {run.fingerprint.label}) up to this run's start, "
             f"each unit judged against its last {size} usable ones"
             + (f"; {len(others)} run(s) of {machines} other machine(s), never compared"
                if others else "") + "."]
    without = [r for r in rows if "no comparable history" in r.verdict]
    if without:
        lines.append(f"{len(without)} row(s) without comparable history (against the baseline "
                     f"where it has the unit, else not gated on history): "
                     + "; ".join(f"{r.model} {r.metric}" for r in without) + ".")
    if found:
        lines.append("Steps in this machine's history:")
        lines += [f"  {s.describe()}" for s in found]
    else:
        lines.append("No significant step in this machine's history.")
    return lines


def format_rows(rows: list[Row]) -> str:
    head = ["model", "metric", "claim", "baseline", "measured", "delta", "verdict"]
    return markdown_table(head, [[r.model, r.metric, r.claim, r.baseline, r.measured, r.delta,
                                  r.verdict] for r in rows], pad=True)


def plan_summary(plan: Plan, run: Run, tolerances: SuiteBase, given: bool) -> list[str]:
    """What the run was judged against: the plan's suite and what it lacks; where the
    tolerances came from."""
    missing = plan.missing(run)
    lines = [f"Plan: {plan.source}: {len(plan.keys)} unit(s), "
             + (f"{len(missing)} MISSING (no record"
                + (f": the run ended before them; `rtmbench run "
                   f"{plan.suite.path or plan.suite.name} --resume {run.run_id}` measures them"
                   if plan.looks_cut(run) else "") + "): "
                + "; ".join(k.label for k in missing) if missing else "every one recorded")
             + "."]
    unplanned = plan.unplanned(run)
    if unplanned:
        lines.append(f"{len(unplanned)} recorded unit(s) the plan does not name (judged all "
                     f"the same): " + "; ".join(k.label for k in unplanned) + ".")
    lines.append(f"Tolerances: suite {tolerances.name}"
                 + (" (as given)." if given else " (the default; --suite SUITE sets both the "
                    "plan and the tolerances)."))
    return lines


def run_gate(run: str, *, baseline: str | None = None, suite: str | None = None,
             results_dir: str | Path = "results", zoo_path: str | None = None,
             history: str | Path | None = None, history_runs: int = DEFAULT_RUNS) -> int:
    try:
        if history_runs < 1:
            raise InputError(f"--history-runs {history_runs}: give at least 1 run.")
        current = load_usable_run(run, results_dir, "run")
        base = load_usable_run(baseline, results_dir, "baseline") if baseline else None
        zoo = load_zoo(zoo_path)
        tolerances = load_suite(suite or DEFAULT_TOLERANCES_SUITE, zoo)
        plan = plan_for(current, zoo, suite, tolerances if suite else None)
        past = read_history(history) if history is not None else None
    except RtmbenchError as exc:
        print(f"rtmbench gate: unusable input: {exc}", file=sys.stderr)
        return InputError.exit_code
    for r in (current, base):
        if r is not None and r.problems:
            print(f"rtmbench gate: note: {r.describe_problems()}", file=sys.stderr)
    if past is not None:
        rows, found, used = compare_history(current, past, base, tolerances, plan,
                                            history_runs)
    else:
        rows = compare(current, base, tolerances, plan)
    print(format_rows(rows))
    bad = [r for r in rows if r.regression]
    unreliable = [r for r in rows if r.unreliable and not r.regression]
    against = f" and baseline {base.path}" if base else " (no baseline given)"
    if past is not None:
        against = f" and the history in {past.directory}" + (
            f" (baseline {base.path} where a unit has no history)" if base else "")
    print(f"\n{len(rows) - len(bad)}/{len(rows)} rows pass against the claims{against}.")
    print("\n".join(plan_summary(plan, current, tolerances, suite is not None)))
    if past is not None:
        print("\n".join(history_summary(current, past, used, found, rows, history_runs)))
    if unreliable:
        print(f"{len(unreliable)} row(s) UNRELIABLE, not gated (re-measure on a quiet machine): "
              + "; ".join(f"{r.model} {r.metric}" for r in unreliable))
    if bad:
        print(f"{len(bad)} regression(s): " + "; ".join(f"{r.model} {r.metric}" for r in bad))
    return Failed.exit_code if bad else 0
