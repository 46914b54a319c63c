"""Parameters and FLOPs, counted under declared conventions, judged against published claims.

Conventions (declared per claim in the zoo):
- ``mmengine``: mmengine's FlopAnalyzer on the tensor-mode forward at the zoo's input size, one
  multiply-add = one FLOP. This is what MMDetection's ``tools/analysis_tools/get_flops.py``
  prints today.
- ``mmengine+act``: the same plus one FLOP per element produced by an activation layer (SiLU,
  Hardsigmoid). This is how the published m, l and x figures were counted.
Parameters are unique parameter tensors (the head's shared convs once), as mmengine counts them.

A claim matches when the measured value, written the way the claim was published (its decimals,
rounded or truncated), equals the claim exactly: the tolerance is the published precision.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal

import torch
from torch import nn

from .zoo import FLOPS_CONVENTIONS, Claim, ResolvedModel

SCALE = {"params": Decimal(10) ** 6, "flops": Decimal(10) ** 9}
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
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        return int(analyzer.total())


def count_flops(model: nn.Module, input_hw: tuple[int, int]) -> dict[str, int]:
    """FLOPs of one 1x3xHxW forward under every declared convention."""
    x = torch.zeros(1, 3, *input_hw)
    base = count_flops_mmengine(model, x)
    return {"mmengine": base, "mmengine+act": base + count_activation_outputs(model, x)}


def published_form(measured: int, claim: Claim) -> Decimal:
    """``measured`` in the claim's unit, written with the claim's decimals and rounding."""
    quantum = Decimal(1).scaleb(-claim.decimals)
    mode = ROUND_DOWN if claim.rounding == "truncate" else ROUND_HALF_EVEN
    return (Decimal(measured) / SCALE[claim.metric]).quantize(quantum, rounding=mode)


def _fmt(measured: int, metric: str, digits: int = 3) -> str:
    return f"{Decimal(measured) / SCALE[metric]:.{digits}f}"


@dataclass
class Verdict:
    metric: str
    claim: float
    decimals: int
    rounding: str
    convention: str
    measured: int
    ok: bool
    explanation: str


def judge(claim: Claim, measured: dict[str, int]) -> Verdict:
    """Compare ``measured`` (raw counts by convention) with a params or flops claim."""
    convention = claim.convention or "parameters"
    value = measured[convention]
    shown = published_form(value, claim)
    ok = shown == claim.value
    exact = _fmt(value, claim.metric)
    if ok:
        parts = [f"matches: {exact} {claim.unit_name}"]
        if claim.rounding == "truncate":
            rounded = published_form(value, claim.model_copy(update={"rounding": "round"}))
            parts.append(f"truncated to {claim.value}" +
                         (f" (rounding would give {rounded})" if rounded != claim.value else ""))
        else:
            parts.append(f"rounds to {claim.value}")
        if claim.metric == "flops":
            for other in FLOPS_CONVENTIONS:
                if other != convention:
                    delta = (measured[other] - value) / value * 100
                    parts.append(f"counted {convention}; {other} gives "
                                 f"{_fmt(measured[other], 'flops')} ({delta:+.2f}%)")
        explanation = ", ".join(parts[:2]) + ("; " + "; ".join(parts[2:]) if parts[2:] else "")
    else:
        explanation = (f"MISS: {exact} {claim.unit_name} under '{convention}' is published as "
                       f"{shown}, claim is {claim.value}")
        if claim.metric == "flops":
            others = [f"{c}: {_fmt(measured[c], 'flops')}" for c in FLOPS_CONVENTIONS
                      if c != convention]
            explanation += f" ({'; '.join(others)})"
    return Verdict(claim.metric, float(claim.value), claim.decimals, claim.rounding, convention,
                   value, ok, explanation)


@dataclass
class ComplexityReport:
    size: str
    model: str
    input_hw: tuple[int, int]
    params: int
    flops: dict[str, int]
    verdicts: list[Verdict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.verdicts)

    def to_json(self) -> dict:
        return {"size": self.size, "model": self.model, "input": list(self.input_hw),
                "params": self.params, "flops": self.flops,
                "claims": {v.metric: {"value": v.claim, "decimals": v.decimals,
                                      "rounding": v.rounding, "convention": v.convention}
                           for v in self.verdicts},
                "verdicts": {v.metric: {"ok": v.ok, "explanation": v.explanation}
                             for v in self.verdicts},
                "ok": self.ok}


def measure_complexity(model_entry: ResolvedModel, model: nn.Module | None = None
                       ) -> ComplexityReport:
    from .models import build_rtmdet

    model = model if model is not None else build_rtmdet(
        model_entry.architecture.to_arch(), model_entry.num_classes)
    width, height = model_entry.input_size
    params = count_params(model)
    flops = count_flops(model, (height, width))
    measured = {"parameters": params, **flops}
    verdicts = [judge(c, measured) for c in model_entry.claims
                if c.metric in ("params", "flops")]
    return ComplexityReport(model_entry.size, model_entry.name, (height, width), params, flops,
                            verdicts)


def format_table(reports: list[ComplexityReport]) -> str:
    """Markdown table: claimed vs measured, with a verdict that explains each cell."""
    head = ("| size | params (M) claimed | measured | verdict | FLOPs (G) claimed | mmengine | "
            "mmengine+act | verdict |\n|---|---:|---:|---|---:|---:|---:|---|")
    rows = [head]
    for r in reports:
        by = {v.metric: v for v in r.verdicts}
        p, f = by.get("params"), by.get("flops")
        rows.append(
            f"| {r.size} | {p.claim if p else '—'} | {_fmt(r.params, 'params')} | "
            f"{('✅ ' if p.ok else '❌ ') + p.explanation if p else 'no claim'} | "
            f"{f.claim if f else '—'} | {_fmt(r.flops['mmengine'], 'flops')} | "
            f"{_fmt(r.flops['mmengine+act'], 'flops')} | "
            f"{('✅ ' if f.ok else '❌ ') + f.explanation if f else 'no claim'} |")
    return "\n".join(rows)


__all__ = ["ComplexityReport", "Verdict", "count_params", "count_flops", "judge",
           "measure_complexity", "format_table", "published_form", "asdict"]
