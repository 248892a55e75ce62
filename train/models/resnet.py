"""ResNet-18 with a SimpleBaseline deconvolution head (Xiao et al., "Simple Baselines for Human Pose
Estimation and Tracking", ECCV 2018), the plain heatmap regressor every other model is measured against.

256x256 input -> 8x8 features at stride 32 -> three 2x transposed convolutions -> 64x64 heatmaps.
Module names follow torchvision's ResNet (``conv1``, ``bn1``, ``layer1``..``layer4``) so ImageNet
ResNet-18 weights load into ``backbone`` with ``strict=False`` minus the ``fc`` layer.
"""
from __future__ import annotations

import torch
from torch import nn

from train.models.registry import check_input_size, register_model

DECONVOLUTION_CHANNELS = 256


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class ResNet18Backbone(nn.Module):
    """ResNet-18 without pooling and classifier: (N, 3, S, S) -> (N, 512, S/32, S/32)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, 64, stride=1)
        self.layer2 = self._make_layer(64, 128, stride=2)
        self.layer3 = self._make_layer(128, 256, stride=2)
        self.layer4 = self._make_layer(256, 512, stride=2)

    @staticmethod
    def _make_layer(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
        return nn.Sequential(BasicBlock(in_channels, out_channels, stride), BasicBlock(out_channels, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (N, 64, S/4, S/4)
        x = self.layer2(self.layer1(x))  # (N, 128, S/8, S/8)
        return self.layer4(self.layer3(x))  # (N, 512, S/32, S/32)


class ResNetDeconvolution(nn.Module):
    """ResNet-18 backbone + three deconvolution layers + 1x1 heatmap convolution.

    Attributes:
        input_size: square input side.
        heatmap_stride: 4.
        num_points: heatmap channels K.
    """

    heatmap_stride = 4

    def __init__(self, num_points: int, input_size: int = 256) -> None:
        super().__init__()
        self.num_points = num_points
        self.input_size = input_size
        self.backbone = ResNet18Backbone()
        layers: list[nn.Module] = []
        in_channels = 512
        for _ in range(3):
            # kernel 4, stride 2, padding 1 doubles the side exactly: (H - 1) * 2 - 2 + 4 = 2H.
            layers += [
                nn.ConvTranspose2d(in_channels, DECONVOLUTION_CHANNELS, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(DECONVOLUTION_CHANNELS),
                nn.ReLU(inplace=True),
            ]
            in_channels = DECONVOLUTION_CHANNELS
        self.deconvolution = nn.Sequential(*layers)
        self.final = nn.Conv2d(DECONVOLUTION_CHANNELS, num_points, 1)
        self._initialise()

    def _initialise(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # SimpleBaseline: small head weights so initial heatmaps start near zero.
        for module in self.deconvolution.modules():
            if isinstance(module, nn.ConvTranspose2d):
                nn.init.normal_(module.weight, std=0.001)
        nn.init.normal_(self.final.weight, std=0.001)
        nn.init.zeros_(self.final.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) images -> (N, K, S/4, S/4) heatmaps."""
        features = self.backbone(x)  # (N, 512, S/32, S/32)
        return self.final(self.deconvolution(features))


@register_model(
    "resnet18_deconv",
    input_size=256,
    heatmap_stride=4,
    description="ResNet-18 + 3 deconvolutions (SimpleBaseline)",
)
def resnet18_deconv(num_points: int, input_size: int = 256) -> ResNetDeconvolution:
    """ResNet-18 SimpleBaseline heatmap model.

    Args:
        num_points: number of landmarks K.
        input_size: square input side, a multiple of 32 from 64 to 512 (the network is fully
            convolutional; this records what it is trained and exported at).
    """
    check_input_size("resnet18_deconv", input_size, multiple=32, minimum=64, maximum=512)
    return ResNetDeconvolution(num_points, input_size)
