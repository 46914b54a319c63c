from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rtmbench.cli import main
from rtmbench.errors import DatasetMissing, InputError
from rtmbench.records import Record, RunWriter, read_run
from rtmbench.run.checks import registered_checks
from rtmbench.run.runner import run_suite
from rtmbench.spec.suite import load_suite
from tests.fake_checks import Interrupt

ROOT = Path(__file__).resolve().parents[1]


def write_suite(tmp_path: Path, body: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


FAKE_SUITE = """\
name: fake
models: [tiny, s]
checks:
  fake: {backends: [alpha, beta, gamma]%s}
results_dir: %s
"""


def fake_suite(tmp_path: Path, extra: str = "") -> Path:
    return write_suite(tmp_path, FAKE_SUITE % (extra, tmp_path / "results"))


def comparable(records: list[Record]) -> list[tuple]:
    """A record without what legitimately differs between runs (run id, date, commit)."""
    return [(r.key, r.status, r.reason, r.metrics, r.claim, r.verdict) for r in records]


@pytest.fixture(autouse=True)
def _reset_interrupt():
    Interrupt.after, Interrupt.started = None, 0
    yield
    Interrupt.after, Interrupt.started = None, 0


# ------------------------------------------------------------------ suite schema
@pytest.mark.parametrize("name", ["reproduce", "smoke", "gate"])
def test_shipped_suites_parse(name):
    suite = load_suite(name)
    assert suite.name == name and suite.enabled_checks()


def test_reproduce_covers_every_column_of_the_seed_table():
    suite = load_suite("reproduce")
    assert suite.models == ["tiny", "s", "m", "l", "x"]
    checks = dict(suite.enabled_checks())
    assert set(checks) >= {"complexity", "box_ap", "latency"}
    targets = {(b, d, p) for t in checks["latency"].targets
               for b in t.backends for d in t.devices for p in t.precisions}
    assert {("torch", "cpu", "fp32"), ("onnxruntime", "cpu", "fp32"),
            ("torch", "cuda", "fp16"), ("tensorrt", "cuda", "fp16")} <= targets


@pytest.mark.parametrize("body, where, words", [
    ("name: x\nmodels: [tiny]\nchecks:\n  latency:\n    targets: []\n    iteratons: 5\n",
     ":6: checks.latency.iteratons", ["remove this key"]),
    ("name: x\nmodels: [tiny]\nchecks:\n  complexity: {}\n  accuracy: {}\n",
     ":5: checks.accuracy", ["remove this key"]),
    ("name: x\nmodels: [tiny]\nchecks:\n  box_ap: {synthetic: many}\n",
     ":4: checks.box_ap.synthetic", ["expected type"]),
    ("name: x\nmodels: [tiny]\nchecks:\n  box_ap: {synthetic: 4, dataset: /c}\n",
     ":4: checks.box_ap", ["exactly one of 'dataset'"]),
    ("name: x\nmodels: [tiny, huge]\nchecks:\n  complexity: {}\n",
     ":2: models[1]", ["no model 'huge'", "tiny, s, m, l, x"]),
    ("name: x\nmodels: [tiny]\nchecks: {complexity: {}}\ntolerances:\n  box_ap: {absolute: 1,"
     " relative: 0.1}\n", ":5: tolerances.box_ap", ["exactly one of 'absolute'"]),
])
def test_suite_errors_name_file_line_field_and_fix(tmp_path, body, where, words):
    path = write_suite(tmp_path, body)
    with pytest.raises(InputError) as info:
        load_suite(path)
    message = str(info.value)
    assert f"{path}{where}" in message, message
    assert "Fix:" in message and all(w in message for w in words), message


LATENCY = "name: x\nmodels: [tiny]\nchecks:\n  latency:\n    targets: [{backends: [torch], " \
          "devices: [cpu], precisions: [fp32]}]\n    %s\n"
BOX_AP = "name: x\nmodels: [tiny]\nchecks:\n  box_ap:\n    synthetic: 4\n    %s\n"


@pytest.mark.parametrize(("body", "field"), [
    (LATENCY % "min_iterations: 1.0e+29", "checks.latency.min_iterations"),
    (LATENCY % "min_duration_s: 1e400", "checks.latency.min_duration_s"),
    (LATENCY % "min_duration_s: .nan", "checks.latency.min_duration_s"),
    (LATENCY % "warmup_s: 86400", "checks.latency.warmup_s"),
    (LATENCY % "input_size: [100000, 100000]", "checks.latency.input_size[0]"),
    (LATENCY % "input_size: [640, 0]", "checks.latency.input_size[1]"),
    (LATENCY % "batch: 100000", "checks.latency.batch"),
    (BOX_AP % "batch_size: 1000000", "checks.box_ap.batch_size"),
    (BOX_AP % "workers: 10000", "checks.box_ap.workers"),
    (BOX_AP % "limit: 1.0e+12", "checks.box_ap.limit"),
    (BOX_AP.replace("    synthetic: 4\n", "") % "synthetic: 100000", "checks.box_ap.synthetic"),
    ("name: x\nmodels: [tiny]\nchecks: {complexity: {}}\ntolerances:\n"
     "  box_ap: {absolute: .inf}\n", "tolerances.box_ap.absolute"),
])
def test_suite_values_that_would_never_finish_are_refused(tmp_path, body, field):
    path = write_suite(tmp_path, body)
    with pytest.raises(InputError) as info:
        load_suite(path)
    message = str(info.value)
    line = len(body.splitlines())  # the offending value is on the last line
    assert f"{path}:{line}: {field}" in message, message
    assert "Fix: give a value within the bounds" in message, message


def test_latency_flags_have_the_suite_bounds(capsys, monkeypatch):
    import rtmbench.cli as cli

    def never(*args, **kwargs):  # the flags must be refused before any model is built
        raise AssertionError("built a model for a run that would never finish")

    monkeypatch.setattr(cli, "_build", never)
    code = main(["latency", "tiny", "--iterations", "100000000000", "--input-size", "100000",
                 "640"])
    err = capsys.readouterr().err
    assert code == 2 and "--iterations 100000000000" in err and "--input-size" in err, err
    assert "Traceback" not in err


def test_unknown_suite_name_lists_the_shipped_ones():
    with pytest.raises(InputError, match="shipped: .*smoke"):
        load_suite("nonexistent-suite")


# ------------------------------------------------------------------ runner
def test_every_unit_gets_exactly_one_record(tmp_path):
    suite = load_suite(fake_suite(tmp_path, ", not_run_backend: beta, fail_backend: gamma"))
    summary = run_suite(suite, run_id="r1", progress=False)
    run = read_run(summary.path)
    assert len(run.records) == summary.planned == 6
    by_status = {r.key.backend: r.status for r in run.records}
    assert by_status == {"alpha": "measured", "beta": "not run", "gamma": "failed"}
    beta = next(r for r in run.records if r.backend == "beta")
    assert beta.reason == "backend beta is not installed" and beta.metrics == {}
    gamma = next(r for r in run.records if r.backend == "gamma")
    assert gamma.reason.startswith("ZeroDivisionError") and "traceback" in gamma.provenance
    prov = run.records[0].provenance
    assert {"git", "packages", "hardware", "date", "suite"} <= set(prov)
    assert prov["packages"]["torch"] and prov["hardware"]["cores"] >= 1


def test_an_existing_run_is_never_overwritten(tmp_path):
    suite = load_suite(fake_suite(tmp_path))
    run_suite(suite, run_id="r1", progress=False)
    before = (tmp_path / "results" / "r1.jsonl").read_bytes()
    with pytest.raises(InputError, match="--resume r1"):
        run_suite(suite, run_id="r1", progress=False)
    assert (tmp_path / "results" / "r1.jsonl").read_bytes() == before


def test_interrupted_run_resumes_to_the_same_records(tmp_path):
    suite = load_suite(fake_suite(tmp_path))
    reference = read_run(run_suite(suite, run_id="full", progress=False).path).records
    Interrupt.after, Interrupt.started = 4, 0
    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, run_id="cut", progress=False)
    assert len(read_run(tmp_path / "results" / "cut.jsonl").records) == 4
    Interrupt.after, Interrupt.started = None, 0
    summary = run_suite(suite, resume="cut", progress=False)
    assert summary.resumed == 4 and sum(summary.statuses.values()) == 2
    assert Interrupt.started == 2  # finished units were not redone
    assert comparable(read_run(summary.path).records) == comparable(reference)


