"""ONNX Runtime's execution providers: which ONNX file (FP32 or FP16) and which options each
gets, recorded in the runner's details. The CPU provider runs for real; the CUDA and TensorRT
providers run against an API-surface fake (tests/fakes/onnxruntime_gpu.py) that executes on the
CPU provider: onnxruntime-gpu never ran here."""

from __future__ import annotations

import onnx
import pytest
import torch
from torch import nn

import rtmbench.measure.backends.onnxruntime_backend as ort_backend
from rtmbench.measure.backends import BackendUnavailable, PrepareOptions
from rtmbench.measure.backends.onnxruntime_backend import OnnxRuntimeBackend, provider_config
from tests.fakes import onnxruntime_gpu

pytest.importorskip("onnxruntime", reason="the onnx extra (onnxruntime) is not installed")
HW = (16, 24)


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.SiLU(), nn.Conv2d(8, 4, 1)).eval()


def _onnx_precision(path: str) -> str:
    model = onnx.load(path)
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    weight = next(i for i in model.graph.initializer if i.name == conv.input[1])
    return "fp16" if weight.data_type == onnx.TensorProto.FLOAT16 else "fp32"


@pytest.fixture
def gpu(monkeypatch):
    monkeypatch.setattr(ort_backend, "cuda_unavailable_reason", lambda: None)
    return onnxruntime_gpu.install(monkeypatch)


@pytest.mark.parametrize("trt_version, typing, fp16_flag, onnx_precision", [
    ("8.6.1.6", "weak", True, "fp32"),    # the published setting: FP32 file, FP16 flag
    ("10.13.3.9", "weak", True, "fp32"),
    ("11.4.0.22", "strong", False, "fp16"),  # no kFP16 in 11: the FP16 file, flag off
    (None, "strong", False, "fp16"),      # unknown TensorRT: the path valid on 10 and 11
])
def test_tensorrt_provider_fp16_by_tensorrt_version(gpu, monkeypatch, tmp_path, trt_version,
                                                    typing, fp16_flag, onnx_precision):
    monkeypatch.setattr(ort_backend, "tensorrt_version_for_provider", lambda: trt_version)
    x = torch.randn(1, 3, *HW)
    runner = OnnxRuntimeBackend().prepare(small_net(), x, "cuda", "fp16",
                                          PrepareOptions(workdir=tmp_path))
    session = gpu.sessions[-1]
    assert session["provider"] == "TensorrtExecutionProvider"
    assert session["options"]["trt_fp16_enable"] is fp16_flag
    assert session["options"]["trt_engine_cache_enable"] is True
    assert _onnx_precision(session["path"]) == onnx_precision
    d = runner.details
    assert d["provider"] == "TensorrtExecutionProvider" and d["typing"] == typing
    assert d["onnx_precision"] == onnx_precision and d["tensorrt"] == (trt_version or "unknown")
    assert d["provider_options"]["trt_fp16_enable"] is fp16_flag
    runner.run()
    got = runner.infer(x)
    with torch.no_grad():
        want = small_net()(x)
    torch.testing.assert_close(got[0], want, rtol=0, atol=5e-3 * float(want.abs().max()) + 1e-3)


def test_cuda_provider_times_fp16_from_the_fp16_file(gpu, tmp_path):
    runner = OnnxRuntimeBackend(provider="cuda").prepare(small_net(), torch.randn(1, 3, *HW),
                                                         "cuda", "fp16",
                                                         PrepareOptions(workdir=tmp_path))
    session = gpu.sessions[-1]
    assert session["provider"] == "CUDAExecutionProvider" and session["options"] == {}
    assert _onnx_precision(session["path"]) == "fp16"
    assert runner.details["onnx_precision"] == "fp16" and "typing" not in runner.details
    assert runner.details["fp16_converter"]
    fp32 = OnnxRuntimeBackend().prepare(small_net(), torch.randn(1, 3, *HW), "cuda", "fp32",
                                        PrepareOptions(workdir=tmp_path / "32"))
    assert fp32.details["provider"] == "CUDAExecutionProvider"
    assert _onnx_precision(gpu.sessions[-1]["path"]) == "fp32"


