"""Run files: ``<results>/<run-id>.jsonl``, one record per line, only ever appended to.

Writing: each record is one ``O_APPEND`` write followed by ``fsync`` (:mod:`rtmbench.fileio`), so
a crash can at worst leave a torn last line. A run is written by one process at a time: the
writer holds ``<run-id>.jsonl.lock`` for as long as it is open, and a second writer (two
``rtmbench run --resume ID`` at once) is refused instead of recording units twice.

A writer that resumes a run whose last line was torn ends that line and appends a marker
(``{"event": "torn-line", "line": N, ...}``, right after line N): the torn text stays (nothing
is erased) and every reader knows it was an interrupted write, not a corrupt file.

Before each unit the runner appends ``{"event": "unit-started", "unit": {...}}``. A unit that
started and has no record after it ended the process (a native crash, an out-of-memory kill,
``kill -9``) or is still running: readers see a *failed* record for it (provenance
``interrupted``), so a run cut short by a crashing backend is red, never a shorter green run;
``--resume`` measures that unit again. A unit the user stopped (Ctrl-C, SIGTERM) is closed by
``{"event": "unit-cancelled", ...}`` instead: it is simply not recorded yet. Event lines hold
exactly their own keys; anything else carrying ``"event"`` is a corrupt line.

Reading never drops a line silently: every line that is not a usable record is a
:class:`LineProblem` with its number and why. ``torn`` (the last line, cut by a crash or still
being written) and ``repaired`` (a torn line a resume acknowledged) are expected after an
interruption; ``corrupt`` lines (not JSON, a record that does not validate, a NaN) are not, and
gate and report refuse a run that has any.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from filelock import FileLock, Timeout
from pydantic import ValidationError

from ..errors import InputError
from ..fileio import append_durable
from .fingerprint import Fingerprint, fingerprint_of, stored_fingerprint
from .record import SCHEMA_VERSION, Record, SchemaError, UnitKey, parse_record

RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
TORN_EVENT = "torn-line"
UNIT_STARTED_EVENT = "unit-started"
UNIT_CANCELLED_EVENT = "unit-cancelled"  # Ctrl-C or SIGTERM in a unit: the user stopped it
_EVENT_KEYS = {TORN_EVENT: {"event", "line", "date", "note"},
               UNIT_STARTED_EVENT: {"event", "unit", "date"},
               UNIT_CANCELLED_EVENT: {"event", "unit", "date"}}
INTERRUPTED_REASON = ("the process ended during this unit (a native crash, an out-of-memory kill, "
                      "kill -9) or is still running it: nothing was recorded; `rtmbench run "
                      "--resume {run}` measures it again")


def check_run_id(run_id: str) -> str:
    if not RUN_ID.match(run_id):
        raise InputError(f"run id {run_id!r} is not usable as a file name: use letters, digits, "
                         f"'.', '_' and '-' (at most 128 characters).")
    return run_id


def run_path(results_dir: str | Path, run_id: str) -> Path:
    return Path(results_dir) / f"{check_run_id(run_id)}.jsonl"


def _non_finite(token: str) -> float:
    raise ValueError(f"{token} is not a finite number (JSON has no NaN or Infinity)")


def _loads(line: bytes) -> object:
    return json.loads(line.decode("utf-8"), parse_constant=_non_finite)


@dataclass(frozen=True)
class LineProblem:
    line: int  # 1-based
    kind: Literal["torn", "repaired", "corrupt"]
    message: str

    def describe(self, path: Path) -> str:
        return f"{path}:{self.line}: {self.kind}: {self.message}"


@dataclass
class Run:
    run_id: str
    path: Path
    records: list[Record]
    problems: list[LineProblem] = field(default_factory=list)

    @property
    def corrupt(self) -> list[LineProblem]:
        return [p for p in self.problems if p.kind == "corrupt"]

    @property
    def skipped_lines(self) -> list[int]:
        """Line numbers that hold no usable record (every kind of problem)."""
        return [p.line for p in self.problems]

    def latest_by_key(self) -> dict[UnitKey, Record]:
        """The record of each unit: a run records a unit once, but a file put together by hand
        might hold it twice; then a failure is never hidden behind a later measurement (the
        last failed record stands), otherwise the last record."""
        chosen: dict[UnitKey, Record] = {}
        for r in self.records:
            kept = chosen.get(r.key)
            if kept is not None and kept.status == "failed" and r.status != "failed":
                continue
            chosen[r.key] = r
        return chosen

    def describe_problems(self) -> str:
        return "; ".join(p.describe(self.path) for p in self.problems)

    @property
    def fingerprint(self) -> Fingerprint:
        """The machine the run was made on: the fingerprint its records store, else computed
        from their provenance (a latency record's ``environment`` completes the others')."""
        real = [r for r in self.records if not is_interrupted(r)]
        for r in real:
            if (stored := stored_fingerprint(r.provenance)) is not None:
                return stored
        provenance = dict(real[0].provenance) if real else {}
        for name in ("environment", "gpu_conditions"):
            found = next((r.provenance[name] for r in real if r.provenance.get(name)), None)
            if found is not None:
                provenance[name] = found
        return fingerprint_of(provenance)

    @property
    def start(self) -> str:
        """The date of its first record (ISO 8601, UTC), '' when none is recorded."""
        dates = [d for r in self.records if isinstance(d := r.provenance.get("date"), str)]
        return min(dates, default="")

    @property
    def commit(self) -> str | None:
        """The git commit its records say the code was at, if any."""
        for r in self.records:
            git = r.provenance.get("git")
            if isinstance(git, dict) and isinstance(git.get("commit"), str):
                return git["commit"]
        return None


def _describe_validation(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def read_run(path: str | Path) -> Run:
    """Every record of a run file, and every line that is not one (see the module docstring)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"run file {path} cannot be read ({exc.strerror}); give a run id under "
                         f"the results directory or a path to a .jsonl run file.") from None
    lines = raw.split(b"\n")
    ends_torn = not raw.endswith(b"\n") and bool(raw)
    records: list[Record] = []
    problems: list[LineProblem] = []
    acknowledged: set[int] = set()
    started: dict[UnitKey, int] = {}  # units begun and not (yet) recorded, by line
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        last = number == len(lines)
        try:
            data = _loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            kind = "torn" if last and ends_torn else "corrupt"
            problems.append(LineProblem(number, kind, f"not a JSON record ({exc})"))
            continue
        if isinstance(data, dict) and "event" in data:
            event = _event(data, number)
            if isinstance(event, str):
                problems.append(LineProblem(number, "corrupt", event))
            elif data["event"] == TORN_EVENT:
                acknowledged.add(data["line"])
            elif data["event"] == UNIT_CANCELLED_EVENT:
                started.pop(event, None)
            else:
                started[event] = number
            continue
        try:
            record = parse_record(data)
        except SchemaError as exc:
            problems.append(LineProblem(number, "corrupt", str(exc)))
            continue
        except ValidationError as exc:
            problems.append(LineProblem(number, "corrupt", _describe_validation(exc)))
            continue
        records.append(record)
        started.pop(record.key, None)
    problems = [LineProblem(p.line, "repaired", "cut by an interrupted write; a resume "
                            "acknowledged it") if p.line in acknowledged else p
                for p in problems]
    records += [_interrupted(key, line, path.stem) for key, line in started.items()]
    return Run(path.stem, path, records, problems)


