"""Simulated histories of runs, made from the smoke baseline's own records
(``suites/baselines/smoke.jsonl``): each run's latency samples are the baseline's resampled with
replacement, times the run's level, with per-sample noise of a few per cent, and the machine's
speed of the day applied to the samples and to the reference alike (the normalisation cancels
it, as it does on a real machine). Nothing is timed; the same seed gives the same runs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import statistics
from pathlib import Path

from rtmbench.records import Record, Run, parse_record

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / "suites" / "baselines" / "smoke.jsonl"


@functools.cache
def baseline_records() -> tuple[Record, ...]:
    return tuple(parse_record(json.loads(line)) for line in BASELINE.read_text().splitlines()
                 if line.strip() and '"event"' not in line)


def commit_of(index: int, tag: str = "") -> str:
    return hashlib.sha1(f"commit {tag}{index}".encode()).hexdigest()


def _latency(record: Record, rng: random.Random, level: float, noise: float,
             speed: float) -> dict:
    m = dict(record.metrics)
    ref = m["reference_median_ms"] * speed
    samples = [round(rng.choice(record.metrics["samples_ms"]) * level * speed
                     * (1 + rng.gauss(0, noise)), 4) for _ in record.metrics["samples_ms"]]
    median = statistics.median(samples)
    mean = statistics.fmean(samples)
    stdev = statistics.stdev(samples)
    m |= {"samples_ms": samples, "samples": len(samples), "median_ms": median,
          "mean_ms": mean, "min_ms": min(samples), "stdev_ms": stdev, "cv": stdev / mean,
          "p90_ms": sorted(samples)[int(0.9 * (len(samples) - 1))],
          "p99_ms": max(samples), "reference_median_ms": ref,
          "ratio_to_reference": median / ref, "contention": False,
          "reference_contention": False, "outliers_ms": [], "outliers_remeasured": 0}
    return m


def simulated_run(index: int, level: float, rng: random.Random, *, noise: float = 0.03,
                  cpu: str | None = None, tag: str = "", status: str | None = None,
                  contended: bool = False) -> Run:
    """Run ``index`` of a history: its latency ``level`` times the baseline's; ``cpu`` names
    another CPU model (another machine); ``status='failed'`` fails its latency units."""
    run_id = f"sim{tag}-{index:03d}"
    speed = 1 + rng.gauss(0, 0.02)
    day = f"2026-{1 + index // 28:02d}-{1 + index % 28:02d}T00:00:00Z"
    out = []
    for rec in baseline_records():
        prov = {**rec.provenance, "date": day,
                "git": {"commit": commit_of(index, tag), "dirty": False}}
        if cpu is not None:
            prov["hardware"] = {**prov["hardware"], "cpu": cpu}
            if "environment" in prov:
                prov["environment"] = {**prov["environment"], "cpu": cpu}
        update: dict = {"run": run_id, "provenance": prov}
        if rec.check == "latency":
            update["metrics"] = _latency(rec, rng, level, noise, speed)
            if contended:
                update["metrics"] |= {"contention": True, "other_processes_cores": 1.2}
            if status == "failed":
                update |= {"status": "failed", "reason": "RuntimeError: boom", "metrics": {}}
        out.append(Record.model_validate(rec.model_dump() | update))
    return Run(run_id, Path(f"{run_id}.jsonl"), out)


def simulated_history(levels: list[float], seed: int, **kwargs) -> list[Run]:
    rng = random.Random(seed)
    return [simulated_run(i, level, rng, **kwargs) for i, level in enumerate(levels)]


def write(run: Run, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{run.run_id}.jsonl"
    path.write_text("".join(r.to_json() + "\n" for r in run.records))
    return path
