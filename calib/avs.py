"""``python -m calib avs``: annotated faces in the hand-made style proxies, written as an AVS set.

The same folder layout as the AVS release and ``python -m train.style generate`` (one folder per
style, ``<style>/label.txt`` + ``<style>/Image/<j>.jpg``, 384x384, every label the face's landmarks
in that frame followed by the file name), so ``python -m train --avs-root`` trains on it and ``calib
build --avs`` calibrates from it. Each face is cut as the style translator cuts it (the landmarks'
box widened ``crop_scale`` times, square) at 384 and degraded by each style (:mod:`calib.styles`)
as ``calib build`` degrades faces (:func:`calib.build.styled_cut`: styled in the photograph, then cut),
seeded by the run's seed, the style and the image's content. It is the control a translator's styles
are measured against: the same faces, the same frame, styles made by hand instead of learnt.

The folder appears only when complete (written beside it, then renamed), with ``proxies.json``
naming the faces, styles, seed and each variant's drawn parameters.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from calib.build import styled_cut
from calib.styles import STYLES, style_seed
from runtime import crop
from runtime.annotations import AVS_IMAGE_DIR, AVS_IMAGE_SIZE, AVS_LABEL_FILE, avs_label_line, read_dataset
from runtime.card import file_sha256
from runtime.errors import UsageError, did_you_mean
from runtime.face_crops import read_image
from runtime.outputs import folder_when_complete, refuse_nonempty_folder

MANIFEST = "proxies.json"
JPEG_QUALITY = 95


@dataclass(frozen=True)
class AvsConfig:
    """What :func:`write_avs_proxies` writes.

    Attributes:
        faces: annotated faces (folder of images + .pts, WFLW list, HRNet CSV).
        output: the folder to create (must not exist, or be empty).
        styles: style proxy names (:data:`calib.styles.STYLES`).
        seed: seed of the styles' random parameters.
        crop_scale: the cut, as a multiple of the landmarks' box side (``train.style``'s default 1.4).
        image_root: where list/CSV image paths are relative to.
    """

    faces: Path
    output: Path
    styles: tuple[str, ...]
    seed: int = 0
    crop_scale: float = 1.4
    image_root: str = ""

    def __post_init__(self):
        if not self.styles:
            raise UsageError(f"--styles names no style; valid: {', '.join(STYLES)}")
        for name in self.styles:
            if name not in STYLES:
                raise UsageError(f"--styles: unknown style '{name}'.{did_you_mean(name, STYLES)} Valid: {', '.join(STYLES)}")
        if self.crop_scale <= 0:
            raise UsageError(f"--crop-scale must be positive, got {self.crop_scale}")
        refuse_nonempty_folder(self.output)


def write_avs_proxies(config: AvsConfig) -> dict[str, Any]:
    """Write the styled set; returns the manifest (also ``<output>/proxies.json``)."""
    samples = read_dataset(config.faces, config.image_root or None)
    if not samples:
        raise UsageError(f"{config.faces}: no annotated faces found")
    rule = crop.CropRule(box="landmarks", scale=config.crop_scale)
    variants: list[dict[str, Any]] = []
    labels: dict[str, list[str]] = {name: [] for name in config.styles}
    with folder_when_complete(config.output) as partial:
        for name in config.styles:
            (partial / name / AVS_IMAGE_DIR).mkdir(parents=True)
        for index, sample in enumerate(samples):
            matrix = crop.crop_matrix(crop.landmark_box(sample.points), rule, AVS_IMAGE_SIZE)
            frame = read_image(sample.image)
            digest = file_sha256(sample.image)
            for name in config.styles:
                rng = np.random.default_rng(style_seed(config.seed, name, digest, 0))
                image, parameters = styled_cut(frame, sample.points, name, matrix, AVS_IMAGE_SIZE, rng)
                file_name = f"{index:06d}.jpg"
                path = partial / name / AVS_IMAGE_DIR / file_name
                if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
                    raise OSError(0, "OpenCV could not write the image", str(path))
                labels[name].append(avs_label_line(sample, matrix, file_name))
                variants.append({"style": name, "face": str(sample.image), "file": f"{name}/{AVS_IMAGE_DIR}/{file_name}",
                                 "parameters": parameters})  # fmt: skip
        for name, lines in labels.items():
            (partial / name / AVS_LABEL_FILE).write_text("\n".join(lines) + "\n")
        manifest = {
            "faces": str(config.faces),
            "image_root": config.image_root,
            "count": len(samples),
            "styles": list(config.styles),
            "seed": config.seed,
            "crop_scale": config.crop_scale,
            "output_size": AVS_IMAGE_SIZE,
            "variants": variants,
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def add_parser(commands) -> None:
    """Register ``avs`` on the ``python -m calib`` subcommands."""
    parser = commands.add_parser(
        "avs",
        help="write annotated faces in the style proxies as an AVS set (to train on, or calibrate from)",
        description="Annotated faces cut as the style translator cuts them (384x384) and degraded by each style "
        "proxy, written in the AVS release layout that python -m train --avs-root and calib build --avs read.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  python -m calib avs faces68/ --out avs_proxies                     # every style\n"
        "  python -m calib avs faces68/ --out avs_light --styles low_light,illumination_gradient --seed 3\n"
        "  python -m train --train-data faces68/ --avs-root avs_proxies ...   # train with hand-made styles\n\n"
        "styles:\n" + "\n".join(f"  {s.name:<22} {s.description}" for s in STYLES.values()),
    )
    parser.add_argument("faces", type=Path, help="annotated faces: folder of images + .pts, WFLW list or HRNet CSV")
    parser.add_argument("--out", type=Path, required=True, help="folder to create: <style>/label.txt + Image/")
    parser.add_argument("--styles", default=",".join(STYLES), help="comma-separated style proxies (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the styles' random parameters (default 0)")
    parser.add_argument("--crop-scale", type=float, default=1.4,
                        help="the cut as a multiple of the landmarks' box side (default 1.4, as train.style)")  # fmt: skip
    parser.add_argument("--image-root", default="", help="where list/CSV image paths are relative to")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, argv: Sequence[str] | None = None) -> int:
    config = AvsConfig(
        faces=args.faces,
        output=args.out,
        styles=tuple(name.strip() for name in args.styles.split(",") if name.strip()),
        seed=args.seed,
        crop_scale=args.crop_scale,
        image_root=args.image_root,
    )
    manifest = write_avs_proxies(config)
    print(f"wrote {config.output}: {manifest['count']} faces x {len(config.styles)} styles ({', '.join(config.styles)})")
    return 0
