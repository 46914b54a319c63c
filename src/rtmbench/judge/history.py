"""Regression gating over a history of runs per machine (``rtmbench gate RUN --history DIR``).

A baseline is one run someone refreshes by hand: a slow drift passes every step, and it stops
applying without a word when the runner's machine changes. A history is every run file in a
directory (``results/``, or a branch of them in CI), grouped by machine fingerprint
(:mod:`rtmbench.records.fingerprint`; runs of another fingerprint never take part), in date
order. For each unit of the run:

- **Which runs**: the last ``runs`` (default :data:`DEFAULT_RUNS`) runs of this machine, up to
  the run's own start, that have a *usable* record of the unit: measured, neither contended
  nor throttled (failed, interrupted and not-run records never enter the history);
- **latency**: the window's per-run ratios to the reference are split into levels at their
  significant steps (:mod:`.steps`); the run is compared with the *best* (fastest) level, by
  the latency tolerance on the ratio and a one-sided Mann-Whitney U test of the run's
  normalised samples (samples / same-run reference median) against that level's pooled
  samples, as the baseline comparison does. Without a step the best level is the whole window
  pooled. Comparing with the best level (as asv compares the latest value with the best one)
  is what catches a drift: 2 % per run passes every run-to-run comparison, but not this one.
  A deliberate slowdown therefore stays red until it is ``runs`` runs old;
- **box AP**: the same with the highest level of the runs on the same footing (data set,
  images, weights), within the box AP tolerance; **params and FLOPs**: exactly (within their
  tolerance) as the last run of the window;
- **no usable history** for a unit: the baseline (``--baseline``) judges it, and the row says
  so; with neither, the row says "no comparable history or baseline" (never a silent pass);
- a unit the last run of this machine measured and this run did not run lost coverage: red.

The steps found in each unit's window are listed with the commit they start at.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import InputError
from ..records import Record, Run, UnitKey, list_runs, read_run
from ..records.fingerprint import Fingerprint
from .judgement import (
    Judgement,
    Mark,
    Tolerances,
    _complexity_baseline,
    _same_ap_footing,
    contention_reason,
    judge_baseline,
    latency_verdict,
    normalised_samples,
    primary_ap,
    rank_test,
)
from .steps import Segment, Step, segments, steps

DEFAULT_RUNS = 20
NO_HISTORY = "no comparable history or baseline"


@dataclass(frozen=True)
class History:
    """The run files of a directory, each read once, in date order."""

    directory: Path
    runs: list[Run]

    def of_machine(self, fingerprint: Fingerprint, until: str | None = None,
                   exclude: Path | None = None) -> list[Run]:
        """Runs of this fingerprint (started no later than ``until``), oldest first."""
        return [r for r in self.runs
                if r.fingerprint == fingerprint and (until is None or r.start <= until)
                and (exclude is None or r.path.resolve() != exclude.resolve())]

    def machines(self) -> dict[Fingerprint, list[Run]]:
        out: dict[Fingerprint, list[Run]] = {}
        for run in self.runs:
            out.setdefault(run.fingerprint, []).append(run)
        return out


def read_history(directory: str | Path) -> History:
    """Every run file in ``directory``; a corrupt line makes it unusable input (a torn last
    line, an interrupted write, is allowed)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"history directory {directory} does not exist or is not a "
                         f"directory; give the folder that holds the run files (.jsonl), "
                         f"e.g. results/.")
    runs = []
    for path in list_runs(directory):
        run = read_run(path)
        if run.corrupt:
            shown = "; ".join(p.describe(run.path) for p in run.corrupt[:3])
            raise InputError(f"history run {path} has {len(run.corrupt)} unusable line(s): "
                             f"{shown}. Fix or remove those lines, or move the file out of "
                             f"{directory}.")
        if run.records:
            runs.append(run)
    return History(directory, sorted(runs, key=lambda r: (r.start, r.run_id)))


def short(run: Run) -> str:
    """A run as people name it in a history: its short commit, else its id."""
    return run.commit[:7] if run.commit else run.run_id


# ------------------------------------------------------------------------ one unit's series
def usable(record: Record) -> bool:
    """May enter a history: measured, not contended or throttled (not failed, interrupted or
    not run)."""
    return record.status.has_measurement and contention_reason(record) is None


def point(record: Record, metric: str) -> tuple[float, list[float]] | None:
    """The value a record adds to a series of ``metric``, and the samples behind it."""
    m = record.metrics
    if metric == "latency":
        ratio = m.get("ratio_to_reference")
        if not isinstance(ratio, (int, float)):
            return None
        return float(ratio), normalised_samples(record) or [float(ratio)]
    if metric == "box_ap":
        found = primary_ap(m)
        return (found[1], [found[1]]) if found else None
    if metric == "agreement":
        ap = m.get("agreement_ap")
        return (float(ap), [float(ap)]) if isinstance(ap, (int, float)) else None
    return None


