"""``python -m export.onnx``: a checkpoint to ONNX, or a third-party ONNX model imported with a card.

Examples::

    python -m export.onnx runs/hrnet/best.pt -o artifacts/hrnet.onnx --parity-images ../shared/data/faces68
    python -m export.onnx runs/qat/last.pt -o artifacts/edge_qat.onnx   # a `train --qat` checkpoint: int8 Q/DQ
    python -m export.onnx --import PFLD_GhostOne_112_1_opt_sim.onnx -o artifacts/pfld.onnx \\
        --layout wflw98 --input-size 112 --channel-order BGR --mean 0.5 0.5 0.5 --std 0.5 0.5 0.5 \\
        --output-kind coords --crop-scale 1.2 --crop-box landmarks
    python -m export.onnx --import lm_model0_opt.onnx -o artifacts/openseeface.onnx \\
        --layout ibug66 --input-size 224 --output-kind heatmap_offsets --heatmap-size 28 \\
        --cell-spacing 223/27 --offset-scale 223 --offset-channels heatmap,y_offset,x_offset \\
        --offset-transform logit --offset-divisor 16 --crop-scale 1.2 --crop-scale-y 1.25

The library lives in :mod:`export.onnx_export` (this file is only the command); with absolute
imports ``import onnx`` elsewhere in the package still gets the ``onnx`` package.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from runtime.card import OUTPUT_KINDS, Card, sidecar_path
from runtime.crop import CropRule, Normalisation
from runtime.errors import UsageError, cli_main
from runtime.heatmap import DECODERS, OFFSET_DECODE, OFFSET_TRANSFORMS, HeatmapOffsets
from runtime.layouts import LAYOUTS
from runtime.outputs import add_force_flag, refuse_overwrite, report_written


@dataclass(frozen=True)
class CheckpointConfig:
    """Flags of the checkpoint -> ONNX mode."""

    checkpoint: Path
    output: Path
    opset: int = 17
    simplify: bool = False
    parity_images: Path | None = None
    max_abs: float | None = None


@dataclass(frozen=True)
class ImportConfig:
    """Flags of the third-party import mode; ``card`` is built and validated from them up front."""

    model: Path
    output: Path
    card: Card
    dynamic_batch: bool = True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m export.onnx",
        description="Export an edgemark checkpoint to ONNX, or import a third-party ONNX model with a card.",
        epilog="examples:" + __doc__.split("Examples::", 1)[1].split("The library lives", 1)[0]
        + "An existing output is never replaced without --force.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", nargs="?", type=Path, help="checkpoint (.pt) to export")
    parser.add_argument(
        "--import",
        dest="import_model",
        type=Path,
        metavar="MODEL.onnx",
        help="import this third-party ONNX model instead (needs the card flags below)",
    )
    parser.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT.onnx", help="the .onnx file to write (its card: OUT.onnx.json)"
    )

    export = parser.add_argument_group("checkpoint export")
    export.add_argument("--opset", type=int, default=17, help="ONNX opset, 13-20 (default 17)")
    export.add_argument("--simplify", action="store_true", help="run onnx-simplifier (needs onnxsim)")
    export.add_argument(
        "--parity-images", type=Path, metavar="DIR", help="folder of annotated faces for the torch/ONNX parity check"
    )
    export.add_argument(
        "--max-abs", type=float, help="parity limit on max abs difference (default 1e-4; 0.2 for a QAT checkpoint)"
    )

    card = parser.add_argument_group("card of an imported model")
    card.add_argument("--layout", choices=sorted(LAYOUTS), help=f"landmark layout: {', '.join(sorted(LAYOUTS))}")
    card.add_argument("--input-size", type=int, help="side of the square input in pixels, > 0")
    card.add_argument(
        "--channel-order", choices=("RGB", "BGR"), default="RGB", help="RGB or BGR, as the model was trained (default RGB)"
    )
    card.add_argument(
        "--mean",
        type=_number,
        nargs=3,
        default=(0.485, 0.456, 0.406),
        help="three numbers, per channel, on the [0, 1] scale (default ImageNet's 0.485 0.456 0.406)",
    )
    card.add_argument(
        "--std",
        type=_number,
        nargs=3,
        default=(0.229, 0.224, 0.225),
        help="three numbers > 0, per channel, on the [0, 1] scale (default ImageNet's 0.229 0.224 0.225)",
    )
    card.add_argument(
        "--output-kind",
        choices=OUTPUT_KINDS,
        help="coords: (N, 2K) in [0, 1] of the crop; heatmap: (N, K, H, W); "
        "heatmap_offsets: (N, 3K, G, G) heatmaps with x and y offset maps",
    )
    card.add_argument(
        "--heatmap-stride", type=int, help="input pixels per heatmap pixel, dividing --input-size (heatmap outputs)"
    )
    card.add_argument(
        "--decode",
        choices=DECODERS,
        default="centroid",
        help=f"heatmap decode method: {', '.join(DECODERS)} (heatmap outputs; default centroid)",
    )
    card.add_argument(
        "--coords-slice",
        type=int,
        nargs=2,
        metavar=("START", "STOP"),
        help="coords outputs holding more than the points: the 2K point values are output[START:STOP]",
    )
    offsets = parser.add_argument_group("heatmap_offsets outputs (see runtime.heatmap.HeatmapOffsets)")
    offsets.add_argument("--heatmap-size", type=int, help="G, cells per side of each map (an integer > 0)")
    offsets.add_argument("--cell-spacing", type=_number, help="input pixels between cells, e.g. 223/27")
    offsets.add_argument("--offset-scale", type=_number, help="input pixels per unit of decoded offset, e.g. 223")
    offsets.add_argument(
        "--offset-channels",
        type=lambda text: tuple(text.split(",")),
        help="order of the three K-channel groups: heatmap, y_offset, x_offset in some order, comma-separated",
    )
    offsets.add_argument(
        "--offset-transform",
        choices=OFFSET_TRANSFORMS,
        default="identity",
        help=f"{', '.join(OFFSET_TRANSFORMS)}; logit: offsets are sigmoid-squashed (default identity)",
    )
    offsets.add_argument(
        "--offset-divisor", type=_number, default=1.0, help="a number that divides the transformed offset (default 1)"
    )
    card.add_argument(
        "--crop-box",
        choices=("landmarks", "detector"),
        default="landmarks",
        help="box the crop starts from: landmarks or detector (default landmarks)",
    )
    card.add_argument(
        "--crop-scale", type=float, default=1.25, help="square side / longer box side, > 0 (with --crop-scale-y: width / box width; default 1.25)"
    )
    card.add_argument(
        "--crop-scale-y",
        type=float,
        help="crop per axis instead of a square: height / box height, > 0, each axis stretched to the input side",
    )
    card.add_argument("--crop-shift-y", type=float, default=0.0, help="downward centre shift, fraction of the crop height (default 0)")
    card.add_argument("--keep-batch", action="store_true", help="do not try to make a fixed batch dimension dynamic")
    add_force_flag(parser)
    return parser


def _number(text: str) -> float:
    """A float, or a fraction such as ``223/27`` (exact spacings read better as the ratio they are)."""
    try:
        numerator, _, denominator = text.partition("/")
        return float(numerator) / float(denominator) if denominator else float(numerator)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a number or a fraction like 223/27, got '{text}'") from None


def _heatmap_offsets(args: argparse.Namespace) -> HeatmapOffsets | None:
    """The offset-map record of a ``heatmap_offsets`` import, from its flags (all required)."""
    flags = {
        "--heatmap-size": args.heatmap_size,
        "--cell-spacing": args.cell_spacing,
        "--offset-scale": args.offset_scale,
        "--offset-channels": args.offset_channels,
    }
    if args.output_kind != "heatmap_offsets":
        return None
    missing = [flag for flag, value in flags.items() if value is None]
    if missing:
        raise UsageError(
            f"--output-kind heatmap_offsets needs {', '.join(missing)} (how the offset maps are laid out and decoded; "
            "see the model's documentation)"
        )
    return HeatmapOffsets(
        grid_size=args.heatmap_size,
        cell_spacing=args.cell_spacing,
        offset_scale=args.offset_scale,
        channel_groups=args.offset_channels,
        offset_transform=args.offset_transform,
        offset_divisor=args.offset_divisor,
    )


def config_from_args(args: argparse.Namespace) -> CheckpointConfig | ImportConfig:
    """Turn parsed flags into one of the two configs, rejecting bad combinations before any work."""
    if (args.checkpoint is None) == (args.import_model is None):
        raise UsageError("give either a CHECKPOINT to export or --import MODEL.onnx (exactly one)")
    if args.checkpoint is not None:
        return CheckpointConfig(
            args.checkpoint, args.output, args.opset, args.simplify, args.parity_images, args.max_abs
        )
    missing = [
        flag
        for flag, value in (
            ("--layout", args.layout),
            ("--input-size", args.input_size),
            ("--output-kind", args.output_kind),
        )
        if value is None
    ]
    if missing:
        raise UsageError(f"--import needs the card flags {', '.join(missing)} (see the model's documentation)")
    if args.input_size <= 0:
        raise UsageError(f"--input-size must be positive, got {args.input_size}")
    if args.output_kind == "heatmap" and args.heatmap_stride and args.input_size % args.heatmap_stride:
        raise UsageError(f"--input-size {args.input_size} is not a multiple of --heatmap-stride {args.heatmap_stride}")
    if args.crop_scale <= 0 or (args.crop_scale_y is not None and args.crop_scale_y <= 0):
        raise UsageError(f"--crop-scale and --crop-scale-y must be positive, got {args.crop_scale}, {args.crop_scale_y}")
    if any(value <= 0 for value in args.std):
        raise UsageError(f"--std values must be positive, got {list(args.std)}")
    card = Card(
        layout=args.layout,
        num_points=LAYOUTS[args.layout].num_points,
        input_size=args.input_size,
        normalisation=Normalisation(args.channel_order, tuple(args.mean), tuple(args.std)),
        output_kind=args.output_kind,
        heatmap_stride=args.heatmap_stride if args.output_kind == "heatmap" else None,
        heatmap_offsets=_heatmap_offsets(args),
        coords_slice=tuple(args.coords_slice) if args.coords_slice else None,
        decode={"heatmap": args.decode, "heatmap_offsets": OFFSET_DECODE}.get(args.output_kind, "direct"),
        crop_rule=CropRule(args.crop_box, args.crop_scale, args.crop_shift_y, args.crop_scale_y),
    )
    return ImportConfig(args.import_model, args.output, card, dynamic_batch=not args.keep_batch)


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    outputs = refuse_overwrite([config.output, sidecar_path(config.output)], args.force)
    from export.onnx_export import onnx_from_checkpoint, onnx_from_third_party

    if isinstance(config, ImportConfig):
        card = onnx_from_third_party(config.model, config.output, config.card, config.dynamic_batch)
    else:
        card = onnx_from_checkpoint(
            config.checkpoint, config.output, config.opset, config.simplify, config.parity_images, config.max_abs
        )
    print(
        f"{config.output}: {card.layout} {card.output_kind} {card.input_size}x{card.input_size} "
        f"{card.precision}, batch {card.extra.get('batch')}"
    )
    report_written(outputs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