def _event(data: dict, number: int) -> UnitKey | bool | str:
    """A valid event line's unit (unit-started) or True (torn-line); else why it is not one."""
    keys = _EVENT_KEYS.get(data.get("event"))
    if keys is None:
        return f"unknown event {data.get('event')!r}"
    if set(data) - keys:
        return f"an event line with other keys ({', '.join(sorted(set(data) - keys))})"
    if data["event"] == TORN_EVENT:
        if data.get("line") != number - 1:
            return "a torn-line marker that does not follow the line it names"
        return True
    try:
        return UnitKey.model_validate(data.get("unit"))
    except ValidationError as exc:
        return f"a unit-started event without a valid unit ({_describe_validation(exc)})"


def is_interrupted(record: Record) -> bool:
    """A failed record made by :func:`read_run` for a unit the process died in."""
    return "interrupted" in record.provenance


def _interrupted(key: UnitKey, line: int, run_id: str) -> Record:
    return Record(run=run_id, **key.model_dump(), status="failed",
                  reason=INTERRUPTED_REASON.format(run=run_id),
                  provenance={"interrupted": {"started_line": line}})


def newer_schema_line(path: Path) -> tuple[int, int] | None:
    """(line, schema_version) of the first record a newer rtmbench wrote, or None."""
    for number, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            data = _loads(line)
        except (ValueError, UnicodeDecodeError):
            continue
        version = data.get("schema_version") if isinstance(data, dict) else None
        if isinstance(version, int) and not isinstance(version, bool) and \
                version > SCHEMA_VERSION:
            return number, version
    return None


