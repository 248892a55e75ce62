"""``python -m train``: train a heatmap landmark detector (one process, or DDP under torchrun).

Examples:
  python -m train --train-data WFLW/list_98pt_rect_attr_train.txt --val-data WFLW/list_98pt_rect_attr_test.txt \\
      --image-root WFLW/WFLW_images --model hrnetv2_w18 --epochs 60
  python -m train --config wflw_resnet18.yaml --avs-root AVS_WFLW --avs-ratio 1.0
  torchrun --nproc_per_node 4 -m train --config wflw_resnet18.yaml
  python -m train --train-data ../shared/data/faces68 --layout ibug68 --model mobilenetv3_edge --epochs 5
  python -m train --config run.yaml --resume auto          # continue from <out-dir>/last.pt
  python -m train --qat --init runs/faces68/last.pt --train-data ../shared/data/faces68 --layout ibug68 \\
      --model mobilenetv3_edge --input-size 128 --out-dir runs/qat   # int8 QAT: 5 epochs at lr 1e-4 unless given
  python -m export.onnx runs/qat/last.pt -o edge_qat.onnx           # -> symmetric int8 Q/DQ ONNX + int8 card
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from runtime.errors import cli_main
from train.config import add_config_arguments, config_from_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train",
        description="Train a heatmap facial landmark detector (optionally AVS-augmented).",
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(parser)
    return parser


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    from train.engine import train

    config = config_from_args(build_parser().parse_args(argv))
    train(config)
    return 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
