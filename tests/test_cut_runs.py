"""A run cut short is red: the gate judges a run against the units its suite plans.

The runs are real ``rtmbench run`` subprocesses stopped by real signals (SIGTERM, Ctrl-C's
SIGINT, SIGKILL inside a unit and between two units); the complexity check is made fast by a
test double (tests/fake_checks.patch_complexity: it sleeps, then reports the published figures)
so that a unit lasts as long as the test needs and the resumed run gates green.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import rtmbench.measure.complexity as complexity_module
from rtmbench.cli import main
from rtmbench.errors import InputError
from rtmbench.measure.environment import gpu_name
from rtmbench.records import RunWriter, plan_keys, read_run
from rtmbench.run.checks import Check, register_check
from rtmbench.run.runner import plan
from rtmbench.spec.suite import load_suite, shipped_suite_names
from rtmbench.spec.zoo import load_zoo
from tests import fake_checks
from tests.records_factory import records, write_run

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("rtmdet-tiny", "rtmdet-s", "rtmdet-m")


def _suite(tmp_path: Path) -> Path:
    path = tmp_path / "cut.yaml"
    path.write_text(f"name: cut\nmodels: [tiny, s, m]\nchecks:\n  complexity: {{}}\n"
                    f"results_dir: {tmp_path / 'results'}\n")
    return path


def _spawn(suite: Path, run_id: str, sleep_s: float, extra: str = "") -> subprocess.Popen:
    code = ("import signal, sys\n"
            "import tests.fake_checks as f\n"
            f"f.patch_complexity({sleep_s!r})\n"
            # a child of a non-interactive shell may start with SIGINT ignored; Ctrl-C is what
            # a terminal sends, so the test gives the process Python's own handler
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            + extra +
            "from rtmbench.cli import main\n"
            f"sys.exit(main(['run', {str(suite)!r}, '--run-id', {run_id!r}, '--no-progress']))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    return subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for_starts(proc: subprocess.Popen, path: Path, starts: int) -> None:
    """Until ``starts`` units have begun (their unit-started lines are on disk)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b'"unit-started"') >= starts:
            return
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    raise AssertionError(f"{starts} units never started in {path}")


def _gate(path: Path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["gate", str(path)])
    return code, capsys.readouterr().out


