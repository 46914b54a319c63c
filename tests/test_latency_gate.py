"""The latency gate (a factor beyond the tolerance *and* Mann-Whitney U significance).

Its statistics are tested on recorded samples, the committed smoke baseline's, resampled with
fixed seeds (tests/recorded_latency.py): each test asserts why its verdict is certain for any
draw, so no verdict depends on the machine running the tests. How often real reruns on a real
machine are flagged is a benchmark figure (benchmarks/bench_gate_noise.py). One test times the
real model, and asserts only what holds on a busy machine too.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from rtmbench.judge.gate import compare
from rtmbench.measure.timing import Protocol
from rtmbench.records import read_run
from rtmbench.run.runner import run_suite
from rtmbench.spec.suite import load_suite
from tests.recorded_latency import as_run, baseline_latency, resampled

SMOKE = load_suite("smoke")
TOLERANCE = SMOKE.tolerance("latency").relative  # 0.5
BACKENDS = ("torch", "onnxruntime")


def _latency_row(rows):
    return next(r for r in rows if r.metric.startswith("latency"))


def _spread(backend: str) -> tuple[float, float, float]:
    """min, median (as recorded) and max of the baseline's samples."""
    base = baseline_latency(backend)
    samples = base.metrics["samples_ms"]
    return min(samples), base.metrics["median_ms"], max(samples)


def _simulated(backend: str, seed: int, factor: float):
    """The gate's row for a resampled rerun, ``factor`` times slower, against the baseline."""
    base = baseline_latency(backend)
    rerun = resampled(base, seed=seed, factor=factor)
    return _latency_row(compare(as_run(rerun), as_run(base), SMOKE))


@pytest.mark.parametrize("backend", BACKENDS)
def test_unchanged_reruns_are_never_flagged(backend):
    low, median, high = _spread(backend)
    # Certain: a rerun's median is one of the baseline's samples, at most `high`, so its ratio
    # to the (same) reference is never beyond the tolerance; only both make a regression.
    assert high / median < 1 + TOLERANCE
    rows = [_simulated(backend, seed, 1.0) for seed in range(20)]
    assert not any(r.regression or r.unreliable for r in rows), rows
    assert all(r.verdict.startswith("ok: ") and "within ±50% of baseline" in r.verdict
               for r in rows), rows


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("factor", [1.7, 2.0, 3.0])
def test_a_slowdown_beyond_the_tolerance_is_flagged(backend, factor):
    low, median, high = _spread(backend)
    # Certain: every slowed sample exceeds every baseline sample (the smallest p-value the
    # sample counts allow, far below alpha) and even the smallest possible median is beyond
    # the tolerance.
    assert factor * low > high and factor * low / median > 1 + TOLERANCE
    for seed in range(5):
        row = _simulated(backend, seed, factor)
        assert row.regression, row
        assert "significant (Mann-Whitney U, p=" in row.verdict and "< 0.01" in row.verdict


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_slowdown_within_the_tolerance_passes(backend):
    low, median, high = _spread(backend)
    factor = 1.1
    assert factor * high / median < 1 + TOLERANCE  # certain, as for the unchanged reruns
    for seed in range(5):
        row = _simulated(backend, seed, factor)
        assert not row.regression and "within ±50%" in row.verdict, row


def test_the_simulated_comparison_is_deterministic():
    """One seed, one set of verdicts: p-values and deltas included, also where the verdict
    depends on the draw (onnxruntime 1.45x: its median may or may not pass the tolerance)."""
    def verdicts(seed):
        return [(b, f, row.verdict, row.measured, row.delta)
                for b in BACKENDS for f in (1.0, 1.2, 1.45, 2.0)
                for row in [_simulated(b, seed, f)]]

    first = verdicts(7)
    assert verdicts(7) == first
    assert verdicts(8) != first  # the seed is what draws the samples
    base = baseline_latency("onnxruntime")
    assert np.array_equal(resampled(base, seed=7).metrics["samples_ms"],
                          resampled(base, seed=7).metrics["samples_ms"])


# ------------------------------------------------------------------ on real timings
# A slowdown injected into the real model must be flagged, or a run marked contended
# (UNRELIABLE, not gated): nothing else may come out, on a quiet or a busy machine. How large
# a slowdown that takes follows from what the protocol lets through unflagged. A record is
# marked contended when other processes kept more than b = Protocol.busy_other_cores (0.25)
# cores busy on average while the model or while its reference convolution was timed (each
# phase has its own probe; a contended attempt is re-measured once, then kept as contended).
# For load to raise a phase's median s-fold, at least half its samples must each take s times
# as long, i.e. other processes held a 1 - 1/s share of a core during them (a two-thread
# forward waits for its slower thread) for at least s/(s+1) of the phase: unflagged means
# (s - 1)/(s + 1) <= b, s <= (1 + b)/(1 - b) = 5/3. The ratio to the reference can so move by
# s either way in each run, the two runs' ratios apart by s^2 = 2.8 at worst: a 2x slowdown
# can hide in that (2 / 2.8 < 1.25), a 4x one cannot (4 / 2.8 = 1.44 > 1 + 0.25).
INJECTED = 4
TIGHT = 0.25


def test_the_injected_slowdown_is_large_enough_for_a_busy_machine():
    b = Protocol().busy_other_cores
    worst = ((1 + b) / (1 - b)) ** 2
    assert INJECTED / worst > 1 + TIGHT > 2 / worst


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
          latency: {{relative: {TIGHT}, alpha: 0.01}}
        results_dir: {root / "results"}
        """))
    return load_suite(path)


def _run(suite, run_id):
    return read_run(run_suite(suite, run_id=run_id, progress=False).path)


def test_an_injected_slowdown_on_real_timings_is_flagged_or_marked_contended(suite,
                                                                             monkeypatch):
    from rtmbench.measure.backends import torch_backend

    baseline = _run(suite, "baseline")
    prepare = torch_backend.TorchBackend.prepare

    def slower(self, model, example, *args, **kwargs):
        runner = prepare(self, model, example, *args, **kwargs)
        if example.shape[1] == 3:  # the model, not the reference convolution
            once = runner.run

            def run():
                for _ in range(INJECTED):
                    once()

            runner.run = run
        return runner

    monkeypatch.setattr(torch_backend.TorchBackend, "prepare", slower)
    run = _run(suite, "slow")
    row = _latency_row(compare(run, baseline, suite))
    contended = [r.run for r in (*run.records, *baseline.records)
                 if r.check == "latency" and r.metrics.get("contention")]
    if contended:  # a busy machine: shown, never gated and never "ok"
        assert row.unreliable and not row.regression and "UNRELIABLE" in row.verdict, row
    else:
        assert row.regression, row
        assert "significant (Mann-Whitney U, p=" in row.verdict

