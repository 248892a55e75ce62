"""INT8 encodings of one range table (:mod:`export.ranges`): the Q/DQ graph each engine runs fastest.

- ``s8s8``: signed int8 activations and weights, zero point 0 everywhere. TensorRT's explicit
  quantization accepts only this (strongly typed networks, :func:`export.qdq.check_trt_ready`).
- ``u8s8``: the same activation grid stored unsigned: zero point 128, the same scale, so every
  activation value quantizes to exactly the level it gets in ``s8s8`` shifted by 128. Weights stay
  signed symmetric. ONNX Runtime's x86 integer kernels (VNNI, AMX) are written for unsigned
  activations times signed weights; with signed activations ONNX Runtime falls back to slower
  kernels. Measured (``python -m runtime.bench``, PFLD-GhostOne, batch 1, one interleaved run on a
  2-vCPU Xeon with AVX-512 VNNI and AMX): s8s8 5.7 ms, u8s8 2.4 ms, FP32 2.3 ms; the DESIGN notes
  record the same on an AVX-512 VNNI EPYC for resnet18_deconv (24.8-30.4 against 18.1-18.5 ms).

Both are made by ONNX Runtime's ``quantize_static`` from the table (its calibration cache holds the
symmetric bounds), then ``u8s8`` by re-typing the activation zero points of the ``s8s8`` graph, so
the two files differ only there. OpenVINO reads either file (``python -m export.openvino``).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from export.artifact import ExportError
from export.ranges import RangeTable

ENCODINGS = ("s8s8", "u8s8")
# Which engine each encoding is for, for --help and the card.
ENCODING_TARGETS = {"s8s8": "TensorRT (and any engine)", "u8s8": "ONNX Runtime on x86 CPUs"}
# int8 -> uint8 zero point of the same grid.
UNSIGNED_OFFSET = 128


def qdq_from_ranges(
    float_model: onnx.ModelProto, table: RangeTable, per_channel: bool, nodes_to_exclude: list[str]
) -> onnx.ModelProto:
    """The ``s8s8`` Q/DQ model of ``float_model`` with activation scales from ``table``.

    Args:
        float_model: the float model (opset >= 13) the table was measured on.
        table: its range table.
        per_channel: weights per output channel (``False``: per tensor); always symmetric int8.
        nodes_to_exclude: nodes ONNX Runtime must leave in float (decode ops, layers kept float).

    Raises:
        ExportError: ONNX Runtime could not quantize the model.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    data = {
        name: TensorData(lowest=np.float32(-table.bound(name)), highest=np.float32(table.bound(name)))
        for name in table.ranges
    }
    with tempfile.TemporaryDirectory(prefix="edgemark-qdq-") as temporary:
        float_path, cache, quantized_path = (Path(temporary) / name for name in ("float.onnx", "ranges.json", "q.onnx"))
        onnx.save(float_model, str(float_path))
        save_tensors_data(TensorsData(CalibrationMethod.MinMax, data), cache)
        try:
            quantize_static(
                str(float_path),
                str(quantized_path),
                calibration_data_reader=None,
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=list(nodes_to_exclude),
                calibration_cache_path=str(cache),
                extra_options={
                    "ActivationSymmetric": True,
                    "WeightSymmetric": True,
                    # TensorRT rejects DequantizeLinear on int32; it folds a float bias into the conv.
                    "QuantizeBias": False,
                },
            )
        except Exception as error:  # ORT raises many types on models it cannot quantize
            text = str(error).strip()
            first = (text.splitlines()[0] if text else type(error).__name__)[:300]
            raise ExportError(f"ONNX Runtime could not quantize the model ({first}); nothing written") from error
        return onnx.load(str(quantized_path))


def weight_tensors(model: onnx.ModelProto) -> set[str]:
    """Initializers read by a DequantizeLinear: quantized weights, whose encoding never changes."""
    constants = {tensor.name for tensor in model.graph.initializer}
    return {node.input[0] for node in model.graph.node if node.op_type == "DequantizeLinear" and node.input[0] in constants}


def _activation_zero_points(model: onnx.ModelProto) -> list[str]:
    graph = model.graph
    weights = weight_tensors(model)
    activation = {
        node.input[2]
        for node in graph.node
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2 and node.input[0] not in weights
    }
    weight = {node.input[2] for node in graph.node if node.op_type == "DequantizeLinear" and node.input[0] in weights}
    shared = activation & weight
    if shared:
        raise ExportError(f"zero point {sorted(shared)[0]} is shared by a weight and an activation; cannot re-encode")
    return sorted(activation)


def _reencoded(model: onnx.ModelProto, source: np.dtype, zero_point: int, target: np.dtype) -> onnx.ModelProto:
    """A copy of ``model`` whose activation zero points (all ``zero_point`` of ``source``) become
    ``target``'s zero point of the same grid; scales and weights unchanged."""
    encoded = onnx.ModelProto()
    encoded.CopyFrom(model)
    initializers = {tensor.name: tensor for tensor in encoded.graph.initializer}
    new_zero_point = 0 if target == np.int8 else UNSIGNED_OFFSET
    for name in _activation_zero_points(encoded):
        tensor = initializers.get(name)
        values = numpy_helper.to_array(tensor) if tensor is not None else None
        if values is None or values.dtype != source or np.any(values != zero_point):
            raise ExportError(
                f"activation zero point '{name}' is not a constant {np.dtype(source).name} {zero_point}: "
                f"not a Q/DQ model of the {'s8s8' if source == np.int8 else 'u8s8'} encoding"
            )
        tensor.CopyFrom(numpy_helper.from_array(np.full(values.shape, new_zero_point, dtype=target), name))
    return encoded


def u8s8_from_s8s8(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same quantization with unsigned activations: zero point 0 -> 128 (uint8), scales unchanged.

    Raises:
        ExportError: ``model`` is not an ``s8s8`` graph (an activation zero point that is not int8 0).
    """
    return _reencoded(model, np.int8, 0, np.uint8)


def s8s8_from_u8s8(model: onnx.ModelProto) -> onnx.ModelProto:
    """The inverse of :func:`u8s8_from_s8s8`: TensorRT's signed form of an ONNX Runtime ``u8s8`` file.

    Raises:
        ExportError: ``model`` is not a ``u8s8`` graph (an activation zero point that is not uint8 128).
    """
    return _reencoded(model, np.uint8, UNSIGNED_OFFSET, np.int8)


def encoding_of(card_extra: dict) -> str:
    """The encoding a card records (files made before encodings were recorded are ``s8s8``)."""
    return str(card_extra.get("quantization", {}).get("encoding", "s8s8"))


def encode(model: onnx.ModelProto, encoding: str) -> onnx.ModelProto:
    """``model`` (``s8s8``) in ``encoding``."""
    return u8s8_from_s8s8(model) if encoding == "u8s8" else model