def series_metrics(key: UnitKey) -> tuple[str, ...]:
    """The series a unit has in a history: its latency ratio or AP, and agreement AP."""
    return {"latency": ("latency", "agreement"), "box_ap": ("box_ap", "agreement")}.get(
        key.check, ())


@dataclass(frozen=True)
class Window:
    """The usable records of one unit and metric in the last runs of one machine."""

    runs: list[Run]
    records: list[Record]
    values: list[float]
    pools: list[list[float]]

    def segments(self, alpha: float, metric: str) -> list[Segment]:
        return segments(self.values, self.pools, alpha, log=metric == "latency")


def window(key: UnitKey, runs: list[Run], metric: str, size: int,
           footing: Record | None = None) -> Window:
    """The last ``size`` usable records of ``key`` with a value of ``metric`` (and, for box
    AP, on the same footing as ``footing``), oldest first."""
    chosen: list[tuple[Run, Record, float, list[float]]] = []
    for run in reversed(runs):
        record = run.latest_by_key().get(key)
        if record is None or not usable(record):
            continue
        if metric == "box_ap" and footing is not None and not _same_ap_footing(footing,
                                                                                 record):
            continue
        found = point(record, metric)
        if found is None:
            continue
        chosen.append((run, record, *found))
        if len(chosen) == size:
            break
    chosen.reverse()
    return Window([c[0] for c in chosen], [c[1] for c in chosen], [c[2] for c in chosen],
                  [c[3] for c in chosen])


# ------------------------------------------------------------------------ judging a unit
def _span(win: Window, seg: Segment) -> str:
    first, last = win.runs[seg.start], win.runs[seg.end - 1]
    return (f"{seg.runs} run{'s' if seg.runs > 1 else ''}, {short(first)}"
            + (f"..{short(last)}" if seg.runs > 1 else ""))


def judge_latency_history(rec: Record, win: Window, tol: object) -> Judgement:
    ratio = rec.metrics.get("ratio_to_reference")
    shown = f"{ratio:.4f}" if isinstance(ratio, (int, float)) else "no ratio"
    if not isinstance(ratio, (int, float)):
        return Judgement("latency", Mark.REGRESSION,
                         f"the history of this machine ({len(win.records)} runs) has a ratio to "
                         f"the reference and this run has none (was the reference convolution "
                         f"not timed?): the latency can no longer be gated", against="history",
                         measured=shown)
    if reason := contention_reason(rec):
        return Judgement("latency", Mark.UNRELIABLE, f"this run is unreliable ({reason}); not "
                         f"gated", against="history", measured=shown)
    alpha = getattr(tol, "alpha", 0.01)
    parts = win.segments(alpha, "latency")
    best = min(parts, key=lambda s: s.level)
    level = best.level
    delta = f"{(ratio - level) / level * 100:+.1f}%"
    beyond = ratio > level and not tol.allows(ratio - level, level)
    pool = list(best.pool) if len(best.pool) >= 3 else None
    where = (f"the best level of this machine's last {len(win.records)} runs "
             f"({level:.4f}: {_span(win, best)}"
             + (f"; {len(parts)} levels, latest {parts[-1].level:.4f}" if len(parts) > 1
                else ": no step") + ")")
    return latency_verdict(
        beyond, rank_test(normalised_samples(rec), pool, alpha), alpha,
        slower=f"slower than {where} beyond {tol.describe()} ({delta})",
        within=f"within {tol.describe()} of {where}",
        against="history", reference=f"{level:.4f} (history)", measured=shown, delta=delta)


def judge_box_ap_history(rec: Record, win: Window, tol: object) -> Judgement:
    now = primary_ap(rec.metrics)
    if now is None:
        return Judgement("box_ap", Mark.NOT_COMPARABLE, "no AP to compare", against="history")
    parts = win.segments(getattr(tol, "alpha", 0.01), "box_ap")
    best = max(parts, key=lambda s: s.level)
    delta = now[1] - best.level
    bad = delta < 0 and not tol.allows(delta, best.level)
    where = (f"the best level of this machine's last {len(win.records)} runs on the same data "
             f"and weights ({best.level:.2f}: {_span(win, best)})")
    return Judgement("box_ap", Mark.REGRESSION if bad else Mark.OK,
                     (f"dropped beyond {tol.describe()} below {where}" if bad
                      else f"within {tol.describe()} of {where}"), against="history",
                     reference=f"{best.level:.2f} (history)", measured=f"{now[1]:.2f}",
                     delta=f"{delta:+.2f}")


def _via(judgements: list[Judgement], text: str) -> list[Judgement]:
    return [replace(j, text=f"{text}: {j.text}") for j in judgements]