def _refuse_newer_schema(path: Path) -> None:
    if found := newer_schema_line(path):
        line, version = found
        raise InputError(f"cannot resume run file {path}: line {line} has schema_version "
                         f"{version}, written by a newer rtmbench (this one writes "
                         f"{SCHEMA_VERSION}); appending would mix versions in one file. Resume "
                         f"it with that newer rtmbench, or start a new run (--run-id).")


class RunWriter:
    """Appends records to one run file; each line is on disk before ``append`` returns.

    Holds the run's lock from construction until :meth:`close` (or the end of a ``with``).
    """

    def __init__(self, path: Path, *, resume: bool) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = FileLock(str(path) + ".lock", timeout=0)
        try:
            self._lock.acquire()
        except Timeout:
            raise InputError(f"run {path.stem} is being written by another rtmbench process "
                             f"(lock {path}.lock); wait for it to finish, or resume it once it "
                             f"has stopped.") from None
        except OSError as exc:
            raise InputError(f"cannot create the run's lock file {path}.lock "
                             f"({exc.strerror}); make {path.parent} writable or choose "
                             f"another --results-dir.") from None
        try:
            if path.exists() and not resume:
                raise InputError(f"run file {path} already exists and is never overwritten; "
                                 f"continue it with --resume {path.stem} or choose another "
                                 f"--run-id.")
            if resume and not path.exists():
                raise InputError(f"cannot resume: no run file {path}; start a new run without "
                                 f"--resume, or check the run id and the suite's results_dir.")
            if resume:
                _refuse_newer_schema(path)  # before anything is written to it
            append_durable(path, b"")  # the run exists from now on, empty until a unit ends
            self._repair_torn_tail()
        except BaseException:
            self._lock.release()
            raise

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._lock.release()

    def _repair_torn_tail(self) -> None:
        """A crash mid-write leaves a last line without newline: end it, and say so in a marker
        line, so the next record starts on its own line and readers know what happened."""
        if not (self.path.exists() and self.path.stat().st_size):
            return
        data = self.path.read_bytes()
        if data.endswith(b"\n"):
            return
        torn_line = data.count(b"\n") + 1
        from datetime import UTC, datetime

        marker = {"event": TORN_EVENT, "line": torn_line,
                  "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "note": "the line above was cut by an interrupted write; its unit is redone"}
        self._write(b"\n" + json.dumps(marker, sort_keys=True).encode() + b"\n")

    def _write(self, data: bytes) -> None:
        append_durable(self.path, data)  # one O_APPEND write per whole line, then fsync

    def append(self, record: Record) -> None:
        self._write((record.to_json() + "\n").encode("utf-8"))

    def started(self, key: UnitKey) -> None:
        """Say on disk that this unit begins: if the process dies in it, readers know."""
        self._event(UNIT_STARTED_EVENT, key)

    def cancelled(self, key: UnitKey) -> None:
        """The user stopped this unit (Ctrl-C, SIGTERM): not a crash, nothing to judge."""
        self._event(UNIT_CANCELLED_EVENT, key)

    def _event(self, name: str, key: UnitKey) -> None:
        from datetime import UTC, datetime

        event = {"event": name, "unit": key.model_dump(mode="json"),
                 "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        self._write((json.dumps(event, sort_keys=True) + "\n").encode("utf-8"))


PUBLISHED = Path("results")       # run files committed with the project: the published table
LOCAL = PUBLISHED / "local"       # a user's own runs (git ignores it); `rtmbench publish` moves
                                  # one up


def run_dirs(results_dir: str | Path) -> list[Path]:
    """Where run ids are looked up: ``results_dir``, then its ``local/`` folder (a user's runs
    stay there until published)."""
    results_dir = Path(results_dir)
    return [results_dir, results_dir / LOCAL.name]


def resolve_run(ref: str | Path, results_dir: str | Path = PUBLISHED) -> Path:
    """A run given as a path to a .jsonl file, or as a run id under ``results_dir`` or its
    ``local/`` folder."""
    ref_path = Path(ref)
    if ref_path.suffix == ".jsonl" or ref_path.exists():
        if not ref_path.is_file():
            raise InputError(f"run file {ref_path} does not exist; give an existing .jsonl "
                             f"file or a run id from {results_dir}/.")
        return ref_path
    for directory in run_dirs(results_dir):
        path = run_path(directory, str(ref))
        if path.is_file():
            return path
    known = ", ".join(sorted(p.stem for d in run_dirs(results_dir) for p in list_runs(d))) \
        or "none"
    raise InputError(f"no run {ref!r} in {results_dir}/ or {Path(results_dir) / LOCAL.name}/ "
                     f"(known runs: {known}); give a run id from there or a path to a .jsonl "
                     f"file.")


@dataclass(frozen=True)
class Published:
    """A run copied beside the published ones: where, and whether git now tracks it (None:
    not a git checkout, where every run file there counts as published; False: ``git add``
    failed, and ``problem`` says why)."""

    path: Path
    staged: bool | None
    problem: str | None = None


def publish_run(ref: str | Path, results_dir: str | Path = PUBLISHED) -> Published:
    """Copy a run file (a path, or a run id under ``results_dir`` or its ``local/``) into
    ``results_dir``, where the published table is made from; never over an existing file, and
    only a run that gate and report can read. In a git checkout the copy is staged (``git
    add``): ``report --publish`` renders the runs git tracks, so the run is in the next
    published table before it is committed; committing stays the user's to do."""
    from ..fileio import write_bytes_atomic

    source = resolve_run(ref, results_dir)
    run = load_usable_run(source, results_dir)
    target = run_path(results_dir, run.run_id)
    if target.resolve() == source.resolve():
        raise InputError(f"run {run.run_id} is already published ({target}).")
    if target.exists():
        raise InputError(f"{target} already exists and published runs are never replaced; "
                         f"publish the run under another id (copy it to a new name first).")
    write_bytes_atomic(target, source.read_bytes())
    return _stage(target)


def _stage(path: Path) -> Published:
    import subprocess

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=path.parent, capture_output=True, text=True,
                              timeout=60)

    try:
        if git("rev-parse", "--is-inside-work-tree").returncode != 0:
            return Published(path, None)
        added = git("add", "--", path.name)
    except (OSError, subprocess.SubprocessError) as exc:  # no git: not a checkout we can use
        return Published(path, None, f"git could not run ({exc})")
    if added.returncode != 0:
        return Published(path, False, " ".join(added.stderr.split()) or "git add failed")
    return Published(path, True)


def list_runs(results_dir: str | Path) -> list[Path]:
    return sorted(Path(results_dir).glob("*.jsonl"))


def latest_run(results_dir: str | Path) -> Path:
    """The run whose newest record is the most recent (ids need not sort by time)."""
    def newest(path: Path) -> str:
        dates = [r.provenance.get("date", "") for r in read_run(path).records]
        return max((d for d in dates if isinstance(d, str)), default="")

    runs = list_runs(results_dir)
    if not runs:
        raise InputError(f"no runs in {results_dir}/; make one with `rtmbench run SUITE` "
                         f"(e.g. `rtmbench run smoke`).")
    return max(runs, key=lambda p: (newest(p), p.name))


def load_usable_run(ref: str | Path, results_dir: str | Path, what: str = "run") -> Run:
    """A run that gate and report can trust: readable, with records, and no corrupt line.

    A torn last line (an interrupted write) is allowed; the caller shows it.
    """
    run = read_run(resolve_run(ref, results_dir))
    if run.corrupt:
        shown = "; ".join(p.describe(run.path) for p in run.corrupt[:5])
        more = f" (+{len(run.corrupt) - 5} more)" if len(run.corrupt) > 5 else ""
        raise InputError(f"{what} {run.path} has {len(run.corrupt)} unusable line(s): "
                         f"{shown}{more}. Fix or remove those lines (a record must validate "
                         f"against the record schema), or give another {what}.")
    if not run.records:
        raise InputError(f"{what} {run.path} holds no readable record; give a run made by "
                         f"`rtmbench run`.")
    return run