def test_a_provider_that_falls_back_to_the_cpu_is_not_run(monkeypatch, tmp_path):
    monkeypatch.setattr(ort_backend, "cuda_unavailable_reason", lambda: None)
    onnxruntime_gpu.install(monkeypatch, fall_back=True)
    with pytest.raises(BackendUnavailable, match="fell back"):
        OnnxRuntimeBackend(provider="cuda").prepare(small_net(), torch.randn(1, 3, *HW),
                                                    "cuda", "fp16",
                                                    PrepareOptions(workdir=tmp_path))


def test_missing_gpu_providers_are_the_reason(monkeypatch):
    monkeypatch.setattr(ort_backend, "cuda_unavailable_reason", lambda: None)
    onnxruntime_gpu.install(monkeypatch, available=("CPUExecutionProvider",))
    reason = OnnxRuntimeBackend().unavailable("cuda", "fp16")
    assert "no TensorrtExecutionProvider" in reason and "TensorRT" in reason
    assert "no CUDAExecutionProvider" in OnnxRuntimeBackend(provider="cuda").unavailable(
        "cuda", "fp16")
    assert "does not run on cpu" in OnnxRuntimeBackend(provider="tensorrt").unavailable(
        "cpu", "fp32")


def test_provider_config_table():
    assert provider_config("cpu", "fp32") == {"onnx_precision": "fp32", "options": {}}
    assert provider_config("cuda", "fp16") == {"onnx_precision": "fp16", "options": {}}
    assert provider_config("tensorrt", "fp32", "10.1") == {
        "onnx_precision": "fp32", "options": {"trt_fp16_enable": False}, "typing": "strong"}
    with pytest.raises(BackendUnavailable, match="no weak typing"):
        provider_config("tensorrt", "fp16", "11.0", typing="weak")
    with pytest.raises(ValueError, match="typing must be one of"):
        provider_config("tensorrt", "fp16", "10.1", typing="wek")


def test_cpu_provider_runs_for_real(tmp_path):
    x = torch.randn(1, 3, *HW)
    runner = OnnxRuntimeBackend().prepare(small_net(), x, "cpu", "fp32",
                                          PrepareOptions(workdir=tmp_path))
    assert runner.details["providers"] == ["CPUExecutionProvider"]
    assert runner.details["onnx_precision"] == "fp32"
    with torch.no_grad():
        torch.testing.assert_close(runner.infer(x)[0], small_net()(x), rtol=1e-4, atol=1e-4)


SUITE = """\
name: providers-test
models: [tiny]
checks:
  latency:
    targets:
      - {backends: [onnxruntime], devices: [cuda], precisions: [fp16], providers: [cuda, tensorrt]}
    min_iterations: 2
    min_duration_s: 0.0
    warmup_s: 0.0
    input_size: [64, 64]
    weights: well-conditioned
    accuracy: {images: 2, min_agreement_ap: 0.9}
results_dir: %s
"""


def test_each_provider_is_a_unit_with_its_file_options_and_accuracy(gpu, monkeypatch, tmp_path):
    """A suite's `providers` make one unit per execution provider (variant `<provider>-ep`);
    each records what it ran and the agreement AP of that very session."""
    from rtmbench.records import read_run
    from rtmbench.run.runner import run_suite
    from rtmbench.spec.suite import load_suite

    monkeypatch.setattr(ort_backend, "tensorrt_version_for_provider", lambda: "11.4.0.22")
    path = tmp_path / "s.yaml"
    path.write_text(SUITE % (tmp_path / "results"))
    run_suite(load_suite(path), run_id="p", progress=False)
    records = {r.variant: r for r in read_run(tmp_path / "results" / "p.jsonl").records}
    assert set(records) == {"cuda-ep", "tensorrt-ep"}
    for variant, provider, options in (("cuda-ep", "CUDAExecutionProvider", {}),
                                       ("tensorrt-ep", "TensorrtExecutionProvider",
                                        {"trt_fp16_enable": False})):
        rec = records[variant]
        assert rec.status == "measured", rec.reason
        details = rec.provenance["details"]
        assert details["provider"] == provider and details["onnx_precision"] == "fp16"
        assert options.items() <= details["provider_options"].items()
        assert rec.metrics["agreement_ap"] >= 0.9 and rec.metrics["min_agreement_ap"] == 0.9