def judge_history(rec: Record, runs: list[Run], base: Record | None, tolerances: Tolerances,
                  size: int, baseline_name: str | None) -> list[Judgement]:
    """The history's judgements of one measured record (claims are judged apart)."""
    if rec.check == "complexity":
        last = next(((run, r) for run in reversed(runs[-size:] if size else runs)
                     if (r := run.latest_by_key().get(rec.key)) is not None and usable(r)),
                    None)
        if last is not None:
            return _via([replace(j, against="history")
                         for j in _complexity_baseline(rec, last[1], tolerances)],
                        f"against the last run of this machine ({short(last[0])})")
        return _fallback(rec, base, tolerances, baseline_name, ("params", "flops"))
    if rec.check == "box_ap":
        win = window(rec.key, runs, "box_ap", size, footing=rec)
        if win.records:
            return [judge_box_ap_history(rec, win, tolerances.tolerance("box_ap"))]
        return _fallback(rec, base, tolerances, baseline_name, ("box_ap",))
    if rec.check == "latency":
        win = window(rec.key, runs, "latency", size)
        if win.records:
            return [judge_latency_history(rec, win, tolerances.tolerance("latency"))]
        return _fallback(rec, base, tolerances, baseline_name, ("latency",))
    return []


def _fallback(rec: Record, base: Record | None, tolerances: Tolerances,
              baseline_name: str | None, metrics: tuple[str, ...]) -> list[Judgement]:
    """No usable history for the unit: the baseline's judgement, saying so; or a row that
    says there is neither."""
    if base is not None and base.status.has_measurement:
        return _via(judge_baseline(rec, base, tolerances),
                    f"no comparable history of this machine; against baseline {baseline_name}")
    text = NO_HISTORY + (f" (baseline {baseline_name} has no measurement of this unit)"
                         if baseline_name else "") + ": not gated on history"
    return [Judgement(m, Mark.NOT_COMPARABLE, text, against="history") for m in metrics]


def lost_coverage(rec: Record, runs: list[Run]) -> Judgement | None:
    """A unit not run now that the last run of this machine measured: red."""
    for run in reversed(runs):
        old = run.latest_by_key().get(rec.key)
        if old is None:
            continue
        if old.status.has_measurement:
            return Judgement(rec.check, Mark.REGRESSION,
                             f"measured by the last run of this machine ({short(run)}), now "
                             f"not run: {rec.reason}", against="status", measured="not run",
                             reference="measured")
        return None
    return None


# ------------------------------------------------------------------------ steps
@dataclass(frozen=True)
class NamedStep:
    key: UnitKey
    metric: str
    step: Step
    runs: list[Run]  # the window the step was found in

    @property
    def run(self) -> Run:
        return self.runs[self.step.at]

    @property
    def runs_after(self) -> int:
        return len(self.runs) - self.step.at

    def describe(self) -> str:
        what = {"latency": "latency", "box_ap": "box AP", "agreement": "agreement AP"}[
            self.metric]
        label = f"{self.key.model} {what}" + (f" {self.key.where}" if self.key.where else "")
        if self.metric == "latency":
            change = f"{self.step.change * 100:+.1f} %"
        else:
            change = f"{self.step.after.level - self.step.before.level:+.4g}"
        commit = f"commit {self.run.commit[:7]}" if self.run.commit else f"run {self.run.run_id}"
        return (f"{label}: {change} from {commit} (run {self.run.run_id}, {self.runs_after} "
                f"run{'s' if self.runs_after != 1 else ''} from there on, p = "
                f"{self.step.p:.2g})")


def find_steps(key: UnitKey, runs: list[Run], size: int | None, alpha: float,
               footing: Record | None = None) -> list[NamedStep]:
    """The significant steps of each series of ``key`` in ``runs`` (its last ``size`` usable
    records; all when None)."""
    found = []
    for metric in series_metrics(key):
        win = window(key, runs, metric, size or len(runs) or 1, footing)
        parts = win.segments(alpha, metric)
        found += [NamedStep(key, metric, s, win.runs) for s in steps(parts, alpha)]
    return found


# ------------------------------------------------------------------------ a whole unit
def judge_unit_history(record: Record, runs: list[Run], base: Record | None,
                       tolerances: Tolerances, size: int,
                       baseline_name: str | None) -> list[Judgement]:
    """Everything ``gate --history`` says about one unit: status, claims, history (or the
    baseline where the unit has no history)."""
    from ..records import Status
    from .judgement import judge_claims, judge_status, judge_unit

    if record.status == Status.NOT_RUN and (lost := lost_coverage(record, runs)) is not None:
        return [lost]
    if (status := judge_status(record, base)) is not None:
        return [status]
    judgements = judge_claims(record, tolerances) + judge_history(
        record, runs, base, tolerances, size, baseline_name)
    return judgements or judge_unit(record, None, tolerances)
