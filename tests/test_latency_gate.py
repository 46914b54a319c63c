"""The latency gate on real measurements: an injected 2x slowdown fails it; the unchanged code
re-measured five times in a row never does (factor and Mann-Whitney U together)."""

from __future__ import annotations

import textwrap

import pytest

from rtmbench.judge.gate import compare
from rtmbench.records import read_run
from rtmbench.run.runner import run_suite
from rtmbench.spec.suite import load_suite


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    root = tmp_path_factory.mktemp("latency-gate")
    path = root / "latency.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: latency-gate
        models: [tiny]
        checks:
          latency:
            targets: [{{backends: [torch], devices: [cpu], precisions: [fp32]}}]
            input_size: [160, 160]
            min_iterations: 30
            min_duration_s: 0.3
            warmup_s: 0.2
            remeasure_contended: 1
        tolerances:
          latency: {{relative: 0.25, alpha: 0.01}}
        results_dir: {root / "results"}
        """))
    return load_suite(path)


def _run(suite, run_id):
    return read_run(run_suite(suite, run_id=run_id, progress=False).path)


@pytest.fixture(scope="module")
def baseline(suite):
    return _run(suite, "baseline")


def _latency_row(rows):
    return next(r for r in rows if r.metric.startswith("latency"))


def test_five_unchanged_reruns_never_fail(suite, baseline):
    verdicts = []
    for i in range(5):
        rows = compare(_run(suite, f"rerun-{i}"), baseline, suite)
        verdicts.append(_latency_row(rows).verdict)
        assert not any(r.regression for r in rows), rows
    assert all("within ±25%" in v or "not significant" in v or "UNRELIABLE" in v
               for v in verdicts), verdicts


def test_an_injected_2x_slowdown_fails(suite, baseline, monkeypatch):
    from rtmbench.measure.backends import torch_backend

    prepare = torch_backend.TorchBackend.prepare

    def twice(self, model, example, *args, **kwargs):
        runner = prepare(self, model, example, *args, **kwargs)
        if example.shape[1] == 3:  # the model, not the reference convolution
            once = runner.run

            def run():
                once()
                once()

            runner.run = run
        return runner

    monkeypatch.setattr(torch_backend.TorchBackend, "prepare", twice)
    run = _run(suite, "slow")
    record = next(r for r in run.records if r.check == "latency")
    if record.metrics.get("contention"):
        pytest.skip("the machine was busy for every attempt: the measurement is unreliable")
    row = _latency_row(compare(run, baseline, suite))
    assert row.regression, row
    assert "significant (Mann-Whitney U, p=" in row.verdict
