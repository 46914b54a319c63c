"""``rtmbench run SUITE --plan``: every unit, where it runs, whether it will run or be "not run"
and why (the reason the run records), and an estimate; nothing runs, nothing is written."""

from __future__ import annotations

import json
import textwrap

import pytest

from rtmbench.cli import main
from rtmbench.records import read_run
from rtmbench.run import plan as plan_module
from rtmbench.run.runner import plan_suite, run_suite
from rtmbench.spec.suite import load_suite


@pytest.fixture(autouse=True)
def steady_reference(monkeypatch):
    """This machine's reference-conv time, fixed: the estimates' arithmetic is under test,
    not this machine's speed."""
    monkeypatch.setattr(plan_module, "_time_reference",
                        lambda device: 20.0 if device == "cpu" else None)
    monkeypatch.delenv("RTMBENCH_COCO", raising=False)


def _suite(tmp_path, body: str):
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(body).format(results=tmp_path / "results"))
    return load_suite(path)


SMALL = """\
    name: planned
    models: [tiny]
    checks:
      complexity: {{}}
      latency:
        targets:
          - {{backends: [torch], devices: [cpu], precisions: [fp32]}}
          - {{backends: [tensorrt], devices: [cuda], precisions: [fp16]}}
        input_size: [96, 64]
        min_iterations: 2
        min_duration_s: 0.0
        warmup_s: 0.0
      box_ap:
        dataset: ${{RTMBENCH_COCO}}
        weights: random-init
    results_dir: {results}
    """


def test_the_plan_lists_every_unit_with_the_reason_the_run_records(tmp_path):
    suite = _suite(tmp_path, SMALL)
    planned = plan_suite(suite)
    by_label = {p.unit.key.label: p for p in planned.units}
    assert len(by_label) == 4
    assert not (tmp_path / "results").exists()  # a plan writes nothing
    run = read_run(run_suite(suite, run_id="r", progress=False).path)
    for record in run.records:
        item = by_label[record.key.label]
        if record.status == "not run":
            assert item.status == "not run" and item.reason == " ".join(record.reason.split())
        else:
            assert item.status == "run" and item.seconds > 0, item


def test_estimates_come_from_this_machine_history_when_there_is_one(tmp_path, monkeypatch):
    suite = _suite(tmp_path, SMALL)
    run_suite(suite, run_id="first", progress=False)
    recorded = {r.key.label: r.provenance["duration_s"]
                for r in read_run(tmp_path / "results" / "first.jsonl").records
                if r.status.has_measurement}
    assert recorded and all(v > 0 for v in recorded.values())
    planned = {p.unit.key.label: p for p in plan_suite(suite).units}
    for label, seconds in recorded.items():
        assert planned[label].seconds == pytest.approx(seconds)
        assert planned[label].basis.startswith("history")


def test_the_model_scales_with_the_reference_and_the_network(tmp_path, monkeypatch):
    suite = load_suite("reproduce")
    fast = {p.unit.key.label: p.seconds for p in plan_suite(suite, results_dir=tmp_path).units}
    monkeypatch.setattr(plan_module, "_time_reference", lambda device: 40.0)  # a 2x slower CPU
    slow = {p.unit.key.label: p.seconds for p in plan_suite(suite, results_dir=tmp_path).units}
    tiny = "rtmdet-tiny latency torch/cpu/fp32 640x640"
    x = "rtmdet-x latency torch/cpu/fp32 640x640"
    assert 0 < fast[tiny] < fast[x]
    assert slow[x] > 1.5 * fast[x]
    assert fast["rtmdet-x box_ap torch/cpu/fp32/mmdet"] == 0  # not run: no COCO


def test_cli_plan_runs_nothing_and_says_why(tmp_path, capsys):
    suite = tmp_path / "s.yaml"
    suite.write_text(textwrap.dedent(SMALL).format(results=tmp_path / "results"))
    assert main(["run", str(suite), "--plan"]) == 0
    out = capsys.readouterr().out
    assert "| rtmdet-tiny latency tensorrt/cuda/fp16 96x64 | not run |" in out
    assert "RTMBENCH_COCO is not set" in out
    assert "plan for suite planned" in out and "4 units; 2 will run, about" in out
    assert not (tmp_path / "results").exists()
    assert main(["run", str(suite), "--plan", "--json"]) == 0
    items = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {i["status"] for i in items} == {"run", "not run"}
    assert all({"unit", "label", "reason", "estimate_s", "basis"} <= i.keys() for i in items)


def test_a_run_shows_its_plan_first(tmp_path, capsys):
    suite = tmp_path / "s.yaml"
    suite.write_text(textwrap.dedent(SMALL).format(results=tmp_path / "results"))
    assert main(["run", str(suite), "--run-id", "shown", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "plan for suite planned" in err and "2 not run" not in err
    assert "1 not run: RTMBENCH_COCO is not set" in err


def test_json_without_plan_is_refused(tmp_path, capsys):
    assert main(["run", "smoke", "--json"]) == 2
    assert "--json goes with --plan" in capsys.readouterr().err
