"""Reconstruction losses of the style translator: VGG19 perceptual (with the user's weights) or L1 + MS-SSIM.

The paper's loss compares VGG19 features (ImageNet weights) of the output and the input with L1,
plus a small Gram-matrix (texture) term. ImageNet VGG19 weights cannot be downloaded by this
project, and torchvision is not a dependency, so the VGG19 feature stack is built here and loads a
state dict the user supplies (``--perceptual-weights FILE``: torchvision's ``vgg19`` layout, keys
``features.<i>.weight``/``bias`` or ``<i>.weight``; classifier keys are ignored).

Without such a file the fallback is the image-restoration mix of Zhao et al. (IEEE TCI 2017):
``0.16 * L1 + 0.84 * (1 - MS-SSIM)``, where MS-SSIM here is the mean SSIM (11-tap Gaussian window,
sigma 1.5) over a pyramid of up to five 2x average-pooled scales. It rewards structure and local
contrast rather than VGG's texture statistics, so expect smoother outputs; which loss was used is
saved in the checkpoint (``perceptual``) and printed by ``fit`` and ``generate``.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from runtime.card import file_sha256
from runtime.errors import UsageError

logger = logging.getLogger(__name__)

# torchvision's vgg19 "features": channels per conv, "M" a 2x2 max pool.
VGG19_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
# Indices (in that Sequential) of the ReLUs whose outputs are compared: relu1_2, relu2_2, relu3_2, relu4_2, relu5_2.
VGG19_FEATURES = (3, 8, 13, 22, 31)
# Gram matrices of these (texture) layers: relu3_2, relu4_2, relu5_2.
VGG19_GRAM = (13, 22, 31)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FALLBACK_SSIM_SHARE = 0.84  # Zhao et al.'s mix of MS-SSIM and L1
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
SSIM_SCALES = 5


def vgg19_features(last: int = max(VGG19_FEATURES)) -> nn.Sequential:
    """torchvision's VGG19 ``features`` stack (indices kept) up to and including layer ``last``."""
    layers: list[nn.Module] = []
    channels = 3
    for entry in VGG19_LAYERS:
        if entry == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, entry, 3, padding=1), nn.ReLU(inplace=False)]
            channels = entry
    return nn.Sequential(*layers[: last + 1])


def load_vgg19(path: str | Path) -> nn.Sequential:
    """The VGG19 feature stack with weights from ``path`` (a state dict saved by ``torch.save``)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--perceptual-weights {path}: no such file; pass a VGG19 state dict (.pth) or leave it out")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a pickle with objects, or not a torch file at all
        raise UsageError(
            f"--perceptual-weights {path}: not a plain VGG19 state dict ({type(error).__name__}); save one with "
            "torch.save(model.state_dict(), FILE)"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    features = vgg19_features()
    wanted = features.state_dict().keys()
    picked = {}
    for key, value in (state.items() if isinstance(state, dict) else []):
        name = key.removeprefix("features.")
        if name in wanted:
            picked[name] = value
    missing = sorted(set(wanted) - set(picked), key=lambda k: int(k.split(".")[0]))
    if missing:
        raise UsageError(
            f"--perceptual-weights {path}: lacks {len(missing)} VGG19 feature tensors (first: features.{missing[0]}); "
            "expected torchvision's vgg19 state dict layout"
        )
    try:
        features.load_state_dict(picked)
    except RuntimeError as error:
        raise UsageError(f"--perceptual-weights {path}: tensors do not fit VGG19 ({str(error).splitlines()[0]})") from None
    features.eval().requires_grad_(False)
    return features


def gram(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, C) Gram matrices normalised by C * H * W."""
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


