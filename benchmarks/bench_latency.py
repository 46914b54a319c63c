"""Latency benchmark: the performance targets of issue 5, each as a ratio measured in one run.

- ONNX Runtime CPU (all graph optimisations, BN folded at export, opset 17) on RTMDet-tiny at
  1x3x640x640 reaches >= 0.75 of the reference convolution measured the same way (3x3 256->256
  on 80x80) in the same process;
- our torch eager (BN folded, channels_last, conv+SiLU as one oneDNN primitive with packed
  weights) is >= 1.5x faster than default-layout eager (channels_last + BN fold alone is
  reported too);
- issue 11: torch-compile (inductor's C++ backend, FP32, channels_last, freezing) is not slower
  than ONNX Runtime on tiny and x (``--size x``); its compile time is reported apart.
  ``--profile`` prints, for the compiled network and for ONNX Runtime, the operators that take
  the time (torch.profiler and ONNX Runtime's own profiler), to say why when it is slower.
- the fastest CPU backend (torch, torch-compile, ONNX Runtime, OpenVINO; FP32) reaches >= 0.80
  of its reference convolution's GFLOP/s on tiny (``fastest_fraction_of_conv_peak``). Each
  round also names the fastest configuration and its fraction of the best reference conv any
  backend reached in that round (the machine's peak for this work). ``--configs`` takes the
  variants below (OpenVINO hints, streams, threads, pinning, denormals; ONNX Runtime session
  options); ``openvino-bf16`` is another precision, reported but never the "fastest" FP32.
  ``--profile --profile-configs openvino`` prints OpenVINO's per-layer counters
  (``ov::enable_profiling``: time by layer type and by the kernel that ran).

Every configuration runs in its own subprocess (ONNX Runtime was 18-30% slower after torch had
run in the same process: libgomp's threads keep spinning), and the configurations alternate
over ``--rounds`` so that load from other processes hits all of them alike; contention inside a
run is handled by the timing protocol (samples re-measured, or the run flagged; a flagged
configuration is re-run after a pause, ``--retries`` times at most). Usage:

    python benchmarks/bench_latency.py [--size tiny] [--rounds 3] [--min-duration 5] [--json F]
        [--configs torch-ours onnxruntime torch-compile] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = {
    "torch-default": {"backend": "torch", "options": {"layout": "contiguous", "fold_bn": False,
                                                      "onednn_fusion": False}},
    "torch-channels-last": {"backend": "torch", "options": {"layout": "channels_last",
                                                            "fold_bn": True,
                                                            "onednn_fusion": False}},
    "torch-ours": {"backend": "torch", "options": {}},  # channels_last + BN fold + oneDNN fusion
    "onnxruntime": {"backend": "onnxruntime", "options": {}},
    "torch-compile": {"backend": "torch-compile", "options": {}},  # inductor C++, freezing
    # OpenVINO CPU, FP32 (PERFORMANCE_HINT LATENCY, INFERENCE_PRECISION_HINT f32) and variants
    "openvino": {"backend": "openvino", "options": {}},
    "openvino-throughput": {"backend": "openvino",
                            "options": {"config": {"PERFORMANCE_HINT": "THROUGHPUT"}}},
    "openvino-no-pinning": {"backend": "openvino",
                            "options": {"config": {"ENABLE_CPU_PINNING": False}}},
    "openvino-denormals": {"backend": "openvino",
                           "options": {"config": {"CPU_DENORMALS_OPTIMIZATION": True}}},
    "openvino-tbb-static": {"backend": "openvino",  # TBB's static partitioner: less stealing
                            "options": {"config": {"TBB_PARTITIONER": "STATIC"}}},
    "openvino-bf16": {"backend": "openvino", "fp32": False,  # another precision: not eligible
                      "options": {"config": {"INFERENCE_PRECISION_HINT": "bf16"}}},
    # ONNX Runtime session options
    "onnxruntime-no-spinning": {"backend": "onnxruntime", "options": {
        "session_config": {"session.intra_op.allow_spinning": "0"}}},
    "onnxruntime-denormals": {"backend": "onnxruntime", "options": {
        "session_config": {"session.set_denormal_as_zero": "1"}}},
    "onnxruntime-block-base": {"backend": "onnxruntime", "options": {
        "session_config": {"session.dynamic_block_base": "4"}}},
}
DEFAULT_CONFIGS = ["torch-default", "torch-channels-last", "torch-ours", "onnxruntime",
                   "torch-compile", "openvino"]
PROFILED = ["torch-compile", "onnxruntime", "openvino"]
TARGETS = {"ort_fraction_of_conv_peak": 0.75, "torch_speedup_over_default": 1.5,
           "compile_speed_vs_onnxruntime": 1.0, "fastest_fraction_of_conv_peak": 0.80}


def worker(config: str, size: str, width: int, height: int, warmup: float, iterations: int,
           min_duration: float, threads: int | None = None) -> None:
    """Runs in the subprocess: one measurement, printed as one JSON line."""
    from rtmbench.measure.latency import measure_latency
    from rtmbench.measure.requests import BackendOptions, LatencyRequest, Protocol
    from rtmbench.spec.zoo import load_zoo

    spec = CONFIGS[config]
    options = dict(spec["options"])
    if threads:  # torch (and inductor's OpenMP kernels) read it here; ONNX Runtime its option
        import torch

        torch.set_num_threads(threads)
        if spec["backend"] == "onnxruntime":
            options["threads"] = threads
        if spec["backend"] == "openvino":
            options["config"] = {**options.get("config", {}), "INFERENCE_NUM_THREADS": threads}
    request = LatencyRequest(spec["backend"], "cpu", "fp32", input_hw=(height, width),
                             protocol=Protocol(warmup_s=warmup, min_iterations=iterations,
                                               min_duration_s=min_duration),
                             options=BackendOptions.from_kwargs(options))
    result = measure_latency(load_zoo().get(size), request)
    print(json.dumps(result.to_dict()))


def profile_worker(config: str, size: str, width: int, height: int, top: int = 15) -> None:
    """The operators that take the time in one configuration, as its own profiler sees them."""
    import torch

    from rtmbench.measure.backends import get_backend
    from rtmbench.run.build import network

    model = network(size)
    x = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    if config == "openvino":
        openvino_profile(model, x, size, width, height, top)
        return
    if config == "torch-compile":  # inductor's own C++ kernels as profiler events
        import torch._inductor.config as inductor_config

        inductor_config.cpp.enable_kernel_profile = True
    runner = get_backend(config).prepare(model, x, "cpu", "fp32")
    for _ in range(3):
        runner.run()
    runs = 10
    if config == "torch-compile":
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(runs):
                runner.run()
        print(f"\n== torch-compile ({size}, {width}x{height}), {runs} runs: operators by self "
              f"CPU time (compile {runner.details['compile_s']} s)")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=top))
        convs = [e for e in prof.key_averages(group_by_input_shape=True)
                 if "convolution" in e.key]
        total = sum(e.self_cpu_time_total for e in convs) or 1
        print(f"== its convolutions by input shape (input, weight, ...): {len(convs)} shapes")
        for e in sorted(convs, key=lambda e: -e.self_cpu_time_total)[:top]:
            share = e.self_cpu_time_total / total
            print(f"  {e.self_cpu_time_total / 1e3 / runs:8.2f} ms/run {share:6.1%}"
                  f"  x{e.count // runs:<3} {str(e.input_shapes[:1])[:60]}")
        return
    import onnxruntime as ort

    from rtmbench.measure.export import export_onnx
    from rtmbench.measure.requests import ExportRequest

    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "m.onnx", ExportRequest(input_hw=(height, width)))
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = len(os.sched_getaffinity(0))  # as the backend does
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x.numpy()}
        for _ in range(runs + 3):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    per_op: dict[str, list[float]] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            per_op.setdefault(op, []).append(e["dur"])
    total = sum(sum(v) for v in per_op.values()) or 1
    print(f"\n== onnxruntime ({size}, {width}x{height}): operators by kernel time "
          f"(includes 3 warm-up runs)")
    for op, durs in sorted(per_op.items(), key=lambda kv: -sum(kv[1]))[:top]:
        print(f"  {op:<28} {sum(durs) / 1e3 / (runs + 3):9.2f} ms/run  {sum(durs) / total:6.1%}"
              f"  ({len(durs) // (runs + 3)} nodes)")


def openvino_profile(model, x, size: str, width: int, height: int, top: int, runs: int = 10
                     ) -> None:
    """OpenVINO's per-layer counters (ov::enable_profiling), summed over ``runs`` inferences:
    time by layer type, by the kernel that ran (exec_type), and the costliest layers."""
    from rtmbench.measure.backends.openvino_backend import OpenVINOBackend, profiling_info

    runner = OpenVINOBackend(profiling=True).prepare(model, x, "cpu", "fp32")
    for _ in range(3):
        runner.run()
    by_type: dict[str, float] = {}
    by_kernel: dict[str, float] = {}
    by_layer: dict[tuple[str, str, str], float] = {}
    for _ in range(runs):
        runner.run()
        for p in profiling_info(runner):
            if p["status"].endswith("EXECUTED"):  # not OPTIMIZED_OUT (fused) or NOT_RUN
                by_type[p["type"]] = by_type.get(p["type"], 0.0) + p["real_us"]
                by_kernel[p["exec_type"]] = by_kernel.get(p["exec_type"], 0.0) + p["real_us"]
                key = (p["name"], p["type"], p["exec_type"])
                by_layer[key] = by_layer.get(key, 0.0) + p["real_us"]
    total = sum(by_type.values()) or 1.0
    print(f"\n== openvino ({size}, {width}x{height}), {runs} runs: "
          f"{total / 1e3 / runs:.2f} ms/run in layers; "
          f"{runner.details['inference_precision_hint']}, "
          f"{runner.details['inference_num_threads']} threads, "
          f"{runner.details['num_streams']} stream(s)")
    for title, table in (("by layer type (fused layers count once)", by_type),
                         ("by kernel (exec_type)", by_kernel)):
        print(f"== {title}")
        for name, us in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            print(f"  {name:<36} {us / 1e3 / runs:9.2f} ms/run  {us / total:6.1%}")
    print("== costliest layers")
    for (name, kind, kernel), us in sorted(by_layer.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {us / 1e3 / runs:8.2f} ms/run {us / total:6.1%}  {kind:<14} {kernel:<28} "
              f"{name[:60]}")


def run_config(config: str, args: argparse.Namespace) -> dict:
    """One configuration in a fresh process; a run flagged for contention is repeated."""
    for attempt in range(args.retries + 1):
        result = _run_once(config, args)
        result["attempts"] = attempt + 1
        if not result["metrics"]["contention"]:
            break
        print(f"{config}: contention flagged (other processes used "
              f"{result['metrics']['other_processes_cores']} cores); "
              f"{'retrying' if attempt < args.retries else 'kept, flagged'}", file=sys.stderr)
        time.sleep(args.pause)
    return result


def _run_once(config: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", config, "--size", args.size,
           "--input-size", str(args.input_size[0]), str(args.input_size[1]),
           "--warmup", str(args.warmup), "--iterations", str(args.iterations),
           "--min-duration", str(args.min_duration)]
    env = None
    if args.threads:
        cmd += ["--threads", str(args.threads)]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{config} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _ratios(r: dict[str, dict]) -> dict:
    """The figures of one round that exist for the configurations it ran."""
    def med(c):
        return r[c]["metrics"]["median_ms"] if c in r else None

    out: dict = {}
    if "onnxruntime" in r:
        ort = r["onnxruntime"]
        out |= {"ort_median_ms": med("onnxruntime"), "ort_gflops": ort["achieved_gflops"],
                "ort_conv_peak_gflops": ort["peak_gflops"],
                "ort_fraction_of_conv_peak": ort["fraction_of_peak"]}
    if "torch-ours" in r:
        out |= {"torch_ours_median_ms": med("torch-ours"),
                "torch_conv_peak_gflops": r["torch-ours"]["peak_gflops"]}
    if "torch-default" in r:
        out["torch_default_median_ms"] = med("torch-default")
        if "torch-ours" in r:
            out["torch_speedup_over_default"] = med("torch-default") / med("torch-ours")
        if "torch-channels-last" in r:
            out["torch_channels_last_median_ms"] = med("torch-channels-last")
            out["torch_channels_last_speedup"] = med("torch-default") / med(
                "torch-channels-last")
    if "openvino" in r:
        ov = r["openvino"]
        out |= {"openvino_median_ms": med("openvino"), "openvino_gflops": ov["achieved_gflops"],
                "openvino_conv_peak_gflops": ov["peak_gflops"],
                "openvino_fraction_of_conv_peak": ov["fraction_of_peak"]}
        if "onnxruntime" in r:  # > 1: OpenVINO is faster than ONNX Runtime
            out["openvino_speed_vs_onnxruntime"] = med("onnxruntime") / med("openvino")
    fp32 = {c: v for c, v in r.items() if CONFIGS[c].get("fp32", True)}
    if fp32:  # the fastest FP32 configuration of the round: its own conv, and the best conv
        fastest = min(fp32, key=med)
        best_conv = max(v["peak_gflops"] for v in fp32.values())
        out |= {"fastest": fastest, "fastest_median_ms": med(fastest),
                "fastest_fraction_of_conv_peak": fp32[fastest]["fraction_of_peak"],
                "fastest_fraction_of_best_conv": fp32[fastest]["achieved_gflops"] / best_conv,
                "best_conv_gflops": best_conv}
    out["per_config"] = {c: {"median_ms": med(c), "gflops": v["achieved_gflops"],
                             "conv_peak_gflops": v["peak_gflops"],
                             "fraction_of_conv_peak": v["fraction_of_peak"],
                             "details": {k: v["details"].get(k) for k in (
                                 "requested_config", "session_config", "num_streams",
                                 "inference_num_threads", "inference_precision_hint",
                                 "enable_cpu_pinning", "threads", "compile_s")
                                 if k in v["details"]}}
                         for c, v in r.items()}
    if "torch-compile" in r:
        tc = r["torch-compile"]
        out |= {"compile_median_ms": med("torch-compile"), "compile_s": tc["details"]["compile_s"],
                "compile_fraction_of_conv_peak": tc["fraction_of_peak"],
                "compile_conv_peak_gflops": tc["peak_gflops"]}
        if "onnxruntime" in r:  # >= 1: the compiled network is not slower than ONNX Runtime
            out["compile_speed_vs_onnxruntime"] = med("onnxruntime") / med("torch-compile")
        if "torch-ours" in r:
            out["compile_speed_vs_torch_ours"] = med("torch-ours") / med("torch-compile")
    return out


def summarise(rounds: list[dict[str, dict]]) -> dict:
    per_round = []
    for r in rounds:
        per_round.append(_ratios(r) | {
            "contention_flagged": [c for c, v in r.items() if v["metrics"]["contention"]],
            "other_processes_cores": {c: v["metrics"]["other_processes_cores"]
                                      for c, v in r.items()},
            "outliers_remeasured": {c: v["metrics"]["outliers_remeasured"] for c, v in r.items()},
        })
    keys = [k for k in per_round[0] if isinstance(per_round[0][k], float)]
    median = {k: statistics.median(p[k] for p in per_round) for k in keys}
    spread = {k: [min(p[k] for p in per_round), max(p[k] for p in per_round)] for k in keys}
    verdicts = {k: {"target": t, "measured": median[k], "met": median[k] >= t}
                for k, t in TARGETS.items() if k in median}
    flagged = sorted({c for p in per_round for c in p["contention_flagged"]})
    configs = {c: {f: statistics.median(p["per_config"][c][f] for p in per_round)
                   for f in ("median_ms", "fraction_of_conv_peak")}
               for c in per_round[0]["per_config"]}
    return {"rounds": per_round, "median_over_rounds": median, "min_max_over_rounds": spread,
            "targets": verdicts, "contention_flagged": flagged, "configs": configs,
            "fastest_by_round": [p.get("fastest") for p in per_round]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", choices=CONFIGS, help=argparse.SUPPRESS)
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--input-size", nargs=2, type=int, default=(640, 640), metavar=("W", "H"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--min-duration", type=float, default=5.0)
    parser.add_argument("--retries", type=int, default=3,
                        help="re-runs of a configuration flagged for contention")
    parser.add_argument("--pause", type=float, default=10.0, help="seconds before a re-run")
    parser.add_argument("--json", type=Path, default=None, help="also write the summary here")
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=DEFAULT_CONFIGS,
                        help="configurations to time, in this order within each round "
                        f"(default: {' '.join(DEFAULT_CONFIGS)})")
    parser.add_argument("--profile", action="store_true",
                        help="print which operators take the time: torch-compile "
                        "(torch.profiler), ONNX Runtime (its profiler) and OpenVINO (its "
                        "per-layer counters), then exit")
    parser.add_argument("--profile-configs", nargs="+", default=PROFILED,
                        choices=PROFILED, help="which backends --profile profiles")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads per configuration (default: every usable core); 1 "
                        "compares per-core efficiency and is robust to other processes")
    parser.add_argument("--profile-worker", choices=PROFILED, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.profile_worker:
        profile_worker(args.profile_worker, args.size, *args.input_size)
        return 0
    if args.profile:
        for config in args.profile_configs:
            cmd = [sys.executable, __file__, "--profile-worker", config, "--size", args.size,
                   "--input-size", str(args.input_size[0]), str(args.input_size[1])]
            subprocess.run(cmd, check=True)
        return 0
    if args.worker:
        worker(args.worker, args.size, *args.input_size, args.warmup, args.iterations,
               args.min_duration, args.threads)
        return 0
    rounds, environment = [], None
    for i in range(args.rounds):
        results = {}
        for config in args.configs:
            results[config] = run_config(config, args)
            m = results[config]["metrics"]
            print(f"round {i + 1}/{args.rounds} {config}: median {m['median_ms']:.1f} ms, "
                  f"{results[config]['achieved_gflops']:.0f} GFLOP/s, reference "
                  f"{results[config]['peak_gflops']:.0f} GFLOP/s, CV {m['cv']:.3f}, "
                  f"re-measured {m['outliers_remeasured']}, contention {m['contention']}"
                  + (f", compile {results[config]['details']['compile_s']} s"
                     if "compile_s" in results[config]["details"] else ""),
                  file=sys.stderr)
        environment = next(iter(results.values()))["environment"]
        rounds.append(results)
    summary = summarise(rounds) | {"environment": environment, "size": args.size,
                                   "input_wh": list(args.input_size), "threads": args.threads}
    print(json.dumps(summary, indent=2))
    if args.json:
        tmp = args.json.with_suffix(".tmp")
        tmp.write_text(json.dumps(summary, indent=2))
        tmp.replace(args.json)
    if summary["contention_flagged"]:
        print(f"WARNING: contention flagged for {summary['contention_flagged']}: other "
              f"processes were busy; these figures understate this machine", file=sys.stderr)
    return 0 if all(v["met"] for v in summary["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
