"""GPU conditions in GPU latency records (NVML, through a fake pynvml: no GPU here)."""

from __future__ import annotations

import importlib
import sys

import pytest

import rtmbench.measure.backends.torch_backend as torch_backend
from rtmbench.judge.judgement import Mark, judge_unit
from rtmbench.measure.gpu_conditions import GpuProbe, conditions, decode_reasons, open_probe
from rtmbench.measure.latency import measure_latency
from rtmbench.measure.requests import LatencyRequest, Protocol
from rtmbench.spec.zoo import load_zoo
from tests.test_accuracy import _latency_record, _Tolerances


@pytest.fixture
def nvml(monkeypatch):
    fake = importlib.import_module("tests.fakes.pynvml_fake")
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.setattr(fake, "reasons", [0x1, 0x0])
    return fake


def test_decode_and_flag_only_real_throttling(nvml):
    assert decode_reasons(0x1 | 0x4 | 0x40) == ["gpu_idle", "sw_power_cap",
                                                "hw_thermal_slowdown"]
    probe = GpuProbe()
    idle, busy = probe.snapshot(), probe.snapshot()
    assert idle["clock_event_reasons"] == ["gpu_idle"] and busy["sm_clock_mhz"] == 1980
    assert busy["power_limit_w"] == 700.0 and busy["temperature_c"] == 61
    quiet = conditions(idle, busy, probe.system())
    assert quiet["throttled"] is False and quiet["system"] == {
        "name": "NVIDIA FAKE GPU", "driver": "580.65.06", "cuda_driver": "13.0"}
    nvml.reasons = [0x20]
    hot = conditions(probe.snapshot(), idle, None)
    assert hot["throttled"] is True and hot["throttle_reasons"] == ["sw_thermal_slowdown"]


def test_without_nvml_the_record_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    probe, why = open_probe()
    assert probe is None and "nvidia-ml-py" in why
    assert conditions(None, None, None, why) == {"unavailable": why, "throttled": None,
                                                 "throttle_reasons": None}


def test_a_cuda_latency_records_conditions_and_a_throttled_run_is_unreliable(nvml, monkeypatch):
    """The CUDA path of measure_latency with the work done on the CPU (torch backend forced to
    run its CPU path) and NVML faked: what a GPU record carries."""
    real_prepare = torch_backend.TorchBackend.prepare
    monkeypatch.setattr(torch_backend.TorchBackend, "unavailable", lambda self, d, p: None)
    monkeypatch.setattr(torch_backend.TorchBackend, "prepare",
                        lambda self, m, x, d, p, *a, **k: real_prepare(self, m, x, "cpu", "fp32"))
    nvml.reasons = [0x1, 0x8]  # idle before timing, hardware slowdown after it
    request = LatencyRequest("torch", "cuda", "fp32", input_hw=(64, 64), reference=False,
                             protocol=Protocol(warmup_s=0.0, min_iterations=2,
                                               min_duration_s=0.0))
    result = measure_latency(load_zoo().get("tiny"), request)
    assert result.status == "measured"
    assert result.metrics["throttled"] is True
    assert result.metrics["throttle_reasons"] == ["hw_slowdown"]
    assert result.gpu_conditions["before"]["sm_clock_mhz"] == 1980
    assert result.gpu_conditions["system"]["driver"] == "580.65.06"
    record = _latency_record(throttled=True, throttle_reasons=["hw_slowdown"])
    marks = {j.metric: j for j in judge_unit(record, None, _Tolerances())}
    assert marks["latency"].mark is Mark.UNRELIABLE and "hw_slowdown" in marks["latency"].text


def test_a_reading_nvml_does_not_support_leaves_throttling_unknown_not_the_unit_lost(
        nvml, monkeypatch):
    """MIG and vGPU answer NotSupported for clock event reasons (and may for the name): the
    latency still stands, with throttling unknown and the reason recorded."""
    def unsupported(*args):
        raise RuntimeError("NVMLError_NotSupported")

    monkeypatch.setattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", unsupported)
    monkeypatch.setattr(nvml, "nvmlDeviceGetName", unsupported)
    probe = GpuProbe()
    snap = probe.snapshot()
    assert snap["clock_event_reasons"] is None and snap["sm_clock_mhz"] == 1980
    system = probe.system()
    assert system["name"] is None and system["driver"] == "580.65.06"
    result = conditions(snap, probe.snapshot(), system)
    assert result["throttled"] is None and "clock event reasons" in result["unavailable"]


def test_a_broken_pynvml_fails_and_a_missing_one_is_said(shadow_package, monkeypatch):
    """Installed and failing to import is a failure (the record would silently lose its
    throttle check); not installed is a reason in the record, as before."""
    import importlib.util

    from rtmbench.errors import PackageBroken

    shadow_package("pynvml", "raise ImportError('libnvidia-ml.so.1: cannot open shared "
                   "object file')\n")
    with pytest.raises(PackageBroken, match="'pynvml' is installed.*libnvidia-ml.so.1"):
        open_probe()
    shadow_package("pynvml", "raise ModuleNotFoundError(\"No module named 'pynvml'\", "
                   "name='pynvml')\n")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "pynvml" else real(name, *a))
    probe, reason = open_probe()
    assert probe is None and "not installed" in reason
