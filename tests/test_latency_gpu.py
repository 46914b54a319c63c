"""GPU latency: torch CUDA (fp16/fp32, CUDA graphs), ONNX Runtime CUDA/TensorRT EPs, TensorRT.

Run with ``pytest -m gpu -s`` on a machine with a CUDA GPU; each test prints what it measured.
Skipped with a reason where there is no GPU, no TensorRT, or no GPU execution provider.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from rtmbench.measure.latency import measure_latency
from rtmbench.measure.requests import BackendOptions, LatencyRequest, Protocol
from rtmbench.run.latency_command import latency_claims
from rtmbench.spec.zoo import load_zoo

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch"),
]
PROTOCOL = Protocol(warmup_s=1.0, min_iterations=200, min_duration_s=2.0)


def _on_cuda(backend: str, precision: str, **fields) -> LatencyRequest:
    return LatencyRequest(backend, "cuda", precision, protocol=PROTOCOL, **fields)


def _report(result, entry) -> None:
    """Print the measurement (visible with -s) so the run's numbers land in the log."""
    summary = {k: result.to_dict()[k] for k in ("model", "backend", "device", "precision",
                                                "status", "reason", "achieved_gflops",
                                                "peak_gflops", "fraction_of_peak",
                                                "ratio_to_reference")}
    summary["metrics"] = {k: result.metrics.get(k) for k in
                          ("median_ms", "p90_ms", "p99_ms", "cv", "samples", "contention")}
    summary["gpu"] = result.environment.get("gpu")
    summary["details"] = result.details
    summary["claims"] = [(c["value"], c["hardware"], c["verdict"])
                         for c in latency_claims(result, entry)]
    print("\nGPU-LATENCY " + json.dumps(summary, default=str))


@pytest.mark.parametrize("size", ["tiny", "s", "m"])
def test_torch_cuda_fp16_cuda_graphs(size):
    entry = load_zoo().get(size)
    result = measure_latency(entry, _on_cuda("torch", "fp16"))
    _report(result, entry)
    assert result.status == "measured", result.reason
    assert result.details["cuda_graphs"] is True and result.details["dtype"] == "torch.float16"
    assert result.environment["gpu"] and result.environment["cudnn"]
    assert result.metrics["samples"] >= 200 and result.peak_gflops > 0


def test_torch_cuda_fp32_and_transfer_switch():
    entry = load_zoo().get("tiny")
    excluded = measure_latency(entry, _on_cuda("torch", "fp32"))
    included = measure_latency(entry, _on_cuda("torch", "fp32", include_transfer=True,
                                               reference=False))
    _report(excluded, entry)
    _report(included, entry)
    assert excluded.status == included.status == "measured"
    assert included.details["include_transfer"] is True
    assert excluded.details["include_transfer"] is False


@pytest.fixture
def true_fp32():
    """TF32 off for the test, restored after. (cuBLAS's flag is served by a module __getattr__,
    which monkeypatch cannot undo: it tries to delete it.)"""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = cudnn.allow_tf32, matmul.allow_tf32
    cudnn.allow_tf32 = matmul.allow_tf32 = False
    yield
    cudnn.allow_tf32, matmul.allow_tf32 = saved


def test_cuda_graph_replay_matches_eager(true_fp32):
    from rtmbench.measure.backends.torch_backend import TorchBackend
    from rtmbench.run.build import network

    # TF32 would make BN-folded vs unfolded differ by ~1e-3 relative: compare in true fp32.
    model = network("tiny")
    x = torch.randn(1, 3, 320, 320)
    runner = TorchBackend().prepare(model, x, "cuda", "fp32")
    runner.run()
    runner.synchronize()
    with torch.inference_mode():
        expected = model.cuda()(x.cuda())
    outputs = runner.outputs()
    for got, want in zip((*outputs[0], *outputs[1]), (*expected[0], *expected[1]), strict=True):
        torch.testing.assert_close(got.float(), want, rtol=1e-3, atol=1e-3)


