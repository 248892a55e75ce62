"""``python -m train``: train a heatmap landmark detector (one process, or DDP under torchrun).

Examples:
  # a reproduction recipe (train/configs/, listed under --config); flags override its settings
  python -m train --config wflw_hrnetv2_w18_avs --train-data WFLW/list_98pt_rect_attr_train.txt \\
      --val-data WFLW/list_98pt_rect_attr_test.txt --image-root WFLW/WFLW_images --avs-root AVS_WFLW
  # HRNetV2-W18 without AVS on 4 GPUs (DDP through torchrun), continuing from <out-dir>/last.pt if it exists
  python -m train --config wflw_hrnetv2_w18 --nproc-per-node 4 --resume auto
  # sanity run on the 12 real faces shipped beside the repository (CPU, a few minutes)
  python -m train --train-data ../shared/data/faces68 --layout ibug68 --model mobilenetv3_edge --epochs 5
  # int8 quantization-aware fine-tuning of a trained checkpoint (5 epochs at lr 1e-4 unless given)
  python -m train --qat --init runs/faces68/last.pt --train-data ../shared/data/faces68 --layout ibug68 \\
      --model mobilenetv3_edge --input-size 128 --out-dir runs/qat

Config files: YAML of setting: value, keys as the flags without dashes (train/configs/README.md).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from runtime.errors import EdgemarkError, UsageError, cli_main
from train.config import add_config_arguments, config_from_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train",
        description="Train a heatmap facial landmark detector (optionally AVS-augmented). Settings come from "
        "the defaults, then --config, then the flags; every setting is stored in each checkpoint.",
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--nproc-per-node", type=int, default=1, metavar="N",
        help="train with N processes on this machine (DDP, one per GPU; gloo on the CPU), launched through "
        "torch.distributed.run after the settings are checked, so a bad setting is one line, not N "
        "tracebacks (default: 1, no DDP)",
    )
    return parser


def _without_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` less ``--nproc-per-node N`` / ``--nproc-per-node=N`` (the workers must not launch again)."""
    kept, skip = [], False
    for item in argv:
        if skip:
            skip = False
        elif item == "--nproc-per-node":
            skip = True
        elif not item.startswith("--nproc-per-node="):
            kept.append(item)
    return kept


def launch_workers(processes: int, argv: Sequence[str]) -> int:
    """Run ``python -m train argv`` in ``processes`` DDP workers (torch.distributed.run, standalone rendezvous).

    Returns the exit status. A usage error (status 2) was printed once by rank 0 and is left at that;
    any other failure gets one more line naming the process that failed first (torchrun's
    ``ChildFailedError`` report, without its traceback).
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    # The agent logs each stop (a SIGTERM to the others, the failed rank): the line below says it once.
    logging.getLogger("torch.distributed.elastic.multiprocessing.api").setLevel(logging.CRITICAL)
    launch = get_args_parser().parse_args(
        ["--standalone", "--nproc-per-node", str(processes), "--module", "train", *_without_nproc(argv)]
    )
    try:
        run(launch)
    except ChildFailedError as error:
        rank, first = error.get_first_failure()
        if first.exitcode == UsageError.exit_code:
            return first.exitcode
        raise EdgemarkError(
            f"training stopped: process {rank} of {processes} failed first (exit code {first.exitcode}); "
            "its error is printed above"
        ) from None
    return 0


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    from train.engine import train, validate

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    config = config_from_args(args)
    if args.nproc_per_node < 1:
        raise UsageError(f"--nproc-per-node must be >= 1 (processes on this machine), got {args.nproc_per_node}")
    if args.nproc_per_node > 1 and "WORLD_SIZE" not in os.environ:
        validate(config)
        for name, path in (("--train-data", config.train_data), ("--val-data", config.val_data), ("--init", config.init)):
            if path and not Path(path).exists():
                raise UsageError(f"{name} {path}: no such file or folder; check the path")
        return launch_workers(args.nproc_per_node, argv)
    train(config)
    return 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
