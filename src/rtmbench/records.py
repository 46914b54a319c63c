"""Records: one JSON line per measurement (or per measurement that could not be made).

A run is the file ``<results>/<run-id>.jsonl``. It is only ever appended to, whole lines at a
time (write + flush + fsync), so a crash can at worst leave a torn last line, which readers
detect and ignore. ``claim`` and ``verdict`` are keyed by metric (a complexity record judges
params and FLOPs together); each verdict is ``{"ok": true|false|null, "text": ...}`` where
``null`` means "not comparable" (different hardware, subset of the data, no claim).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import InputError
from .fileio import append_durable

Status = Literal["measured", "verified", "failed", "not run"]
STATUSES: tuple[str, ...] = ("measured", "verified", "failed", "not run")
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

UnitKey = tuple[str, str, str | None, str | None, str | None, str | None]


@dataclass
class Record:
    run: str
    model: str
    check: str
    backend: str | None
    device: str | None
    precision: str | None
    status: Status
    reason: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    claim: dict[str, Any] = field(default_factory=dict)
    verdict: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    # Which variant of the check (box AP: the weights id), when a check has several per model.
    variant: str | None = None

    @property
    def key(self) -> UnitKey:
        """What resume matches on: a unit is done once it has a record."""
        return (self.model, self.check, self.backend, self.device, self.precision, self.variant)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        names = set(cls.__dataclass_fields__)
        missing = {"run", "model", "check", "status"} - set(data)
        if missing or data.get("status") not in STATUSES:
            raise ValueError(f"missing {sorted(missing)}" if missing
                             else f"status {data.get('status')!r} not in {STATUSES}")
        return cls(**{k: v for k, v in data.items() if k in names})


def check_run_id(run_id: str) -> str:
    if not RUN_ID.match(run_id):
        raise InputError(f"run id {run_id!r} is not usable as a file name: use letters, digits, "
                         f"'.', '_' and '-' (at most 128 characters).")
    return run_id


def run_path(results_dir: str | Path, run_id: str) -> Path:
    return Path(results_dir) / f"{check_run_id(run_id)}.jsonl"


class RunWriter:
    """Appends records to one run file; each line is on disk before ``append`` returns."""

    def __init__(self, path: Path, *, resume: bool) -> None:
        self.path = path
        if path.exists() and not resume:
            raise InputError(f"run file {path} already exists and is never overwritten; continue "
                             f"it with --resume {path.stem} or choose another --run-id.")
        if resume and not path.exists():
            raise InputError(f"cannot resume: no run file {path}; start a new run without "
                             f"--resume, or check the run id and the suite's results_dir.")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_torn_tail()

    def _repair_torn_tail(self) -> None:
        """A crash mid-write leaves a last line without newline: end it so the next record
        starts on its own line (the torn text stays, and readers skip it)."""
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                torn = f.read(1) != b"\n"
            if torn:
                self._write(b"\n")

    def _write(self, data: bytes) -> None:
        append_durable(self.path, data)  # one O_APPEND write per whole line, then fsync

    def append(self, record: Record) -> None:
        self._write((record.to_json() + "\n").encode("utf-8"))


@dataclass
class Run:
    run_id: str
    path: Path
    records: list[Record]
    skipped_lines: list[int]  # 1-based line numbers that were torn or unparsable

    def latest_by_key(self) -> dict[UnitKey, Record]:
        return {r.key: r for r in self.records}


def read_run(path: str | Path) -> Run:
    """Every whole, valid record of a run file; torn or corrupt lines are reported, not fatal."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"run file {path} cannot be read ({exc.strerror}); give a run id under "
                         f"the results directory or a path to a .jsonl run file.") from None
    records, skipped = [], []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append(Record.from_dict(json.loads(line.decode("utf-8"))))
        except (ValueError, TypeError, UnicodeDecodeError):
            skipped.append(number)
    return Run(path.stem, path, records, skipped)


def resolve_run(ref: str | Path, results_dir: str | Path = "results") -> Path:
    """A run given as a path to a .jsonl file or as a run id under ``results_dir``."""
    ref_path = Path(ref)
    if ref_path.suffix == ".jsonl" or ref_path.exists():
        if not ref_path.is_file():
            raise InputError(f"run file {ref_path} does not exist; give an existing .jsonl "
                             f"file or a run id from {results_dir}/.")
        return ref_path
    path = run_path(results_dir, str(ref))
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in Path(results_dir).glob("*.jsonl"))) or "none"
        raise InputError(f"no run {ref!r} in {results_dir}/ (known runs: {known}); give a run "
                         f"id from there or a path to a .jsonl file.")
    return path


def list_runs(results_dir: str | Path) -> list[Path]:
    return sorted(Path(results_dir).glob("*.jsonl"))


def latest_run(results_dir: str | Path) -> Path:
    """The run whose newest record is the most recent (ids need not sort by time)."""
    def newest(path: Path) -> str:
        dates = [r.provenance.get("date", "") for r in read_run(path).records]
        return max(dates, default="")

    runs = list_runs(results_dir)
    if not runs:
        raise InputError(f"no runs in {results_dir}/; make one with `rtmbench run SUITE` "
                         f"(e.g. `rtmbench run smoke`).")
    return max(runs, key=lambda p: (newest(p), p.name))
