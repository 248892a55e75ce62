"""MobileNetV3-Small-style backbone with a light two-step upsampling head: the edge model.

Backbone: MobileNetV3-Small's inverted residual blocks (Howard et al., "Searching for MobileNetV3",
ICCV 2019) with squeeze-excite and hardswish, but its last stage keeps stride 16 instead of going to
32: a 112 or 128 pixel face would otherwise leave 4x4 features, and landmarks need the resolution
more than the receptive field (the 5x5 kernels at stride 16 already span the face). The 576-channel
classifier convolution is dropped.

Head: two FPN-style steps S/16 -> S/8 -> S/4, each a nearest 2x upsample, a 1x1 lateral projection
of the backbone's features at that stride added in, and a depthwise-separable 3x3 convolution.

Every operation is a Conv, BatchNormalization (folded at export), Relu, HardSwish, HardSigmoid,
GlobalAveragePool, Mul, Add or nearest Resize: all exportable at ONNX opset 17 and quantizable as
Q/DQ. The head uses ReLU, which quantizers fuse into the preceding convolution.
"""
from __future__ import annotations

import torch
from torch import nn

from train.models.registry import check_input_size, register_model

HEAD_CHANNELS = 96

# MobileNetV3-Small blocks: kernel, expanded channels, output channels, squeeze-excite, hardswish, stride.
# Grouped by the stride of their output: the taps the head reads.
STRIDE4_BLOCKS = [(3, 16, 16, True, False, 2)]
STRIDE8_BLOCKS = [(3, 72, 24, False, False, 2), (3, 88, 24, False, False, 1)]
STRIDE16_BLOCKS = [
    (5, 96, 40, True, True, 2),
    (5, 240, 40, True, True, 1),
    (5, 240, 40, True, True, 1),
    (5, 120, 48, True, True, 1),
    (5, 144, 48, True, True, 1),
    # MobileNetV3-Small has stride 2 here; stride 1 keeps the features at S/16 (see module docstring).
    (5, 288, 96, True, True, 1),
    (5, 576, 96, True, True, 1),
    (5, 576, 96, True, True, 1),
]


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor`` without losing more than 10% (MobileNet rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def convolution_norm_activation(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    stride: int = 1,
    groups: int = 1,
    activation: type[nn.Module] | None = nn.ReLU,
) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + optional activation, padded to keep the side at stride 1."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if activation is not None:
        layers.append(activation(inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    """Channel attention: global average -> 1x1 reduce -> ReLU -> 1x1 expand -> hardsigmoid -> scale."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        squeezed = make_divisible(channels / 4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeezed, 1)
        self.relu = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(squeezed, channels, 1)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.gate(self.expand(self.relu(self.reduce(self.pool(x)))))  # (N, C, 1, 1)
        return x * scale


class InvertedResidual(nn.Module):
    """MobileNetV3 block: 1x1 expand -> kxk depthwise -> optional squeeze-excite -> 1x1 project."""

    def __init__(
        self,
        in_channels: int,
        kernel_size: int,
        expanded_channels: int,
        out_channels: int,
        squeeze_excite: bool,
        hardswish: bool,
        stride: int,
    ) -> None:
        super().__init__()
        activation = nn.Hardswish if hardswish else nn.ReLU
        layers: list[nn.Module] = []
        if expanded_channels != in_channels:
            layers.append(convolution_norm_activation(in_channels, expanded_channels, 1, activation=activation))
        layers.append(
            convolution_norm_activation(
                expanded_channels,
                expanded_channels,
                kernel_size,
                stride,
                groups=expanded_channels,
                activation=activation,
            )
        )
        if squeeze_excite:
            layers.append(SqueezeExcitation(expanded_channels))
        layers.append(convolution_norm_activation(expanded_channels, out_channels, 1, activation=None))
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise + 1x1 pointwise convolution, each with BatchNorm and ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.depthwise = convolution_norm_activation(channels, channels, 3, groups=channels)
        self.pointwise = convolution_norm_activation(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class MobileNetV3Edge(nn.Module):
    """MobileNetV3-Small-style heatmap model with stride-4 output.

    Attributes:
        input_size: square input side.
        heatmap_stride: 4.
        num_points: heatmap channels K.
    """

    heatmap_stride = 4

    def __init__(self, num_points: int, input_size: int = 128) -> None:
        super().__init__()
        self.num_points = num_points
        self.input_size = input_size
        self.stem = convolution_norm_activation(3, 16, 3, stride=2, activation=nn.Hardswish)
        in_channels = 16
        stages = []
        for blocks in (STRIDE4_BLOCKS, STRIDE8_BLOCKS, STRIDE16_BLOCKS):
            layers = []
            for kernel_size, expanded, out_channels, squeeze_excite, hardswish, stride in blocks:
                block = InvertedResidual(
                    in_channels, kernel_size, expanded, out_channels, squeeze_excite, hardswish, stride
                )
                layers.append(block)
                in_channels = out_channels
            stages.append(nn.Sequential(*layers))
        self.stride4, self.stride8, self.stride16 = stages
        self.lateral16 = convolution_norm_activation(STRIDE16_BLOCKS[-1][2], HEAD_CHANNELS, 1)
        self.lateral8 = convolution_norm_activation(STRIDE8_BLOCKS[-1][2], HEAD_CHANNELS, 1, activation=None)
        self.lateral4 = convolution_norm_activation(STRIDE4_BLOCKS[-1][2], HEAD_CHANNELS, 1, activation=None)
        self.upsample = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.refine8 = DepthwiseSeparable(HEAD_CHANNELS)
        self.refine4 = DepthwiseSeparable(HEAD_CHANNELS)
        self.final = nn.Conv2d(HEAD_CHANNELS, num_points, 1)
        self._initialise()

    def _initialise(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.final.weight, std=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) images -> (N, K, S/4, S/4) heatmaps."""
        features4 = self.stride4(self.stem(x))  # (N, 16, S/4, S/4)
        features8 = self.stride8(features4)  # (N, 24, S/8, S/8)
        features16 = self.stride16(features8)  # (N, 96, S/16, S/16)
        top = self.lateral16(features16)  # (N, 96, S/16, S/16)
        top = self.refine8(self.upsample(top) + self.lateral8(features8))  # (N, 96, S/8, S/8)
        top = self.refine4(self.upsample(top) + self.lateral4(features4))  # (N, 96, S/4, S/4)
        return self.final(top)


@register_model(
    "mobilenetv3_edge",
    input_size=128,
    heatmap_stride=4,
    description="MobileNetV3-Small (output stride 16) + 2-step upsampling head",
)
def mobilenetv3_edge(num_points: int, input_size: int = 128) -> MobileNetV3Edge:
    """The edge model.

    Args:
        num_points: number of landmarks K.
        input_size: square input side, a multiple of 16 from 112 to 256 (features are at S/16).
    """
    check_input_size("mobilenetv3_edge", input_size, multiple=16, minimum=112, maximum=256)
    return MobileNetV3Edge(num_points, input_size)
