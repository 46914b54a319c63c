"""Seeded weights that make RTMDet *detect something*, for tests and the CI smoke gate.

PyTorch's default initialisation ("random-init") gives flat outputs: every score near 0.5 or
every score below threshold, boxes all alike, so COCO AP is 0 whatever the pipeline does and a
broken resize, pad, colour order, clip or NMS passes unnoticed. ``well_conditioned`` weights are
random too (a seeded generator, the same on every machine) but conditioned:

- convolutions scaled by fan-in (:func:`well_conditioned_state_dict`, also the parity tests'
  weights: small, varied BN variances make a wrong BN eps show);
- BN statistics taken from a batch of generated images (what a trained network's BN holds),
  so the input's signal reaches the head, with every channel's variance at least its layer's
  median: no near-constant channel amplifies another input by 1/sqrt(eps), FP16 holds the
  values (an FP16 copy agrees at 0.98 AP) and other CPUs' kernels give the same detections;
- the head's predictors calibrated on that batch: logits with a robust spread of 1 and 1 % of
  (prior, class) pairs above score 0.001, so scores spread over (0, 1); box distances around
  1.8 strides, so neighbouring boxes overlap near NMS's IoU and cross the image border.

The detections then depend on every pixel the pipeline produces and on every post-processing
setting, which is what the smoke gate checks (golden detections in ``suites/baselines/``).
Measured (tiny, the smoke suite's 8 images): the same code gives agreement AP 1.0 on 1 or 2
threads, batch 1, 4 or 8, oneDNN's SSE4.1, AVX2 or AVX-512 kernels and oneDNN off; nearest
resize 0.50, pad value 0 0.77, RGB 0.39, no clip 0.84, NMS IoU 0.6 0.79.
"""

from __future__ import annotations

import math

import torch
from torch import nn

LOGIT_001 = math.log(0.001 / 0.999)  # the default score_thr
CLS_SPREAD = 1.0  # the logits' robust standard deviation
REG_SPREAD = 0.5  # the box distances', in strides
VAR_FLOOR = 1.0  # BN variances at least the layer's median: FP16-safe, platform-stable
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

    ``calibration``: a normalised N x 3 x H x W batch of images like the ones the model will
    see (the caller makes it with the data pipeline: models/ knows no data); the head's
    predictors are scaled so that their outputs on it have the spread above. The weights are
    conditioned for images: on other inputs (Gaussian noise) activations can be far larger.
    """
    model.load_state_dict(well_conditioned_state_dict(model, seed))
    g = torch.Generator().manual_seed(seed + 1)
    x = calibration.float()
    was_training = model.training
    batchnorms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in batchnorms:  # affine ~ 1/3, statistics from data (below): signal propagates
        bn.weight.copy_(torch.rand(bn.weight.shape, generator=g) * 0.4 + 0.2)
        bn.bias.copy_(torch.randn(bn.bias.shape, generator=g) * 0.05)
        bn.reset_running_stats()
        bn.momentum = None  # a cumulative average: one batch gives exactly its statistics
    model.train()
    model(x)
    for bn in batchnorms:
        bn.momentum = 0.1
        # a channel almost constant on the batch: a variance floor, not a 1/sqrt(eps) gain on
        # whatever another input brings (and FP16 cannot hold such variances)
        floor = VAR_FLOOR * float(bn.running_var.median().clamp_min(1e-6))
        bn.running_var.clamp_(min=floor)
    model.eval()
    head = model.bbox_head
    for level, (cls_feat, reg_feat) in enumerate(head_features(model, x)):
        # logits: a robust spread of CLS_SPREAD, 1 % of (prior, class) pairs above 0.001
        _calibrate(head.rtm_cls[level], cls_feat, CLS_SPREAD, (0.99, LOGIT_001))
        if head.exp_on_reg:  # distances exp(reg) * stride, median REG_STRIDES
            _calibrate(head.rtm_reg[level], reg_feat, REG_SPREAD / REG_STRIDES,
                       (0.5, math.log(REG_STRIDES)))
        else:
            _calibrate(head.rtm_reg[level], reg_feat, REG_SPREAD, (0.5, REG_STRIDES))
    model.train(was_training)
    return model


def head_features(model: nn.Module, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per level, the features the head's classifier and regressor see: ``(cls_feat,
    reg_feat)`` after the shared-and-separated convolutions, before ``rtm_cls``/``rtm_reg``."""
    head = model.bbox_head
    out = []
    for level, feat in enumerate(model.neck(model.backbone(x))):
        cls_feat, reg_feat = feat, feat
        for layer in head.cls_convs[level]:
            cls_feat = layer(cls_feat)
        for layer in head.reg_convs[level]:
            reg_feat = layer(reg_feat)
        out.append((cls_feat, reg_feat))
    return out


def _quantile(t: torch.Tensor, q: float) -> float:
    flat = t.flatten()
    if flat.numel() > 1 << 22:  # torch.quantile's size limit; a seeded subsample is plenty
        flat = flat[torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(0))
                    [: 1 << 22]]
    return float(torch.quantile(flat, q))


def _calibrate(conv: nn.Conv2d, feat: torch.Tensor, spread: float,
               anchor: tuple[float, float]) -> None:
    """Scale ``conv`` and set its bias so that on ``feat`` its output has the robust spread
    ``spread`` (half the 16..84 % inter-quantile range: the standard deviation of a normal
    distribution, blind to the heavy tails random features have) and its ``anchor[0]`` quantile
    lands at ``anchor[1]``. Extremes stay a few tens at most: FP16 represents them well."""
    out = conv(feat)
    robust = (_quantile(out, 0.84) - _quantile(out, 0.16)) / 2
    scale = spread / max(robust, 1e-6)
    conv.weight.mul_(scale)
    conv.bias.mul_(scale)
    conv.bias.add_(anchor[1] - _quantile(conv(feat), anchor[0]))
