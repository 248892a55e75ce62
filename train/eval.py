"""``python -m train.eval``: score a checkpoint on an annotated set (NME, FR@0.1, AUC@0.1, WFLW subsets).

When the checkpoint came from a recipe (train/configs/) or ``--recipe`` names one, the WFLW subset
table is printed beside the recipe's expected numbers.

Examples:
  # a recipe's checkpoint on the WFLW test set: subset table beside the paper's numbers
  python -m train.eval runs/wflw_hrnetv2_w18/best.pt --data WFLW/list_98pt_rect_attr_test.txt \\
      --image-root WFLW/WFLW_images
  # any checkpoint against a recipe's expected numbers
  python -m train.eval runs/train/best.pt --data WFLW/list_98pt_rect_attr_test.txt \\
      --image-root WFLW/WFLW_images --recipe wflw_resnet18_avs
  # the faces68 sanity checkpoint, argmax decoding, metrics also as JSON
  python -m train.eval runs/faces68/last.pt --data ../shared/data/faces68 --decode argmax --json scores.json
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from runtime.errors import cli_main


@dataclass(frozen=True)
class EvalConfig:
    checkpoint: str
    data: str
    image_root: str = ""
    decode: str = ""  # empty: the checkpoint's own
    batch_size: int = 16
    device: str = "auto"
    json_path: str = ""
    recipe: str = ""  # recipe name or file whose expected numbers to print; empty: the checkpoint's own


def evaluate_checkpoint(config: EvalConfig) -> dict[str, Any]:
    """Load the checkpoint, read the data with the checkpoint's layout, return the metrics."""
    from runtime.layouts import get_layout
    from train.checkpoint import model_from_checkpoint
    from train.engine import Distributed, evaluate_samples, load_samples, make_dataset, select_device
    from train.config import TrainConfig

    recipe = None
    if config.recipe:  # checked before any work
        from train.recipes import load_recipe

        recipe = load_recipe(config.recipe)
    model, state = model_from_checkpoint(config.checkpoint)
    layout = get_layout(state["layout"])
    samples = load_samples(config.data, config.image_root, layout, "evaluation data")
    device = select_device(config.device, Distributed())
    train_config = TrainConfig(sigma=state.get("sigma", 1.5))
    dataset = make_dataset(samples, train_config, layout, state["input_size"], state["heatmap_stride"], augment=False)
    method = config.decode or state.get("decode", "centroid")
    metrics = evaluate_samples(model.to(device), samples, dataset, layout, device, method, state["heatmap_stride"],
                               batch_size=config.batch_size, progress=True)
    metrics.update({"checkpoint": config.checkpoint, "data": config.data, "decode": method, "layout": layout.name})
    if recipe is not None:
        metrics["recipe"] = recipe
    elif (state.get("config") or {}).get("recipe"):
        metrics["recipe"] = state["config"]["recipe"]
    return metrics


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train.eval",
        description="Evaluate a landmark checkpoint on an annotated set.",
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", help="checkpoint written by python -m train (.pt)")
    parser.add_argument("--data", required=True, help="WFLW list .txt, HRNet .csv or folder of images + .pts")
    parser.add_argument("--image-root", default="", help="root of the image paths in a list/CSV file")
    parser.add_argument("--decode", default="", choices=["", "argmax", "centroid", "soft_argmax"],
                        help="heatmap decode (default: the checkpoint's)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default: 16)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where to run (default: auto, CUDA when torch sees a GPU)")
    parser.add_argument("--json", dest="json_path", default="", help="also write the metrics here")
    parser.add_argument("--recipe", default="", metavar="NAME_OR_FILE",
                        help="print the measured NME beside this recipe's expected numbers (a name from train/configs/ "
                        "or a recipe file; default: the recipe the checkpoint was trained with, if any)")
    return parser


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = EvalConfig(**vars(args))
    metrics = evaluate_checkpoint(config)
    print(f"{config.checkpoint} on {config.data} ({metrics['count']} faces, decode {metrics['decode']}):")
    print(f"  NME inter-ocular {metrics['nme']:.3f} %  inter-pupil {metrics['nme_inter_pupil']:.3f} %  "
          f"box {metrics['nme_box']:.3f} %  FR@0.1 {metrics['fr']:.2f} %  AUC@0.1 {metrics['auc']:.4f}")
    if "subsets" in metrics:
        from runtime.metrics import format_table

        print(format_table(metrics["subsets"]))
    if "recipe" in metrics:
        from train.recipes import comparison_table

        print(comparison_table(metrics, metrics["recipe"]))
    if config.json_path:
        from runtime.card import atomic_write_bytes

        atomic_write_bytes(Path(config.json_path), json.dumps(metrics, indent=2).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
