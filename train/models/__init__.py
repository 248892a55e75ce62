"""Landmark heatmap models: a registry of builders and the models registered in it.

    >>> from train.models import build_model, list_models, model_info
    >>> model = build_model("mobilenetv3_edge", num_points=98)
    >>> model(torch.zeros(1, 3, 128, 128)).shape
    torch.Size([1, 98, 32, 32])

Every built model has ``input_size``, ``heatmap_stride`` and ``num_points`` attributes, and
``forward(x)`` maps (N, 3, S, S) images to one (N, K, S / stride, S / stride) heatmap tensor.
Models with several supervised stacks also have ``forward_all(x) -> list[Tensor]``.
"""
from __future__ import annotations

from train.models.complexity import count_flops, count_macs, count_parameters
from train.models.registry import ModelInfo, build_model, list_models, model_info, register_model

# Imported for their @register_model side effect.
from train.models import hourglass, hrnet, mobilenet, resnet, tiny  # noqa: E402,F401  isort: skip

__all__ = [
    "ModelInfo",
    "build_model",
    "count_flops",
    "count_macs",
    "count_parameters",
    "list_models",
    "model_info",
    "register_model",
]
