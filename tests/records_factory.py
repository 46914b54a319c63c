"""Hand-made records in the shape the real checks write, for gate and report tests that need
values no real run on this machine gives (an RTX 3090 claim, a 500-image COCO AP). Tests that
need what the checks really write use the smoke run (tests/conftest.py: ``smoke_run``)."""

from __future__ import annotations

from pathlib import Path

from rtmbench.records import Record, RunWriter

HW = {"cpu": "Test CPU 9000", "cores": 2, "gpu": None}
# exactly the units records() makes: the gate judges a run against its suite's plan
SUITE = Path(__file__).resolve().parent / "suites" / "factory.yaml"
PROV = {"hardware": HW, "git": {"commit": "0" * 40, "dirty": False},
        "packages": {"python": "3.11", "torch": "2.x"},
        "suite": {"name": "factory", "path": str(SUITE)}, "date": "2026-01-01T00:00:00Z"}


def records(run: str = "r", *, ap: float = 0.409, flops: int = 8_089_000_000,
            ratio: float = 2.0, hardware: dict | None = None, latency_status: str = "measured"
            ) -> list[Record]:
    prov = {**PROV, "hardware": hardware or HW}
    cx = Record(run=run, model="rtmdet-tiny", check="complexity", status="verified",
                metrics={"params": 4_896_168, "flops_mmengine": flops,
                         "flops_mmengine+act": flops + 25_000_000, "input_hw": [640, 640]},
                claim={"params": {"value": 4.8, "decimals": 1, "convention": "parameters",
                                  "rounding": "truncate"},
                       "flops": {"value": 8.1, "decimals": 1, "convention": "mmengine"}},
                verdict={"params": {"ok": True, "text": "matches"},
                         "flops": {"ok": True, "text": "matches"}}, provenance=prov)
    box = Record(run=run, model="rtmdet-tiny", check="box_ap", backend="torch", device="cpu",
                 variant="mmyolo",
                 precision="fp32", status="measured",
                 metrics={"num_images": 500, "coco": {"AP": ap},  # stats[0] is AP@100 in both
                          "mmdet-proposal": {"AP": ap}},
                 claim={"box_ap": {"value": 40.9, "decimals": 1}},
                 verdict={"box_ap": {"ok": None, "text": "subset"}},
                 provenance={**prov, "dataset": "/coco", "checkpoint": {"weights": "mmyolo"}})
    lat = Record(run=run, model="rtmdet-tiny", check="latency", backend="torch", device="cpu",
                 precision="fp32", input_size=(640, 640), batch=1, status=latency_status,
                 reason=None if latency_status == "measured" else "no backend",
                 metrics={"median_ms": 40.0 * ratio, "ratio_to_reference": ratio}
                 if latency_status == "measured" else {},
                 verdict={"latency": {"ok": None, "text": "no claim"}}, provenance=prov)
    trt = Record(run=run, model="rtmdet-tiny", check="latency", backend="tensorrt",
                 device="cuda", precision="fp16", input_size=(640, 640), batch=1,
                 status="not run",
                 reason="needs a CUDA GPU",
                 claim={"latency": {"value": 0.98, "decimals": 2, "hardware": "NVIDIA RTX 3090",
                                    "backend": "tensorrt", "precision": "fp16",
                                    "input_size": [640, 640], "batch": 1}},
                 provenance=prov)
    return [cx, box, lat, trt]


def write_run(path: Path, recs: list[Record]) -> Path:
    writer = RunWriter(path, resume=False)
    for r in recs:
        writer.append(r)
    return path
