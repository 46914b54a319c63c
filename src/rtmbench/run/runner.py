"""The runner: every (model, check, backend/device/precision) of a suite, one record each.

Records are appended as each unit finishes, so an interrupted run keeps its finished work;
``--resume RUN`` skips every unit that already has a record; the run file's lock keeps a
second process out. A unit whose prerequisite is missing is a "not run" record with its
reason; any other error is a "failed" record with its reason, and the run goes on.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from tqdm import tqdm

from ..errors import InputError, OutputNotWritable, RtmbenchError, storage_problem
from ..judge.judgement import run_time_verdict
from ..measure.environment import gpu_name, hardware, run_provenance, utc_now
from ..measure.timing import collect_environment
from ..records import (
    PUBLISHED,
    Record,
    RunWriter,
    Status,
    is_interrupted,
    list_runs,
    plan_digest,
    plan_units,
    read_run,
    run_path,
)
from ..records.fingerprint import stored_form as fingerprint_stored_form
from ..spec.suite import SuiteBase
from ..spec.zoo import Zoo, load_zoo
from .checks import CheckContext, Outcome, Unit, get_check
from .plan import Plan, format_plan, make_plan


def default_run_id(suite_name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())[:40]
    return f"{stamp}-{suite_name}-{host or 'host'}"


def plan(suite: SuiteBase, zoo: Zoo) -> list[tuple[Unit, Any]]:
    """Units in the order they run: check by check (cheap complexity first), model by model;
    a unit named twice runs once. Built from :func:`rtmbench.records.plan_units` on this
    machine (its GPU, as the run records it), the expansion the gate checks a run against,
    so the two cannot disagree."""
    return [(Unit(p.model, p.key), p.spec)
            for p in plan_units(suite, zoo, gpu_name())]


@dataclass
class UnitResult:
    """What a unit came to: a check's outcome, or the error that stopped it."""

    status: Status
    reason: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    claim: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def run_unit(unit: Unit, spec: Any, ctx: CheckContext) -> UnitResult:
    """Never raises for a unit's own problems (KeyboardInterrupt still stops the run).

    An error a check raises is recorded by its declared outcome: a missing prerequisite is
    "not run", every other error "failed"; an exception that is no rtmbench error is a bug
    of ours and "failed" too, with its traceback in the provenance.
    """
    check = get_check(unit.check)
    claim: dict[str, Any] = {}
    try:
        claim = check.claims(unit, spec, ctx)
        outcome: Outcome = check.run(unit, spec, ctx)
    except RtmbenchError as exc:
        return UnitResult(Status(exc.outcome), _one_line(exc), claim=claim,
                          provenance={"error": type(exc).__name__})
    except OSError as exc:
        if (problem := storage_problem(exc)) is None:
            return _bug(exc, claim)
        return UnitResult(Status.FAILED, _one_line(f"the unit's output could not be written "
                                                   f"({problem}); free space and resume the "
                                                   f"run"),
                          claim=claim, provenance={"error": type(exc).__name__})
    except (Exception, SystemExit) as exc:  # a bug in a check: record it, go on
        return _bug(exc, claim)
    return UnitResult(Status(outcome.status), outcome.reason, outcome.metrics,
                      outcome.claim or claim, outcome.provenance)


def _bug(exc: BaseException, claim: dict[str, Any]) -> UnitResult:
    return UnitResult(Status.FAILED, _one_line(f"{type(exc).__name__}: {exc}"), claim=claim,
                      provenance={"error": type(exc).__name__,
                                  "traceback": traceback.format_exc(limit=8)})


def to_record(run_id: str, unit: Unit, result: UnitResult, base: dict[str, Any],
              suite: SuiteBase) -> Record:
    """The record of a unit, judged with the run's tolerances; a measurement that does not
    validate (a NaN, a missing metric) is recorded as "failed", never as a measurement."""
    fields = dict(run=run_id, **unit.key.model_dump())
    provenance = {**base, **result.provenance, "date": utc_now()}
    try:
        record = Record(**fields, status=result.status, reason=result.reason,
                        metrics=result.metrics, claim=result.claim, provenance=provenance)
    except ValidationError as exc:
        err = exc.errors()[0]
        why = err["msg"].removeprefix("Value error, ")
        if not _finite_json(provenance):  # a NaN in details must not lose the unit's record
            provenance = {**base, "date": provenance["date"],
                          "unusable_provenance": repr(result.provenance)[:2000]}
        record = Record(**fields, status=Status.FAILED,
                        reason=f"the check produced an unusable measurement: {why}",
                        claim=result.claim if _finite_json(result.claim) else {},
                        provenance={**provenance, "unusable_metrics": repr(result.metrics)[:2000]})
    status, verdict = run_time_verdict(record, suite)
    return record.model_copy(update={"status": status, "verdict": verdict})


def _writable_record(run_id: str, unit: Unit, result: UnitResult, base: dict[str, Any],
                     suite: SuiteBase) -> Record:
    """:func:`to_record`, and a record that serialises; should either fail (a value JSON cannot
    hold), a minimal failed record for the unit instead of losing it and the rest of the run."""
    try:
        record = to_record(run_id, unit, result, base, suite)
        record.to_json()
        return record
    except (ValueError, TypeError) as exc:  # pydantic's errors included
        reason = _one_line(f"the unit's record could not be written ({type(exc).__name__}: "
                           f"{str(exc)[:300]}); its outcome was {result.status}: {result.reason}")
        return Record(run=run_id, **unit.key.model_dump(), status=Status.FAILED, reason=reason,
                      provenance={**base, "date": utc_now()})


def _finite_json(value: Any) -> bool:
    import json

    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


