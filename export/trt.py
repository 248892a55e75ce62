"""``python -m export.trt``: a TensorRT engine (TensorRT >= 10) from an ONNX artifact, with its card.

Examples::

    python -m export.trt --int8    # zoo PFLD-GhostOne, calibrated on ./pseudo -> pfld_ghostone_int8.engine (+ .qdq.onnx, script)
    python -m export.trt artifacts/pfld.onnx -o engines/pfld_fp16.engine --fp16 --timing-cache engines/trt.cache
    python -m export.trt artifacts/pfld.onnx -o engines/pfld_int8.engine --int8 --calib calib/real.npz
    python -m export.trt artifacts/pfld_int8.onnx -o engines/pfld_int8.engine --int8   # Q/DQ from export.ort
    python -m export.trt artifacts/pfld.onnx -o engines/pfld.engine --min-batch 1 --opt-batch 1 --max-batch 8 --dry-run

INT8 is explicit quantization: the Q/DQ ONNX (made here with ONNX Runtime from ``--calib``, or
given) built as a strongly typed network; the implicit calibrators are never used. Besides the
engine and ``OUT.engine.json`` (its card), ``OUT.engine.trtexec.sh`` holds the same build as a
``trtexec`` command for the target (Jetson). Without TensorRT or an NVIDIA GPU the command still
writes the Q/DQ ONNX and that script, then exits 1 saying what is missing.

Typed alone, the defaults are those of :mod:`export.defaults`: the zoo's ``pfld_ghostone``, the engine
``<model>.engine`` (``_fp16``, ``_int8``) beside the model (in the current folder for a zoo model),
and for ``--int8`` of a float model style proxies of the pseudo-labelled frames in ``./pseudo``. An
existing output is never replaced without ``--force``.
"""

from __future__ import annotations

import argparse
import json
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
from export.ranges import ranges_path
from export.trt_build import DEFAULT_BATCHES, DEFAULT_WORKSPACE_MB, TrtConfig
from runtime.card import sidecar_path
from runtime.errors import cli_main
from runtime.outputs import add_force_flag, refuse_overwrite, report_written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m export.trt",
        description="Build a TensorRT engine from an ONNX artifact with a card.",
        epilog="examples:" + __doc__.split("Examples::", 1)[1].split("INT8 is explicit", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", nargs="?", metavar="MODEL.onnx", help="float or Q/DQ " + MODEL_HELP)
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="OUT.engine",
        help="the engine to write, .engine or .plan (default: <model>.engine, <model>_fp16.engine or "
        "<model>_int8.engine beside the model; in the current folder for a zoo model)",
    )
    precision = parser.add_argument_group("precision")
    precision.add_argument("--fp16", action="store_true", help="allow FP16 kernels (BuilderFlag.FP16, TensorRT 10.x)")
    precision.add_argument(
        "--int8",
        action="store_true",
        help="explicit-quantization INT8, strongly typed: a Q/DQ MODEL, or a float MODEL with --calib",
    )
    precision.add_argument(
        "--calib",
        type=Path,
        metavar="CALIB.npz|FACES",
        help="for a float MODEL, what its Q/DQ ONNX is calibrated on (ONNX Runtime, minmax, per-channel; run "
        "`python -m export.ort --int8` yourself for other options): " + CALIB_HELP,
    )
    precision.add_argument(
        "--max-nme-drop",
        type=float,
        metavar="POINTS",
        help="with --calib: keep the fewest layers float so the label-free NME against the float model stays "
        "within POINTS on a validation split of the calibration array (as python -m export.ort)",
    )
    profile = parser.add_argument_group("optimization profile (dynamic-batch models)")
    for name, default in zip(("min", "opt", "max"), DEFAULT_BATCHES):
        profile.add_argument(
            f"--{name}-batch",
            type=int,
            help=f"{name} batch, >= 1 (default {default}; a fixed-batch model keeps its batch)",
        )
    builder = parser.add_argument_group("builder")
    builder.add_argument(
        "--timing-cache", type=Path, metavar="PATH", help="timing cache to read (if present) and update"
    )
    builder.add_argument(
        "--workspace-mb",
        type=int,
        default=DEFAULT_WORKSPACE_MB,
        help=f"workspace pool limit in MiB, >= 1 (default {DEFAULT_WORKSPACE_MB})",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the build plan and the trtexec command; write nothing"
    )
    add_force_flag(parser)
    return parser


def config_from_args(args: argparse.Namespace, model: Path, output: Path, calibration: Path | None) -> TrtConfig:
    """The config of ``args`` with the model, output and calibration already resolved (see :func:`main`)."""
    return TrtConfig(
        model=model,
        output=output,
        fp16=args.fp16,
        int8=args.int8,
        calibration=calibration,
        max_nme_drop=args.max_nme_drop,
        min_batch=args.min_batch,
        opt_batch=args.opt_batch,
        max_batch=args.max_batch,
        timing_cache=args.timing_cache,
        workspace_mb=args.workspace_mb,
    )


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    suffix = "_int8.engine" if args.int8 else "_fp16.engine" if args.fp16 else ".engine"
    model, output = model_and_output(args.model, args.output, suffix)
    calibration, made_calibration = args.calib, None
    if args.int8 and not args.fp16 and not args.dry_run and needs_calibration(model):
        TrtConfig(model, output, int8=True)  # a bad output name is reported before any calibration work
        refuse_overwrite(_outputs(output, qdq=True), args.force)
        calibration, built = resolve_calibration(args.calib, model, output, args.force)
        made_calibration = calibration if built else None
    config = config_from_args(args, model, output, calibration)
    from export.trt_build import TensorRtUnavailable, engine_from_onnx, plan_from_onnx

    plan = plan_from_onnx(config)
    if args.dry_run:
        print(json.dumps(plan.to_dict(), indent=2))
        return 0
    outputs = _outputs(output, qdq=plan.onnx != plan.source)
    refuse_overwrite(outputs, args.force)
    outputs.insert(0, made_calibration)
    try:
        card = engine_from_onnx(plan)
    except TensorRtUnavailable:
        report_written(outputs)
        raise
    profile = card.extra["tensorrt_plan"]["profile"]
    batches = f"batch {profile['min'][0]}/{profile['opt'][0]}/{profile['max'][0]}" if profile else "fixed batch"
    print(
        f"{config.output}: TensorRT {card.tools.get('tensorrt')} engine, {card.precision}, {batches}; "
        f"trtexec command in {plan.script}"
    )
    report_written(outputs)
    return 0


def _outputs(engine: Path, qdq: bool) -> list[Path]:
    """Every file a build writes: the engine, its card, the trtexec script, and the Q/DQ ONNX (+ card) if one
    is made (the names of :class:`export.trt_build.TrtBuildPlan`)."""
    files = [engine, sidecar_path(engine), engine.with_name(engine.name + ".trtexec.sh")]
    if qdq:
        model = engine.with_suffix(".qdq.onnx")
        files += [model, sidecar_path(model), ranges_path(model)]
    return files


if __name__ == "__main__":
    sys.exit(main())
