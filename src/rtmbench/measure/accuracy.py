"""Is the timed artifact still the model? Its outputs against the FP32 PyTorch reference.

MLPerf's TEST01 idea: a latency is only worth something for an artifact (an FP16 TensorRT
engine, an ONNX Runtime session, a CUDA graph) that gives the model's answers. For every latency
unit that asks for it, the runner's own artifact (``Runner.infer``, the object that was timed)
and the FP32 PyTorch model run on the same images, prepared by the test pipeline at the timed
input size, and we record:

- ``output_max_abs_error`` / ``output_max_rel_error``: the largest difference of any raw output
  (class logits, box distances) over all images; relative to that output's max |value|.
- ``agreement_ap`` (and ``agreement_ap50``): COCO box AP of the artifact's detections, after the
  same post-processing (the unit's test settings, ``nms_pre`` capped at ``AGREEMENT_NMS_PRE``),
  scored with the reference's detections as the ground truth (1.0: the same detections), both
  cut at the best ``AGREEMENT_TOP_K`` per image (:mod:`.agreement`, as the smoke gate's golden
  detections are).
- on a real COCO set, also the artifact's own box AP against COCO's annotations
  (``artifact_box_ap``), the reference's on the same images (``reference_box_ap``) and the
  difference (``box_ap_delta``); only meaningful with trained weights.

What it catches, measured on the seeded ``well-conditioned`` weights (320x320, the smoke suite's
8 generated images): the network computed in FP16 by torch (what a GPU's FP16 does) agrees at
0.988 (tiny) and 0.981 (s), with raw outputs within 1e-3 of their range; class logits off by
noise of their own spread fall below 0.5. AP ranks detections, so a change that keeps each
class's score order (every classifier weight x1.5) keeps agreement AP at 1.0: the raw output
errors, recorded beside it, show that one.

Judging (a red mark below the suite's ``min_agreement_ap``, stored with the record) is
:mod:`rtmbench.judge`'s.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..data import CocoDataset, TestPipeline
from ..errors import InputError, NonFiniteOutputs
from ..models.postprocess import Detections, TestSettings, postprocess
from .agreement import TOP_K, agreement_scores
from .artifact import pad_batch, true_fp32
from .evaluation import weights_fingerprint
from .scoring import ScoreOptions, score

AGREEMENT_TOP_K = TOP_K  # the same cut as the smoke gate's golden detections
# Post-processing for agreement: the unit's test settings with nms_pre at most 1000 (RTMDet's
# original test config). Seeded weights put every (prior, class) pair above score_thr, so
# MMDetection 3.x's nms_pre=30000 would run NMS on 30000 boxes per image: a minute per unit on a
# CPU, for the same top detections.
AGREEMENT_NMS_PRE = 1000


@dataclass
class AccuracyImages:
    """The images an artifact is checked on, prepared at the timed input size."""

    ids: list[int]
    inputs: list[Tensor]  # 1 x 3 x H x W, normalised
    scale_factors: list[tuple[float, float]]
    cat_ids: list[int]  # label -> COCO category id
    described: str  # where they come from
    ground_truth: dict | None = None  # COCO annotations when the set is real COCO

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class AccuracyCheck:
    """What a timed artifact is checked on: ``images`` (at the timed input size), whose outputs
    are post-processed with ``settings`` (None: the zoo's test settings of the model, see
    :meth:`for_model`), agreement scored on each image's best ``top_k`` detections."""

    images: AccuracyImages
    settings: TestSettings | None = None
    top_k: int = AGREEMENT_TOP_K

    def for_model(self, entry) -> AccuracyCheck:
        """This check with ``entry``'s (a zoo model's) test settings where it has none."""
        if self.settings is not None:
            return self
        return dataclasses.replace(
            self, settings=TestSettings.from_test_cfg(entry.test_cfg.model_dump()))


def load_images(entry, root: Path, limit: int, input_size: tuple[int, int], *,
                described: str, real_coco: bool) -> AccuracyImages:
    """The first ``limit`` images of the COCO-format set at ``root``, decoded, letterboxed to
    ``input_size`` (width, height) and normalised as the zoo's test pipeline does."""
    dataset = CocoDataset(root)
    records = dataset.select(limit)
    pipeline = TestPipeline(input_size, entry.pipeline)
    prepared = [pipeline.prepare(r.id, r.path) for r in records]
    wanted = {r.id for r in records}
    gt = None
    if real_coco:
        data = dataset.data
        gt = {**data, "images": [i for i in data["images"] if i["id"] in wanted],
              "annotations": [a for a in data["annotations"] if a["image_id"] in wanted]}
    return AccuracyImages(
        ids=[p.image_id for p in prepared],
        inputs=[pipeline.normalize(torch.from_numpy(p.pixels)[None]) for p in prepared],
        scale_factors=[p.scale_factor for p in prepared],
        cat_ids=list(dataset.cat_ids), described=described, ground_truth=gt)


# The reference's outputs for the last (weights, images, shape) seen: every latency unit of one
# model in a suite checks against the same reference, computed once.
_REFERENCE_CACHE: dict[tuple, list[list[Tensor]]] = {}


def _reference_outputs(model: nn.Module, x: Tensor, device: str = "cpu") -> list[Tensor]:
    from .backends.torch_backend import flat_outputs

    with torch.inference_mode(), true_fp32():
        return flat_outputs(model(x.to(device)))


