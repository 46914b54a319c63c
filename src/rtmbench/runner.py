"""The runner: every (model, check, backend/device/precision) of a suite, one record each.

Records are appended as each unit finishes, so an interrupted run keeps its finished work;
``--resume RUN`` skips every unit that already has a record. A unit that cannot run is a
"not run" record with its reason; an unexpected error is a "failed" record, and the run goes on.
"""

from __future__ import annotations

import socket
import sys
import traceback
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .checks import CheckContext, NotRun, Outcome, Unit, get_check, not_run
from .errors import RtmbenchError
from .provenance import run_provenance, utc_now
from .records import Record, RunWriter, read_run, run_path
from .suite import SuiteBase
from .zoo import Zoo, load_zoo


def default_run_id(suite_name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())[:40]
    return f"{stamp}-{suite_name}-{host or 'host'}"


def plan(suite: SuiteBase, zoo: Zoo) -> list[tuple[Unit, Any]]:
    """Units in the order they run: check by check (cheap complexity first), model by model."""
    models = suite.resolved_models(zoo)
    return [(unit, spec) for name, spec in suite.enabled_checks()
            for model in models for unit in get_check(name).units(model, spec)]


def run_unit(unit: Unit, spec: Any, ctx: CheckContext) -> Outcome:
    """Never raises for a unit's own problems (KeyboardInterrupt still stops the run)."""
    try:
        return get_check(unit.check).run(unit, spec, ctx)
    except NotRun as exc:
        return not_run(str(exc))
    except RtmbenchError as exc:
        return not_run(" ".join(str(exc).split()))
    except Exception as exc:  # a bug in a check: record it, keep going with the others
        return Outcome("failed", reason=f"{type(exc).__name__}: {exc}",
                       provenance={"traceback": traceback.format_exc(limit=8)})


def to_record(run_id: str, unit: Unit, outcome: Outcome, base: dict[str, Any]) -> Record:
    return Record(run=run_id, model=unit.model.name, check=unit.check, backend=unit.backend,
                  device=unit.device, precision=unit.precision, variant=unit.variant,
                  status=outcome.status,
                  reason=outcome.reason, metrics=outcome.metrics, claim=outcome.claim,
                  verdict=outcome.verdict,
                  provenance={**base, **outcome.provenance, "date": utc_now()})


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


def run_suite(suite: SuiteBase, *, run_id: str | None = None, resume: str | None = None,
              results_dir: str | Path | None = None, zoo: Zoo | None = None,
              progress: bool = True) -> RunSummary:
    if run_id and resume:
        raise RtmbenchError("give either --run-id (a new run) or --resume (an existing run), "
                            "not both.")
    zoo = zoo or load_zoo()
    results_dir = Path(results_dir or suite.results_dir)
    run_id = resume or run_id or default_run_id(suite.name)
    path = run_path(results_dir, run_id)
    writer = RunWriter(path, resume=resume is not None)
    done = {r.key for r in read_run(path).records} if resume else set()
    units = plan(suite, zoo)
    todo = [(u, s) for u, s in units if u.key not in done]
    summary = RunSummary(run_id, path, len(units), len(units) - len(todo))
    if not todo:
        return summary
    base = {**run_provenance(), "suite": {"name": suite.name,
                                          "path": str(suite.path) if suite.path else None}}
    ctx = CheckContext(suite, results_dir / run_id, base["hardware"], progress)
    bar = tqdm(total=len(units), initial=summary.resumed, desc=f"{suite.name}", unit="check",
               file=sys.stderr, disable=not progress, dynamic_ncols=True)
    try:
        for unit, spec in todo:
            bar.set_postfix_str(unit.label, refresh=True)
            outcome = run_unit(unit, spec, ctx)
            writer.append(to_record(run_id, unit, outcome, base))
            summary.statuses[outcome.status] += 1
            bar.update(1)
    finally:
        bar.close()
    return summary


def format_summary(summary: RunSummary) -> str:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.statuses.items())) or "nothing new"
    resumed = f" ({summary.resumed} already recorded)" if summary.resumed else ""
    return (f"run {summary.run_id}: {summary.planned} units{resumed}; this time: {counts}.\n"
            f"records: {summary.path}\n"
            f"next: rtmbench report {summary.run_id}   |   rtmbench gate {summary.run_id}")
