"""Suites: ``suites/*.yaml`` parsed into a strict schema (which models x which checks, with
tolerances and where results go).

The ``checks`` section is built from the spec registry (:mod:`.checks`): each registered
check contributes its own strict spec, so an unknown check name or option is an error that
names the file, line, field and fix, like every other schema error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, create_model, model_validator

from ..errors import InputError
from .check_specs import registered_specs
from .schema import Strict, SuiteName, _node_line, load_yaml
from .zoo import ResolvedModel, Zoo, load_zoo

TolerancedMetric = Literal["params", "flops", "box_ap", "latency", "box_ap_delta"]


class Tolerance(Strict):
    """How far a value may move before it is a regression: absolute (in the metric's unit) or
    relative (a fraction of the reference). For latency it applies to the ratio to the
    reference measured in the same run, never to milliseconds, and ``alpha`` is the
    significance level of the rank test on the samples (Mann-Whitney U): a latency regression
    must be both larger than the tolerance and significant (p < alpha), as asv judges."""

    absolute: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    relative: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    alpha: float = Field(default=0.01, gt=0, lt=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> Tolerance:
        if (self.absolute is None) == (self.relative is None):
            raise ValueError("give exactly one of 'absolute' or 'relative'")
        return self

    def allows(self, delta: float, reference: float) -> bool:
        limit = self.absolute if self.absolute is not None else self.relative * abs(reference)
        return abs(delta) <= limit + 1e-12

    def describe(self) -> str:
        return (f"±{self.absolute:g}" if self.absolute is not None
                else f"±{self.relative * 100:g}%")


# box_ap_delta: how much AP (points, x100) a timed artifact may lose against the PyTorch FP32
# model on the same images (box_ap.backends units); a larger drop fails the unit.
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "params": Tolerance(relative=0.0), "flops": Tolerance(relative=0.0),
    "box_ap": Tolerance(absolute=0.1), "latency": Tolerance(relative=0.25),
    "box_ap_delta": Tolerance(absolute=0.3)}


class SuiteBase(Strict):
    name: SuiteName  # part of the default run id and of the run's work directory
    description: str = ""
    models: list[str] = Field(min_length=1)
    tolerances: dict[TolerancedMetric, Tolerance] = {}
    results_dir: str = "results/local"  # a user's runs, which git ignores (rtmbench publish)
    path: Path | None = None

    def tolerance(self, metric: str) -> Tolerance:
        return self.tolerances.get(metric, DEFAULT_TOLERANCES[metric])

    def enabled_checks(self) -> list[tuple[str, Any]]:
        """(name, spec) of every check the suite asks for, in registry order."""
        return [(name, spec) for name, spec in self.checks if spec is not None]  # type: ignore[attr-defined]

    def resolved_models(self, zoo: Zoo) -> list[ResolvedModel]:
        return [zoo.get(m) for m in self.models]


def suite_model() -> type[SuiteBase]:
    """The Suite schema for the checks registered right now."""
    fields = {name: (spec | None, None) for name, spec in registered_specs().items()}
    checks = create_model("Checks", __base__=Strict, **fields)  # iterates (name, spec)
    return create_model("Suite", __base__=SuiteBase, checks=(checks, ...))


def _line_of(path: Path, loc: tuple[Any, ...]) -> int | None:
    try:
        return _node_line(yaml.compose(path.read_text(encoding="utf-8"),
                                       Loader=yaml.SafeLoader), loc)
    except (OSError, yaml.YAMLError):
        return None


def _check_models_exist(suite: SuiteBase, path: Path, zoo: Zoo) -> None:
    known = {m.size for m in zoo.models} | {m.name for m in zoo.models}
    errors = []
    for i, name in enumerate(suite.models):
        if name not in known:
            errors.append(f"{path}:{_line_of(path, ('models', i))}: models[{i}]: no model "
                          f"{name!r} in the zoo{f' {zoo.path}' if zoo.path else ''}. Fix: use "
                          f"one of {', '.join(zoo.sizes)} (or the names "
                          f"{', '.join(m.name for m in zoo.models)}).")
    if len(set(suite.models)) != len(suite.models):
        errors.append(f"{path}: models: a model is listed twice. Fix: list each model once.")
    if not suite.enabled_checks():
        errors.append(f"{path}:{_line_of(path, ('checks',))}: checks: no check is enabled. Fix: "
                      f"add at least one of the registered checks.")
    for name, spec in suite.enabled_checks():  # before any unit runs, not after an evaluation
        golden = getattr(spec, "golden", None)
        if golden is not None and not (path.parent / golden).is_file():
            errors.append(f"{path}:{_line_of(path, ('checks', name, 'golden'))}: checks.{name}."
                          f"golden: no file {path.parent / golden}. Fix: give the golden "
                          f"detections' path relative to the suite file (tools/"
                          f"make_smoke_golden.py makes them).")
    if errors:
        raise InputError(f"invalid suite file {path}:\n  " + "\n  ".join(errors))


def shipped_suites_dir() -> Path:
    packaged = Path(__file__).parents[1] / "_data" / "suites"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[3] / "suites"


def shipped_suite_names() -> list[str]:
    return sorted(p.stem for p in shipped_suites_dir().glob("*.yaml"))


def find_suite(ref: str | Path) -> Path:
    """A suite given as a file path, or by name (``smoke`` -> ``suites/smoke.yaml``)."""
    path = Path(ref)
    if path.is_file():
        return path
    for candidate in (Path("suites") / f"{ref}.yaml", shipped_suites_dir() / f"{ref}.yaml"):
        if candidate.is_file():
            return candidate
    raise InputError(f"no suite {str(ref)!r}: it is neither a file nor a shipped suite name "
                     f"(shipped: {', '.join(shipped_suite_names()) or 'none'}); give a path to "
                     f"a suite YAML.")


def load_suite(ref: str | Path, zoo: Zoo | None = None) -> SuiteBase:
    path = find_suite(ref)
    suite = load_yaml(path, suite_model(), "suite")
    _check_models_exist(suite, path, zoo or load_zoo())
    return suite.model_copy(update={"path": path})


def as_dict(model: BaseModel | None) -> dict[str, Any] | None:
    return None if model is None else model.model_dump(mode="json")
