"""Command line: thin commands over the library. Errors a user can fix print one paragraph."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence

from .errors import Failed, OutputNotWritable, RtmbenchError, storage_problem

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
    from .run.complexity_command import complexity_summary, complexity_table, count_and_judge
    from .spec.zoo import load_zoo

    zoo = load_zoo(args.zoo)
    entries = [zoo.get(s) for s in args.sizes or zoo.sizes]  # every name before the slow part
    rows = count_and_judge(entries)
    if args.json:
        for row in rows:
            print(json.dumps(row.to_dict(), sort_keys=True))
    else:
        print(complexity_table(rows))
        print("\n" + complexity_summary(rows))
    return 0 if all(r.ok for r in rows) else Failed.exit_code


def _add_complexity(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("complexity", help="count params and FLOPs and judge the published claims")
    p.add_argument("sizes", nargs="*", metavar="SIZE", help="zoo sizes (default: all)")
    p.add_argument("--json", action="store_true", help="one JSON record per size")
    p.set_defaults(handler=_cmd_complexity)


def _cmd_fetch(args: argparse.Namespace) -> int:
    from .run.fetch_command import describe_coco, fetch_all, fetch_coco, wanted_weights
    from .spec.zoo import load_zoo

    zoo = load_zoo(args.zoo)
    coco = args.coco or args.coco_dir is not None
    if coco:
        got = fetch_coco(zoo, args.coco_dir, progress=not args.quiet)
        print(json.dumps(got.to_dict(), sort_keys=True) if args.json
              else "\n".join(describe_coco(got, zoo)))
    entries = [zoo.get(s) for s in (args.sizes or ([] if coco else zoo.sizes))]
    wanted, skipped = wanted_weights(entries, args.weights)
    for note in skipped:
        print(note, file=sys.stderr)
    for done in fetch_all(wanted, load=args.load, trust=args.trust_checkpoint,
                          progress=not args.quiet):
        print(json.dumps(done.to_dict(), sort_keys=True) if args.json else done.describe())
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
    return Failed.exit_code if summary.failed else 0


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

    done = publish_run(args.run, args.results_dir)
    target = done.path
    print(target)
    if done.staged is False:  # e.g. --results-dir is a folder git ignores
        from .errors import InputError

        raise InputError(f"{target} is copied, but `git add` failed ({done.problem}): `rtmbench "
                         f"report --publish` renders the runs git tracks; publish into a "
                         f"folder git tracks, or add the file yourself.")
    staged = " and staged (git add)" if done.staged else ""
    print(f"rtmbench publish: {target} now stands beside the committed runs{staged}; "
          f"`rtmbench report --publish` renders reports/ and the README's table from them, "
          f"then commit {target}, reports/ and README.md.", file=sys.stderr)
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


def _flag_options(args: argparse.Namespace, backend: str):
    """Backend options from latency's and evaluate's flags (--layout, --ort-provider,
    --trt-typing, --compile-mode), for the backends they apply to
    (rtmbench.run.request_builder.backend_options decides which)."""
    from .run.request_builder import backend_options

    return backend_options(backend, layout=getattr(args, "layout", None),
                           provider=getattr(args, "ort_provider", None),
                           typing=getattr(args, "trt_typing", None),
                           compile_mode=getattr(args, "compile_mode", "auto"))


def _backend_options(args: argparse.Namespace, backend: str) -> dict:
    """:func:`_flag_options` as the backend constructor's keyword arguments."""
    return _flag_options(args, backend).kwargs()


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


# What `export`'s flags are called in its request (rtmbench.measure.requests.ExportRequest).
EXPORT_FLAGS = {"input_size": "--input-size", "batch": "--batch", "opset": "--opset",
                "fold_bn": "--no-fold-bn", "precision": "--precision",
                "fp16_converter": "--fp16-converter"}


def _export_request(args: argparse.Namespace, entry):
    """The export request from the flags, within the latency units' bounds (named by flag)."""
    from .errors import InputError
    from .run.request_builder import RequestError, export_request

    try:
        return export_request(tuple(args.input_size or entry.input_size), args.batch,
                              dynamic_batch=args.dynamic_batch, opset=args.opset,
                              fold_bn=not args.no_fold_bn, precision=args.precision,
                              fp16_converter=args.fp16_converter)
    except RequestError as exc:
        raise InputError(exc.naming(EXPORT_FLAGS)) from None


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
    request = _export_request(args, entry)  # every input before torch is imported (seconds)
    _check_weights_flags(args, entry)
    from .measure.export import ExportError
    from .run.export_command import export_command

    built = _build(args, entry, default_random=True, say="rtmbench export")
    try:
        report = export_command(entry, out, request, built)
    except ExportError as exc:
        if not exc.fields:
            raise
        flags = ", ".join(EXPORT_FLAGS[f] for f in exc.fields)
        raise ExportError(f"{exc} (flags: {flags})", fields=exc.fields) from exc
    print(report.to_json() if args.json else report.text(_weights_text(built.provenance)))
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


# What `latency`'s flags are called in its request (rtmbench.spec.check_specs.LatencyProtocol,
# whose bounds a suite's latency check has too).
LATENCY_FLAGS = {"min_iterations": "--iterations", "min_duration_s": "--min-duration",
                 "warmup_s": "--warmup", "input_size": "--input-size", "batch": "--batch"}


def _latency_request(args: argparse.Namespace):
    """The latency request from the flags (rtmbench.run.request_builder, the runner's builder too):
    the suite's bounds apply to them, a value out of them is named by its flag."""
    from .errors import InputError
    from .measure.requests import Remeasure
    from .run.request_builder import RequestError, latency_request

    try:
        return latency_request(
            args.backend, args.device, args.precision,
            protocol={"min_iterations": args.iterations, "min_duration_s": args.min_duration,
                      "warmup_s": args.warmup, "input_size": args.input_size,
                      "batch": args.batch},
            options=_flag_options(args, args.backend), include_transfer=args.include_transfer,
            reference=not args.no_reference, remeasure=Remeasure())
    except RequestError as exc:
        raise InputError(exc.naming(LATENCY_FLAGS)) from None


def _cmd_latency(args: argparse.Namespace) -> int:
    from .spec.zoo import load_zoo

    entry = load_zoo(args.zoo).get(args.size)
    request = _latency_request(args)  # every input before torch is imported (seconds)
    _check_weights_flags(args, entry)
    from .run.latency_command import measure_command

    model = _build(args, entry, default_random=True, say="rtmbench latency").model
    report = measure_command(entry, request, model, progress=not args.json)
    print(report.to_json() if args.json else report.text())
    if not report.measured:
        print(f"rtmbench latency: not run: {report.result.reason}", file=sys.stderr)
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
        "RTMBENCH_COCO_MIRROR, RTMBENCH_ZOO, ... (docs/reproducing.md).")
    parser.add_argument("--zoo", default=None, help="zoo YAML (default: the shipped zoo)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)
    for add in COMMANDS:
        add(sub)
    return parser


INTERRUPTED_EXIT = 128 + signal.SIGINT  # 130, as a shell reports a process Ctrl-C stopped


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt: every ``finally``
    and context manager runs (temporary directories, locks, partial files), the run stops as
    after Ctrl-C, and :func:`main` exits with 143 (128 + SIGTERM), as a killed process would."""

    exit_code = 128 + signal.SIGTERM  # 143


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
        return Terminated.exit_code
    except KeyboardInterrupt:
        print(f"rtmbench {args.command}: interrupted; finished work is kept.", file=sys.stderr)
        return INTERRUPTED_EXIT


if __name__ == "__main__":
    sys.exit(main())
