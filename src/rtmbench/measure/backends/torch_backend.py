"""PyTorch eager: inference mode, BN folded, channels_last; on CUDA replayed as a CUDA graph.

On CPU, channels_last lets oneDNN run its convolution kernels without reordering every
activation; BN folding removes one memory pass per convolution, and (``onednn_fusion``) each
conv + SiLU runs as one oneDNN primitive with weights packed once (:mod:`..onednn_fusion`).
``layout="contiguous", fold_bn=False, onednn_fusion=False`` is the plain default-layout eager
baseline the benchmark compares against.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from ..export import fold_batchnorm
from ..timing import CudaEventTimer, Timer
from .base import (
    Backend,
    BackendUnavailable,
    PrepareOptions,
    Runner,
    cuda_unavailable_reason,
)

LAYOUTS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, layout: str = "channels_last", fold_bn: bool = True,
                 cuda_graphs: bool = True, onednn_fusion: bool = True) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {list(LAYOUTS)}, not {layout!r}")
        self.layout, self.fold_bn, self.cuda_graphs = layout, fold_bn, cuda_graphs
        self.onednn_fusion = onednn_fusion

    def unavailable(self, device: str, precision: str) -> str | None:
        if device == "cuda":
            return cuda_unavailable_reason()
        if precision == "fp16":
            return ("torch on CPU is measured in fp32 only: its CPU fp16 convolutions are not "
                    "a deployment path and would be timed in emulation")
        return None

    def autotuned(self, device: str, precision: str) -> bool:
        return device == "cuda"  # cudnn.benchmark times candidate kernels at prepare

    def _network(self, model: nn.Module, device: str, dtype: torch.dtype) -> nn.Module:
        net = fold_batchnorm(model) if self.fold_bn else copy.deepcopy(model)  # caller's stays
        return net.eval().to(device=device, dtype=dtype, memory_format=LAYOUTS[self.layout])

    def prepare(self, model: nn.Module, example: Tensor, device: str, precision: str,
                options: PrepareOptions | None = None) -> Runner:
        if reason := self.unavailable(device, precision):
            raise BackendUnavailable(reason)
        dtype = torch.float16 if precision == "fp16" else torch.float32
        net = self._network(model, device, dtype)
        details = {"layout": self.layout, "bn_folded": self.fold_bn, "dtype": str(dtype),
                   "threads": torch.get_num_threads(), "mode": "eager, inference_mode"}
        if device == "cpu":
            x = example.to(dtype).contiguous(memory_format=LAYOUTS[self.layout])
            details["onednn_fusion"] = self._fuse_cpu(net, x)
            outputs: list = [None]

            def run_cpu() -> None:
                with torch.inference_mode():
                    outputs[0] = net(x)

            def infer_cpu(new: Tensor) -> list[Tensor]:
                with torch.inference_mode():
                    out = net(new.to(dtype).contiguous(memory_format=LAYOUTS[self.layout]))
                return flat_outputs(out)

            return Runner(run_cpu, Timer(), details, outputs=lambda: outputs[0],
                          infer=infer_cpu)
        return self._prepare_cuda(net, example, dtype, (options or PrepareOptions())
                                  .include_transfer, details)

    def _fuse_cpu(self, net: nn.Module, x: Tensor) -> str:
        """Apply the oneDNN conv+SiLU fusion where it fits; say what was done."""
        if not self.onednn_fusion:
            return "off"
        if not (self.fold_bn and self.layout == "channels_last" and x.dtype == torch.float32):
            return "not applied: needs BN folded, channels_last and fp32"
        from ..onednn_fusion import OneDNNUnavailable, fuse_onednn

        try:
            fuse_onednn(net, x)
        except OneDNNUnavailable as exc:
            return f"not applied: {exc}"
        return "conv+SiLU fused, weights packed"

    def _prepare_cuda(self, net: nn.Module, example: Tensor, dtype: torch.dtype,
                      include_transfer: bool, details: dict) -> Runner:
        torch.backends.cudnn.benchmark = True  # pick the fastest kernels for this shape
        memory_format = LAYOUTS[self.layout]
        static_in = example.to("cuda", dtype).contiguous(memory_format=memory_format)
        host_in = example.to(dtype).contiguous(memory_format=memory_format).pin_memory()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(3):  # cudnn autotuning and allocator warm-up before capture
                net(static_in)
        torch.cuda.current_stream().wait_stream(side)
        stream = torch.cuda.current_stream()
        outputs: list = []  # the latest outputs, for correctness checks of the replay
        if self.cuda_graphs:
            graph = torch.cuda.CUDAGraph()
            with torch.inference_mode(), torch.cuda.graph(graph):
                outputs.append(net(static_in))  # static: each replay overwrites these tensors
            infer = graph.replay
        else:
            def infer() -> None:
                with torch.inference_mode():
                    outputs[:] = [net(static_in)]

        def run_cuda() -> None:
            if include_transfer:
                static_in.copy_(host_in, non_blocking=True)
            infer()

        def infer_cuda(new: Tensor) -> list[Tensor]:
            """Copy ``new`` into the static input, replay, and read the static outputs."""
            torch.cuda.synchronize()
            static_in.copy_(new.to("cuda", dtype).contiguous(memory_format=memory_format))
            infer()
            torch.cuda.synchronize()
            return flat_outputs(outputs[-1])

        details |= {"cuda_graphs": self.cuda_graphs, "include_transfer": include_transfer,
                    "gpu": torch.cuda.get_device_name(0),
                    "cudnn_tf32": torch.backends.cudnn.allow_tf32 and dtype == torch.float32,
                    "mode": ("CUDA graph replay of the eager forward" if self.cuda_graphs
                             else "eager, inference_mode")}
        return Runner(run_cuda, CudaEventTimer(stream), details, torch.cuda.synchronize,
                      outputs=lambda: outputs[-1], infer=infer_cuda)


def flatten(out) -> list[Tensor]:
    """A model's output tensors in the exported graph's order: RTMDet's ``(cls_scores,
    bbox_preds)`` nested sequences flattened (cls_8 .. box_32), or a module's tensor(s)."""
    if isinstance(out, Tensor):
        return [out]
    return [t for item in out for t in flatten(item)]


def flat_outputs(out) -> list[Tensor]:
    """:func:`flatten`, as host FP32 copies."""
    return [o.detach().float().cpu().clone() for o in flatten(out)]

