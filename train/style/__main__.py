"""``python -m train.style``: fit the AVS-style translator on annotated faces, then generate styled sets.

Examples:
  python -m train.style fit --data WFLW/list_98pt_rect_attr_train.txt --image-root WFLW/WFLW_images \\
      --out-dir runs/style --perceptual-weights vgg19.pth          # the paper's 50k steps, batch 4, Adam 1e-3
  python -m train.style fit --data ../shared/data/faces68 --steps 200 --out-dir runs/style68   # L1 + MS-SSIM
  python -m train.style fit --data ../shared/data/faces68 --steps 400 --out-dir runs/style68 --resume auto
  python -m train.style generate runs/style68/last.pt --data ../shared/data/faces68 --styles 8 --out avs68
  python -m train.style generate runs/style68/last.pt --data faces --style-images photos/ --out avs_photos \\
      --grid grid.png                                                # styles of unlabelled photos
  python -m train.style score avs68 --json avs68_score.json    # structure kept? styles differ? (PFLD from the zoo)
  python -m train.style score avs68 --model pfld.onnx           # any landmark artifact with a card
  python -m train --train-data faces --avs-root avs68 ...; python -m calib build --avs avs68 ...
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from collections.abc import Sequence
from pathlib import Path

from runtime.errors import UsageError, cli_main
from runtime.outputs import add_force_flag, refuse_overwrite, report_written

_HELP = {
    "data": "annotated faces: WFLW list .txt, HRNet .csv, folder of images + .pts, or an AVS folder",
    "layout": "landmark layout (default: the registered one with the data's point count)",
    "steps": "optimiser steps (the paper: 50000)",
    "perceptual_weights": "VGG19 state dict (torchvision layout) for the perceptual loss; without it L1 + MS-SSIM",
    "kl_ramp_start": "fraction of the steps at which the KL weight starts rising from 0",
    "kl_ramp_end": "fraction of the steps at which the KL weight reaches --kl-weight",
    "latent_channels": "channels of each style latent (0: the feature width of its scale, as in the paper)",
    "latent_levels": "scales with a style latent: 2 (8x8 and 4x4, the paper) or 1 (4x4 only)",
    "resume": "checkpoint to continue from, or 'auto' (<out-dir>/last.pt when present)",
    "amp": "float16 autocast on CUDA (ignored on the CPU)",
}


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return lowered in ("1", "true", "yes", "on")


def build_parser() -> argparse.ArgumentParser:
    from train.style.fit import FitConfig

    parser = argparse.ArgumentParser(
        prog="python -m train.style",
        description="Style translator (after AVS, Qian et al. ICCV 2019): fit by self-reconstruction, generate styles.",
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    fit = commands.add_parser("fit", help="train a translator on annotated faces")
    types = typing.get_type_hints(FitConfig)
    for field in dataclasses.fields(FitConfig):
        kind = types[field.name]
        extra = {"nargs": "?", "const": True, "type": _bool, "metavar": "BOOL"} if kind is bool else {"type": kind}
        fit.add_argument("--" + field.name.replace("_", "-"), dest=field.name, default=field.default,
                         help=f"{_HELP.get(field.name, '')} (default {field.default!r})".strip(), **extra)  # fmt: skip
    generate = commands.add_parser("generate", help="write a styled set in the AVS release layout")
    generate.add_argument("checkpoint", type=Path, help="translator checkpoint (last.pt of fit)")
    generate.add_argument("--data", required=True, help=_HELP["data"] + " (the structures)")
    generate.add_argument("--out", type=Path, required=True, help="folder to create: <style>/label.txt + Image/")
    generate.add_argument("--image-root", default="", help="where list/CSV image paths are relative to")
    generate.add_argument("--styles", type=int, default=8, help="style references (default 8)")
    generate.add_argument("--style-images", type=Path, help="take the references from this folder of unlabelled images")
    generate.add_argument("--batch-size", type=int, default=4, help="structure faces per pass (default 4)")
    generate.add_argument("--chunk", type=int, default=0, help="most decodes per forward (default 0: the whole pass)")
    generate.add_argument("--limit", type=int, default=0, help="only the first N faces (default 0: all)")
    generate.add_argument("--seed", type=int, default=0, help="seed of the reference choice (default 0)")
    generate.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    generate.add_argument("--grid", type=Path, help="also write a contact sheet PNG of the first pass")
    generate.add_argument("--detector", default="yunet", help="face detector for --style-images (default yunet)")
    score = commands.add_parser(
        "score", help="measure a generated set: structure kept, styles spread",
        description="Score a generated set with a landmark model (see train/style/score.py): its NME on the outputs "
        "against their labels beside the real crops', whose layout the transfers follow, how the styles spread.",
        epilog="examples:\n  python -m train.style score avs68 --json avs68_score.json\n"
        "  python -m train.style score avs68 --model pfld.onnx --normalisation box",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    score.add_argument("generated", type=Path, help="folder written by generate")
    score.add_argument("--model", default="", help="landmark artifact with a card (default: the zoo's PFLD-GhostOne)")
    score.add_argument("--normalisation", default="inter_ocular", help="inter_ocular (default) or box")
    score.add_argument("--data", default="", help="the structure faces, when not where generate.json says")
    score.add_argument("--image-root", default="", help="with --data: where list/CSV image paths are relative to")
    score.add_argument("--json", type=Path, dest="json_path", help="also write the result here")
    add_force_flag(score)
    return parser


def run_score(args: argparse.Namespace) -> int:
    from train.style.score import ScoreConfig, render, score

    config = ScoreConfig(generated=args.generated, model=args.model, normalisation=args.normalisation,
                         data=args.data, image_root=args.image_root)  # fmt: skip
    refuse_overwrite([args.json_path], args.force)
    result = score(config)
    print(render(result))
    if args.json_path is not None:
        from runtime.card import atomic_write_bytes

        atomic_write_bytes(args.json_path, (json.dumps(result, indent=2) + "\n").encode())
    report_written([args.json_path])
    return 0


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "fit":
        from train.style.fit import FitConfig, fit
        from train.style.losses import describe

        values = {field.name: getattr(args, field.name) for field in dataclasses.fields(FitConfig)}
        summary = fit(FitConfig(**values))
        print(f"reconstruction loss: {describe(summary['perceptual'])}")
        print(
            f"wrote {summary['checkpoint']}: {summary['steps']} steps ({summary['steps_run']} now, "
            f"{summary['steps_per_second']:.3f} steps/s on {summary['device']}); reconstruction loss "
            f"{summary['loss_start']:.4f} -> {summary['loss_end']:.4f}"
        )
        return 0
    if args.command == "score":
        return run_score(args)
    from train.style.generate import GenerateConfig, generate
    from train.style.losses import describe

    if args.command != "generate":
        raise UsageError(f"unknown command {args.command}")
    config = GenerateConfig(
        checkpoint=args.checkpoint, data=args.data, output=args.out, image_root=args.image_root, styles=args.styles,
        style_images=args.style_images, batch_size=args.batch_size, chunk=args.chunk, limit=args.limit,
        seed=args.seed, device=args.device, grid=args.grid, detector=args.detector,
    )  # fmt: skip
    manifest = generate(config)
    print(f"reconstruction loss of the translator: {describe(manifest['perceptual'])}")
    print(f"wrote {args.out}: {manifest['outputs']} images, {manifest['faces']} faces x {len(manifest['styles'])} styles "
          f"({', '.join(s['name'] for s in manifest['styles'])})")  # fmt: skip
    if args.grid is not None:
        print(f"contact sheet: {args.grid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
