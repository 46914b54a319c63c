"""Command line: thin commands over the library. Errors a user can fix print one paragraph."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from .errors import RtmbenchError

Handler = Callable[[argparse.Namespace], int]


def _cmd_complexity(args: argparse.Namespace) -> int:
    from .complexity import format_table, measure_complexity
    from .zoo import load_zoo

    zoo = load_zoo(args.zoo)
    sizes = args.sizes or zoo.sizes
    entries = [zoo.get(s) for s in sizes]  # validate every name before the slow part
    from tqdm import tqdm

    reports = [measure_complexity(e) for e in tqdm(entries, desc="counting params and FLOPs",
                                                    unit="model", file=sys.stderr,
                                                    disable=len(entries) < 2, leave=False)]
    if args.json:
        for r in reports:
            print(json.dumps(r.to_json(), sort_keys=True))
    else:
        print(format_table(reports))
        bad = [r.size for r in reports if not r.ok]
        print(f"\n{len(reports) - len(bad)}/{len(reports)} sizes match their published params "
              f"and FLOPs" + (f"; MISSING: {', '.join(bad)}" if bad else "."))
    return 0 if all(r.ok for r in reports) else 1


def _add_complexity(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("complexity", help="count params and FLOPs and judge the published claims")
    p.add_argument("sizes", nargs="*", metavar="SIZE", help="zoo sizes (default: all)")
    p.add_argument("--json", action="store_true", help="one JSON record per size")
    p.set_defaults(handler=_cmd_complexity)


def _cmd_fetch(args: argparse.Namespace) -> int:
    from .checkpoints import fetch_weights, load_checkpoint
    from .models import build_rtmdet
    from .zoo import load_zoo

    zoo = load_zoo(args.zoo)
    entries = [zoo.get(s) for s in (args.sizes or zoo.sizes)]
    for entry in entries:
        fetched = fetch_weights(entry, args.weights, progress=not args.quiet)
        record = {"model": entry.name, **fetched.provenance(), "path": str(fetched.path)}
        if args.load or args.trust_checkpoint:
            model = build_rtmdet(entry.architecture.to_arch(), entry.num_classes)
            info = load_checkpoint(model, fetched.path, trust=args.trust_checkpoint)
            record["loaded"] = {"layout": info["layout"], "strict": True}
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
    p = sub.add_parser("fetch", help="download, verify and cache the zoo's checkpoints",
                       description="Fetch checkpoints into RTMBENCH_CACHE (default "
                       "~/.cache/rtmbench), verified by sha256. Sources: RTMBENCH_MIRROR (base URL "
                       "or local folder), then the zoo's urls. RTMBENCH_OFFLINE=1 never connects.")
    p.add_argument("sizes", nargs="*", metavar="SIZE", help="zoo sizes (default: all)")
    p.add_argument("--weights", metavar="ID", default=None,
                   help="which weights entry (default: the first available, e.g. mmyolo)")
    p.add_argument("--load", action="store_true",
                   help="also load each checkpoint strictly into its model (safe unpickling)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow arbitrary pickled objects when loading (runs code: only for "
                   "files you trust); implies --load")
    p.add_argument("--json", action="store_true", help="one JSON provenance record per size")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_fetch)



def _cmd_run(args: argparse.Namespace) -> int:
    from .runner import format_summary, run_suite
    from .suite import load_suite
    from .zoo import load_zoo

    zoo = load_zoo(args.zoo)
    suite = load_suite(args.suite, zoo)
    summary = run_suite(suite, run_id=args.run_id, resume=args.resume,
                        results_dir=args.results_dir, zoo=zoo, progress=not args.no_progress)
    print(format_summary(summary))
    return 1 if summary.failed else 0


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a suite: one record per model x check x backend")
    p.add_argument("suite", metavar="SUITE", help="suite YAML, or a shipped suite's name "
                   "(reproduce, smoke, gate)")
    p.add_argument("--run-id", help="id of a new run (default: date, suite and host)")
    p.add_argument("--resume", metavar="ID", help="continue run ID, skipping recorded units")
    p.add_argument("--results-dir", help="where run files go (default: the suite's results_dir)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_run)


def _cmd_gate(args: argparse.Namespace) -> int:
    from .gate import run_gate

    return run_gate(args.run, baseline=args.baseline, suite=args.suite,
                    results_dir=args.results_dir, zoo_path=args.zoo)


def _add_gate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gate", help="fail (exit 1) on a regression against claims or a baseline")
    p.add_argument("run", metavar="RUN", help="run id (under --results-dir) or .jsonl file")
    p.add_argument("--baseline", metavar="FILE", help="baseline run (.jsonl) to compare with")
    p.add_argument("--suite", default="gate", help="suite whose tolerances apply "
                   "(default: gate)")
    p.add_argument("--results-dir", default="results", help="where run ids are looked up")
    p.set_defaults(handler=_cmd_gate)


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    written = write_report(args.runs, results_dir=args.results_dir, out_dir=args.out_dir,
                           readme=None if args.no_readme else args.readme)
    for path in written:
        print(path)
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="render reports/results.md, plots and the README table")
    p.add_argument("runs", nargs="*", metavar="RUN", help="run ids or .jsonl files, later ones "
                   "taking precedence (default: the latest run)")
    p.add_argument("--results-dir", default="results", help="where run ids are looked up")
    p.add_argument("--out-dir", default="reports", help="where results.md and plots go")
    p.add_argument("--readme", default="README.md", help="README whose results block to update")
    p.add_argument("--no-readme", action="store_true", help="leave the README alone")
    p.set_defaults(handler=_cmd_report)

def _cmd_score(args: argparse.Namespace) -> int:
    from .scoring import format_metrics, load_detections, score

    detections = load_detections(args.detections)
    conventions = [args.convention] if args.convention else None
    metrics = score(args.annotations, detections, backend=args.backend,
                    **({"conventions": conventions} if conventions else {}))
    print(json.dumps(metrics, sort_keys=False) if args.json else format_metrics(metrics))
    return 0


def _add_score(sub: argparse._SubParsersAction) -> None:
    from .scoring import BACKENDS, CONVENTIONS, DEFAULT_BACKEND

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


def _build_model_for_eval(args: argparse.Namespace, entry):
    """The model with its weights: --checkpoint, --random-weights, or the zoo's (fetched)."""
    from .checkpoints import fetch_weights

    if args.random_weights:
        print("rtmbench evaluate: --random-weights: randomly initialised model, a smoke run "
              "whose AP means nothing.", file=sys.stderr)
        return _model_with_checkpoint(entry, None)
    path = args.checkpoint or fetch_weights(entry, args.weights,
                                            progress=not args.no_progress).path
    return _model_with_checkpoint(entry, path, trust=args.trust_checkpoint,
                                  say="rtmbench evaluate")


