"""The latency protocol's statistics, stopping rule and contention handling, on a fake clock."""

from __future__ import annotations

import os
import statistics

import pytest

from rtmbench.measure.timing import FakeTimer, LoadProbe, Protocol, measure
from tests.fake_hardware import real_collect_environment

NO_LOAD = False  # no /proc/stat probe: these tests script every duration themselves


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between order statistics, written out independently of numpy."""
    pos = (len(sorted_values) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (pos - lo) * (sorted_values[hi] - sorted_values[lo])


def test_statistics_on_a_fake_timer_are_exact():
    warmup = [0.050, 0.011, 0.010]  # first call cold; warm-up stops after 3 calls (>= 0.02 s)
    samples = [0.010, 0.012, 0.011, 0.013, 0.009, 0.010, 0.015, 0.011, 0.010, 0.014]
    timer = FakeTimer(warmup + samples)
    protocol = Protocol(warmup_s=0.02, min_iterations=10, min_duration_s=0.0)
    m = measure(lambda: None, protocol, timer, load_probe=NO_LOAD)
    assert m.warmup_samples_s == warmup and m.samples_s == samples and timer.calls == 13
    stats = m.stats(batch=2)
    ms = sorted(s * 1e3 for s in samples)
    mean = sum(ms) / len(ms)
    stdev = statistics.stdev(ms)
    assert stats["samples"] == 10 and stats["warmup_iterations"] == 3
    assert stats["median_ms"] == pytest.approx((ms[4] + ms[5]) / 2, rel=1e-12)
    assert stats["mean_ms"] == pytest.approx(mean, rel=1e-12)
    assert stats["min_ms"] == pytest.approx(9.0, rel=1e-12)
    assert stats["p90_ms"] == pytest.approx(_percentile(ms, 90), rel=1e-12)
    assert stats["p99_ms"] == pytest.approx(_percentile(ms, 99), rel=1e-12)
    assert stats["stdev_ms"] == pytest.approx(stdev, rel=1e-12)
    assert stats["cv"] == pytest.approx(stdev / mean, rel=1e-12)
    assert stats["throughput_ips"] == pytest.approx(2 * 10 / (sum(ms) / 1e3), rel=1e-12)
    assert stats["contention"] is False and stats["outliers_remeasured"] == 0


def test_runs_until_both_iterations_and_duration_are_reached():
    timer = FakeTimer([0.125] * 1000)  # exact in binary: the sums are exact too
    m = measure(lambda: None, Protocol(warmup_s=0.0, min_iterations=3, min_duration_s=1.0),
                timer, load_probe=NO_LOAD)
    assert len(m.samples_s) == 8  # duration, not iterations, was the binding limit
    timer = FakeTimer([0.125] * 1000)
    m = measure(lambda: None, Protocol(warmup_s=0.0, min_iterations=25, min_duration_s=1.0),
                timer, load_probe=NO_LOAD)
    assert len(m.samples_s) == 25


def test_warmup_is_by_time():
    timer = FakeTimer([0.01] * 1000)
    m = measure(lambda: None, Protocol(warmup_s=0.5, min_iterations=1, min_duration_s=0.0),
                timer, load_probe=NO_LOAD)
    assert len(m.warmup_samples_s) == 50


def test_a_contended_sample_is_remeasured_not_averaged_in():
    warmup = [0.01] * 3
    samples = [0.010, 0.011, 0.200, 0.010, 0.012]  # 0.200: another process took the core
    m = measure(lambda: None, Protocol(warmup_s=0.0, min_iterations=4, min_duration_s=0.0),
                FakeTimer(warmup + samples), load_probe=NO_LOAD)
    assert m.samples_s == [0.010, 0.011, 0.010, 0.012]
    assert m.outliers_s == [0.200] and m.contention is False
    assert m.stats()["outliers_ms"] == [200.0]


def test_persistent_outliers_flag_the_run():
    warmup = [0.01] * 3
    samples = [0.010, 0.100, 0.100, 0.011, 0.012]
    m = measure(lambda: None, Protocol(warmup_s=0.0, min_iterations=4, min_duration_s=0.0,
                                       max_remeasure=1), FakeTimer(warmup + samples),
                load_probe=NO_LOAD)
    # The first outlier is re-measured; the second exceeds the budget: kept, and flagged.
    assert m.samples_s == [0.010, 0.100, 0.011, 0.012]
    assert m.contention is True and m.stats()["contention"] is True


class _ScriptedProbe(LoadProbe):
    """Snapshots (monotonic s, all-process CPU s, own CPU s) in the order given."""

    def __init__(self, *snapshots):
        self.snapshots = list(snapshots)

    def snapshot(self):
        return self.snapshots.pop(0)


def test_sustained_load_from_other_processes_flags_the_run():
    # 10 s of wall time; all processes used 25 CPU s, this one 15: others kept 1 core busy.
    probe = _ScriptedProbe((0.0, 100.0, 5.0), (10.0, 125.0, 20.0))
    m = measure(lambda: None, Protocol(warmup_s=0.0, min_iterations=3, min_duration_s=0.0),
                FakeTimer([0.01] * 10), load_probe=probe)
    assert m.other_cores == pytest.approx(1.0) and m.contention is True
    quiet = _ScriptedProbe((0.0, 100.0, 5.0), (10.0, 111.0, 15.0))  # others: 0.1 core
    m = measure(lambda: None, Protocol(warmup_s=0.0, min_iterations=3, min_duration_s=0.0),
                FakeTimer([0.01] * 10), load_probe=quiet)
    assert m.other_cores == pytest.approx(0.1) and m.contention is False


class _RateProbe(LoadProbe):
    """Other processes keep ``others`` cores busy all along; time is the fake timer's."""

    def __init__(self, timer: FakeTimer, others: float):
        self.timer, self.others, self.reads = timer, others, 0

    def snapshot(self):
        self.reads += 1
        t = self.timer.clock
        return t, 100.0 + t * (1.0 + self.others), t  # this process: one core all along


