"""Training losses: heatmap MSE, adaptive wing, and a normalised landmark distance on soft-argmax points."""
from __future__ import annotations


import torch
import torch.nn.functional as F

from runtime.errors import unknown_name
from train.decode import soft_argmax

HEATMAP_LOSSES = ("mse", "adaptive_wing")


def heatmap_mse(predicted: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean squared error over (N, K, H, W) maps; ``weights`` (N, K) zero out invisible points."""
    per_point = ((predicted.float() - target) ** 2).mean(dim=(-1, -2))
    return (per_point * weights).sum() / weights.sum().clamp(min=1)


def adaptive_wing(
    predicted: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor,
    omega: float = 14.0,
    theta: float = 0.5,
    epsilon: float = 1.0,
    alpha: float = 2.1,
    foreground_weight: float = 10.0,
) -> torch.Tensor:
    """Adaptive wing loss (Wang, Bo and Fuxin, ICCV 2019) with its weighted loss map.

    The loss is log-like near zero error for foreground pixels (target near 1) and close to MSE for
    background, so it pushes peak pixels harder than MSE without exploding on the background.
    Pixels near a landmark (target > 0.2 after a 3x3 dilation) are weighted ``foreground_weight + 1``.
    """
    predicted = predicted.float()
    error = (predicted - target).abs()
    power = alpha - target
    a = omega * (1 / (1 + (theta / epsilon) ** power)) * power * ((theta / epsilon) ** (power - 1)) / epsilon
    c = theta * a - omega * torch.log1p((theta / epsilon) ** power)
    loss = torch.where(error < theta, omega * torch.log1p((error / epsilon) ** power), a * error - c)
    dilated = F.max_pool2d(target, kernel_size=3, stride=1, padding=1)
    pixel_weight = 1 + foreground_weight * (dilated > 0.2).float()
    per_point = (loss * pixel_weight).mean(dim=(-1, -2))
    return (per_point * weights).sum() / weights.sum().clamp(min=1)


def normalised_distance_loss(
    predicted: torch.Tensor, target_points: torch.Tensor, weights: torch.Tensor, eye_corners: tuple[int, int], stride: int
) -> torch.Tensor:
    """Mean point distance of soft-argmax coordinates divided by the inter-ocular distance.

    Args:
        predicted: (N, K, H, W) heatmaps.
        target_points: (N, K, 2) ground truth in input pixels.
        weights: (N, K) visibility.
        eye_corners: outer eye corner indices of the layout.
        stride: input pixels per heatmap pixel.
    """
    points = soft_argmax(predicted) * stride + (stride - 1) / 2.0
    distance = torch.linalg.vector_norm(points - target_points, dim=-1)
    ocular = torch.linalg.vector_norm(target_points[:, eye_corners[0]] - target_points[:, eye_corners[1]], dim=-1)
    per_image = (distance * weights).sum(-1) / weights.sum(-1).clamp(min=1) / ocular.clamp(min=1e-3)
    return per_image.mean()


def heatmap_loss(name: str):
    """The heatmap loss function registered as ``name``."""
    losses = {"mse": heatmap_mse, "adaptive_wing": adaptive_wing}
    if name not in losses:
        raise unknown_name("loss", name, list(losses))
    return losses[name]