def _eval_test_cfg(args: argparse.Namespace, entry):
    """--test-cfg, else the variant the weights' box AP claim was evaluated with."""
    from .errors import InputError

    name = args.test_cfg
    if name is None and not args.checkpoint and not getattr(args, "random_weights", False):
        claim = entry.box_ap_claim(args.weights)
        name = claim.test_cfg if claim and claim.test_cfg else "default"
    if name in (None, "default"):
        return entry.test_cfg
    if name not in entry.test_cfg_variants:
        raise InputError(f"--test-cfg {name!r} is not in the zoo; use 'default' or one of "
                         f"{', '.join(entry.test_cfg_variants)}.")
    print(f"rtmbench evaluate: test settings {name!r}: {entry.test_cfg_variants[name]}",
          file=sys.stderr)
    return entry.test_cfg_variants[name]


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .data import resolve_coco_root
    from .evaluation import evaluate, parse_shard
    from .scoring import format_metrics
    from .zoo import load_zoo

    entry = load_zoo(args.zoo).get(args.size)
    coco = resolve_coco_root(args.coco)
    shard = parse_shard(args.shard) if args.shard else None
    test_cfg = _eval_test_cfg(args, entry)
    model = _build_model_for_eval(args, entry)
    out = Path(args.out) if args.out else Path("results") / "eval" / entry.name
    result = evaluate(entry, coco, model=model, out_dir=out, limit=args.limit,
                      batch_size=args.batch_size, workers=args.workers, device=args.device,
                      shard=shard, progress=not args.no_progress, backend=args.backend,
                      test_cfg=test_cfg)
    import os

    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    if args.json:
        print(json.dumps(result.to_dict()))
    elif result.metrics:
        print(f"{entry.name}: {result.num_images} images, detections in "
              f"{result.detections_path}, metrics in {result.metrics_path}")
        print(format_metrics(result.metrics))
    else:
        print(f"{entry.name}: shard {args.shard} done ({result.num_images} images in the "
              f"evaluation); combine the shards with `rtmbench merge`.")
    return 0


