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


def _model_with_checkpoint(entry, checkpoint: str | None):
    """The zoo entry's network, with ``checkpoint`` loaded when given (random weights else)."""
    from .models import build_rtmdet

    model = build_rtmdet(entry.architecture.to_arch(), entry.num_classes)
    if checkpoint:
        try:
            from .checkpoints import load_checkpoint
        except ImportError as exc:
            raise RtmbenchError(f"--checkpoint needs rtmbench.checkpoints, which this build "
                                f"lacks ({exc}); export without --checkpoint or update "
                                f"rtmbench.") from exc
        load_checkpoint(model, checkpoint)
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
COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_complexity, _add_export,
                                                                  _add_latency]


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