def _resume_and_gate(suite: Path, run_id: str, path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(complexity_module, "measure_complexity", fake_checks.claimed_complexity)
    assert main(["run", str(suite), "--resume", run_id, "--no-progress"]) == 0
    keys = [r.key for r in read_run(path).records]
    assert sorted(k.model for k in keys) == sorted(MODELS) and len(set(keys)) == 3
    code, out = _gate(path, capsys)
    assert code == 0, out
    assert "Plan: suite cut" in out and "every one recorded" in out


@pytest.mark.parametrize("sig, exit_code", [(signal.SIGTERM, 143), (signal.SIGINT, 130),
                                            (signal.SIGKILL, -signal.SIGKILL)],
                         ids=["sigterm", "ctrl-c", "kill-9"])
def test_a_run_stopped_inside_a_unit_is_red_until_resumed(tmp_path, monkeypatch, capsys, sig,
                                                          exit_code):
    suite = _suite(tmp_path)
    path = tmp_path / "results" / "stopped.jsonl"
    proc = _spawn(suite, "stopped", sleep_s=3.0)
    _wait_for_starts(proc, path, 2)  # tiny recorded, s begun (and asleep for 3 s)
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == exit_code, proc.stderr.read().decode()[-2000:]
    run = read_run(path)
    assert [r.model for r in run.records if not r.provenance.get("interrupted")] == \
        ["rtmdet-tiny"]
    code, out = _gate(path, capsys)
    assert code == 1, out
    summary = out.split("rows pass")[1]
    assert "MISSING" in summary and "rtmdet-m complexity" in summary
    if sig == signal.SIGKILL:  # the process died in s: failed by its start marker, m missing
        assert "process ended during this unit" in out
        assert "1 MISSING" in summary
    else:  # a cancelled unit has no record: missing like the one that never started
        assert "2 MISSING" in summary and "rtmdet-s complexity" in summary
        assert "missing: the run ended before this unit" in out
    _resume_and_gate(suite, "stopped", path, monkeypatch, capsys)


def test_a_run_killed_between_two_units_is_red_until_resumed(tmp_path, monkeypatch, capsys):
    """kill -9 right after a record and before the next unit's start: the file is whole and
    every line in it is fine; only the suite's plan shows two units are missing."""
    suite = _suite(tmp_path)
    path = tmp_path / "results" / "between.jsonl"
    kill_after_first_record = (
        "import os\n"
        "from rtmbench.records import RunWriter\n"
        "real = RunWriter.append\n"
        "def append(self, record):\n"
        "    real(self, record)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "RunWriter.append = append\n")
    proc = _spawn(suite, "between", sleep_s=0.0, extra=kill_after_first_record)
    assert proc.wait(timeout=120) == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    run = read_run(path)
    assert [r.model for r in run.records] == ["rtmdet-tiny"] and not run.problems
    code, out = _gate(path, capsys)
    assert code == 1, out
    summary = out.split("rows pass")[1]
    assert "2 MISSING" in summary
    assert "rtmdet-s complexity" in summary and "rtmdet-m complexity" in summary
    assert "--resume between" in summary
    assert out.count("missing: the run ended before this unit") == 2
    _resume_and_gate(suite, "between", path, monkeypatch, capsys)


def test_a_file_cut_between_units_fails_the_gate_and_the_report(tmp_path, monkeypatch,
                                                                capsys):
    """What kill -9 between units leaves, made by cutting a whole run after its first
    record: `gate --suite S` compares it with S's units (it passed before)."""
    monkeypatch.setattr(complexity_module, "measure_complexity", fake_checks.claimed_complexity)
    suite = _suite(tmp_path)
    assert main(["run", str(suite), "--run-id", "whole", "--no-progress"]) == 0
    whole = tmp_path / "results" / "whole.jsonl"
    lines = whole.read_bytes().splitlines(keepends=True)
    first = next(i for i, line in enumerate(lines) if b'"status"' in line)
    cut = tmp_path / "results" / "cut.jsonl"
    cut.write_bytes(b"".join(lines[:first + 1]))
    for args in ([], ["--suite", str(suite)]):
        capsys.readouterr()
        code, out = main(["gate", str(cut), *args]), capsys.readouterr().out
        assert code == 1, out
        assert "2 MISSING" in out and "rtmdet-m complexity" in out
    code, out = _gate(whole, capsys)
    assert code == 0, out
    # the report's gate verdict says the same
    assert main(["report", str(cut), "--only", "--out-dir", str(tmp_path / "r"),
                 "--no-readme", "--results-dir", str(tmp_path / "results")]) == 0
    text = (tmp_path / "r" / "results.md").read_text()
    assert "2 fail" in text and "missing: the run ended before this unit" in text


def test_a_suite_that_grew_after_the_run_is_told_from_a_cut_run(tmp_path, monkeypatch, capsys):
    """Each record keeps its suite's plan digest: units a suite adds later are not the run's
    missing units in the report (a note says why), and the gate names the change."""
    monkeypatch.setattr(complexity_module, "measure_complexity", fake_checks.claimed_complexity)
    suite = _suite(tmp_path)
    assert main(["run", str(suite), "--run-id", "older", "--no-progress"]) == 0
    path = tmp_path / "results" / "older.jsonl"
    digests = {r.provenance["suite"]["plan"] for r in read_run(path).records}
    assert len(digests) == 1 and len(digests.pop()) == 16
    suite.write_text(suite.read_text().replace("[tiny, s, m]", "[tiny, s, m, l]"))
    code, out = _gate(path, capsys)
    assert code == 1, out  # judged against today's suite, the run lacks a unit: red
    assert "rtmdet-l complexity" in out and "the suite changed after the run" in out
    assert "the run ended before this unit" not in out
    assert main(["report", str(path), "--only", "--out-dir", str(tmp_path / "r"),
                 "--no-readme", "--results-dir", str(tmp_path / "results")]) == 0
    text = (tmp_path / "r" / "results.md").read_text()
    assert "made with another version of suite cut (it recorded another plan)" in text
    assert "6/6 rows pass" in text  # params and FLOPs of three models, none missing


# ------------------------------------------------------------------ which plan
def test_the_gate_names_the_plan_it_used_and_refuses_an_unknown_suite(tmp_path, capsys):
    run = write_run(tmp_path / "new.jsonl", records("new"))
    code, out = _gate(run, capsys)
    assert code == 0, out
    assert "Plan: suite factory" in out and "recorded by the run" in out
    assert "Tolerances: suite gate (the default" in out
    # a run recording a suite that cannot be found: unusable input, not a green gate
    lost = [r.model_copy(update={"provenance": {**r.provenance, "suite": {
        "name": "gone", "path": str(tmp_path / "gone.yaml")}}}) for r in records("lost")]
    path = write_run(tmp_path / "lost.jsonl", lost)
    assert main(["gate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "'gone'" in err and "gone.yaml" in err and "--suite" in err
    # no suite recorded at all
    bare = [r.model_copy(update={"provenance": {k: v for k, v in r.provenance.items()
                                                if k != "suite"}}) for r in records("bare")]
    path = write_run(tmp_path / "bare.jsonl", bare)
    assert main(["gate", str(path)]) == 2
    assert "records no suite" in capsys.readouterr().err
    assert main(["gate", str(path), "--suite", str(ROOT / "tests/suites/factory.yaml")]) == 0
    # a suite that does not load
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\nmodels: [tiny]\nchecks: {nope: {}}\n")
    assert main(["gate", str(path), "--suite", str(broken)]) == 2


def test_another_suite_given_plans_its_own_units(tmp_path, capsys):
    run = write_run(tmp_path / "new.jsonl", records("new"))
    assert main(["gate", str(run), "--suite", "gate"]) == 1
    out = capsys.readouterr().out
    assert "missing: suite gate plans this unit and the run (of suite factory)" in out
    assert "Plan: suite gate" in out and "(as given)" in out


# ------------------------------------------------------------------ one expansion
@pytest.mark.parametrize("name", shipped_suite_names())
def test_the_runner_runs_exactly_the_units_the_gate_expects(name):
    zoo = load_zoo()
    suite = load_suite(name, zoo)
    # the runner plans with this machine's GPU, the gate with the one a run recorded
    assert [unit.key for unit, _ in plan(suite, zoo)] == plan_keys(suite, zoo, gpu_name())
    assert len(set(plan_keys(suite, zoo))) == len(plan_keys(suite, zoo))


def test_plan_keys_of_a_fake_suite_in_run_order(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text("name: f\nmodels: [tiny, s]\nchecks:\n  complexity: {}\n"
                    "  fake: {backends: [alpha, beta, alpha]}\n")
    zoo = load_zoo()
    suite = load_suite(path, zoo)
    keys = plan_keys(suite, zoo)
    assert [(k.model, k.check, k.backend) for k in keys] == [
        ("rtmdet-tiny", "complexity", None), ("rtmdet-s", "complexity", None),
        ("rtmdet-tiny", "fake", "alpha"), ("rtmdet-tiny", "fake", "beta"),
        ("rtmdet-s", "fake", "alpha"), ("rtmdet-s", "fake", "beta")]
    assert [u.key for u, _ in plan(suite, zoo)] == keys


def test_a_check_cannot_declare_its_units_where_the_gate_cannot_see_them():
    from rtmbench.spec.check_specs import CheckSpec

    class Hidden(Check):
        name = "hidden"
        Spec = CheckSpec

        def units(self, model, spec):
            return []

    with pytest.raises(TypeError, match="unit_fields"):
        register_check(Hidden)


# ------------------------------------------------------------------ a record that lies
def _latency_line(tmp_path: Path, name: str, **change) -> Path:
    baseline = ROOT / "suites" / "baselines" / "smoke.jsonl"
    lines = [json.loads(line) for line in baseline.read_text().splitlines()]
    latency = next(d for d in lines if d.get("check") == "latency")
    latency["metrics"] |= change
    path = tmp_path / f"{name}.jsonl"
    path.write_text(json.dumps(latency) + "\n")
    return path


@pytest.mark.parametrize("change, fields", [
    ({"median_ms": 20.0}, "median_ms 20 is not the median of samples_ms"),
    ({"ratio_to_reference": 0.5}, "ratio_to_reference 0.5 is not median_ms / "
                                  "reference_median_ms"),
    ({"reference_median_ms": 50.0}, "ratio_to_reference"),
    ({"samples": 40}, "samples says 40 iterations but samples_ms keeps 15"),
    ({"stopped_early": True, "contention": False}, "stopped_early says the timing ended"),
])
def test_a_latency_record_that_contradicts_itself_is_unusable_input(tmp_path, capsys, change,
                                                                     fields):
    path = _latency_line(tmp_path, "lies", **change)
    assert main(["gate", str(path), "--suite", "smoke"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:1" in err and "contradicts itself" in err and fields in err, err


def test_stored_samples_within_their_rounding_and_subsampling_are_consistent(tmp_path):
    from rtmbench.records.record import LatencyMetrics

    samples_s = [0.030 + 0.00001 * ((i * 7919) % 1000) for i in range(5001)]
    import numpy as np

    ms = np.asarray(samples_s) * 1e3
    kept = ms[np.linspace(0, len(ms) - 1, 2000).round().astype(int)]
    median = float(np.median(ms))
    LatencyMetrics.model_validate({  # the way measure.timing keeps them
        "median_ms": median, "samples": len(ms), "ratio_to_reference": median / 25.0,
        "reference_median_ms": 25.0, "samples_ms": [round(float(v), 4) for v in kept]})
    with pytest.raises(ValueError, match="outside the middle half"):
        LatencyMetrics.model_validate({"median_ms": float(ms.max()) * 1.5, "samples": len(ms),
                                       "samples_ms": [round(float(v), 4) for v in kept]})


def test_a_run_that_lost_the_ratio_its_baseline_has_is_red(tmp_path, capsys):
    base = write_run(tmp_path / "base.jsonl", records("base"))
    recs = records("new")
    recs[2] = recs[2].model_copy(update={"metrics": {"median_ms": 80.0}})
    run = write_run(tmp_path / "new.jsonl", recs)
    assert main(["gate", str(run), "--baseline", str(base)]) == 1
    out = capsys.readouterr().out
    assert "the baseline has a ratio to the reference and this run has none" in out


# ------------------------------------------------------------------ a newer file
def test_resume_refuses_a_file_of_a_newer_schema_before_writing(tmp_path, capsys):
    from rtmbench.records import SCHEMA_VERSION

    path = tmp_path / "results" / "new.jsonl"
    path.parent.mkdir()
    rec = records("new")[0].model_dump(mode="json") | {"schema_version": SCHEMA_VERSION + 1}
    path.write_text(json.dumps(rec) + "\n" + '{"cut": ')  # a torn tail a resume would repair
    before = path.read_bytes()
    with pytest.raises(InputError, match=f"line 1 has schema_version {SCHEMA_VERSION + 1}"):
        RunWriter(path, resume=True)
    suite = tmp_path / "s.yaml"
    suite.write_text(f"name: s\nmodels: [tiny]\nchecks: {{complexity: {{}}}}\n"
                     f"results_dir: {tmp_path / 'results'}\n")
    assert main(["run", str(suite), "--resume", "new", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and f"schema_version {SCHEMA_VERSION + 1}" in err
    assert path.read_bytes() == before
