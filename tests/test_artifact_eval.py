"""Box AP of the timed artifacts (``evaluate --backend``, suites' ``box_ap.backends``): every
backend's artifact through ``Runner.infer`` and one batched post-processing, its identity in
``run.json``, the TensorRT engine latency builds (API fakes), the AP-delta judgement, gate
and report.

The data: generated images whose annotations are the PyTorch FP32 model's own best detections
(seeded well-conditioned weights, which detect nothing real): on them the model scores AP ~1,
so an artifact that computes something else shows as a drop instead of hiding in AP ~0."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from rtmbench.cli import main
from rtmbench.errors import InputError
from rtmbench.measure.artifact import Artifact, ArtifactSpec, pad_batch
from rtmbench.measure.backends import Runner
from rtmbench.measure.eval_plan import EvaluationRequest
from rtmbench.measure.evaluation import evaluate
from rtmbench.measure.timing import Timer
from rtmbench.records import read_run
from rtmbench.run.build import build
from rtmbench.spec.zoo import load_zoo

pytest.importorskip("onnxruntime", reason="the onnx extra (onnxruntime) is not installed")
REPO = Path(__file__).resolve().parents[1]
SIDE, NUM_IMAGES, TOP_K = 128, 5, 20


def small_zoo(directory: Path) -> Path:
    """The shipped zoo at 128 x 128: the same pipeline, 25x less work per image than 640."""
    text = (REPO / "zoo" / "rtmdet.yaml").read_text()
    assert "input_size: [640, 640]" in text
    path = directory / "zoo.yaml"
    path.write_text(text.replace("input_size: [640, 640]", f"input_size: [{SIDE}, {SIDE}]"))
    return path


def relabel_with_detections(coco: Path, detections: Path, top_k: int = TOP_K) -> None:
    """Replace the set's annotations by the best ``top_k`` detections per image (all 80
    categories kept, so labels map as before)."""
    path = coco / "annotations" / "instances_val2017.json"
    data = json.loads(path.read_text())
    by_image: dict[int, list[dict]] = {}
    for d in json.loads(detections.read_text()):
        by_image.setdefault(d["image_id"], []).append(d)
    annotations = []
    for image_id, dets in sorted(by_image.items()):
        for d in sorted(dets, key=lambda d: -d["score"])[:top_k]:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": d["category_id"], "bbox": d["bbox"],
                                "area": d["bbox"][2] * d["bbox"][3], "iscrowd": 0})
    path.write_text(json.dumps({**data, "annotations": annotations}))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """(zoo path, COCO root labelled by the model, the model's own box AP on it)."""
    from rtmbench.data import make_synthetic_coco

    base = tmp_path_factory.mktemp("artifact-eval")
    zoo = small_zoo(base)
    entry = load_zoo(zoo).get("tiny")
    coco = make_synthetic_coco(base / "coco", NUM_IMAGES, seed=3)
    model = build(entry, "well-conditioned").model
    first = evaluate(entry, model, EvaluationRequest(coco, base / "labels", batch_size=4,
                                                     workers=0, progress=False))
    relabel_with_detections(coco, first.detections_path)
    reference = evaluate(entry, model, EvaluationRequest(coco, base / "reference", batch_size=4,
                                                         workers=0, progress=False))
    assert reference.metrics["coco"]["AP"] > 0.9, reference.metrics  # the model finds its own
    return zoo, coco, reference.metrics["coco"]["AP"]


def _evaluate_cli(data, tmp_path, capsys, *flags: str) -> dict:
    zoo, coco, _ = data
    code = main(["--zoo", str(zoo), "evaluate", "tiny", "--coco", str(coco), "--weights",
                 "well-conditioned", "--out", str(tmp_path / "out"), "--workers", "0",
                 "--no-progress", "--json", *flags])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    result["stderr"] = captured.err
    return result


@pytest.fixture(scope="module")
def torch_artifact_ap(data, tmp_path_factory):
    """``evaluate --backend torch`` (the runner latency times), batch 2: 2 + 2 + 1 padded."""
    zoo, coco, _ = data
    entry = load_zoo(zoo).get("tiny")
    result = evaluate(entry, build(entry, "well-conditioned").model, EvaluationRequest(
        coco, tmp_path_factory.mktemp("torch-artifact"), batch_size=2, workers=0,
        progress=False, artifact=ArtifactSpec("torch")))
    return result.metrics["coco"]["AP"]


def test_the_torch_artifact_scores_what_the_model_scores(data, torch_artifact_ap):
    assert torch_artifact_ap == pytest.approx(data[2], abs=1e-3)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_cpu_artifacts_score_the_torch_artifacts_ap(backend, data, torch_artifact_ap, tmp_path,
                                                    capsys):
    if backend == "openvino":
        pytest.importorskip("openvino", reason="the openvino extra is not installed")
    auto = ["--device", "auto"] if backend == "openvino" else []  # a CPU-only backend: cpu
    result = _evaluate_cli(data, tmp_path, capsys, "--backend", backend, "--batch-size", "2",
                           *auto)
    assert abs(result["metrics"]["coco"]["AP"] - torch_artifact_ap) <= 1e-3, result["metrics"]
    artifact = result["artifact"]
    assert (artifact["backend"], artifact["device"], artifact["precision"]) == (
        backend, "cpu", "fp32")
    assert artifact["batch"] == 2 and artifact["input_hw"] == [SIDE, SIDE]
    assert len(artifact["onnx_sha256"]) == 64 and artifact["onnx_precision"] == "fp32"
    assert (tmp_path / "out" / "artifact" / "model-fp32.onnx").is_file()  # kept, inspectable
    assert result["run"]["artifact"] == artifact and result["scorer"] == "faster"
    if backend == "openvino":  # FP32 asked for: the CPU plugin would pick bf16 where it can
        assert artifact["inference_precision_hint"] == "f32"
    assert "the onnxruntime/cpu/fp32 artifact" in result["stderr"] or backend != "onnxruntime"


@pytest.mark.slow  # compiling tiny takes ~15-30 s on two cores
def test_the_compiled_artifact_scores_the_torch_artifacts_ap(data, torch_artifact_ap, tmp_path,
                                                             capsys):
    from rtmbench.measure.backends import get_backend

    if reason := get_backend("torch-compile").unavailable("cpu", "fp32"):
        pytest.skip(reason)
    result = _evaluate_cli(data, tmp_path, capsys, "--backend", "torch-compile",
                           "--batch-size", "2")
    assert abs(result["metrics"]["coco"]["AP"] - torch_artifact_ap) <= 1e-3
    assert result["artifact"]["compile_mode"] == "default"
    assert result["artifact"]["options"] == {"mode": "auto"}


def test_a_short_batch_is_padded_to_the_artifacts_batch_and_the_padding_dropped():
    seen = []

    def infer(x):
        seen.append(tuple(x.shape))
        n = x.shape[0]
        return [torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 2, 4, 4)
                for _ in range(6)]

    artifact = Artifact(ArtifactSpec("onnxruntime"), Runner(lambda: None, Timer(), infer=infer),
                        batch=4, input_hw=(8, 8), identity={})
    x = torch.stack([torch.full((3, 8, 8), float(i)) for i in range(3)])
    cls, box = artifact.forward(x)
    assert seen == [(4, 3, 8, 8)] and len(cls) == len(box) == 3
    assert all(t.shape[0] == 3 for t in (*cls, *box))  # the padding's outputs are gone
    assert torch.equal(pad_batch(x, 4)[3], x[2])  # padded with copies of the last image
    with pytest.raises(InputError, match="takes 4 x 3 x 8 x 8"):
        artifact.forward(torch.zeros(5, 3, 8, 8))


