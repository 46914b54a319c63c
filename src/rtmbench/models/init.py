"""Seeded weights that make RTMDet *detect something*, for tests and the CI smoke gate.

PyTorch's default initialisation ("random-init") gives flat outputs: every score near 0.5 or
every score below threshold, boxes all alike, so COCO AP is 0 whatever the pipeline does and a
broken resize, pad, colour order, clip or NMS passes unnoticed. ``well_conditioned`` weights are
random too (a seeded generator, the same on every machine) but conditioned:

- convolutions scaled by fan-in, BN running variances small and varied (1e-3..1e-2, so a wrong
  BN eps shows) with BN scales that compensate: activations stay O(1) through every size;
- BN statistics taken from a batch of generated images (what a trained network's BN holds),
  so the input's signal reaches the head;
- the head's predictors calibrated on that batch: 1 % of (prior, class) pairs score above
  0.001 and 0.1 % above 0.95, so scores spread over (0, 1); box distances between 0.5 and a
  few strides, so boxes overlap, vary in size and cross the image border (clipping matters).

The detections then depend on every pixel the pipeline produces, and on every post-processing
setting, which is what the smoke gate checks (golden detections in ``suites/baselines/``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

LOGIT_001, LOGIT_095 = math.log(0.001 / 0.999), math.log(0.95 / 0.05)
REG_STRIDES = 1.8  # the median box distance, in strides: neighbours overlap at IoU ~0.6


def well_conditioned_state_dict(model: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights whose activations stay O(1) through every size, yet for which a wrong BN
    eps or a missing block shows: running variances are small and varied (1e-3..1e-2, so eps
    1e-3 vs 1e-5 changes outputs by ~20%), BN scales compensate per channel, convs are scaled
    by fan-in, and the box regressor is small so MMDetection's exp() cannot overflow."""
    g = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    out = {}
    for key, value in state.items():
        if not value.dtype.is_floating_point:
            out[key] = value.clone()
        elif key.endswith("running_var"):
            out[key] = torch.rand(value.shape, generator=g) * 9e-3 + 1e-3
        elif key.endswith("running_mean"):
            out[key] = torch.randn(value.shape, generator=g) * 0.05
        elif key.endswith("bn.bias"):
            out[key] = torch.randn(value.shape, generator=g) * 0.1
        elif value.dim() == 4:
            fan_in = value.shape[1] * value.shape[2] * value.shape[3]
            gain = 0.1 if ".rtm_reg." in key else 1.0
            out[key] = torch.randn(value.shape, generator=g) * gain / fan_in ** 0.5
        else:
            out[key] = torch.randn(value.shape, generator=g) * 0.1
    for key in out:  # BN weight = sqrt(var) * U(0.5, 1.5): normalised scale stays near 1
        if key.endswith("bn.weight"):
            var = out[key.replace("weight", "running_var")]
            out[key] = var.sqrt() * (torch.rand(var.shape, generator=g) + 0.5)
    return out


@torch.no_grad()
def well_conditioned_(model: nn.Module, calibration: torch.Tensor, seed: int = 0) -> nn.Module:
    """Load well-conditioned weights into ``model`` (an RTMDet) in place and return it.

    ``calibration``: a normalised N x 3 x H x W batch like the ones the model will see (the
    caller makes it with the data pipeline: models/ knows no data); the head's predictors are
    scaled so that their outputs on it have the spread above.
    """
    model.load_state_dict(well_conditioned_state_dict(model, seed))
    g = torch.Generator().manual_seed(seed + 1)
    x = calibration.float()
    was_training = model.training
    batchnorms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in batchnorms:  # affine ~ 1, statistics from data (below): signal propagates
        bn.weight.copy_(torch.rand(bn.weight.shape, generator=g) * 0.4 + 0.2)
        bn.bias.copy_(torch.randn(bn.bias.shape, generator=g) * 0.05)
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average: one batch gives exactly its statistics
    model.train()
    model(x)
    for bn in batchnorms:
        bn.momentum = 0.1
    model.eval()
    head = model.bbox_head
    feats = model.neck(model.backbone(x))
    for level, feat in enumerate(feats):
        cls_feat, reg_feat = feat, feat
        for layer in head.cls_convs[level]:
            cls_feat = layer(cls_feat)
        for layer in head.reg_convs[level]:
            reg_feat = layer(reg_feat)
        # scores: 1 % of (prior, class) pairs above 0.001, 0.1 % above 0.95
        _calibrate(head.rtm_cls[level], cls_feat, (0.99, LOGIT_001), (0.999, LOGIT_095))
        if head.exp_on_reg:  # distances exp(reg) * stride: 0.5 .. 2.5 strides
            _calibrate(head.rtm_reg[level], reg_feat, (0.05, math.log(0.5)),
                       (0.5, math.log(REG_STRIDES)))
        else:
            _calibrate(head.rtm_reg[level], reg_feat, (0.05, 0.5), (0.5, REG_STRIDES))
    model.train(was_training)
    return model


def _quantile(t: torch.Tensor, q: float) -> float:
    flat = t.flatten()
    if flat.numel() > 1 << 22:  # torch.quantile's size limit; a seeded subsample is plenty
        flat = flat[torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(0))
                    [: 1 << 22]]
    return float(torch.quantile(flat, q))


def _calibrate(conv: nn.Conv2d, feat: torch.Tensor, low: tuple[float, float],
               high: tuple[float, float]) -> None:
    """Scale ``conv`` and set its bias so that on ``feat`` the ``low[0]`` quantile of its
    output lands at ``low[1]`` and the ``high[0]`` quantile at ``high[1]``."""
    out = conv(feat)
    q_low, q_high = _quantile(out, low[0]), _quantile(out, high[0])
    scale = (high[1] - low[1]) / max(q_high - q_low, 1e-6)
    conv.weight.mul_(scale)
    conv.bias.mul_(scale).add_(low[1] - scale * q_low)
