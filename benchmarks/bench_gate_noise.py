"""How often the latency gate cries wolf on this machine, and how large a slowdown it catches.

The smoke suite's latency units (tiny at 320x320 on CPU, torch and ONNX Runtime, the smoke
suite's timing protocol, re-measures and tolerance: +-50 % on the ratio to the same-run
reference, Mann-Whitney U at alpha 0.01) are run once as the baseline, then:

- **false positives:** ``--reruns`` unchanged reruns, each gated against the baseline exactly as
  ``rtmbench gate RUN --baseline B --suite smoke`` does: the share flagged as a regression
  (with a 95 % Clopper-Pearson interval). Reruns marked contended are counted apart: the gate
  shows them UNRELIABLE and does not gate them.
- **power, injected (``spin``):** ``--runs-per-slowdown`` runs for each ``--slowdowns`` percentage
  in which every timed call of the model is followed by a busy-wait of that percentage of the
  baseline's median (the reference convolution is left alone): real runs of a model that does
  more work, measured end to end (protocol, record, gate). A busy-wait, not a sleep: a sleep
  hands the core to other processes and wakes up late by the scheduler's latency, which grows
  with load, so its length would be noise of its own; a busy-wait on the clock adds exactly the
  intended time of single-thread work, like a change that adds work.
- **power, scaled (``scale``):** each unchanged rerun's samples and ratio multiplied by 1 +
  percentage: no extra runs, the real run-to-run noise of this machine, and a slowdown that is
  exactly proportional (a model that is uniformly slower): the gate's statistics alone, on this
  machine's noise. A real slowdown brings timing noise of its own; ``spin`` measures that.

Accuracy checks are left out unless ``--with-accuracy`` (they run after timing and change no
timing, only the time a run takes). Runs alternate (an unchanged rerun, then one run per
slowdown) so that a drift of the machine's state hits all of them alike. Figures are written,
after every run, to ``--out`` (default ``benchmarks/results/gate-noise-<cpu>-<N>core-<date>.json``)
with the machine, date, command and every run's verdict. Usage:

    python benchmarks/bench_gate_noise.py [--reruns 30] [--slowdowns 5 10 25 50 100]
        [--runs-per-slowdown 5] [--inject both|spin|scale] [--backends torch onnxruntime]
        [--baseline FILE] [--out FILE]

A quick check that it works: ``--reruns 2 --slowdowns 100 --runs-per-slowdown 1
--backends torch``. Exit 0 with the figures; 2 for unusable input (a ``--baseline`` from other
hardware, or without these backends' latency); 3 when the machine is too busy to measure on
(every fresh baseline was contended: the gate judges nothing against a contended baseline).
Timings taken while other processes run are figures of a busy machine: the JSON says how busy
(load average, contended runs, each run's wall time).
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import yaml

from rtmbench.fileio import write_json_atomic
from rtmbench.judge.gate import Row, compare
from rtmbench.judge.judgement import same_hardware
from rtmbench.measure import latency as latency_module
from rtmbench.measure.environment import git_state, hardware, package_versions, utc_now
from rtmbench.measure.timing import collect_environment
from rtmbench.records import Record, Run, load_usable_run, read_run
from rtmbench.run.runner import run_suite
from rtmbench.spec.suite import SuiteBase, find_suite, load_suite

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("torch", "onnxruntime")


# ------------------------------------------------------------------ the suite
def noise_suite(workdir: Path, backends: list[str], with_accuracy: bool) -> SuiteBase:
    """The smoke suite's latency check alone (its protocol, weights, re-measures, tolerance),
    for ``backends``, writing into ``workdir``."""
    smoke = yaml.safe_load(find_suite("smoke").read_text())
    lat = dict(smoke["checks"]["latency"])
    lat["targets"] = [{**t, "backends": [b for b in t["backends"] if b in backends]}
                      for t in lat["targets"]]
    lat["targets"] = [t for t in lat["targets"] if t["backends"]]
    if not lat["targets"]:
        print(f"bench_gate_noise: none of the backends {backends} is in the smoke suite's "
              f"latency targets; choose from {list(BACKENDS)}", file=sys.stderr)
        raise SystemExit(2)
    if not with_accuracy:
        lat.pop("accuracy", None)
    body = {"name": "gate-noise", "description": "the smoke suite's latency units",
            "models": smoke["models"], "checks": {"latency": lat},
            "tolerances": {"latency": smoke["tolerances"]["latency"]},
            "results_dir": str(workdir / "results")}
    path = workdir / "gate-noise.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return load_suite(path)


# ------------------------------------------------------------------ slowdowns
def busy_wait(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@contextmanager
def injected(extra_s: dict[str, float]):
    """Every timed call of the model on backend B is followed by ``extra_s[B]`` seconds of
    busy-waiting; the reference convolution (label 'reference conv') is timed as it is."""
    real = latency_module.measure

    def measure(run, protocol, timer=None, progress=False, label="latency", *args, **kwargs):
        backend = next((b for b in extra_s if f" {b}/" in f" {label}"), None)
        if backend is None or label.startswith("reference"):
            return real(run, protocol, timer, progress, label, *args, **kwargs)
        extra = extra_s[backend]

        def slowed():
            out = run()
            busy_wait(extra)
            return out

        return real(slowed, protocol, timer, progress, label, *args, **kwargs)

    latency_module.measure = measure
    try:
        yield
    finally:
        latency_module.measure = real


def scaled(record: Record, factor: float) -> Record:
    """``record`` with every sample and its ratio ``factor`` times larger (the same reference)."""
    m = dict(record.metrics)
    for key in ("median_ms", "mean_ms", "min_ms", "p90_ms", "p99_ms", "stdev_ms",
                "ratio_to_reference"):
        if isinstance(m.get(key), (int, float)):
            m[key] *= factor
    m["samples_ms"] = [s * factor for s in m.get("samples_ms") or []]
    return record.model_copy(update={"metrics": m})


# ------------------------------------------------------------------ verdicts
def latency_records(run: Run, backends: list[str]) -> dict[str, Record]:
    return {r.backend: r for r in run.latest_by_key().values()
            if r.check == "latency" and r.backend in backends}


def latency_rows(run: Run, baseline: Run, suite: SuiteBase,
                 wall_s: float | None = None) -> dict[str, dict]:
    """backend -> what the gate says about its latency unit, and why (``wall_s``: how long
    the whole run took)."""
    out = {}
    records = {r.backend: r for r in run.latest_by_key().values() if r.check == "latency"}
    for row in compare(run, baseline, suite):
        backend = next((b for b in records if f"latency {b}/" in row.metric), None)
        if backend is None:
            continue
        out[backend] = summarise(row, records[backend])
        if wall_s is not None:
            out[backend]["run_wall_s"] = round(wall_s, 1)
    return out


def summarise(row: Row, record: Record) -> dict:
    m = record.metrics
    beyond_but_noise = "not significant" in row.verdict
    p = re.search(r"p=([0-9.e+-]+)", row.verdict)
    return {"verdict": ("regression" if row.regression else "unreliable" if row.unreliable
                        else "not run" if not record.status.has_measurement
                        else "not gated" if "not gated" in row.verdict else "ok"),
            "beyond_tolerance_not_significant": beyond_but_noise,
            "p_value": float(p.group(1)) if p else None, "delta": row.delta,
            "ratio_to_reference": m.get("ratio_to_reference"), "median_ms": m.get("median_ms"),
            "reference_median_ms": m.get("reference_median_ms"), "samples": m.get("samples"),
            "contention": m.get("contention"),
            "other_processes_cores": m.get("other_processes_cores"),
            "outliers_remeasured": m.get("outliers_remeasured"),
            "attempts": record.provenance.get("attempts"), "text": row.verdict}


def rate(outcomes: list[dict]) -> dict:
    """Flagged among the gated (not unreliable, measured) outcomes, with a 95 % interval."""
    from scipy.stats import binomtest

    gated = [o for o in outcomes if o["verdict"] in ("ok", "regression")]
    flagged = sum(o["verdict"] == "regression" for o in gated)
    summary = {"runs": len(outcomes), "gated": len(gated), "flagged": flagged,
               "unreliable": sum(o["verdict"] == "unreliable" for o in outcomes),
               "not_run": sum(o["verdict"] == "not run" for o in outcomes),
               "beyond_tolerance_not_significant": sum(o["beyond_tolerance_not_significant"]
                                                       for o in gated),
               "rate": flagged / len(gated) if gated else None, "ci95": None}
    if gated:
        ci = binomtest(flagged, len(gated)).proportion_ci(0.95, method="exact")
        summary["ci95"] = [round(ci.low, 4), round(ci.high, 4)]
    return summary


# ------------------------------------------------------------------ the benchmark
def default_out() -> Path:
    hw = hardware()
    cpu = re.sub(r"[^a-z0-9]+", "-", str(hw["cpu"]).lower()).strip("-")[:40]
    return ROOT / "benchmarks" / "results" / \
        f"gate-noise-{cpu}-{hw['cores']}core-{utc_now()[:10]}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reruns", type=int, default=30, help="unchanged reruns (default 30)")
    parser.add_argument("--slowdowns", type=float, nargs="*", default=[5, 10, 25, 50, 100],
                        help="injected slowdowns, percent of the baseline's median")
    parser.add_argument("--runs-per-slowdown", type=int, default=5,
                        help="spin-injected runs per slowdown (default 5)")
    parser.add_argument("--inject", choices=("both", "spin", "scale"), default="both")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--baseline", help="a run file to gate against (on this machine's "
                        "hardware, e.g. suites/baselines/smoke.jsonl on the CI machine); "
                        "default: a fresh run here")
    parser.add_argument("--baseline-tries", type=int, default=3,
                        help="fresh baselines taken until one is not contended (default 3)")
    parser.add_argument("--with-accuracy", action="store_true",
                        help="keep the smoke suite's accuracy check (slower, same timings)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.reruns < 0 or args.runs_per_slowdown < 0 or args.baseline_tries < 1:
        parser.error("--reruns and --runs-per-slowdown must be 0 or more, --baseline-tries 1 "
                     "or more")
    out = args.out or default_out()
    started = time.perf_counter()
    spin = args.inject in ("both", "spin") and args.runs_per_slowdown > 0
    scale = args.inject in ("both", "scale")

    with tempfile.TemporaryDirectory(prefix="gate-noise-") as tmp:
        suite = noise_suite(Path(tmp), args.backends, args.with_accuracy)
        tol = suite.tolerance("latency")
        report: dict = {
            "benchmark": "gate_noise", "date": utc_now(),
            "command": shlex.join(["python", "benchmarks/bench_gate_noise.py",
                                   *(argv if argv is not None else sys.argv[1:])]),
            "machine": {**hardware(), **{k: v for k, v in collect_environment().items()
                                         if k in ("cpu_cores_usable", "torch_threads",
                                                  "load_average")}},
            "git": git_state(ROOT), "packages": package_versions(),
            "suite": {"units": f"tiny latency {'/'.join(args.backends)} cpu fp32 (smoke)",
                      "tolerance": tol.describe(), "alpha": tol.alpha,
                      "latency": suite.model_dump(mode="json")["checks"]["latency"]},
            "inject": {"spin": "busy-wait after every timed model call, percent of the "
                               "baseline's median" if spin else None,
                       "scale": "unchanged reruns' samples and ratio x (1 + percent)"
                                if scale else None},
            "complete": False}

        def save() -> None:
            report["wall_s"] = round(time.perf_counter() - started, 1)
            write_json_atomic(out, report)

        if args.baseline:
            baseline = load_usable_run(args.baseline, Path(tmp) / "results", "baseline")
            report["baseline"] = {"source": args.baseline}
            base_lat = latency_records(baseline, args.backends)
        else:  # a contended baseline gates nothing: taken again, up to --baseline-tries times
            for attempt in range(1, args.baseline_tries + 1):
                baseline = read_run(run_suite(suite, run_id=f"baseline-{attempt}",
                                              progress=False).path)
                base_lat = latency_records(baseline, args.backends)
                if not any(r.metrics.get("contention") for r in base_lat.values()):
                    break
                print(f"baseline {attempt}/{args.baseline_tries}: contended", file=sys.stderr)
            report["baseline"] = {"source": "a fresh run on this machine",
                                  "tries": attempt}
        missing = [b for b in args.backends if b not in base_lat
                   or not base_lat[b].status.has_measurement]
        if missing:
            print(f"bench_gate_noise: the baseline has no measured latency for {missing}",
                  file=sys.stderr)
            return 2
        report["baseline"] |= {b: {"median_ms": r.metrics["median_ms"],
                                   "ratio_to_reference": r.metrics.get("ratio_to_reference"),
                                   "samples": r.metrics.get("samples"),
                                   "contention": r.metrics.get("contention"),
                                   "hardware": r.hardware} for b, r in base_lat.items()}
        other = [b for b, r in base_lat.items() if not same_hardware(r.hardware, hardware())]
        if other:
            print(f"bench_gate_noise: the baseline's {other} latency was measured on "
                  f"{base_lat[other[0]].hardware}, not on this machine ({hardware()}): the gate "
                  f"does not compare across machines; leave --baseline out to make one here",
                  file=sys.stderr)
            return 2
        if any(r.metrics.get("contention") for r in base_lat.values()):
            report["not_run"] = ("the baseline was contended: the gate judges nothing against "
                                 "it (every rerun would be UNRELIABLE)")
            save()
            print("bench_gate_noise: not run: the baseline was contended (other processes "
                  "took the CPU while it was timed); run it on a quieter machine",
                  file=sys.stderr)
            return 3
        unchanged: list[dict] = []
        spun: dict[float, list[dict]] = {p: [] for p in args.slowdowns} if spin else {}
        scaled_out: dict[float, list[dict]] = {p: [] for p in args.slowdowns} if scale else {}
        rounds = max(args.reruns, args.runs_per_slowdown if spin else 0)
        for i in range(rounds):
            if i < args.reruns:
                t0 = time.perf_counter()
                run = read_run(run_suite(suite, run_id=f"rerun-{i}", progress=False).path)
                rows = latency_rows(run, baseline, suite, time.perf_counter() - t0)
                unchanged.append(rows)
                for pct in scaled_out:
                    slow = Run(run.run_id, run.path, [scaled(r, 1 + pct / 100)
                                                      if r.check == "latency" else r
                                                      for r in run.records])
                    scaled_out[pct].append(latency_rows(slow, baseline, suite))
                print(f"rerun {i + 1}/{args.reruns}: " + ", ".join(
                    f"{b} {o['verdict']} ({o['delta']})" for b, o in rows.items()),
                    file=sys.stderr)
            for pct in spun:
                if i >= args.runs_per_slowdown:
                    continue
                extra = {b: r.metrics["median_ms"] / 1e3 * pct / 100 for b, r in base_lat.items()}
                t0 = time.perf_counter()
                with injected(extra):
                    run = read_run(run_suite(suite, run_id=f"spin-{pct:g}-{i}",
                                             progress=False).path)
                rows = latency_rows(run, baseline, suite, time.perf_counter() - t0)
                spun[pct].append(rows)
                print(f"+{pct:g}% run {i + 1}/{args.runs_per_slowdown}: " + ", ".join(
                    f"{b} {o['verdict']} ({o['delta']})" for b, o in rows.items()),
                    file=sys.stderr)
            report["false_positives"] = {
                b: rate([rows[b] for rows in unchanged if b in rows]) for b in args.backends}
            report["detection"] = {
                kind: {f"{pct:g}%": {b: rate([rows[b] for rows in runs if b in rows])
                                     for b in args.backends}
                       for pct, runs in table.items()}
                for kind, table in (("spin", spun), ("scale", scaled_out)) if table}
            report["runs"] = {"unchanged": unchanged,
                              "spin": {f"{p:g}%": v for p, v in spun.items()}}
            report["machine"]["load_average_end"] = collect_environment()["load_average"]
            save()
    report["complete"] = True
    save()
    print_summary(report)
    print(f"written to {out}", file=sys.stderr)
    return 0


def print_summary(report: dict) -> None:
    def cell(r: dict) -> str:
        if r["rate"] is None:
            return f"— ({r['unreliable']} unreliable)"
        lo, hi = r["ci95"]
        return (f"{r['flagged']}/{r['gated']} = {r['rate']:.0%} [{lo:.0%}, {hi:.0%}]"
                + (f", {r['unreliable']} unreliable" if r["unreliable"] else ""))

    backends = list(report["false_positives"])
    print(f"| flagged by the gate ({report['suite']['tolerance']}, alpha "
          f"{report['suite']['alpha']:g}) | " + " | ".join(backends) + " |")
    print("|---|" + "---|" * len(backends))
    print("| unchanged reruns (false positives) | "
          + " | ".join(cell(report["false_positives"][b]) for b in backends) + " |")
    for kind, table in report.get("detection", {}).items():
        for pct, by_backend in table.items():
            print(f"| +{pct} slower ({kind}) | "
                  + " | ".join(cell(by_backend[b]) for b in backends) + " |")


if __name__ == "__main__":
    sys.exit(main())