class VggLoss(nn.Module):
    """L1 of pixels and of VGG19 features (relu1_2 ... relu5_2) + ``gram_weight`` x L1 of Gram matrices."""

    def __init__(self, features: nn.Sequential, gram_weight: float):
        super().__init__()
        self.features = features
        self.gram_weight = gram_weight
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def _taps(self, images: torch.Tensor) -> dict[int, torch.Tensor]:
        hidden = ((images + 1) / 2 - self.mean) / self.std  # RGB [-1, 1] -> ImageNet input
        taps = {}
        for index, layer in enumerate(self.features):
            hidden = layer(hidden)
            if index in VGG19_FEATURES:
                taps[index] = hidden
        return taps

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = F.l1_loss(output.float(), target.float())
        mine, theirs = self._taps(output), self._taps(target)
        for index in VGG19_FEATURES:
            loss = loss + F.l1_loss(mine[index].float(), theirs[index].float())
        for index in VGG19_GRAM:
            loss = loss + self.gram_weight * F.l1_loss(gram(mine[index].float()), gram(theirs[index].float()))
        return loss


def _gaussian_window(channels: int, device, dtype) -> torch.Tensor:
    x = torch.arange(SSIM_WINDOW, dtype=torch.float64) - (SSIM_WINDOW - 1) / 2
    taps = torch.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    taps = (taps / taps.sum()).to(device=device, dtype=dtype)
    return (taps[:, None] * taps[None, :]).expand(channels, 1, SSIM_WINDOW, SSIM_WINDOW).contiguous()


def ssim(a: torch.Tensor, b: torch.Tensor, value_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM of two (N, C, H, W) batches of non-negative values (Gaussian window, reflect padding,
    constants of Wang et al. for ``value_range``)."""
    channels = a.shape[1]
    window = _gaussian_window(channels, a.device, a.dtype)
    pad = SSIM_WINDOW // 2

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (pad,) * 4, mode="reflect"), window, groups=channels)

    c1, c2 = (0.01 * value_range) ** 2, (0.03 * value_range) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    covariance = blur(a * b) - mu_a * mu_b
    numerator = (2 * mu_a * mu_b + c1) * (2 * covariance + c2)
    denominator = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return (numerator / denominator).mean()


def multiscale_ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean of :func:`ssim` over up to five 2x average-pooled scales (each at least the window's size).

    Inputs are RGB in [-1, 1]; SSIM is taken on [0, 1]. On signed values an inverted channel scores
    high (its luminance and structure terms are both negative, their product positive), and a fit
    found that optimum: red inverted, SSIM content. Non-negative values make inversion cost.
    """
    a, b = (a + 1) / 2, (b + 1) / 2
    values = []
    for scale in range(SSIM_SCALES):
        if scale:
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
        if min(a.shape[-2:]) <= SSIM_WINDOW // 2:  # reflect padding needs pad < side
            break
        values.append(ssim(a, b, value_range=1.0))
    return torch.stack(values).mean()


class SsimL1Loss(nn.Module):
    """The fallback: ``0.16 * L1 + 0.84 * (1 - MS-SSIM)`` on RGB in [-1, 1]."""

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        output, target = output.float(), target.float()
        l1 = F.l1_loss(output, target)
        return (1 - FALLBACK_SSIM_SHARE) * l1 + FALLBACK_SSIM_SHARE * (1 - multiscale_ssim(output, target))


def reconstruction_loss(weights: str | Path | None, gram_weight: float) -> tuple[nn.Module, dict[str, Any]]:
    """The loss module and the record saved in checkpoints (``kind``, and the weights file with its sha256)."""
    if weights:
        loss = VggLoss(load_vgg19(weights), gram_weight)
        record = {"kind": "vgg19", "weights": str(weights), "weights_sha256": file_sha256(weights), "gram_weight": gram_weight}
    else:
        loss = SsimL1Loss()
        record = {"kind": "l1_msssim", "weights": "", "weights_sha256": "", "gram_weight": 0.0}
    return loss, record


def describe(record: dict[str, Any]) -> str:
    """One line naming the reconstruction loss of a checkpoint record."""
    if record.get("kind") == "vgg19":
        return (
            f"VGG19 perceptual (L1 of pixels and relu1_2..relu5_2 + {record['gram_weight']} x Gram L1), weights "
            f"{record['weights']} (sha256 {record['weights_sha256'][:12]})"
        )
    return "fallback L1 + MS-SSIM (0.16 L1 + 0.84 (1 - MS-SSIM)): no --perceptual-weights given"
