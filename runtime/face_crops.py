"""Annotated faces cut as a model's input: the box the card's crop rule starts from, and the crops.

One home for "crop a face from its annotation" and "run a model on annotated faces" (export
verification, calibration arrays, the report's label-free set, the style translator's score). The
cutting itself is the runtime landmarker's (:func:`runtime.landmarker.crop_inputs`), so what is
measured on annotated faces is what the tracker runs on the edge.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from runtime.annotations import Sample
from runtime.card import Card
from runtime.crop import landmark_box
from runtime.errors import EdgemarkError
from runtime.landmarker import crop_inputs

logger = logging.getLogger(__name__)


@dataclass
class FaceCrops:
    """Annotated faces cut and normalised as the model's input.

    Attributes:
        inputs: (N, 3, S, S) float32 model input.
        matrices: (N, 2, 3) frame -> input-square affine matrices.
        truth: (N, K, 2) annotated points in frame pixels.
        images: image file of each face.
    """

    inputs: np.ndarray
    matrices: np.ndarray
    truth: np.ndarray
    images: list[str]


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as 8-bit BGR; an unreadable file raises a one-line error."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise EdgemarkError(f"{path}: OpenCV cannot read this image; expected a JPEG/PNG/PPM/BMP file")
    return image


def face_box(sample: Sample, card: Card) -> np.ndarray:
    """The box the card's crop rule starts from: the landmarks' box, or the annotation's face box.

    A ``detector`` rule on annotations without face boxes falls back to the landmarks' box (logged),
    which is how landmark benchmarks crop anyway.
    """
    if card.crop_rule.box == "detector":
        if sample.box is not None:
            return np.asarray(sample.box, dtype=np.float64)
        logger.warning("%s: no face box in the annotation; cropping by the landmarks' box", sample.image)
    return landmark_box(sample.points)


def crop_faces(samples: Sequence[Sample], card: Card, images: Sequence[np.ndarray] | None = None) -> FaceCrops:
    """Cut every sample with the card's crop rule and normalise it as the model expects.

    Args:
        samples: annotated faces.
        card: the artifact's card (crop rule, input size, normalisation).
        images: the samples' images already in memory (BGR), in the same order; read from disk when ``None``.
    """
    if images is not None and len(images) != len(samples):
        raise ValueError(f"{len(images)} images for {len(samples)} samples")
    inputs, matrices = [], []
    for position, sample in enumerate(samples):
        image = read_image(sample.image) if images is None else images[position]
        # The box is already the kind the rule starts from: no detector/landmark conversion.
        face_inputs, face_matrices = crop_inputs(image, face_box(sample, card), card, card.crop_rule.box)
        inputs.append(face_inputs)
        matrices.append(face_matrices)
    size = card.input_size
    return FaceCrops(
        inputs=np.concatenate(inputs) if inputs else np.zeros((0, 3, size, size), np.float32),
        matrices=np.concatenate(matrices) if matrices else np.zeros((0, 2, 3)),
        truth=np.stack([np.asarray(sample.points, dtype=np.float64) for sample in samples])
        if samples
        else np.zeros((0, card.num_points, 2)),
        images=[str(sample.image) for sample in samples],
    )


def predict_faces(model: str | Path, card: Card, samples: Sequence[Sample]) -> tuple[np.ndarray, FaceCrops]:
    """Raw outputs of an artifact (any runtime backend, chosen by suffix) on annotated faces, and their crops."""
    from runtime.backends.registry import load_backend
    from runtime.landmarker import Landmarker

    crops = crop_faces(samples, card)
    with load_backend(model) as backend:
        output, _ = Landmarker(backend).run(crops.inputs)
    return output, crops
