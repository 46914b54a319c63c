"""What a suite plans: its units, as the keys their records carry, in the order they run.

One expansion for both sides: the runner runs exactly these units (``rtmbench.run.runner.plan``
builds its work from :func:`plan_units`), and the gate expects a record of each of them in a
run of the suite (a planned unit without a record is a run cut short: red). Pure: it reads the
suite and the zoo, nothing else; each check's spec says which units it makes of a model
(``rtmbench.spec.check_specs.CheckSpec.unit_fields``).

Order: check by check in the suite's (registry) order, model by model; a unit named twice
(the same key from two targets) is planned once, at its first place.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ..spec.check_specs import unit_fields
from ..spec.suite import SuiteBase
from ..spec.zoo import ResolvedModel, Zoo
from .record import UnitKey


@dataclass(frozen=True)
class PlannedUnit:
    """One unit of a suite: its key, the zoo model and the check's spec it runs with."""

    key: UnitKey
    model: ResolvedModel
    spec: Any

    @property
    def fields(self) -> dict[str, Any]:
        """The key's fields besides the model's name: what the runner's ``Unit`` takes."""
        data = self.key.model_dump()
        data.pop("model")
        return data


def plan_units(suite: SuiteBase, zoo: Zoo, gpu: str | None = None) -> list[PlannedUnit]:
    """Every unit ``suite`` plans on ``zoo``'s models, in run order, each once, on a machine
    whose GPU is ``gpu`` (None: none; for specs whose units depend on it)."""
    models = suite.resolved_models(zoo)
    planned: dict[UnitKey, PlannedUnit] = {}
    for check, spec in suite.enabled_checks():
        for model in models:
            for fields in unit_fields(spec, model, gpu):
                key = UnitKey(model=model.name, check=check, **fields)
                planned.setdefault(key, PlannedUnit(key, model, spec))
    return list(planned.values())


def plan_keys(suite: SuiteBase, zoo: Zoo, gpu: str | None = None) -> list[UnitKey]:
    """The keys of :func:`plan_units`: what a complete run of ``suite`` has records of."""
    return [p.key for p in plan_units(suite, zoo, gpu)]


def plan_digest(keys: list[UnitKey]) -> str:
    """A short, order-free digest of a plan's unit keys: what a run records of its suite as it
    was (``provenance.suite.plan``), so that a suite changed after the run is told from a run
    cut short (the suite's version, as lm-evaluation-harness keeps a task's in every result)."""
    rows = sorted(json.dumps(k.model_dump(), sort_keys=True) for k in keys)
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]
