"""A seconds-to-train heatmap net for tests, smoke runs and CI (not for accuracy)."""
from __future__ import annotations

import torch
from torch import nn

from train.models.registry import check_input_size, register_model


def _block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class TinyHeatmapNet(nn.Module):
    """Five 3x3 conv blocks (two of stride 2, one dilated for context) and a 1x1 head: stride-4 heatmaps."""

    def __init__(self, num_points: int, input_size: int):
        super().__init__()
        self.num_points = num_points
        self.input_size = input_size
        self.heatmap_stride = 4
        self.features = nn.Sequential(
            _block(3, 24, 2), _block(24, 48, 2), _block(48, 48, 1),
            nn.Sequential(nn.Conv2d(48, 48, 3, 1, 2, dilation=2, bias=False), nn.BatchNorm2d(48), nn.ReLU(inplace=True)),
            _block(48, 64, 1),
        )
        self.head = nn.Conv2d(64, num_points, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, 3, S, S) -> (N, K, S/4, S/4)
        return self.head(self.features(x))


@register_model("tiny_heatmap", input_size=64, heatmap_stride=4, description="test/CI net, 5 conv blocks")
def tiny_heatmap(num_points: int, input_size: int = 64) -> TinyHeatmapNet:
    return TinyHeatmapNet(num_points, check_input_size("tiny_heatmap", input_size, 4, 32, 512))
