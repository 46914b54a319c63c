from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rtmbench.cli import main
from rtmbench.data import make_synthetic_coco
from rtmbench.errors import InputError
from rtmbench.measure import evaluation
from rtmbench.measure.eval_plan import EvaluationRequest
from rtmbench.measure.evaluation import evaluate, merge_shards
from rtmbench.measure.scoring import CONVENTIONS, score
from rtmbench.run.build import network
from rtmbench.sources import CheckpointMismatchError, load_checkpoint
from rtmbench.spec.zoo import load_zoo
from tests.conftest import well_conditioned_state_dict

REPO = Path(__file__).resolve().parents[1]
NUM_IMAGES, BATCH = 5, 2


def small_zoo(directory: Path) -> Path:
    """The shipped zoo with a 320 x 320 input: the same pipeline, 4x less CPU per image."""
    text = (REPO / "zoo" / "rtmdet.yaml").read_text()
    assert "input_size: [640, 640]" in text
    path = directory / "zoo.yaml"
    path.write_text(text.replace("input_size: [640, 640]", "input_size: [320, 320]"))
    return path


def low_score_tiny() -> torch.nn.Module:
    """Random tiny whose classifier passes only ~0.01% of (prior, class) pairs over
    score_thr: real NMS work, small and fast."""
    model = network("tiny")
    model.load_state_dict(well_conditioned_state_dict(model))
    with torch.no_grad():
        for conv in model.bbox_head.rtm_cls:
            conv.weight.mul_(10)
            conv.bias.fill_(-8.7)
    return model.eval()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("eval")
    coco = make_synthetic_coco(base / "coco", NUM_IMAGES, seed=4)
    zoo = small_zoo(base)
    checkpoint = base / "tiny.pth"
    torch.save({"state_dict": low_score_tiny().state_dict(), "meta": {"note": "test"}},
               checkpoint)
    reference = evaluate(load_zoo(zoo).get("tiny"), low_score_tiny(), EvaluationRequest(
        coco, base / "reference", batch_size=BATCH, workers=2, progress=False))
    return coco, checkpoint, reference, base, zoo


def model_from(checkpoint: Path) -> torch.nn.Module:
    model = network("tiny")
    load_checkpoint(model, checkpoint)
    return model


def test_end_to_end_writes_valid_coco_results(setup):
    coco, _, ref, _, zoo = setup
    data = json.loads((coco / "annotations/instances_val2017.json").read_text())
    sizes = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    detections = json.loads(ref.detections_path.read_text())
    assert ref.num_images == NUM_IMAGES and ref.newly_inferred == NUM_IMAGES
    assert 10 < len(detections) <= 300 * NUM_IMAGES
    cat_ids = {c["id"] for c in data["categories"]}
    for d in detections:
        assert set(d) == {"image_id", "category_id", "bbox", "score"}
        assert d["category_id"] in cat_ids and 0.001 < d["score"] <= 1
        x, y, w, h = d["bbox"]
        width, height = sizes[d["image_id"]]
        assert 0 <= x and 0 <= y and w > 0 and h > 0
        assert x + w <= 320 / (320 / max(width, height)) + 1e-3  # clipped to the input
    assert set(ref.metrics) == set(CONVENTIONS)
    assert all(len(v) == 12 for v in ref.metrics.values())
    assert score(data, detections) == ref.metrics
    written = json.loads(ref.metrics_path.read_text())
    assert written["metrics"] == ref.metrics and written["num_images"] == NUM_IMAGES


def test_rerun_resumes_with_nothing_left_to_do(setup):
    coco, _, ref, base, zoo = setup
    again = evaluate(load_zoo(zoo).get("tiny"), low_score_tiny(), EvaluationRequest(
        coco, base / "reference", batch_size=BATCH, workers=0, progress=False))
    assert again.newly_inferred == 0 and again.metrics == ref.metrics


def test_interrupted_run_resumes_to_identical_metrics(setup, tmp_path, monkeypatch):
    coco, checkpoint, ref, _, zoo = setup
    real_append, calls = evaluation._append_lines, []

    def append_then_crash(path, rows):
        if len(calls) == 1:
            with open(path, "ab") as f:  # a crash in the middle of writing a line
                f.write(b'{"image_id": 99, "detec')
            raise KeyboardInterrupt
        calls.append(rows)
        real_append(path, rows)

    monkeypatch.setattr(evaluation, "_append_lines", append_then_crash)
    with pytest.raises(KeyboardInterrupt):
        evaluate(load_zoo(zoo).get("tiny"), model_from(checkpoint), EvaluationRequest(
            coco, tmp_path, batch_size=BATCH, workers=0, progress=False))
    monkeypatch.setattr(evaluation, "_append_lines", real_append)
    resumed = evaluate(load_zoo(zoo).get("tiny"), model_from(checkpoint), EvaluationRequest(
        coco, tmp_path, batch_size=BATCH, workers=0, progress=False))
    assert resumed.newly_inferred == NUM_IMAGES - BATCH
    assert resumed.metrics == ref.metrics
    assert resumed.detections_path.read_bytes() == ref.detections_path.read_bytes()