def _add_eval_options(p: argparse.ArgumentParser) -> None:
    from .scoring import BACKENDS, DEFAULT_BACKEND

    p.add_argument("--coco", default=None, help="COCO root holding annotations/"
                   "instances_val2017.json and val2017/ (default: $RTMBENCH_COCO)")
    p.add_argument("--backend", choices=list(BACKENDS), default=DEFAULT_BACKEND,
                   help="COCOeval implementation for scoring")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="COCO box AP of one zoo model (resumable, shardable; "
                       "run under torchrun to use several processes)")
    p.add_argument("size", metavar="SIZE", help="zoo size or name (tiny, s, m, l, x)")
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint to load (.pth or .safetensors, MMDetection or MMYOLO layout); "
                   "default: fetch the zoo's weights (see --weights)")
    p.add_argument("--weights", metavar="ID", default=None,
                   help="zoo weights id to fetch when no --checkpoint is given (mmyolo, mmdet; "
                   "default: the first available)")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="allow arbitrary pickled objects in the checkpoint (runs code)")
    p.add_argument("--test-cfg", default=None, metavar="NAME",
                   help="test-time settings: 'default' (MMDetection 3.x) or a zoo variant such "
                   "as pre-pr9494; default: what the weights' published box AP used")
    p.add_argument("--random-weights", action="store_true",
                   help="evaluate a randomly initialised model (smoke test)")
    p.add_argument("--limit", type=int, default=None, help="first N images by id")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=2, help="DataLoader decoding workers")
    p.add_argument("--out", default=None, help="output directory (default results/eval/<model>); "
                   "rerunning into it resumes")
    p.add_argument("--shard", default=None, metavar="i/n", help="run shard i of n only")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_eval_options(p)
    p.set_defaults(handler=_cmd_evaluate)


def _cmd_merge(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .data import resolve_coco_root
    from .evaluation import merge_shards
    from .scoring import format_metrics

    result = merge_shards([Path(d) for d in args.shard_dirs], resolve_coco_root(args.coco),
                          Path(args.out), backend=args.backend)
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(f"merged {len(args.shard_dirs)} shard directories: {result.num_images} images, "
              f"metrics in {result.metrics_path}")
        print(format_metrics(result.metrics))
    return 0


def _add_merge(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("merge", help="combine `evaluate --shard i/n` outputs and score them")
    p.add_argument("shard_dirs", nargs="+", metavar="SHARD_DIR", help="--out dirs of the shards")
    p.add_argument("--out", required=True, help="directory for the merged results")
    _add_eval_options(p)
    p.set_defaults(handler=_cmd_merge)


def _model_with_checkpoint(entry, checkpoint, *, trust: bool = False, say: str | None = None):
    """The zoo entry's network, with ``checkpoint`` loaded strictly when given (random weights
    else); ``say`` names the command that reports what was loaded on stderr."""
    from .checkpoints import load_checkpoint
    from .models import build_rtmdet

    model = build_rtmdet(entry.architecture.to_arch(), entry.num_classes)
    if checkpoint:
        info = load_checkpoint(model, checkpoint, trust=trust)
        if say:
            print(f"{say}: {checkpoint} ({info['layout']} layout, sha256 "
                  f"{info['sha256'][:12]})", file=sys.stderr)
    return model


def _input_hw(args: argparse.Namespace) -> tuple[int, int] | None:
    return (args.input_size[1], args.input_size[0]) if args.input_size else None


def _cmd_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .export import export_and_check
    from .zoo import load_zoo

    entry = load_zoo(args.zoo).get(args.size)
    out = Path(args.output)
    if out.exists() and not args.force:
        raise RtmbenchError(f"{out} already exists; choose another -o path or pass --force "
                            f"to replace it.")
    model = _model_with_checkpoint(entry, args.checkpoint)
    width, height = entry.input_size
    input_hw = _input_hw(args) or (height, width)
    report = export_and_check(model, out, input_hw, args.batch, args.dynamic_batch, args.opset,
                              not args.no_fold_bn)
    if args.json:
        print(json.dumps({"path": str(out), "model": entry.name, "input_hw": list(input_hw),
                          "batch": args.batch, "opset": args.opset, "parity": report.to_dict()}))
    else:
        print(f"wrote {out} ({entry.name}, {args.batch}x3x{input_hw[0]}x{input_hw[1]}, "
              f"opset {args.opset}, outputs {', '.join(report.max_abs_error)})")
        print(f"ONNX Runtime vs PyTorch: max abs error {report.worst:.3g} "
              f"(every output within its bound: {report.ok})")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export the tensor-mode network (no NMS) to ONNX and "
                       "check it against PyTorch in ONNX Runtime")
    p.add_argument("size", metavar="SIZE", help="zoo size or name, e.g. tiny")
    p.add_argument("-o", "--output", required=True, help="ONNX file to write")
    p.add_argument("--checkpoint", default=None, help="weights to load (default: random init)")
    p.add_argument("--input-size", nargs=2, type=int, metavar=("W", "H"), default=None)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dynamic-batch", action="store_true", help="make the batch axis dynamic")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--no-fold-bn", action="store_true", help="keep BatchNorm nodes")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_cmd_export)


