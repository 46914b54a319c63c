"""The whole seed table on one machine, timed stage by stage (issue 11): one command.

    python benchmarks/bench_reproduce_gpu.py [--images N] [--sizes tiny x s m l]
        [--budget-s S] [--out benchmarks/results/reproduce-gpu-<gpu>.json]

1. Generates a COCO-shaped data set of N JPEGs at val2017's size distribution and ~7.4 objects
   per image (``make_synthetic_coco(profile="coco")``) on this machine's own cores.
2. Per size (in ``--sizes`` order; tiny and x first by default, the issue's two targets), times
   ``rtmbench evaluate`` on those images for both weight sets' test settings (``pre-pr9494``:
   nms_pre 1000, score_thr 0.05, IoU 0.6, max 100; ``default``: 30000 / 0.001 / 0.65 / 300),
   stage by stage (decode+resize+pad in the workers, loader wait, H2D, forward,
   post-processing, D2H, writing predictions, reading them back, scoring, detections.json);
   every size's evaluation first, then the latency suite: torch eager (a CUDA graph replay
   on GPU) and torch-compile, FP16 and FP32 on CUDA (FP32, plus ONNX Runtime, on CPU),
   each with the reference convolution
   measured in the same run on the same backend, compile time apart. On CUDA, when tiny's or
   x's compiled FP16 misses its speed-up target, a torch.profiler table of the heaviest
   kernels (eager and compiled FP16) says where the time goes. ``--before-images`` also runs
   the pre-issue-11 evaluation loop (benchmarks/baseline) for before/after stage shares.
3. Writes the JSON after every step (a timeout still leaves data) and, at the end, a short
   markdown table on stdout.

Weights: no checkpoints here, so every size runs with seeded random weights scaled to keep
activations O(1) ("well-conditioned"), with the classifier and box regressor re-scaled so
that about 1.5% of (prior, class) pairs pass score_thr 0.001 and 0.03% pass 0.05, and boxes
are a few strides wide: a guess at a trained RTMDet's post-processing load, not a
measurement of one. Box AP on generated images with such weights means nothing; timings are
real. ``--weights random-init`` uses the zoo's plain random initialisation instead (every
pair passes 0.001: the worst case for NMS).

Projection (``projected: true``): when N < 5,000 or a size or test setting was skipped
(``--budget-s``), the full table (5 sizes x 2 weight sets x 5,000 images + latency) is
projected from measured per-image stage times: each evaluation stage scales linearly with
images; for a size not measured, the forward stage scales with its FLOPs between the
measured sizes (least squares a + b x FLOPs) and every other stage takes the measured sizes'
mean; its latency section takes the measured sizes' mean wall time. Every figure says the
image count it was measured on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from _weights import REPO, WEIGHTS_NOTE, calibrated_model

from rtmbench.data import make_synthetic_coco
from rtmbench.measure.eval_plan import EvaluationRequest
from rtmbench.measure.evaluation import evaluate
from rtmbench.measure.latency import measure_latency
from rtmbench.measure.requests import BackendOptions, LatencyRequest, Protocol
from rtmbench.spec.zoo import load_zoo

FULL_IMAGES = 5000
WEIGHT_SETS = ("pre-pr9494", "default")  # the seed's (MMYOLO) and MMDetection 3.x settings
ALL_SIZES = ("tiny", "x", "s", "m", "l")
TARGETS = {"tiny": 1.5, "x": 1.2}  # compiled FP16 speed-up over eager CUDA graph (issue 11)
EVAL_STAGES = ("loader_wait", "h2d_normalize", "forward", "postprocess", "d2h",
               "write_wait", "read_predictions", "score", "write_detections_wait")


def gpu_label(name: str | None) -> str:
    return re.sub(r"[^a-z0-9]+", "-", (name or "cpu").lower()).strip("-")


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- evaluation
def run_eval(entry, weights_set: str, coco: Path, model, args, work: Path) -> dict:
    test_cfg = entry.test_cfg if weights_set == "default" else entry.test_cfg_variants[weights_set]
    out_dir = work / f"eval-{entry.size}-{weights_set}"
    shutil.rmtree(out_dir, ignore_errors=True)
    start = time.perf_counter()
    result = evaluate(entry, model, EvaluationRequest(
        coco, out_dir, batch_size=args.batch_size, workers=args.workers, device=args.device,
        progress=False, test_cfg=test_cfg, precision=args.eval_precision, timings=True))
    wall = time.perf_counter() - start
    timings = result.timings
    shutil.rmtree(out_dir, ignore_errors=True)
    images = timings.get("newly_inferred", result.num_images)
    stages = timings.get("stages_s", {})
    return {"images": images, "precision": args.eval_precision, "batch_size": args.batch_size,
            "loader_workers": timings.get("loader_workers"), "test_cfg": test_cfg.model_dump(),
            "wall_s": round(wall, 3), "images_per_s": round(images / wall, 2),
            "stage_seconds": stages, "stage_share": shares(stages, wall),
            "counts": timings.get("counts", {}),
            "box_ap_meaningless": result.metrics.get("coco", {}).get("AP")}


def run_eval_before(entry, weights_set: str, coco: Path, model, args, work: Path) -> dict:
    """The pre-issue-11 evaluation loop (benchmarks/baseline) on the first images, same
    batch size and workers: stage shares before, for the same machine and run."""
    from baseline.legacy import evaluate_before

    test_cfg = entry.test_cfg if weights_set == "default" else entry.test_cfg_variants[weights_set]
    out_dir = work / f"before-{entry.size}-{weights_set}"
    shutil.rmtree(out_dir, ignore_errors=True)
    timings: dict = {}
    workers = args.workers
    if workers is None:
        from rtmbench.measure.evaluation import default_workers

        workers = default_workers(args.device)
    evaluate_before(entry, coco, model=model, out_dir=out_dir, batch_size=args.batch_size,
                    workers=workers, device=args.device, test_cfg=test_cfg,
                    limit=args.before_images, timings=timings)
    shutil.rmtree(out_dir, ignore_errors=True)
    wall, images = timings["wall_s"], timings["newly_inferred"]
    stages = timings["stages_s"]
    return {"images": images, "wall_s": round(wall, 3), "images_per_s": round(images / wall, 2),
            "batch_size": args.batch_size, "loader_workers": workers, "precision": "fp32",
            "stage_seconds": stages,
            "stage_share": {k: round(v / wall, 3) for k, v in stages.items()}}


def shares(stage_seconds: dict, wall: float) -> dict:
    return {k: round(v / wall, 3) for k, v in stage_seconds.items()
            if k in EVAL_STAGES and wall > 0}


def eval_stage_totals(evals: dict) -> dict:
    totals: dict[str, float] = {}
    for e in evals.values():
        for stage, seconds in e["stage_seconds"].items():
            totals[stage] = round(totals.get(stage, 0.0) + seconds, 4)
    return totals


# --------------------------------------------------------------------------- latency
def latency_units(device: str, backends: list[str], precisions: list[str]) -> list[tuple]:
    return [(b, p) for p in precisions for b in backends
            if not (device == "cpu" and p == "fp16")]


def run_latency(entry, model, backend: str, precision: str, args) -> dict:
    options = BackendOptions(compile_mode=args.compile_mode if backend == "torch-compile"
                             else None)
    protocol = Protocol(warmup_s=args.latency_warmup, min_iterations=args.latency_iterations,
                        min_duration_s=args.latency_duration)
    start = time.perf_counter()
    result = measure_latency(entry, LatencyRequest(backend, args.device, precision,
                                                   protocol=protocol, options=options), model)
    out = {"status": result.status, "reason": result.reason,
           "wall_s": round(time.perf_counter() - start, 2)}
    if result.status == "measured":
        m = result.metrics
        details = dict(result.details)
        check = details.pop("check", None)
        out |= {"median_ms": round(m["median_ms"], 4), "p90_ms": round(m["p90_ms"], 4),
                "cv": round(m["cv"], 4), "samples": m["samples"],
                "contention": m["contention"],
                "reference_median_ms": round(result.reference["metrics"]["median_ms"], 4),
                "ratio_to_reference": round(result.ratio_to_reference, 4),
                "achieved_gflops": round(result.achieved_gflops, 1),
                "reference_gflops": round(result.peak_gflops, 1),
                "compile_s": details.get("compile_s"),
                "reference_compile_s": result.reference["details"].get("compile_s"),
                "check": ({k: check[k] for k in ("ok", "worst_ratio", "tolerance")}
                          if isinstance(check, dict) and "ok" in check else check),
                "details": details}
    return out


def kernel_table(entry, model, args, top: int = 12) -> dict:
    """torch.profiler: the heaviest CUDA kernels of eager and compiled FP16 at batch 1."""
    from torch.profiler import ProfilerActivity, profile

    from rtmbench.measure.backends import get_backend

    x = torch.randn(1, 3, 640, 640, generator=torch.Generator().manual_seed(0))
    tables = {}
    for name, backend in (("torch", get_backend("torch")),
                          ("torch-compile", get_backend("torch-compile",
                                                        mode=args.compile_mode))):
        runner = backend.prepare(model, x, "cuda", "fp16")
        for _ in range(20):
            runner.run()
        runner.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(20):
                runner.run()
            runner.synchronize()
        events = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
        if not events:
            tables[name] = {"error": "the profiler recorded no CUDA kernels"}
            continue
        key = "self_device_time_total" if hasattr(events[0], "self_device_time_total") \
            else "self_cuda_time_total"
        total = sum(getattr(e, key) for e in events) or 1.0
        events.sort(key=lambda e: getattr(e, key), reverse=True)
        tables[name] = {"kernels_per_inference": sum(e.count for e in events) / 20,
                        "gpu_us_per_inference": round(total / 20, 1),
                        "top": [{"kernel": e.key[:120], "calls_per_inference": e.count / 20,
                                 "us_per_inference": round(getattr(e, key) / 20, 2),
                                 "share": round(getattr(e, key) / total, 4)}
                                for e in events[:top]]}
        del runner
        torch.cuda.empty_cache()
    return tables


# --------------------------------------------------------------------------- projection
def project(report: dict, zoo, sizes_all: tuple[str, ...]) -> dict:
    """The full table's wall time from what was measured (module docstring)."""
    flops = {s: float(next(c.value for c in zoo.get(s).claims if c.metric == "flops"))
             for s in sizes_all}
    per_image: dict[str, dict[str, dict[str, float]]] = {}  # size -> weights -> stage -> s/img
    latency_wall: dict[str, float] = {}
    for size, data in report["sizes"].items():
        for ws, e in data.get("eval", {}).items():
            if e.get("images"):
                per_image.setdefault(size, {})[ws] = {
                    k: v / e["images"] for k, v in e["stage_seconds"].items()
                    if k in EVAL_STAGES}
                per_image[size][ws]["other"] = max(
                    0.0, e["wall_s"] / e["images"] - sum(per_image[size][ws].values()))
        if data.get("latency_section_s"):
            latency_wall[size] = data["latency_section_s"]
    rows, basis = {}, {}
    for size in sizes_all:
        rows[size] = {}
        for ws in WEIGHT_SETS:
            measured = per_image.get(size, {}).get(ws)
            if measured:
                rows[size][ws] = {k: v * FULL_IMAGES for k, v in measured.items()}
                basis[f"{size}/{ws}"] = "measured per image, scaled to 5,000 images"
                continue
            known = [(s, per_image[s][ws]) for s in per_image if ws in per_image[s]]
            if not known:
                rows[size][ws] = None
                basis[f"{size}/{ws}"] = "nothing measured for these test settings"
                continue
            stages = {k for _, st in known for k in st}
            est = {k: statistics.mean(st.get(k, 0.0) for _, st in known) for k in stages}
            xs, ys = [flops[s] for s, _ in known], [st.get("forward", 0.0) for _, st in known]
            if len(known) >= 2 and len(set(xs)) >= 2:
                mx, my = statistics.mean(xs), statistics.mean(ys)
                b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum(
                    (x - mx) ** 2 for x in xs)
                est["forward"] = max(0.0, my + b * (flops[size] - mx))
            else:
                est["forward"] = ys[0] * flops[size] / xs[0]
            rows[size][ws] = {k: v * FULL_IMAGES for k, v in est.items()}
            basis[f"{size}/{ws}"] = (f"projected from {', '.join(s for s, _ in known)}: "
                                     f"forward by FLOPs, other stages their mean")
        if size in latency_wall:
            rows[size]["latency"] = latency_wall[size]
        elif latency_wall:
            rows[size]["latency"] = statistics.mean(latency_wall.values())
            basis[f"{size}/latency"] = "projected: mean of the measured sizes' latency sections"
        else:
            rows[size]["latency"] = None
    per_size = {s: round(sum(sum(v.values()) if isinstance(v, dict) else (v or 0.0)
                             for v in r.values()), 1) for s, r in rows.items()}
    stage_totals: dict[str, float] = {}
    for r in rows.values():
        for ws in WEIGHT_SETS:
            for k, v in (r.get(ws) or {}).items():
                stage_totals[k] = stage_totals.get(k, 0.0) + v
        stage_totals["latency_section"] = stage_totals.get("latency_section", 0.0) + (
            r.get("latency") or 0.0)
    total = sum(per_size.values())
    incomplete = [k for k, v in basis.items() if v.startswith("nothing")]
    return {"total_wall_s": round(total, 1), "per_size_s": per_size,
            "stage_seconds": {k: round(v, 1) for k, v in sorted(stage_totals.items(),
                                                                key=lambda kv: -kv[1])},
            "stage_share": {k: round(v / total, 3) for k, v in stage_totals.items()} if total
            else {}, "basis": basis, "incomplete": incomplete,
            "excludes": "data generation, process start, model download (none here)"}


