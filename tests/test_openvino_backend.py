"""The OpenVINO backend (CPU, FP32, from the FP32 ONNX): latency, its timed artifact's outputs,
what it reports about itself, and "not run" where it cannot run."""

from __future__ import annotations

import json

import pytest
import torch

from rtmbench.measure.backends import BackendUnavailable, PrepareOptions, get_backend
from rtmbench.measure.latency import measure_latency
from rtmbench.measure.requests import LatencyRequest, Protocol
from rtmbench.run.build import build
from rtmbench.spec.zoo import load_zoo

HW = (64, 96)
QUICK = Protocol(warmup_s=0.05, min_iterations=5, min_duration_s=0.05)


@pytest.fixture(scope="module")
def tiny_entry():
    return load_zoo().get("tiny")


def test_latency_and_its_artifact_check(tiny_entry):
    """Timed with its own reference convolution; the very compiled model that was timed
    gives the model's outputs (FP32: the precision hint is f32 whatever the CPU prefers)."""
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    from rtmbench.data import make_synthetic_coco
    from rtmbench.measure.accuracy import load_images

    model = build(tiny_entry, "well-conditioned").model
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = make_synthetic_coco(f"{tmp}/coco", 2, seed=0)
        images = load_images(tiny_entry, root, 2, (HW[1], HW[0]), described="2 generated",
                             real_coco=False)
    from rtmbench.measure.accuracy import AccuracyCheck

    request = LatencyRequest("openvino", "cpu", "fp32", input_hw=HW, protocol=QUICK)
    result = measure_latency(tiny_entry, request, model, accuracy=AccuracyCheck(images))
    assert result.status == "measured", result.reason
    assert result.reference["details"]["outputs"] == ["output_0"]  # the reference conv, too
    assert 0 < result.fraction_of_peak and result.metrics["samples"] >= 5
    d = result.details
    assert d["inference_precision_hint"] == "f32" and d["performance_hint"] == "LATENCY"
    assert d["outputs"] == ["cls_8", "cls_16", "cls_32", "box_8", "box_16", "box_32"]
    assert d["openvino"] and d["onnx_precision"] == "fp32" and d["bn_folded"]
    accuracy = result.accuracy
    assert accuracy["agreement_ap"] > 0.99 and accuracy["output_max_rel_error"] < 1e-4, accuracy
    assert d["openvino"].startswith(result.environment["openvino"])  # the build adds a suffix
    json.dumps(result.to_dict())


def test_infer_gives_the_models_outputs_and_keeps_the_timed_input():
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.SiLU()).eval()
    example = torch.randn(2, 3, 16, 16)
    runner = get_backend("openvino").prepare(net, example, "cpu", "fp32")
    other = torch.randn(2, 3, 16, 16)
    (got,) = runner.infer(other)
    with torch.no_grad():
        assert float((got - net(other)).abs().max()) < 1e-5
    runner.run()  # the timed call still runs on the example it was prepared with
    request = runner.run.keepalive.request
    with torch.no_grad():
        want = net(example)
    assert float((torch.from_numpy(request.get_output_tensor(0).data) - want).abs().max()) < 1e-5


@pytest.mark.parametrize("device, precision, words", [
    ("cuda", "fp32", "CPU only"), ("cpu", "fp16", "fp32 only")])
def test_what_it_does_not_run_says_why(device, precision, words, tiny_entry):
    assert words in get_backend("openvino").unavailable(device, precision)
    result = measure_latency(tiny_entry, LatencyRequest("openvino", device, precision,
                                                        input_hw=HW, protocol=QUICK))
    assert result.status == "not run" and words in result.reason


def test_without_the_package_it_is_not_run(monkeypatch, tiny_entry):
    import importlib.util

    import rtmbench.measure.backends.openvino_backend as ov_backend

    real = importlib.util.find_spec
    monkeypatch.setattr(ov_backend.importlib.util, "find_spec",
                        lambda name, *a: None if name == "openvino" else real(name, *a))
    backend = get_backend("openvino")
    reason = backend.unavailable("cpu", "fp32")
    assert "pip install 'rtmbench[openvino]'" in reason
    with pytest.raises(BackendUnavailable, match="openvino package is not installed"):
        backend.prepare(torch.nn.Conv2d(3, 3, 1), torch.zeros(1, 3, 8, 8), "cpu", "fp32")


def test_a_broken_onnx_file_is_a_failure_not_a_missing_prerequisite(tmp_path):
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    from rtmbench.measure.backends import BackendError

    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    with pytest.raises(BackendError, match="could not read or compile") as err:
        get_backend("openvino").prepare(torch.nn.Conv2d(3, 3, 1), torch.zeros(1, 3, 8, 8),
                                        "cpu", "fp32", PrepareOptions(onnx_path=broken))
    assert err.value.outcome == "failed"


def test_per_layer_profiling():
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    from rtmbench.measure.backends.openvino_backend import OpenVINOBackend, profiling_info

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.SiLU()).eval()
    runner = OpenVINOBackend(profiling=True).prepare(net, torch.zeros(1, 3, 16, 16), "cpu",
                                                     "fp32")
    runner.run()
    layers = profiling_info(runner)
    assert any(p["type"] == "Convolution" for p in layers)
    assert all(p["real_us"] >= 0 for p in layers)


def _signal_stack() -> int | None:
    import ctypes

    class StackT(ctypes.Structure):
        _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int),
                    ("ss_size", ctypes.c_size_t)]

    found = StackT()
    if ctypes.CDLL(None).sigaltstack(None, ctypes.byref(found)) != 0:
        return None
    return found.ss_sp


def test_runners_dropped_out_of_order_leave_the_threads_signal_stack_as_it_was():
    """OpenVINO gives the thread that infers a signal stack and puts back the one it found when
    the request goes; dropped out of order, a freed stack was put back and the next signal
    (a child process ending) killed the test process. Released in stack order instead."""
    import gc
    import sys

    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    if not sys.platform.startswith("linux"):
        pytest.skip("reads the signal stack with Linux's sigaltstack")
    before = _signal_stack()
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1)).eval()
    first = get_backend("openvino").prepare(net, torch.randn(1, 3, 16, 16), "cpu", "fp32")
    first.run()
    second = get_backend("openvino").prepare(net, torch.randn(1, 3, 16, 16), "cpu", "fp32")
    second.run()
    del first  # the older one first: out of order
    gc.collect()
    assert second.infer(torch.randn(1, 3, 16, 16))[0].shape == (1, 8, 16, 16)  # still alive
    del second
    gc.collect()
    assert _signal_stack() == before
