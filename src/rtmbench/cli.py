"""Command line: thin commands over the library. Errors a user can fix print one paragraph."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence

from .errors import OutputNotWritable, RtmbenchError, storage_problem

Handler = Callable[[argparse.Namespace], int]


class _DefaultsFormatter(argparse.HelpFormatter):
    """Help that shows each option's default, unless it is empty or the text already says."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or action.default in (None, False, argparse.SUPPRESS)
                or not action.option_strings):
            return text
        return text + " (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _DefaultsFormatter)
        super().__init__(*args, **kwargs)


def _shipped_suites() -> list[str]:
    from .spec.suite import shipped_suite_names

    return shipped_suite_names()
# The inference backends (rtmbench.measure.backends.BACKENDS, named here so that --help does
# not import torch; tests/test_cli.py checks they are the same).
INFERENCE_BACKENDS = ("torch", "torch-compile", "onnxruntime", "openvino", "tensorrt")


def _cmd_complexity(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .judge.judgement import Mark, judge_complexity_claim
    from .measure.complexity import measure_complexity
    from .spec.zoo import load_zoo

    zoo = load_zoo(args.zoo)
    sizes = args.sizes or zoo.sizes
    entries = [zoo.get(s) for s in sizes]  # validate every name before the slow part
    rows = []
    for entry in tqdm(entries, desc="counting params and FLOPs", unit="model", file=sys.stderr,
                      disable=len(entries) < 2, leave=False):
        report = measure_complexity(entry)
        claims = {c.metric: entry.claim_record(c) for c in entry.claims
                  if c.metric in ("params", "flops")}
        verdicts = {m: judge_complexity_claim(m, c, report.metrics()) for m, c in claims.items()}
        rows.append((entry, report, claims, verdicts))
    ok = {e.size: all(v.mark is Mark.OK for v in vs.values()) for e, _, _, vs in rows}
    if args.json:
        for entry, report, claims, verdicts in rows:
            print(json.dumps({"size": entry.size, "model": entry.name,
                              "input": list(report.input_hw), "params": report.params,
                              "flops": report.flops, "claims": claims,
                              "verdicts": {m: {"ok": v.mark is Mark.OK, "explanation": v.text}
                                           for m, v in verdicts.items()},
                              "ok": ok[entry.size]}, sort_keys=True))
    else:
        print(_complexity_table(rows))
        bad = [s for s, good in ok.items() if not good]
        print(f"\n{len(rows) - len(bad)}/{len(rows)} sizes match their published params "
              f"and FLOPs" + (f"; MISSING: {', '.join(bad)}" if bad else "."))
    return 0 if all(ok.values()) else 1


def _complexity_table(rows: list) -> str:
    """Markdown: claimed vs measured, with a verdict that explains each cell."""
    lines = ["| size | params (M) claimed | measured | verdict | FLOPs (G) claimed | mmengine | "
             "mmengine+act | verdict |", "|---|---:|---:|---|---:|---:|---:|---|"]
    for entry, report, claims, verdicts in rows:
        cells = []
        for metric in ("params", "flops"):
            v = verdicts.get(metric)
            cells.append(("✅ " if v.mark.ok else "❌ ") + v.text if v else "no claim")
        p, f = claims.get("params"), claims.get("flops")
        lines.append(f"| {entry.size} | {p['value'] if p else '—'} | {report.params / 1e6:.3f} | "
                     f"{cells[0]} | {f['value'] if f else '—'} | "
                     f"{report.flops['mmengine'] / 1e9:.3f} | "
                     f"{report.flops['mmengine+act'] / 1e9:.3f} | {cells[1]} |")
    return "\n".join(lines)


def _add_complexity(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("complexity", help="count params and FLOPs and judge the published claims")
    p.add_argument("sizes", nargs="*", metavar="SIZE", help="zoo sizes (default: all)")
    p.add_argument("--json", action="store_true", help="one JSON record per size")
    p.set_defaults(handler=_cmd_complexity)


def _fetch_coco(args: argparse.Namespace, zoo) -> None:
    from .sources.datasets import fetch_dataset
    from .spec.fetched_datasets import COCO_VAL2017, dataset_dir

    dataset = zoo.dataset(COCO_VAL2017)
    got = fetch_dataset(dataset, COCO_VAL2017, target=args.coco_dir, progress=not args.quiet)
    if args.json:
        print(json.dumps(got.to_dict(), sort_keys=True))
        return
    print(f"{got.name}: {dataset.title}")
    for a in got.archives:
        origin = f"{a.source}: {a.url}" if a.url else a.source
        print(f"  {a.file}: sha256 {a.sha256}, {a.size:,} bytes from {origin}")
    if got.source == "cache":
        print(f"  already fetched and complete ({got.files:,} files); nothing to do")
    else:
        checked = "".join(f"; {m} sha256 {h}" for m, h in got.member_sha256.items())
        print(f"  {got.files:,} files extracted{checked}")
    if got.path == dataset_dir(COCO_VAL2017):
        print("  rtmbench evaluate and the suites use it when RTMBENCH_COCO is not set")
    else:
        print(f"  to use it: export RTMBENCH_COCO={got.path}")
    print(got.path)


def _cmd_fetch(args: argparse.Namespace) -> int:
    from .run.build import build
    from .sources import fetch_weights
    from .spec.zoo import load_zoo

    zoo = load_zoo(args.zoo)
    coco = args.coco or args.coco_dir is not None
    if coco:
        _fetch_coco(args, zoo)
    entries = [zoo.get(s) for s in (args.sizes or ([] if coco else zoo.sizes))]
    wanted = []
    for entry in entries:
        if args.weights != "all":
            wanted.append((entry, args.weights))
            continue
        for w in entry.weights:  # every published checkpoint of the size
            if w.unavailable:
                print(f"{entry.name}: no {w.id} weights were published ({w.unavailable}); "
                      f"skipped.", file=sys.stderr)
            else:
                wanted.append((entry, w.id))
    for entry, weights in wanted:
        fetched = fetch_weights(entry, weights, progress=not args.quiet)
        record = {"model": entry.name, "weights": weights or entry.default_weights_id(),
                  **fetched.provenance(), "path": str(fetched.path)}
        if args.load or args.trust_checkpoint:
            built = build(entry, weights, trust=args.trust_checkpoint, progress=False)
            record["loaded"] = {"layout": built.provenance["layout"], "strict": True}
        if args.json:
            print(json.dumps(record, sort_keys=True))
        else:
            origin = f"{fetched.source}: {fetched.url}" if fetched.url else fetched.source
            loaded = (f"\n  loads strictly ({record['loaded']['layout']} layout)"
                      if "loaded" in record else "")
            print(f"{entry.name}: {fetched.file}\n  sha256 {fetched.sha256}\n"
                  f"  {fetched.size:,} bytes from {origin}{loaded}\n  {fetched.path}")
    return 0


def _add_fetch(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fetch", help="download, verify and cache the zoo's checkpoints (and "
                       "COCO val2017 with --coco)",
                       description="Fetch checkpoints into RTMBENCH_CACHE (default "
                       "~/.cache/rtmbench), verified by sha256. Sources: RTMBENCH_MIRROR (base "
                       "URL, local folder or hf://OWNER/REPO[@REVISION][/SUBDIR]), then the zoo's "
                       "urls. --coco fetches COCO val2017 (the zoo's 'coco-val2017' archives, "
                       "verified by sha256) into RTMBENCH_CACHE/datasets/coco-val2017, where "
                       "evaluate and the suites find it when RTMBENCH_COCO is not set; sources: "
                       "RTMBENCH_COCO_MIRROR (folders, base URLs, hf://datasets/OWNER/REPO...), "
                       "then the official hosts. "
                       "HTTPS_PROXY/HTTP_PROXY/NO_PROXY and RTMBENCH_CA_BUNDLE apply. "
                       "RTMBENCH_OFFLINE=1 never connects.")
    p.add_argument("sizes", nargs="*", metavar="SIZE",
                   help="zoo sizes (default: all; none with --coco)")
    p.add_argument("--coco", action="store_true",
                   help="fetch COCO val2017 (images and instances_val2017.json, ~1.07 GB of "
                   "archives, ~0.8 GB extracted) and print its folder")
    p.add_argument("--coco-dir", metavar="DIR", default=None,
                   help="extract COCO into DIR (new or empty) instead of the cache; implies "
                   "--coco (then set RTMBENCH_COCO=DIR to use it)")
    p.add_argument("--weights", metavar="ID", default=None,
                   help="which weights entry: mmyolo, mmdet, or all (every published one); "
                   "default: the first available, e.g. mmyolo")
    p.add_argument("--load", action="store_true",
                   help="also load each checkpoint strictly into its model (safe unpickling)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow arbitrary pickled objects when loading (runs code: only for "
                   "files you trust); implies --load")
    p.add_argument("--json", action="store_true", help="one JSON provenance record per size "
                   "(and one for COCO)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_fetch)



def _cmd_run(args: argparse.Namespace) -> int:
    from .errors import InputError
    from .run.runner import format_summary, run_suite
    from .spec.suite import load_suite
    from .spec.zoo import load_zoo

    zoo = load_zoo(args.zoo)
    suite = load_suite(args.suite, zoo)
    if args.plan:
        from .run.plan import format_plan
        from .run.runner import plan_suite

        shown = plan_suite(suite, resume=args.resume, results_dir=args.results_dir, zoo=zoo,
                           run_id=args.run_id)
        if args.json:
            for item in shown.units:
                print(json.dumps(item.to_dict(), sort_keys=True))
        else:
            print(format_plan(shown))
        return 0
    if args.json:
        raise InputError("--json goes with --plan (a run's records are in its run file).")
    summary = run_suite(suite, run_id=args.run_id, resume=args.resume,
                        results_dir=args.results_dir, zoo=zoo, progress=not args.no_progress,
                        show_plan=True)
    print(format_summary(summary))
    return 1 if summary.failed else 0


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="run a suite: one record per model x check x backend",
        description="Run a suite: one record per model x check x backend, appended to "
        "results/<run-id>.jsonl. Exit 1 if any unit failed; units not run (a missing "
        "prerequisite, e.g. the gpu suite on a CPU machine) are counted in the summary and "
        "leave the exit code 0: `rtmbench gate RUN` judges the run.")
    p.add_argument("suite", metavar="SUITE", help="suite YAML, or a shipped suite's name "
                   f"({', '.join(_shipped_suites())})")
    p.add_argument("--run-id", help="id of a new run (default: date, suite and host)")
    p.add_argument("--resume", metavar="ID", help="continue run ID, skipping recorded units")
    p.add_argument("--results-dir", help="where run files go (default: the suite's results_dir)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--plan", action="store_true",
                   help="list every unit: where it runs, whether it will run or be 'not run' "
                   "and why, its estimated time; run nothing")
    p.add_argument("--json", action="store_true", help="with --plan: one JSON object per unit")
    p.set_defaults(handler=_cmd_run)


def _cmd_gate(args: argparse.Namespace) -> int:
    from .judge.gate import run_gate

    return run_gate(args.run, baseline=args.baseline, suite=args.suite,
                    results_dir=args.results_dir, zoo_path=args.zoo, history=args.history,
                    history_runs=args.history_runs)


DEFAULT_HISTORY_RUNS = 20  # rtmbench.judge.history.DEFAULT_RUNS (checked by the tests)


def _add_gate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gate", help="fail (exit 1) on a regression against claims or a baseline")
    p.add_argument("run", metavar="RUN", help="run id (under --results-dir) or .jsonl file")
    p.add_argument("--baseline", metavar="FILE", help="baseline run (.jsonl) to compare with")
    p.add_argument("--suite", default=None, help="suite whose planned units the run must "
                   "have (a planned unit without a record is red) and whose tolerances apply "
                   "(default: the plan of the suite the run records, the tolerances of the "
                   "shipped suite gate)")
    p.add_argument("--results-dir", default="results", help="where run ids are looked up")
    p.add_argument("--history", metavar="DIR", default=None, help="a directory of run files "
                   "(e.g. results/): judge each unit against the last runs of this machine "
                   "(same fingerprint; failed, contended and interrupted records left out): "
                   "latency against the best level of those runs by the latency tolerance and "
                   "a Mann-Whitney U test at its alpha (both from --suite), box AP within its "
                   "tolerance, params and FLOPs exactly; a unit without such runs falls back "
                   "to --baseline, and the output says so; steps in the history are named")
    p.add_argument("--history-runs", metavar="N", type=int, default=DEFAULT_HISTORY_RUNS,
                   help="how many of this machine's latest usable runs each unit is judged "
                   "against (with --history; a slowdown stays visible this many runs)")
    p.set_defaults(handler=_cmd_gate)


def _cmd_report(args: argparse.Namespace) -> int:
    from .judge.report import LOCAL_OUT, load_runs, write_report

    publish = args.publish
    if args.history is not None:
        return _history_report(args)
    out_dir = args.out_dir or ("reports" if publish else str(LOCAL_OUT))
    readme = None if args.no_readme else (args.readme or ("README.md" if publish else None))
    # --publish renders what is committed (and runs named); a plain report adds the user's
    # latest run to it
    runs = load_runs(args.runs, args.results_dir, committed=not args.only, latest=not publish)
    written = write_report(args.runs, out_dir=out_dir, readme=readme, suite=args.suite,
                           runs=runs)
    for path in written:
        print(path)
    if readme is None and not publish:
        print(f"rtmbench report: runs {', '.join(r.run_id for r in runs)} in "
              f"{out_dir}/results.md; README.md and reports/ are unchanged (--publish writes "
              f"them).", file=sys.stderr)
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    from .records import publish_run

    target = publish_run(args.run, args.results_dir)
    print(target)
    print(f"rtmbench publish: {target} now stands beside the committed runs; `rtmbench report "
          f"--publish` renders reports/ and the README's table from them, then commit "
          f"{target}, reports/ and README.md.", file=sys.stderr)
    return 0


def _add_publish(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("publish", help="move a run of yours into the committed results",
                       description="Copy a run (a run id from results/local, or a .jsonl file) "
                       "into --results-dir, where `report --publish` draws the published table "
                       "from. Your runs land in results/local/, which git ignores, so nothing "
                       "is published by accident; a published run is never replaced.")
    p.add_argument("run", metavar="RUN", help="run id or .jsonl file")
    p.add_argument("--results-dir", default="results",
                   help="where published runs live (default: results)")
    p.set_defaults(handler=_cmd_publish)


def _history_report(args: argparse.Namespace) -> int:
    from .errors import InputError
    from .judge.history_report import write_history_report
    from .judge.report import LOCAL_OUT
    from .spec.suite import load_suite
    from .spec.zoo import load_zoo

    if args.runs or args.publish or args.only or args.readme:
        raise InputError("--history DIR draws the runs in DIR: give no RUN, --publish, --only "
                         "or --readme with it.")
    alpha = load_suite(args.suite, load_zoo(args.zoo)).tolerance("latency").alpha
    for path in write_history_report(args.history, args.out_dir or str(LOCAL_OUT), alpha):
        print(path)
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="render the results tables and plots from runs",
                       description="Merge the committed runs under --results-dir with the "
                       "runs given (later ones take precedence for the same unit and machine) "
                       "and write results.md and the plots. By default into reports/local/, "
                       "leaving README.md and reports/ alone; --publish updates them.")
    p.add_argument("runs", nargs="*", metavar="RUN", help="run ids or .jsonl files to add "
                   "(default: your latest run, from results/local; none with --publish)")
    p.add_argument("--results-dir", default="results", help="where run ids are looked up "
                   "(default: results)")
    p.add_argument("--publish", action="store_true", help="write reports/ and the README's "
                   "results block (what maintainers commit)")
    p.add_argument("--only", action="store_true", help="only the runs given, not the "
                   "committed ones")
    p.add_argument("--out-dir", default=None, help="where results.md and the plots go "
                   "(default: reports/local, or reports with --publish)")
    p.add_argument("--readme", default=None, help="README whose results block to update "
                   "(default: none, or README.md with --publish)")
    p.add_argument("--no-readme", action="store_true", help="never touch a README")
    p.add_argument("--suite", default="reproduce", help="suite whose tolerances judge the "
                   "claims (default: reproduce); with --history, whose latency alpha makes a "
                   "step significant")
    p.add_argument("--history", metavar="DIR", default=None, help="instead: one plot per "
                   "machine and metric of the runs in DIR over time (commit order, steps "
                   "marked, failed and contended runs apart) and history.md, into --out-dir "
                   "(default reports/local)")
    p.set_defaults(handler=_cmd_report)

def _cmd_score(args: argparse.Namespace) -> int:
    from .measure.scoring import format_metrics
    from .run.evaluation_command import score_command

    metrics = score_command(args.annotations, args.detections, args.backend, args.convention)
    print(json.dumps(metrics, sort_keys=False) if args.json else format_metrics(metrics))
    return 0


def _add_score(sub: argparse._SubParsersAction) -> None:
    from .measure.scoring import BACKENDS, CONVENTIONS, DEFAULT_BACKEND

    p = sub.add_parser("score", help="the 12 COCO box numbers of a detections file")
    p.add_argument("annotations", help="COCO instances JSON (e.g. instances_val2017.json)")
    p.add_argument("detections", help="COCO results JSON: [{image_id, category_id, bbox, score}]")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--convention", choices=list(CONVENTIONS), default=None,
                   help="maxDets convention: coco = (1, 10, 100), pycocotools' default and "
                        "RTMDet's published AP; mmdet-proposal = (100, 300, 1000), CocoMetric's "
                        "default (default: report both)")
    p.add_argument("--backend", choices=list(BACKENDS), default=DEFAULT_BACKEND,
                   help=f"COCOeval implementation (default {DEFAULT_BACKEND}; pycocotools is the "
                        "reference)")
    p.set_defaults(handler=_cmd_score)


def _add_trust(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow arbitrary pickled objects in the checkpoint (runs code: only "
                   "for files you trust)")


def _weights_of(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(zoo weights id, checkpoint file) from --random-weights / --checkpoint / --weights."""
    from .spec.check_specs import RANDOM_INIT

    if getattr(args, "random_weights", False):
        return RANDOM_INIT, None
    if getattr(args, "checkpoint", None):
        return None, args.checkpoint
    return getattr(args, "weights", None), None


def _weights_choice(args: argparse.Namespace, *, default_random: bool = False):
    """The weights of --random-weights / --checkpoint / --weights / --trust-checkpoint
    (``default_random``: none given means random-init)."""
    from .run.weights_choice import WeightsChoice
    from .spec.check_specs import RANDOM_INIT

    weights, checkpoint = _weights_of(args)
    if default_random and checkpoint is None and weights is None:
        weights = RANDOM_INIT
    return WeightsChoice(weights, checkpoint, getattr(args, "trust_checkpoint", False))


def _check_weights_flags(args: argparse.Namespace, entry) -> None:
    """--weights names a zoo weights id (or seeded weights), --checkpoint an existing file:
    said before anything slow (importing torch, fetching)."""
    _weights_choice(args).check(entry)


def _build(args: argparse.Namespace, entry, *, default_random: bool, say: str):
    """The model with its weights, through the one entry point (rtmbench.run.build.build)."""
    from .run.weights_choice import weights_notice

    built = _weights_choice(args, default_random=default_random).build(
        entry, progress=not getattr(args, "no_progress", False))
    print(f"{say}: {weights_notice(built.provenance)}", file=sys.stderr)
    return built


def _weights_text(info: dict) -> str:
    """Which weights a model has, in words (from its provenance)."""
    from .run.weights_choice import describe_weights

    return describe_weights(info)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .run.evaluation_command import EvaluateOptions, evaluate_command

    inference = args.backend in INFERENCE_BACKENDS
    options = EvaluateOptions(
        size=args.size, zoo=args.zoo, coco=args.coco, weights=_weights_choice(args),
        test_cfg=args.test_cfg, limit=args.limit, batch_size=args.batch_size,
        workers=args.workers, precision=args.precision, device=args.device, shard=args.shard,
        out=args.out, scorer=_scorer(args, "evaluate"),
        backend=args.backend if inference else None,
        backend_options=_backend_options(args, args.backend) if inference else {},
        timings=args.timings, progress=not args.no_progress)
    evaluated = evaluate_command(
        options, lambda line: print(f"rtmbench evaluate: {line}", file=sys.stderr))
    if evaluated.reported_here:
        print(evaluated.to_json() if args.json else evaluated.text())
    return 0


def _add_eval_options(p: argparse.ArgumentParser, *, inference: bool = False) -> None:
    """--coco, --scorer, --json; and --backend: the inference backend (``inference``, evaluate)
    or, for merge, the deprecated name of --scorer."""
    from .measure.scoring import BACKENDS, DEFAULT_BACKEND

    p.add_argument("--coco", default=None, help="COCO root holding annotations/"
                   "instances_val2017.json and val2017/ (default: $RTMBENCH_COCO)")
    p.add_argument("--scorer", choices=list(BACKENDS), default=None,
                   help=f"COCOeval implementation for scoring (default {DEFAULT_BACKEND}, "
                   "faster-coco-eval; pycocotools is the reference: the same numbers)")
    old = f"{' or '.join(BACKENDS)} here still mean --scorer, with a deprecation warning"
    if inference:
        p.add_argument(
            "--backend", choices=[*INFERENCE_BACKENDS, *BACKENDS], default=None,
            metavar="{" + ",".join(INFERENCE_BACKENDS) + "}",
            help="evaluate this backend's artifact: the very export, engine or compiled graph "
            "`rtmbench latency --backend` times (same ONNX export, TensorRT engine cache and "
            "typing), at --device and --precision. Every artifact has static shapes: it is "
            "made for --batch-size images (default 1, the batch latency times by default), "
            "and a short last batch is padded with copies of its last image whose outputs are "
            "dropped. Its outputs go through the same batched post-processing as the PyTorch "
            "model's. Default: the PyTorch model itself (BN-folded and channels_last on "
            f"cuda). Formerly --backend named the scoring implementation: {old}")
    else:
        p.add_argument("--backend", choices=list(BACKENDS), default=None,
                       help=f"deprecated name of --scorer: {old}")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _scorer(args: argparse.Namespace, command: str) -> str:
    """The COCOeval implementation from --scorer, or from the deprecated --backend
    faster|pycocotools (a warning on stderr; both given and different: an error)."""
    from .errors import InputError
    from .measure.scoring import BACKENDS, DEFAULT_BACKEND

    old = getattr(args, "backend", None)
    if old not in BACKENDS:
        return args.scorer or DEFAULT_BACKEND
    if args.scorer is not None and args.scorer != old:
        raise InputError(f"--backend {old} (the old name of --scorer) and --scorer "
                         f"{args.scorer} disagree; pass --scorer only.")
    print(f"rtmbench {command}: warning: --backend {old} is deprecated for the COCOeval "
          f"implementation; use --scorer {old} (--backend now names the inference backend "
          f"whose artifact is evaluated).", file=sys.stderr)
    return old


def _backend_options(args: argparse.Namespace, backend: str) -> dict:
    """Backend options from latency's and evaluate's flags (--layout, --ort-provider,
    --trt-typing, --compile-mode), for the backends they apply to."""
    options: dict = {}
    layout = getattr(args, "layout", None)
    if layout and backend in ("torch", "torch-compile"):
        options["layout"] = layout
    if getattr(args, "ort_provider", None) and backend == "onnxruntime":
        options["provider"] = args.ort_provider
    if getattr(args, "trt_typing", None) and backend in ("tensorrt", "onnxruntime"):
        options["typing"] = args.trt_typing
    if backend == "torch-compile":
        options["mode"] = getattr(args, "compile_mode", "auto")
    return options


def _add_backend_flags(p: argparse.ArgumentParser) -> None:
    """The backend options latency and evaluate share."""
    p.add_argument("--ort-provider", choices=("cpu", "cuda", "tensorrt"), default=None,
                   help="onnxruntime backend only: execution provider (default: cpu on cpu, "
                   "cuda for cuda/fp32, tensorrt for cuda/fp16); cuda/fp16 runs the FP16 ONNX")
    p.add_argument("--trt-typing", choices=("auto", "weak", "strong"), default=None,
                   help="TensorRT (and ONNX Runtime's TensorRT provider): weak = FP32 ONNX + "
                   "the FP16 builder flag (8.6/10.x, the published setting), strong = the FP16 "
                   "ONNX in a strongly typed network (10.x/11.x); auto = weak where it exists")
    p.add_argument("--compile-mode", default="auto",
                   choices=("auto", "default", "reduce-overhead", "max-autotune"),
                   help="torch-compile only: inductor mode (auto: reduce-overhead on CUDA, "
                   "default on CPU); compile time is reported apart from latency")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="COCO box AP of one zoo model, or of the artifact a "
                       "backend makes of it (--backend) (resumable, shardable; run under "
                       "torchrun to use several processes)")
    p.add_argument("size", metavar="SIZE", help="zoo size or name (tiny, s, m, l, x)")
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint to load (.pth or .safetensors, MMDetection or MMYOLO layout); "
                   "default: fetch the zoo's weights (see --weights)")
    p.add_argument("--weights", metavar="ID", default=None,
                   help="zoo weights id to fetch when no --checkpoint is given (mmyolo, mmdet; "
                   "default: the first available)")
    _add_trust(p)
    p.add_argument("--test-cfg", default=None, metavar="NAME",
                   help="test-time settings: 'default' (MMDetection 3.x) or a zoo variant such "
                   "as pre-pr9494; default: what the weights' published box AP used")
    p.add_argument("--random-weights", action="store_true",
                   help="evaluate a randomly initialised model (smoke test)")
    p.add_argument("--limit", type=int, default=None, help="first N images by id")
    p.add_argument("--batch-size", type=int, default=None,
                   help="images per forward pass (default: 32 on cuda, 8 on cpu; with "
                   "--backend 1: the artifact is made for this batch, as `latency --batch` "
                   "makes it)")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader decoding workers (default: cuda: usable cores - 2, at most "
                   "12; cpu: 2)")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp32",
                   help="network precision (the published box AP is FP32), or with --backend "
                   "the artifact's (as latency's); fp16 on cuda only")
    p.add_argument("--timings", action="store_true",
                   help="time each stage (CUDA-synchronised) and print the seconds to stderr")
    p.add_argument("--out", default=None, help="output directory (default results/eval/<model>, "
                   "with --backend results/eval/<model>-<backend>-<device>-<precision>); "
                   "rerunning into it resumes")
    p.add_argument("--shard", default=None, metavar="i/n", help="run shard i of n only")
    p.add_argument("--device", default="auto",
                   help="auto (cuda where torch sees a GPU, else cpu), cpu, cuda or cuda:N")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_eval_options(p, inference=True)
    _add_backend_flags(p)
    p.set_defaults(handler=_cmd_evaluate)


def _cmd_merge(args: argparse.Namespace) -> int:
    from .run.evaluation_command import merge_command, merged_text

    result = merge_command(args.shard_dirs, args.coco, args.out, _scorer(args, "merge"))
    print(json.dumps(result.to_dict()) if args.json
          else merged_text(result, len(args.shard_dirs)))
    return 0


def _add_merge(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge", help="combine `evaluate --shard i/n` outputs and score them")
    p.add_argument("shard_dirs", nargs="+", metavar="SHARD_DIR", help="--out dirs of the shards")
    p.add_argument("--out", required=True, help="directory for the merged results")
    _add_eval_options(p)
    p.set_defaults(handler=_cmd_merge)


def _input_hw(args: argparse.Namespace) -> tuple[int, int] | None:
    return (args.input_size[1], args.input_size[0]) if args.input_size else None


def _cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .errors import InputError
    from .spec.zoo import load_zoo

    entry = load_zoo(args.zoo).get(args.size)
    out = Path(args.output)
    if out.is_dir():
        raise InputError(f"{out} is a directory; give the ONNX file's path with -o.")
    if out.exists() and not args.force:
        raise InputError(f"{out} already exists; choose another -o path or pass --force "
                         f"to replace it.")
    _check_weights_flags(args, entry)  # every input before torch is imported (seconds)
    from .measure.export import export_and_check

    built = _build(args, entry, default_random=True, say="rtmbench export")
    model = built.model
    width, height = entry.input_size
    input_hw = _input_hw(args) or (height, width)
    from .run.build import calibration_batch

    # the parity probe: generated images through the zoo's test pipeline (what the model is
    # for; conditioned weights can reach far larger activations on Gaussian noise)
    probe = calibration_batch(entry, num_images=args.batch, seed=7,
                              input_size=(input_hw[1], input_hw[0]))
    report = export_and_check(model, out, input_hw, args.batch, args.dynamic_batch, args.opset,
                              not args.no_fold_bn, args.precision, args.fp16_converter,
                              probe=probe)
    from .measure.export import onnx_metadata

    meta = onnx_metadata(out)
    if args.json:
        print(json.dumps({"path": str(out), "model": entry.name, "input_hw": list(input_hw),
                          "batch": args.batch, "opset": args.opset, "precision": args.precision,
                          "fp16_converter": meta.get("rtmbench.fp16_converter"),
                          "weights": built.provenance, "parity": report.to_dict()},
                         default=str))
    else:
        io = "FP16 weights and activations, FP32 input/outputs" if args.precision == "fp16" \
            else "FP32"
        print(f"wrote {out} ({entry.name} with {_weights_text(built.provenance)}, "
              f"{args.batch}x3x{input_hw[0]}x{input_hw[1]}, "
              f"opset {args.opset}, {io}, outputs {', '.join(report.max_abs_error)})"
              + (f"; converted by {meta['rtmbench.fp16_converter']}"
                 if "rtmbench.fp16_converter" in meta else ""))
        tol = report.to_dict()["tolerance"]
        print(f"ONNX Runtime (CPU) vs PyTorch FP32: max abs error {report.worst:.3g}, "
              f"{report.worst_relative:.2g} of the output range (bound {tol['atol']:g} + "
              f"{tol['rtol']:g} x max|output|; every output within it: {report.ok})")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export the tensor-mode network (no NMS) to ONNX and "
                       "check it against PyTorch in ONNX Runtime")
    p.add_argument("size", metavar="SIZE", help="zoo size or name, e.g. tiny")
    p.add_argument("-o", "--output", required=True, help="ONNX file to write")
    p.add_argument("--checkpoint", default=None, help="weights to load (default: random init)")
    p.add_argument("--input-size", nargs=2, type=int, metavar=("W", "H"), default=None,
                   help="network input width and height (default: the zoo's, 640 640)")
    p.add_argument("--batch", type=int, default=1, help="batch size of the exported input")
    p.add_argument("--dynamic-batch", action="store_true", help="make the batch axis dynamic")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset")
    p.add_argument("--no-fold-bn", action="store_true", help="keep BatchNorm nodes")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp32",
                   help="fp16: FP16 weights and activations, FP32 input and outputs (Casts at "
                   "the edges), what TensorRT 11's strongly typed builds need")
    p.add_argument("--fp16-converter", choices=("auto", "onnxconverter-common", "modelopt"),
                   default="auto", help="FP32 -> FP16 graph conversion (auto: ModelOpt "
                   "AutoCast when installed, else onnxconverter-common)")
    p.add_argument("--weights", metavar="ID", default=None,
                   help="random-init (default), well-conditioned, or a zoo weights id")
    _add_trust(p)
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(handler=_cmd_export)


def _latency_claims(result, entry) -> list[dict]:
    """Each published latency of the model beside ``result``, judged on equal footing."""
    from .judge.judgement import judge_latency_claim
    from .records import Record
    from .spec.suite import DEFAULT_TOLERANCES

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


def _check_protocol_flags(args: argparse.Namespace) -> None:
    """The suite's bounds (spec.checks.LatencyProtocol) apply to the flags too."""
    from pydantic import ValidationError

    from .errors import InputError
    from .spec.check_specs import LatencyProtocol

    flags = {"min_iterations": "--iterations", "min_duration_s": "--min-duration",
             "warmup_s": "--warmup", "input_size": "--input-size", "batch": "--batch"}
    try:
        LatencyProtocol(min_iterations=args.iterations, min_duration_s=args.min_duration,
                        warmup_s=args.warmup, input_size=args.input_size, batch=args.batch)
    except ValidationError as exc:
        problems = [f"{flags.get(str(e['loc'][0]), e['loc'][0])} {e['input']}: {e['msg']}"
                    for e in exc.errors()]
        raise InputError("; ".join(problems) + ".") from None


def _cmd_latency(args: argparse.Namespace) -> int:
    from .spec.zoo import load_zoo

    entry = load_zoo(args.zoo).get(args.size)
    _check_protocol_flags(args)  # every input before torch is imported (seconds)
    _check_weights_flags(args, entry)
    from .measure.latency import Remeasure, format_result, measure_latency

    model = _build(args, entry, default_random=True, say="rtmbench latency").model
    options = _backend_options(args, args.backend)
    result = measure_latency(entry, args.backend, args.device, args.precision, model=model,
                             input_hw=_input_hw(args), batch=args.batch, warmup_s=args.warmup,
                             min_iterations=args.iterations, min_duration_s=args.min_duration,
                             include_transfer=args.include_transfer,
                             reference=not args.no_reference, backend_options=options,
                             progress=not args.json, remeasure=Remeasure())
    claims = _latency_claims(result, entry)
    if args.json:
        print(json.dumps(result.to_dict() | {"claims": claims}, sort_keys=True))
    else:
        print(format_result(result))
        for c in claims:
            explanation = c.get("explanation") or ""
            verdict = explanation if explanation.startswith(c["verdict"]) else (
                f"{c['verdict']}: {explanation}" if explanation else c["verdict"])
            print(f"  claim {c['value']} ms ({c.get('hardware')}, {c.get('backend')} "
                  f"{c.get('precision')}, {c.get('source')}): {verdict}")
    if result.status != "measured":
        print(f"rtmbench latency: not run: {result.reason}", file=sys.stderr)
        from .errors import MissingPrerequisite

        return MissingPrerequisite.exit_code
    return 0


def _add_latency(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("latency", help="time one size on a backend (trtexec-like protocol)")
    p.add_argument("size", metavar="SIZE", help="zoo size or name, e.g. tiny")
    p.add_argument("--backend", choices=INFERENCE_BACKENDS, default="torch",
                   help="inference engine to time (openvino: CPU, FP32, from the FP32 ONNX)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to run")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp32",
                   help="arithmetic precision of the timed engine")
    p.add_argument("--input-size", nargs=2, type=int, metavar=("W", "H"), default=None,
                   help="network input width and height (default: the zoo's, 640 640)")
    p.add_argument("--batch", type=int, default=1, help="images per inference")
    p.add_argument("--iterations", type=int, default=50, help="minimum timed iterations")
    p.add_argument("--min-duration", type=float, default=3.0, help="minimum timed seconds")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds")
    p.add_argument("--include-transfer", action="store_true",
                   help="time the host-to-device input copy too (excluded by default)")
    p.add_argument("--no-reference", action="store_true",
                   help="skip the reference convolution (no achieved-peak ratio)")
    p.add_argument("--layout", choices=("channels_last", "contiguous"), default=None,
                   help="torch backends only: memory layout (default channels_last)")
    _add_backend_flags(p)
    p.add_argument("--checkpoint", default=None, help="weights to load (default: random init)")
    p.add_argument("--weights", metavar="ID", default=None,
                   help="random-init (default), well-conditioned, or a zoo weights id")
    _add_trust(p)
    p.add_argument("--json", action="store_true", help="one JSON record")
    p.set_defaults(handler=_cmd_latency)


# Each concept module contributes its subcommands here, in the order `--help` lists them.
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_complexity, _add_fetch, _add_evaluate, _add_score, _add_merge, _add_export,
    _add_latency, _add_run, _add_gate,
    _add_report, _add_publish]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtmbench", description="Reproduce RTMDet's model-zoo table: params, FLOPs, "
        "COCO box AP and latency, with records, a regression gate and reports.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit codes: 0 ok; 1 a regression, a missed claim or a failed unit; 2 unusable "
        "input (a bad file, flag or setting);\n  3 not run: a missing prerequisite (no GPU, "
        "package, data set or obtainable weights); 130/143 interrupted.\n"
        "settings: RTMBENCH_CACHE, RTMBENCH_MIRROR, RTMBENCH_OFFLINE, RTMBENCH_COCO, "
        "RTMBENCH_COCO_MIRROR, RTMBENCH_ZOO, ... (README: Reproducing on your machine).")
    parser.add_argument("--zoo", default=None, help="zoo YAML (default: the shipped zoo)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)
    for add in COMMANDS:
        add(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt: every ``finally``
    and context manager runs (temporary directories, locks, partial files), the run stops as
    after Ctrl-C, and :func:`main` exits with 143 (128 + SIGTERM), as a killed process would."""


@contextlib.contextmanager
def _sigterm_as_exception() -> Iterator[None]:
    """While a command runs: the first SIGTERM raises :class:`Terminated`; later ones are
    ignored so that the clean-up it started can finish (SIGKILL still stops everything)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with _sigterm_as_exception():
            return args.handler(args)
    except RtmbenchError as exc:
        print(f"rtmbench {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        if (problem := storage_problem(exc)) is None:
            raise
        print(f"rtmbench {args.command}: error: its output could not be written ({problem}); "
              f"what was written before is kept: free space and run the command again (an "
              f"evaluation resumes where it stopped).", file=sys.stderr)
        return OutputNotWritable.exit_code
    except Terminated:
        print(f"rtmbench {args.command}: terminated (SIGTERM); finished work is kept, "
              f"temporary files were removed.", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"rtmbench {args.command}: interrupted; finished work is kept.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
