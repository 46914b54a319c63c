"""CSPNeXt-PAFPN neck: top-down then bottom-up path, one 3x3 output conv per level."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import ConvModule, CSPLayer


class CSPNeXtPAFPN(nn.Module):
    def __init__(self, in_channels: list[int], out_channels: int, num_csp_blocks: int,
                 expand_ratio: float = 0.5, bn_eps: float = 1e-5) -> None:
        super().__init__()
        self.in_channels = list(in_channels)
        n = len(in_channels)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.reduce_layers = nn.ModuleList()
        self.top_down_blocks = nn.ModuleList()
        # MMDetection's neck CSPLayers have no identity add and no channel attention.
        for idx in range(n - 1, 0, -1):
            self.reduce_layers.append(
                ConvModule(in_channels[idx], in_channels[idx - 1], 1, bn_eps=bn_eps))
            self.top_down_blocks.append(
                CSPLayer(in_channels[idx - 1] * 2, in_channels[idx - 1], num_csp_blocks,
                         add_identity=False, channel_attention=False,
                         expand_ratio=expand_ratio, bn_eps=bn_eps))
        self.downsamples = nn.ModuleList()
        self.bottom_up_blocks = nn.ModuleList()
        for idx in range(n - 1):
            self.downsamples.append(
                ConvModule(in_channels[idx], in_channels[idx], 3, stride=2, padding=1,
                           bn_eps=bn_eps))
            self.bottom_up_blocks.append(
                CSPLayer(in_channels[idx] * 2, in_channels[idx + 1], num_csp_blocks,
                         add_identity=False, channel_attention=False,
                         expand_ratio=expand_ratio, bn_eps=bn_eps))
        self.out_convs = nn.ModuleList(
            ConvModule(c, out_channels, 3, padding=1, bn_eps=bn_eps) for c in in_channels)

    def forward(self, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        n = len(self.in_channels)
        inner_outs = [inputs[-1]]
        for idx in range(n - 1, 0, -1):
            k = n - 1 - idx
            high = self.reduce_layers[k](inner_outs[0])
            inner_outs[0] = high
            inner_outs.insert(0, self.top_down_blocks[k](
                torch.cat([self.upsample(high), inputs[idx - 1]], 1)))
        outs = [inner_outs[0]]
        for idx in range(n - 1):
            down = self.downsamples[idx](outs[-1])
            outs.append(self.bottom_up_blocks[idx](torch.cat([down, inner_outs[idx + 1]], 1)))
        return tuple(conv(out) for conv, out in zip(self.out_convs, outs))
