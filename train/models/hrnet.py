"""HRNetV2-W18 for facial landmarks, layer for layer as in the official HRNet facial landmark code.

Reference: Sun et al., "High-Resolution Representations for Labeling Pixels and Regions" (2019),
repository HRNet/HRNet-Facial-Landmark-Detection, ``lib/models/hrnet.py`` with
``experiments/wflw/face_alignment_wflw_hrnet_w18.yaml``. Module names, channel counts, BatchNorm
momentum (0.01), the bilinear fusion and the head are the official ones, so the released
``HR18-WFLW.pth`` (a plain state dict) loads with ``load_state_dict(..., strict=True)``:

- stem ``conv1``/``bn1``/``conv2``/``bn2`` (64 channels, stride 4), ``layer1`` of 4 Bottlenecks;
- ``transition1..3`` and ``stage2..4`` (1/4/3 modules of 2/3/4 branches, 4 BasicBlocks per branch,
  18/36/72/144 channels) with ``fuse_layers`` exchanging information between resolutions;
- head: the four branches upsampled to S/4 and concatenated (270 channels), ``head.0`` 1x1 conv
  270->270 (with bias), ``head.1`` BatchNorm, ``head.2`` ReLU, ``head.3`` 1x1 conv (with bias) to K.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as functional
from torch import nn

from train.models.registry import check_input_size, register_model

# The official code trains with BatchNorm momentum 0.01 (PyTorch's default is 0.1).
BATCH_NORM_MOMENTUM = 0.01


@dataclasses.dataclass(frozen=True)
class StageConfig:
    """One HRNet stage, as in the official YAML's ``MODEL.EXTRA.STAGEn``.

    Attributes:
        num_modules: HighResolutionModules in sequence.
        num_blocks: residual blocks per branch.
        num_channels: channels per branch, highest resolution first.
        block: ``"BASIC"`` or ``"BOTTLENECK"``.
    """

    num_modules: int
    num_blocks: tuple[int, ...]
    num_channels: tuple[int, ...]
    block: str = "BASIC"

    @property
    def num_branches(self) -> int:
        """Parallel resolutions in this stage."""
        return len(self.num_channels)


# experiments/wflw/face_alignment_wflw_hrnet_w18.yaml, MODEL.EXTRA (FINAL_CONV_KERNEL: 1).
W18_STAGES = (
    StageConfig(num_modules=1, num_blocks=(4, 4), num_channels=(18, 36)),
    StageConfig(num_modules=4, num_blocks=(4, 4, 4), num_channels=(18, 36, 72)),
    StageConfig(num_modules=3, num_blocks=(4, 4, 4, 4), num_channels=(18, 36, 72, 144)),
)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with the official momentum."""
    return nn.BatchNorm2d(channels, momentum=BATCH_NORM_MOMENTUM)


