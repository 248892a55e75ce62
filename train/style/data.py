"""Face crops and landmark maps for the style translator, from train/'s dataset and runtime's readers.

A translator input is the face cut by :data:`translator crop rule <crop_rule>` (the landmarks' box
widened ``crop_scale`` times, as the AVS crops hold the whole face with a margin), resized to
``image_size``, RGB in [-1, 1], with one Gaussian map per landmark (sigma 1 input pixel) drawn at the
exact transformed points: :class:`train.data.LandmarkDataset` at heatmap stride 1 makes both.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime import crop
from runtime.annotations import Sample
from runtime.errors import UsageError
from runtime.layouts import Layout, get_layout, layout_for_points
from train.augment import AugmentConfig

# Images in [-1, 1], RGB: (x / 255 - 0.5) / 0.5.
NORMALISATION = crop.Normalisation("RGB", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
STRUCTURE_SIGMA = 1.0  # input pixels, as in the paper
# Self-reconstruction needs no heavy augmentation: mild geometry for more structures, colour jitter for more styles.
TRAIN_AUGMENT = AugmentConfig(rotation_degrees=15.0, scale_range=(0.9, 1.1), translation_fraction=0.05)


def crop_rule(crop_scale: float) -> crop.CropRule:
    """The landmarks' box widened ``crop_scale`` times (square)."""
    return crop.CropRule(box="landmarks", scale=crop_scale)


def read_faces(spec: str | Path, image_root: str | Path | None = None) -> list[Sample]:
    """Annotated faces from anything train/ reads (WFLW list, HRNet CSV, .pts folder, AVS folder)."""
    from runtime.annotations import read_dataset

    samples = read_dataset(spec, image_root or None)
    if not samples:
        raise UsageError(f"{spec}: no annotated faces found")
    counts = {len(s.points) for s in samples}
    if len(counts) > 1:
        raise UsageError(f"{spec}: faces have different point counts ({sorted(counts)}); use one layout per set")
    return samples


def layout_of(samples: list[Sample], name: str = "") -> Layout:
    """The named layout, or the registered one with the samples' point count."""
    count = len(samples[0].points)
    layout = get_layout(name) if name else layout_for_points(count)
    if layout.num_points != count:
        raise UsageError(f"layout '{layout.name}' has {layout.num_points} points but the faces have {count}; pass --layout")
    return layout


def face_dataset(samples, layout: Layout, image_size: int, crop_scale: float, augment: bool, seed: int):
    """``LandmarkDataset`` items: ``image`` (3, S, S) in [-1, 1], ``heatmaps`` (K, S, S) structure maps, ``matrix``."""
    from train.data import LandmarkDataset

    return LandmarkDataset(
        samples,
        layout=layout,
        input_size=image_size,
        heatmap_stride=1,
        normalisation=NORMALISATION,
        crop_rule=crop_rule(crop_scale),
        sigma=STRUCTURE_SIGMA,
        augment=TRAIN_AUGMENT if augment else None,
        seed=seed,
    )


def to_bgr_uint8(images) -> np.ndarray:
    """(N, 3, S, S) RGB in [-1, 1] (tensor or array) -> (N, S, S, 3) uint8 BGR."""
    array = images.detach().float().cpu().numpy() if hasattr(images, "detach") else np.asarray(images, np.float32)
    pixels = np.clip(np.rint((array + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(pixels.transpose(0, 2, 3, 1)[..., ::-1])
