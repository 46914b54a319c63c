"""Latency measurement on the CPU backends for real (small inputs), and "not run" records."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from rtmbench.cli import main
from rtmbench.errors import InputError
from rtmbench.measure.latency import LatencyResult, count_model_flops, measure_latency
from rtmbench.measure.requests import LatencyRequest, Protocol
from rtmbench.measure.timing import FakeTimer
from rtmbench.run.build import network
from rtmbench.run.latency_command import latency_claims
from rtmbench.spec.zoo import load_zoo

HW = (64, 96)
QUICK_PROTOCOL = Protocol(warmup_s=0.05, min_iterations=5, min_duration_s=0.05)


def quick(backend: str, device: str = "cpu", precision: str = "fp32") -> LatencyRequest:
    """A short timing of ``backend`` at HW."""
    return LatencyRequest(backend, device, precision, input_hw=HW, protocol=QUICK_PROTOCOL)
METRICS = ("median_ms", "mean_ms", "min_ms", "p90_ms", "p99_ms", "stdev_ms", "cv",
           "throughput_ips", "samples")
HAS_CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def tiny_entry():
    return load_zoo().get("tiny")


def _check_measured(result: LatencyResult):
    assert result.status == "measured" and result.reason is None
    assert all(k in result.metrics for k in METRICS)
    assert result.metrics["samples"] >= 5
    assert result.metrics["min_ms"] <= result.metrics["median_ms"] <= result.metrics["p99_ms"]
    assert result.achieved_gflops == pytest.approx(
        result.flops / (result.metrics["median_ms"] / 1e3) / 1e9)
    assert result.fraction_of_peak == pytest.approx(result.achieved_gflops /
                                                    result.peak_gflops)
    assert result.ratio_to_reference == pytest.approx(
        result.metrics["median_ms"] / result.reference["metrics"]["median_ms"])
    assert result.reference["flops"] == 256 * 256 * 9 * 80 * 80  # mmengine: 1 MAC = 1 FLOP
    assert result.environment["cpu"] and result.environment["torch"] == torch.__version__
    json.dumps(result.to_dict())  # a record, serialisable as is


def test_torch_cpu_measured(tiny_entry):
    result = measure_latency(tiny_entry, quick("torch"))
    _check_measured(result)
    assert result.details["layout"] == "channels_last" and result.details["bn_folded"]
    assert result.input_hw == HW


def test_onnxruntime_cpu_measured(tiny_entry):
    pytest.importorskip("onnxruntime", reason="the onnx extra (onnxruntime) is not installed")
    result = measure_latency(tiny_entry, quick("onnxruntime"))
    _check_measured(result)
    assert result.details["providers"] == ["CPUExecutionProvider"]
    assert result.details["graph_optimization"] == "ORT_ENABLE_ALL"


def test_statistics_through_measure_latency_with_a_fake_timer(tiny_entry):
    # Model calls take 20 ms, then the reference conv's take 4 ms (its own FakeTimer phase).
    durations = itertools.chain([0.020] * 8, itertools.repeat(0.004))
    request = LatencyRequest("torch", "cpu", "fp32", input_hw=HW, batch=1,
                             protocol=Protocol(warmup_s=0.0, min_iterations=5,
                                               min_duration_s=0.0))
    result = measure_latency(tiny_entry, request, timer=FakeTimer(durations))
    assert result.metrics["median_ms"] == pytest.approx(20.0)
    assert result.metrics["stdev_ms"] == 0.0 and result.metrics["samples"] == 5
    assert result.metrics["throughput_ips"] == pytest.approx(50.0)
    model_flops = count_model_flops(network("tiny"), torch.zeros(1, 3, *HW))
    assert result.flops == model_flops
    assert result.achieved_gflops == pytest.approx(model_flops / 0.020 / 1e9)
    assert result.peak_gflops == pytest.approx(256 * 256 * 9 * 6400 / 0.004 / 1e9)


@pytest.mark.skipif(HAS_CUDA, reason="a CUDA GPU is present: the cuda backends can run")
@pytest.mark.parametrize("backend,precision", [("torch", "fp32"), ("torch", "fp16"),
                                               ("onnxruntime", "fp32"), ("tensorrt", "fp16")])
def test_cuda_backends_not_run_without_gpu(tiny_entry, backend, precision):
    result = measure_latency(tiny_entry, quick(backend, "cuda", precision))
    assert result.status == "not run" and result.metrics == {}
    assert result.achieved_gflops is None and result.environment["cpu"]
    assert "CUDA" in result.reason or "onnxruntime" in result.reason


@pytest.mark.parametrize("backend,device,precision,fragment", [
    ("tensorrt", "cpu", "fp16", "CUDA GPUs only"),
    ("torch", "cpu", "fp16", "fp32 only"),
    ("onnxruntime", "cpu", "fp16", "fp32 only"),
])
def test_impossible_combinations_are_not_run(tiny_entry, backend, device, precision, fragment):
    result = measure_latency(tiny_entry, quick(backend, device, precision))
    assert result.status == "not run" and fragment in result.reason


def test_missing_tensorrt_package_is_the_reason(tiny_entry, monkeypatch):
    import importlib.util

    import rtmbench.measure.backends.base as base
    import rtmbench.measure.backends.tensorrt_backend as trt_backend

    monkeypatch.setattr(base, "cuda_unavailable_reason", lambda: None)
    monkeypatch.setattr(trt_backend, "cuda_unavailable_reason", lambda: None)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorrt" else real(name, *a))
    result = measure_latency(tiny_entry, quick("tensorrt", "cuda", "fp16"))
    assert result.status == "not run" and "tensorrt Python package is not installed" in \
        result.reason


def test_unknown_names_are_user_errors(tiny_entry):
    with pytest.raises(InputError, match="unknown backend"):
        measure_latency(tiny_entry, LatencyRequest("tvm", "cpu", "fp32"))
    with pytest.raises(InputError, match="unknown precision"):
        measure_latency(tiny_entry, LatencyRequest("torch", "cpu", "int8"))
    with pytest.raises(InputError, match="unknown device 'gpu'"):
        LatencyRequest("torch", "gpu", "fp32")


def _result(gpu, backend="tensorrt", precision="fp16", status="measured", median=1.96):
    return LatencyResult(status, None, backend, "cuda" if gpu else "cpu", precision,
                         metrics={"median_ms": median}, input_hw=(640, 640),
                         environment={"gpu": gpu, "cpu": "Xeon"})


def test_claims_are_judged_only_on_the_same_hardware(tiny_entry):
    """What `rtmbench latency` prints beside a result: the judge on equal footing only."""
    same = latency_claims(_result("NVIDIA GeForce RTX 3090"), tiny_entry)
    by_hw = {c["hardware"]: c for c in same}
    assert by_hw["NVIDIA RTX 3090"]["verdict"] == "miss"  # 1.96 ms vs 0.98 ms: +100%
    assert "+100%" in by_hw["NVIDIA RTX 3090"]["explanation"]
    assert by_hw["NVIDIA T4"]["verdict"] == "not comparable"
    fast = latency_claims(_result("NVIDIA GeForce RTX 3090", median=1.0), tiny_entry)
    assert {c["hardware"]: c["verdict"] for c in fast}["NVIDIA RTX 3090"] == "ok"
    h100 = latency_claims(_result("NVIDIA H100 80GB HBM3"), tiny_entry)
    assert {c["verdict"] for c in h100} == {"not comparable"}
    cpu = latency_claims(_result(None, "onnxruntime", "fp32"), tiny_entry)
    assert {c["verdict"] for c in cpu} == {"not comparable"}
    torch_same_gpu = latency_claims(_result("NVIDIA GeForce RTX 3090", "torch"), tiny_entry)
    assert all("backend" in c["explanation"] for c in torch_same_gpu)
    not_run = latency_claims(_result(None, status="not run"), tiny_entry)
    assert {c["verdict"] for c in not_run} == {"not measured"}


def test_cli_latency_json(capsys):
    pytest.importorskip("onnxruntime", reason="the onnx extra (onnxruntime) is not installed")
    code = main(["latency", "tiny", "--backend", "onnxruntime", "--device", "cpu",
                 "--input-size", "96", "64", "--iterations", "5", "--min-duration", "0.05",
                 "--warmup", "0.05", "--json"])
    assert code == 0
    record = json.loads(capsys.readouterr().out)
    assert record["status"] == "measured" and record["input_hw"] == [64, 96]
    # a CPU timing beside GPU claims: not comparable; timed while other processes took the CPU
    # (a busy machine): unreliable first, never judged
    expected = "unreliable" if record["metrics"]["contention"] else "not comparable"
    assert record["peak_gflops"] > 0 and record["claims"][0]["verdict"] == expected


def test_cli_latency_text_not_run_has_its_own_exit_code(capsys):
    assert main(["latency", "tiny", "--backend", "tensorrt", "--device", "cpu",
                 "--precision", "fp16"]) == 3  # not run: a script must not read it as success
    captured = capsys.readouterr()
    assert "not run: TensorRT runs on CUDA GPUs only" in captured.out
    assert "environment:" in captured.out and "not run" in captured.err


@pytest.mark.parametrize("options", [{}, {"onednn_fusion": False},
                                     {"layout": "contiguous", "fold_bn": False}])
def test_torch_cpu_runner_computes_the_model(options):
    """Every CPU variant the benchmark times gives the model's own outputs."""
    from rtmbench.measure.backends.torch_backend import TorchBackend
    from tests.conftest import well_conditioned_state_dict

    model = network("tiny")
    model.load_state_dict(well_conditioned_state_dict(model))
    x = torch.randn(1, 3, *HW)
    runner = TorchBackend(**options).prepare(model, x, "cpu", "fp32")
    runner.run()
    with torch.inference_mode():
        cls, box = model(x)
    got = runner.outputs()
    for a, b in zip((*got[0], *got[1]), (*cls, *box), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    if not options:
        assert runner.details["onednn_fusion"] == "conv+SiLU fused, weights packed"


@pytest.mark.parametrize("sig, code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_signal_during_latency_removes_its_temporary_directory(tmp_path, sig, code):
    """SIGTERM (what a batch scheduler or `timeout` sends) cleans up like Ctrl-C does."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src, "TMPDIR": str(tmp)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtmbench", "latency", "tiny", "--input-size", "64", "64",
         "--iterations", "1000000", "--min-duration", "3600", "--warmup", "0",
         "--no-reference"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        deadline = time.monotonic() + 300  # importing torch on a busy machine: tens of s
        while not list(tmp.glob("rtmbench-latency-*")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        assert list(tmp.glob("rtmbench-latency-*")), "the command never started timing"
        time.sleep(0.3)  # inside the timing loop
        proc.send_signal(getattr(signal, sig))
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == code, err[-2000:]
    assert list(tmp.iterdir()) == [], "temporary files were left behind"
    assert "Traceback" not in err


# ------------------------------------------------------------- broken installations
BROKEN = "raise ImportError('libfoo.so.1: cannot open shared object file: No such file')\n"


def test_cli_latency_with_a_broken_onnxruntime_is_a_failure_not_a_traceback(capsys,
                                                                           shadow_package):
    shadow_package("onnxruntime", BROKEN)
    code = main(["latency", "tiny", "--backend", "onnxruntime", "--input-size", "64", "64",
                 "--iterations", "1", "--min-duration", "0", "--warmup", "0", "--no-reference"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    assert "'onnxruntime' is installed" in err and "libfoo.so.1" in err, err


@pytest.mark.parametrize(("backend", "package", "device", "precision"), [
    ("onnxruntime", "onnxruntime", "cpu", "fp32"),
    ("onnxruntime", "onnxruntime", "cuda", "fp16"),
    ("tensorrt", "tensorrt", "cuda", "fp16"),
    ("torch-compile", "triton", "cuda", "fp16"),
])
def test_a_broken_backend_package_fails_and_a_missing_one_is_not_run(tiny_entry, monkeypatch,
                                                                     shadow_package, backend,
                                                                     package, device, precision):
    import importlib.util

    import rtmbench.measure.backends.compile_backend as compile_backend
    import rtmbench.measure.backends.onnxruntime_backend as ort_backend
    import rtmbench.measure.backends.tensorrt_backend as trt_backend
    from rtmbench.errors import PackageBroken
    from rtmbench.measure.backends import get_backend

    for module in (ort_backend, trt_backend, compile_backend):
        monkeypatch.setattr(module, "cuda_unavailable_reason", lambda: None)
    shadow_package(package, BROKEN)
    with pytest.raises(PackageBroken, match=f"'{package}' is installed.*libfoo.so.1"):
        get_backend(backend).unavailable(device, precision)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == package else real(name, *a))
    reason = get_backend(backend).unavailable(device, precision)
    assert reason and "not installed" in reason, reason