def _cmd_latency(args: argparse.Namespace) -> int:
    from .latency import compare_with_claims, format_result, measure_latency
    from .zoo import load_zoo

    entry = load_zoo(args.zoo).get(args.size)
    model = _model_with_checkpoint(entry, args.checkpoint) if args.checkpoint else None
    options = {"layout": args.layout} if args.layout and args.backend == "torch" else {}
    result = measure_latency(entry, args.backend, args.device, args.precision, model=model,
                             input_hw=_input_hw(args), batch=args.batch, warmup_s=args.warmup,
                             min_iterations=args.iterations, min_duration_s=args.min_duration,
                             include_transfer=args.include_transfer,
                             reference=not args.no_reference, backend_options=options,
                             progress=not args.json)
    claims = compare_with_claims(result, entry)
    if args.json:
        print(json.dumps(result.to_dict() | {"claims": claims}, sort_keys=True))
    else:
        print(format_result(result, claims))
    return 0


def _add_latency(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("latency", help="time one size on a backend (trtexec-like protocol)")
    p.add_argument("size", metavar="SIZE", help="zoo size or name, e.g. tiny")
    p.add_argument("--backend", choices=("torch", "onnxruntime", "tensorrt"), default="torch")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp32")
    p.add_argument("--input-size", nargs=2, type=int, metavar=("W", "H"), default=None)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--iterations", type=int, default=50, help="minimum timed iterations")
    p.add_argument("--min-duration", type=float, default=3.0, help="minimum timed seconds")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds")
    p.add_argument("--include-transfer", action="store_true",
                   help="time the host-to-device input copy too (excluded by default)")
    p.add_argument("--no-reference", action="store_true",
                   help="skip the reference convolution (no achieved-peak ratio)")
    p.add_argument("--layout", choices=("channels_last", "contiguous"), default=None,
                   help="torch backend only: memory layout (default channels_last)")
    p.add_argument("--checkpoint", default=None, help="weights to load (default: random init)")
    p.add_argument("--json", action="store_true", help="one JSON record")
    p.set_defaults(handler=_cmd_latency)


# Each concept module contributes its subcommands here, in the order `--help` lists them.
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_complexity, _add_fetch, _add_evaluate, _add_score, _add_merge, _add_export,
    _add_latency, _add_run, _add_gate,
    _add_report]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtmbench", description="Reproduce RTMDet's model-zoo table: params, FLOPs, "
        "COCO box AP and latency, with records, a regression gate and reports.")
    parser.add_argument("--zoo", default=None, help="zoo YAML (default: the shipped zoo)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except RtmbenchError as exc:
        print(f"rtmbench {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"rtmbench {args.command}: interrupted; finished work is kept.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
