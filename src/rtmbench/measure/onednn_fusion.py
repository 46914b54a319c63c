"""Eager CPU convolutions as oneDNN primitives: weights pre-packed, conv + SiLU fused.

Plain eager ``nn.Conv2d`` on a channels_last tensor re-packs its weights into oneDNN's blocked
layout on every call and writes the pre-activation tensor that SiLU then reads back. The
modules here pack the weights once (for the input shape seen at preparation) and run
``mkldnn::_convolution_pointwise`` with SiLU ("swish") fused: the same arithmetic, still eager,
one memory pass less per convolution. These are PyTorch's own CPU fusion ops (what inductor's
freezing pass emits); where they are missing, :func:`fuse_onednn` raises and the caller keeps
plain eager.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class OneDNNUnavailable(RuntimeError):
    pass


def onednn_unavailable_reason() -> str | None:
    if not torch.backends.mkldnn.is_available():
        return "torch was built without oneDNN (mkldnn)"
    if not hasattr(torch.ops.mkldnn, "_convolution_pointwise"):
        return f"torch {torch.__version__} has no mkldnn::_convolution_pointwise"
    return None


class PackedConv2d(nn.Module):
    """A frozen ``nn.Conv2d`` (optionally followed by SiLU) as one oneDNN primitive."""

    def __init__(self, conv: nn.Conv2d, input_shape: torch.Size, fuse_silu: bool) -> None:
        super().__init__()
        if isinstance(conv.padding, str):
            raise OneDNNUnavailable(f"string padding {conv.padding!r} is not supported")
        self.args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        with torch.no_grad():
            self.weight = torch._C._nn.mkldnn_reorder_conv2d_weight(
                conv.weight.detach().float().to_mkldnn(), *self.args, list(input_shape))
        self.bias = None if conv.bias is None else conv.bias.detach().float()
        self.attr = "swish" if fuse_silu else "none"

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.mkldnn._convolution_pointwise(x, self.weight, self.bias, *self.args,
                                                       self.attr, [], "")


def _input_shapes(net: nn.Module, example: Tensor) -> dict[nn.Module, torch.Size]:
    """The input shape of every Conv2d call (shared convs must see one shape only)."""
    shapes: dict[nn.Module, set] = {}

    def hook(module, inputs):
        shapes.setdefault(module, set()).add(tuple(inputs[0].shape))

    handles = [m.register_forward_pre_hook(hook) for m in net.modules()
               if isinstance(m, nn.Conv2d)]
    try:
        with torch.inference_mode():
            net(example)
    finally:
        for h in handles:
            h.remove()
    return {m: torch.Size(next(iter(s))) for m, s in shapes.items() if len(s) == 1}


def fuse_onednn(net: nn.Module, example: Tensor) -> nn.Module:
    """Replace, in place, every Conv2d of a BN-folded, channels_last fp32 ``net``.

    ``conv -> Identity(bn) -> SiLU`` (mmcv ConvModule names) becomes one fused primitive; every
    other Conv2d becomes a packed one. Raises :class:`OneDNNUnavailable` when it cannot.
    """
    if reason := onednn_unavailable_reason():
        raise OneDNNUnavailable(reason)
    shapes = _input_shapes(net, example)
    packed: dict[int, PackedConv2d] = {}

    def pack(conv: nn.Conv2d, fuse_silu: bool) -> PackedConv2d:
        if conv not in shapes:
            raise OneDNNUnavailable("a convolution is called with several input shapes")
        key = (id(conv), fuse_silu)
        if key not in packed:
            packed[key] = PackedConv2d(conv, shapes[conv], fuse_silu)
        return packed[key]

    for module in list(net.modules()):
        conv, act = getattr(module, "conv", None), getattr(module, "activate", None)
        if (isinstance(conv, nn.Conv2d) and isinstance(getattr(module, "bn", None), nn.Identity)
                and isinstance(act, nn.SiLU)):
            module.conv, module.activate = pack(conv, True), nn.Identity()
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Conv2d):
                setattr(module, name, pack(child, False))
    return net
