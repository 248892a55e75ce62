"""``python -m export.ort --int8``: static INT8 Q/DQ quantization of a float ONNX artifact.

Examples::

    python -m export.ort --int8      # the zoo's PFLD-GhostOne, calibrated on ./pseudo -> pfld_ghostone_int8.onnx
    python -m export.ort --int8 artifacts/pfld.onnx --calib calib.npz -o artifacts/pfld_int8.onnx
    python -m export.ort --int8 artifacts/pfld.onnx --calib my_faces/   # style proxies of annotated faces
    python -m export.ort --int8 artifacts/pfld.onnx --calib calib.npz --max-nme-drop 0.1 -o artifacts/pfld_int8.onnx
    python -m export.ort --int8 artifacts/pfld.onnx --calib calib.npz --method entropy --num-bins 2048 \\
        -o artifacts/pfld_int8_entropy.onnx
    # the same calibration, encoded for TensorRT (signed activations), without calibrating again:
    python -m export.ort --int8 artifacts/pfld.onnx --calib calib.npz --ranges artifacts/pfld_int8.onnx.ranges.json \\
        --encoding s8s8 -o artifacts/pfld_int8_s8s8.onnx
    # how many calibration samples the ranges need (prints a table, writes nothing):
    python -m export.ort --int8 artifacts/pfld.onnx --calib calib.npz --convergence 25,50,100,200

The calibration array is an ``.npz`` with ``inputs`` (N, 3, S, S) float32, preprocessed exactly as
the runtime does (see :mod:`export.calibration`). The result is int8 Q/DQ (per-channel weights
unless ``--per-tensor``) in the encoding asked for (``u8s8`` for ONNX Runtime on x86, the default;
``s8s8`` for TensorRT), with its card and its range table (``<output>.ranges.json``, whose hash the
card names). Typed alone, ``--int8`` takes the defaults of :mod:`export.defaults`: the zoo's
``pfld_ghostone``, ``<model>_int8.onnx`` beside the model (in the current folder for a zoo model),
and style proxies of the pseudo-labelled frames in ``./pseudo`` (from ``python -m runtime.track VIDEO
--save-frames pseudo``). An existing output is never replaced without ``--force``. ``--max-nme-drop`` keeps the fewest quantization points in float that hold the
label-free NME against the float model within the budget on a validation split of the calibration
array (whole source images held out, never the evaluation faces).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from export.defaults import CALIB_HELP, MODEL_HELP, model_and_output, resolve_calibration
from export.encodings import ENCODING_TARGETS, ENCODINGS
from export.ort_quantize import KEEP_FLOAT, METHODS, MIN_HISTOGRAM_BINS, Int8Config
from export.ranges import ranges_path
from runtime.card import sidecar_path
from runtime.errors import UsageError, cli_main
from runtime.outputs import add_force_flag, refuse_overwrite, report_written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m export.ort",
        description="Static INT8 Q/DQ quantization with ONNX Runtime.",
        epilog="examples:" + __doc__.split("Examples::", 1)[1].split("The calibration array", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--int8",
        nargs="?",
        const=None,
        required=True,
        metavar="MODEL.onnx",
        help="quantize this float " + MODEL_HELP,
    )
    parser.add_argument("--calib", type=Path, metavar="CALIB.npz|FACES", help=CALIB_HELP)
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="OUT.onnx",
        help="the INT8 .onnx to write (default: <model>_int8.onnx, or <model>_int8_s8s8.onnx for --encoding s8s8, "
        "beside the model; in the current folder for a zoo model)",
    )
    parser.add_argument(
        "--per-tensor", action="store_true", help="one scale per weight tensor (default: per output channel)"
    )
    parser.add_argument(
        "--method", choices=METHODS, default="minmax", help=f"activation calibration: {', '.join(METHODS)} (default minmax)"
    )
    parser.add_argument(
        "--num-bins", type=int, default=2048, help=f"histogram bins for entropy/percentile, >= {MIN_HISTOGRAM_BINS} (default 2048)"
    )
    parser.add_argument(
        "--percentile", type=float, default=99.99, help="for --method percentile, in (0, 100] (default 99.99)"
    )
    parser.add_argument(
        "--keep-float",
        default="",
        metavar="LAYERS",
        help=f"comma-separated layers to leave in float: {', '.join(KEEP_FLOAT)}",
    )
    parser.add_argument(
        "--encoding",
        choices=ENCODINGS,
        default="u8s8",
        help="how the ranges are stored: " + "; ".join(f"{name}: {target}" for name, target in ENCODING_TARGETS.items())
        + " (default u8s8)",
    )
    parser.add_argument(
        "--ranges",
        type=Path,
        metavar="RANGES.json",
        help="encode this range table (from an earlier export of the same float model) instead of calibrating",
    )
    parser.add_argument(
        "--max-nme-drop",
        type=float,
        default=None,
        metavar="POINTS",
        help="keep the fewest layers' inputs/weights in float so the label-free NME against the float model "
        "(inter-ocular %%, mean) stays within POINTS on a validation split of --calib",
    )
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=0.25,
        help="share of the calibration array's source images held out to validate --max-nme-drop, in (0, 1) "
        "(default 0.25)",
    )
    parser.add_argument(
        "--bias-correction",
        action="store_true",
        help="subtract each quantized layer's mean output shift (measured on calibration samples, layer by "
        "layer) from its float bias, unless that moves the output away from the float model's; off by default: "
        "on real faces it moved PFLD-GhostOne's NME within noise and it would break OpenSeeFace's heatmaps",
    )
    parser.add_argument(
        "--convergence",
        nargs="?",
        const="25,50,100,200,400",
        metavar="SIZES",
        help="instead of exporting, print how the ranges and the INT8 label-free NME change when calibrating on "
        "nested random subsets of SIZES samples (default 25,50,100,200,400, then the whole array less the "
        "validation split) and exit; writes nothing",
    )
    parser.add_argument("--batch-size", type=int, default=1, help="samples per calibration run, >= 1 (default 1)")
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="samples whose activations are held in memory at once, >= 1 (default: 32, or the batch size if larger)",
    )
    add_force_flag(parser)
    return parser


def config_from_args(args: argparse.Namespace, model: Path, calibration: Path, output: Path) -> Int8Config:
    """The config of ``args``, with the model, calibration and output already resolved (see :func:`main`)."""
    keep_float = tuple(name.strip() for name in args.keep_float.split(",") if name.strip())
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.convergence is not None and args.ranges is not None:
        raise UsageError("--convergence calibrates on subsets of --calib; it cannot use --ranges")
    return Int8Config(
        model=model,
        calibration=calibration,
        output=output,  # --convergence writes nothing; the config still names where an export would go.
        per_channel=not args.per_tensor,
        method=args.method,
        num_bins=args.num_bins,
        percentile=args.percentile,
        keep_float=keep_float,
        batch_size=args.batch_size,
        chunk_size=args.chunk_size if args.chunk_size is not None else max(32, args.batch_size),
        encoding=args.encoding,
        ranges=args.ranges,
        max_nme_drop=args.max_nme_drop,
        validation_fraction=args.validation_fraction,
        bias_correction=args.bias_correction,
    )


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.convergence is not None and args.ranges is not None:
        raise UsageError("--convergence calibrates on subsets of --calib; it cannot use --ranges")
    suffix = "_int8.onnx" if args.encoding == "u8s8" else f"_int8_{args.encoding}.onnx"
    model, output = model_and_output(args.int8, args.output, suffix)
    if args.convergence is None:
        refuse_overwrite([output, sidecar_path(output), ranges_path(output)], args.force)
    calibration, built = resolve_calibration(args.calib, model, output, args.force)
    made_calibration = calibration if built else None
    config = config_from_args(args, model, calibration, output)
    if args.convergence is not None:
        from export.range_convergence import format_convergence, parse_sizes, range_convergence

        print(format_convergence(range_convergence(config, parse_sizes(args.convergence))))
        report_written([made_calibration])
        return 0
    from export.ort_quantize import int8_from_onnx

    card = int8_from_onnx(config)
    calibration = card.calibration
    quantization = card.extra["quantization"]
    mixed = quantization.get("mixed_precision")
    print(
        f"{config.output}: int8 Q/DQ {quantization['encoding']} ({calibration['method']}, "
        f"{'per-channel' if config.per_channel else 'per-tensor'} weights, "
        f"{calibration['count']} calibration samples, ranges {calibration['range_table_sha256'][:12]})"
    )
    if mixed:
        latency = mixed.get("latency_ms_batch1", {})
        print(
            f"mixed precision: kept float {_names(g['layer'] for g in mixed['kept_float'])} "
            f"({sum(len(g['points']) for g in mixed['kept_float'])} of {mixed['points']} quantization points); "
            f"label-free NME {mixed['error_all_int8']:.3f} -> {mixed['error']:.3f} % on {mixed['validation_inputs']} "
            f"validation inputs (budget {mixed['budget']})"
            + (
                f"; latency float {latency['float']:.2f} / all-int8 {latency['all_int8']:.2f} / "
                f"mixed {latency['mixed']:.2f} ms"
                if latency
                else ""
            )
        )
    report_written([made_calibration, config.output, sidecar_path(config.output), ranges_path(config.output)])
    return 0


def _names(names, shown: int = 6) -> str:
    names = list(names)
    if not names:
        return "nothing"
    more = f" and {len(names) - shown} more (see the card)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


if __name__ == "__main__":
    sys.exit(main())
