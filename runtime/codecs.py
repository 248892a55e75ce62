"""Codecs: one per output kind, each the one home of how landmarks become that output and back.

A card's ``output_kind`` names its codec (:func:`codec_for`). A codec owns the pixel convention of
its output: points are in input pixels with pixel centres at integers (the crop's convention,
:func:`runtime.crop.crop_matrix`), and

- ``heatmap``: K maps at ``stride`` input pixels per map pixel, map-pixel centres at integers, so
  ``input = map * stride + (stride - 1) / 2`` (:func:`heatmap_to_input`). Encode draws the training
  targets (an unnormalised Gaussian per point at its exact sub-pixel position, never rounded to the
  grid: rounding would add up to half a map pixel of label noise that the sub-pixel decoders then
  learn); decode is centroid, argmax or soft-argmax (:mod:`runtime.heatmap`).
- ``coords``: 2K values normalised to the crop's extent, 0 at its left/top edge and 1 at its
  right/bottom edge, so ``input = value * input_size - 0.5`` (PFLD's ``(point - corner) / box_size``
  labels); a ``coords_slice`` picks them out of a longer output.
- ``heatmap_offsets``: K peak maps with row and column offset maps (OpenSeeFace), decoded by
  :func:`runtime.heatmap.decode_offsets`; third-party only, so it has no encoder.

``train`` encodes with these codecs, the runtime, export and the studies decode with them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from runtime.backends.base import BackendError
from runtime.errors import EdgemarkError
from runtime.heatmap import DECODERS, HeatmapOffsets, decode, decode_offsets


class OutputMismatch(BackendError):
    """A model output whose shape does not fit its card."""


def heatmap_to_input(coords: np.ndarray, stride: float) -> np.ndarray:
    """Map heatmap-pixel coordinates to input-pixel coordinates (pixel centres at integers)."""
    return coords * stride + (stride - 1) / 2.0


def input_to_heatmap(coords: np.ndarray, stride: float) -> np.ndarray:
    """Inverse of :func:`heatmap_to_input`."""
    return (coords - (stride - 1) / 2.0) / stride


def gaussian_heatmaps(points: np.ndarray, size: int | tuple[int, int], sigma: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``exp(-d^2 / (2 sigma^2))`` around each point (heatmap pixels).

    The value is 1.0 at the point itself (a map's largest pixel is below 1.0 when the point falls
    between pixels). A point outside the map (beyond the outer edge of its border pixels) or with a
    NaN coordinate gets an all-zero map and weight 0, so a loss ignores it.

    Args:
        points: (..., K, 2) x, y in heatmap pixels.
        size: map side, or (height, width).
        sigma: Gaussian standard deviation in heatmap pixels.

    Returns:
        (..., K, H, W) float32 heatmaps and (..., K) float32 weights (1 visible, 0 ignored).
    """
    height, width = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    points = np.asarray(points, dtype=np.float64)
    x, y = points[..., 0], points[..., 1]
    with np.errstate(invalid="ignore"):
        inside = (x >= -0.5) & (x < width - 0.5) & (y >= -0.5) & (y < height - 0.5)  # False for NaN
    # Separable: (..., K, W) row factors times (..., K, H) column factors.
    gauss_x = np.exp(-((np.arange(width) - np.where(inside, x, 0.0)[..., None]) ** 2) / (2.0 * sigma**2))
    gauss_y = np.exp(-((np.arange(height) - np.where(inside, y, 0.0)[..., None]) ** 2) / (2.0 * sigma**2))
    heatmaps = gauss_y[..., :, None] * gauss_x[..., None, :]
    heatmaps[~inside] = 0.0
    return heatmaps.astype(np.float32), inside.astype(np.float32)