# --------------------------------------------------------------------------- table
def markdown(report: dict) -> str:
    lines = [f"## reproduce benchmark on {report['gpu'] or report['host']['cpu']} "
             f"({report['device']}, {report['images_measured']} images measured)", "",
             "| size | eval img/s (pre-pr9494 / default) | top stage | "
             "eager fp16 ms | compiled fp16 ms | speed-up | eager fp32 ms | compiled fp32 ms |"
             " ref conv ms (eager) | compile s |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]

    def ms(lat, b, p, key="median_ms"):
        v = lat.get(b, {}).get(p, {}).get(key)
        return f"{v:.3f}" if isinstance(v, float) else "—"

    for size, d in report["sizes"].items():
        ev = d.get("eval", {})
        ips = " / ".join(f"{ev[w]['images_per_s']:.0f}" if w in ev else "—" for w in WEIGHT_SETS)
        stages = d.get("stage_seconds") or {}
        top = max(((k, v) for k, v in stages.items() if k in EVAL_STAGES),
                  key=lambda kv: kv[1], default=("—", 0))
        total = sum(v for k, v in stages.items() if k in EVAL_STAGES) or 1
        lat = d.get("latency_ms", {})
        prec = "fp16" if report["device"] == "cuda" else "fp32"
        speed = d.get("compile_speedup", {}).get(prec)
        lines.append(
            f"| {size} | {ips} | {top[0]} {top[1] / total:.0%} | {ms(lat, 'torch', 'fp16')} | "
            f"{ms(lat, 'torch-compile', 'fp16')} | "
            f"{f'{speed:.2f}x' if speed else '—'} | {ms(lat, 'torch', 'fp32')} | "
            f"{ms(lat, 'torch-compile', 'fp32')} | "
            f"{ms(lat, 'torch', prec, 'reference_median_ms')} | "
            f"{lat.get('torch-compile', {}).get(prec, {}).get('compile_s', '—')} |")
    full = report.get("full_table", {})
    lines += ["", f"full table (5 sizes x 2 weight sets x 5,000 images + latency): "
              f"**{report.get('total_wall_s')} s** "
              f"({'projected' if report.get('projected') else 'measured'}); this run "
              f"{report.get('run_wall_s')} s; stage shares: "
              + ", ".join(f"{k} {v:.0%}" for k, v in sorted(
                  full.get("stage_share", {}).items(), key=lambda kv: -kv[1])[:6]),
              f"weights: {report['weights']}"]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto", help="cuda, cpu or auto")
    p.add_argument("--images", type=int, default=None,
                   help="generated images (default 5000 on CUDA, 16 on CPU)")
    p.add_argument("--sizes", nargs="+", default=None, help="default: tiny x s m l (CPU: tiny)")
    p.add_argument("--weights-sets", nargs="+", default=list(WEIGHT_SETS),
                   choices=WEIGHT_SETS)
    p.add_argument("--budget-s", type=float, default=None,
                   help="stop starting new steps past this many seconds; project the rest")
    p.add_argument("--batch-size", type=int, default=None, help="default 32 on CUDA, 8 on CPU")
    p.add_argument("--workers", type=int, default=None, help="loader workers (default: rule)")
    p.add_argument("--eval-precision", choices=("fp32", "fp16"), default="fp32")
    p.add_argument("--weights", choices=("calibrated", "random-init"), default="calibrated")
    p.add_argument("--latency-backends", nargs="+", default=None,
                   help="default: torch torch-compile (CPU: + onnxruntime)")
    p.add_argument("--precisions", nargs="+", default=["fp16", "fp32"])
    p.add_argument("--compile-mode", default="auto",
                   choices=("auto", "default", "reduce-overhead", "max-autotune"))
    p.add_argument("--latency-warmup", type=float, default=0.5)
    p.add_argument("--latency-iterations", type=int, default=100)
    p.add_argument("--latency-duration", type=float, default=1.0)
    p.add_argument("--profile", choices=("missed", "always", "never"), default="missed",
                   help="CUDA kernel tables (eager and compiled FP16) for tiny and x: when the "
                   "compiled speed-up target is missed (default), always or never")
    p.add_argument("--before-images", type=int, default=None,
                   help="also run the pre-issue-11 evaluation loop on this many images, for "
                   "before/after stage shares (default 200 on CUDA, 0 on CPU)")
    p.add_argument("--before-sizes", nargs="+", default=["tiny", "x"])
    p.add_argument("--skip-eval", action="store_true")
    p.add_argument("--skip-latency", action="store_true")
    p.add_argument("--zoo", type=Path, default=None, help="zoo YAML (default: the shipped one)")
    p.add_argument("--data", type=Path, default=None,
                   help="generated data set folder (default: a temporary one)")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON (default benchmarks/results/reproduce-gpu-<gpu>.json)")
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = args.device == "cuda"
    args.images = args.images or (FULL_IMAGES if cuda else 16)
    args.sizes = args.sizes or (list(ALL_SIZES) if cuda else ["tiny"])
    args.batch_size = args.batch_size or (32 if cuda else 8)
    if args.before_images is None:
        args.before_images = 200 if cuda else 0
    args.latency_backends = args.latency_backends or (
        ["torch", "torch-compile"] if cuda else ["torch", "torch-compile", "onnxruntime"])
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    zoo = load_zoo(args.zoo)
    from rtmbench.measure.timing import collect_environment

    env = collect_environment()
    gpu = env.get("gpu") if args.device == "cuda" else None
    name = f"reproduce-gpu-{gpu_label(gpu)}.json"
    out = args.out or REPO / "benchmarks" / "results" / name
    if out.is_dir() or str(out).endswith("/"):
        out = out / name
    report: dict = {
        "schema": 1, "benchmark": "benchmarks/bench_reproduce_gpu.py", "gpu": gpu,
        "device": args.device, "host": env, "argv": sys.argv[1:] if argv is None else argv,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "python": platform.python_version(),
        "weights": WEIGHTS_NOTE[args.weights],
        "full_table_images": FULL_IMAGES, "images_measured": args.images,
        "eval_precision": args.eval_precision, "batch_size": args.batch_size,
        "compile_mode": args.compile_mode, "sizes": {}, "complete": False, "skipped": []}

    def over_budget(estimate: float) -> bool:
        return (args.budget_s is not None
                and time.perf_counter() - t0 + estimate > args.budget_s)

    def save() -> None:
        report["run_wall_s"] = round(time.perf_counter() - t0, 1)
        report["full_table"] = project(report, zoo, ALL_SIZES)
        report["total_wall_s"] = report["full_table"]["total_wall_s"]
        measured_all = (args.images >= FULL_IMAGES and not report["skipped"]
                        and set(report["sizes"]) == set(ALL_SIZES)
                        and all(len(d.get("eval", {})) == len(WEIGHT_SETS)
                                for d in report["sizes"].values()))
        report["projected"] = not measured_all
        write_json(out, report)

    work = Path(tempfile.mkdtemp(prefix="rtmbench-repro-"))
    estimates: dict[str, float] = {}
    flops = {s: float(next(c.value for c in zoo.get(s).claims if c.metric == "flops"))
             for s in ALL_SIZES}

    def size_data(size: str) -> dict:
        return report["sizes"].setdefault(size, {"flops_g": flops[size]})

    def eval_phase(size: str, coco: Path) -> None:
        entry, data = zoo.get(size), size_data(size)
        model = calibrated_model(entry, args.weights)
        data.setdefault("eval", {})
        for ws in args.weights_sets:
            # the next evaluation costs about the last one, plus its forward's share per FLOP
            if "eval" in estimates and over_budget(estimates["eval"] * (1 + flops[size] / 50)):
                report["skipped"].append(f"{size} eval {ws}")
                save()
                continue
            e = run_eval(entry, ws, coco, model, args, work)
            data["eval"][ws] = e
            estimates["eval"] = e["wall_s"]
            log(f"{size} eval {ws}: {e['images_per_s']} img/s, stages "
                f"{ {k: round(v, 2) for k, v in e['stage_seconds'].items()} }")
            data["stage_seconds"] = eval_stage_totals(data["eval"])
            images = sum(v["images"] for v in data["eval"].values())
            walls = sum(v["wall_s"] for v in data["eval"].values())
            data["eval_images_per_s"] = round(images / walls, 2)
            save()
            if (args.before_images and size in args.before_sizes
                    and not over_budget(e["wall_s"] * 3)):
                try:
                    b = run_eval_before(entry, ws, coco, model, args, work)
                except Exception as exc:  # noqa: BLE001 - the comparison is a bonus
                    b = {"error": f"{type(exc).__name__}: {exc}"}
                data.setdefault("before", {})[ws] = b
                log(f"{size} eval {ws} BEFORE issue 11: {b.get('images_per_s')} img/s "
                    f"on {b.get('images')} images, shares {b.get('stage_share')}")
                save()

    def latency_phase(size: str) -> None:
        entry, data = zoo.get(size), size_data(size)
        if "latency" in estimates and over_budget(estimates["latency"]):
            report["skipped"].append(f"{size} latency")
            save()
            return
        model = calibrated_model(entry, args.weights)
        start = time.perf_counter()
        data["latency_ms"] = {}
        for backend, precision in latency_units(args.device, args.latency_backends,
                                                args.precisions):
            try:
                r = run_latency(entry, model, backend, precision, args)
            except Exception as exc:  # noqa: BLE001 - a failing backend is a result
                r = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
            data["latency_ms"].setdefault(backend, {})[precision] = r
            log(f"{size} latency {backend}/{precision}: {r.get('median_ms')} ms "
                f"(compile {r.get('compile_s')} s) {r.get('reason') or ''}")
            save()
        lat = data["latency_ms"]
        data["compile_speedup"] = {
            p: round(lat["torch"][p]["median_ms"] / lat["torch-compile"][p]["median_ms"], 3)
            for p in args.precisions
            if lat.get("torch", {}).get(p, {}).get("median_ms")
            and lat.get("torch-compile", {}).get(p, {}).get("median_ms")}
        if args.device == "cuda" and size in TARGETS:
            got = data["compile_speedup"].get("fp16")
            data["target"] = {"compiled_fp16_speedup_over_eager_cuda_graph": TARGETS[size],
                              "measured": got,
                              "met": None if got is None else got >= TARGETS[size]}
            wanted = args.profile == "always" or (args.profile == "missed"
                                                  and data["target"]["met"] is not True)
            compile_s = (lat.get("torch-compile", {}).get("fp16", {}).get("compile_s") or 30)
            if wanted and not over_budget(compile_s + 15):
                try:
                    data["kernels"] = kernel_table(entry, model, args)
                except Exception as exc:  # noqa: BLE001 - the profile is a bonus
                    data["kernels"] = {"error": f"{type(exc).__name__}: {exc}"}
        data["latency_section_s"] = round(time.perf_counter() - start, 1)
        estimates["latency"] = data["latency_section_s"]
        save()
        del model

    try:
        coco = args.data or work / "coco"
        if not args.skip_eval:
            start = time.perf_counter()
            workers = len(os.sched_getaffinity(0))
            make_synthetic_coco(coco, args.images, seed=0, profile="coco", workers=workers)
            took = time.perf_counter() - start
            report["data_generation"] = {"images": args.images, "seconds": round(took, 2),
                                         "workers": workers,
                                         "images_per_s": round(args.images / took, 1)}
            log(f"generated {args.images} COCO-shaped images in {took:.1f} s")
            save()
            for size in args.sizes:  # phase 1: every size's evaluation (cheaper: all of them)
                eval_phase(size, coco)
                if args.device == "cuda":
                    torch.cuda.empty_cache()
        if not args.skip_latency:
            for size in args.sizes:  # phase 2: latency, compile included, as time allows
                latency_phase(size)
                if args.device == "cuda":
                    torch.cuda.empty_cache()
        report["complete"] = True
        save()
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the evaluation outputs (and generated data)
    print(markdown(report))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
