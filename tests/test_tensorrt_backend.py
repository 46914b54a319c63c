"""The TensorRT backend against API-surface fakes of TensorRT 8.6, 10.x and 11.x
(tests/fakes/tensorrt_*.py): the typing mode each version supports, the flags it is given (never
one the version removed or deprecated), which ONNX file it builds from, the engine cache key,
and failures as "failed" vs "not run". The fakes "execute" the ONNX in ONNX Runtime CPU: these
tests say nothing about real TensorRT engines, which never ran here."""

from __future__ import annotations

import importlib
import sys
import warnings

import pytest
import torch
from torch import nn

import rtmbench.measure.backends.tensorrt_backend as trt_backend
from rtmbench.measure.backends import BackendError, BackendUnavailable, PrepareOptions
from rtmbench.measure.backends.tensorrt_backend import BuildPlan, TensorRTBackend, plan_build
from rtmbench.measure.export import FP16_PARITY_ATOL, FP16_PARITY_RTOL, export_onnx
from rtmbench.measure.requests import BackendOptions, ExportRequest, LatencyRequest, Protocol
from tests.fakes.devices import HostBuffers

pytest.importorskip("onnxruntime", reason="the fakes run engines in onnxruntime (onnx extra)")
VERSIONS = ["tensorrt_8_6", "tensorrt_10", "tensorrt_11"]
HW = (16, 24)


def load_fake(name: str):
    module = importlib.import_module(f"tests.fakes.{name}")
    module.FAKE.calls.clear()
    return module


@pytest.fixture(params=VERSIONS)
def fake(request, monkeypatch, tmp_path):
    """``import tensorrt`` gives the fake; CUDA looks present; engines cache under tmp_path."""
    module = load_fake(request.param)
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    monkeypatch.setattr(trt_backend, "cuda_unavailable_reason", lambda: None)
    monkeypatch.setenv("RTMBENCH_CACHE", str(tmp_path / "cache"))
    return module


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.SiLU(), nn.Conv2d(8, 4, 1)).eval()


EXPECTED = {  # version -> (typing, network flags, builder flags, ONNX precision) for fp16
    "8.6": ("weak", ("EXPLICIT_BATCH",), ("FP16",), "fp32"),
    "10": ("weak", (), ("FP16",), "fp32"),
    "11": ("strong", ("STRONGLY_TYPED",), (), "fp16"),
}


def _major(module) -> str:
    return "8.6" if module.__version__.startswith("8.6") else module.__version__.split(".")[0]


def test_auto_typing_is_what_each_version_supports(fake):
    plan = plan_build(fake, "fp16")
    assert (plan.typing, plan.network_flags, plan.builder_flags, plan.onnx_precision) == \
        EXPECTED[_major(fake)]
    fp32 = plan_build(fake, "fp32")
    assert fp32.builder_flags == () and fp32.onnx_precision == "fp32"


def test_asking_for_a_typing_the_version_lacks_is_not_run():
    with pytest.raises(BackendUnavailable, match="no strongly typed networks"):
        plan_build(load_fake("tensorrt_8_6"), "fp16", "strong")
    with pytest.raises(BackendUnavailable, match="removed BuilderFlag.FP16"):
        plan_build(load_fake("tensorrt_11"), "fp16", "weak")
    strong10 = plan_build(load_fake("tensorrt_10"), "fp16", "strong")
    assert (strong10.network_flags, strong10.builder_flags, strong10.onnx_precision) == \
        (("STRONGLY_TYPED",), (), "fp16")


