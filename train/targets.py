"""Heatmap training targets: one unnormalised Gaussian per landmark, centred at its exact sub-pixel position.

Coordinates are heatmap pixels with pixel centres at integers (``runtime.heatmap.input_to_heatmap``
converts from input pixels). The Gaussians are not rounded to the pixel grid: rounding would add up
to half a heatmap pixel (two input pixels at stride 4) of label noise that the sub-pixel decoders
then learn to reproduce.
"""
from __future__ import annotations

import numpy as np


def gaussian_heatmaps(
    points: np.ndarray, size: int | tuple[int, int], sigma: float = 1.5
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``exp(-d^2 / (2 sigma^2))`` around each point.

    The value is 1.0 at the point itself (a map's largest pixel is below 1.0 when the point falls
    between pixels). A point outside the map (beyond the outer edge of its border pixels) or with a
    NaN coordinate gets an all-zero map and weight 0, so the loss ignores it.

    Args:
        points: (K, 2) x, y in heatmap pixels.
        size: map side, or (height, width).
        sigma: Gaussian standard deviation in heatmap pixels.

    Returns:
        (K, H, W) float32 heatmaps and (K,) float32 weights (1 visible, 0 ignored).
    """
    height, width = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    x, y = points[:, 0], points[:, 1]
    with np.errstate(invalid="ignore"):
        inside = (x >= -0.5) & (x < width - 0.5) & (y >= -0.5) & (y < height - 0.5)  # False for NaN
    # Separable: (K, W) row factors times (K, H) column factors.
    centre_x = np.where(inside, x, 0.0)[:, None]
    centre_y = np.where(inside, y, 0.0)[:, None]
    gauss_x = np.exp(-((np.arange(width) - centre_x) ** 2) / (2.0 * sigma**2))
    gauss_y = np.exp(-((np.arange(height) - centre_y) ** 2) / (2.0 * sigma**2))
    heatmaps = gauss_y[:, :, None] * gauss_x[:, None, :]  # (K, H, W)
    heatmaps[~inside] = 0.0
    return heatmaps.astype(np.float32), inside.astype(np.float32)
