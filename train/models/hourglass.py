"""FAN: stacked hourglasses of hierarchical, parallel, multi-scale blocks.

Bulat & Tzimiropoulos, "How far are we from solving the 2D & 3D Face Alignment problem?", ICCV 2017
(the ``face_alignment`` package's ``FAN``), here with 2 stacks instead of 4. Each stack predicts
heatmaps; all of them are supervised (``forward_all``) and each one's features and heatmaps are fed
back into the next stack. Layer structure and widths follow FAN; module names are this project's.

256x256 input -> stem to 64x64 x 256 channels -> 2 x (hourglass of depth 4 -> heatmaps) -> 64x64.
"""
from __future__ import annotations

import torch
import torch.nn.functional as functional
from torch import nn

from train.models.registry import check_input_size, register_model

FEATURE_CHANNELS = 256
HOURGLASS_DEPTH = 4


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """3x3 convolution, stride 1, same padding, no bias (BatchNorm follows)."""
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)


class ConvBlock(nn.Module):
    """FAN's residual block: three chained pre-activated 3x3 convs whose outputs are concatenated.

    Widths are out/2, out/4 and out/4, so the concatenation has ``out`` channels and the receptive
    fields 3, 5 and 7 pixels live side by side (the "hierarchical, parallel and multi-scale" block).
    A pre-activated 1x1 projection matches the shortcut when the width changes.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        half, quarter = out_channels // 2, out_channels // 4
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv3x3(in_channels, half)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv2 = conv3x3(half, quarter)
        self.bn3 = nn.BatchNorm2d(quarter)
        self.conv3 = conv3x3(quarter, quarter)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = None
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.BatchNorm2d(in_channels),
                nn.ReLU(inplace=True),
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale1 = self.conv1(self.relu(self.bn1(x)))  # (N, out/2, H, W)
        scale2 = self.conv2(self.relu(self.bn2(scale1)))  # (N, out/4, H, W)
        scale3 = self.conv3(self.relu(self.bn3(scale2)))  # (N, out/4, H, W)
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return torch.cat([scale1, scale2, scale3], dim=1) + shortcut


class Hourglass(nn.Module):
    """Recursive hourglass: a block at this resolution plus (pool -> block -> inner -> block -> upsample)."""

    def __init__(self, depth: int, channels: int) -> None:
        super().__init__()
        self.upper = ConvBlock(channels, channels)
        self.lower_in = ConvBlock(channels, channels)
        self.inner: nn.Module = Hourglass(depth - 1, channels) if depth > 1 else ConvBlock(channels, channels)
        self.lower_out = ConvBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        upper = self.upper(x)  # (N, C, H, W)
        lower = self.lower_in(functional.avg_pool2d(x, 2, stride=2))  # (N, C, H/2, W/2)
        lower = self.lower_out(self.inner(lower))
        return upper + functional.interpolate(lower, scale_factor=2.0, mode="nearest")


class HourglassStack(nn.Module):
    """One FAN stack: hourglass -> features -> heatmaps, plus the 1x1 convs that feed the next stack."""

    def __init__(self, channels: int, num_points: int, depth: int, feeds_next: bool) -> None:
        super().__init__()
        self.hourglass = Hourglass(depth, channels)
        self.block = ConvBlock(channels, channels)
        self.features = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.heatmaps = nn.Conv2d(channels, num_points, 1)
        self.features_to_next: nn.Module | None = nn.Conv2d(channels, channels, 1) if feeds_next else None
        self.heatmaps_to_next: nn.Module | None = nn.Conv2d(num_points, channels, 1) if feeds_next else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, C, H, W) -> (N, K, H, W) heatmaps and the next stack's (N, C, H, W) input (None if last)."""
        features = self.features(self.block(self.hourglass(x)))
        heatmaps = self.heatmaps(features)
        if self.features_to_next is None or self.heatmaps_to_next is None:
            return heatmaps, None
        return heatmaps, x + self.features_to_next(features) + self.heatmaps_to_next(heatmaps)


class FaceAlignmentNetwork(nn.Module):
    """FAN with ``num_stacks`` hourglasses.

    Attributes:
        input_size: square input side.
        heatmap_stride: 4.
        num_points: heatmap channels K.
    """

    heatmap_stride = 4

    def __init__(
        self, num_points: int, input_size: int = 256, num_stacks: int = 2, depth: int = HOURGLASS_DEPTH
    ) -> None:
        super().__init__()
        self.num_points = num_points
        self.input_size = input_size
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, FEATURE_CHANNELS)
        self.stacks = nn.ModuleList(
            HourglassStack(FEATURE_CHANNELS, num_points, depth, feeds_next=index < num_stacks - 1)
            for index in range(num_stacks)
        )

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(N, 3, S, S) images -> every stack's (N, K, S/4, S/4) heatmaps, last stack last."""
        x = self.relu(self.bn1(self.conv1(x)))  # (N, 64, S/2, S/2)
        x = functional.avg_pool2d(self.conv2(x), 2, stride=2)  # (N, 128, S/4, S/4)
        x = self.conv4(self.conv3(x))  # (N, 256, S/4, S/4)
        outputs = []
        for stack in self.stacks:
            heatmaps, x = stack(x)
            outputs.append(heatmaps)
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) images -> the last stack's (N, K, S/4, S/4) heatmaps."""
        return self.forward_all(x)[-1]


@register_model(
    "fan_hourglass2",
    input_size=256,
    heatmap_stride=4,
    description="FAN, 2 stacked hourglasses (depth 4, 256 channels)",
)
def fan_hourglass2(num_points: int, input_size: int = 256) -> FaceAlignmentNetwork:
    """Two-stack FAN.

    Args:
        num_points: number of landmarks K.
        input_size: square input side, a multiple of 64 from 64 to 512 (the hourglass halves S/4
            four times).
    """
    check_input_size("fan_hourglass2", input_size, multiple=64, minimum=64, maximum=512)
    return FaceAlignmentNetwork(num_points, input_size, num_stacks=2)
