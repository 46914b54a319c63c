"""Building blocks of RTMDet, named so that state_dict keys match MMDetection 3.x.

MMDetection builds these from mmcv's ConvModule / DepthwiseSeparableConvModule; a ConvModule
with a norm layer owns ``conv`` (no bias), ``bn`` and an activation without parameters, so the
same attribute names here give the same checkpoint keys.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ConvModule(nn.Module):
    """conv -> BN -> SiLU, mmcv's ConvModule with norm_cfg=BN/SyncBN and act_cfg=SiLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, groups: int = 1, bn_eps: float = 1e-5) -> None:
        super().__init__()
        # mmcv's bias='auto' drops the conv bias when a norm layer follows.
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                              groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps)
        self.activate = nn.SiLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.activate(self.bn(self.conv(x)))


class DepthwiseSeparableConvModule(nn.Module):
    """Depthwise conv module followed by a 1x1 pointwise conv module (mmcv's names)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bn_eps: float = 1e-5) -> None:
        super().__init__()
        self.depthwise_conv = ConvModule(in_channels, in_channels, kernel_size, stride, padding,
                                         groups=in_channels, bn_eps=bn_eps)
        self.pointwise_conv = ConvModule(in_channels, out_channels, 1, bn_eps=bn_eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


class ChannelAttention(nn.Module):
    """Global average pool -> 1x1 conv (with bias) -> hard sigmoid, multiplied onto the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.global_avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(channels, channels, 1, 1, 0, bias=True)
        self.act = nn.Hardsigmoid(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.act(self.fc(self.global_avgpool(x)))


class SPPBottleneck(nn.Module):
    """1x1 reduce, concat with max-pools of kernel 5/9/13 (stride 1), 1x1 expand."""

    def __init__(self, in_channels: int, out_channels: int,
                 kernel_sizes: tuple[int, ...] = (5, 9, 13), bn_eps: float = 1e-5) -> None:
        super().__init__()
        mid_channels = in_channels // 2
        self.conv1 = ConvModule(in_channels, mid_channels, 1, bn_eps=bn_eps)
        self.poolings = nn.ModuleList(
            nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2) for k in kernel_sizes)
        self.conv2 = ConvModule(mid_channels * (len(kernel_sizes) + 1), out_channels, 1,
                                bn_eps=bn_eps)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [pool(x) for pool in self.poolings], dim=1))


class CSPNeXtBlock(nn.Module):
    """3x3 conv module, then a 5x5 depthwise-separable conv module, optional identity add."""

    def __init__(self, in_channels: int, out_channels: int, add_identity: bool,
                 kernel_size: int = 5, bn_eps: float = 1e-5) -> None:
        super().__init__()
        # CSPLayer builds its blocks with expansion=1.0, so hidden == out_channels.
        hidden = out_channels
        self.conv1 = ConvModule(in_channels, hidden, 3, padding=1, bn_eps=bn_eps)
        self.conv2 = DepthwiseSeparableConvModule(hidden, out_channels, kernel_size,
                                                  padding=kernel_size // 2, bn_eps=bn_eps)
        self.add_identity = add_identity and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.conv1(x))
        return out + x if self.add_identity else out


class CSPLayer(nn.Module):
    """Cross-stage-partial layer with CSPNeXt blocks and optional channel attention."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int,
                 add_identity: bool, channel_attention: bool, expand_ratio: float = 0.5,
                 bn_eps: float = 1e-5) -> None:
        super().__init__()
        mid = int(out_channels * expand_ratio)
        self.main_conv = ConvModule(in_channels, mid, 1, bn_eps=bn_eps)
        self.short_conv = ConvModule(in_channels, mid, 1, bn_eps=bn_eps)
        self.final_conv = ConvModule(2 * mid, out_channels, 1, bn_eps=bn_eps)
        self.blocks = nn.Sequential(*[
            CSPNeXtBlock(mid, mid, add_identity, bn_eps=bn_eps) for _ in range(num_blocks)])
        self.channel_attention = channel_attention
        if channel_attention:
            self.attention = ChannelAttention(2 * mid)

    def forward(self, x: Tensor) -> Tensor:
        x_final = torch.cat((self.blocks(self.main_conv(x)), self.short_conv(x)), dim=1)
        if self.channel_attention:
            x_final = self.attention(x_final)
        return self.final_conv(x_final)
