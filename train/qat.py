"""Quantization-aware fine-tuning (QAT): fake-quantized convolutions that export as the PTQ path's Q/DQ.

``python -m train --qat --init float.pt ...`` fine-tunes a trained checkpoint with every convolution
computing on int8-rounded inputs and weights, in the same encoding the post-training path writes
(:mod:`export.ort_quantize`): symmetric int8 with zero point 0, weights per output channel (axis 0
of a Conv weight, axis 1 of a ConvTranspose weight as ONNX lays them out), activations per tensor,
biases float, the heatmap decode outside the graph. ``python -m export.onnx last.pt`` then writes
that Q/DQ model with an int8 card.

Built on ``torch.fake_quantize_per_tensor_affine`` / ``torch.fake_quantize_per_channel_affine`` in
two small modules rather than ``torch.ao.quantization``: torch 2.13 marks the eager ``prepare_qat`` /
``convert`` API deprecated ("will be removed in 2.10", migrating to torchao, not installed here),
and its QAT modules export to ONNX only through ``convert`` to quantized CPU kernels. The two ops
are core ATen ops with a straight-through gradient, run on CPU and CUDA, and the TorchScript ONNX
exporter writes them as QuantizeLinear -> DequantizeLinear (with ``axis`` for per channel).

Where the Q/DQ go is NVIDIA's placement for TensorRT (pytorch-quantization's ``QuantConv2d``): the
input and the weight of each convolution. Everything else (Add, Mul, HardSwish, Resize) runs in
float between them.

How ranges are set:

- weights: per output channel, ``max |w| / 127`` of the current (BatchNorm-folded) weights at every
  step, so no weight is ever clipped;
- activations: per tensor, first calibrated on a few training batches through the float model
  (MinMax, or the mean over batches of a percentile of ``|x|``), then tracked during fine-tuning by an
  exponential moving average of each batch's ``max |x|`` (``--qat-ema``; 0 keeps the calibrated ranges).

BatchNorm is folded into the convolution it follows while fine-tuning (Krishnamoorthi 2018, the
scheme of ``torch.ao``'s ``ConvBn2d``): the weight is scaled by ``gamma / sqrt(running_var + eps)``
before it is quantized, which is the weight the exported (folded) graph quantizes. For the first
``--qat-freeze-bn-steps`` steps the output is rescaled and BatchNorm normalises with the batch's
statistics and updates its running ones; after that the statistics are frozen and the layer computes
exactly what the exported Conv does.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from runtime.errors import UsageError, unknown_name

logger = logging.getLogger(__name__)

# Symmetric signed int8, zero point 0: what TensorRT's explicit quantization takes.
QMIN, QMAX = -128, 127
# Layer names shared with export.ort's --keep-float (same meaning: first convolution run, last one).
KEEP_FLOAT = ("first_conv", "head", "depthwise")
RANGE_METHODS = ("minmax", "percentile")
CONVOLUTIONS = (nn.Conv2d, nn.ConvTranspose2d)
# Torch functions that only read a tensor's metadata: not a use of its values.
METADATA_FUNCTIONS = frozenset(
    {"dim", "size", "numel", "__get__", "is_floating_point", "is_contiguous", "stride", "data_ptr", "element_size"}
)
# Scale floor: a channel of all-zero weights or an always-zero activation still gets a valid scale.
MIN_AMAX = 1e-8


@dataclass(frozen=True)
class QatSettings:
    """How a model is fake-quantized and its ranges set; saved in the checkpoint's ``qat`` record.

    Attributes:
        keep_float: convolutions left unquantized: ``first_conv``, ``head`` (the last one run) and/or
            ``depthwise`` (every convolution with one input channel per group), as ``export.ort`` names them.
        calibration_batches: training batches that set the initial activation ranges.
        range_method: ``minmax`` or ``percentile`` for those initial ranges.
        percentile: for ``percentile``, the share of ``|x|`` the range covers.
        ema: weight of each batch's ``max |x|`` in the moving average of activation ranges (0: fixed).
        freeze_bn_steps: training steps after which BatchNorm statistics are frozen.
    """

    keep_float: tuple[str, ...] = ()
    calibration_batches: int = 4
    range_method: str = "minmax"
    percentile: float = 99.99
    ema: float = 0.01
    freeze_bn_steps: int = 200

    def __post_init__(self):
        unknown = [name for name in self.keep_float if name not in KEEP_FLOAT]
        if unknown:
            raise UsageError(
                f"--qat-keep-float got {', '.join(unknown)}; valid: {', '.join(KEEP_FLOAT)} (comma-separated)"
            )
        if self.range_method not in RANGE_METHODS:
            raise unknown_name("QAT range method", self.range_method, RANGE_METHODS)
        if self.calibration_batches < 1:
            raise UsageError(f"--qat-calibration-batches must be >= 1, got {self.calibration_batches}")
        if not 0 < self.percentile <= 100:
            raise UsageError(f"--qat-percentile must be in (0, 100], got {self.percentile}")
        if not 0 <= self.ema <= 1:
            raise UsageError(f"--qat-ema must be in [0, 1], got {self.ema}")
        if self.freeze_bn_steps < 0:
            raise UsageError(f"--qat-freeze-bn-steps must be >= 0, got {self.freeze_bn_steps}")

    @classmethod
    def from_config(cls, config) -> "QatSettings":
        """The settings of a :class:`train.config.TrainConfig` (its ``qat_*`` fields)."""
        keep_float = tuple(name.strip() for name in config.qat_keep_float.split(",") if name.strip())
        return cls(
            keep_float=keep_float,
            calibration_batches=config.qat_calibration_batches,
            range_method=config.qat_range,
            percentile=config.qat_percentile,
            ema=config.qat_ema,
            freeze_bn_steps=config.qat_freeze_bn_steps,
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "QatSettings":
        return cls(**{**values, "keep_float": tuple(values.get("keep_float", ()))})

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["keep_float"] = list(self.keep_float)
        return values


# --------------------------------------------------------------------------------------------------
# fake quantization


def quantize_weight(weight: torch.Tensor, axis: int) -> torch.Tensor:
    """Per-channel symmetric int8 fake quantization of ``weight`` on ``axis`` (scale = max |w| / 127)."""
    other = [dim for dim in range(weight.dim()) if dim != axis]
    scale = weight.detach().abs().amax(dim=other).clamp(min=MIN_AMAX) / QMAX
    zero_point = torch.zeros(scale.shape, dtype=torch.int32, device=weight.device)
    return torch.fake_quantize_per_channel_affine(weight, scale.float(), zero_point, axis, QMIN, QMAX)


class ActivationQuantizer(nn.Module):
    """Per-tensor symmetric int8 fake quantization with a calibrated, then moving-average, range.

    Modes: ``observing`` (calibration: records ranges and passes ``x`` through unchanged) and
    quantizing (training: updates the range by EMA, then fake-quantizes; eval: fake-quantizes).
    """

    def __init__(self, settings: QatSettings):
        super().__init__()
        self.ema = settings.ema
        self.range_method = settings.range_method
        self.percentile = settings.percentile
        self.register_buffer("amax", torch.tensor(1.0))  # |x| range: scale = amax / 127
        self.observing = False
        self._observed: list[float] = []

    def scale(self) -> torch.Tensor:
        return self.amax.clamp(min=MIN_AMAX) / QMAX

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            self._observed.append(self._batch_range(x.detach()))
            return x
        x = x.float()  # fake quantization runs in float32 (also under CUDA autocast)
        if self.training and self.ema > 0:
            with torch.no_grad():  # the same statistic as the calibration, so the EMA does not drift from it
                self.amax.mul_(1 - self.ema).add_(self.ema * self._batch_range(x.detach()))
        zero_point = torch.zeros((), dtype=torch.int32, device=x.device)
        return torch.fake_quantize_per_tensor_affine(x, self.scale(), zero_point, QMIN, QMAX)

    def _batch_range(self, x: torch.Tensor) -> float:
        magnitudes = x.abs().flatten().float()
        if self.range_method == "minmax" or self.percentile >= 100:
            return float(magnitudes.max())
        rank = max(1, math.ceil(self.percentile / 100 * magnitudes.numel()))
        return float(magnitudes.kthvalue(rank).values)

    def finish_observing(self) -> None:
        """Set the range from what was observed: the max over batches (minmax) or their mean (percentile)."""
        if self._observed:
            value = max(self._observed) if self.range_method == "minmax" else sum(self._observed) / len(self._observed)
            self.amax.fill_(max(value, MIN_AMAX))
        self._observed = []
        self.observing = False


class QuantConv(nn.Module):
    """A Conv2d / ConvTranspose2d (with the BatchNorm that follows it folded in) on fake-int8 input and weight.

    The state dict keeps the original ``conv`` and ``bn`` parameters and buffers, plus the input
    range (``input_quantizer.amax``) and the steps seen (for the BatchNorm freeze, exact on resume).
    """

    def __init__(self, conv: nn.Module, bn: nn.BatchNorm2d | None, settings: QatSettings):
        super().__init__()
        self.conv = conv
        self.bn = bn
        self.input_quantizer = ActivationQuantizer(settings)
        self.freeze_bn_steps = settings.freeze_bn_steps
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        # Output channels of a ConvTranspose weight (C_in, C_out / groups, kH, kW) are on axis 1.
        self.channel_axis = 1 if isinstance(conv, nn.ConvTranspose2d) else 0

    def _channel_shape(self) -> list[int]:
        shape = [1] * self.conv.weight.dim()
        shape[self.channel_axis] = -1
        return shape

    def bn_factor(self) -> torch.Tensor:
        """(C_out,) ``gamma / sqrt(running_var + eps)``: what BatchNorm multiplies each channel by."""
        return self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)

    def folded(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Weight and bias with the BatchNorm's running statistics folded in (the exported Conv's)."""
        weight, bias = self.conv.weight, self.conv.bias
        if self.bn is None:
            return weight, bias
        factor = self.bn_factor()
        weight = weight * factor.reshape(self._channel_shape())
        conv_bias = bias if bias is not None else torch.zeros_like(self.bn.running_mean)
        return weight, self.bn.bias + (conv_bias - self.bn.running_mean) * factor

    def _convolve(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        conv = self.conv
        if isinstance(conv, nn.ConvTranspose2d):
            return F.conv_transpose2d(
                x, weight, bias, conv.stride, conv.padding, conv.output_padding, conv.groups, conv.dilation
            )
        return conv._conv_forward(x, weight, bias)

    @property
    def bn_live(self) -> bool:
        """Whether BatchNorm still normalises with batch statistics (training, before the freeze)."""
        return self.bn is not None and self.training and int(self.steps) < self.freeze_bn_steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_quantizer.observing:  # calibration: the float layer, recording its input range
            self.input_quantizer(x)
            y = self.conv(x)
            return self.bn(y) if self.bn is not None else y
        x = self.input_quantizer(x)
        live = self.bn_live
        if self.training:
            self.steps += 1
        weight, bias = self.folded()
        weight = quantize_weight(weight, self.channel_axis)
        if not live:
            return self._convolve(x, weight, bias)
        # Undo the fold's scaling so BatchNorm sees the convolution's own output, normalises it with
        # the batch's statistics and updates its running ones (torch.ao ConvBn2d's approximation).
        factor = self.bn_factor()
        y = self._convolve(x, weight, None) / factor.reshape(1, -1, 1, 1)
        if self.conv.bias is not None:
            y = y + self.conv.bias.reshape(1, -1, 1, 1)
        return self.bn(y)


class FrozenQuantConv(nn.Module):
    """The export form of a :class:`QuantConv`: folded weight, scales and bias as constants.

    Exported by the TorchScript exporter as ``QuantizeLinear -> DequantizeLinear`` on the input and on
    the constant weight (``axis`` = output channels), then Conv / ConvTranspose with a float bias.
    """

    def __init__(self, layer: QuantConv):
        super().__init__()
        conv = layer.conv
        self.transposed = isinstance(conv, nn.ConvTranspose2d)
        self.channel_axis = layer.channel_axis
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        self.output_padding = getattr(conv, "output_padding", 0)
        self.padding_mode = getattr(conv, "padding_mode", "zeros")
        if self.padding_mode != "zeros":
            raise UsageError(
                f"QAT export supports zero-padded convolutions only, got padding_mode '{self.padding_mode}'"
            )
        with torch.no_grad():
            weight, bias = layer.folded()
            weight = weight.detach().clone()
            other = [dim for dim in range(weight.dim()) if dim != self.channel_axis]
            self.register_buffer("weight", weight)
            self.register_buffer("weight_scale", (weight.abs().amax(dim=other).clamp(min=MIN_AMAX) / QMAX).float())
            self.register_buffer("bias", None if bias is None else bias.detach().clone())
            self.register_buffer("input_scale", layer.input_quantizer.scale().detach().clone().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        zero = torch.zeros((), dtype=torch.int32, device=x.device)
        x = torch.fake_quantize_per_tensor_affine(x, self.input_scale, zero, QMIN, QMAX)
        channel_zeros = torch.zeros(self.weight_scale.shape, dtype=torch.int32, device=x.device)
        weight = torch.fake_quantize_per_channel_affine(
            self.weight, self.weight_scale, channel_zeros, self.channel_axis, QMIN, QMAX
        )
        if self.transposed:
            return F.conv_transpose2d(
                x, weight, self.bias, self.stride, self.padding, self.output_padding, self.groups, self.dilation
            )
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


# --------------------------------------------------------------------------------------------------
# preparing a model


@dataclass(frozen=True)
class ConvolutionCall:
    """One convolution met when running the model once, in call order."""

    name: str
    batch_norm: str | None  # the BatchNorm that reads only this convolution's output, if any


def convolution_calls(model: nn.Module, input_size: int) -> list[ConvolutionCall]:
    """Run the model once on zeros and list its convolutions in call order, each with the BatchNorm it feeds.

    A BatchNorm is paired with a convolution when that BatchNorm module is the only thing that reads
    the convolution's output: modules are seen through hooks and every torch function (``torch.cat``,
    ``+``, ...) through a :class:`~torch.overrides.TorchFunctionMode`, so a pre-activation block
    that also concatenates a convolution's raw output is not folded. Models that call
    ``self.bn1(self.conv1(x))`` pair as well as ``nn.Sequential(conv, bn, relu)`` ones. A
    convolution or BatchNorm run twice is not folded.
    """
    names = {module: name for name, module in model.named_modules()}
    order: list[str] = []
    produced: dict[int, tuple[str, torch.Tensor]] = {}  # id(output) -> (conv name, output kept alive)
    batch_norm_readers: dict[str, list[str]] = {}  # conv name -> BatchNorm modules reading its output
    function_readers: dict[str, list[str]] = {}  # conv name -> torch functions reading its output
    calls: dict[str, int] = {}

    def source_of(value) -> str | None:
        entry = produced.get(id(value)) if isinstance(value, torch.Tensor) else None
        return entry[0] if entry is not None and entry[1] is value else None

    def after_convolution(module, inputs, output):
        name = names[module]
        calls[name] = calls.get(name, 0) + 1
        order.append(name)
        produced[id(output)] = (name, output)

    def before_batch_norm(module, inputs):
        name = names[module]
        calls[name] = calls.get(name, 0) + 1
        source = source_of(inputs[0]) if inputs else None
        if source is not None:
            batch_norm_readers.setdefault(source, []).append(name)

    class ReadersMode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            function = getattr(func, "__name__", str(func))
            if function not in METADATA_FUNCTIONS:
                for value in _tensors((args, kwargs)):
                    source = source_of(value)
                    if source is not None:
                        function_readers.setdefault(source, []).append(function)
            return func(*args, **kwargs)

    handles = [m.register_forward_hook(after_convolution) for m in model.modules() if isinstance(m, CONVOLUTIONS)]
    batch_norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    handles += [m.register_forward_pre_hook(before_batch_norm) for m in batch_norms]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), ReadersMode():
            device = next(model.parameters()).device
            example = torch.zeros(1, 3, input_size, input_size, device=device)
            forward_all = getattr(model, "forward_all", None)
            forward_all(example) if forward_all is not None else model(example)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    result = []
    for name in dict.fromkeys(order):
        batch_norm = None
        readers = batch_norm_readers.get(name, [])
        only_read_by_batch_norm = function_readers.get(name, []) == ["batch_norm"]
        if calls[name] == 1 and len(readers) == 1 and calls[readers[0]] == 1 and only_read_by_batch_norm:
            if _foldable(model.get_submodule(name), model.get_submodule(readers[0])):
                batch_norm = readers[0]
        result.append(ConvolutionCall(name, batch_norm))
    return result


def _tensors(values) -> list[torch.Tensor]:
    """Every tensor in nested tuples, lists and dicts (a torch function's arguments)."""
    if isinstance(values, torch.Tensor):
        return [values]
    if isinstance(values, dict):
        values = list(values.values())
    if isinstance(values, (list, tuple)):
        return [tensor for value in values for tensor in _tensors(value)]
    return []


def _foldable(conv: nn.Module, bn: nn.BatchNorm2d) -> bool:
    if not bn.affine or not bn.track_running_stats:
        return False
    if isinstance(conv, nn.ConvTranspose2d):
        return conv.groups == 1 and conv.out_channels == bn.num_features
    return conv.out_channels == bn.num_features


def prepare_qat(model: nn.Module, settings: QatSettings, input_size: int) -> dict[str, Any]:
    """Replace the model's convolutions (in place) by :class:`QuantConv`, folding their BatchNorms.

    Args:
        model: a float train/ model (any device).
        settings: what to keep float and how ranges move.
        input_size: side of the square input (to run the model once and find call order).

    Returns:
        A record of what was done: quantized and float convolutions, folded BatchNorms.
    """
    calls = convolution_calls(model, input_size)
    example = torch.randn(2, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
    example = example.to(next(model.parameters()).device)
    reference = _float_output(model, example)
    if not calls:
        raise UsageError("--qat: the model has no Conv2d/ConvTranspose2d layer to quantize")
    kept = set()
    if "first_conv" in settings.keep_float:
        kept.add(calls[0].name)
    if "head" in settings.keep_float:
        kept.add(calls[-1].name)
    if "depthwise" in settings.keep_float:
        depthwise = {call.name for call in calls if _depthwise(model.get_submodule(call.name))}
        if not depthwise:
            raise UsageError("--qat-keep-float depthwise: the model has no depthwise convolution")
        kept |= depthwise
    quantized, folded = [], []
    for call in calls:
        if call.name in kept:
            continue
        conv = model.get_submodule(call.name)
        bn = model.get_submodule(call.batch_norm) if call.batch_norm else None
        _replace(model, call.name, QuantConv(conv, bn, settings))
        if call.batch_norm:
            _replace(model, call.batch_norm, nn.Identity())
            folded.append(call.batch_norm)
        quantized.append(call.name)
    # Folding assumed the BatchNorm is the only reader of its convolution's output; a functional use
    # (``out = bn(conv(x)) + conv(x)``) would now read the normalised tensor. The float path must agree.
    difference = float((_float_output(model, example) - reference).abs().max().detach())
    if difference > 1e-4 * max(1.0, float(reference.abs().max().detach())):
        raise UsageError(
            f"--qat: folding BatchNorm into the convolutions changed the float model's output by {difference:.2e}; "
            "this model reads a convolution's output besides its BatchNorm, which train/qat.py does not support"
        )
    logger.info(
        "QAT: %d convolutions fake-quantized (%d BatchNorms folded), kept float: %s",
        len(quantized), len(folded), ", ".join(sorted(kept)) or "none",
    )
    return {"quantized": quantized, "kept_float": sorted(kept), "folded_batch_norms": folded}


@torch.no_grad()
def _depthwise(conv: nn.Module) -> bool:
    """A convolution with more than one group and one input channel per group."""
    return isinstance(conv, nn.Conv2d) and conv.groups > 1 and conv.in_channels == conv.groups


def _float_output(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The model's float output in eval mode (QuantConv layers run their float path, recording nothing)."""
    layers = quant_layers(model)
    was_training = model.training
    model.eval()
    for layer in layers:
        layer.input_quantizer.observing = True
    try:
        output = model(images)
    finally:
        for layer in layers:
            layer.input_quantizer.observing = False
            layer.input_quantizer._observed = []
        model.train(was_training)
    return (output[0] if isinstance(output, (list, tuple)) else output).float()


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def quant_layers(model: nn.Module) -> list[QuantConv]:
    return [module for module in model.modules() if isinstance(module, QuantConv)]


@torch.no_grad()
def calibrate_ranges(model: nn.Module, batches, device: torch.device) -> int:
    """Set every activation range from ``batches`` of images run through the float model (eval mode).

    Args:
        model: a model prepared by :func:`prepare_qat`.
        batches: iterable of dataset batches (dicts with ``image``), already cut to the wanted count.
        device: where the model is.

    Returns:
        The number of images seen.
    """
    layers = quant_layers(model)
    was_training = model.training
    model.eval()
    for layer in layers:
        layer.input_quantizer.observing = True
    seen = 0
    try:
        for batch in batches:
            images = batch["image"].to(device)
            model(images)
            seen += len(images)
    finally:
        for layer in layers:
            layer.input_quantizer.finish_observing()
        model.train(was_training)
    return seen


def frozen_for_export(model: nn.Module) -> nn.Module:
    """Replace every :class:`QuantConv` (in place) by its :class:`FrozenQuantConv`; returns the model in eval mode."""
    for name, module in list(model.named_modules()):
        if isinstance(module, QuantConv):
            module.eval()
            _replace(model, name, FrozenQuantConv(module))
    return model.eval()


# --------------------------------------------------------------------------------------------------
# checkpoints


def qat_model_from_state(state: dict[str, Any]) -> nn.Module:
    """Rebuild a QAT checkpoint's model, fake-quantized and frozen for export (eval mode)."""
    from train.models import build_model

    model = build_model(state["model_name"], state["num_points"], input_size=state["input_size"])
    prepare_qat(model, QatSettings.from_dict(state["qat"]["settings"]), state["input_size"])
    model.load_state_dict(state["model"])
    return frozen_for_export(model)


def qat_record(config, settings: QatSettings, init_state: dict[str, Any], prepared: dict[str, Any]) -> dict[str, Any]:
    """What a QAT checkpoint says about itself; the exported card's calibration record is made from it."""
    from runtime.card import file_sha256

    return {
        "settings": settings.to_dict(),
        "init_checkpoint": str(config.init),
        "init_sha256": file_sha256(config.init),
        "init_epoch": init_state.get("epoch"),
        "fine_tuning": {
            "epochs": config.epochs,
            "lr": config.lr,
            "optimizer": config.optimizer,
            "schedule": config.schedule,
            "batch_size": config.batch_size,
            "augment": config.augment,
            "train_data": config.train_data,
            "seed": config.seed,
        },
        **prepared,
    }


def calibration_record(qat: dict[str, Any]) -> dict[str, Any]:
    """The card's ``calibration`` entry for an artifact exported from a QAT checkpoint."""
    settings = qat["settings"]
    return {
        "method": "qat",
        "init_checkpoint": qat["init_checkpoint"],
        "init_sha256": qat["init_sha256"],
        "fine_tuning": qat["fine_tuning"],
        "range_init": {
            "method": settings["range_method"],
            "percentile": settings["percentile"] if settings["range_method"] == "percentile" else None,
            "batches": settings["calibration_batches"],
        },
        "range_ema": settings["ema"],
        "freeze_bn_steps": settings["freeze_bn_steps"],
        "keep_float": settings["keep_float"],
        "per_channel": True,
        "symmetric": True,
    }


def load_init(model: nn.Module, path: str | Path, model_name: str, num_points: int, input_size: int) -> dict[str, Any]:
    """Load a float checkpoint's weights into ``model`` (checked to be the same model); returns the checkpoint."""
    from train.checkpoint import CheckpointError, load_checkpoint

    state = load_checkpoint(path)
    if state.get("qat"):
        raise CheckpointError(
            f"{path}: --init takes a float checkpoint and this one is already QAT; continue it with --resume"
        )
    found = (state["model_name"], state["num_points"], state["input_size"])
    if found != (model_name, num_points, input_size):
        raise CheckpointError(
            f"{path}: --init checkpoint is {found[0]} with {found[1]} points at {found[2]} px, this run is "
            f"{model_name} with {num_points} at {input_size}; pass --model {found[0]} --input-size {found[2]} "
            f"and the matching --layout"
        )
    model.load_state_dict(state["model"])
    return state
