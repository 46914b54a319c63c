"""The RTMDet network: ``backbone``, ``neck`` and ``bbox_head``, as MMDetection names them."""

from __future__ import annotations

from dataclasses import dataclass

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


def build_rtmdet(size: str | RTMDetArch, num_classes: int = 80) -> RTMDet:
    """Build RTMDet by zoo size name (tiny, s, m, l, x) or from an explicit architecture.

    The model is returned in eval mode: this harness measures inference.
    """
    if isinstance(size, str):
        from ..zoo import load_zoo  # the zoo owns the size -> hyper-parameter table

        arch = load_zoo().get(size).architecture.to_arch()
    else:
        arch = size
    return RTMDet(arch, num_classes).eval()