def test_sustained_contention_ends_the_timing_once_established():
    # 0.3 s per call: 50 samples would take 15 s; the load is clear after 1 s and 5 samples.
    protocol = Protocol(warmup_s=0.0, min_iterations=50, min_duration_s=3.0)
    timer = FakeTimer([0.3] * 200)
    m = measure(lambda: None, protocol, timer, load_probe=_RateProbe(timer, others=1.0))
    assert m.contention is True and m.stopped_early is True
    assert len(m.samples_s) == 5  # warm-up 0.9 s, then 1 s of timing: 4 samples, the 5th
    assert m.stats()["stopped_early"] is True and m.other_cores == pytest.approx(1.0)


def test_a_quiet_machine_times_the_whole_protocol_and_probing_can_be_off():
    protocol = Protocol(warmup_s=0.0, min_iterations=50, min_duration_s=3.0)
    timer = FakeTimer([0.3] * 200)
    probe = _RateProbe(timer, others=0.1)
    m = measure(lambda: None, protocol, timer, load_probe=probe)
    assert len(m.samples_s) == 50 and not m.contention and not m.stopped_early
    assert probe.reads > 10  # it looked, about every PROBE_EVERY_S of timing
    timer = FakeTimer([0.3] * 200)
    m = measure(lambda: None, Protocol(warmup_s=0.0, min_iterations=50, min_duration_s=3.0,
                                       contended_after_s=None),
                timer, load_probe=_RateProbe(timer, others=1.0))
    # off: the whole protocol is timed, and the run is still flagged at the end
    assert len(m.samples_s) == 50 and m.contention and not m.stopped_early


def test_environment_is_recorded():
    """The real description of this host (RTMBENCH_TEST_FAKE_CPU does not apply here): what
    it asserts holds on any machine."""
    import torch

    env = real_collect_environment()
    for key in ("cpu", "cpu_cores", "gpu", "gpu_driver", "cuda", "cudnn", "tensorrt",
                "onnxruntime", "torch"):
        assert key in env
    assert env["cpu_cores"] == os.cpu_count() and env["cpu"]
    assert env["torch"] == torch.__version__
    if not torch.cuda.is_available():
        assert env["gpu"] is None and env["cudnn"] is None
