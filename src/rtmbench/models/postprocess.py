"""From raw head outputs to boxes, scores and labels, as MMDetection's RTMDet predicts them.

Order of operations (MMDetection 3.x ``BaseDenseHead._predict_by_feat_single`` and
``_bbox_post_process``): per level sigmoid -> keep (prior, class) pairs above ``score_thr`` ->
top ``nms_pre`` by score; decode distances at the priors and clip to the *network input* shape
(mmcv's Pad sets ``img_shape`` to the padded shape); divide by the resize scale factor; drop
boxes not wider and taller than ``min_bbox_size``; class-aware NMS; keep ``max_per_img``.

:func:`postprocess` does this image by image, as MMDetection does (the reference; the CPU
path). :func:`postprocess_batched` computes the same detections for a whole batch with two
host synchronisations for the selection and one per image for NMS (the evaluation's path):

- per level, ``topk(min(nms_pre, most pairs any image has above score_thr))`` over all
  (prior, class) scores, then ``> score_thr``: the same set as thresholding first and keeping
  the top ``nms_pre`` of what passed, with fixed shapes (no boolean indexing; one host sync
  for the three counts);
- NMS on a score-ordered prefix: greedy NMS decides each box from higher-scored boxes only, so
  the boxes kept among the best ``k`` candidates are exactly the full run's kept boxes among
  them. If at least ``max_per_img`` are kept, they are the answer; otherwise ``k`` doubles,
  up to every candidate. With ``nms_pre`` 30000 over three levels that is NMS on ~1,000
  boxes instead of up to 90,000 (which torchvision runs class by class, one host sync each).

Both give the same boxes, scores and labels except where two candidates tie exactly in score
at a cut (their order is the sort's either way) or an IoU lies within float rounding of the
threshold (torchvision's NMS offsets boxes per class when it gets few boxes and loops over
classes when it gets many); ``tests/test_postprocess.py`` compares them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torchvision.ops import batched_nms


@dataclass(frozen=True)
class TestSettings:
    """MMDetection's ``test_cfg`` for RTMDet."""

    __test__ = False  # not a pytest test class, despite the name

    score_thr: float = 0.001
    nms_pre: int = 30000
    iou_threshold: float = 0.65
    max_per_img: int = 300
    min_bbox_size: float = 0.0

    @classmethod
    def from_test_cfg(cls, cfg: Mapping[str, Any]) -> TestSettings:
        """From the zoo's ``test_cfg`` fields (``nms_iou`` is ``iou_threshold`` here)."""
        cfg = dict(cfg)
        return cls(score_thr=cfg["score_thr"], nms_pre=cfg["nms_pre"],
                   iou_threshold=cfg["nms_iou"], max_per_img=cfg["max_per_img"],
                   min_bbox_size=cfg["min_bbox_size"])


@dataclass
class Detections:
    """Detections of one image: ``boxes`` x1, y1, x2, y2 in original-image pixels."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return int(self.scores.numel())


def grid_priors(height: int, width: int, stride: int, device=None,
                dtype=torch.float32) -> Tensor:
    """Point priors of one level (MlvlPointGenerator, offset 0): x fastest, then y."""
    xs = torch.arange(width, device=device, dtype=dtype) * stride
    ys = torch.arange(height, device=device, dtype=dtype) * stride
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1)


def distance_to_boxes(points: Tensor, distances: Tensor, clip_hw: tuple[int, int]) -> Tensor:
    """x1, y1, x2, y2 from (..., 2) points and (..., 4) ltrb distances, clipped to clip_hw."""
    x1 = (points[..., 0] - distances[..., 0]).clamp(0, clip_hw[1])
    y1 = (points[..., 1] - distances[..., 1]).clamp(0, clip_hw[0])
    x2 = (points[..., 0] + distances[..., 2]).clamp(0, clip_hw[1])
    y2 = (points[..., 1] + distances[..., 3]).clamp(0, clip_hw[0])
    return torch.stack([x1, y1, x2, y2], dim=-1)


def _select_level(cls_score: Tensor, bbox_pred: Tensor, priors: Tensor,
                  settings: TestSettings) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    num_classes = cls_score.shape[0]
    scores = cls_score.permute(1, 2, 0).reshape(-1, num_classes).sigmoid()
    distances = bbox_pred.permute(1, 2, 0).reshape(-1, 4)
    valid = scores > settings.score_thr
    kept_scores = scores[valid]
    valid_idx = torch.nonzero(valid)  # (prior index, class) pairs
    kept_scores, order = kept_scores.sort(descending=True)
    top = min(settings.nms_pre, kept_scores.numel()) if settings.nms_pre > 0 else None
    kept_scores, pairs = kept_scores[:top], valid_idx[order[:top]]
    prior_idx, labels = pairs.unbind(dim=1)
    return kept_scores, labels, distances[prior_idx], priors[prior_idx]


def postprocess_single(cls_scores: list[Tensor], bbox_preds: list[Tensor],
                       priors: list[Tensor], input_hw: tuple[int, int],
                       scale_factor: tuple[float, float], settings: TestSettings) -> Detections:
    """Post-process one image; each tensor is C x H x W (no batch dimension), ``priors`` the
    level's grid points (``grid_priors``)."""
    parts = [_select_level(c, b, p, settings) for c, b, p in zip(cls_scores, bbox_preds, priors)]
    scores = torch.cat([p[0] for p in parts])
    labels = torch.cat([p[1] for p in parts])
    boxes = distance_to_boxes(torch.cat([p[3] for p in parts]),
                              torch.cat([p[2] for p in parts]).float(), input_hw)
    w_scale, h_scale = scale_factor
    boxes = boxes / boxes.new_tensor([w_scale, h_scale, w_scale, h_scale])
    if settings.min_bbox_size >= 0:
        wide = (boxes[:, 2] - boxes[:, 0] > settings.min_bbox_size) & (
            boxes[:, 3] - boxes[:, 1] > settings.min_bbox_size)
        boxes, scores, labels = boxes[wide], scores[wide], labels[wide]
    if boxes.numel() > 0:
        keep = batched_nms(boxes, scores.float(), labels, settings.iou_threshold)
        keep = keep[: settings.max_per_img]
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    return Detections(boxes, scores, labels)


