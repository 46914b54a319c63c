"""Latency records with recorded samples, for tests of the gate's statistics.

The samples are the committed smoke baseline's (suites/baselines/smoke.jsonl: what the latency
check wrote on the project's CI machine), drawn again with replacement from a seeded generator
and optionally slowed by a factor. The verdict on such a record follows from the baseline's
numbers alone (tests assert why it is certain), so it is the same on every machine, busy or
quiet; the gate's false-positive rate and power on real timings are benchmark figures
(benchmarks/bench_gate_noise.py), not pass/fail tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtmbench.measure.timing import kept_samples_ms, statistics_of
from rtmbench.records import Record, Run, read_run

BASELINE = Path(__file__).resolve().parents[1] / "suites" / "baselines" / "smoke.jsonl"
STATISTICS = ("median_ms", "mean_ms", "min_ms", "p90_ms", "p99_ms", "stdev_ms", "cv",
              "throughput_ips", "samples")


def baseline_latency(backend: str = "torch") -> Record:
    """The committed smoke baseline's latency record of ``backend`` (torch, onnxruntime)."""
    return next(r for r in read_run(BASELINE).records
                if r.check == "latency" and r.backend == backend)


def with_samples(record: Record, samples_ms, *, run: str | None = None,
                 reference_median_ms: float | None = None) -> Record:
    """``record`` as if the latency check had timed ``samples_ms`` on a quiet machine: the
    statistics, ``ratio_to_reference`` and achieved compute recomputed as the check computes
    them; the reference is the record's own unless given."""
    m = record.metrics
    ref = reference_median_ms if reference_median_ms is not None else m["reference_median_ms"]
    stats = statistics_of([s / 1e3 for s in samples_ms])
    speed = m["median_ms"] / stats["median_ms"]  # achieved GFLOP/s scale with 1 / median
    metrics = {**m, **{k: stats[k] for k in STATISTICS},
               "samples_ms": kept_samples_ms([s / 1e3 for s in samples_ms]),
               "reference_median_ms": ref, "ratio_to_reference": stats["median_ms"] / ref,
               "achieved_gflops": m["achieved_gflops"] * speed,
               "fraction_of_peak": m["fraction_of_peak"] * speed * m["reference_median_ms"] / ref,
               "contention": False, "reference_contention": False,
               "other_processes_cores": 0.0, "outliers_ms": [], "outliers_remeasured": 0}
    return record.model_copy(update={"metrics": metrics, "run": run or record.run})


def resampled(record: Record, *, seed: int, factor: float = 1.0, run: str = "rerun") -> Record:
    """A rerun of ``record``: as many samples, drawn from its own with replacement
    (``numpy.random.default_rng(seed)``), each ``factor`` times slower; the same-run reference
    unchanged (the model slowed down, the machine did not)."""
    samples = np.asarray(record.metrics["samples_ms"], dtype=np.float64)
    drawn = np.random.default_rng(seed).choice(samples, size=len(samples), replace=True)
    return with_samples(record, (drawn * factor).tolist(), run=run)


def as_run(*records: Record) -> Run:
    """Records as a run the gate can compare (in memory, never written)."""
    run_id = records[0].run
    return Run(run_id, Path(f"{run_id}.jsonl"), list(records))
