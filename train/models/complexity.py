"""Parameter and FLOP counts, and the model complexity table that ``python -m train.models`` prints.

FLOPs here are ``2 x`` multiply-accumulates (MACs) of convolution, transposed convolution and
linear layers, counted with forward hooks on one image. Normalisation, activations, pooling,
resizing and additions are left out: they are a few percent and every tool counts them differently.
Papers that quote "FLOPs" for HRNet or ResNet heads usually mean MACs; compare those with
:func:`count_macs` (HRNetV2-W18 at 256x256 here: 4.7 G multiply-accumulates; its README says "4.3 GFLOPs").
"""
from __future__ import annotations

import dataclasses
import logging
import time

import torch
from torch import nn

from train.models.registry import build_model, list_models, model_info

logger = logging.getLogger(__name__)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (BatchNorm running statistics are buffers and not counted).

    Args:
        model: any module.
        trainable_only: count only parameters with ``requires_grad``.
    """
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_size: int) -> int:
    """Multiply-accumulates of one forward pass on a single ``(1, 3, S, S)`` image.

    Counts ``nn.Conv2d``, ``nn.ConvTranspose2d`` and ``nn.Linear``; bias additions are not counted.
    Runs the model in eval mode (restoring its mode afterwards) under ``torch.no_grad``. A model on
    the ``meta`` device is counted from shapes alone, without computing anything.

    Args:
        model: a module whose ``forward`` takes (N, 3, S, S).
        input_size: the square input side S.
    """
    total = 0

    def convolution_hook(module: nn.Conv2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        kernel_height, kernel_width = module.kernel_size
        # Every output element takes (C_in / groups) * kh * kw products.
        total += output[0].numel() * (module.in_channels // module.groups) * kernel_height * kernel_width

    def transposed_hook(module: nn.ConvTranspose2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        kernel_height, kernel_width = module.kernel_size
        # Every input element scatters into (C_out / groups) * kh * kw outputs.
        total += inputs[0][0].numel() * (module.out_channels // module.groups) * kernel_height * kernel_width

    def linear_hook(module: nn.Linear, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        total += output[0].numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.ConvTranspose2d):
            handles.append(module.register_forward_hook(transposed_hook))
        elif isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(convolution_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    was_training = model.training
    device = next(model.parameters(), torch.empty(0)).device
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, input_size, input_size, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total


def count_flops(model: nn.Module, input_size: int) -> float:
    """GFLOPs of one forward pass on one image, counted as ``2 x MACs / 1e9`` (see :func:`count_macs`)."""
    return 2 * count_macs(model, input_size) / 1e9


@dataclasses.dataclass(frozen=True)
class ModelComplexity:
    """One row of the complexity table.

    Attributes:
        model: registry name.
        input_size: square input side used for the count.
        heatmap_size: square heatmap side at that input.
        num_points: heatmap channels K.
        parameters: parameter count.
        macs: multiply-accumulates for one image.
        gflops: ``2 * macs / 1e9``.
    """

    model: str
    input_size: int
    heatmap_size: int
    num_points: int
    parameters: int
    macs: int
    gflops: float


def complexity_table(num_points: int = 98, models: list[str] | None = None) -> list[ModelComplexity]:
    """Parameters and FLOPs of registered models at their default input sizes.

    Models are built on the ``meta`` device, so nothing is initialised or computed.

    Args:
        num_points: heatmap channels K.
        models: registry names; all registered models when None.
    """
    rows = []
    for name in models if models is not None else list_models():
        info = model_info(name)
        started = time.perf_counter()
        with torch.device("meta"):
            model = build_model(name, num_points)
        macs = count_macs(model, model.input_size)
        rows.append(
            ModelComplexity(
                model=name,
                input_size=model.input_size,
                heatmap_size=model.input_size // model.heatmap_stride,
                num_points=num_points,
                parameters=count_parameters(model),
                macs=macs,
                gflops=2 * macs / 1e9,
            )
        )
        logger.debug("counted %s (%s) in %.2f s", name, info.description, time.perf_counter() - started)
    return rows


def markdown_table(rows: list[ModelComplexity]) -> str:
    """The rows as a Markdown table: model, input, heatmap, params (M), GFLOPs."""
    lines = [
        "| model | input | heatmap | params (M) | GFLOPs |",
        "|:--|--:|--:|--:|--:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.model} | {row.input_size}x{row.input_size} | {row.heatmap_size}x{row.heatmap_size} "
            f"| {row.parameters / 1e6:.2f} | {row.gflops:.2f} |"
        )
    return "\n".join(lines)
