"""Runs from several machines into one view: which record stands for each unit, per machine.

A unit's record depends on where it ran only for latency and for the box AP of a timed
artifact (a TensorRT engine is built for its GPU; params, FLOPs and the model's box AP do not
depend on the machine), so those records are kept per *machine* (the GPU for a CUDA unit,
the CPU model and core count for a CPU unit) and the report draws one latency table and one
artifact table per machine. For the same unit on the same machine a later run replaces an
earlier one, except that a "not run" never hides a measurement (a CPU machine's "no GPU" does
not erase what a GPU machine measured); a later failure does replace a measurement: it is news.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..records import Record, Run, UnitKey
from .judgement import record_gpu


@dataclass(frozen=True, order=True)
class Machine:
    """Where a latency was measured, as the report names it."""

    kind: str  # "gpu" or "cpu": GPU machines' tables come first
    name: str

    @property
    def label(self) -> str:
        return self.name


def machine_of(record: Record) -> Machine | None:
    """The machine a latency record, or a timed artifact's box AP record (its key has an
    input size), was measured on (None for other records)."""
    if record.check != "latency" and not (record.check == "box_ap" and record.input_size):
        return None
    hw = record.hardware or {}
    env = record.provenance.get("environment") or {}
    if record.device == "cuda" and (gpu := record_gpu(record)):
        return Machine("gpu", str(gpu))
    cpu = hw.get("cpu") or env.get("cpu") or "unknown CPU"
    cores = hw.get("cores") or env.get("cpu_cores_usable") or "?"
    return Machine("cpu", f"{cpu} ({cores} cores)")


MergeKey = tuple[UnitKey, Machine | None]


def merge_runs(runs: list[Run]) -> dict[MergeKey, Record]:
    """The record that stands for each (unit, machine), runs taken in the order given."""
    merged: dict[MergeKey, Record] = {}
    for run in runs:
        for key, record in run.latest_by_key().items():
            where = (key, machine_of(record))
            kept = merged.get(where)
            if (record.status == "not run" and kept is not None
                    and kept.status != "not run"):
                continue
            merged[where] = record
    return merged
