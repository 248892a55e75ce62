"""``python -m calib build``: a stratified INT8 calibration set from AVS styles, style proxies and real faces.

Examples::

    # style proxies of pseudo-labelled frames of the deployment footage (python -m runtime.track VIDEO --save-frames pseudo)
    python -m calib build --card artifacts/pfld.onnx --proxies pseudo --out calib.npz

    # style proxies of real faces, keeping the evaluation faces out, with a contact sheet
    python -m calib build --card artifacts/pfld.onnx --proxies data/train_faces \\
        --exclude data/eval_faces --out calib/proxies.npz --preview calib/proxies.png

    # AVS synthetic styles plus plain real faces, 600 samples, seed 3
    python -m calib build --card artifacts/pfld.onnx --avs data/avs_wflw --real data/train_faces \\
        --size 600 --seed 3 --out calib/avs_real.npz

The card of ``--card`` (its sidecar ``<artifact>.json`` or ONNX metadata) fixes the crop rule, input
size and normalisation; the output is ``inputs`` (N, 3, S, S) float32 plus a JSON manifest (see
:mod:`export.calibration`), read by ``python -m export.ort --int8 ... --calib``. An existing
``--out`` or ``--preview`` is never replaced without ``--force``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from calib.build import BuildConfig, build_calibration_set
from calib.styles import STYLES
from runtime.errors import UsageError, cli_main
from runtime.outputs import add_force_flag, refuse_overwrite, report_written

CALIB_EXAMPLES = """examples:
    python -m calib build --card artifacts/pfld.onnx --proxies pseudo --out calib.npz
    python -m calib build --card artifacts/pfld.onnx --proxies faces/ --real faces/ --exclude eval_faces/ --out calib.npz
    python -m calib study --model artifacts/pfld.onnx --faces faces68/ --folds 2 --out study/pfld
    python -m calib avs faces/ --out avs_proxies        # the style proxies as an AVS set, to train on
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m calib",
        description="Build INT8 calibration sets (build), measure which calibrates best (study), write the style proxies "
        "as an AVS set (avs).",
        epilog=CALIB_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    build = commands.add_parser(
        "build",
        help="build a stratified calibration array (.npz)",
        description="Build a stratified calibration array from AVS styles, style proxies and real faces.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:" + __doc__.split("Examples::", 1)[1].split("The card of", 1)[0]
        + "styles:\n" + "\n".join(f"  {s.name:<22} {s.description}" for s in STYLES.values()),
    )
    build.add_argument(
        "--card",
        type=Path,
        required=True,
        metavar="ARTIFACT",
        help="artifact (.onnx, .xml, .engine with a card) whose card sets the crop, input size and normalisation",
    )
    build.add_argument("--out", type=Path, required=True, metavar="CALIB.npz", help="calibration array (.npz) to write")
    build.add_argument(
        "--avs", type=Path, action="append", default=[], metavar="DIR", help="AVS synthetic-style folder: label.txt + Image/, or one such folder per style (repeatable)"
    )
    build.add_argument(
        "--proxies",
        type=Path,
        action="append",
        default=[],
        metavar="FACES",
        help="annotated real faces to degrade with each style "
        "(folder of images + .pts, WFLW list or HRNet CSV; repeatable)",
    )
    build.add_argument(
        "--real",
        type=Path,
        action="append",
        default=[],
        metavar="FACES",
        help="annotated real faces used as they are (folder of images + .pts, WFLW list or HRNet CSV; repeatable)",
    )
    build.add_argument(
        "--styles",
        default=",".join(STYLES),
        metavar="NAMES",
        help=f"comma-separated style proxies for --proxies, of: {', '.join(STYLES)} (default: all, described below)",
    )
    build.add_argument(
        "--size", type=int, default=400, help="samples wanted, >= --batch-size (default 400; 300+ recommended)"
    )
    build.add_argument(
        "--seed", type=int, default=0, help="seed of the selection and style parameters, an integer (default 0)"
    )
    build.add_argument(
        "--batch-size", type=int, default=8, help="calibration batch, >= 1; fewer samples is an error (default 8)"
    )
    build.add_argument(
        "--exclude",
        type=Path,
        action="append",
        default=[],
        metavar="EVAL_DIR",
        help="evaluation set (folder of images or annotation file) whose images are never used, "
        "matched by resolved path and by sha256 of the content (repeatable)",
    )
    build.add_argument(
        "--max-variants", type=int, default=8, help="most styled variants of one image per style, >= 1 (default 8)"
    )
    build.add_argument("--preview", type=Path, metavar="PNG", help="also write a contact sheet of crops per style")
    build.add_argument(
        "--preview-columns", type=int, default=6, help="crops per style in the preview, >= 1 (default 6)"
    )
    add_force_flag(build)
    from calib import avs, study

    study.add_parser(commands)
    avs.add_parser(commands)
    return parser


def config_from_args(args: argparse.Namespace) -> BuildConfig:
    styles = tuple(name.strip() for name in args.styles.split(",") if name.strip())
    if not styles:
        raise UsageError(f"--styles '{args.styles}' names no style; valid: {', '.join(STYLES)}")
    return BuildConfig(
        card=args.card,
        output=args.out,
        avs=tuple(args.avs),
        proxies=tuple(args.proxies),
        real=tuple(args.real),
        styles=styles,
        size=args.size,
        seed=args.seed,
        batch_size=args.batch_size,
        exclude=tuple(args.exclude),
        preview=args.preview,
        preview_columns=args.preview_columns,
        max_variants=args.max_variants,
    )


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "build":  # other subcommands carry their own entry point
        return args.run(args, list(argv) if argv is not None else None)
    config = config_from_args(args)
    refuse_overwrite([config.output, config.preview], args.force)
    calibration = build_calibration_set(config)
    manifest = calibration.manifest
    shares = ", ".join(f"{style} {count}" for style, count in manifest["styles"].items())
    print(
        f"wrote {config.output}: {len(calibration)} samples from {manifest['source_images']} source images "
        f"({manifest['excluded']} excluded as evaluation images); {shares}"
    )
    report_written([config.preview])
    return 0


if __name__ == "__main__":
    sys.exit(main())
