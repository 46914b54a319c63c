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


# Each concept module contributes its subcommands here, in the order `--help` lists them.
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_complexity]


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