def _env(**extra: str) -> dict:
    return {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}", **extra}


def test_killed_cli_run_resumes_to_identical_metrics(setup, tmp_path):
    """Killed after its first batch is written; the process then hangs until the kill, so the
    kill lands part-way however fast or busy the machine is."""
    coco, checkpoint, ref, _, zoo = setup
    out = tmp_path / "out"
    args = ["--zoo", str(zoo), "evaluate", "tiny", "--coco", str(coco), "--checkpoint",
            str(checkpoint), "--out", str(out), "--batch-size", str(BATCH), "--workers", "0",
            "--no-progress"]
    code = ("import sys, time\n"
            "import rtmbench.measure.evaluation as e\n"
            "real = e._append_lines\n"
            "def append(path, rows):\n"
            "    real(path, rows)\n"
            "    time.sleep(600)  # after the first batch: until the kill\n"
            "e._append_lines = append\n"
            "from rtmbench.cli import main\n"
            f"sys.exit(main({args!r}))")
    proc = subprocess.Popen([sys.executable, "-c", code], env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    predictions = out / "predictions.0-of-1.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if predictions.exists() and predictions.read_bytes().count(b"\n") >= BATCH:
            break
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    lines_at_kill = predictions.read_bytes().count(b"\n")
    assert proc.returncode != 0 and lines_at_kill < NUM_IMAGES, "the run was not killed part-way"
    assert not (out / "metrics.json").exists()
    assert main(["--zoo", str(zoo), "evaluate", "tiny", "--coco", str(coco), "--checkpoint",
                 str(checkpoint),
                 "--out", str(out), "--batch-size", str(BATCH), "--workers", "0",
                 "--no-progress", "--json"]) == 0
    resumed = json.loads((out / "metrics.json").read_text())
    assert resumed["metrics"] == ref.metrics
    assert (out / "detections.json").read_bytes() == ref.detections_path.read_bytes()


def test_shards_merge_to_the_single_process_result(setup, tmp_path):
    coco, checkpoint, ref, _, zoo = setup
    for i in range(3):
        result = evaluate(load_zoo(zoo).get("tiny"), model_from(checkpoint), EvaluationRequest(
            coco, tmp_path / f"shard{i}", batch_size=BATCH, workers=0, shard=(i, 3),
            progress=False))
        assert result.metrics == {}
    merged = merge_shards([tmp_path / f"shard{i}" for i in range(3)], coco, tmp_path / "all")
    assert merged.metrics == ref.metrics
    assert merged.detections_path.read_bytes() == ref.detections_path.read_bytes()
    with pytest.raises(Exception, match="no predictions yet"):
        merge_shards([tmp_path / "shard0"], coco, tmp_path / "partial")


def test_different_settings_in_the_same_directory_are_refused(setup):
    coco, _, _, base, zoo = setup
    with pytest.raises(InputError, match="batch_size.*differ"):
        evaluate(load_zoo(zoo).get("tiny"), low_score_tiny(), EvaluationRequest(
            coco, base / "reference", batch_size=BATCH + 1, workers=0, progress=False))
    with pytest.raises(InputError, match="weights_sha256"):
        evaluate(load_zoo(zoo).get("tiny"), network("tiny"), EvaluationRequest(
            coco, base / "reference", batch_size=BATCH, workers=0, progress=False))


def test_checkpoint_and_cli_errors_are_one_paragraph(setup, tmp_path, capsys):
    coco, _, _, _, zoo = setup
    bad = tmp_path / "bad.pth"
    torch.save({"state_dict": {"backbone.stem.0.conv.weight": torch.zeros(1)}}, bad)
    with pytest.raises(CheckpointMismatchError):
        load_checkpoint(network("tiny"), bad)
    assert main(["--zoo", str(zoo), "evaluate", "tiny", "--coco", str(coco), "--checkpoint",
                 str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "Traceback" not in capsys.readouterr().err
    corrupt = make_synthetic_coco(tmp_path / "corrupt", 2, seed=9)
    victim = sorted((corrupt / "val2017").iterdir())[1]
    victim.write_bytes(victim.read_bytes()[:40])
    assert main(["--zoo", str(zoo), "evaluate", "tiny", "--coco", str(corrupt),
                 "--random-weights", "--out",
                 str(tmp_path / "o2"), "--workers", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert victim.name in err and "Traceback" not in err


def test_two_process_torchrun_equals_single_process(setup, tmp_path):
    """torchrun gives each worker OMP_NUM_THREADS=1, and CPU convolutions can round
    differently with another thread count: the bitwise reference runs with one thread too."""
    coco, checkpoint, ref, _, zoo = setup
    args = ["-m", "rtmbench", "--zoo", str(zoo), "evaluate", "tiny", "--coco", str(coco),
            "--checkpoint", str(checkpoint), "--batch-size", str(BATCH), "--workers", "0",
            "--no-progress", "--json"]
    runs = {
        "single": [sys.executable, *args, "--out", str(tmp_path / "single")],
        "torchrun": [sys.executable, "-m", "torch.distributed.run", "--standalone",
                     "--nproc-per-node", "2", *args, "--out", str(tmp_path / "torchrun")]}
    printed = {}
    for name, cmd in runs.items():
        done = subprocess.run(cmd, env=_env(OMP_NUM_THREADS="1"), capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        printed[name] = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(p.name for p in (tmp_path / "torchrun").glob("predictions.*")) == [
        "predictions.0-of-2.jsonl", "predictions.1-of-2.jsonl"]
    assert printed["torchrun"]["metrics"] == printed["single"]["metrics"] == ref.metrics
    assert ((tmp_path / "torchrun" / "detections.json").read_bytes()
            == (tmp_path / "single" / "detections.json").read_bytes())


def test_claim_test_cfg_variant_is_used_and_recorded(setup, tmp_path):
    coco, checkpoint, ref, _, zoo = setup
    entry = load_zoo(zoo).get("tiny")
    everything = json.loads(ref.detections_path.read_text())
    threshold = sorted(d["score"] for d in everything)[len(everything) // 2]
    variant = entry.test_cfg_variants["pre-pr9494"].model_copy(
        update={"score_thr": threshold, "max_per_img": 300, "nms_pre": 30000})
    result = evaluate(entry, model_from(checkpoint), EvaluationRequest(
        coco, tmp_path / "old", batch_size=BATCH, workers=0, progress=False, test_cfg=variant))
    assert result.manifest["test_cfg"]["score_thr"] == threshold
    kept = json.loads(result.detections_path.read_text())
    assert kept and min(d["score"] for d in kept) > threshold
    assert len(kept) < len(everything)


def test_the_test_settings_of_the_weights_claim_are_one_rule():
    """The box AP check and `rtmbench evaluate` both ask the zoo entry."""
    entry = load_zoo().get("tiny")
    assert entry.evaluation_test_cfg(None)[1].nms_pre == 1000  # mmyolo: the seed's settings
    assert entry.evaluation_test_cfg("mmyolo") == ("pre-pr9494", entry.test_cfg_variants[
        "pre-pr9494"])
    assert entry.evaluation_test_cfg("mmdet")[1].nms_pre == 30000
    assert entry.evaluation_test_cfg("random-init")[0] == "default"
    assert entry.evaluation_test_cfg("mmyolo", "default")[1].nms_pre == 30000
    with pytest.raises(InputError, match="pre-pr9494"):
        entry.evaluation_test_cfg("mmdet", "pre-pr9999")


def test_cli_offline_without_checkpoint_says_which_file_to_put_where(setup, tmp_path, capsys,
                                                                     monkeypatch):
    coco, _, _, _, zoo = setup
    monkeypatch.setenv("RTMBENCH_OFFLINE", "1")
    monkeypatch.setenv("RTMBENCH_CACHE", str(tmp_path / "cache"))
    assert main(["--zoo", str(zoo), "evaluate", "tiny", "--coco", str(coco), "--weights",
                 "mmdet", "--out", str(tmp_path / "o"), "--no-progress"]) == 3  # not run
    err = capsys.readouterr().err
    assert "rtmdet_tiny_8xb32-300e_coco_20220902_112414-78e30dcc.pth" in err
    assert str(tmp_path / "cache") in err and "Traceback" not in err


def test_stage_timings_are_filled_only_when_asked(setup, tmp_path):
    coco, checkpoint, ref, _, zoo = setup
    assert ref.timings is None  # not asked for
    result = evaluate(load_zoo(zoo).get("tiny"), model_from(checkpoint), EvaluationRequest(
        coco, tmp_path / "timed", batch_size=BATCH, workers=1, progress=False, timings=True))
    timings = result.timings
    assert result.metrics == ref.metrics  # timing changes nothing
    stages = timings["stages_s"]
    for stage in ("loader_wait", "decode_resize_pad_in_workers", "h2d_normalize", "forward",
                  "postprocess", "d2h", "write_predictions", "read_predictions", "score",
                  "write_detections_json"):
        assert stages[stage] >= 0, stage
    assert stages["forward"] > 0 and stages["decode_resize_pad_in_workers"] > 0
    assert timings["counts"]["images"] == NUM_IMAGES
    assert timings["counts"]["batches"] == -(-NUM_IMAGES // BATCH)
    assert timings["counts"]["nms_candidates"] >= timings["counts"]["detections"] > 0
    assert timings["wall_s"] >= sum(v for k, v in stages.items()
                                    if k in ("forward", "postprocess", "score"))
    assert timings["loader_workers"] == 1


def test_precision_and_workers_rules(setup, tmp_path, monkeypatch):
    coco, _, _, _, zoo = setup
    with pytest.raises(InputError, match="precision fp16 needs device cuda"):
        evaluate(load_zoo(zoo).get("tiny"), low_score_tiny(), EvaluationRequest(
            coco, tmp_path, precision="fp16", progress=False))
    with pytest.raises(InputError, match="unknown precision"):
        evaluate(load_zoo(zoo).get("tiny"), low_score_tiny(), EvaluationRequest(
            coco, tmp_path, precision="int8", progress=False))
    # the rule on every kind of machine, not only on the cores this one has
    for cores, cpu, cuda in ((1, 1, 1), (2, 2, 1), (3, 2, 1), (4, 2, 2), (14, 2, 12),
                             (64, 2, 12)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cores: set(range(n)),
                            raising=False)
        monkeypatch.setattr(os, "cpu_count", lambda n=cores: n)
        assert (evaluation.default_workers("cpu"), evaluation.default_workers("cuda")) == \
            (cpu, cuda), cores
    from pydantic import ValidationError

    from rtmbench.spec.check_specs import BoxAPSpec
    with pytest.raises(ValidationError, match="fp16 needs device cuda"):
        BoxAPSpec(synthetic=4, precision="fp16")
    assert BoxAPSpec(synthetic=4, device="cuda", precision="fp16").workers is None


def test_background_writer_keeps_batch_order_and_stops_at_the_first_failure(tmp_path,
                                                                             monkeypatch):
    from rtmbench.models import Detections

    path = tmp_path / "p.jsonl"
    real, calls = evaluation._append_lines, []

    def append(p, rows):
        calls.append(rows[0]["image_id"])
        if rows[0]["image_id"] == 3:
            raise OSError("disk full")
        time.sleep(0.01)
        real(p, rows)

    monkeypatch.setattr(evaluation, "_append_lines", append)
    det = Detections(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([0.5]),
                     torch.tensor([0]))
    writer = evaluation._Writer(path, [7], evaluation._NoTimer(), background=True)
    with pytest.raises(OSError, match="disk full"):
        for image_id in range(1, 7):
            writer.submit([det], [image_id])
        writer.close()
    writer.close()
    assert [json.loads(line)["image_id"] for line in path.read_text().splitlines()] == [1, 2]
    assert calls == [1, 2, 3]  # nothing after the failure was written


def test_non_finite_network_outputs_fail_the_evaluation_and_nothing_of_them_is_kept(setup,
                                                                                   tmp_path):
    """NaN logits (an FP16 overflow, broken weights) drop out of `score > thr` silently: the
    evaluation must stop with a failure instead of scoring fewer detections."""
    from rtmbench.errors import NonFiniteOutputs

    coco, checkpoint, _, _, zoo = setup
    model = model_from(checkpoint)
    calls = []

    def nan_on_second_batch(module, inputs, output):
        calls.append(1)
        if len(calls) == 2:
            output[0][1][0, 3, 2, 2] = float("nan")
        return output

    model.register_forward_hook(nan_on_second_batch)
    with pytest.raises(NonFiniteOutputs, match=r"NaN or infinite outputs \(fp32, cpu\)") as err:
        evaluate(load_zoo(zoo).get("tiny"), model, EvaluationRequest(
            coco, tmp_path, batch_size=BATCH, workers=0, progress=False))
    assert err.value.outcome == "failed" and err.value.exit_code == 1
    kept = [json.loads(line)["image_id"] for f in tmp_path.rglob("*.jsonl")
            for line in f.read_text().splitlines() if line.strip()]
    assert len(kept) == BATCH  # the first batch only: the bad one was never written


# ------------------------------------------------------------- damaged output folders
def _copy_of_reference(setup, tmp_path: Path) -> Path:
    import shutil

    out = tmp_path / "damaged"
    shutil.copytree(setup[2].detections_path.parent, out)
    for name in ("detections.json", "metrics.json"):
        (out / name).unlink()  # evaluate and merge read the rest back
    return out


def _evaluate_cli(setup, out: Path) -> list[str]:
    coco, checkpoint, _, _, zoo = setup
    return ["--zoo", str(zoo), "evaluate", "tiny", "--coco", str(coco), "--checkpoint",
            str(checkpoint), "--out", str(out), "--batch-size", str(BATCH), "--workers", "0",
            "--no-progress"]


def _merge_cli(setup, shard: Path, out: Path) -> list[str]:
    coco, _, _, _, zoo = setup
    return ["--zoo", str(zoo), "merge", str(shard), "--coco", str(coco), "--out", str(out)]


@pytest.mark.parametrize("damage", [b'{"model": "rtmdet-tiny", "weights_sha', b"[1, 2]",
                                    b"\xff\xfe\x00garbage", b"",
                                    b'{"model": "rtmdet-tiny"}'])
def test_a_damaged_run_json_is_named_with_its_fix(setup, tmp_path, capsys, damage):
    out = _copy_of_reference(setup, tmp_path)
    (out / "run.json").write_bytes(damage)
    for argv in (_evaluate_cli(setup, out), _merge_cli(setup, out, tmp_path / "merged")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert str(out / "run.json") in err and "Traceback" not in err, err
        assert f"delete {out}" in err or f"Delete {out}" in err, err


@pytest.mark.parametrize(("line", "words"), [
    (b"garbage\n", ["not a JSON"]),
    (b'{"image_id": 99, "detections": [[1, 2, 3, 4, NaN, 1]]}\n', ["NaN"]),
    (b'{"image_id": 99, "detections": [[1, 2, 3, 4, 1e999, 1]]}\n', ["finite"]),
    (b'{"image_id": 99}\n', ["detections"]),
    (b'{"image_id": "99", "detections": []}\n', ["image_id"]),
    (b'{"image_id": 99, "detections": [[1, 2, 3, 4, 0.5]]}\n', ["x, y, w, h, score"]),
    (b'{"image_id": 99, "detections": [[1, 2, -3, 4, 0.5, 1]]}\n', ["negative"]),
    (b"[]\n", ["object"]),
])
def test_a_damaged_predictions_line_is_named_by_file_and_line(setup, tmp_path, capsys, line,
                                                              words):
    """A damaged line in the middle (or a complete last line) is no crash mid-write: exit 2
    naming the file and line, for evaluate and merge alike."""
    out = _copy_of_reference(setup, tmp_path)
    predictions = out / "predictions.0-of-1.jsonl"
    lines = predictions.read_bytes().splitlines(keepends=True)
    predictions.write_bytes(b"".join(lines[:2] + [line] + lines[2:]))
    for argv in (_evaluate_cli(setup, out), _merge_cli(setup, out, tmp_path / "merged")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"{predictions}:3" in err and "Traceback" not in err, err
        assert all(w in err for w in words) and "delete" in err, err
    assert not (out / "metrics.json").exists()


def test_a_torn_last_predictions_line_is_still_redone(setup, tmp_path, capsys):
    out = _copy_of_reference(setup, tmp_path)
    predictions = out / "predictions.0-of-1.jsonl"
    lines = predictions.read_bytes().splitlines(keepends=True)
    predictions.write_bytes(b"".join(lines[:-1]) + lines[-1][:20])
    assert main(_evaluate_cli(setup, out) + ["--json"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["newly_inferred"] == 1 and printed["metrics"] == setup[2].metrics


def test_a_full_disk_during_evaluate_is_a_clear_error_and_the_rerun_resumes(setup, tmp_path,
                                                                            capsys, monkeypatch):
    import errno

    real, calls = evaluation._append_lines, []

    def fills_up(path, rows):
        calls.append(rows)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # os.write names no file
        real(path, rows)

    monkeypatch.setattr(evaluation, "_append_lines", fills_up)
    out = tmp_path / "out"
    assert main(_evaluate_cli(setup, out)) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err, err
    monkeypatch.setattr(evaluation, "_append_lines", real)
    assert main(_evaluate_cli(setup, out) + ["--json"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["newly_inferred"] == NUM_IMAGES - BATCH  # the first batch was kept
    assert printed["metrics"] == setup[2].metrics