def _batched(images: AccuracyImages, batch: int):
    """Batches of exactly ``batch`` images (the artifact's shape); the last one is padded with
    copies of its last image, whose outputs are dropped."""
    for start in range(0, len(images), batch):
        idx = list(range(start, min(start + batch, len(images))))
        yield idx, pad_batch(torch.cat([images.inputs[i] for i in idx]), batch)


def _detections(outputs: list[Tensor], n: int, strides, input_hw, scale_factors,
                settings: TestSettings) -> list[Detections]:
    levels = len(strides)
    cls = tuple(o[:n] for o in outputs[:levels])
    box = tuple(o[:n] for o in outputs[levels:])
    return postprocess(cls, box, strides, input_hw, scale_factors, settings)


def _coco_rows(image_id: int, det: Detections, cat_ids: list[int]) -> list[dict]:
    return [{"image_id": image_id, "category_id": cat_ids[label],
             "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": s}
            for b, s, label in zip(det.boxes.tolist(), det.scores.float().tolist(),
                                   det.labels.tolist())]


def artifact_accuracy(infer: Callable[[Tensor], list[Tensor]], reference: nn.Module,
                      check: AccuracyCheck, batch: int = 1,
                      reference_device: str = "cpu") -> dict:
    """The metrics of the module docstring for the artifact behind ``infer`` (``batch``
    images per call) on ``check``'s images; the reference runs in true FP32 on
    ``reference_device`` (a copy of the model goes there)."""
    if check.settings is None:
        raise ValueError("AccuracyCheck.settings is unset: give the test settings, or "
                         "AccuracyCheck.for_model(entry) for the zoo's")
    images, settings, top_k = check.images, check.settings, check.top_k
    strides = tuple(reference.bbox_head.strides)
    reference = reference.eval()
    input_hw = tuple(images.inputs[0].shape[2:])
    cache_key = (weights_fingerprint(reference), tuple(images.ids), images.described,
                 sum(float(x.double().sum()) for x in images.inputs), input_hw, batch,
                 reference_device)
    cached = _REFERENCE_CACHE.get(cache_key)
    if cached is None and reference_device != "cpu":
        reference = copy.deepcopy(reference).to(reference_device)
    if settings.nms_pre <= 0 or settings.nms_pre > AGREEMENT_NMS_PRE:
        settings = dataclasses.replace(settings, nms_pre=AGREEMENT_NMS_PRE)
    max_abs, max_rel = 0.0, 0.0
    ref_dets: dict[int, Detections] = {}
    art_dets: dict[int, Detections] = {}
    computed: list[list[Tensor]] = []
    for number, (idx, x) in enumerate(_batched(images, batch)):
        n = len(idx)
        want = (cached[number] if cached is not None
                else _reference_outputs(reference, x, reference_device))
        computed.append(want)
        got = [g.float().reshape(w.shape) for g, w in zip(infer(x), want, strict=True)]
        for what, outputs in (("the timed artifact", got), ("the PyTorch FP32 reference", want)):
            if not all(bool(t[:n].isfinite().all()) for t in outputs):
                ids = [images.ids[i] for i in idx]
                raise NonFiniteOutputs(
                    f"{what} gave NaN or infinite outputs on images {ids[:4]}"
                    f"{' ...' if len(ids) > 4 else ''} ({images.described}): a fast wrong engine "
                    "is a failure, not a result")
        for g, w in zip(got, want):
            err = float((g[:n] - w[:n]).abs().max())
            scale = float(w[:n].abs().max())
            max_abs = max(max_abs, err)
            max_rel = max(max_rel, err / scale if scale > 0 else err)
        scales = [images.scale_factors[i] for i in idx]
        for i, d in zip(idx, _detections(want, n, strides, input_hw, scales, settings)):
            ref_dets[images.ids[i]] = d
        for i, d in zip(idx, _detections(got, n, strides, input_hw, scales, settings)):
            art_dets[images.ids[i]] = d
    _REFERENCE_CACHE.clear()  # one entry: the latency units of a model share it
    _REFERENCE_CACHE[cache_key] = computed
    rows = [r for i, d in art_dets.items() for r in _coco_rows(i, d, images.cat_ids)]
    ref_rows = [r for i, d in ref_dets.items() for r in _coco_rows(i, d, images.cat_ids)]
    if not ref_rows:  # the real cause, not an agreement of 0 read as "a fast wrong engine"
        raise InputError(f"the PyTorch FP32 reference detected nothing on the {len(images)} "
                         f"accuracy images ({images.described}): agreement cannot be measured; "
                         "time weights that detect something (well-conditioned, a checkpoint)")
    agreement = agreement_scores(rows, ref_rows, list(images.ids), images.cat_ids, top_k=top_k)
    metrics = {"output_max_abs_error": max_abs, "output_max_rel_error": max_rel,
               "agreement_ap": max(agreement["AP"], 0.0),
               "agreement_ap50": max(agreement["AP50"], 0.0),
               "agreement_top_k": top_k, "agreement_nms_pre": settings.nms_pre,
               "accuracy_images": len(images)}
    if images.ground_truth is not None:
        coco_only = ScoreOptions(conventions=("coco",))
        art_ap = score(images.ground_truth, rows, coco_only)["coco"]["AP"]
        ref_ap = score(images.ground_truth, ref_rows, coco_only)["coco"]["AP"]
        metrics |= {"artifact_box_ap": art_ap, "reference_box_ap": ref_ap,
                    "box_ap_delta": art_ap - ref_ap}
    return metrics
