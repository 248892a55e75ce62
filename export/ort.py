"""``python -m export.ort --int8``: static INT8 Q/DQ quantization of a float ONNX artifact.

Example::

    python -m export.ort --int8 artifacts/pfld.onnx --calib calib/real.npz --method entropy \\
        --num-bins 2048 -o artifacts/pfld_int8_entropy.onnx

The calibration array is an ``.npz`` with ``inputs`` (N, 3, S, S) float32, preprocessed exactly as
the runtime does (see :mod:`export.calibration`). The result is symmetric int8 Q/DQ (per-channel
weights unless ``--per-tensor``), checked for TensorRT's explicit quantization, with its card.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from export.ort_quantize import KEEP_FLOAT, METHODS, Int8Config
from runtime.errors import UsageError, cli_main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m export.ort", description="Static INT8 Q/DQ quantization with ONNX Runtime."
    )
    parser.add_argument(
        "--int8", type=Path, required=True, metavar="MODEL.onnx", help="float ONNX artifact with a card"
    )
    parser.add_argument("--calib", type=Path, required=True, metavar="CALIB.npz", help="calibration array")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the INT8 .onnx to write")
    parser.add_argument(
        "--per-tensor", action="store_true", help="one scale per weight tensor (default: per output channel)"
    )
    parser.add_argument("--method", choices=METHODS, default="minmax", help="activation calibration (default minmax)")
    parser.add_argument(
        "--num-bins", type=int, default=2048, help="histogram bins for entropy/percentile (default 2048)"
    )
    parser.add_argument("--percentile", type=float, default=99.99, help="for --method percentile (default 99.99)")
    parser.add_argument(
        "--keep-float",
        default="",
        metavar="LAYERS",
        help=f"comma-separated layers to leave in float: {', '.join(KEEP_FLOAT)}",
    )
    parser.add_argument("--batch-size", type=int, default=1, help="samples per calibration run (default 1)")
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="samples whose activations are held in memory at once (default: 32, or the batch size if larger)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> Int8Config:
    keep_float = tuple(name.strip() for name in args.keep_float.split(",") if name.strip())
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    return Int8Config(
        model=args.int8,
        calibration=args.calib,
        output=args.output,
        per_channel=not args.per_tensor,
        method=args.method,
        num_bins=args.num_bins,
        percentile=args.percentile,
        keep_float=keep_float,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size if args.chunk_size is not None else max(32, args.batch_size),
    )


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    config = config_from_args(build_parser().parse_args(argv))
    from export.ort_quantize import int8_from_onnx

    card = int8_from_onnx(config)
    calibration = card.calibration
    print(
        f"{config.output}: int8 QDQ ({calibration['method']}, "
        f"{'per-channel' if config.per_channel else 'per-tensor'} weights, "
        f"{calibration['count']} calibration samples); "
        f"card in {config.output}.json"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
