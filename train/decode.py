"""Heatmap -> coordinate decoding in torch, mirroring runtime/heatmap.py (tested against it)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def argmax(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K, H, W) -> integer peaks (N, K, 2) as float and peak values (N, K)."""
    n, k, h, w = heatmaps.shape
    peak, index = heatmaps.reshape(n, k, h * w).max(dim=-1)
    coords = torch.stack([index % w, torch.div(index, w, rounding_mode="floor")], dim=-1).to(heatmaps.dtype)
    return coords, peak


def centroid(heatmaps: torch.Tensor, radius: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean of positions in a (2r+1)^2 window around the argmax (not differentiable in the peak).

    Same maths as :func:`runtime.heatmap.centroid`: negative values ignored, window clipped at borders.
    """
    n, k, h, w = heatmaps.shape
    peaks, peak_values = argmax(heatmaps)
    ys = torch.arange(h, device=heatmaps.device, dtype=heatmaps.dtype)
    xs = torch.arange(w, device=heatmaps.device, dtype=heatmaps.dtype)
    # (N, K, H, W) mask of the window around each peak.
    inside_x = (xs.view(1, 1, 1, w) - peaks[..., 0, None, None]).abs() <= radius
    inside_y = (ys.view(1, 1, h, 1) - peaks[..., 1, None, None]).abs() <= radius
    weights = heatmaps.clamp(min=0) * (inside_x & inside_y)
    total = weights.sum(dim=(-1, -2))
    safe = torch.where(total > 0, total, torch.ones_like(total))
    x = (weights.sum(dim=-2) * xs).sum(dim=-1) / safe
    y = (weights.sum(dim=-1) * ys).sum(dim=-1) / safe
    coords = torch.where((total > 0)[..., None], torch.stack([x, y], dim=-1), peaks)
    return coords, peak_values


def soft_argmax(heatmaps: torch.Tensor, beta: float = 50.0) -> torch.Tensor:
    """Differentiable expectation of position under ``softmax(beta * heatmap)``; (N, K, 2)."""
    n, k, h, w = heatmaps.shape
    probability = F.softmax(beta * heatmaps.float().reshape(n, k, h * w), dim=-1).reshape(n, k, h, w)
    xs = torch.arange(w, device=heatmaps.device, dtype=torch.float32)
    ys = torch.arange(h, device=heatmaps.device, dtype=torch.float32)
    return torch.stack([(probability.sum(dim=2) * xs).sum(-1), (probability.sum(dim=3) * ys).sum(-1)], dim=-1)


def decode(heatmaps: torch.Tensor, method: str = "centroid") -> torch.Tensor:
    """Heatmap-pixel coordinates (N, K, 2) with the named method."""
    if method == "argmax":
        return argmax(heatmaps)[0]
    if method == "centroid":
        return centroid(heatmaps)[0]
    if method == "soft_argmax":
        return soft_argmax(heatmaps)
    raise ValueError(f"Unknown decode method '{method}'. Valid: argmax, centroid, soft_argmax")
