"""``rtmbench complexity``: params and FLOPs of zoo sizes under each counting convention, each
judged against its published claim (the one judge, :mod:`rtmbench.judge.judgement`)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..judge.judgement import Judgement, Mark, judge_complexity_claim
from ..spec.zoo import ResolvedModel
from ..tables import markdown_table


@dataclass
class SizeComplexity:
    """One size: what was counted, the claims it is judged against, and the verdicts."""

    entry: ResolvedModel
    report: Any  # rtmbench.measure.complexity.ComplexityReport
    claims: dict[str, dict]
    verdicts: dict[str, Judgement]

    @property
    def ok(self) -> bool:
        return all(v.mark is Mark.OK for v in self.verdicts.values())

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.entry.size, "model": self.entry.name,
                "input": list(self.report.input_hw), "params": self.report.params,
                "flops": self.report.flops, "claims": self.claims,
                "verdicts": {m: {"ok": v.mark is Mark.OK, "explanation": v.text}
                             for m, v in self.verdicts.items()},
                "ok": self.ok}


def count_and_judge(entries: Iterable[ResolvedModel]) -> list[SizeComplexity]:
    """Count every entry's params and FLOPs (a progress bar when there are several) and judge
    them against the zoo's claims."""
    from tqdm import tqdm

    from ..measure.complexity import measure_complexity

    entries = list(entries)
    out = []
    for entry in tqdm(entries, desc="counting params and FLOPs", unit="model", file=sys.stderr,
                      disable=len(entries) < 2, leave=False):
        report = measure_complexity(entry)
        claims = {c.metric: entry.claim_record(c) for c in entry.claims
                  if c.metric in ("params", "flops")}
        verdicts = {m: judge_complexity_claim(m, c, report.metrics()) for m, c in claims.items()}
        out.append(SizeComplexity(entry, report, claims, verdicts))
    return out


def complexity_table(rows: list[SizeComplexity]) -> str:
    """Claimed against measured, with a verdict that explains each cell."""
    def verdict(v: Judgement | None) -> str:
        return (("✅ " if v.mark.ok else "❌ ") + v.text) if v else "no claim"

    table = []
    for r in rows:
        p, f = r.claims.get("params"), r.claims.get("flops")
        table.append([r.entry.size, p["value"] if p else "—", f"{r.report.params / 1e6:.3f}",
                      verdict(r.verdicts.get("params")), f["value"] if f else "—",
                      f"{r.report.flops['mmengine'] / 1e9:.3f}",
                      f"{r.report.flops['mmengine+act'] / 1e9:.3f}",
                      verdict(r.verdicts.get("flops"))])
    return markdown_table(["size", "params (M) claimed", "measured", "verdict",
                           "FLOPs (G) claimed", "mmengine", "mmengine+act", "verdict"], table,
                          align=["left", "right", "right", "left", "right", "right", "right",
                                 "left"])


def complexity_summary(rows: list[SizeComplexity]) -> str:
    bad = [r.entry.size for r in rows if not r.ok]
    return (f"{len(rows) - len(bad)}/{len(rows)} sizes match their published params and FLOPs"
            + (f"; MISSING: {', '.join(bad)}" if bad else "."))
