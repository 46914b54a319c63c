"""Box AP on the GPU when there is one: ``device: auto`` plans and runs box AP units on cuda
where the machine has a GPU and on cpu elsewhere; the unit key records which. The GPU is
simulated (this test suite runs on CPU machines): the decisions are tested, not CUDA itself."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rtmbench.cli import main
from rtmbench.measure import evaluation
from rtmbench.measure.evaluation import (
    EvalResult,
    default_batch_size,
    default_workers,
    resolve_eval_device,
)
from rtmbench.run import runner
from rtmbench.run.checks import CheckContext
from rtmbench.run.runner import plan, run_unit
from rtmbench.spec.check_specs import BoxAPSpec, resolve_device
from rtmbench.spec.suite import load_suite
from rtmbench.spec.zoo import load_zoo


@pytest.fixture
def fake_gpu(monkeypatch):
    """A machine whose torch and hardware provenance see a GPU (nothing runs on it)."""
    from rtmbench.measure.backends import base

    monkeypatch.setattr(runner, "gpu_name", lambda: "NVIDIA H200 (simulated)")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(base, "cuda_unavailable_reason", lambda: None)


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(runner, "gpu_name", lambda: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _one_box_ap_suite(tmp_path):
    path = tmp_path / "one.yaml"
    path.write_text("name: one\nmodels: [tiny]\nchecks:\n  box_ap: {synthetic: 4, "
                    "weights: random-init}\n")
    return load_suite(path)


def _box_ap_devices(suite: str) -> set[str]:
    return {u.device for u, _ in plan(load_suite(suite), load_zoo())
            if u.check == "box_ap" and u.input_size is None}  # the models' own, not artifacts


def test_auto_plans_box_ap_on_the_gpu_when_there_is_one(fake_gpu):
    assert BoxAPSpec(dataset="x").device == "auto"  # the default
    assert _box_ap_devices("reproduce") == {"cuda"}
    assert _box_ap_devices("gate") == {"cuda"}
    assert _box_ap_devices("smoke") == {"cpu"}  # a suite can still pin a device


def test_auto_plans_box_ap_on_the_cpu_without_a_gpu(no_gpu):
    assert _box_ap_devices("reproduce") == {"cpu"}


def test_resolve_device_rule():
    assert resolve_device("auto", "NVIDIA H200") == "cuda"
    assert resolve_device("auto", None) == "cpu"
    assert resolve_device("cpu", "NVIDIA H200") == "cpu"
    assert resolve_device("cuda", None) == "cuda"  # explicit: kept (then "not run" there)


def test_batch_and_workers_suit_the_device(monkeypatch):
    assert default_batch_size("cuda") == 32 and default_batch_size("cuda:1") == 32
    assert default_batch_size("cpu") == 8
    monkeypatch.setattr(evaluation.os, "sched_getaffinity", lambda pid: set(range(16)),
                        raising=False)
    assert default_workers("cuda") == 12  # 16 usable cores - 2, at most 12
    assert default_workers("cpu") == 2


def test_evaluate_resolves_auto(fake_gpu):
    assert resolve_eval_device("auto") == "cuda"


def test_evaluate_resolves_auto_to_cpu(no_gpu):
    assert resolve_eval_device("auto") == "cpu"


def test_a_requested_gpu_that_is_missing_is_not_run(tmp_path, no_gpu, capsys):
    from rtmbench.data import make_synthetic_coco

    coco = make_synthetic_coco(tmp_path / "coco", 2)
    code = main(["evaluate", "tiny", "--device", "cuda", "--coco", str(coco),
                 "--random-weights", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "--device: device cuda was asked for" in err and "use device auto or cpu" in err
    assert not (tmp_path / "out").exists()  # nothing started


def test_an_unknown_device_is_unusable_input(tmp_path, capsys):
    from rtmbench.data import make_synthetic_coco

    coco = make_synthetic_coco(tmp_path / "coco", 2)
    code = main(["evaluate", "tiny", "--device", "tpu", "--coco", str(coco), "--random-weights"])
    assert code == 2 and "got 'tpu'" in capsys.readouterr().err


def test_fp16_on_a_machine_where_auto_chose_the_cpu_is_unusable_input(tmp_path, no_gpu, capsys):
    from rtmbench.data import make_synthetic_coco

    coco = make_synthetic_coco(tmp_path / "coco", 2)
    code = main(["evaluate", "tiny", "--precision", "fp16", "--coco", str(coco),
                 "--random-weights", "--out", str(tmp_path / "out")])
    assert code == 2 and "fp16 needs" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_box_ap_unit_runs_where_it_was_planned(fake_gpu, monkeypatch, tmp_path):
    """The check hands the planned device to the evaluation, in FP32, with the device's
    defaults decided by the request's builder (as for `rtmbench evaluate`); the record's key
    says cuda."""
    seen = {}

    def fake_evaluate(entry, model, request):
        seen["request"] = request
        return EvalResult({"coco": {"AP": 0.25}}, 4, tmp_path / "detections.json",
                          manifest={"device": request.device, "batch_size": request.batch_size,
                                    "precision": request.precision})

    monkeypatch.setattr(evaluation, "evaluate", fake_evaluate)
    monkeypatch.setattr(evaluation.os, "sched_getaffinity", lambda pid: set(range(16)),
                        raising=False)
    suite = load_suite("reproduce")
    spec = BoxAPSpec(synthetic=4, weights="random-init")
    ((unit, _),) = [(u, s) for u, s in plan(_one_box_ap_suite(tmp_path), load_zoo())]
    assert unit.key.device == "cuda"
    result = run_unit(unit, spec, CheckContext(suite, tmp_path, {"gpu": "NVIDIA H200"}, False))
    assert str(result.status) == "measured", result.reason
    request = seen["request"]
    assert request.device == "cuda" and request.precision == "fp32"
    assert request.batch_size == 32 and request.workers == 12  # suited to the device
    assert result.provenance["evaluation"] == {"device": "cuda", "batch_size": 32,
                                               "precision": "fp32"}


def test_a_planned_gpu_unit_on_a_machine_without_one_is_not_run(fake_gpu, tmp_path):
    spec = BoxAPSpec(synthetic=4, weights="random-init")
    ((unit, _),) = [(u, s) for u, s in plan(_one_box_ap_suite(tmp_path), load_zoo())]
    result = run_unit(unit, spec, CheckContext(load_suite("reproduce"), tmp_path, {"gpu": None},
                                               False))
    assert str(result.status) == "not run" and "CUDA GPU" in result.reason


def test_fp16_needs_an_explicit_gpu():
    with pytest.raises(ValueError, match="fp16 needs device cuda"):
        BoxAPSpec(synthetic=4, precision="fp16")
    assert BoxAPSpec(synthetic=4, device="cuda", precision="fp16").batch_size is None


def test_evaluate_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "auto (cuda where torch sees a GPU, else cpu)" in out
    assert "default: 32 on cuda, 8 on cpu" in out


def test_shipped_suites_leave_box_ap_on_auto():
    for name in ("reproduce", "gate"):
        spec = dict(load_suite(name).enabled_checks())["box_ap"]
        assert spec.device == "auto" and spec.batch_size is None and spec.workers is None, name
    assert Path(load_suite("smoke").path).name == "smoke.yaml"
