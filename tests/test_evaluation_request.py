"""The evaluation's request: checked when it is made (the suite's bounds, each error naming its
setting), its device and defaults decided once (resolve_request), the same for
`rtmbench evaluate` and the box AP check; messages of the measuring code name settings, and
the command line puts its flag in front."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest
import torch

from rtmbench.errors import DeviceMissing, InputError
from rtmbench.measure import eval_plan, evaluation, scoring
from rtmbench.measure.eval_plan import EvaluationRequest, parse_shard, setting_of
from rtmbench.run.evaluation_command import flags_named
from rtmbench.spec.check_specs import MAX_BATCH, MAX_IMAGES, MAX_WORKERS

SRC = Path(__file__).resolve().parents[1] / "src" / "rtmbench"


@pytest.mark.parametrize(("settings", "setting", "words"), [
    ({"batch_size": 0}, "batch_size", f"batch size must be 1 to {MAX_BATCH}"),
    ({"batch_size": MAX_BATCH + 1}, "batch_size", "batch size"),
    ({"batch_size": 2.0}, "batch_size", "got 2.0"),
    ({"batch_size": True}, "batch_size", "got True"),
    ({"workers": -1}, "workers", f"0 to {MAX_WORKERS}"),
    ({"limit": 0}, "limit", f"1 to {MAX_IMAGES} images"),
    ({"device": "gpu"}, "device", "auto, cpu, cuda or cuda:N, got 'gpu'"),
    ({"precision": "int8"}, "precision", "unknown precision 'int8'"),
    ({"device": "cpu", "precision": "fp16"}, "precision", "precision fp16 needs device cuda"),
    ({"shard": (2, 2)}, "shard", "0 <= i < n"),
    ({"scorer": "coco"}, "scorer", "unknown scorer 'coco'"),
    ({"scoring_workers": 0}, "scoring_workers", "1 or more"),
    ({"progress": "no"}, "progress", "true or false"),
])
def test_a_setting_out_of_bounds_is_refused_naming_the_setting(tmp_path, settings, setting,
                                                                words):
    with pytest.raises(InputError, match=re.escape(words)) as info:
        EvaluationRequest(tmp_path, tmp_path / "out", **settings)
    assert setting_of(info.value) == setting
    assert "--" not in str(info.value)


def test_the_bounds_are_the_suites(tmp_path):
    """What a suite's box_ap check accepts, a request accepts, and the first value past it
    neither does."""
    from pydantic import ValidationError

    from rtmbench.spec.check_specs import BoxAPSpec

    for field, value in (("batch_size", MAX_BATCH), ("workers", MAX_WORKERS), ("workers", 0),
                         ("limit", MAX_IMAGES), ("batch_size", 1)):
        BoxAPSpec(synthetic=4, **{field: value})
        EvaluationRequest(tmp_path, tmp_path, **{field: value})
    for field, value in (("batch_size", MAX_BATCH + 1), ("workers", MAX_WORKERS + 1),
                         ("limit", MAX_IMAGES + 1), ("batch_size", 0), ("workers", -1)):
        with pytest.raises(ValidationError):
            BoxAPSpec(synthetic=4, **{field: value})
        with pytest.raises(InputError):
            EvaluationRequest(tmp_path, tmp_path, **{field: value})


def test_an_artifact_is_evaluated_at_its_own_device_and_precision(tmp_path):
    from rtmbench.measure.artifact import ArtifactSpec

    onnx_cpu = ArtifactSpec("onnxruntime", "cpu", "fp32")
    EvaluationRequest(tmp_path, tmp_path, artifact=onnx_cpu)  # auto: the artifact's device
    EvaluationRequest(tmp_path, tmp_path, device="cpu", artifact=onnx_cpu)
    for device, precision in (("cuda", "fp32"), ("cuda:1", "fp32"), ("auto", "fp16")):
        with pytest.raises(InputError, match="pass those") as info:
            EvaluationRequest(tmp_path, tmp_path, device=device, precision=precision,
                              artifact=onnx_cpu)
        assert setting_of(info.value) == "artifact"


def test_a_shard_is_parsed_or_refused_naming_it():
    assert parse_shard("1/4") == (1, 4)
    for text in ("4/4", "-1/2", "1", "a/b", "1/2/3"):
        with pytest.raises(InputError, match=re.escape(repr(text))) as info:
            parse_shard(text)
        assert setting_of(info.value) == "shard" and "--" not in str(info.value)


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(evaluation.os, "sched_getaffinity", lambda pid: set(range(16)),
                        raising=False)


def test_resolving_decides_the_device_and_its_defaults_once(tmp_path, cpu_only):
    from rtmbench.measure.artifact import ArtifactSpec

    asked = EvaluationRequest(tmp_path, tmp_path / "out")
    assert not asked.resolved
    request = evaluation.resolve_request(asked)
    assert (request.device, request.batch_size, request.workers) == ("cpu", 8, 2)
    assert request.resolved and evaluation.resolve_request(request) is request  # kept
    kept = evaluation.resolve_request(EvaluationRequest(tmp_path, tmp_path, device="cpu",
                                                        batch_size=3, workers=0))
    assert (kept.device, kept.batch_size, kept.workers) == ("cpu", 3, 0)  # given: kept
    artifact = evaluation.resolve_request(EvaluationRequest(
        tmp_path, tmp_path, artifact=ArtifactSpec("onnxruntime", "cpu", "fp32")))
    assert (artifact.device, artifact.batch_size) == ("cpu", 1)  # the batch latency times


def test_resolving_refuses_what_the_device_cannot_do(tmp_path, cpu_only):
    with pytest.raises(InputError, match="precision fp16 needs device cuda") as info:
        evaluation.resolve_request(EvaluationRequest(tmp_path, tmp_path, precision="fp16"))
    assert setting_of(info.value) == "precision"  # auto chose the CPU
    with pytest.raises(DeviceMissing, match="use device auto or cpu") as missing:
        evaluation.resolve_request(EvaluationRequest(tmp_path, tmp_path, device="cuda"))
    assert setting_of(missing.value) == "device"
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(InputError, match="is a file") as info:
        evaluation.resolve_request(EvaluationRequest(tmp_path, tmp_path / "a-file"))
    assert setting_of(info.value) == "out_dir"


def test_the_command_puts_the_flag_in_front_of_a_settings_error(tmp_path):
    with pytest.raises(InputError) as info, flags_named():
        EvaluationRequest(tmp_path, tmp_path, batch_size=0)
    assert str(info.value).startswith("--batch-size: the batch size must be 1 to")
    with pytest.raises(DeviceMissing) as missing, flags_named():
        raise eval_plan.about("device", DeviceMissing("no GPU"))
    assert str(missing.value) == "--device: no GPU" and missing.value.exit_code == 3
    with pytest.raises(InputError) as plain, flags_named():
        raise InputError("about nothing in particular")
    assert str(plain.value) == "about nothing in particular"


def test_the_cli_names_the_flag(tmp_path, capsys):
    from rtmbench.cli import main
    from rtmbench.data import make_synthetic_coco

    coco = make_synthetic_coco(tmp_path / "coco", 1)
    for flags, words in ((["--batch-size", "0"], "--batch-size: the batch size must be"),
                         (["--shard", "2/2"], "--shard: a shard is i/n"),
                         (["--workers", "99"], "--workers: the data-loader workers must be")):
        assert main(["evaluate", "tiny", "--coco", str(coco), "--random-weights", *flags]) == 2
        err = capsys.readouterr().err
        assert f"rtmbench evaluate: error: {words}" in err, err


def _raised_texts(module) -> list[str]:
    """The literal text of every exception a module raises (f-strings' literal parts)."""
    texts = []
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.Raise) and node.exc is not None:
            for part in ast.walk(node.exc):
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    texts.append(part.value)
    return texts


@pytest.mark.parametrize("module", [evaluation, eval_plan, scoring],
                         ids=lambda m: m.__name__)
def test_the_measuring_code_names_settings_not_command_line_flags(module):
    """A suite runs these as well as the command line: a message names the setting ("batch
    size", "shard i/n"), and `rtmbench evaluate` adds its flag."""
    texts = _raised_texts(module)
    assert texts  # the walk finds the messages
    flags = [t for t in texts if re.search(r"--[a-z]", t)]
    assert not flags, flags


@pytest.mark.parametrize("module", [evaluation, eval_plan, scoring],
                         ids=lambda m: m.__name__)
def test_evaluation_functions_take_at_most_six_parameters(module):
    too_many = []
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            a = node.args
            names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)
                     if x.arg not in ("self", "cls")]
            names += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
            if len(names) > 6:
                too_many.append(f"{node.name}({', '.join(names)})")
    assert not too_many, too_many
