"""The CPU reproduce suite's wall time: its plan's estimate against a real run, and a run beside a
competing CPU-bound process against a quiet one, back to back.

    python benchmarks/bench_reproduce_cpu.py [--suite reproduce] [--out FILE.json]

1. ``rtmbench run SUITE --plan --json`` in an empty results directory (no history: the plan's
   cost model alone) gives the estimate;
2. ``rtmbench run SUITE`` on the quiet machine, timed as a whole process;
3. the same run while one other process spins on a core (``python -c "while True: pass"``).

Figures (JSON): the estimate, both wall times, estimate / quiet and contended / quiet, and how
many latency units each run recorded as contended. Targets: the estimate within 2x of the quiet
run; the contended run at most 1.5x the quiet one (a busy machine must not multiply the run's
time: contended units are timed again only within a budget and not while the load persists).
Needs a quiet machine for step 2 to mean anything; takes about three times the suite's time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rtmbench(*args: str) -> list[str]:
    return [sys.executable, "-m", "rtmbench", *args]


def timed_run(suite: str, results: Path, run_id: str) -> dict:
    start = time.perf_counter()
    done = subprocess.run(rtmbench("run", suite, "--run-id", run_id, "--results-dir",
                                   str(results), "--no-progress"),
                          capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    records = [json.loads(line) for line in (results / f"{run_id}.jsonl").read_text()
               .splitlines() if line.strip() and '"event"' not in line]
    latency = [r for r in records if r["check"] == "latency" and r["status"] != "not run"]
    return {"wall_s": round(wall, 1), "exit_code": done.returncode,
            "units": len(records),
            "statuses": {s: sum(r["status"] == s for r in records)
                         for s in sorted({r["status"] for r in records})},
            "latency_units_measured": len(latency),
            "latency_units_contended": sum(bool(r["metrics"].get("contention"))
                                           for r in latency),
            "unit_seconds": {f"{r['model']} {r['check']} {r.get('backend') or ''}"
                             f"/{r.get('device') or ''}".strip(): r["provenance"]
                             .get("duration_s") for r in records},
            "summary": done.stdout.strip().splitlines()[:1]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", default="reproduce")
    p.add_argument("--out", type=Path,
                   default=ROOT / "benchmarks" / "results" / "reproduce-cpu-wall.json")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rtmbench-bench-reproduce-"))
    plan = subprocess.run(rtmbench("run", args.suite, "--plan", "--json", "--results-dir",
                                   str(work / "plan")), capture_output=True, text=True,
                          cwd=ROOT, check=True)
    items = [json.loads(line) for line in plan.stdout.splitlines() if line.strip()]
    estimate = sum(i["estimate_s"] for i in items)
    print(f"plan: {len(items)} units, {sum(i['status'] == 'run' for i in items)} to run, "
          f"estimate {estimate:.0f} s", flush=True)
    quiet = timed_run(args.suite, work / "quiet", "quiet")
    print(f"quiet run: {quiet['wall_s']} s", flush=True)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        contended = timed_run(args.suite, work / "contended", "contended")
    finally:
        hog.kill()
        hog.wait()
    print(f"beside a CPU-bound process: {contended['wall_s']} s", flush=True)
    from rtmbench.measure.environment import cpu_model

    report = {
        "what": "wall time of `rtmbench run SUITE`: plan estimate, quiet, beside one "
                "CPU-bound process (back to back)",
        "command": "python benchmarks/bench_reproduce_cpu.py --suite " + args.suite,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpu": cpu_model(), "usable_cores": len(os.sched_getaffinity(0)),
                    "python": platform.python_version()},
        "suite": args.suite, "plan_estimate_s": round(estimate, 1),
        "plan_units": len(items), "quiet": quiet, "contended": contended,
        "estimate_over_quiet": round(estimate / quiet["wall_s"], 3),
        "contended_over_quiet": round(contended["wall_s"] / quiet["wall_s"], 3),
        "targets": {"estimate_over_quiet": "between 0.5 and 2",
                    "contended_over_quiet": "at most 1.5"},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: report[k] for k in ("plan_estimate_s", "estimate_over_quiet",
                                              "contended_over_quiet")}))
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
