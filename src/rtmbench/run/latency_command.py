"""``rtmbench latency``'s work: time one model as a :class:`~rtmbench.measure.requests.
LatencyRequest` says, judge the model's published latencies beside the result on equal
footing, and say it all as text or as one JSON record. The command line parses the flags into
the request (:func:`rtmbench.run.request_builder.latency_request`), builds the model, calls
:func:`measure_command` and prints."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..judge.judgement import judge_latency_claim
from ..measure.latency import LatencyResult, format_result, measure_latency
from ..measure.requests import LatencyRequest
from ..records import Record
from ..spec.suite import DEFAULT_TOLERANCES
from ..spec.zoo import ResolvedModel


def latency_claims(result: LatencyResult, entry: ResolvedModel) -> list[dict[str, Any]]:
    """Each published latency of the model beside ``result``, judged on equal footing."""
    if result.status != "measured":
        return [{**entry.claim_record(c), "verdict": "not measured"}
                for c in entry.claims_for("latency")]
    record = Record(run="cli", model=entry.name, check="latency", backend=result.backend,
                    device=result.device, precision=result.precision,
                    input_size=(result.input_hw[1], result.input_hw[0]), batch=result.batch,
                    status="measured", metrics=result.metrics,
                    provenance={"environment": result.environment,
                                "hardware": {"gpu": result.environment.get("gpu")}})
    out = []
    for claim in entry.claims_for("latency"):
        data = entry.claim_record(claim)
        j = judge_latency_claim(record, data, DEFAULT_TOLERANCES["latency"])
        out.append({**data, "verdict": str(j.mark), "explanation": j.text})
    return out


def format_claim(claim: dict[str, Any]) -> str:
    """One judged claim as a line under the result."""
    explanation = claim.get("explanation") or ""
    verdict = explanation if explanation.startswith(claim["verdict"]) else (
        f"{claim['verdict']}: {explanation}" if explanation else claim["verdict"])
    return (f"  claim {claim['value']} ms ({claim.get('hardware')}, {claim.get('backend')} "
            f"{claim.get('precision')}, {claim.get('source')}): {verdict}")


@dataclass
class LatencyReport:
    """What ``rtmbench latency`` says: the result and the claims judged beside it."""

    result: LatencyResult
    claims: list[dict[str, Any]]

    @property
    def measured(self) -> bool:
        return self.result.status == "measured"

    def to_json(self) -> str:
        return json.dumps(self.result.to_dict() | {"claims": self.claims}, sort_keys=True)

    def text(self) -> str:
        return "\n".join([format_result(self.result), *map(format_claim, self.claims)])


def measure_command(entry: ResolvedModel, request: LatencyRequest, model: nn.Module, *,
                    progress: bool = True) -> LatencyReport:
    """Time ``model`` (``entry``'s network with its weights) as ``request`` says, and judge
    the zoo's latency claims beside the result."""
    result = measure_latency(entry, request, model, progress=progress)
    return LatencyReport(result, latency_claims(result, entry))


__all__ = ["LatencyReport", "format_claim", "latency_claims", "measure_command"]