def test_onnxruntime_cuda():
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider")
    entry = load_zoo().get("tiny")
    result = measure_latency(entry, _on_cuda("onnxruntime", "fp32"))
    _report(result, entry)
    assert result.status == "measured", result.reason
    assert result.details["providers"][0] == "CUDAExecutionProvider"


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None,
                    reason="the tensorrt Python package is not installed")
def test_tensorrt_fp16_engine_built_then_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("RTMBENCH_CACHE", str(tmp_path))
    entry = load_zoo().get("tiny")
    first = measure_latency(entry, _on_cuda("tensorrt", "fp16", reference=False))
    _report(first, entry)
    assert first.status == "measured", first.reason
    assert first.details["engine"].startswith("built")
    second = measure_latency(entry, _on_cuda("tensorrt", "fp16", reference=False))
    assert second.details["engine"].startswith("cache hit")


# ------------------------------------------------------------------ issue 10: typing, accuracy
def _accuracy_images(tmp_path, entry, hw=(320, 320), n=4):
    from rtmbench.data import make_synthetic_coco
    from rtmbench.measure.accuracy import load_images

    root = make_synthetic_coco(tmp_path / "coco", n, seed=0)
    return load_images(entry, root, n, (hw[1], hw[0]), described=f"{n} generated",
                       real_coco=False)


def _tiny_agrees(tmp_path, backend: str, precision: str, **backend_options):
    """Tiny (well-conditioned weights, 320x320) timed on ``backend`` on CUDA, measured, and its
    detections on 4 generated images agreeing with PyTorch FP32."""
    from rtmbench.measure.accuracy import AccuracyCheck
    from rtmbench.run.build import build

    entry = load_zoo().get("tiny")
    model = build(entry, "well-conditioned").model
    request = _on_cuda(backend, precision, input_hw=(320, 320), reference=False,
                       options=BackendOptions.from_kwargs(backend_options))
    result = measure_latency(entry, request, model,
                             accuracy=AccuracyCheck(_accuracy_images(tmp_path, entry)))
    _report(result, entry)
    assert result.status == "measured", result.reason
    assert result.accuracy["agreement_ap"] >= 0.9, result.accuracy
    return result


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None,
                    reason="the tensorrt Python package is not installed")
def test_tensorrt_fp16_typing_and_agreement(tmp_path, monkeypatch):
    """On the installed TensorRT: the typing it supports, and the engine's detections agree
    with PyTorch FP32 (well-conditioned weights, 4 generated images)."""
    import tensorrt as trt

    monkeypatch.setenv("RTMBENCH_CACHE", str(tmp_path))
    result = _tiny_agrees(tmp_path, "tensorrt", "fp16")
    expected = "weak" if hasattr(trt.BuilderFlag, "FP16") else "strong"
    assert result.details["typing"] == expected
    assert result.details["onnx_precision"] == ("fp32" if expected == "weak" else "fp16")
    assert result.metrics["throttled"] in (True, False, None)


def test_onnxruntime_cuda_provider_fp16_and_agreement(tmp_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider")
    result = _tiny_agrees(tmp_path, "onnxruntime", "fp16", provider="cuda")
    assert result.details["provider"] == "CUDAExecutionProvider"
    assert result.details["onnx_precision"] == "fp16"


def test_torch_cuda_graph_agreement_and_gpu_conditions(tmp_path):
    result = _tiny_agrees(tmp_path, "torch", "fp16")
    conditions = result.gpu_conditions
    if importlib.util.find_spec("pynvml") is not None:
        assert conditions["before"]["sm_clock_mhz"] and conditions["system"]["driver"]
        assert isinstance(result.metrics["throttled"], bool)
    else:
        assert "nvidia-ml-py" in conditions["unavailable"]


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_torch_compile_cuda_reduce_overhead(precision):
    """torch.compile on CUDA: compiled (cudagraph trees), checked against eager, timed."""
    entry = load_zoo().get("tiny")
    result = measure_latency(entry, _on_cuda("torch-compile", precision))
    _report(result, entry)
    assert result.status == "measured", result.reason
    d = result.details
    assert d["compile_mode"] == "reduce-overhead" and d["cuda_graphs"] is True
    assert d["compile_s"] > 0 and d["check"]["ok"], d["check"]
    assert result.reference["details"]["compile_mode"] == "reduce-overhead"
