"""``python -m calib study``: the subcommand's parser and entry."""
from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path


from calib.study.config import QUANTIZERS, SOURCES, StudyConfig
from calib.study.run import run_study
from runtime.errors import UsageError

logger = logging.getLogger("calib.study")


# ---------------------------------------------------------------------------------------------------
# Command


def add_parser(commands) -> None:
    """Register ``study`` on the ``python -m calib`` subcommands."""
    import argparse

    study = commands.add_parser(
        "study",
        help="K-fold study: do style proxies calibrate INT8 as well as real faces?",
        description="K-fold INT8 calibration study on annotated faces: style proxies vs real faces (vs mixed), "
        "ONNX Runtime Q/DQ and OpenVINO NNCF, NME change per face, paired comparison.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  python -m calib study --model artifacts/pfld.onnx --faces ../shared/data/faces68 --out study\n"
        "  python -m calib study --model artifacts/pfld.onnx --faces FACES --out study --folds 3 \\\n"
        "      --sources proxies,real,mixed --quantizers ort-minmax,ov-nncf --size 100\n"
        "  python -m calib study --checkpoint runs/faces68/last.pt --faces FACES --out study \\\n"
        "      --sources proxies,real,translator --translator runs/style/last.pt   # the AVS translator arm\n\n"
        "quantizers:\n" + "\n".join(f"  {q.name:<16} {q.description}" for q in QUANTIZERS.values()),
    )
    model = study.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", type=Path, metavar="MODEL.onnx", help="float ONNX artifact with a card")
    model.add_argument(
        "--checkpoint", type=Path, metavar="CHECKPOINT.pt", help="python -m train checkpoint, exported to ONNX first"
    )
    study.add_argument("--faces", type=Path, required=True, metavar="DIR", help="annotated faces (images + .pts)")
    study.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for study.json and study.md")
    study.add_argument("--folds", type=int, default=2, help="K of the K-fold split (default 2)")
    study.add_argument(
        "--sources",
        default=",".join(SOURCES),
        metavar="NAMES",
        help=f"calibration sources (default {','.join(SOURCES)}; also: translator, with --translator)",
    )
    study.add_argument("--translator", type=Path, metavar="CHECKPOINT.pt", help="style translator of the translator source")
    study.add_argument(
        "--quantizers", default=",".join(QUANTIZERS), metavar="NAMES", help="quantizers (default: all, listed below)"
    )
    study.add_argument("--size", type=int, default=96, help="calibration samples per set (default 96)")
    study.add_argument(
        "--proxy-seeds",
        default="0",
        metavar="SEEDS",
        help="seeds of the proxy styling, comma-separated; more than one measures the draw's noise (default 0)",
    )
    study.add_argument("--seed", type=int, default=0, help="seed of the fold split and the style variants (default 0)")
    study.add_argument(
        "--video", type=Path, metavar="VIDEO", help="a video whose frames join the label-free set (INT8 vs FP32 points)"
    )
    study.add_argument("--video-every", type=int, default=1, metavar="N", help="use every N-th video frame (default 1)")
    study.add_argument(
        "--keep-artifacts", action="store_true", help="keep calibration arrays and INT8 models under OUT/work"
    )
    study.set_defaults(run=main_from_args)


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def config_from_args(args, argv: list[str] | None = None) -> StudyConfig:
    try:
        seeds = tuple(int(seed) for seed in _names(args.proxy_seeds))
    except ValueError:
        raise UsageError(f"--proxy-seeds '{args.proxy_seeds}': expected comma-separated integers, e.g. 0,1") from None
    return StudyConfig(
        faces=args.faces,
        output=args.out,
        model=args.model,
        checkpoint=args.checkpoint,
        folds=args.folds,
        sources=_names(args.sources),
        quantizers=_names(args.quantizers),
        size=args.size,
        proxy_seeds=seeds,
        seed=args.seed,
        keep_artifacts=args.keep_artifacts,
        video=args.video,
        video_every=args.video_every,
        translator=args.translator,
        command=" ".join(["python -m calib", *map(shlex.quote, argv if argv is not None else sys.argv[1:])]),
    )


def main_from_args(args, argv: list[str] | None = None) -> int:
    """Run the study for parsed ``python -m calib study`` flags; print where the report went."""
    study = run_study(config_from_args(args, argv))
    failed = [row for row in study["rows"] if row["status"] != "ok"]
    print(
        f"wrote {Path(args.out) / 'study.md'} and study.json: {len(study['rows'])} INT8 models over "
        f"{study['config']['folds']} folds, {len(failed)} failed"
    )
    return 0
