"""Parameters and FLOPs, counted under declared conventions (judged in rtmbench.judge).

Conventions (declared per claim in the zoo):
- ``mmengine``: mmengine's FlopAnalyzer on the tensor-mode forward at the zoo's input size, one
  multiply-add = one FLOP. This is what MMDetection's ``tools/analysis_tools/get_flops.py``
  prints today.
- ``mmengine+act``: the same plus one FLOP per element produced by an activation layer (SiLU,
  Hardsigmoid). This is how the published m, l and x figures were counted.
Parameters are unique parameter tensors (the head's shared convs once), as mmengine counts them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..spec.zoo import ResolvedModel

ACTIVATIONS = (nn.SiLU, nn.Hardsigmoid, nn.ReLU, nn.Sigmoid)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_activation_outputs(model: nn.Module, x: torch.Tensor) -> int:
    """Elements produced by activation modules in one forward pass."""
    total = 0

    def hook(_module, _inputs, output):
        nonlocal total
        total += output.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, ACTIVATIONS)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total


def count_flops_mmengine(model: nn.Module, x: torch.Tensor) -> int:
    from mmengine.analysis import FlopAnalyzer  # imported lazily: it pulls in a lot

    analyzer = FlopAnalyzer(model, (x,))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    with torch.no_grad():
        return int(analyzer.total())


def count_flops(model: nn.Module, input_hw: tuple[int, int]) -> dict[str, int]:
    """FLOPs of one 1x3xHxW forward under every declared convention."""
    x = torch.zeros(1, 3, *input_hw)
    base = count_flops_mmengine(model, x)
    return {"mmengine": base, "mmengine+act": base + count_activation_outputs(model, x)}


@dataclass
class ComplexityReport:
    """Params and FLOPs (under every convention) of one model at one input size."""

    size: str
    model: str
    input_hw: tuple[int, int]
    params: int
    flops: dict[str, int]

    def metrics(self) -> dict:
        """As a complexity record stores them."""
        return {"params": self.params, "input_hw": list(self.input_hw),
                **{f"flops_{conv}": n for conv, n in self.flops.items()}}


def measure_complexity(model_entry: ResolvedModel, model: nn.Module | None = None
                       ) -> ComplexityReport:
    """Count ``model`` (default: the entry's architecture, seeded init) at the zoo's input."""
    from ..models import build_rtmdet

    model = model if model is not None else build_rtmdet(
        model_entry.architecture.model_dump(), model_entry.num_classes)
    width, height = model_entry.input_size
    return ComplexityReport(model_entry.size, model_entry.name, (height, width),
                            count_params(model), count_flops(model, (height, width)))


__all__ = ["ComplexityReport", "count_params", "count_flops", "count_activation_outputs",
           "count_flops_mmengine", "measure_complexity"]
