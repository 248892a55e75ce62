"""``python -m export.trt``: a TensorRT engine (TensorRT >= 10) from an ONNX artifact, with its card.

Examples::

    python -m export.trt artifacts/pfld.onnx -o engines/pfld_fp16.engine --fp16 --timing-cache engines/trt.cache
    python -m export.trt artifacts/pfld.onnx -o engines/pfld_int8.engine --int8 --calib calib/real.npz
    python -m export.trt artifacts/pfld_int8.onnx -o engines/pfld_int8.engine --int8   # Q/DQ from export.ort
    python -m export.trt artifacts/pfld.onnx -o engines/pfld.engine --min-batch 1 --opt-batch 1 --max-batch 8 --dry-run

INT8 is explicit quantization: the Q/DQ ONNX (made here with ONNX Runtime from ``--calib``, or
given) built as a strongly typed network; the implicit calibrators are never used. Besides the
engine and ``OUT.engine.json`` (its card), ``OUT.engine.trtexec.sh`` holds the same build as a
``trtexec`` command for the target (Jetson). Without TensorRT or an NVIDIA GPU the command still
writes the Q/DQ ONNX and that script, then exits 1 saying what is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from export.trt_build import DEFAULT_BATCHES, DEFAULT_WORKSPACE_MB, TrtConfig
from runtime.errors import cli_main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m export.trt", description="Build a TensorRT engine from an ONNX artifact with a card."
    )
    parser.add_argument("model", type=Path, metavar="MODEL.onnx", help="ONNX artifact with a card (float or Q/DQ)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.engine", help="the engine to write")
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
        metavar="CALIB.npz",
        help="calibration array to make the Q/DQ ONNX from a float MODEL (ONNX Runtime, minmax, per-channel; "
        "run `python -m export.ort --int8` yourself for other options)",
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
            f"--{name}-batch", type=int, help=f"{name} batch (default {default}; a fixed-batch model keeps its batch)"
        )
    builder = parser.add_argument_group("builder")
    builder.add_argument(
        "--timing-cache", type=Path, metavar="PATH", help="timing cache to read (if present) and update"
    )
    builder.add_argument(
        "--workspace-mb",
        type=int,
        default=DEFAULT_WORKSPACE_MB,
        help=f"workspace pool limit (default {DEFAULT_WORKSPACE_MB})",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the build plan and the trtexec command; write nothing"
    )
    return parser


def config_from_args(args: argparse.Namespace) -> TrtConfig:
    return TrtConfig(
        model=args.model,
        output=args.output,
        fp16=args.fp16,
        int8=args.int8,
        calibration=args.calib,
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
    config = config_from_args(args)
    from export.trt_build import engine_from_onnx, plan_from_onnx

    plan = plan_from_onnx(config)
    if args.dry_run:
        print(json.dumps(plan.to_dict(), indent=2))
        return 0
    card = engine_from_onnx(plan)
    profile = card.extra["tensorrt_plan"]["profile"]
    batches = f"batch {profile['min'][0]}/{profile['opt'][0]}/{profile['max'][0]}" if profile else "fixed batch"
    print(
        f"{config.output}: TensorRT {card.tools.get('tensorrt')} engine, {card.precision}, {batches}; "
        f"card in {config.output}.json, trtexec command in {plan.script}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
