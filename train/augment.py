"""Training augmentation: one random affine composed with the crop (the image is warped once) and
photometric jitter with OpenCV, both driven only by the numpy Generator passed in.

Geometry lives in the model input square (pixel centres at integers, centre ``(S - 1) / 2``):
``random_affine`` returns a 2x3 matrix ``A`` about that centre, the dataset composes it with the crop
matrix ``C`` (``runtime.crop.compose(A, C)``), warps the frame once with the result and maps the
landmarks with the same matrix, so image and targets cannot drift apart. A horizontal flip is part of
``A`` (a mirror about the centre column); after it the points are relabelled with the layout's flip
permutation so that index ``i`` still names the same facial part.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from runtime import crop
from runtime.errors import UsageError
from runtime.layouts import Layout


@dataclass(frozen=True)
class AugmentConfig:
    """What to randomise and by how much; every entry can be switched off by its neutral value.

    Attributes:
        geometric: master switch for rotation, scale, translation and flip.
        rotation_degrees: rotation drawn uniformly in ``[-r, r]`` degrees (positive: counter-clockwise
            on screen, OpenCV's convention).
        scale_range: zoom factor drawn uniformly in this range; above 1 the face gets larger.
        translation_fraction: shift of each axis drawn in ``[-t, t]`` times the input side.
        flip_probability: chance of a horizontal mirror (with left/right relabelling).
        photometric: master switch for the colour, blur, noise and grayscale entries below.
        brightness: brightness factor drawn in ``[1 - b, 1 + b]``.
        contrast: contrast factor (about the mean grey level) drawn in ``[1 - c, 1 + c]``.
        saturation: saturation factor drawn in ``[1 - s, 1 + s]``.
        hue_degrees: hue shift drawn in ``[-h, h]`` degrees of the colour circle.
        blur_probability: chance of a Gaussian blur with sigma drawn in ``blur_sigma`` (input pixels).
        blur_sigma: range of the blur's sigma.
        noise_probability: chance of additive Gaussian noise with std drawn in ``[0, noise_std]``.
        noise_std: largest noise std, in 0-255 pixel units.
        grayscale_probability: chance of replacing the colours by their grey level (3 channels kept).
    """

    geometric: bool = True
    rotation_degrees: float = 30.0
    scale_range: tuple[float, float] = (0.75, 1.25)
    translation_fraction: float = 0.05
    flip_probability: float = 0.5
    photometric: bool = True
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    hue_degrees: float = 10.0
    blur_probability: float = 0.1
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    noise_probability: float = 0.2
    noise_std: float = 6.0
    grayscale_probability: float = 0.05

    def __post_init__(self):
        for name in ("flip_probability", "blur_probability", "noise_probability", "grayscale_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise UsageError(f"augment {name} must be a probability in [0, 1], got {value}")
        for name in ("rotation_degrees", "translation_fraction", "hue_degrees", "noise_std"):
            if getattr(self, name) < 0:
                raise UsageError(f"augment {name} must be >= 0 (a symmetric range), got {getattr(self, name)}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise UsageError(f"augment {name} must be in [0, 1) (factor range 1 +- it), got {getattr(self, name)}")
        low, high = self.scale_range
        if not 0 < low <= high:
            raise UsageError(f"augment scale_range must satisfy 0 < low <= high, got {self.scale_range}")
        low, high = self.blur_sigma
        if not 0 < low <= high:
            raise UsageError(f"augment blur_sigma must satisfy 0 < low <= high, got {self.blur_sigma}")

    @classmethod
    def off(cls) -> "AugmentConfig":
        """A config that changes nothing (geometric and photometric both off)."""
        return cls(geometric=False, photometric=False)


class RandomAffine(NamedTuple):
    """A drawn geometric augmentation: the 2x3 input->input matrix and whether it mirrors."""

    matrix: np.ndarray
    flipped: bool


def affine_about_centre(
    size: int, angle_degrees: float = 0.0, scale: float = 1.0, shift: tuple[float, float] = (0.0, 0.0), flip: bool = False
) -> np.ndarray:
    """2x3 matrix mirroring (optionally), rotating and scaling about the input square's centre, then shifting.

    ``p -> c + shift + scale * R(angle) * F * (p - c)`` with ``c = ((size - 1) / 2, (size - 1) / 2)`` and
    ``F`` the mirror ``x -> -x`` when ``flip``; a mirror alone maps column ``x`` to ``size - 1 - x``,
    as :func:`runtime.layouts.flip_points` does.
    """
    centre = (size - 1) / 2.0
    radians = math.radians(angle_degrees)
    a, b = scale * math.cos(radians), scale * math.sin(radians)
    # OpenCV's rotation (cv2.getRotationMatrix2D): positive angles turn content counter-clockwise on screen.
    linear = np.array([[a, b], [-b, a]], dtype=np.float64)
    if flip:
        linear = linear @ np.diag([-1.0, 1.0])
    offset = np.array([centre + shift[0], centre + shift[1]]) - linear @ np.array([centre, centre])
    return np.hstack([linear, offset[:, None]])


def random_affine(rng: np.random.Generator, config: AugmentConfig, size: int) -> RandomAffine:
    """Draw a geometric augmentation for a ``size`` x ``size`` input square.

    Compose the result with the crop matrix (``runtime.crop.compose(result.matrix, crop_matrix)``),
    warp once with that, and map the points with :func:`map_points`.

    Args:
        rng: the sample's Generator; exactly five numbers are drawn whatever the config, so switching
            one entry off does not change the others' draws.
        config: ranges and switches.
        size: input side in pixels.

    Returns:
        The matrix and whether it includes a mirror.
    """
    angle, zoom, shift_x, shift_y, coin = (float(v) for v in rng.random(5))
    if not config.geometric:
        return RandomAffine(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), False)
    low, high = config.scale_range
    translation = config.translation_fraction * size
    flipped = bool(coin < config.flip_probability)
    matrix = affine_about_centre(
        size,
        angle_degrees=(2 * angle - 1) * config.rotation_degrees,
        scale=low + zoom * (high - low),
        shift=((2 * shift_x - 1) * translation, (2 * shift_y - 1) * translation),
        flip=flipped,
    )
    return RandomAffine(matrix, flipped)


def map_points(points: np.ndarray, matrix: np.ndarray, flipped: bool, layout: Layout) -> np.ndarray:
    """Map (K, 2) points with ``matrix`` and, after a mirror, relabel them with the layout's flip permutation.

    Returns (K, 2) float64 where row ``i`` is the position of facial part ``i`` in the new image.
    """
    mapped = crop.apply(matrix, points)
    return mapped[layout.flip_permutation] if flipped else mapped


def photometric(rng: np.random.Generator, image_bgr: np.ndarray, config: AugmentConfig) -> np.ndarray:
    """Colour jitter, grayscale, blur and noise on an (H, W, 3) uint8 BGR image; returns a new uint8 image.

    Applied to the input crop (after the warp), which is cheaper than the full frame and blurs in
    input pixels, the scale the model sees. Ten numbers plus the noise field are drawn from ``rng``
    in a fixed order whatever the config.
    """
    # Python floats: numpy float64 scalars would promote the float32 image to float64 (NEP 50).
    (brightness, contrast, saturation, hue, gray_coin, blur_coin, blur_sigma, noise_coin, noise_std, _) = (
        float(v) for v in rng.random(10)
    )
    noise_seed = int(rng.integers(0, 2**31 - 1))
    if not config.photometric:
        return image_bgr.copy()
    image = image_bgr.astype(np.float32) / 255.0  # (H, W, 3) BGR in [0, 1]
    contrast_factor = 1.0 + (2 * contrast - 1) * config.contrast
    if contrast_factor != 1.0:
        grey = float(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).mean())
        image = (image - grey) * contrast_factor + grey
    image *= 1.0 + (2 * brightness - 1) * config.brightness
    saturation_factor = 1.0 + (2 * saturation - 1) * config.saturation
    hue_shift = (2 * hue - 1) * config.hue_degrees
    if saturation_factor != 1.0 or hue_shift != 0.0:
        # float32 HSV: H in [0, 360), S and V in [0, 1].
        hsv = cv2.cvtColor(np.clip(image, 0.0, 1.0), cv2.COLOR_BGR2HSV)
        hsv[..., 0] = np.mod(hsv[..., 0] + hue_shift, 360.0)
        hsv[..., 1] = np.clip(hsv[..., 1] * saturation_factor, 0.0, 1.0)
        image = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    if gray_coin < config.grayscale_probability:
        image = cv2.cvtColor(cv2.cvtColor(np.clip(image, 0.0, 1.0), cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    if blur_coin < config.blur_probability:
        low, high = config.blur_sigma
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=low + blur_sigma * (high - low))
    if noise_coin < config.noise_probability and config.noise_std > 0:
        noise = np.random.default_rng(noise_seed).standard_normal(image.shape, dtype=np.float32)
        image = image + noise * (noise_std * config.noise_std / 255.0)
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
