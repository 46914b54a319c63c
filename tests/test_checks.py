from __future__ import annotations

from rtmbench.checks import Unit, hardware_matches, judge_latency, latency_claim
from rtmbench.suite import Tolerance
from rtmbench.zoo import load_zoo


def test_published_gpu_names_match_torch_device_names():
    assert hardware_matches("NVIDIA RTX 3090", "NVIDIA GeForce RTX 3090")
    assert hardware_matches("NVIDIA T4", "Tesla T4")
    assert not hardware_matches("NVIDIA RTX 3090", "NVIDIA H100 80GB HBM3")
    assert not hardware_matches("NVIDIA T4", None)


def test_latency_is_judged_only_on_the_claims_own_gpu_within_the_suite_tolerance():
    tiny = load_zoo().get("tiny")
    unit = Unit(tiny, "latency", "tensorrt", "cuda", "fp16")
    ten = Tolerance(relative=0.1)
    claim = latency_claim(tiny, unit, "NVIDIA GeForce RTX 3090")
    assert float(claim.value) == 0.98 and claim.hardware == "NVIDIA RTX 3090"
    assert judge_latency(claim, 1.05, unit, "NVIDIA GeForce RTX 3090", ten)["ok"] is True
    assert judge_latency(claim, 1.20, unit, "NVIDIA GeForce RTX 3090", ten)["ok"] is False
    other = judge_latency(claim, 9.0, unit, "NVIDIA H100 80GB HBM3", ten)
    assert other["ok"] is None and "different hardware" in other["text"]
    t4 = latency_claim(tiny, unit, "Tesla T4")
    assert float(t4.value) == 2.34  # the claim of the GPU in hand, when the zoo has one