def test_killed_subprocess_resumes_and_a_torn_line_is_ignored(tmp_path):
    """Killed inside its third unit, which hangs until then: where the kill lands does not
    depend on how fast the machine runs the first two."""
    suite_path = fake_suite(tmp_path)
    code = ("import sys, time; import tests.fake_checks as f; from rtmbench.cli import main\n"
            "real = f.FakeCheck.run\n"
            "def run(self, unit, spec, ctx):\n"
            "    if f.Interrupt.started == 2:\n"
            "        time.sleep(600)  # the third unit: until the kill\n"
            "    return real(self, unit, spec, ctx)\n"
            "f.FakeCheck.run = run\n"
            f"sys.exit(main(['run', {str(suite_path)!r}, '--run-id', 'k', '--no-progress']))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    path = tmp_path / "results" / "k.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not path.exists() or
                                           path.read_bytes().count(b'"unit-started"') < 3):
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with open(path, "ab") as f:  # what a crash in the middle of a write leaves behind
        f.write(b'{"run": "k", "model": "rtmdet-s", "che')
    partial = read_run(path)
    assert len(partial.records) == 3 and partial.skipped_lines
    # the unit the process died in: failed (the gate is red on the cut run), not absent
    interrupted = [r for r in partial.records if "interrupted" in r.provenance]
    assert len(interrupted) <= 1
    assert all(r.status == "failed" and "--resume k" in r.reason for r in interrupted)
    done = {r.key for r in partial.records if r not in interrupted}
    summary = run_suite(load_suite(suite_path), resume="k", progress=False)
    final = read_run(path)
    keys = [r.key for r in final.records]
    assert len(keys) == len(set(keys)) == 6  # the resume measured the interrupted unit again
    assert all(r.status == "measured" for r in final.records)
    assert summary.resumed == len(done) and final.skipped_lines == partial.skipped_lines


