"""A fake check registered through the real registry: deterministic values, optional sleep and
an optional interruption after k units, so runner, gate and report tests need no measurements."""

from __future__ import annotations

import errno
import os
import time

from pydantic import Field

from rtmbench.errors import PackageMissing
from rtmbench.run.checks import Check, CheckContext, Outcome, Unit, register_check
from rtmbench.spec.check_specs import CheckSpec


class FakeSpec(CheckSpec):
    backends: list[str] = Field(default=["alpha", "beta"], min_length=1)
    sleep_s: float = 0.0
    not_run_backend: str | None = None
    fail_backend: str | None = None
    disk_full_backend: str | None = None  # its unit's output meets a full disk

    def unit_fields(self, model, gpu=None) -> list[dict]:
        return [{"backend": b, "device": "cpu", "precision": "fp32"} for b in self.backends]


class Interrupt:
    """Raises KeyboardInterrupt (what a user's Ctrl-C does) when the k-th unit starts."""

    after: int | None = None
    started = 0


@register_check
class FakeCheck(Check):
    name = "fake"
    Spec = FakeSpec

    def run(self, unit: Unit, spec: FakeSpec, ctx: CheckContext) -> Outcome:
        if Interrupt.after is not None and Interrupt.started >= Interrupt.after:
            raise KeyboardInterrupt
        Interrupt.started += 1
        time.sleep(spec.sleep_s)
        if unit.backend == spec.not_run_backend:
            raise PackageMissing(f"backend {unit.backend} is not installed")
        if unit.backend == spec.fail_backend:
            raise ZeroDivisionError("a bug in the check")
        if unit.backend == spec.disk_full_backend:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(ctx.work_dir / "out"))
        value = float(len(unit.model.name) * 10 + len(unit.backend))
        return Outcome("measured", metrics={"value": value})


class _ClaimedComplexity:
    def __init__(self, values: dict) -> None:
        self.values = values

    def metrics(self) -> dict:
        return dict(self.values)


def claimed_complexity(entry, model=None, sleep_s: float = 0.0) -> _ClaimedComplexity:
    """Stands in for measure_complexity in tests of the runner's control flow (signals, cut
    runs, resume): instead of counting (seconds per size) it sleeps ``sleep_s`` and reports the
    size's *published* params and FLOPs, so its records are judged green. A test double:
    nothing here measures anything."""
    time.sleep(sleep_s)
    claims = {c.metric: float(c.value) for c in entry.claims if c.metric in ("params", "flops")}
    width, height = entry.input_size
    flops = round(claims["flops"] * 1e9)
    return _ClaimedComplexity({"params": round(claims["params"] * 1e6), "flops_mmengine": flops,
                               "flops_mmengine+act": flops, "input_hw": [height, width]})


def patch_complexity(sleep_s: float = 0.0) -> None:
    """In a subprocess: the complexity check through :func:`claimed_complexity`."""
    import functools

    import rtmbench.measure.complexity as complexity

    complexity.measure_complexity = functools.partial(claimed_complexity, sleep_s=sleep_s)