def test_the_11_fake_has_no_weak_typing_flags():
    """The fake fails as the real 11.x does if asked for a removed flag."""
    eleven = load_fake("tensorrt_11")
    for removed in ("FP16", "INT8", "BF16", "OBEY_PRECISION_CONSTRAINTS"):
        assert not hasattr(eleven.BuilderFlag, removed)
    assert not hasattr(eleven.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")
    with pytest.raises(AttributeError):
        eleven.BuilderFlag.FP16  # noqa: B018


def test_builds_binds_and_runs_on_each_version(fake, tmp_path):
    net = small_net()
    x = torch.randn(1, 3, *HW, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        # 10.x: no deprecated flag is used (the fake warns "fake TensorRT ...: X is deprecated")
        warnings.filterwarnings("error", message="fake TensorRT", category=DeprecationWarning)
        runner = TensorRTBackend(buffers=HostBuffers()).prepare(
            net, x, "cuda", "fp16", PrepareOptions(workdir=tmp_path / "w"))
    typing, network_flags, builder_flags, onnx_precision = EXPECTED[_major(fake)]
    d = runner.details
    assert d["tensorrt"] == fake.__version__ and d["typing"] == typing
    assert tuple(d["builder_flags"]) == builder_flags
    assert tuple(d["network_flags"]) == network_flags and d["onnx_precision"] == onnx_precision
    assert d["engine"].startswith("built and cached") and f"_fp16_{typing}.engine" in d["engine"]
    assert ("fp16_converter" in d) == (onnx_precision == "fp16")
    calls = fake.FAKE.calls
    assert ("create_network", network_flags) in calls
    assert [c for c in calls if c[0] == "set_flag"] == [("set_flag", f) for f in builder_flags]
    strongly_typed = typing == "strong"
    assert [c for c in calls if c[0] == "build"] == [("build", strongly_typed, builder_flags)]
    runner.run()
    runner.synchronize()
    got = runner.infer(x)
    with torch.no_grad():
        want = net(x)
    assert len(got) == 1 and got[0].dtype == torch.float32 and got[0].shape == want.shape
    bound = FP16_PARITY_ATOL + FP16_PARITY_RTOL * float(want.abs().max())
    assert float((got[0] - want).abs().max()) <= bound
    engine = runner.run.keepalive[1]
    assert engine.compute_precision == "fp16"  # the fake's record of what the build runs in


def test_engine_cache_key_includes_the_typing(fake, tmp_path):
    net, x = small_net(), torch.zeros(1, 3, *HW)
    backend = TensorRTBackend(buffers=HostBuffers())
    first = backend.prepare(net, x, "cuda", "fp16", PrepareOptions(workdir=tmp_path / "a"))
    again = backend.prepare(net, x, "cuda", "fp16", PrepareOptions(workdir=tmp_path / "b"))
    assert first.details["engine"].startswith("built")
    assert again.details["engine"].startswith("cache hit")
    if _major(fake) == "10":  # both modes exist: the other one is another engine
        strong = TensorRTBackend(typing="strong", buffers=HostBuffers()).prepare(
            net, x, "cuda", "fp16", PrepareOptions(workdir=tmp_path / "c"))
        assert strong.details["engine"].startswith("built") and "_strong.engine" in \
            strong.details["engine"]


def test_parse_and_build_failures_are_backend_errors(fake, tmp_path):
    backend = TensorRTBackend(buffers=HostBuffers())
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    with pytest.raises(BackendError, match="could not parse") as info:
        backend.build_engine(broken, "fp16")
    assert info.value.outcome == "failed"
    path = export_onnx(small_net(), tmp_path / "n.onnx", ExportRequest(input_hw=HW))
    # A plan no version accepts: a precision flag on a strongly typed network (10.x refuses
    # to build it; 11.x has no such flag at all; 8.6 has no strong typing).
    bad = BuildPlan("strong", "fp32", ("STRONGLY_TYPED",), ("FP16",))
    if _major(fake) == "8.6":
        bad = BuildPlan("weak", "fp32", ("EXPLICIT_BATCH", "NO_SUCH_FLAG"), ())
    with pytest.raises(BackendError, match=r"failed (to build|while building)"):
        backend.build_engine(path, "fp16", bad)


def test_unavailable_reasons_without_gpu_or_package(monkeypatch):
    backend = TensorRTBackend()
    assert "CUDA GPUs only" in backend.unavailable("cpu", "fp16")
    monkeypatch.setattr(trt_backend, "cuda_unavailable_reason", lambda: "no CUDA GPU is visible")
    assert backend.unavailable("cuda", "fp16") == "no CUDA GPU is visible"


def test_measure_latency_through_the_11_fake_records_how_it_built(monkeypatch, tmp_path):
    from rtmbench.measure.latency import measure_latency
    from rtmbench.spec.zoo import load_zoo

    module = load_fake("tensorrt_11")
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    monkeypatch.setattr(trt_backend, "cuda_unavailable_reason", lambda: None)
    monkeypatch.setenv("RTMBENCH_CACHE", str(tmp_path))
    request = LatencyRequest("tensorrt", "cuda", "fp16", input_hw=(64, 64),
                             protocol=Protocol(warmup_s=0.0, min_iterations=2,
                                               min_duration_s=0.0), reference=False,
                             options=BackendOptions(extra={"buffers": HostBuffers()}))
    result = measure_latency(load_zoo().get("tiny"), request)
    assert result.status == "measured", result.reason
    assert result.details["typing"] == "strong" and result.details["onnx_precision"] == "fp16"
