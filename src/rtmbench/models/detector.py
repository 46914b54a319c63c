"""The RTMDet network: ``backbone``, ``neck`` and ``bbox_head``, as MMDetection names them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .backbone import P5_STAGES, CSPNeXt
from .head import RTMDetSepBNHead
from .neck import CSPNeXtPAFPN


@dataclass(frozen=True)
class RTMDetArch:
    """Hyper-parameters of one RTMDet size, the fields MMDetection's configs set."""

    deepen_factor: float
    widen_factor: float
    neck_out_channels: int
    neck_num_csp_blocks: int
    exp_on_reg: bool
    expand_ratio: float = 0.5
    channel_attention: bool = True
    head_stacked_convs: int = 2
    share_conv: bool = True
    pred_kernel_size: int = 1
    strides: tuple[int, ...] = (8, 16, 32)
    # MMDetection's RTMDet configs use norm_cfg=dict(type='SyncBN'): torch's default eps 1e-5,
    # not the 1e-3 that CSPNeXt's own default norm_cfg would give.
    bn_eps: float = 1e-5

    @property
    def neck_in_channels(self) -> list[int]:
        return [int(stage[1] * self.widen_factor) for stage in P5_STAGES[1:]]


class RTMDet(nn.Module):
    """Tensor-mode RTMDet: ``forward(x)`` returns ``(cls_scores, bbox_preds)`` per stride.

    ``x`` is the normalised N x 3 x H x W batch; cls_scores are logits, bbox_preds are
    (left, top, right, bottom) distances in input pixels, as MMDetection's head returns them.
    """

    def __init__(self, arch: RTMDetArch, num_classes: int = 80) -> None:
        super().__init__()
        self.arch = arch
        self.num_classes = num_classes
        self.backbone = CSPNeXt(arch.deepen_factor, arch.widen_factor, arch.expand_ratio,
                                arch.channel_attention, arch.bn_eps)
        self.neck = CSPNeXtPAFPN(arch.neck_in_channels, arch.neck_out_channels,
                                 arch.neck_num_csp_blocks, arch.expand_ratio, arch.bn_eps)
        self.bbox_head = RTMDetSepBNHead(
            num_classes, arch.neck_out_channels, arch.neck_out_channels,
            stacked_convs=arch.head_stacked_convs, strides=arch.strides,
            exp_on_reg=arch.exp_on_reg, share_conv=arch.share_conv,
            pred_kernel_size=arch.pred_kernel_size, bn_eps=arch.bn_eps)

    def forward(self, x: Tensor) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        return self.bbox_head(self.neck(self.backbone(x)))


def arch_from(spec: RTMDetArch | Mapping[str, Any]) -> RTMDetArch:
    """An :class:`RTMDetArch` from itself or from plain fields (e.g. a zoo entry's
    ``architecture.model_dump()``): models/ never reads the zoo."""
    return spec if isinstance(spec, RTMDetArch) else RTMDetArch(**dict(spec))


def build_rtmdet(arch: RTMDetArch | Mapping[str, Any], num_classes: int = 80, *,
                 seed: int = 0) -> RTMDet:
    """RTMDet with PyTorch's default initialisation drawn from a generator seeded with ``seed``:
    the same weights in every process, whatever the global RNG state (the "random-init" weights
    of smoke runs and latency timing). The model is returned in eval mode.

    To get a network with a zoo checkpoint, use ``rtmbench.run.build.build``.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = RTMDet(arch_from(arch), num_classes)
    return model.eval()