def test_writer_ends_a_torn_line_before_appending(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"torn": ')
    writer = RunWriter(path, resume=True)
    writer.append(Record(run="r", model="m", check="fake", status="measured"))
    writer.close()
    run = read_run(path)
    assert [r.model for r in run.records] == ["m"] and run.skipped_lines == [1]
    assert [p.kind for p in run.problems] == ["repaired"]  # the resume acknowledged it
    assert not run.corrupt


def test_cli_run_prints_where_records_are(tmp_path, capsys):
    assert main(["run", str(fake_suite(tmp_path)), "--run-id", "c1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "6 measured" in out and "c1.jsonl" in out
    assert main(["run", str(fake_suite(tmp_path)), "--resume", "nope", "--no-progress"]) == 2


# ------------------------------------------------------------------ real checks
def test_complexity_check_verifies_claims_through_the_runner(tmp_path):
    path = write_suite(tmp_path, f"name: c\nmodels: [tiny]\nchecks: {{complexity: {{}}}}\n"
                                 f"results_dir: {tmp_path / 'results'}\n")
    run = read_run(run_suite(load_suite(path), run_id="c", progress=False).path)
    (record,) = run.records
    assert record.status == "verified" and record.metrics["params"] == 4_896_168
    assert record.claim["params"]["value"] == 4.8 and record.claim["flops"]["convention"]
    assert record.verdict["params"]["ok"] and record.verdict["flops"]["ok"]


def test_missing_prerequisites_are_not_run_records_with_reasons(tmp_path, monkeypatch):
    monkeypatch.delenv("RTMBENCH_COCO", raising=False)
    path = write_suite(tmp_path, f"""\
        name: p
        models: [tiny, x]
        checks:
          box_ap: {{dataset: "${{RTMBENCH_COCO}}", weights: mmyolo}}
          latency:
            targets: [{{backends: [tensorrt], devices: [cuda], precisions: [fp16]}}]
        results_dir: {tmp_path / 'results'}
        """)
    run = read_run(run_suite(load_suite(path), run_id="p", progress=False).path)
    assert len(run.records) == 4 and all(r.status == "not run" for r in run.records)
    box = [r for r in run.records if r.check == "box_ap"]
    assert all("RTMBENCH_COCO is not set" in r.reason and "`rtmbench fetch --coco`" in r.reason
               for r in box)
    assert box[0].claim["box_ap"]["value"] == 40.9  # what was not checked stays visible
    lat = [r for r in run.records if r.check == "latency"]
    assert all(r.reason and r.claim["latency"]["backend"] == "tensorrt" for r in lat)


def test_dataset_directory_must_exist(tmp_path):
    from rtmbench.run.checks import BoxAPSpec, resolve_dataset

    with pytest.raises(DatasetMissing, match="no COCO dataset at"):
        resolve_dataset(BoxAPSpec(dataset=str(tmp_path / "coco")), tmp_path)


def test_fake_check_is_registered_through_the_real_registry():
    assert {"complexity", "box_ap", "latency", "fake"} <= set(registered_checks())


def test_box_ap_with_several_weights_is_one_unit_and_one_column_each(tmp_path, monkeypatch):
    from rtmbench.judge.report import write_report

    monkeypatch.delenv("RTMBENCH_COCO", raising=False)
    path = write_suite(tmp_path, f"""\
        name: two-weights
        models: [tiny, x]
        checks:
          box_ap: {{dataset: "${{RTMBENCH_COCO}}", weights: [mmyolo, mmdet]}}
        results_dir: {tmp_path / "results"}
        """)
    summary = run_suite(load_suite(path), run_id="r", progress=False)
    records = read_run(summary.path).records
    assert sorted((r.model, r.variant) for r in records) == [
        ("rtmdet-tiny", "mmdet"), ("rtmdet-tiny", "mmyolo"),
        ("rtmdet-x", "mmdet"), ("rtmdet-x", "mmyolo")]
    assert all(r.status == "not run" and "RTMBENCH_COCO" in r.reason for r in records)
    claims = {(r.model, r.variant): r.claim["box_ap"]["value"] for r in records}
    assert claims[("rtmdet-tiny", "mmyolo")] == 40.9 and claims[("rtmdet-tiny", "mmdet")] == 41.1
    readme = tmp_path / "README.md"
    readme.write_text("<!-- results:start -->\n<!-- results:end -->\n")
    write_report(["r"], results_dir=tmp_path / "results", out_dir=tmp_path / "reports",
                 readme=readme)
    table = (tmp_path / "reports" / "results.md").read_text()
    assert "box AP (mmyolo weights) | box AP (mmdet weights)" in table
    assert "| 40.9 → *not run [1]* | 41.1 → *not run [1]* |" in table


# ------------------------------------------------------------------ review findings
def test_a_unit_the_process_died_in_fails_the_gate(tmp_path, capsys):
    """A native crash (segfault, OOM kill) leaves no record: the unit's start marker makes it
    a failed unit, so the cut run is red instead of a shorter green one."""
    code = ("import os, signal, sys; import tests.fake_checks as f; from rtmbench.cli import main\n"
            "real = f.FakeCheck.run\n"
            "def run(self, unit, spec, ctx):\n"
            "    if unit.model.name == 'rtmdet-s':\n"
            "        os.kill(os.getpid(), signal.SIGSEGV)\n"
            "    return real(self, unit, spec, ctx)\n"
            "f.FakeCheck.run = run\n"
            f"sys.exit(main(['run', {str(fake_suite(tmp_path))!r}, '--run-id', 'seg', "
            "'--no-progress']))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                          timeout=120)
    assert proc.returncode == -signal.SIGSEGV, proc.stderr.decode()[-2000:]
    run = read_run(tmp_path / "results" / "seg.jsonl")
    crashed = [r for r in run.records if r.status == "failed"]
    assert len(run.records) == 4 and len(crashed) == 1
    assert crashed[0].model == "rtmdet-s" and "process ended during this unit" in \
        crashed[0].reason
    assert main(["gate", str(run.path), "--suite", "gate"]) == 1
    assert "process ended during this unit" in capsys.readouterr().out


def test_a_check_that_calls_sys_exit_is_a_failed_unit_and_the_run_goes_on(tmp_path,
                                                                          monkeypatch):
    from tests.fake_checks import FakeCheck

    real = FakeCheck.run

    def run(self, unit, spec, ctx):
        if unit.backend == "beta":
            raise SystemExit(0)
        return real(self, unit, spec, ctx)

    monkeypatch.setattr(FakeCheck, "run", run)
    summary = run_suite(load_suite(fake_suite(tmp_path)), run_id="exit", progress=False)
    assert summary.planned == 6 and summary.statuses == {"measured": 4, "failed": 2}
    assert main(["run", str(fake_suite(tmp_path)), "--run-id", "exit2", "--no-progress"]) == 1


def test_a_non_finite_provenance_loses_neither_the_unit_nor_the_run(tmp_path, monkeypatch):
    from rtmbench.run.checks import Outcome
    from tests.fake_checks import FakeCheck

    real = FakeCheck.run

    def run(self, unit, spec, ctx):
        outcome = real(self, unit, spec, ctx)
        if unit.backend == "alpha":
            return Outcome("measured", metrics=outcome.metrics,
                           provenance={"details": {"clock": float("nan")}})
        return outcome

    monkeypatch.setattr(FakeCheck, "run", run)
    summary = run_suite(load_suite(fake_suite(tmp_path)), run_id="nan", progress=False)
    assert summary.statuses == {"measured": 4, "failed": 2}
    run = read_run(summary.path)
    assert not run.problems and len(run.records) == 6
    bad = [r for r in run.records if r.status == "failed"]
    assert all("not a finite number" in r.reason for r in bad)


def test_a_unit_named_twice_runs_once(tmp_path):
    body = FAKE_SUITE.replace("[alpha, beta, gamma]", "[alpha, alpha, beta]")
    suite = load_suite(write_suite(tmp_path, body % ("", tmp_path / "results")))
    summary = run_suite(suite, run_id="twice", progress=False)
    assert summary.planned == 4
    keys = [r.key for r in read_run(summary.path).records]
    assert len(keys) == len(set(keys)) == 4


def _lines(path, *objects):
    import json

    path.write_text("".join(json.dumps(o) + "\n" for o in objects))
    return path


def test_a_failure_is_never_hidden_behind_a_later_record_of_the_same_unit(tmp_path, capsys):
    ok = {"run": "d", "model": "rtmdet-tiny", "check": "fake", "backend": "alpha",
          "status": "measured", "metrics": {"value": 1.0}}
    failed = {**ok, "status": "failed", "reason": "boom", "metrics": {}}
    for order in ((failed, ok), (ok, failed)):
        run = read_run(_lines(tmp_path / "d.jsonl", *order))
        assert [r.status for r in run.latest_by_key().values()] == ["failed"]


def test_event_lines_are_trusted_only_in_their_own_shape(tmp_path):
    rec = {"run": "e", "model": "rtmdet-tiny", "check": "fake", "backend": "alpha",
           "status": "failed", "reason": "boom"}
    run = read_run(_lines(tmp_path / "a.jsonl", {**rec, "event": "torn-line"}))
    assert [p.kind for p in run.problems] == ["corrupt"] and not run.records
    path = tmp_path / "b.jsonl"
    path.write_text('garbage\n{"ok": 1}\n' + '{"event": "torn-line", "line": 1}\n')
    kinds = [p.kind for p in read_run(path).problems]
    assert kinds.count("corrupt") >= 2  # the marker is not next to line 1: nothing repaired
    path.write_text('{"torn": \n{"event": "torn-line", "line": 1}\n')
    assert [p.kind for p in read_run(path).problems] == ["repaired"]


@pytest.mark.parametrize("checks, words", [
    ("box_ap: {synthetic: 2, weights: well-conditioned, golden: nope.json}",
     ["checks.box_ap.golden: no file", "nope.json"]),
    ("latency: {targets: [{backends: [torch], devices: [cpu], precisions: [fp32], "
     "providers: [cuda]}]}", ["'providers' selects ONNX Runtime", "correct the value"]),
])
def test_suite_mistakes_found_before_any_unit_runs(tmp_path, checks, words):
    path = write_suite(tmp_path, f"name: bad\nmodels: [tiny]\nchecks:\n  {checks}\n")
    with pytest.raises(InputError) as err:
        load_suite(path)
    assert all(w in str(err.value) for w in words), str(err.value)
    assert "give a value of the expected type" not in str(err.value)


@pytest.mark.parametrize(("body", "where"), [
    ("name: my smoke\nmodels: [tiny]\nchecks: {complexity: {}}\n", ":1: name"),
    ("name: ../../escape\nmodels: [tiny]\nchecks: {complexity: {}}\n", ":1: name"),
    ("name: " + "n" * 65 + "\nmodels: [tiny]\nchecks: {complexity: {}}\n", ":1: name"),
    ("name: x\nmodels: [tiny]\nchecks:\n  box_ap: {synthetic: 4, weights: ../w}\n",
     ":4: checks.box_ap.weights"),
    ("name: x\nmodels: [tiny]\nchecks:\n  box_ap: {synthetic: 4, weights: [mmdet, a/b]}\n",
     ":4: checks.box_ap.weights"),
    (LATENCY % "weights: ../../w", ":6: checks.latency.weights"),
])
def test_suite_names_that_become_paths_are_plain_names(tmp_path, body, where):
    """A suite's name is part of the default run id and the run's work directory; a weights id
    names a box AP unit's folder. A bad one is the suite's error, not a bad run id."""
    path = write_suite(tmp_path, body)
    with pytest.raises(InputError) as info:
        load_suite(path)
    message = str(info.value)
    assert f"{path}{where}" in message and "plain name" in message, message
    assert "run id" not in message


def test_cli_run_reports_a_bad_suite_name_as_the_suite_s_error(tmp_path, capsys):
    path = write_suite(tmp_path, "name: my smoke\nmodels: [tiny]\nchecks: {complexity: {}}\n"
                       f"results_dir: {tmp_path / 'results'}\n")
    assert main(["run", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:1: name" in err and "run id" not in err and "Traceback" not in err, err
    assert not (tmp_path / "results").exists()


# ------------------------------------------------------------------ a full disk
def test_a_full_disk_in_a_unit_fails_that_unit_with_a_clear_reason(tmp_path):
    suite = load_suite(fake_suite(tmp_path, ", disk_full_backend: beta"))
    run = read_run(run_suite(suite, run_id="full", progress=False).path)
    beta = [r for r in run.records if r.backend == "beta"]
    assert {r.status for r in beta} == {"failed"} and len(run.records) == 6
    assert all("no space left on device" in r.reason.lower() and "out" in r.reason
               for r in beta), beta[0].reason
    assert "traceback" not in beta[0].provenance  # the machine's problem, not a bug of ours


def test_a_full_disk_writing_the_run_file_is_exit_2_and_resume_finishes_it(tmp_path, capsys,
                                                                          monkeypatch):
    import errno

    import rtmbench.records.io as records_io

    real, calls = records_io.append_durable, []

    def fills_up(path, data):
        calls.append(data)
        if len(calls) == 6:  # the run's opening (empty) append, two units, the third's start
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(records_io, "append_durable", fills_up)
    suite = fake_suite(tmp_path)
    assert main(["run", str(suite), "--run-id", "df", "--no-progress"]) == 2
    err = capsys.readouterr().err
    path = tmp_path / "results" / "df.jsonl"
    assert "Traceback" not in err and str(path) in err and "No space left" in err, err
    assert "--resume df" in err, err
    kept = read_run(path)
    assert len([r for r in kept.records if r.status == "measured"]) == 2 and not kept.corrupt
    monkeypatch.setattr(records_io, "append_durable", real)
    assert main(["run", str(suite), "--resume", "df", "--no-progress"]) == 0
    final = read_run(path)
    assert len(final.records) == 6 and not final.problems
    assert all(r.status == "measured" for r in final.records)


def test_a_short_write_is_completed_never_a_torn_line(tmp_path, monkeypatch):
    """os.write may write less than asked (a disk filling up, a signal): the rest follows."""
    import rtmbench.fileio as fileio

    real = fileio.os.write
    monkeypatch.setattr(fileio.os, "write", lambda fd, data: real(fd, bytes(data)[:7]))
    fileio.append_durable(tmp_path / "f.jsonl", b'{"a line": "longer than seven bytes"}\n')
    monkeypatch.undo()
    assert (tmp_path / "f.jsonl").read_bytes() == b'{"a line": "longer than seven bytes"}\n'


@pytest.mark.parametrize(("body", "field"), [
    (BOX_AP.replace("synthetic: 4", "synthetic: true") % "limit: 2", "checks.box_ap.synthetic"),
    (BOX_AP % "batch_size: true", "checks.box_ap.batch_size"),
    (BOX_AP % "min_agreement_ap: true", "checks.box_ap.min_agreement_ap"),
    (LATENCY % "min_duration_s: false", "checks.latency.min_duration_s"),
    (LATENCY % "input_size: [true, 320]", "checks.latency.input_size: [0] true"),
    (LATENCY % "accuracy: {images: true}", "checks.latency.accuracy.images"),
    ("name: x\nmodels: [tiny]\nchecks: {complexity: {}}\ntolerances:\n"
     "  box_ap: {absolute: true}\n", "tolerances.box_ap.absolute"),
])
def test_a_boolean_is_never_read_as_a_number(tmp_path, body, field):
    """pydantic's lax mode reads true as 1: 'synthetic: true' ran one generated image."""
    path = write_suite(tmp_path, body)
    with pytest.raises(InputError) as info:
        load_suite(path)
    message = str(info.value)
    assert field in message and "true or false" in message and "number" in message, message


def test_a_suite_that_does_not_exist_is_named_as_a_suite_by_every_command(tmp_path, capsys):
    from tests.records_factory import records, write_run

    run = write_run(tmp_path / "r.jsonl", records("r"))
    for argv in (["run", "NOPE"], ["gate", str(run), "--suite", "NOPE"],
                 ["report", str(run), "--only", "--suite", "NOPE", "--out-dir",
                  str(tmp_path / "out")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "no suite 'NOPE'" in err and "run id" not in err and "Traceback" not in err, err