def projection(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """1x1 conv + BatchNorm shortcut (the official ``downsample``)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), batch_norm(out_channels))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = batch_norm(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = batch_norm(channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 -> 1x1 expand (x4) with a residual connection."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = batch_norm(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = batch_norm(channels)
        self.conv3 = nn.Conv2d(channels, channels * self.expansion, 1, bias=False)
        self.bn3 = batch_norm(channels * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + shortcut)


BLOCKS: dict[str, Block] = {"BASIC": BasicBlock, "BOTTLENECK": Bottleneck}


Block = type[BasicBlock] | type[Bottleneck]


def residual_layer(block: Block, in_channels: int, channels: int, num_blocks: int) -> nn.Sequential:
    """``num_blocks`` blocks at stride 1; the first projects its shortcut if the width changes."""
    out_channels = channels * block.expansion
    downsample = projection(in_channels, out_channels) if in_channels != out_channels else None
    layers = [block(in_channels, channels, 1, downsample)]
    layers += [block(out_channels, channels) for _ in range(1, num_blocks)]
    return nn.Sequential(*layers)


def upsample_to(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of ``x`` to ``reference``'s height and width (align_corners=False, as official)."""
    return functional.interpolate(x, size=reference.shape[-2:], mode="bilinear", align_corners=False)


class HighResolutionModule(nn.Module):
    """Parallel branches at 1, 1/2, 1/4, ... resolution, then every branch gets the sum of all others.

    ``fuse_layers[i][j]`` brings branch j to branch i: a 1x1 conv + BN (then bilinear upsampling in
    ``forward``) when j is coarser, a chain of stride-2 3x3 convs when j is finer, nothing when i == j.
    """

    def __init__(
        self, block: Block, num_blocks: tuple[int, ...], in_channels: list[int], channels: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            residual_layer(block, in_channels[index], channels[index], num_blocks[index])
            for index in range(len(channels))
        )
        self.out_channels = [width * block.expansion for width in channels]
        self.fuse_layers = self._make_fuse_layers(self.out_channels) if len(channels) > 1 else None
        self.relu = nn.ReLU(inplace=True)

    @staticmethod
    def _make_fuse_layers(widths: list[int]) -> nn.ModuleList:
        fuse_layers = nn.ModuleList()
        for target, target_width in enumerate(widths):
            row: list[nn.Module | None] = []
            for source, source_width in enumerate(widths):
                if source > target:
                    # 1x1 to the target width; forward() then upsamples bilinearly.
                    row.append(
                        nn.Sequential(nn.Conv2d(source_width, target_width, 1, bias=False), batch_norm(target_width))
                    )
                elif source == target:
                    row.append(None)
                else:
                    steps: list[nn.Module] = []
                    for step in range(target - source):
                        last = step == target - source - 1
                        # Intermediate halvings keep the source width (with ReLU); the last one
                        # changes width and has no ReLU because the sum is activated afterwards.
                        out_width = target_width if last else source_width
                        layers: list[nn.Module] = [
                            nn.Conv2d(source_width, out_width, 3, stride=2, padding=1, bias=False),
                            batch_norm(out_width),
                        ]
                        if not last:
                            layers.append(nn.ReLU(inplace=True))
                        steps.append(nn.Sequential(*layers))
                    row.append(nn.Sequential(*steps))
            fuse_layers.append(nn.ModuleList(row))
        return fuse_layers

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """List of (N, C_b, H / 2^b, W / 2^b) per branch b -> list of the same shapes."""
        features = [branch(x) for branch, x in zip(self.branches, features)]
        if self.fuse_layers is None:
            return features
        fused = []
        for target, row in enumerate(self.fuse_layers):
            total = features[target]
            for source, layer in enumerate(row):
                if source == target:
                    continue
                incoming = layer(features[source])
                if source > target:
                    incoming = upsample_to(incoming, features[target])
                total = total + incoming
            fused.append(self.relu(total))
        return fused


class HighResolutionNet(nn.Module):
    """HRNetV2 landmark model: (N, 3, S, S) -> (N, K, S/4, S/4) heatmaps.

    Attributes:
        input_size: square input side.
        heatmap_stride: 4.
        num_points: heatmap channels K.
    """

    heatmap_stride = 4

    def __init__(
        self,
        num_points: int,
        input_size: int = 256,
        stages: tuple[StageConfig, ...] = W18_STAGES,
        final_conv_kernel: int = 1,
    ) -> None:
        super().__init__()
        self.num_points = num_points
        self.input_size = input_size
        self.conv1 = nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = batch_norm(64)
        self.conv2 = nn.Conv2d(64, 64, 3, stride=2, padding=1, bias=False)
        self.bn2 = batch_norm(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = residual_layer(Bottleneck, 64, 64, 4)  # (N, 256, S/4, S/4)

        previous_widths = [64 * Bottleneck.expansion]
        for number, config in enumerate(stages, start=1):
            block = BLOCKS[config.block]
            widths = [width * block.expansion for width in config.num_channels]
            setattr(self, f"transition{number}", self._make_transition(previous_widths, widths))
            modules = []
            in_channels = widths
            for _ in range(config.num_modules):
                module = HighResolutionModule(block, config.num_blocks, in_channels, config.num_channels)
                modules.append(module)
                in_channels = module.out_channels
            setattr(self, f"stage{number + 1}", nn.Sequential(*modules))
            previous_widths = in_channels
        self.num_stages = len(stages)

        concatenated = sum(previous_widths)
        padding = 1 if final_conv_kernel == 3 else 0
        self.head = nn.Sequential(
            # The official first head conv is always 1x1 (only its padding follows FINAL_CONV_KERNEL).
            nn.Conv2d(concatenated, concatenated, 1, padding=padding),
            batch_norm(concatenated),
            nn.ReLU(inplace=True),
            nn.Conv2d(concatenated, num_points, final_conv_kernel, padding=padding),
        )
        self._initialise()

    @staticmethod
    def _make_transition(previous_widths: list[int], widths: list[int]) -> nn.ModuleList:
        """Adapt the previous stage's branches and spawn the new, coarser branch(es).

        Existing branches get a 3x3 conv only if their width changes (``None`` otherwise); a new
        branch comes from the coarsest previous branch by stride-2 3x3 convs.
        """
        layers: list[nn.Module | None] = []
        for index, width in enumerate(widths):
            if index < len(previous_widths):
                if width == previous_widths[index]:
                    layers.append(None)
                else:
                    layers.append(
                        nn.Sequential(
                            nn.Conv2d(previous_widths[index], width, 3, padding=1, bias=False),
                            batch_norm(width),
                            nn.ReLU(inplace=True),
                        )
                    )
            else:
                steps = []
                in_width = previous_widths[-1]
                for step in range(index + 1 - len(previous_widths)):
                    out_width = width if step == index - len(previous_widths) else in_width
                    steps.append(
                        nn.Sequential(
                            nn.Conv2d(in_width, out_width, 3, stride=2, padding=1, bias=False),
                            batch_norm(out_width),
                            nn.ReLU(inplace=True),
                        )
                    )
                layers.append(nn.Sequential(*steps))
        return nn.ModuleList(layers)

    def _initialise(self) -> None:
        # The official init_weights: N(0, 0.001) convolutions (biases keep PyTorch's default), unit BN.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.001)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) images -> (N, K, S/4, S/4) heatmaps."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        features = [self.layer1(x)]  # [(N, 256, S/4, S/4)]
        for number in range(1, self.num_stages + 1):
            transition: nn.ModuleList = getattr(self, f"transition{number}")
            inputs = []
            for index, layer in enumerate(transition):
                if layer is None:
                    inputs.append(features[index])
                elif index < len(features):
                    inputs.append(layer(features[index]))  # same resolution, new width
                else:
                    inputs.append(layer(features[-1]))  # a new branch grows from the coarsest one
            features = getattr(self, f"stage{number + 1}")(inputs)
        # (N, 18 + 36 + 72 + 144, S/4, S/4) for W18.
        stacked = torch.cat([features[0]] + [upsample_to(branch, features[0]) for branch in features[1:]], dim=1)
        return self.head(stacked)


@register_model(
    "hrnetv2_w18",
    input_size=256,
    heatmap_stride=4,
    description="HRNetV2-W18, official facial landmark layout (loads HR18-WFLW.pth)",
)
def hrnetv2_w18(num_points: int, input_size: int = 256) -> HighResolutionNet:
    """HRNetV2-W18 as configured for WFLW by the official code.

    Args:
        num_points: number of landmarks K (98 for WFLW, 68 for 300W).
        input_size: square input side, a multiple of 32 from 64 to 512 (the coarsest branch is S/32).
    """
    check_input_size("hrnetv2_w18", input_size, multiple=32, minimum=64, maximum=512)
    return HighResolutionNet(num_points, input_size, W18_STAGES)
