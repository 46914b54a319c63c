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
    reports = [measure_complexity(e) for e in entries]
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


# Each concept module contributes its subcommands here, in the order `--help` lists them.
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_complexity, _add_fetch, _add_run, _add_gate, _add_report]


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