class Codec:
    """Landmarks <-> one kind of model output, in input pixels. Subclasses set :attr:`kind`."""

    kind: ClassVar[str] = ""

    def encode(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(..., K, 2) input-pixel points -> (training target, per-point weights)."""
        raise EdgemarkError(f"the {self.kind} codec decodes third-party outputs only; it has no training target")

    def decode(self, output: np.ndarray, method: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(F, ...) raw output -> (F, K, 2) input-pixel points (float64) and (F, K) confidences (NaN where the
        output carries none).

        Raises:
            OutputMismatch: an output whose shape does not fit the codec.
        """
        raise NotImplementedError


@dataclass(frozen=True)
class HeatmapCodec(Codec):
    """K heatmaps at ``stride`` input pixels per map pixel (see the module docstring)."""

    num_points: int
    input_size: int
    stride: int
    method: str = "centroid"
    sigma: float = 1.5
    kind: ClassVar[str] = "heatmap"

    @property
    def map_size(self) -> int:
        return self.input_size // self.stride

    def encode(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Training targets: (..., K, H, W) Gaussians at the points' exact positions, (..., K) weights."""
        return gaussian_heatmaps(input_to_heatmap(np.asarray(points, np.float64), self.stride), self.map_size, self.sigma)

    def decode(self, output: np.ndarray, method: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        output = np.asarray(output)
        if output.ndim != 4 or output.shape[1] != self.num_points:
            raise OutputMismatch(
                f"model output is {output.shape} but the card says ({len(output)}, {self.num_points}, H, W) heatmaps"
            )
        coords, confidence = decode(output.astype(np.float32, copy=False), method or self.method)
        return heatmap_to_input(coords.astype(np.float64), self.stride), confidence


@dataclass(frozen=True)
class CoordsCodec(Codec):
    """2K crop-normalised values, optionally a slice of a longer output (see the module docstring)."""

    num_points: int
    input_size: int
    coords_slice: tuple[int, int] | None = None
    kind: ClassVar[str] = "coords"

    def encode(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Regression targets: (..., 2K) values in [0, 1] of the crop, (..., K) weights (0 for NaN points)."""
        points = np.asarray(points, np.float64)
        weights = np.isfinite(points).all(axis=-1).astype(np.float32)
        values = (points + 0.5) / self.input_size
        return values.reshape(*points.shape[:-2], -1).astype(np.float32), weights

    def decode(self, output: np.ndarray, method: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        output = np.asarray(output)
        count, points = len(output), self.num_points
        start, stop = self.coords_slice or (0, 2 * points)
        # Exactly 2K values, or at least up to the slice's end when the output carries other heads too.
        values_per_face = output[0].size if count else stop
        if values_per_face < stop or (self.coords_slice is None and values_per_face != stop):
            raise OutputMismatch(
                f"model output is {output.shape} but the card says {points} (x, y) coords per face"
                + (f" at values {start}-{stop - 1}" if self.coords_slice else "")
            )
        values = output.reshape(count, -1)[:, start:stop] if count else np.zeros((0, stop - start))
        coords = values.astype(np.float64).reshape(count, points, 2) * self.input_size - 0.5
        return coords, np.full((count, points), np.nan, dtype=np.float32)


@dataclass(frozen=True)
class HeatmapOffsetsCodec(Codec):
    """K peak maps with offset maps on a G x G grid (see :class:`runtime.heatmap.HeatmapOffsets`)."""

    num_points: int
    spec: HeatmapOffsets
    kind: ClassVar[str] = "heatmap_offsets"

    def decode(self, output: np.ndarray, method: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        output = np.asarray(output)
        grid = self.spec.grid_size
        if output.ndim != 4 or output.shape[1:] != (3 * self.num_points, grid, grid):
            raise OutputMismatch(
                f"model output is {output.shape} but the card says ({len(output)}, {3 * self.num_points}, {grid}, "
                f"{grid}) heatmaps with x and y offset maps"
            )
        return decode_offsets(output, self.spec, self.num_points)


CODECS = {codec.kind: codec for codec in (HeatmapCodec, CoordsCodec, HeatmapOffsetsCodec)}


def codec_for(card, sigma: float = 1.5) -> Codec:
    """The codec a card names (its ``output_kind``), set up with the card's facts."""
    if card.output_kind == "heatmap":
        method = card.decode if card.decode in DECODERS else "centroid"
        return HeatmapCodec(card.num_points, card.input_size, card.heatmap_stride, method, sigma)
    if card.output_kind == "coords":
        return CoordsCodec(card.num_points, card.input_size, card.coords_slice)
    return HeatmapOffsetsCodec(card.num_points, card.heatmap_offsets)
