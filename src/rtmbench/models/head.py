"""RTMDet's separated-BN head: conv weights shared across levels, BN layers per level."""

from __future__ import annotations

from torch import Tensor, nn

from .layers import ConvModule


class RTMDetSepBNHead(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, feat_channels: int,
                 stacked_convs: int = 2, strides: tuple[int, ...] = (8, 16, 32),
                 exp_on_reg: bool = False, share_conv: bool = True, pred_kernel_size: int = 1,
                 bn_eps: float = 1e-5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.strides = tuple(strides)
        self.exp_on_reg = exp_on_reg
        self.cls_convs = nn.ModuleList()
        self.reg_convs = nn.ModuleList()
        self.rtm_cls = nn.ModuleList()
        self.rtm_reg = nn.ModuleList()
        pad = pred_kernel_size // 2
        for _ in self.strides:
            chans = [in_channels] + [feat_channels] * (stacked_convs - 1)
            self.cls_convs.append(nn.ModuleList(
                ConvModule(c, feat_channels, 3, padding=1, bn_eps=bn_eps) for c in chans))
            self.reg_convs.append(nn.ModuleList(
                ConvModule(c, feat_channels, 3, padding=1, bn_eps=bn_eps) for c in chans))
            self.rtm_cls.append(nn.Conv2d(feat_channels, num_classes, pred_kernel_size,
                                          padding=pad))
            self.rtm_reg.append(nn.Conv2d(feat_channels, 4, pred_kernel_size, padding=pad))
        if share_conv:
            # The same conv module object at every level: state_dict still lists each level's
            # key (as MMDetection's does), parameters() counts the weights once.
            for level in range(1, len(self.strides)):
                for i in range(stacked_convs):
                    self.cls_convs[level][i].conv = self.cls_convs[0][i].conv
                    self.reg_convs[level][i].conv = self.reg_convs[0][i].conv

    def forward(self, feats: tuple[Tensor, ...]) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        cls_scores, bbox_preds = [], []
        for level, (x, stride) in enumerate(zip(feats, self.strides)):
            cls_feat, reg_feat = x, x
            for layer in self.cls_convs[level]:
                cls_feat = layer(cls_feat)
            for layer in self.reg_convs[level]:
                reg_feat = layer(reg_feat)
            reg = self.rtm_reg[level](reg_feat)
            if self.exp_on_reg:
                reg = reg.exp()
            cls_scores.append(self.rtm_cls[level](cls_feat))
            bbox_preds.append(reg * stride)
        return tuple(cls_scores), tuple(bbox_preds)
