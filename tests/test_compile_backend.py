"""The torch-compile latency backend: compiled on CPU for real (a small conv net, and tiny end to
end), checked against eager, and every way it can refuse or fail."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from rtmbench.measure.backends import BACKENDS, BackendError, BackendUnavailable, get_backend
from rtmbench.measure.backends import compile_backend as cb
from rtmbench.spec.check_specs import LatencySpec, LatencyTargets

HAS_CUDA = torch.cuda.is_available()


class ConvModule(nn.Module):  # mmcv's names: conv -> bn -> activate (what BN folding looks for)
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.activate = nn.SiLU()

    def forward(self, x):
        return self.activate(self.bn(self.conv(x)))


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = ConvModule(3, 8), ConvModule(8, 8)

    def forward(self, x):
        y = self.a(x)
        return (y,), (self.b(y) * 4.0,)


def small_net() -> nn.Module:
    torch.manual_seed(0)
    net = SmallNet().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net


cpu_reason = get_backend("torch-compile").unavailable("cpu", "fp32")
needs_compiler = pytest.mark.skipif(cpu_reason is not None, reason=f"{cpu_reason}")


def test_registered_everywhere_a_backend_is_named():
    assert "torch-compile" in BACKENDS
    assert isinstance(get_backend("torch-compile"), cb.CompileBackend)
    assert "torch-compile" in LatencyTargets.model_fields["backends"].annotation.__args__[0] \
        .__args__
    assert LatencySpec.model_validate({"targets": [{"backends": ["torch-compile"],
                                                    "devices": ["cpu"],
                                                    "precisions": ["fp32"]}]}).compile_mode \
        == "auto"


def test_modes_resolve_per_device():
    assert cb.resolve_mode("auto", "cuda") == "reduce-overhead"
    assert cb.resolve_mode("auto", "cpu") == "default"
    assert cb.resolve_mode("max-autotune", "cpu") == "max-autotune"
    with pytest.raises(ValueError, match="compile mode"):
        cb.CompileBackend(mode="fastest")


@needs_compiler
def test_cpu_compiled_equals_eager_and_compile_time_is_apart():
    net, x = small_net(), torch.randn(1, 3, 24, 32)
    runner = cb.CompileBackend().prepare(net, x, "cpu", "fp32")
    d = runner.details
    assert d["compile_mode"] == "default" and d["freezing"] and d["dynamic"] is False
    assert d["compile_s"] > 0 and len(d["first_calls_s"]) == cb.WARMUP_CALLS
    assert d["check"]["ok"] and len(d["check"]["max_abs_error"]) == 2
    assert all(e <= b for e, b in zip(d["check"]["max_abs_error"], d["check"]["bound"]))
    runner.run()  # the timed call: no recompilation (it would raise under the stance)
    json.dumps(d)
    # the accuracy check's view of the timed artifact: another input, the same compiled graph
    other = torch.randn(1, 3, 24, 32, generator=torch.Generator().manual_seed(1))
    got = runner.infer(other)
    with torch.inference_mode():
        want = [t for part in small_net()(other) for t in part]
    assert [g.shape for g in got] == [w.shape for w in want]
    assert all(torch.allclose(g, w, atol=1e-4, rtol=1e-3) for g, w in zip(got, want))
    assert not torch.allclose(got[0], runner.infer(x)[0])  # it really ran on the new input


@needs_compiler
def test_disagreeing_outputs_are_a_backend_error(monkeypatch):
    real = cb.compare
    monkeypatch.setattr(cb, "compare", lambda e, c, atol, rtol: real(
        [t + 1.0 for t in e], c, atol, rtol))
    with pytest.raises(BackendError, match="disagrees with eager"):
        cb.CompileBackend().prepare(small_net(), torch.randn(1, 3, 16, 16), "cpu", "fp32")


def test_compare_bounds_and_nan():
    a = [torch.tensor([1.0, -10.0])]
    ok = cb.compare(a, [torch.tensor([1.0, -10.005])], atol=1e-4, rtol=1e-3)
    assert ok["ok"] and ok["bound"] == [pytest.approx(1e-4 + 1e-2)]
    assert not cb.compare(a, [torch.tensor([1.0, -10.1])], 1e-4, 1e-3)["ok"]
    assert not cb.compare(a, [torch.tensor([float("nan"), -10.0])], 1e-4, 1e-3)["ok"]


@needs_compiler
def test_a_model_that_does_not_compile_is_a_failure_not_a_skip():
    class Breaks(nn.Module):
        def forward(self, x):
            torch._dynamo.graph_break()  # fullgraph=True refuses it
            return x + 1

    with pytest.raises(BackendError, match="torch.compile failed on the model"):
        cb.CompileBackend().prepare(Breaks(), torch.randn(1, 3, 8, 8), "cpu", "fp32")


def test_missing_cxx_compiler_is_not_run():
    from torch._inductor import config
    from torch._inductor.cpp_builder import cpp_compiler_search

    cpp_compiler_search.cache_clear()
    # (config.patch, not monkeypatch: the config module's attributes cannot be deleted back)
    try:
        with config.patch({"cpp.cxx": (None, "/nonexistent/g++")}):
            reason = cb.CompileBackend().unavailable("cpu", "fp32")
            assert reason and "C++ compiler" in reason
            with pytest.raises(BackendUnavailable, match=r"C\+\+ compiler"):
                cb.CompileBackend().prepare(small_net(), torch.randn(1, 3, 8, 8), "cpu", "fp32")
    finally:
        cpp_compiler_search.cache_clear()  # the real compiler again for the next test


def test_environment_failures_are_classified_not_run():
    from torch._inductor.exc import InvalidCxxCompiler

    assert isinstance(cb._classify(InvalidCxxCompiler(), "x"), BackendUnavailable)
    wrapped = RuntimeError("backend='inductor' raised")
    wrapped.__cause__ = RuntimeError("fatal error: Python.h: No such file or directory")
    assert isinstance(cb._classify(wrapped, "x"), BackendUnavailable)
    assert isinstance(cb._classify(RuntimeError("shape mismatch in conv"), "x"), BackendError)
    missing = ImportError("No module named 'triton'", name="triton")
    caused = RuntimeError("backend='inductor' raised")
    caused.__cause__ = missing
    assert isinstance(cb._classify(caused, "x"), BackendUnavailable)
    from torch._dynamo.exc import BackendCompilerFailed
    from torch._inductor.exc import InvalidCxxCompiler

    def compiler_failed(inner):  # how dynamo raises it: `from None`, the error kept inside
        try:
            raise BackendCompilerFailed(lambda: None, inner, None) from None
        except BackendCompilerFailed as exc:
            return exc

    assert isinstance(cb._classify(compiler_failed(InvalidCxxCompiler()), "x"),
                      BackendUnavailable)
    assert isinstance(cb._classify(compiler_failed(AssertionError("buf3 is not found")), "x"),
                      BackendError)


@pytest.mark.parametrize("message", [
    "AssertionError: buf3 from op4 is not found in name_to_buf mapping.",  # inductor's memory.py
    "linear_default is not found in graph module GraphModule",            # fx fuser_utils
    "C++ compile error: /tmp/torchinductor/xx.cpp:12: fatal error: too many errors emitted",
])
def test_inductor_internal_errors_are_failures_not_a_missing_tool(message):
    """Words a missing tool's message shares with inductor's own bugs do not make them grey."""
    wrapped = RuntimeError("backend='inductor' raised")
    wrapped.__cause__ = AssertionError(message)
    assert isinstance(cb._classify(wrapped, "x"), BackendError)


def test_an_import_error_handled_earlier_does_not_excuse_a_failure():
    try:
        try:
            import triton_that_is_not_installed  # noqa: F401
        except ImportError:
            raise RuntimeError("inductor lowering failed: size mismatch") from None
    except RuntimeError as exc:
        assert isinstance(cb._classify(exc, "x"), BackendError)
    try:
        try:
            raise ImportError("No module named 'triton'", name="triton")
        except ImportError:
            raise RuntimeError("inductor lowering failed: size mismatch")  # noqa: B904 - context only, on purpose
    except RuntimeError as exc:
        assert exc.__context__ is not None
        assert isinstance(cb._classify(exc, "x"), BackendError)


def test_cpu_fp16_and_cuda_without_gpu_are_not_run():
    backend = cb.CompileBackend()
    assert "fp32 only" in backend.unavailable("cpu", "fp16")
    if not HAS_CUDA:
        assert "CUDA" in backend.unavailable("cuda", "fp16")


def test_missing_triton_is_the_reason_on_cuda(monkeypatch):
    import importlib.util

    monkeypatch.setattr(cb, "cuda_unavailable_reason", lambda: None)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "triton" else real(name, *a))
    assert "triton package is not installed" in cb.CompileBackend().unavailable("cuda", "fp16")


@pytest.mark.slow
@needs_compiler
def test_cli_latency_torch_compile_end_to_end(capsys):
    """`rtmbench latency --backend torch-compile`: tiny compiled, timed, checked, recorded."""
    from rtmbench.cli import main

    code = main(["latency", "tiny", "--backend", "torch-compile", "--input-size", "64", "64",
                 "--iterations", "3", "--min-duration", "0.01", "--warmup", "0.01", "--json"])
    assert code == 0
    record = json.loads(capsys.readouterr().out)
    assert record["status"] == "measured" and record["backend"] == "torch-compile"
    details = record["details"]
    assert details["compile_s"] > 0 and details["check"]["ok"]
    assert details["compile_mode"] == "default" and details["layout"] == "channels_last"
    assert record["reference"]["details"]["compile_mode"] == "default"
    assert record["ratio_to_reference"] > 0
