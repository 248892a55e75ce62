"""Static INT8 Q/DQ quantization with ONNX Runtime, ready for TensorRT's explicit quantization.

Symmetric int8 activations (per tensor) and weights (per output channel by default), float biases,
the heatmap decode left in float. The same Q/DQ model runs on ONNX Runtime (CPU), TensorRT and
OpenVINO.

Histogram calibration really uses ``num_bins``: ``quantize_static`` (ONNX Runtime 1.32) builds its
calibrator without passing a bin count, and Entropy's default of 128 bins equals the 128 quantized
bins, which makes it MinMax. So the calibrator is built here with :func:`create_calibrator` and the
bins, fed the calibration array chunk by chunk (bounded memory), and its tensor ranges are handed to
``quantize_static`` through its calibration cache.
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from export.artifact import (
    ExportError,
    bytes_sha256,
    check_onnx,
    check_output_path,
    load_onnx,
    save_artifact,
    tool_versions,
)
from export.calibration import CalibrationError, CalibrationSet, read_calibration_array
from export.evaluation import OnnxRunner
from export.qdq import DECODE_OPS, check_trt_ready, float_tail, qdq_summary
from runtime.card import Card, CardError, read_card
from runtime.errors import UsageError, unknown_name

logger = logging.getLogger(__name__)

METHODS = ("minmax", "entropy", "percentile")
KEEP_FLOAT = ("first_conv", "head")
# Per-channel Q/DQ (DequantizeLinear's axis) needs opset 13; older models are converted first.
MIN_OPSET = 13
NUM_QUANTIZED_BINS = 128
WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass(frozen=True)
class Int8Config:
    """What to quantize and how.

    Attributes:
        model: float ONNX artifact with a card.
        calibration: calibration array (``.npz`` with ``inputs``).
        output: the INT8 ``.onnx`` to write.
        per_channel: weights per output channel (``False``: per tensor).
        method: activation range calibration: ``minmax``, ``entropy`` or ``percentile``.
        num_bins: histogram bins for ``entropy`` and ``percentile``.
        percentile: for ``percentile``, the share of |values| the range covers.
        keep_float: layers to leave unquantized: ``first_conv`` and/or ``head`` (last Conv/Gemm/MatMul).
        batch_size: samples per calibration run (must fit the model's batch dimension).
        chunk_size: samples whose activations are held at once while calibrating.
    """

    model: Path
    calibration: Path
    output: Path
    per_channel: bool = True
    method: str = "minmax"
    num_bins: int = 2048
    percentile: float = 99.99
    keep_float: tuple[str, ...] = field(default_factory=tuple)
    batch_size: int = 1
    chunk_size: int = 32

    def __post_init__(self):
        if self.method not in METHODS:
            raise unknown_name("calibration method", self.method, METHODS)
        unknown = [name for name in self.keep_float if name not in KEEP_FLOAT]
        if unknown:
            raise UsageError(f"--keep-float got {', '.join(unknown)}; valid: {', '.join(KEEP_FLOAT)} (comma-separated)")
        if self.method in ("entropy", "percentile") and self.num_bins < 2 * NUM_QUANTIZED_BINS:
            raise UsageError(
                f"--num-bins {self.num_bins} is too few for {self.method}; use at least "
                f"{2 * NUM_QUANTIZED_BINS} (2048 is usual): with {NUM_QUANTIZED_BINS} bins entropy equals minmax"
            )
        if not 0 < self.percentile <= 100:
            raise UsageError(f"--percentile must be in (0, 100], got {self.percentile}")
        if self.batch_size < 1 or self.chunk_size < self.batch_size:
            raise UsageError(f"need 1 <= --batch-size ({self.batch_size}) <= --chunk-size ({self.chunk_size})")


class ArrayDataReader:
    """ONNX Runtime's ``CalibrationDataReader`` over an in-memory (N, 3, S, S) array, in batches."""

    def __init__(self, inputs: np.ndarray, input_name: str, batch_size: int):
        self._batches = iter(
            [{input_name: np.ascontiguousarray(inputs[i : i + batch_size])} for i in range(0, len(inputs), batch_size)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def int8_from_onnx(config: Int8Config) -> Card:
    """Quantize a float ONNX artifact to a static INT8 Q/DQ artifact with its card.

    Returns:
        The INT8 artifact's card.

    Raises:
        ExportError, CardError, CalibrationError, UsageError: one line, nothing written.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    output = check_output_path(config.output, config.model)
    started = time.perf_counter()
    model = load_onnx(config.model)
    card = read_card(config.model)
    if card.precision != "fp32":
        raise CardError(f"{config.model}: card says precision {card.precision}; quantize the fp32 artifact instead")
    calibration = read_calibration_array(config.calibration)
    _check_calibration(model, card, calibration, config)
    excluded = nodes_kept_float(model, config.keep_float)

    with tempfile.TemporaryDirectory(prefix="edgemark-int8-") as temporary:
        float_path = Path(temporary) / "float.onnx"
        onnx.save(prepared_for_quantization(model), str(float_path))
        cache = Path(temporary) / "ranges.json"
        quantized_path = Path(temporary) / "int8.onnx"
        try:
            calibrate_ranges(float_path, calibration, card.input_name, config, cache)
            with _quiet():
                quantize_static(
                    str(float_path),
                    str(quantized_path),
                    calibration_data_reader=None,
                    quant_format=QuantFormat.QDQ,
                    per_channel=config.per_channel,
                    activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    nodes_to_exclude=excluded,
                    calibrate_method=_method_enum(config.method),
                    calibration_cache_path=str(cache),
                    extra_options={
                        "ActivationSymmetric": True,
                        "WeightSymmetric": True,
                        # TensorRT rejects DequantizeLinear on int32; it folds a float bias into the conv.
                        "QuantizeBias": False,
                    },
                )
        except Exception as error:  # ORT raises many types on models it cannot calibrate or quantize
            text = str(error).strip()
            first = (text.splitlines()[0] if text else type(error).__name__)[:300]
            raise ExportError(
                f"{config.model}: ONNX Runtime could not quantize it ({first}); nothing written"
            ) from error
        quantized = onnx.load(str(quantized_path))
    float_tensors = float_tail(quantized)
    check_onnx(quantized, f"{output} (quantized)")
    problems = check_trt_ready(quantized, per_channel=config.per_channel)
    if problems:
        raise ExportError(f"the quantized model is not TensorRT-ready ({len(problems)} problems, first: {problems[0]})")
    _check_runs(quantized, calibration.inputs[: config.batch_size])

    quantization = {
        "format": "QDQ",
        "activations": "int8 symmetric per-tensor",
        "weights": f"int8 symmetric {'per-channel' if config.per_channel else 'per-tensor'}",
        "bias": "float",
        "float_tail": float_tensors,
        "keep_float": list(config.keep_float),
        "nodes_kept_float": excluded,
        **qdq_summary(quantized),
    }
    card = card.with_changes(
        precision="int8",
        calibration={
            **calibration.summary(),
            "method": config.method,
            "num_bins": config.num_bins if config.method != "minmax" else None,
            "percentile": config.percentile if config.method == "percentile" else None,
            "per_channel": config.per_channel,
            "symmetric": True,
            "batch_size": config.batch_size,
        },
        tools={**card.tools, **tool_versions("onnx", "onnxruntime")},
        extra={
            **card.extra,
            "opset": _default_opset(quantized),
            "quantization": quantization,
            "parent": str(config.model),
            "parent_sha256": bytes_sha256(Path(config.model).read_bytes()),
        },
    )
    save_artifact(quantized, card, output)
    logger.info(
        "quantized %s -> %s in %.1f s (%s, %s, %d calibration samples)",
        config.model,
        output,
        time.perf_counter() - started,
        config.method,
        "per-channel" if config.per_channel else "per-tensor",
        len(calibration),
    )
    return card


def calibrate_ranges(
    model_path: Path, calibration: CalibrationSet, input_name: str, config: Int8Config, cache: Path
) -> None:
    """Collect activation ranges chunk by chunk with the configured method and bins; save them to ``cache``."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    options = {
        "symmetric": True,
        "num_bins": config.num_bins,
        "num_quantized_bins": NUM_QUANTIZED_BINS,
        "percentile": config.percentile,
    }
    started = time.perf_counter()
    with _quiet():
        calibrator = create_calibrator(
            model_path,
            op_types_to_calibrate=sorted(set(QLinearOpsRegistry) | set(QDQRegistry)),
            augmented_model_path=str(model_path.with_name("augmented.onnx")),
            calibrate_method=_method_enum(config.method),
            extra_options=options,
        )
    try:
        from tqdm import tqdm

        chunks = tqdm(
            list(calibration.chunks(config.chunk_size)),
            desc=f"calibrating ({config.method})",
            unit="chunk",
            disable=len(calibration) <= config.chunk_size,
            leave=False,
        )
        for chunk in chunks:
            with _quiet():
                calibrator.collect_data(ArrayDataReader(chunk, input_name, config.batch_size))
        with _quiet():
            ranges = calibrator.compute_data()
    finally:
        calibrator.infer_session = None
    save_tensors_data(ranges, cache)
    logger.info(
        "calibrated %d tensors on %d samples with %s%s in %.1f s",
        len(ranges.data),
        len(calibration),
        config.method,
        f" ({config.num_bins} bins)" if config.method != "minmax" else "",
        time.perf_counter() - started,
    )


def prepared_for_quantization(model: onnx.ModelProto) -> onnx.ModelProto:
    """The float model at opset >= 13 (per-channel Q/DQ), without the card (it is re-embedded later)."""
    opset = _default_opset(model)
    if opset < MIN_OPSET:
        from onnx import version_converter

        logger.info("converting opset %d -> %d for per-channel Q/DQ", opset, MIN_OPSET)
        try:
            model = version_converter.convert_version(model, MIN_OPSET)
        except Exception as error:  # noqa: BLE001
            raise ExportError(
                f"cannot convert the model from opset {opset} to {MIN_OPSET} for Q/DQ ({error})"
            ) from None
        check_onnx(model, f"opset-{MIN_OPSET} conversion")
    return model


def nodes_kept_float(model: onnx.ModelProto, keep_float: tuple[str, ...]) -> list[str]:
    """Names of nodes to leave unquantized: decode ops always, first conv / head on request."""
    nodes = list(model.graph.node)
    unnamed = [n for n in nodes if not n.name and (n.op_type in DECODE_OPS or n.op_type in WEIGHT_OPS)]
    if unnamed:
        raise ExportError(
            "some Conv/Gemm/decode nodes have no name, so they cannot be excluded from quantization; "
            "re-export the model (torch and onnx-simplifier name every node)"
        )
    excluded = [n.name for n in nodes if n.op_type in DECODE_OPS]
    if "first_conv" in keep_float:
        first = next((n for n in nodes if n.op_type == "Conv"), None)
        if first is None:
            raise UsageError("--keep-float first_conv: the model has no Conv node")
        excluded.append(first.name)
    if "head" in keep_float:
        last = next((n for n in reversed(nodes) if n.op_type in WEIGHT_OPS), None)
        if last is None:
            raise UsageError("--keep-float head: the model has no Conv/Gemm/MatMul node")
        if last.name not in excluded:
            excluded.append(last.name)
    return excluded


def _check_calibration(model: onnx.ModelProto, card: Card, calibration: CalibrationSet, config: Int8Config) -> None:
    size = card.input_size
    if calibration.inputs.shape[1:] != (3, size, size):
        raise CalibrationError(
            f"{config.calibration}: samples are {calibration.inputs.shape[1:]} but {config.model} takes "
            f"(3, {size}, {size}); "
            "build the calibration array with this model's card"
        )
    if len(calibration) < config.batch_size:
        raise CalibrationError(
            f"{config.calibration}: {len(calibration)} samples is fewer than --batch-size {config.batch_size}; "
            "use more samples or a smaller batch"
        )
    initializers = {tensor.name for tensor in model.graph.initializer}
    image_input = next(v for v in model.graph.input if v.name not in initializers)
    first = image_input.type.tensor_type.shape.dim[0]
    if first.HasField("dim_value") and config.batch_size != first.dim_value:
        raise UsageError(f"{config.model}: batch is fixed at {first.dim_value}; use --batch-size {first.dim_value}")


def _check_runs(model: onnx.ModelProto, inputs: np.ndarray) -> None:
    output = OnnxRunner(model.SerializeToString()).run(inputs, batch_size=len(inputs))
    if not np.all(np.isfinite(output)):
        raise ExportError("the quantized model produces NaN or infinity on calibration samples; nothing written")


def _method_enum(method: str):
    from onnxruntime.quantization import CalibrationMethod

    return {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[method]


def _default_opset(model: onnx.ModelProto) -> int:
    return next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 0)


@contextlib.contextmanager
def _quiet():
    """ONNX Runtime's calibrators print progress and warn about pre-processing; route that to debug logs."""
    quant_logger = logging.getLogger()
    buffer = io.StringIO()
    previous = quant_logger.level
    quant_logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        quant_logger.setLevel(previous)
        if buffer.getvalue().strip():
            logger.debug("onnxruntime.quantization: %s", buffer.getvalue().strip().replace("\n", " | "))
