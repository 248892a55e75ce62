"""The conditional variational U-Net of the style translator (after Qian et al., ICCV 2019; Esser et al., CVPR 2018).

Three branches, all built from weight-normalised residual blocks with ELU and dropout:

- **structure U-Net encoder**: the landmark map (one Gaussian channel per point, sigma 1 input pixel)
  down to 4x4, keeping its features at every scale as skips;
- **style encoder**: the image alone down to 4x4; 1x1 heads give the posterior means at the two
  coarsest scales (8x8 and 4x4);
- **decoder**: from the 4x4 structure features up to full size, each scale fed the structure skip of
  that scale; at 4x4 and 8x8 a 1x1 head predicts the prior mean from structure alone, and a latent
  (a posterior sample in training, a chosen style's posterior mean in transfer) enters through a
  residual block.

The posterior and the prior are Gaussians with unit variance (as in the variational U-Net): the KL
between them is half the squared distance of their means, and a posterior sample is its mean plus
standard normal noise. Layer sizes come from :class:`TranslatorShape`, saved in every checkpoint.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

from runtime.errors import UsageError

# The posterior lives at the two coarsest scales of the U-Net, whatever the image size.
COARSEST = 4
LATENT_SIZES = (8, 4)


@dataclass(frozen=True)
class TranslatorShape:
    """Layer sizes of a translator.

    Attributes:
        image_size: side of the square face crop (a power of two, >= 16): 256 in the paper.
        num_points: landmarks per face (channels of the structure map).
        width: channels at full resolution; doubled at each halving up to ``max_width``.
        max_width: channel cap of the coarser scales.
        blocks: residual blocks per scale in each branch.
        dropout: dropout probability inside every residual block.
        latent_channels: channels of each latent (posterior and prior means); 0: as many as the features
            of its scale (the variational U-Net's choice).
        latent_levels: scales that carry a latent, coarsest first: 2 (8x8 and 4x4, the paper) or 1 (4x4 only).
    """

    image_size: int = 256
    num_points: int = 98
    width: int = 32
    max_width: int = 256
    blocks: int = 2
    dropout: float = 0.1
    latent_channels: int = 0
    latent_levels: int = len(LATENT_SIZES)

    def __post_init__(self):
        size = self.image_size
        if size < 2 * COARSEST or size & (size - 1):
            raise UsageError(f"--image-size must be a power of two of at least {2 * COARSEST}, got {size}")
        if self.num_points < 1:
            raise UsageError(f"a translator needs at least one landmark, got {self.num_points}")
        if not 1 <= self.width <= self.max_width:
            raise UsageError(f"--width must be in [1, --max-width], got {self.width} and {self.max_width}")
        if self.blocks < 1:
            raise UsageError(f"--blocks must be at least 1, got {self.blocks}")
        if not 0.0 <= self.dropout < 1.0:
            raise UsageError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.latent_channels < 0:
            raise UsageError(f"--latent-channels must be >= 0 (0: the feature width), got {self.latent_channels}")
        if not 1 <= self.latent_levels <= len(LATENT_SIZES):
            raise UsageError(f"--latent-levels must be 1 (4x4) or 2 (8x8 and 4x4), got {self.latent_levels}")

    @property
    def scales(self) -> int:
        """Number of resolutions from ``image_size`` down to 4x4."""
        return int(math.log2(self.image_size // COARSEST)) + 1

    def channels(self, scale: int) -> int:
        """Channels at scale index ``scale`` (0: full resolution)."""
        return min(self.width * 2**scale, self.max_width)

    def latent_width(self, scale: int) -> int:
        """Channels of the latent at scale index ``scale``."""
        return self.latent_channels or self.channels(scale)

    def to_dict(self) -> dict:
        return asdict(self)


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Module:
    return weight_norm(nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2))


class ResidualBlock(nn.Module):
    """``x + conv3x3(dropout(elu(x) + nin(elu(skip))))``: a skip (structure or latent) enters by a 1x1 conv."""

    def __init__(self, channels: int, skip_channels: int = 0, dropout: float = 0.1):
        super().__init__()
        self.skip = _conv(skip_channels, channels, 1) if skip_channels else None
        self.dropout = nn.Dropout(dropout)
        self.conv = _conv(channels, channels, 3)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        hidden = F.elu(x)
        if self.skip is not None:
            hidden = hidden + self.skip(F.elu(skip))
        return x + self.conv(self.dropout(hidden))


class Upsample(nn.Module):
    """Sub-pixel upsampling: a 3x3 conv to 4x the output channels, then a 2x pixel shuffle."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = _conv(in_channels, 4 * out_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(F.elu(x)), 2)


class Encoder(nn.Module):
    """Residual blocks at every scale, strided convs between; returns the features of every scale."""

    def __init__(self, shape: TranslatorShape, in_channels: int):
        super().__init__()
        self.stem = _conv(in_channels, shape.channels(0), 1)
        self.stages = nn.ModuleList(
            nn.ModuleList(ResidualBlock(shape.channels(s), dropout=shape.dropout) for _ in range(shape.blocks))
            for s in range(shape.scales)
        )
        self.downs = nn.ModuleList(
            _conv(shape.channels(s), shape.channels(s + 1), 3, stride=2) for s in range(shape.scales - 1)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        hidden = self.stem(x)
        for scale, stage in enumerate(self.stages):
            for block in stage:
                hidden = block(hidden)
            features.append(hidden)  # (N, C_s, S / 2^s, S / 2^s)
            if scale < len(self.downs):
                hidden = self.downs[scale](F.elu(hidden))
        return features


class StyleTranslator(nn.Module):
    """Image (style) + landmark map (structure) -> image; see the module docstring.

    Images are (N, 3, S, S) RGB in [-1, 1]; landmark maps (N, K, S, S) Gaussians in [0, 1].
    """

    def __init__(self, shape: TranslatorShape):
        super().__init__()
        self.shape = shape
        scales = shape.scales
        self.latent_scales = tuple(scales - 1 - i for i in range(shape.latent_levels))[::-1]  # (8x8, 4x4) indices
        self.structure = Encoder(shape, shape.num_points)
        self.style = Encoder(shape, 3)
        heads = {str(s): _conv(shape.channels(s), shape.latent_width(s), 1) for s in self.latent_scales}
        self.posterior = nn.ModuleDict(heads)
        self.prior = nn.ModuleDict(
            {str(s): _conv(shape.channels(s), shape.latent_width(s), 1) for s in self.latent_scales}
        )
        self.decoder = nn.ModuleList(
            nn.ModuleList(
                ResidualBlock(shape.channels(s), shape.channels(s), shape.dropout) for _ in range(shape.blocks)
            )
            for s in range(scales)
        )
        self.latent_in = nn.ModuleDict(
            {str(s): ResidualBlock(shape.channels(s), shape.latent_width(s), shape.dropout) for s in self.latent_scales}
        )
        self.ups = nn.ModuleList(Upsample(shape.channels(s + 1), shape.channels(s)) for s in range(scales - 1))
        self.head = _conv(shape.channels(0), 3, 3)

    def encode_style(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Posterior means ``{scale index: (N, latent channels, 8 or 4, same)}`` from the images alone."""
        features = self.style(images)
        return {key: head(F.elu(features[int(key)])) for key, head in self.posterior.items()}

    def encode_structure(self, maps: torch.Tensor) -> list[torch.Tensor]:
        """Structure features of every scale (the decoder's skips)."""
        return self.structure(maps)

    def decode(
        self, structure: list[torch.Tensor], latents: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Image from structure skips and latents; returns it with the prior means it predicted."""
        priors = {}
        hidden = structure[-1]
        for scale in reversed(range(self.shape.scales)):
            for block in self.decoder[scale]:
                hidden = block(hidden, structure[scale])
            key = str(scale)
            if key in self.latent_in:
                priors[key] = self.prior[key](F.elu(hidden))
                hidden = self.latent_in[key](hidden, latents[key])
            if scale > 0:
                hidden = self.ups[scale - 1](hidden)
        return torch.tanh(self.head(F.elu(hidden))), priors

    def forward(self, images: torch.Tensor, maps: torch.Tensor, sample: bool = True):
        """Self-reconstruction (training): returns (image, posterior means, prior means).

        ``sample``: draw the latent from the posterior (mean + unit noise) rather than use the mean.
        """
        posteriors = self.encode_style(images)
        latents = {k: m + torch.randn_like(m) for k, m in posteriors.items()} if sample else posteriors
        output, priors = self.decode(self.encode_structure(maps), latents)
        return output, posteriors, priors

    @torch.no_grad()
    def transfer(self, style_images: torch.Tensor, structure_maps: torch.Tensor, chunk: int = 0) -> torch.Tensor:
        """Every style with every structure: (S, 3, H, W) x (J, K, H, W) -> (S, J, 3, H, W).

        Output ``[i, j]`` has the style (posterior mean) of ``style_images[i]`` and the landmarks of
        ``structure_maps[j]``. Each branch encodes its inputs once; the S * J decodes run as one batch
        (or in batches of ``chunk`` when it is positive, to bound memory).
        """
        styles = self.encode_style(style_images)  # {scale: (S, C, h, w)}
        structure = self.encode_structure(structure_maps)  # [(J, C_s, h_s, w_s)]
        count_s, count_j = style_images.shape[0], structure_maps.shape[0]
        pairs = count_s * count_j
        step = chunk if chunk > 0 else pairs
        outputs = []
        for start in range(0, pairs, step):
            index = torch.arange(start, min(start + step, pairs), device=style_images.device)
            style_index, structure_index = index // count_j, index % count_j
            latents = {k: v[style_index] for k, v in styles.items()}
            skips = [feature[structure_index] for feature in structure]
            outputs.append(self.decode(skips, latents)[0])
        return torch.cat(outputs).reshape(count_s, count_j, *outputs[0].shape[1:])


def kl_unit_gaussians(posteriors: dict[str, torch.Tensor], priors: dict[str, torch.Tensor]) -> torch.Tensor:
    """KL(N(mu_q, I) || N(mu_p, I)) = |mu_q - mu_p|^2 / 2, averaged over elements and summed over scales."""
    return sum(0.5 * (posteriors[k].float() - priors[k].float()).pow(2).mean() for k in posteriors)
