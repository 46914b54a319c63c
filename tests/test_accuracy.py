"""Artifact accuracy for every latency unit (MLPerf's TEST01 idea): the timed artifact's outputs
against the FP32 PyTorch model, agreement AP, and the judge failing a unit below its threshold."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

from rtmbench.cli import main
from rtmbench.judge.judgement import Mark, judge_unit
from rtmbench.judge.merge import machine_of
from rtmbench.judge.report import LEGEND
from rtmbench.measure.accuracy import AccuracyCheck, artifact_accuracy, load_images
from rtmbench.models.postprocess import TestSettings
from rtmbench.records import Record, read_run
from rtmbench.run.build import build
from rtmbench.spec.suite import DEFAULT_TOLERANCES
from rtmbench.spec.zoo import load_zoo
from tests.records_factory import PROV, records, write_run

pytest.importorskip("onnxruntime", reason="the onnx extra (onnxruntime) is not installed")


class _Tolerances:
    def tolerance(self, metric):
        return DEFAULT_TOLERANCES[metric]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from rtmbench.data import make_synthetic_coco

    entry = load_zoo().get("tiny")
    root = make_synthetic_coco(tmp_path_factory.mktemp("coco"), 3, seed=0)
    return load_images(entry, root, 3, (96, 64), described="3 generated", real_coco=True)


def _tiny_and_its_engine():
    """Tiny with well-conditioned weights, its test settings, and an "engine" that is the
    model itself (outputs in the exported graph's order)."""
    entry = load_zoo().get("tiny")
    model = build(entry, "well-conditioned").model
    settings = TestSettings.from_test_cfg(entry.test_cfg.model_dump())

    def same(x):
        with torch.inference_mode():
            cls, box = model(x)
        return [*cls, *box]

    return model, settings, same


def test_identical_outputs_agree_fully_and_batches_are_padded(images):
    model, settings, same = _tiny_and_its_engine()

    # 3 images in batches of 2: 2 + 1 (+1 padding)
    metrics = artifact_accuracy(same, model, AccuracyCheck(images, settings), batch=2)
    assert metrics["agreement_ap"] > 0.999 and metrics["accuracy_images"] == 3  # ties: ~1e-4
    assert metrics["output_max_abs_error"] == 0.0
    assert metrics["box_ap_delta"] == pytest.approx(0.0)  # real_coco: scored on annotations too

    def noisy(x):  # a wrong engine: class logits off by noise of their own spread
        out = same(x)
        return [o + o.std() * torch.randn_like(o) if i < 3 else o for i, o in enumerate(out)]

    wrong = artifact_accuracy(noisy, model, AccuracyCheck(images, settings), batch=1)
    assert wrong["agreement_ap"] < 0.5 and wrong["output_max_rel_error"] > 0.1


def test_an_accuracy_check_takes_the_zoos_test_settings_unless_it_has_its_own(images):
    entry = load_zoo().get("tiny")
    zoo_settings = TestSettings.from_test_cfg(entry.test_cfg.model_dump())
    assert AccuracyCheck(images).for_model(entry).settings == zoo_settings
    own = AccuracyCheck(images, TestSettings(score_thr=0.5))
    assert own.for_model(entry) is own
    with pytest.raises(ValueError, match="settings is unset"):
        artifact_accuracy(lambda x: [], torch.nn.Identity(), AccuracyCheck(images))


def test_non_finite_artifact_outputs_are_a_failure_not_an_error_of_zero(images):
    """max() over NaN errors gives 0.0 and NaN scores drop out of post-processing: a NaN from
    the timed artifact must fail the unit, never read as a perfect match."""
    from rtmbench.errors import NonFiniteOutputs

    model, settings, same = _tiny_and_its_engine()

    def nan_engine(x):
        out = same(x)
        out[4] = out[4].clone()
        out[4][0, 0, 0, 0] = float("nan")
        return out

    with pytest.raises(NonFiniteOutputs, match="the timed artifact gave NaN") as err:
        artifact_accuracy(nan_engine, model, AccuracyCheck(images, settings), batch=2)
    assert err.value.outcome == "failed"


def test_a_reference_that_detects_nothing_fails_with_that_cause(images):
    from rtmbench.errors import InputError

    model, settings, same = _tiny_and_its_engine()
    with torch.no_grad():
        for conv in model.bbox_head.rtm_cls:
            conv.bias.fill_(-100.0)
    with pytest.raises(InputError, match="reference detected nothing on the 3 accuracy images"):
        artifact_accuracy(same, model, AccuracyCheck(images, settings), batch=2)


def _latency_record(**metrics) -> Record:
    base = {"median_ms": 10.0, "ratio_to_reference": 1.5}
    return Record(run="r", model="rtmdet-tiny", check="latency", backend="tensorrt",
                  device="cuda", precision="fp16", input_size=(640, 640), batch=1,
                  status="measured", metrics={**base, **metrics}, provenance=PROV)


def test_the_judge_fails_a_unit_below_its_stored_threshold():
    marks = {j.metric: j.mark for j in judge_unit(
        _latency_record(agreement_ap=0.42, min_agreement_ap=0.9, accuracy_images=8), None,
        _Tolerances())}
    assert marks["agreement"] is Mark.FAILED and Mark.FAILED.red
    ok = {j.metric: j.mark for j in judge_unit(
        _latency_record(agreement_ap=0.95, min_agreement_ap=0.9), None, _Tolerances())}
    assert ok["agreement"] is Mark.OK
    bare = {j.metric: j.mark for j in judge_unit(_latency_record(agreement_ap=0.2), None,
                                                  _Tolerances())}
    assert bare["agreement"] is Mark.NOT_COMPARABLE  # no threshold stored: not judged
    assert "agreement" not in {j.metric for j in judge_unit(_latency_record(), None,
                                                            _Tolerances())}


SUITE = """\
name: accuracy-test
models: [tiny]
checks:
  latency:
    targets:
      - {backends: [torch, onnxruntime], devices: [cpu], precisions: [fp32]}
    min_iterations: 2
    min_duration_s: 0.0
    warmup_s: 0.0
    input_size: [96, 64]
    weights: well-conditioned
    accuracy: {images: 2, min_agreement_ap: 0.9}
results_dir: %s
"""


def test_a_wrong_onnx_artifact_is_a_failed_unit_in_gate_and_report(tmp_path, monkeypatch, capsys):
    """The ONNX Runtime artifact is exported with the classifier's weights perturbed: it is
    timed like any other, then judged failed; the gate exits 1 and the report shows ⛔."""
    import rtmbench.measure.backends.onnxruntime_backend as ort_backend
    from tests.wrong_artifacts import negate_onnx_classifier

    negate_onnx_classifier(monkeypatch, ort_backend)
    suite = tmp_path / "suite.yaml"
    suite.write_text(textwrap.dedent(SUITE % (tmp_path / "results")))
    assert main(["run", str(suite), "--run-id", "wrong", "--no-progress"]) == 0
    by_backend = {r.backend: r for r in read_run(tmp_path / "results" / "wrong.jsonl").records}
    torch_rec, ort_rec = by_backend["torch"], by_backend["onnxruntime"]
    assert torch_rec.metrics["agreement_ap"] >= 0.9 > ort_rec.metrics["agreement_ap"]
    assert ort_rec.metrics["min_agreement_ap"] == 0.9 and ort_rec.status == "measured"
    assert ort_rec.verdict["agreement"]["mark"] == "failed"
    assert torch_rec.provenance["checkpoint"]["weights"] == "well-conditioned"
    capsys.readouterr()
    code = main(["gate", str(tmp_path / "results" / "wrong.jsonl"), "--suite", str(suite)])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "agreement AP onnxruntime/cpu/fp32" in out.split("regression(s):")[1]
    assert "a fast wrong engine is a failure" in out
    # Beside it, a 640x640 run from the same machine (as the committed CPU run is on the
    # machine that made it): the report reads only this test's results directory (--only),
    # so what it shows does not depend on the committed results/ or on which CPU this is.
    write_run(tmp_path / "results" / "published.jsonl",
              records("published", hardware=torch_rec.provenance["hardware"]))
    assert main(["report", "published", "wrong", "--only", "--results-dir",
                 str(tmp_path / "results"), "--out-dir", str(tmp_path / "reports"),
                 "--no-readme"]) == 0
    table = (tmp_path / "reports" / "results.md").read_text()
    assert "⛔" in table and "· agr " in table and "From runs `published`, `wrong`" in table
    # its own table: a 96x64 measurement never shares a cell with a 640x640 one
    tables = table.split(LEGEND)[0]  # the seed table, then one table per machine and size
    sections = {s.split("\n")[0]: s for s in tables.split("### ")[1:]}
    machine = machine_of(torch_rec).label
    small = sections[f"Latency on {machine}, input 96×64, batch 1"]
    large = sections[f"Latency on {machine}, input 640×640, batch 1"]
    assert "⛔" in small and "`wrong`" in small and "`published`" not in small
    assert "| rtmdet-tiny | 80.00 ⚪ |" in large and "`wrong`" not in large
    json.dumps(ort_rec.model_dump(mode="json"))


@pytest.mark.slow
def test_the_compiled_artifact_is_checked_like_every_other(images):
    """torch-compile's timed graph gives its outputs for the accuracy images (runner.infer):
    agreement with PyTorch FP32 is measured on it, not on a fresh eager model."""
    from rtmbench.measure.backends import get_backend
    from rtmbench.measure.latency import measure_latency
    from rtmbench.measure.requests import LatencyRequest, Protocol

    if reason := get_backend("torch-compile").unavailable("cpu", "fp32"):
        pytest.skip(reason)
    entry = load_zoo().get("tiny")
    model = build(entry, "well-conditioned").model
    request = LatencyRequest("torch-compile", "cpu", "fp32", input_hw=(64, 96),
                             protocol=Protocol(warmup_s=0.0, min_iterations=2,
                                               min_duration_s=0.0), reference=False)
    result = measure_latency(entry, request, model, accuracy=AccuracyCheck(images))
    assert result.status == "measured", result.reason
    assert result.details["check"]["ok"] and result.details["compile_s"] > 0
    accuracy = result.accuracy
    assert accuracy["accuracy_images"] == 3 and accuracy["agreement_ap"] > 0.99, accuracy
    assert 0 < accuracy["output_max_abs_error"] < 1e-2  # compiled arithmetic, not the eager one