def test_a_resume_never_mixes_two_artifacts(data, tmp_path):
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    zoo, coco, _ = data
    entry = load_zoo(zoo).get("tiny")
    model = build(entry, "well-conditioned").model

    def run(backend):
        return evaluate(entry, model, EvaluationRequest(
            coco, tmp_path, batch_size=4, workers=0, progress=False, limit=2,
            artifact=ArtifactSpec(backend)))

    first = run("onnxruntime")
    assert first.newly_inferred == 2 and first.manifest["artifact"]["backend"] == "onnxruntime"
    assert run("onnxruntime").newly_inferred == 0  # the same artifact: resumed, nothing to do
    with pytest.raises(InputError, match=r"artifact differ.*give another output directory"):
        run("openvino")
    plain = dict(json.loads((tmp_path / "run.json").read_text()))
    assert plain["artifact"]["onnxruntime"]  # the runtime's version is part of the identity
    with pytest.raises(InputError, match="artifact"):  # nor the PyTorch model's detections
        evaluate(entry, model, EvaluationRequest(coco, tmp_path, batch_size=4, workers=0,
                                                 progress=False, limit=2))


def test_an_artifact_device_or_precision_other_than_the_evaluations_is_refused(data, tmp_path):
    zoo, coco, _ = data
    entry = load_zoo(zoo).get("tiny")
    with pytest.raises(InputError, match="pass those"):
        evaluate(entry, build(entry, "random-init").model, EvaluationRequest(
            coco, tmp_path, progress=False, device="cpu",
            artifact=ArtifactSpec("onnxruntime", "cuda", "fp32")))
    with pytest.raises(InputError, match="unknown backend 'onnx'"):
        ArtifactSpec("onnx")


