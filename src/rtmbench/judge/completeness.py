"""Is a run whole? Its records against the units its suite plans.

A run cut short (Ctrl-C, SIGTERM, ``kill -9`` or a crash between two units) simply has fewer
records: judged record by record it would be a shorter green run. So the gate (and the
report's gate view) judges a run against the units its suite plans
(:func:`rtmbench.records.plan_keys`, the expansion the runner runs): a planned unit without a
record is a red row, "missing: the run ended before this unit".

Which suite: the one given (``rtmbench gate --suite``), else the one the run records in every
record's ``provenance.suite`` (its name and the path it was loaded from). A recorded path that
no longer exists is looked up by name among the suites (``suites/NAME.yaml``, then the shipped
ones), and the output says which file was used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, RtmbenchError
from ..records import Run, UnitKey, is_interrupted, plan_digest, plan_keys
from ..spec.suite import SuiteBase, find_suite, load_suite
from ..spec.zoo import Zoo

MISSING_TEXT = "missing: the run ended before this unit"


@dataclass(frozen=True)
class Plan:
    """The units a run is judged against, and where that list came from."""

    suite: SuiteBase
    keys: list[UnitKey]
    source: str  # for people: "suite smoke (suites/smoke.yaml, recorded by the run)"
    recorded: str | None  # the suite name the run records, if any

    def missing(self, run: Run) -> list[UnitKey]:
        have = set(run.latest_by_key())
        return [k for k in self.keys if k not in have]

    def unplanned(self, run: Run) -> list[UnitKey]:
        planned = set(self.keys)
        return [k for k in run.latest_by_key() if k not in planned]

    def changed_since(self, run: Run) -> bool:
        """The run records its suite's plan as it was (``provenance.suite.plan``, written since
        runs record it) and this plan differs: the suite changed after the run."""
        digests = recorded_plans(run)
        return (bool(digests) and self.recorded == self.suite.name
                and plan_digest(self.keys) not in digests)

    def looks_cut(self, run: Run) -> bool:
        """Missing units and nothing else amiss: the run was stopped before them. (A run that
        also holds units the plan does not name, records another suite, or recorded another
        plan of this suite was made with another version of the suite or another suite.)"""
        return (not self.unplanned(run) and not self.changed_since(run)
                and self.recorded in (None, self.suite.name))

    def missing_text(self, run: Run) -> str:
        if self.recorded is not None and self.recorded != self.suite.name:
            return (f"missing: suite {self.suite.name} plans this unit and the run (of suite "
                    f"{self.recorded}) has no record of it")
        if self.changed_since(run):
            return (f"missing: suite {self.suite.name} plans this unit now; it planned other "
                    f"units when the run was made (the suite changed after the run)")
        if not self.looks_cut(run):
            return (f"missing: suite {self.suite.name} plans this unit and the run has no "
                    f"record of it (the run holds units the suite does not plan: was the "
                    f"suite changed after the run?)")
        return MISSING_TEXT


def recorded_suites(run: Run) -> list[tuple[str, str | None]]:
    """The distinct (name, path) suites the run's records say they ran in, in order."""
    found: dict[tuple[str, str | None], None] = {}
    for record in run.records:
        if is_interrupted(record):  # made by the reader from a start marker: no provenance
            continue
        suite = record.provenance.get("suite")
        if isinstance(suite, dict) and isinstance(suite.get("name"), str):
            path = suite.get("path")
            found[(suite["name"], path if isinstance(path, str) else None)] = None
    return list(found)


def recorded_plans(run: Run) -> set[str]:
    """The plan digests the run's records carry (none for runs made before they did)."""
    found = set()
    for record in run.records:
        suite = record.provenance.get("suite") if not is_interrupted(record) else None
        if isinstance(suite, dict) and isinstance(suite.get("plan"), str):
            found.add(suite["plan"])
    return found


def _load_recorded(run: Run, zoo: Zoo) -> tuple[SuiteBase, str, str]:
    suites = recorded_suites(run)
    if not suites:
        raise InputError(f"run {run.path} records no suite (provenance.suite): the gate cannot "
                         f"tell which units it should have; give the suite it ran with "
                         f"--suite SUITE.")
    names = sorted({name for name, _ in suites})
    if len(names) > 1:
        raise InputError(f"run {run.path} holds records of several suites ({', '.join(names)}): "
                         f"the gate cannot tell which units it should have; give the one to "
                         f"judge it against with --suite SUITE.")
    name = names[0]
    paths = [p for n, p in suites if p]
    for path in paths:
        if Path(path).is_file():
            return _load(path, zoo, run), f"suite {name} ({path}, recorded by the run)", name
    try:
        found = find_suite(name)
    except InputError:
        where = f" at {', '.join(paths)}" if paths else ""
        raise InputError(f"the suite run {run.path} records, {name!r}{where}, cannot be found "
                         f"here: give the suite file the run was made with, --suite PATH."
                         ) from None
    recorded = f"recorded path {paths[0]} not found; " if paths else ""
    return (_load(found, zoo, run), f"suite {name} ({found}: {recorded}found by the run's "
            f"suite name)", name)


def _load(ref: str | Path, zoo: Zoo, run: Run) -> SuiteBase:
    try:
        return load_suite(ref, zoo)
    except RtmbenchError as exc:
        raise InputError(f"the suite of run {run.path} cannot be loaded, so its planned units "
                         f"are unknown: {exc}") from None


def plan_for(run: Run, zoo: Zoo, given: str | None = None,
             given_suite: SuiteBase | None = None) -> Plan:
    """The plan ``run`` is judged against: the given suite's (``given`` names it, loaded
    as ``given_suite`` when the caller has it already), else the suite the run records.
    Raises InputError when that suite cannot be found or loaded."""
    names = sorted({name for name, _ in recorded_suites(run)})
    recorded = names[0] if len(names) == 1 else None
    gpu = run.fingerprint.as_dict().get("gpu")  # units that depend on the machine's GPU
    if given is not None:
        suite = given_suite if given_suite is not None else _load(given, zoo, run)
        path = suite.path or given
        return Plan(suite, plan_keys(suite, zoo, gpu), f"suite {suite.name} ({path}, as "
                    f"given)", recorded)
    suite, source, recorded = _load_recorded(run, zoo)
    return Plan(suite, plan_keys(suite, zoo, gpu), source, recorded)
