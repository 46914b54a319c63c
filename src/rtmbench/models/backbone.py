"""CSPNeXt backbone (arch P5), as MMDetection's ``CSPNeXt`` builds it for RTMDet."""

from __future__ import annotations

from torch import Tensor, nn

from .layers import ConvModule, CSPLayer, SPPBottleneck

# (in_channels, out_channels, num_blocks, add_identity, use_spp) per stage at widen=deepen=1.
P5_STAGES = ((64, 128, 3, True, False), (128, 256, 6, True, False),
             (256, 512, 6, True, False), (512, 1024, 3, False, True))


class CSPNeXt(nn.Module):
    """Stem of three 3x3 convs, then four stages; returns the outputs of stages 2, 3 and 4."""

    def __init__(self, deepen_factor: float, widen_factor: float, expand_ratio: float = 0.5,
                 channel_attention: bool = True, bn_eps: float = 1e-5,
                 out_indices: tuple[int, ...] = (2, 3, 4)) -> None:
        super().__init__()
        stem_out = int(P5_STAGES[0][0] * widen_factor)
        stem_mid = int(P5_STAGES[0][0] * widen_factor // 2)
        self.stem = nn.Sequential(
            ConvModule(3, stem_mid, 3, stride=2, padding=1, bn_eps=bn_eps),
            ConvModule(stem_mid, stem_mid, 3, padding=1, bn_eps=bn_eps),
            ConvModule(stem_mid, stem_out, 3, padding=1, bn_eps=bn_eps))
        self.out_indices = out_indices
        self.layers = ["stem"]
        for i, (cin, cout, blocks, add_identity, use_spp) in enumerate(P5_STAGES):
            cin, cout = int(cin * widen_factor), int(cout * widen_factor)
            num_blocks = max(round(blocks * deepen_factor), 1)
            stage: list[nn.Module] = [ConvModule(cin, cout, 3, stride=2, padding=1, bn_eps=bn_eps)]
            if use_spp:
                stage.append(SPPBottleneck(cout, cout, bn_eps=bn_eps))
            stage.append(CSPLayer(cout, cout, num_blocks, add_identity, channel_attention,
                                  expand_ratio, bn_eps=bn_eps))
            self.add_module(f"stage{i + 1}", nn.Sequential(*stage))
            self.layers.append(f"stage{i + 1}")

    @property
    def out_channels(self) -> list[int]:
        return [getattr(self, self.layers[i])[-1].final_conv.conv.out_channels
                for i in self.out_indices]

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        outs = []
        for i, name in enumerate(self.layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