def test_an_artifact_that_cannot_run_here_is_not_run_before_any_download(data, tmp_path,
                                                                          capsys, monkeypatch):
    monkeypatch.setenv("RTMBENCH_MIRROR", "http://127.0.0.1:9/never")
    monkeypatch.setenv("RTMBENCH_CACHE", str(tmp_path / "cache"))
    zoo, coco, _ = data
    code = main(["--zoo", str(zoo), "evaluate", "tiny", "--coco", str(coco), "--backend",
                 "openvino", "--device", "cuda", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 3 and "OpenVINO on the CPU only" in err and "127.0.0.1" not in err


def test_the_old_backend_flag_still_names_the_scorer_with_a_warning(data, tmp_path, capsys):
    result = _evaluate_cli(data, tmp_path, capsys, "--backend", "pycocotools", "--limit", "2")
    assert result["scorer"] == result["backend"] == "pycocotools"
    assert result["artifact"] is None and "artifact" not in result["run"]  # the PyTorch model
    assert "--backend pycocotools is deprecated" in result["stderr"]
    assert "use --scorer pycocotools" in result["stderr"]
    zoo, coco, _ = data
    code = main(["--zoo", str(zoo), "evaluate", "tiny", "--coco", str(coco), "--weights",
                 "well-conditioned", "--backend", "pycocotools", "--scorer", "faster"])
    assert code == 2 and "disagree" in capsys.readouterr().err
    code = main(["merge", str(tmp_path / "out"), "--out", str(tmp_path / "merged"), "--coco",
                 str(coco), "--backend", "pycocotools", "--json"])
    captured = capsys.readouterr()
    assert code == 0 and json.loads(captured.out)["scorer"] == "pycocotools"
    assert "merge: warning: --backend pycocotools is deprecated" in captured.err


# ------------------------------------------------------------------------------ TensorRT
@pytest.fixture
def trt_fake(monkeypatch, tmp_path):
    """TensorRT 10 (weakly typed FP16 from the FP32 ONNX) as its API-surface fake, CUDA
    present to the backend, host buffers, the engine cache under tmp_path."""
    import importlib

    import rtmbench.measure.backends.tensorrt_backend as trt_backend
    from tests.fakes.devices import HostBuffers

    module = importlib.import_module("tests.fakes.tensorrt_10")
    module.FAKE.calls.clear()
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    monkeypatch.setattr(trt_backend, "cuda_unavailable_reason", lambda: None)
    monkeypatch.setenv("RTMBENCH_CACHE", str(tmp_path / "cache"))
    return module, HostBuffers


def test_tensorrt_evaluation_uses_the_engine_latency_built(data, trt_fake, tmp_path):
    """The same cache key (ONNX sha256, TensorRT version, GPU, precision, typing): latency
    builds the engine, evaluate loads that very engine and builds nothing. The fake "runs" the
    engine in ONNX Runtime: this says nothing of a real TensorRT engine's AP."""
    from rtmbench.measure.latency import measure_latency
    from rtmbench.measure.requests import BackendOptions, LatencyRequest, Protocol

    module, host_buffers = trt_fake
    zoo, coco, reference_ap = data
    entry = load_zoo(zoo).get("tiny")
    model = build(entry, "well-conditioned").model
    request = LatencyRequest("tensorrt", "cuda", "fp16", input_hw=(SIDE, SIDE), batch=2,
                             protocol=Protocol(warmup_s=0.0, min_iterations=2,
                                               min_duration_s=0.0), reference=False,
                             options=BackendOptions(extra={"buffers": host_buffers()}))
    timed = measure_latency(entry, request, model)
    assert timed.status == "measured" and timed.details["engine"].startswith("built")
    builds = [c for c in module.FAKE.calls if c[0] == "build"]
    result = evaluate(entry, model, EvaluationRequest(
        coco, tmp_path / "eval", batch_size=2, workers=0, device="cuda", precision="fp16",
        progress=False, artifact=ArtifactSpec("tensorrt", "cuda", "fp16",
                                              {"buffers": host_buffers()})))
    assert [c for c in module.FAKE.calls if c[0] == "build"] == builds  # no second build
    artifact = result.manifest["artifact"]
    assert artifact["engine_sha256"] == timed.details["engine_sha256"]
    assert (artifact["typing"], artifact["builder_flags"]) == ("weak", ["FP16"])
    assert artifact["tensorrt"] == module.__version__ and result.manifest["device"] == "cuda"
    assert artifact["options"] == {"buffers": "<HostBuffers>"}
    assert abs(result.metrics["coco"]["AP"] - reference_ap) <= 0.02  # FP16 weights, FP32 math


def test_another_engine_for_the_same_settings_is_another_artifact(data, trt_fake, tmp_path):
    """An engine rebuilt for the same cache key (the cache emptied, other tactics chosen) is
    not the one the predictions came from: its sha256 differs and the resume is refused."""
    module, host_buffers = trt_fake
    zoo, coco, _ = data
    entry = load_zoo(zoo).get("tiny")
    model = build(entry, "well-conditioned").model

    def run():
        return evaluate(entry, model, EvaluationRequest(
            coco, tmp_path / "eval", batch_size=2, workers=0, device="cuda", precision="fp16",
            progress=False, limit=2, artifact=ArtifactSpec("tensorrt", "cuda", "fp16",
                                                           {"buffers": host_buffers()})))

    assert run().newly_inferred == 2 and run().newly_inferred == 0
    (engine,) = (tmp_path / "cache" / "tensorrt").glob("*.engine")
    magic, rest = engine.read_bytes().split(b"{", 1)  # the fake's header is JSON: a rebuild
    engine.write_bytes(magic + b'{"tactics": "other", ' + rest)  # that chose other kernels
    with pytest.raises(InputError, match=r"artifact differ"):
        run()


# ------------------------------------------------------------------------------ suites
SUITE = """\
name: artifacts-test
models: [tiny]
checks:
  latency:
    targets:
      - {backends: [torch, onnxruntime, openvino], devices: [cpu], precisions: [fp32]}
      - {backends: [tensorrt], devices: [cuda], precisions: [fp16]}
    min_iterations: 2
    min_duration_s: 0.0
    warmup_s: 0.0
    weights: well-conditioned
  box_ap:
    dataset: %s
    weights: well-conditioned
    batch_size: 4
    workers: 0
    backends:
      - {backends: [torch, onnxruntime, openvino], devices: [cpu], precisions: [fp32]}
      - {backends: [tensorrt], devices: [cuda], precisions: [fp16]}
tolerances:
  box_ap_delta: {absolute: 0.3}
results_dir: %s
"""


@pytest.mark.slow  # a whole suite: 4 latency units, the model and 3 artifacts evaluated
def test_a_wrong_artifact_is_a_failed_unit_a_red_gate_and_a_red_cell(data, tmp_path,
                                                                     monkeypatch, capsys):
    """The ONNX export gets a negated classifier: timed like any other, evaluated, and its AP
    drop against PyTorch FP32 on the same images fails its box AP unit; the other artifacts
    keep the model's AP; TensorRT is "not run" here, with the reason, in the same table."""
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    import rtmbench.measure.backends.onnxruntime_backend as ort_backend
    from tests.wrong_artifacts import negate_onnx_classifier

    negate_onnx_classifier(monkeypatch, ort_backend)
    zoo, coco, reference_ap = data
    suite = tmp_path / "suite.yaml"
    suite.write_text(textwrap.dedent(SUITE % (coco, tmp_path / "results")))
    assert main(["--zoo", str(zoo), "run", str(suite), "--run-id", "art",
                 "--no-progress"]) == 0
    run_file = tmp_path / "results" / "art.jsonl"
    boxes = {r.backend: r for r in read_run(run_file).records
             if r.check == "box_ap" and r.input_size is not None}
    assert set(boxes) == {"torch", "onnxruntime", "openvino", "tensorrt"}
    for backend in ("torch", "openvino"):
        rec = boxes[backend]
        assert rec.status == "measured" and abs(rec.metrics["box_ap_delta"]) <= 1e-3, rec
        assert rec.metrics["reference_box_ap"] == pytest.approx(reference_ap)
        assert rec.verdict["box_ap_delta"]["mark"] == "ok"
        assert rec.input_size == (SIDE, SIDE) and rec.batch == 1
        assert rec.provenance["artifact"]["backend"] == backend
    wrong = boxes["onnxruntime"]
    assert wrong.metrics["box_ap_delta"] < -0.3 and wrong.verdict["box_ap_delta"]["mark"] == \
        "failed"
    assert boxes["tensorrt"].status == "not run" and boxes["tensorrt"].reason
    capsys.readouterr()
    code = main(["--zoo", str(zoo), "gate", str(run_file), "--suite", str(suite)])
    out = capsys.readouterr().out
    assert code == 1, out
    regressions = out.split("regression(s):")[1]
    assert "box AP onnxruntime/cpu/fp32/well-conditioned" in regressions
    assert "loses" in out and "box AP torch/cpu/fp32" not in regressions
    assert main(["report", str(run_file), "--out-dir", str(tmp_path / "reports"),
                 "--no-readme", "--only"]) == 0
    md = (tmp_path / "reports" / "results.md").read_text()
    section = md.split("### Box AP of each timed artifact on ")[1].split("\n#")[0]
    rows = {line.split(" | ")[1]: line for line in section.splitlines()
            if line.startswith("| rtmdet-tiny")}
    assert set(rows) == {"torch/cpu/fp32", "onnxruntime/cpu/fp32", "openvino/cpu/fp32",
                         "tensorrt/cuda/fp16"}
    assert "⛔" in rows["onnxruntime/cpu/fp32"] and "✅" in rows["openvino/cpu/fp32"]
    assert "*not run [" in rows["tensorrt/cuda/fp16"]
    assert rows["torch/cpu/fp32"].rstrip(" |").split(" | ")[-1][0].isdigit()  # its latency
    assert "ΔAP: a timed artifact's box AP minus" in md


# ------------------------------------------------------------------------------ judge, report
def _artifact_record(backend="onnxruntime", device="cpu", precision="fp32", *, delta=-0.001,
                     status="measured", gpu=None, run="r", reason=None):
    from rtmbench.records import Record
    from tests.records_factory import PROV

    metrics = ({"num_images": 100, "coco": {"AP": 0.41 + delta}, "reference_box_ap": 0.41,
                "box_ap_delta": delta} if status == "measured" else {})
    return Record(run=run, model="rtmdet-tiny", check="box_ap", backend=backend, device=device,
                  precision=precision, variant="mmdet", input_size=(640, 640), batch=1,
                  status=status, reason=reason, metrics=metrics,
                  provenance={**PROV, "hardware": {**PROV["hardware"], "gpu": gpu}})


class _Tolerances:
    def __init__(self, **override):
        from rtmbench.spec.suite import DEFAULT_TOLERANCES, Tolerance

        self.values = {**DEFAULT_TOLERANCES, **{k: Tolerance(**v) for k, v in override.items()}}

    def tolerance(self, metric):
        return self.values[metric]


def test_the_ap_drop_is_judged_with_the_suites_tolerance():
    from rtmbench.judge.judgement import Mark, judge_box_ap_delta, judge_unit

    small = judge_box_ap_delta(_artifact_record(delta=-0.002), _Tolerances())
    assert small.mark is Mark.OK and "ΔAP -0.20" in small.text and "±0.3" in small.text
    big = judge_box_ap_delta(_artifact_record(delta=-0.004), _Tolerances())
    assert big.mark is Mark.FAILED and big.red and "loses 0.40 AP" in big.text
    assert judge_box_ap_delta(_artifact_record(delta=-0.004),
                              _Tolerances(box_ap_delta={"absolute": 0.5})).mark is Mark.OK
    relative = _Tolerances(box_ap_delta={"relative": 0.005})  # 0.5% of 41.0 AP: 0.205
    assert judge_box_ap_delta(_artifact_record(delta=-0.0025), relative).mark is Mark.FAILED
    assert judge_box_ap_delta(_artifact_record(delta=+0.01), _Tolerances()).mark is Mark.OK
    marks = {j.metric: j.mark for j in judge_unit(_artifact_record(delta=-0.01), None,
                                                   _Tolerances())}
    assert marks == {"box_ap": Mark.NOT_COMPARABLE, "box_ap_delta": Mark.FAILED}
    from tests.test_accuracy import _latency_record  # a latency record's own box_ap_delta:

    latency = _latency_record(box_ap_delta=-0.5, artifact_box_ap=0.1, reference_box_ap=0.6)
    assert judge_box_ap_delta(latency, _Tolerances()) is None  # not this judgement's


def test_the_artifact_table_puts_each_machines_artifacts_beside_their_latency(tmp_path):
    """Per machine: a CPU machine's measured artifacts and its GPU artifacts not run (with the
    reason), a GPU machine's TensorRT engine; latency from the same machine and artifact only."""
    from rtmbench.judge.report import write_report
    from rtmbench.records import Record, Run
    from tests.records_factory import PROV

    def latency(backend, device, precision, median, gpu=None, input_size=(640, 640)):
        return Record(run="r", model="rtmdet-tiny", check="latency", backend=backend,
                      device=device, precision=precision, input_size=input_size, batch=1,
                      status="measured", metrics={"median_ms": median},
                      provenance={**PROV, "hardware": {**PROV["hardware"], "gpu": gpu}})

    gpu = "NVIDIA H100 80GB HBM3"
    records = [
        _artifact_record("openvino", delta=-0.0004),
        _artifact_record("onnxruntime", delta=-0.02),
        _artifact_record("tensorrt", "cuda", "fp16", status="not run",
                         reason="no CUDA GPU is visible"),
        latency("openvino", "cpu", "fp32", 51.5), latency("onnxruntime", "cpu", "fp32", 58.25),
        latency("openvino", "cpu", "fp32", 9.0, input_size=(320, 320)),  # another input size
    ]
    on_the_gpu_machine = [  # another run, on a GPU machine
        _artifact_record("tensorrt", "cuda", "fp16", delta=-0.0011, gpu=gpu, run="g"),
        latency("tensorrt", "cuda", "fp16", 0.91, gpu=gpu)]
    written = write_report([], out_dir=tmp_path, readme=None, suite="reproduce",
                           runs=[Run(tmp_path / "r.jsonl", "r", records, []),
                                 Run(tmp_path / "g.jsonl", "g", on_the_gpu_machine, [])])
    md = written[0].read_text()
    cpu = md.split("### Box AP of each timed artifact on Test CPU 9000 (2 cores)")[1]
    cpu = cpu.split("\n#")[0]
    on_gpu = md.split(f"### Box AP of each timed artifact on {gpu}")[1].split("\n#")[0]
    rows = {line.split(" | ")[1]: line for line in cpu.splitlines() if line.startswith("| rt")}
    assert "| 40.96 | -0.04 (ref 41.00) ✅ | 51.50 ⚪ |" in rows["openvino/cpu/fp32"]
    assert "-2.00 (ref 41.00) ⛔ [" in rows["onnxruntime/cpu/fp32"]
    assert "58.25" in rows["onnxruntime/cpu/fp32"]
    assert "*not run [" in rows["tensorrt/cuda/fp16"] and rows["tensorrt/cuda/fp16"].endswith(
        "| — |")  # no latency of that artifact on this machine
    assert "| tensorrt/cuda/fp16 | mmdet | 100 | 40.89 | -0.11 (ref 41.00) ✅ | 0.91" in on_gpu
    assert "openvino" not in on_gpu
    assert md.index(f"on {gpu}") < md.index("on Test CPU 9000 (2 cores)\n")  # GPUs first
    seed_row = next(line for line in md.splitlines() if line.startswith("| rtmdet-tiny | 4.8"))
    assert "(mmdet weights)" in md and "*not in the runs*" in seed_row  # not an artifact's AP
