"""Evaluation on CUDA: FP16/FP32, shards and resume bit-identical, stage timing, near the CPU.

Run with ``pytest -m gpu``; skipped with a reason where there is no GPU.
"""

from __future__ import annotations

import json

import pytest
import torch

from rtmbench.data import make_synthetic_coco
from rtmbench.measure.eval_plan import EvaluationRequest
from rtmbench.measure.evaluation import evaluate, merge_shards
from rtmbench.spec.zoo import load_zoo
from tests.test_evaluation import low_score_tiny, small_zoo

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch"),
]
IMAGES, BATCH = 12, 4


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("gpu-eval")
    coco = make_synthetic_coco(base / "coco", IMAGES, seed=3, profile="coco", workers=2)
    return coco, load_zoo(small_zoo(base)).get("tiny")


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_cuda_evaluation_shards_and_timings(data, tmp_path, precision):
    coco, entry = data
    whole = evaluate(entry, low_score_tiny(), EvaluationRequest(
        coco, tmp_path / "whole", batch_size=BATCH, device="cuda", precision=precision,
        progress=False, timings=True))
    timings = whole.timings
    assert whole.manifest["precision"] == precision and whole.manifest["device"] == "cuda"
    assert timings["counts"]["images"] == IMAGES and timings["stages_s"]["forward"] > 0
    print("\nGPU-EVAL " + json.dumps({"precision": precision, **timings}))
    for i in range(2):
        evaluate(entry, low_score_tiny(), EvaluationRequest(
            coco, tmp_path / f"s{i}", batch_size=BATCH, device="cuda", precision=precision,
            progress=False, shard=(i, 2)))
    merged = merge_shards([tmp_path / "s0", tmp_path / "s1"], coco, tmp_path / "merged")
    assert merged.detections_path.read_bytes() == whole.detections_path.read_bytes()
    again = evaluate(entry, low_score_tiny(), EvaluationRequest(
        coco, tmp_path / "again", batch_size=BATCH, device="cuda", precision=precision,
        progress=False))
    assert again.detections_path.read_bytes() == whole.detections_path.read_bytes()


def test_cuda_fp32_is_near_the_cpu(data, tmp_path):
    coco, entry = data
    cpu = evaluate(entry, low_score_tiny(), EvaluationRequest(
        coco, tmp_path / "cpu", batch_size=BATCH, device="cpu", progress=False))
    gpu = evaluate(entry, low_score_tiny(), EvaluationRequest(
        coco, tmp_path / "gpu", batch_size=BATCH, device="cuda", precision="fp32",
        progress=False))
    a = json.loads(cpu.detections_path.read_text())
    b = json.loads(gpu.detections_path.read_text())
    assert abs(len(a) - len(b)) <= 0.1 * max(len(a), 1)

    def best(dets):
        top: dict = {}
        for d in dets:
            if d["image_id"] not in top or d["score"] > top[d["image_id"]]["score"]:
                top[d["image_id"]] = d
        return top

    ta, tb = best(a), best(b)
    for image_id, d in ta.items():
        assert image_id in tb and tb[image_id]["category_id"] == d["category_id"]
        assert tb[image_id]["score"] == pytest.approx(d["score"], abs=2e-3)
