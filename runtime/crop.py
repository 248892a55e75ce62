"""The crop rule (face box -> model input square) and the input normalisation, shared by training,
calibration, export verification and the runtime so every stage feeds the model the same pixels.
"""
from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from runtime.errors import UsageError


@dataclass(frozen=True)
class CropRule:
    """How a face box becomes the model's input square.

    Square (the default, ``scale_y`` unset): the cut region is a square of side
    ``scale * max(box width, box height)``. Per axis (``scale_y`` set): the region is ``scale * box
    width`` wide and ``scale_y * box height`` tall, and each axis is resized to the input side on its
    own, so a non-square box is stretched (OpenSeeFace widens the box by 10 % of its width on each
    side and 12.5 % of its height above and below: ``scale=1.2, scale_y=1.25``). Either way the
    region is centred on the box centre shifted down by ``shift_y`` times its height; pixels outside
    the image are zero (``cv2.BORDER_CONSTANT``).

    Attributes:
        box: which box the rule starts from: ``landmarks`` (bounding box of the points, the rule used
            in training and by PFLD) or ``detector`` (a face detector's box).
        scale: side of the square relative to the box's longer side; with ``scale_y`` set, the
            region's width relative to the box's width.
        shift_y: downward shift of the centre as a fraction of the region's height.
        scale_y: ``None`` for a square region; else the region's height relative to the box's height.
    """

    box: str = "landmarks"
    scale: float = 1.25
    shift_y: float = 0.0
    scale_y: float | None = None

    def __post_init__(self):
        scales = [self.scale] + ([self.scale_y] if self.scale_y is not None else [])
        if not all(0 < value < math.inf for value in scales):
            raise UsageError(f"crop scales must be positive finite numbers, got scale={self.scale}, scale_y={self.scale_y}")
        if not math.isfinite(self.shift_y):
            raise UsageError(f"crop shift_y must be a finite number, got {self.shift_y}")

    def to_dict(self) -> dict:
        values = asdict(self)
        if self.scale_y is None:  # square rules keep the card they always had
            del values["scale_y"]
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "CropRule":
        return cls(**values)


@dataclass(frozen=True)
class Normalisation:
    """Pixel values the model expects: channel order and per-channel mean/std on the [0, 1] scale.

    ``input = (pixel / 255 - mean) / std`` in ``channel_order``.
    """

    channel_order: str = "RGB"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self):
        if self.channel_order not in ("RGB", "BGR"):
            raise UsageError(f"channel order must be RGB or BGR, got '{self.channel_order}'")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise UsageError(f"mean and std need 3 values each (one per channel), got {list(self.mean)} and {list(self.std)}")
        if not all(math.isfinite(value) for value in self.mean):
            raise UsageError(f"normalisation mean must be finite numbers, got {list(self.mean)}")
        if not all(0 < value < math.inf for value in self.std):
            raise UsageError(f"normalisation std must be positive finite numbers, got {list(self.std)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Normalisation":
        return cls(values["channel_order"], tuple(values["mean"]), tuple(values["std"]))


def landmark_box(points: np.ndarray) -> np.ndarray:
    """(x1, y1, x2, y2) bounding box of (K, 2) points."""
    points = np.asarray(points, dtype=np.float64)
    return np.concatenate([points.min(axis=0), points.max(axis=0)])


def crop_matrix(box: np.ndarray, rule: CropRule, size: int) -> np.ndarray:
    """2x3 affine matrix taking frame pixel coordinates to input-square coordinates.

    Pixel centres are at integers in both frames, so the box centre lands at ``(size - 1) / 2`` and
    the region's edges on the input's outer pixel edges (-0.5 and ``size - 0.5``).
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    if rule.scale_y is None:
        width = height = rule.scale * max(x2 - x1, y2 - y1, 1.0)
    else:
        width, height = rule.scale * max(x2 - x1, 1.0), rule.scale_y * max(y2 - y1, 1.0)
    centre_x = (x1 + x2) / 2.0
    centre_y = (y1 + y2) / 2.0 + rule.shift_y * height
    kx, ky = size / width, size / height
    return np.array(
        [[kx, 0.0, (size - 1) / 2.0 - kx * centre_x], [0.0, ky, (size - 1) / 2.0 - ky * centre_y]], dtype=np.float64
    )


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """2x3 matrix for ``outer(inner(p))``."""
    full = np.vstack([outer, [0.0, 0.0, 1.0]]) @ np.vstack([inner, [0.0, 0.0, 1.0]])
    return full[:2]


def invert(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix."""
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 matrix to (..., 2) points."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Cut the ``size`` x ``size`` input square out of ``image`` with ``matrix`` (bilinear, zero border)."""
    return cv2.warpAffine(
        image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def normalise(crops_bgr: np.ndarray, normalisation: Normalisation) -> np.ndarray:
    """(N, H, W, 3) uint8 BGR crops -> (N, 3, H, W) float32 model input."""
    crops = np.asarray(crops_bgr)
    if crops.dtype == np.uint8 and crops.ndim == 4 and crops.shape[-1] == 3:
        # A table lookup per pixel, written straight into the channel-first tensor, instead of four
        # float passes and a transposing copy. The tables hold exactly the values the float formula
        # below gives for each of the 256 levels, so the result is bit-identical.
        tables = _normalisation_tables(normalisation)  # (3, 256) float32, one per model channel
        sources = (2, 1, 0) if normalisation.channel_order == "RGB" else (0, 1, 2)
        tensor = np.empty((crops.shape[0], 3, *crops.shape[1:3]), dtype=np.float32)
        for crop, planes_out in zip(crops, tensor):
            planes = cv2.split(crop)  # BGR
            for channel, source in enumerate(sources):
                plane_out = planes_out[channel]
                looked_up = cv2.LUT(planes[source], tables[channel], dst=plane_out)
                if looked_up is not plane_out:  # OpenCV allocated instead of writing in place
                    plane_out[...] = looked_up
        return tensor
    if normalisation.channel_order == "RGB":
        crops = crops[..., ::-1]
    mean = np.asarray(normalisation.mean, dtype=np.float32)
    std = np.asarray(normalisation.std, dtype=np.float32)
    tensor = (crops.astype(np.float32) / 255.0 - mean) / std
    return np.ascontiguousarray(tensor.transpose(0, 3, 1, 2))


@functools.lru_cache(maxsize=16)
def _normalisation_tables(normalisation: Normalisation) -> np.ndarray:
    """(3, 256) float32: the normalised value of every uint8 level, per model input channel."""
    mean = np.asarray(normalisation.mean, dtype=np.float32)
    std = np.asarray(normalisation.std, dtype=np.float32)
    levels = np.arange(256, dtype=np.float32)[:, None]  # the same float32 ops as the formula in normalise
    tables = np.ascontiguousarray(((levels / 255.0 - mean) / std).T)
    tables.flags.writeable = False  # shared by every call through the cache
    return tables
