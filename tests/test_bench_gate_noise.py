"""benchmarks/bench_gate_noise.py keeps counting right: its suite, injection and tallies, on the
committed smoke baseline's recorded samples (no timing is judged here: its figures are)."""

from __future__ import annotations

import time

import pytest
from benchmarks import bench_gate_noise as bench

from rtmbench.measure import latency as latency_module
from rtmbench.measure.timing import Protocol
from tests.recorded_latency import as_run, baseline_latency, resampled


def test_the_suite_is_the_smoke_suites_latency_check(tmp_path):
    suite = bench.noise_suite(tmp_path, ["torch"], with_accuracy=False)
    checks = dict(suite.enabled_checks())
    assert list(checks) == ["latency"]
    lat = checks["latency"]
    assert [t.backends for t in lat.targets] == [["torch"]] and lat.accuracy is None
    assert tuple(lat.input_size) == (320, 320)
    assert lat.weights == "well-conditioned"
    assert suite.tolerance("latency").describe() == "±50%"
    assert bench.noise_suite(tmp_path, ["torch", "onnxruntime"], True) \
        .enabled_checks()[0][1].accuracy is not None


def test_reruns_and_scaled_slowdowns_are_tallied_as_the_gate_judges_them(tmp_path):
    suite = bench.noise_suite(tmp_path, list(bench.BACKENDS), with_accuracy=False)
    base = [baseline_latency(b) for b in bench.BACKENDS]
    baseline = as_run(*base)
    unchanged, doubled = [], []
    for seed in range(3):
        rerun = as_run(*[resampled(r, seed=seed, run=f"r{seed}") for r in base])
        unchanged.append(bench.latency_rows(rerun, baseline, suite))
        slow = as_run(*[bench.scaled(r, 2.0) for r in rerun.records])
        doubled.append(bench.latency_rows(slow, baseline, suite))
    for backend in bench.BACKENDS:
        fp = bench.rate([rows[backend] for rows in unchanged])
        assert (fp["runs"], fp["gated"], fp["flagged"], fp["rate"]) == (3, 3, 0, 0.0)
        assert fp["ci95"][0] == 0.0 and 0.5 < fp["ci95"][1] < 0.8  # 0 of 3: [0, 0.71]
        power = bench.rate([rows[backend] for rows in doubled])
        assert (power["flagged"], power["rate"]) == (3, 1.0)
        assert all(rows[backend]["p_value"] < 0.01 for rows in doubled)
    contended = as_run(*[r.model_copy(update={"metrics": {**r.metrics, "contention": True}})
                         for r in base])
    rows = bench.latency_rows(contended, baseline, suite)
    assert {o["verdict"] for o in rows.values()} == {"unreliable"}
    tally = bench.rate(list(rows.values()))
    assert tally["gated"] == 0 and tally["unreliable"] == 2 and tally["rate"] is None


def test_the_busy_wait_slows_the_model_and_never_the_reference(monkeypatch):
    seen = {}

    def spy(run, protocol, timer=None, progress=False, label="latency", *args, **kwargs):
        seen[label] = run
        return None

    monkeypatch.setattr(latency_module, "measure", spy)
    calls = []

    def model():
        calls.append(1)

    with bench.injected({"torch": 0.02}):
        latency_module.measure(model, Protocol(), None, False, "tiny torch/cpu/fp32")
        latency_module.measure(model, Protocol(), None, False, "reference conv")
        latency_module.measure(model, Protocol(), None, False, "tiny onnxruntime/cpu/fp32")
    assert latency_module.measure is spy  # restored
    assert seen["reference conv"] is model and seen["tiny onnxruntime/cpu/fp32"] is model
    start = time.perf_counter()
    seen["tiny torch/cpu/fp32"]()
    assert time.perf_counter() - start >= 0.02 and calls == [1]  # a lower bound: any machine


@pytest.mark.parametrize("argv", [["--reruns", "-1"], ["--backends", "tensorrt"]])
def test_bad_arguments_are_usage_errors(argv):
    with pytest.raises(SystemExit) as exit_:
        bench.main(argv)
    assert exit_.value.code == 2
