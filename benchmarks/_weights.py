"""Benchmark weights: no checkpoints are at hand, so the networks get seeded random weights
that behave like trained ones where timing depends on it (activations O(1), a trained
detector's share of scores above the test thresholds, boxes a few strides wide)."""

from __future__ import annotations

from pathlib import Path

import torch

from rtmbench.models.init import head_features, well_conditioned_state_dict
from rtmbench.run.build import network

REPO = Path(__file__).resolve().parents[1]

# Target logit distribution of the calibrated classifier: N(MU, SIGMA) gives P(> logit(0.001))
# = 1.5% and P(> logit(0.05)) = 0.03% of (prior, class) pairs.
CLS_MU, CLS_SIGMA = -13.73, 3.145
WEIGHTS_NOTE = {
    "calibrated": "seeded random weights, well-conditioned, classifier calibrated to ~1.5% of "
                  "(prior, class) pairs > 0.001 and ~0.03% > 0.05, boxes a few strides wide (a "
                  "guess at a trained RTMDet's post-processing load; no real checkpoints: "
                  "timings real, box AP meaningless)",
    "random-init": "zoo random-init (every pair passes 0.001: worst-case NMS load; box AP "
                   "meaningless)"}


def calibrated_model(size, how: str = "calibrated") -> torch.nn.Module:
    """The network of ``size`` (a zoo size or entry) with benchmark weights (module docstring):
    ``how`` is "calibrated" or "random-init"."""
    model = network(size)
    if how == "random-init":
        return model
    model.load_state_dict(well_conditioned_state_dict(model))
    head = model.bbox_head
    x = torch.randn(1, 3, 320, 320, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        cls, reg = [], []
        for level, (c, r) in enumerate(head_features(model, x)):
            cls.append(head.rtm_cls[level](c).flatten())
            reg.append(head.rtm_reg[level](r).flatten())
    cls_all, reg_all = torch.cat(cls), torch.cat(reg)
    # Regressor output in stride units: exp() of N(1, 0.6) (exp_on_reg) or N(3, 1) otherwise.
    reg_mu, reg_sigma = (1.0, 0.6) if head.exp_on_reg else (3.0, 1.0)
    with torch.no_grad():
        for convs, values, mu, sigma in ((head.rtm_cls, cls_all, CLS_MU, CLS_SIGMA),
                                         (head.rtm_reg, reg_all, reg_mu, reg_sigma)):
            mean, std = float(values.mean()), float(values.std())
            for conv in convs:
                conv.weight.mul_(sigma / std)
                conv.bias.sub_(mean).mul_(sigma / std).add_(mu)
    return model.eval()


