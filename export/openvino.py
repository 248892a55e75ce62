"""``python -m export.openvino``: an ONNX artifact to an OpenVINO IR (FP32, FP16 weights or INT8) with its card.

Examples::

    python -m export.openvino --int8   # the zoo's PFLD-GhostOne, NNCF, calibrated on ./pseudo -> pfld_ghostone_int8.xml
    python -m export.openvino artifacts/pfld.onnx -o artifacts/pfld.xml
    python -m export.openvino artifacts/pfld.onnx -o artifacts/pfld_fp16.xml --fp16
    python -m export.openvino artifacts/pfld.onnx -o artifacts/pfld_int8.xml --int8 --calib calib/real.npz \\
        --ignore-first-conv-and-head --val-faces ../shared/data/faces68
    python -m export.openvino artifacts/pfld.onnx -o artifacts/pfld_int8_ac.xml --int8 --calib calib/real.npz \\
        --max-nme-drop 0.5 --val-faces held_out_faces/
    python -m export.openvino artifacts/pfld_int8.onnx -o artifacts/pfld_qdq.xml   # Q/DQ from export.ort
    python -m export.openvino artifacts/edge68.onnx -o artifacts/edge68_int8.xml --int8 --calib calib.npz \\
        --preset mixed --activation-ranges minmax --float-types GroupConvolution   # depthwise convolutions float

The IR is ``OUT.xml`` + ``OUT.bin``, the card ``OUT.xml.json`` (also embedded in the IR's rt_info).
``--val-faces`` compares the IR with the ONNX model on annotated faces and writes the result to the
card; with ``--max-nme-drop`` (percent points of inter-ocular NME) NNCF's accuracy control keeps
layers in float until the INT8 IR is within that budget on those faces.

Typed alone, the defaults are those of :mod:`export.defaults`: the zoo's ``pfld_ghostone``, the IR
``<model>.xml`` (``_fp16.xml``, ``_int8.xml``) beside the model (in the current folder for a zoo
model), and for ``--int8`` style proxies of the pseudo-labelled frames in ``./pseudo``. An existing
output is never replaced without ``--force``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from export.defaults import (
    CALIB_HELP,
    MODEL_HELP,
    model_and_output,
    needs_calibration,
    resolve_calibration,
)
from export.openvino_export import ACTIVATION_RANGES, PRESETS, IrConfig
from runtime.card import sidecar_path
from runtime.errors import UsageError, cli_main
from runtime.outputs import add_force_flag, refuse_overwrite, report_written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m export.openvino",
        description="Convert an ONNX artifact to an OpenVINO IR (FP32, FP16 weights, or INT8 with NNCF).",
        epilog="examples:" + __doc__.split("Examples::", 1)[1].split("The IR is", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", nargs="?", metavar="MODEL.onnx", help="float or Q/DQ " + MODEL_HELP)
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="OUT.xml",
        help="the IR to write (default: <model>.xml, <model>_fp16.xml or <model>_int8.xml beside the model; in "
        "the current folder for a zoo model)",
    )
    parser.add_argument("--fp16", action="store_true", help="store float weights as FP16 (default: FP32)")

    int8 = parser.add_argument_group("INT8 with NNCF")
    int8.add_argument("--int8", action="store_true", help="post-training quantization with NNCF")
    int8.add_argument("--calib", type=Path, metavar="CALIB.npz|FACES", help=CALIB_HELP)
    int8.add_argument("--subset-size", type=int, help="calibration samples used at most, >= 1 (default 300)")
    int8.add_argument(
        "--preset",
        choices=PRESETS,
        help="performance: symmetric activations; mixed: asymmetric activations (default performance)",
    )
    int8.add_argument(
        "--ignore-first-conv-and-head",
        action="store_true",
        help="keep the first convolution and the last Conv/MatMul in float",
    )
    int8.add_argument(
        "--keep-head-float",
        action="store_true",
        help="keep the regression head in float (the layers around the features a fully-connected head reads; "
        "their ranges fail on faces unlike the calibration set's)",
    )
    int8.add_argument(
        "--float-types",
        metavar="TYPES",
        help="comma-separated OpenVINO operation types NNCF leaves in float, e.g. GroupConvolution (depthwise "
        "convolutions); each must occur in the model",
    )
    int8.add_argument(
        "--activation-ranges",
        choices=ACTIVATION_RANGES,
        help="default: NNCF's estimator for the preset; minmax: global min/max over the calibration samples, as "
        "ONNX Runtime's MinMax (default: default)",
    )
    int8.add_argument(
        "--max-nme-drop",
        type=float,
        metavar="POINTS",
        help="accuracy-controlled INT8: largest inter-ocular NME increase (percent points, >= 0) on --val-faces",
    )
    parser.add_argument(
        "--val-faces",
        type=Path,
        metavar="DIR",
        help="annotated faces (images + .pts) to compare the IR with the ONNX model on (and to drive --max-nme-drop)",
    )
    add_force_flag(parser)
    return parser


def config_from_args(args: argparse.Namespace, model: Path, output: Path, calibration: Path | None) -> IrConfig:
    """The config of ``args`` with the model, output and calibration already resolved (see :func:`main`)."""
    if not args.int8:
        given = [
            flag
            for flag, value in (
                ("--subset-size", args.subset_size),
                ("--preset", args.preset),
                ("--float-types", args.float_types),
                ("--activation-ranges", args.activation_ranges),
            )
            if value is not None
        ]
        if given:
            raise UsageError(f"{', '.join(given)} only make sense with --int8; add --int8 or drop them")
    return IrConfig(
        model=model,
        output=output,
        fp16=args.fp16,
        int8=args.int8,
        calibration=calibration,
        subset_size=args.subset_size if args.subset_size is not None else 300,
        preset=args.preset or "performance",
        ignore_first_conv_and_head=args.ignore_first_conv_and_head,
        keep_head_float=args.keep_head_float,
        float_types=tuple(name.strip() for name in (args.float_types or "").split(",") if name.strip()),
        activation_ranges=args.activation_ranges or "default",
        max_nme_drop=args.max_nme_drop,
        val_faces=args.val_faces,
    )


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    suffix = "_int8.xml" if args.int8 else "_fp16.xml" if args.fp16 else ".xml"
    model, output = model_and_output(args.model, args.output, suffix)
    outputs = [output, output.with_suffix(".bin"), sidecar_path(output)]
    refuse_overwrite(outputs, args.force)
    calibration = args.calib
    if args.int8 and not args.fp16 and needs_calibration(model):
        calibration, built = resolve_calibration(args.calib, model, output, args.force)
        if built:
            outputs.insert(0, calibration)
    config = config_from_args(args, model, output, calibration)
    from export.openvino_export import ir_from_onnx

    card = ir_from_onnx(config)
    line = f"{config.output}: OpenVINO IR {card.precision} ({card.extra['openvino']['weights']} weights)"
    if card.precision == "int8":
        source = card.extra["openvino"]["int8_from"]
        line += f", INT8 from {'NNCF' if source == 'nncf' else 'the Q/DQ ONNX'}"
        if source == "nncf":
            line += f" ({card.calibration['preset']}, {card.calibration['subset_size']} samples)"
    evaluation = card.extra.get("evaluation")
    if evaluation:
        scores = evaluation["nme_inter_ocular"]
        line += (
            f"; on {evaluation['faces']} faces NME {scores['ir']:.3f} % vs ONNX {scores['reference']:.3f} % "
            f"({evaluation['nme_change']:+.3f}), max abs output diff {evaluation['max_abs_output_diff']:.2e}"
        )
    print(line)
    report_written(outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
