"""The test-only hardware fake (tests/fake_hardware.py): every record a run writes says it came
from the faked machine, so the suite can be run as if on another CPU model and core count."""

from __future__ import annotations

import textwrap

import pytest

import tests.fake_checks  # noqa: F401  (registers the 'fake' check)
from rtmbench.judge.merge import machine_of
from rtmbench.records import read_run
from rtmbench.run.runner import run_suite
from rtmbench.spec.suite import load_suite
from tests.fake_hardware import (
    FAKE_CORES,
    FAKE_CPU,
    FakeHardware,
    from_environ,
    install,
    real_collect_environment,
    real_hardware,
)


def test_the_environment_variables_are_read_and_checked():
    assert from_environ({}) is None
    assert from_environ({FAKE_CPU: "  "}) is None
    assert from_environ({FAKE_CPU: "AMD EPYC 9654"}) == FakeHardware("AMD EPYC 9654", None)
    assert from_environ({FAKE_CORES: "96"}) == FakeHardware(None, 96)
    for bad in ("two", "0", "-1", "1.5"):
        with pytest.raises(pytest.UsageError, match=f"{FAKE_CORES}='{bad}' is not a core count"):
            from_environ({FAKE_CORES: bad})


def test_every_record_of_a_run_describes_the_faked_machine(tmp_path, monkeypatch):
    """Provenance (every unit) and a latency unit's environment (here a 'not run' one: no
    timing needed) both carry the fake; the report and gate then see that machine."""
    install(monkeypatch, FakeHardware("Fake CPU 9000", 7))
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: fake-hardware
        models: [tiny]
        checks:
          fake: {{backends: [alpha]}}
          latency:
            targets: [{{backends: [tensorrt], devices: [cpu], precisions: [fp16]}}]
        results_dir: {tmp_path / "results"}
        """))
    records = read_run(run_suite(load_suite(path), run_id="f", progress=False).path).records
    assert len(records) == 2
    for record in records:
        assert record.provenance["hardware"]["cpu"] == "Fake CPU 9000"
        assert record.provenance["hardware"]["cores"] == 7
    latency = next(r for r in records if r.check == "latency")
    assert latency.status == "not run"
    env = latency.provenance["environment"]
    assert (env["cpu"], env["cpu_cores"], env["cpu_cores_usable"]) == ("Fake CPU 9000", 7, 7)
    assert machine_of(latency).label == "Fake CPU 9000 (7 cores)"


def test_the_real_description_is_kept_for_the_tests_of_it():
    real = real_hardware()
    fake = from_environ()
    assert real["cores"] >= 1 and real["cpu"]
    assert real_collect_environment()["cpu"] == real["cpu"]
    if fake is not None and fake.cpu:  # the session's fake is in effect
        from rtmbench.measure.environment import hardware

        assert hardware()["cpu"] == fake.cpu
