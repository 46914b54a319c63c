"""A fake check registered through the real registry: deterministic values, optional sleep and
an optional interruption after k units, so runner, gate and report tests need no measurements."""

from __future__ import annotations

import errno
import os
import time

from pydantic import Field

from rtmbench.errors import PackageMissing
from rtmbench.run.checks import Check, CheckContext, Outcome, Unit, register_check
from rtmbench.spec.schema import Strict


class FakeSpec(Strict):
    backends: list[str] = Field(default=["alpha", "beta"], min_length=1)
    sleep_s: float = 0.0
    not_run_backend: str | None = None
    fail_backend: str | None = None
    disk_full_backend: str | None = None  # its unit's output meets a full disk


class Interrupt:
    """Raises KeyboardInterrupt (what a user's Ctrl-C does) when the k-th unit starts."""

    after: int | None = None
    started = 0


@register_check
class FakeCheck(Check):
    name = "fake"
    Spec = FakeSpec

    def units(self, model, spec: FakeSpec) -> list[Unit]:
        return [Unit(model, self.name, b, "cpu", "fp32") for b in spec.backends]

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