def postprocess(cls_scores: tuple[Tensor, ...], bbox_preds: tuple[Tensor, ...],
                strides: tuple[int, ...], input_hw: tuple[int, int],
                scale_factors: list[tuple[float, float]],
                settings: TestSettings) -> list[Detections]:
    """Post-process a batch of head outputs (N x C x H x W per level) into per-image detections.

    ``input_hw`` is the network input's (padded) height and width, the shape boxes are
    clipped to; ``scale_factors[i]`` is (w_scale, h_scale) of image i's resize.
    """
    priors = [grid_priors(c.shape[2], c.shape[3], s, c.device, b.dtype)  # once per batch
              for c, b, s in zip(cls_scores, bbox_preds, strides)]
    return [
        postprocess_single([c[i] for c in cls_scores], [b[i] for b in bbox_preds], priors,
                           input_hw, scale_factors[i], settings)
        for i in range(cls_scores[0].shape[0])]


def postprocess_batched(cls_scores: tuple[Tensor, ...], bbox_preds: tuple[Tensor, ...],
                        strides: tuple[int, ...], input_hw: tuple[int, int],
                        scale_factors: list[tuple[float, float]], settings: TestSettings, *,
                        first_nms: int | None = None, stats: dict | None = None
                        ) -> list[Detections]:
    """:func:`postprocess` for a whole batch (module docstring): the same arguments and result.

    ``first_nms``: candidates in the first NMS round (default ``max(1000, 4 x max_per_img)``).
    ``stats``, if given, accumulates ``candidates`` (boxes that passed the threshold and the
    size filter), ``nms_boxes`` (boxes given to NMS) and ``nms_calls``.
    """
    n, num_classes = cls_scores[0].shape[:2]
    device = cls_scores[0].device
    all_scores = [c.permute(0, 2, 3, 1).reshape(n, -1).float().sigmoid() for c in cls_scores]
    # Per level, the most pairs any image has above score_thr (one host synchronisation): no
    # more than these can be kept, so topk need not look further.
    above = [s > settings.score_thr for s in all_scores]  # NaN is never above
    passing = torch.stack([a.sum(1).max() for a in above]).tolist()
    level_scores, level_labels, level_boxes = [], [], []
    for cls, box, stride, scores, mask, most in zip(cls_scores, bbox_preds, strides, all_scores,
                                                    above, passing):
        height, width = cls.shape[2:]
        k = most if settings.nms_pre <= 0 else min(settings.nms_pre, most)
        # pairs at or below the threshold (NaN included: topk ranks NaN above every number)
        # cannot take a place from a passing one, as in the per-image reference
        scores = torch.where(mask, scores, scores.new_tensor(-1.0))
        scores, index = scores.topk(k, dim=1)  # sorted, descending
        prior_idx = torch.div(index, num_classes, rounding_mode="floor")
        distances = box.permute(0, 2, 3, 1).reshape(n, -1, 4).float().gather(
            1, prior_idx.unsqueeze(-1).expand(-1, -1, 4))
        points = grid_priors(height, width, stride, device, torch.float32)[prior_idx]
        level_scores.append(scores)
        level_labels.append(index % num_classes)
        level_boxes.append(distance_to_boxes(points, distances, input_hw))
    scores, labels = torch.cat(level_scores, 1), torch.cat(level_labels, 1)
    boxes = torch.cat(level_boxes, 1)
    scale = torch.tensor([[w, h, w, h] for w, h in scale_factors], dtype=boxes.dtype)
    boxes = boxes / scale.to(device).unsqueeze(1)
    valid = scores > settings.score_thr
    if settings.min_bbox_size >= 0:
        valid &= (boxes[..., 2] - boxes[..., 0] > settings.min_bbox_size) & (
            boxes[..., 3] - boxes[..., 1] > settings.min_bbox_size)
    order = torch.where(valid, scores, -1.0).argsort(dim=1, descending=True, stable=True)
    counts = valid.sum(1).tolist()  # the second host synchronisation of the selection
    first = first_nms or max(1000, 4 * settings.max_per_img)
    results = []
    for i, count in enumerate(counts):
        if count == 0:
            results.append(Detections(boxes.new_zeros((0, 4)), scores.new_zeros(0),
                                      labels.new_zeros(0)))
            continue
        k = min(count, first) if settings.max_per_img > 0 else count
        while True:
            chosen = order[i, :k]
            keep = batched_nms(boxes[i, chosen], scores[i, chosen], labels[i, chosen],
                               settings.iou_threshold)
            if stats is not None:
                stats["nms_calls"] = stats.get("nms_calls", 0) + 1
                stats["nms_boxes"] = stats.get("nms_boxes", 0) + k
            if keep.numel() >= settings.max_per_img or k == count:
                break
            k = min(2 * k, count)
        if stats is not None:
            stats["candidates"] = stats.get("candidates", 0) + count
        chosen = chosen[keep[: settings.max_per_img]]
        results.append(Detections(boxes[i, chosen], scores[i, chosen], labels[i, chosen]))
    return results
