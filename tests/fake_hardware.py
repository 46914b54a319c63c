"""Run the test suite as if on another machine.

``RTMBENCH_TEST_FAKE_CPU`` (a CPU model name, e.g. "Intel(R) Xeon(R) Processor") and
``RTMBENCH_TEST_FAKE_CORES`` (a core count) replace what rtmbench *records* about the host: the
run provenance's ``hardware`` (:func:`rtmbench.measure.environment.hardware`, ``cpu_model``)
and every latency result's ``environment`` (:func:`rtmbench.measure.timing.collect_environment`:
``cpu``, ``cpu_cores``, ``cpu_cores_usable``). Only tests/conftest.py reads them, for the whole
session; rtmbench itself never does. What the host really has (threads, worker counts) is left
alone: the point is that no test's verdict may depend on which machine the records say they
came from, e.g. whether it matches the machine of a committed run or baseline.

    RTMBENCH_TEST_FAKE_CPU="Intel(R) Xeon(R) Processor" RTMBENCH_TEST_FAKE_CORES=2 pytest ...

Subprocesses a test starts (``python -m rtmbench ...``) describe the real host.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from rtmbench.measure import environment, timing

FAKE_CPU = "RTMBENCH_TEST_FAKE_CPU"
FAKE_CORES = "RTMBENCH_TEST_FAKE_CORES"

# The real functions, taken before anything is patched: tests of the description itself
# (tests/test_timing.py) call these.
real_cpu_model = environment.cpu_model
real_hardware = environment.hardware
real_collect_environment = timing.collect_environment


@dataclass(frozen=True)
class FakeHardware:
    cpu: str | None = None
    cores: int | None = None

    def describe(self) -> str:
        parts = [f"cpu {self.cpu!r}" if self.cpu else "real cpu",
                 f"{self.cores} cores" if self.cores else "real core count"]
        return ", ".join(parts)


def from_environ(environ: Mapping[str, str] = os.environ) -> FakeHardware | None:
    """The fake the environment asks for, or None; a bad core count is a usage error."""
    cpu = (environ.get(FAKE_CPU) or "").strip() or None
    text = (environ.get(FAKE_CORES) or "").strip()
    cores = None
    if text:
        try:
            cores = int(text)
        except ValueError:
            cores = 0
        if cores < 1:
            raise pytest.UsageError(f"{FAKE_CORES}={text!r} is not a core count: set a whole "
                                    f"number of at least 1, or unset it to keep the real one")
    return FakeHardware(cpu, cores) if cpu or cores else None


def install(monkeypatch: pytest.MonkeyPatch, fake: FakeHardware) -> None:
    """Patch every rtmbench module that describes the host so that it describes ``fake``."""
    import importlib

    def cpu_model() -> str:
        return fake.cpu or real_cpu_model()

    def hardware() -> dict[str, Any]:
        found = real_hardware()
        found["cpu"] = cpu_model()
        if fake.cores:
            found["cores"] = fake.cores
        return found

    def collect_environment() -> dict:
        found = real_collect_environment()
        found["cpu"] = cpu_model()
        if fake.cores:
            found["cpu_cores"] = found["cpu_cores_usable"] = fake.cores
        return found

    for fake_fn, name in ((cpu_model, "cpu_model"), (hardware, "hardware"),
                          (collect_environment, "collect_environment")):
        fake_fn.fake_of = name  # a test may install another fake over the session's
    originals = {id(real_cpu_model): cpu_model, id(real_hardware): hardware,
                 id(real_collect_environment): collect_environment}  # the originals live on
    by_name = {"cpu_model": cpu_model, "hardware": hardware,
               "collect_environment": collect_environment}

    def replacement(value: object):
        if not isinstance(value, types.FunctionType):
            return None
        return originals.get(id(value)) or by_name.get(getattr(value, "fake_of", None))

    # The modules that hold these functions under their own names (``from .timing import
    # collect_environment``); imported first, so a lazily imported one cannot keep the original.
    for name in ("rtmbench.measure.environment", "rtmbench.measure.timing",
                 "rtmbench.measure.latency", "rtmbench.run.runner", "rtmbench.run.checks",
                 "rtmbench.cli"):
        importlib.import_module(name)
    patched = 0
    for module in [m for name, m in list(sys.modules.items())
                   if name == "rtmbench" or name.startswith("rtmbench.")]:
        for attr, value in list(vars(module).items()):
            if (new := replacement(value)) is not None:
                monkeypatch.setattr(module, attr, new)
                patched += 1
    assert patched >= 4, "the hardware description functions moved: update fake_hardware.py"