@dataclass
class RunSummary:
    run_id: str
    path: Path
    planned: int
    resumed: int  # units already recorded before this invocation
    statuses: Counter = field(default_factory=Counter)

    @property
    def failed(self) -> int:
        return self.statuses["failed"]


def _done(path: Path) -> set:
    """The units a run file holds a record of (a unit the process died in is not done)."""
    return {r.key for r in read_run(path).records if not is_interrupted(r)}


def _earlier_records(results_dir: Path) -> list[Record]:
    """Every readable record under ``results_dir`` and among the published runs: what the plan
    learns durations and speeds from."""
    records: list[Record] = []
    folders = dict.fromkeys(d.resolve() for d in (results_dir, PUBLISHED) if d.is_dir())
    for path in [p for d in folders for p in list_runs(d)]:
        try:
            records += read_run(path).records
        except InputError:  # an unreadable file teaches nothing; gate and report say why
            continue
    return records


def plan_suite(suite: SuiteBase, *, resume: str | None = None,
               results_dir: str | Path | None = None, zoo: Zoo | None = None,
               run_id: str | None = None) -> Plan:
    """What ``run_suite`` would do, unit by unit, and how long it should take; runs nothing
    and writes nothing (:mod:`.plan`)."""
    zoo = zoo or load_zoo()
    results_dir = Path(results_dir or suite.results_dir)
    units = plan(suite, zoo)
    done = _done(run_path(results_dir, resume)) if resume and run_path(
        results_dir, resume).is_file() else set()
    todo = [(u, s) for u, s in units if u.key not in done]
    work_dir = results_dir / (resume or run_id or default_run_id(suite.name))
    ctx = CheckContext(suite, work_dir, hardware(), progress=False)
    return make_plan(suite, todo, ctx, _earlier_records(results_dir), len(units) - len(todo))


def run_suite(suite: SuiteBase, *, run_id: str | None = None, resume: str | None = None,
              results_dir: str | Path | None = None, zoo: Zoo | None = None,
              progress: bool = True, show_plan: bool = False) -> RunSummary:
    """Run every unit of ``suite`` not yet recorded; ``show_plan`` prints the plan's summary
    (:func:`plan_suite`) to stderr first."""
    if run_id and resume:
        raise InputError("give either --run-id (a new run) or --resume (an existing run), "
                            "not both.")
    zoo = zoo or load_zoo()
    results_dir = Path(results_dir or suite.results_dir)
    run_id = resume or run_id or default_run_id(suite.name)
    path = run_path(results_dir, run_id)
    units = plan(suite, zoo)  # before any file is touched: a bad suite creates nothing
    with _storage_errors(path, suite, run_id), RunWriter(path, resume=resume is not None) as writer:
        # a unit the process died in (no record after its start) is measured again
        done = _done(path) if resume else set()
        todo = [(u, s) for u, s in units if u.key not in done]
        summary = RunSummary(run_id, path, len(units), len(units) - len(todo))
        if not todo:
            return summary
        # the plan as it is now: a later change of the suite is then told from a cut run
        base = {**run_provenance(), "suite": {"name": suite.name,
                                              "path": str(suite.path) if suite.path else None,
                                              "plan": plan_digest([u.key for u, _ in units])}}
        # the machine, as gate --history and the reports group runs (records.fingerprint)
        base["fingerprint"] = fingerprint_stored_form({**base,
                                                       "environment": collect_environment()})
        ctx = CheckContext(suite, results_dir / run_id, base["hardware"], progress)
        if show_plan:
            shown = make_plan(suite, todo, CheckContext(suite, ctx.work_dir, base["hardware"],
                                                        False),
                              _earlier_records(results_dir), summary.resumed)
            print(format_plan(shown, table=False), file=sys.stderr)
        bar = tqdm(total=len(units), initial=summary.resumed, desc=f"{suite.name}",
                   unit="check", file=sys.stderr, disable=not progress, dynamic_ncols=True)
        try:
            for unit, spec in todo:
                bar.set_postfix_str(unit.label, refresh=True)
                started = time.monotonic()
                try:
                    # inside the try: a Ctrl-C or SIGTERM while the start line is being written
                    # (its fsync) is a cancelled unit, not one the process died in
                    writer.started(unit.key)
                    result = run_unit(unit, spec, ctx)
                except KeyboardInterrupt:  # SIGTERM arrives as one too (cli)
                    writer.cancelled(unit.key)
                    raise
                # wall seconds of the unit: what later plans on this machine estimate from
                result.provenance["duration_s"] = round(time.monotonic() - started, 3)
                record = _writable_record(run_id, unit, result, base, suite)
                writer.append(record)
                summary.statuses[str(record.status)] += 1
                bar.update(1)
        finally:
            bar.close()
    return summary


@contextlib.contextmanager
def _storage_errors(path: Path, suite: SuiteBase, run_id: str) -> Iterator[None]:
    """A full disk (or quota, or read-only place) met writing the run file: OutputNotWritable
    (exit 2) saying what is kept and how to go on, instead of a traceback."""
    try:
        yield
    except OSError as exc:
        if (problem := storage_problem(exc)) is None:
            raise
        raise OutputNotWritable(
            f"cannot write the run file {path} ({problem}). The units recorded before are kept "
            f"in it; free space and continue with `rtmbench run {suite.path or suite.name} "
            f"--resume {run_id}`.") from None


def format_summary(summary: RunSummary) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.statuses.items())) or "nothing new"
    resumed = f" ({summary.resumed} already recorded)" if summary.resumed else ""
    return (f"run {summary.run_id}: {summary.planned} units{resumed}; this time: {counts}.\n"
            f"records: {summary.path}\n"
            f"next: rtmbench report {summary.run_id}   |   rtmbench gate {summary.run_id}")
