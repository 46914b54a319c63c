"""A contended latency measurement is timed again on the same artifact (prepared again only
when its build is autotuned), within a time budget, and not at all while the load persists;
the accuracy check runs once, on the artifact the kept timing measured.

Contention and the machine's load are injected (``measure``'s verdict and
``other_cores_during``): these tests decide nothing from real timings."""

from __future__ import annotations

import pytest

from rtmbench.measure import latency
from rtmbench.measure.backends.torch_backend import TorchBackend
from rtmbench.measure.requests import LatencyRequest, Protocol
from rtmbench.run.build import build
from rtmbench.spec.zoo import load_zoo

INPUT_HW = (64, 96)


@pytest.fixture(scope="module")
def tiny():
    entry = load_zoo().get("tiny")
    return entry, build(entry, "well-conditioned", progress=False).model


@pytest.fixture
def contended_first(monkeypatch):
    """The first ``n`` timings (model or reference) say contended; counts prepares and checks."""
    state = {"timings": 0, "contended": 1, "prepares": 0, "checks": 0, "quiet": 0.0}
    real_measure, real_prepare = latency.measure, TorchBackend.prepare

    def measure(*args, **kwargs):
        m = real_measure(*args, **kwargs)
        state["timings"] += 1
        m.contention = state["timings"] <= state["contended"]
        return m

    def prepare(self, *args, **kwargs):
        state["prepares"] += 1
        return real_prepare(self, *args, **kwargs)

    monkeypatch.setattr(latency, "measure", measure)
    monkeypatch.setattr(TorchBackend, "prepare", prepare)
    monkeypatch.setattr(latency, "other_cores_during", lambda seconds: state["quiet"])
    # FLOPs are counted after timing and play no part here: a constant keeps the tests fast
    monkeypatch.setattr(latency, "count_model_flops", lambda module, example: 10**9)
    return state


def _measure(tiny, remeasure, accuracy=False):
    """``remeasure`` None: the request's default."""
    from rtmbench.measure.accuracy import AccuracyCheck

    entry, model = tiny
    check = AccuracyCheck(_images(entry)) if accuracy else None
    request = LatencyRequest("torch", "cpu", "fp32", input_hw=INPUT_HW,
                             protocol=Protocol(warmup_s=0.0, min_iterations=3,
                                               min_duration_s=0.0),
                             **({"remeasure": remeasure} if remeasure is not None else {}))
    return latency.measure_latency(entry, request, model, accuracy=check)


_IMAGES = {}


def _images(entry):
    if "set" not in _IMAGES:
        import tempfile
        from pathlib import Path

        from rtmbench.data import make_synthetic_coco
        from rtmbench.measure.accuracy import load_images

        root = make_synthetic_coco(Path(tempfile.mkdtemp()) / "coco", 2)
        _IMAGES["set"] = load_images(entry, root, 2, (INPUT_HW[1], INPUT_HW[0]),
                                     described="synthetic", real_coco=False)
    return _IMAGES["set"]


def test_a_contended_timing_is_timed_again_on_the_same_artifact(tiny, contended_first,
                                                                 monkeypatch):
    import rtmbench.measure.accuracy as accuracy

    real_check = accuracy.artifact_accuracy

    def check(*args, **kwargs):
        contended_first["checks"] += 1
        return real_check(*args, **kwargs)

    monkeypatch.setattr(accuracy, "artifact_accuracy", check)
    result = _measure(tiny, latency.Remeasure(attempts=2, budget_s=60), accuracy=True)
    assert result.status == "measured"
    assert result.metrics["contention"] is False
    tries = result.details["remeasure"]["attempts"]
    assert [t["contention"] for t in tries] == [True, False]
    assert contended_first["prepares"] == 2  # the model and the reference, once each
    assert [t["builds"] for t in tries] == [1, 1]
    assert contended_first["checks"] == 1  # the accuracy of the artifact timed, once
    assert result.accuracy["accuracy_images"] == 2


def test_sustained_load_stops_the_attempts_and_says_so(tiny, contended_first):
    contended_first["quiet"] = 1.5  # other processes keep 1.5 cores busy
    contended_first["contended"] = 99
    result = _measure(tiny, latency.Remeasure(attempts=2, budget_s=60))
    assert result.metrics["contention"] is True  # reported, never hidden
    remeasure = result.details["remeasure"]
    assert len(remeasure["attempts"]) == 1
    assert "sustained" in remeasure["stopped"] and "1.50 cores" in remeasure["stopped"]


def test_the_budget_bounds_the_attempts(tiny, contended_first):
    contended_first["contended"] = 99
    result = _measure(tiny, latency.Remeasure(attempts=5, budget_s=0.0))
    remeasure = result.details["remeasure"]
    assert len(remeasure["attempts"]) == 1 and "budget" in remeasure["stopped"]


def test_the_default_budget_leaves_room_for_one_attempt_like_the_first(tiny, contended_first):
    # budget None: as long as the first timing took, plus the wait for quiet before the next
    result = _measure(tiny, latency.Remeasure(attempts=3))
    remeasure = result.details["remeasure"]
    assert [a["contention"] for a in remeasure["attempts"]] == [True, False]
    assert result.metrics["contention"] is False and remeasure["stopped"] is None
    contended_first["contended"] = 99
    result = _measure(tiny, latency.Remeasure(attempts=3))
    assert len(result.details["remeasure"]["attempts"]) == 2  # never a third
    assert "budget" in result.details["remeasure"]["stopped"]


def test_attempts_run_out(tiny, contended_first):
    contended_first["contended"] = 99
    result = _measure(tiny, latency.Remeasure(attempts=1, budget_s=60))
    remeasure = result.details["remeasure"]
    assert len(remeasure["attempts"]) == 2 and "contended in all 2 attempts" in \
        remeasure["stopped"]
    assert result.metrics["contention"] is True


def test_no_remeasure_by_default(tiny, contended_first):
    result = _measure(tiny, None)
    assert result.details["remeasure"]["stopped"] == "contended; re-measuring is off"
    assert contended_first["timings"] == 2  # the model and the reference, once


def test_an_autotuned_artifact_is_prepared_again(tiny, contended_first, monkeypatch):
    monkeypatch.setattr(TorchBackend, "autotuned", lambda self, device, precision: True)
    result = _measure(tiny, latency.Remeasure(attempts=2, budget_s=60))
    tries = result.details["remeasure"]["attempts"]
    assert [t["builds"] for t in tries] == [1, 2]
    assert contended_first["prepares"] == 4  # model and reference, twice each


def test_backends_declare_what_is_autotuned():
    from rtmbench.measure.backends import get_backend

    assert not get_backend("torch").autotuned("cpu", "fp32")
    assert get_backend("torch").autotuned("cuda", "fp16")  # cudnn.benchmark
    assert not get_backend("onnxruntime").autotuned("cpu", "fp32")
    assert get_backend("onnxruntime").autotuned("cuda", "fp16")
    assert not get_backend("torch-compile").autotuned("cpu", "fp32")
    assert get_backend("torch-compile", mode="max-autotune").autotuned("cpu", "fp32")
    assert not get_backend("tensorrt").autotuned("cuda", "fp16")  # a cached engine
