"""Model name -> builder registry (timm-style ``@register_model``), with each model's metadata.

A builder is a function ``builder(num_points, **options) -> nn.Module``. The module it returns
carries ``input_size``, ``heatmap_stride`` and ``num_points`` so that export and the card never
guess them from a name.
"""
from __future__ import annotations

import dataclasses
import inspect
import logging
from typing import Callable, TypeVar

from torch import nn

from runtime.errors import UsageError, unknown_name

logger = logging.getLogger(__name__)

Builder = TypeVar("Builder", bound=Callable[..., nn.Module])


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model before it is built.

    Attributes:
        name: registry name, e.g. ``"hrnetv2_w18"``.
        input_size: default side of the square input in pixels.
        heatmap_stride: input pixels per heatmap pixel; heatmaps are ``input_size / stride`` square.
        description: one line for tables and ``--help``.
    """

    name: str
    input_size: int
    heatmap_stride: int
    description: str

    @property
    def heatmap_size(self) -> int:
        """Side of the square heatmap at the default input size."""
        return self.input_size // self.heatmap_stride


_INFOS: dict[str, ModelInfo] = {}
_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_model(
    name: str, *, input_size: int, heatmap_stride: int, description: str
) -> Callable[[Builder], Builder]:
    """Register a builder under ``name`` with its default input size and heatmap stride.

    Args:
        name: registry name; must be new.
        input_size: default square input side in pixels.
        heatmap_stride: input pixels per heatmap pixel.
        description: one line shown in tables.

    Returns:
        A decorator that records the builder and returns it unchanged.
    """
    if input_size % heatmap_stride:
        raise ValueError(f"{name}: input_size {input_size} is not a multiple of heatmap_stride {heatmap_stride}")

    def decorator(builder: Builder) -> Builder:
        if name in _BUILDERS:
            first = _BUILDERS[name].__module__
            raise ValueError(f"model '{name}' is registered twice ({first} and {builder.__module__})")
        _INFOS[name] = ModelInfo(name, input_size, heatmap_stride, description)
        _BUILDERS[name] = builder
        return builder

    return decorator


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_BUILDERS)


def model_info(name: str) -> ModelInfo:
    """Metadata of a registered model.

    Raises:
        UsageError: ``name`` is not registered (the message suggests the closest name).
    """
    if name not in _INFOS:
        raise unknown_name("model", name, list_models())
    return _INFOS[name]


def build_model(name: str, num_points: int, **options) -> nn.Module:
    """Build a registered model with freshly initialised weights.

    Args:
        name: registry name (see :func:`list_models`).
        num_points: number of landmarks K, i.e. heatmap channels.
        **options: model-specific keyword options, e.g. ``input_size`` for ``mobilenetv3_edge``.

    Returns:
        The module; ``forward(x)`` maps (N, 3, S, S) to (N, K, S / stride, S / stride) heatmaps.

    Raises:
        UsageError: unknown name, a bad ``num_points`` or an option the model does not take.
    """
    info = model_info(name)
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 1:
        raise UsageError(f"num_points must be a positive integer; got {num_points!r}.")
    builder = _BUILDERS[name]
    accepted = [parameter for parameter in inspect.signature(builder).parameters if parameter != "num_points"]
    for option in options:
        if option not in accepted:
            valid = ", ".join(accepted) if accepted else "none"
            raise UsageError(f"Model '{name}' has no option '{option}'. Valid options: {valid}.")
    model = builder(num_points, **options)
    for attribute in ("input_size", "heatmap_stride", "num_points"):
        if not hasattr(model, attribute):
            raise TypeError(f"builder of '{name}' returned a module without the `{attribute}` attribute")
    if model.heatmap_stride != info.heatmap_stride:
        raise TypeError(f"builder of '{name}' made stride {model.heatmap_stride}, registered {info.heatmap_stride}")
    return model


def check_input_size(model_name: str, input_size: int, multiple: int, minimum: int, maximum: int) -> int:
    """Validate a model's ``input_size`` option up front.

    Args:
        model_name: for the message.
        input_size: the requested square input side.
        multiple: the side must be a multiple of this (the network's total downsampling).
        minimum: smallest side accepted.
        maximum: largest side accepted.

    Returns:
        ``input_size`` unchanged.

    Raises:
        UsageError: the size is not an integer, is out of range or is not a multiple.
    """
    legal = isinstance(input_size, int) and not isinstance(input_size, bool)
    if not legal or not minimum <= input_size <= maximum or input_size % multiple:
        raise UsageError(
            f"{model_name} input_size must be a multiple of {multiple} from {minimum} to {maximum}; "
            f"got {input_size!r}. Nearest legal: {_nearest_multiple(input_size, multiple, minimum, maximum)}."
        )
    return input_size


def _nearest_multiple(value: object, multiple: int, minimum: int, maximum: int) -> int:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return minimum
    return int(min(max(round(number / multiple) * multiple, minimum), maximum))
