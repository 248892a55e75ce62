"""``python -m train.models``: parameters and FLOPs of every registered model as a Markdown table.

Examples:
  # every model at 98 points (WFLW)
  python -m train.models
  # the recipe models at 68 points (300-W / iBUG), rows also as JSON
  python -m train.models --models resnet18_deconv hrnetv2_w18 mobilenetv3_edge --num-points 68 --json models.json
  # what python -m train --model accepts, one name per line
  python -m train.models --names
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

from runtime.errors import UsageError, cli_main
from train.models import list_models
from train.models.complexity import complexity_table, markdown_table

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TableConfig:
    """What to count and where to write it.

    Attributes:
        num_points: heatmap channels K.
        models: registry names to include, in order.
        json_path: where to write the rows as JSON, or None.
    """

    num_points: int
    models: tuple[str, ...]
    json_path: Path | None


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``python -m train.models``."""
    parser = argparse.ArgumentParser(
        prog="python -m train.models",
        description="Parameters and FLOPs (2 x multiply-accumulates of conv/deconv/linear layers, one image "
        "at the model's default input size) of every registered landmark model.",
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--names", action="store_true", help="only list the registered model names, one a line")
    parser.add_argument("--num-points", type=int, default=98, help="heatmap channels K (default: 98, WFLW)")
    parser.add_argument("--models", nargs="+", metavar="NAME", help=f"subset of: {', '.join(list_models())}")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the table as JSON to PATH")
    return parser


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    """Print the complexity table; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.names:
        print("\n".join(list_models()))
        return 0
    if args.num_points < 1:
        raise UsageError(f"--num-points must be at least 1; got {args.num_points}.")
    config = TableConfig(args.num_points, tuple(args.models or list_models()), args.json)
    rows = complexity_table(config.num_points, list(config.models))
    print(markdown_table(rows))
    print()
    print(
        "GFLOPs = 2 x multiply-accumulates of conv/deconv/linear layers for one image. HRNet and SimpleBaseline "
        "papers quote multiply-accumulates as FLOPs: halve these figures to compare."
    )
    if config.json_path is not None:
        config.json_path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "flops_definition": "2 * multiply-accumulates of Conv2d/ConvTranspose2d/Linear, batch 1",
            "num_points": config.num_points,
            "models": [dataclasses.asdict(row) for row in rows],
        }
        config.json_path.write_text(json.dumps(payload, indent=2) + "\n")
        logger.info("wrote %d rows to %s", len(rows), config.json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
