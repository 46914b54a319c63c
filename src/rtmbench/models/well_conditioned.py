"""Seeded weights whose detections *mean* something to compare: the "well-conditioned" weights.

PyTorch's default initialisation ("random-init") gives flat outputs: every score sits near
sigmoid(0) and boxes are a pixel wide, so two engines that compute different things still give
"the same" detections, and an agreement AP on them says nothing. These weights keep activations
O(1) through every size, with per-channel variety, so scores and boxes vary from place to place
and a wrong engine shows: running variances are small and varied (1e-3..1e-2, so BN eps 1e-3 vs
1e-5 changes outputs by ~20%), BN scales compensate per channel, convolutions are scaled by
fan-in, and the box regressor is small so MMDetection's exp() cannot overflow.

Used by tests (parity, export) and by suites that check an artifact's accuracy without
downloading a checkpoint (weights id ``well-conditioned``, :func:`rtmbench.run.model.build`).
"""

from __future__ import annotations

import torch
from torch import nn


def well_conditioned_state_dict(model: nn.Module, seed: int = 0, *,
                                detection_head: bool = False) -> dict[str, torch.Tensor]:
    """A state_dict for ``model`` (an RTMDet) drawn from a generator seeded with ``seed``.

    ``detection_head``: also give the prediction layers a detector's shape (what the
    ``well-conditioned`` weights id loads): classifier weights x8 with bias -2, so scores spread
    over 0.3..0.4 instead of sitting at sigmoid(0); box regressor biases U(0.5, 2) (times the
    stride, or exp() of it), so boxes are tens of pixels, not one: an IoU then measures the
    boxes, not rounding. Without it, FP16 rounding alone moves 1-pixel boxes enough to cost 15%
    of an agreement AP.
    """
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
    if detection_head:
        head = torch.Generator().manual_seed(seed + 1)
        for key in out:
            if ".rtm_cls." in key and key.endswith(".weight"):
                out[key] = out[key] * 8.0
            elif ".rtm_cls." in key and key.endswith(".bias"):
                out[key] = torch.full_like(out[key], -2.0)
            elif ".rtm_reg." in key and key.endswith(".bias"):
                out[key] = torch.rand(out[key].shape, generator=head) * 1.5 + 0.5
    return out


def load_well_conditioned(model: nn.Module, seed: int = 0) -> nn.Module:
    """Load the ``well-conditioned`` weights (with the detection head) into ``model`` (in
    place) and return it in eval mode."""
    model.load_state_dict(well_conditioned_state_dict(model, seed, detection_head=True))
    return model.eval()
