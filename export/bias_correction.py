"""Empirical bias correction of a Q/DQ model: remove the mean output shift that quantization causes.

Rounding weights and activations to int8 is not mean-free per output channel: a layer's int8 output
``y_int8`` differs from the float output ``y_float`` by an error whose expectation ``E[y_int8 - y_float]``
is a constant per output channel (Nagel et al., "Data-Free Quantization Through Weight Equalization
and Bias Correction", ICCV 2019; NNCF's ``FastBiasCorrection`` and ``BiasCorrection``). Subtracting it
from the layer's bias removes it. The expectation is measured here, on calibration samples, by running
the float model and the Q/DQ model with each corrected layer's output exposed (``E[y]`` per channel
over samples and positions), rather than computed analytically from ``(W_int8 - W) E[x]``: the
measurement includes what the quantized input activations shift too (their clipping in particular)
and needs no care for padding, strides or groups.

Biases stay float in the Q/DQ graph (TensorRT folds them into the convolution; ONNX Runtime reads them
as they are), so the correction changes float initializers only: the Q/DQ structure and every scale
stay as they were, and the s8s8 / u8s8 encodings are unaffected. A layer without a bias gets one.

Correction is sequential by default: a layer's shift is measured with every layer upstream of it
already corrected, so it corrects what remains. Layers that do not feed one another are corrected
together (one run per dependency level, each run pruned to the level's outputs), which gives exactly
the sequential result. ``all_at_once`` measures every shift on the uncorrected model in one run;
it over-corrects where an upstream correction already removed part of a downstream shift (PFLD:
relative shift 0.008 -> 0.032, against 0.0003 sequentially).

Matching every layer's mean is not matching the model's output. Measured (64 calibration samples,
label-free NME against the float model): on PFLD-GhostOne the output error on the calibration
samples fell (relative RMS 0.019 -> 0.016); on OpenSeeFace's heatmap network (hard-swish
activations, squeeze-excitation gates) it rose fourfold (0.076 -> 0.291) and the label-free NME on
the calibration samples themselves went from 4.9 to 63.5 %, though every layer's mean shift fell
(0.18 -> 0.0004). A mean fixed before a saturating activation or a multiplicative gate is not the
mean after it. So the output error before and after is measured on the same samples, and a
correction that makes it worse is not applied (the record says so).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from export.artifact import ExportError

logger = logging.getLogger(__name__)

MODES = ("sequential", "all_at_once")
CORRECTED_OPS = ("Conv", "Gemm")
# Samples per ONNX Runtime run while measuring (memory: every exposed output of a batch is held).
BATCH_SIZE = 32
# Name of the zero bias given to a layer that has none (or a copy of a bias another node shares).
ADDED_BIAS_SUFFIX = "_bias_corrected"


@dataclass(frozen=True)
class BiasLayer:
    """A layer whose bias the correction sets.

    Attributes:
        node: the Conv/Gemm node's name.
        output: its output tensor in the Q/DQ model.
        reference: the same tensor in the float model (a graph output's name where ONNX Runtime
            renamed the layer's output to put a Q/DQ pair between it and the graph output).
        bias: its float bias initializer in the corrected model.
        gain: how much the output moves per unit of bias (Gemm's ``beta``; 1 for Conv).
        level: how many corrected layers lie on the longest path before it (0: none); layers of one
            level never feed one another.
        added: the layer had no bias of its own (none, or one shared with another node).
    """

    node: str
    output: str
    reference: str
    bias: str
    gain: float
    level: int
    added: bool = False


def bias_corrected(
    qdq_model: onnx.ModelProto,
    float_model: onnx.ModelProto,
    inputs: np.ndarray,
    mode: str = "sequential",
    batch_size: int = BATCH_SIZE,
) -> tuple[onnx.ModelProto, dict]:
    """``qdq_model`` with each quantized Conv/Gemm's float bias corrected by its measured mean output shift.

    Args:
        qdq_model: a Q/DQ model (float biases) made from ``float_model``; not modified.
        float_model: the float model: every corrected layer's output has the same name in both
            (or, for a graph output, the name of the Q/DQ pair's output that ONNX Runtime put after it).
        inputs: (N, 3, S, S) calibration samples, preprocessed as the runtime does.
        mode: ``sequential`` (each layer measured with the layers before it corrected) or ``all_at_once``.
        batch_size: samples per ONNX Runtime run.

    Returns:
        The corrected model and a JSON-ready record: layers corrected and skipped (with why), samples,
        runs, and the mean |shift| relative to the float output's RMS before and after, on ``inputs``.

    Raises:
        ExportError: an unknown mode, no inputs, or a model ONNX Runtime cannot run.
    """
    if mode not in MODES:
        raise ExportError(f"bias correction mode '{mode}' is unknown; valid: {', '.join(MODES)}")
    if not len(inputs):
        raise ExportError("bias correction needs at least one calibration sample")
    started = time.perf_counter()
    model, layers, skipped = with_own_biases(qdq_model, float_model)
    if not layers:
        return model, {"mode": mode, "layers": 0, "skipped": skipped}
    outputs = [layer.output for layer in layers]
    reference = {
        layer.output: value
        for layer, value in zip(
            layers, channel_statistics(float_model, [layer.reference for layer in layers], inputs, batch_size).values()
        )
    }
    biases = {tensor.name: tensor for tensor in model.graph.initializer}

    def correct(group: list[BiasLayer], measured: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        for layer in group:
            shift = measured[layer.output][0] - reference[layer.output][0]
            tensor = biases[layer.bias]
            value = numpy_helper.to_array(tensor).astype(np.float64) - shift / layer.gain
            tensor.CopyFrom(numpy_helper.from_array(value.astype(np.float32), layer.bias))

    def measure(names: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return channel_statistics(_fast_encoding(model), names, inputs, batch_size)

    before = measure(outputs)
    levels = sorted({layer.level for layer in layers}) if mode == "sequential" else []
    if mode == "all_at_once":
        correct(layers, before)
    else:
        from tqdm import tqdm

        for level in tqdm(levels, desc="bias correction", unit="level", disable=len(levels) < 8, leave=False):
            group = [layer for layer in layers if layer.level == level]
            correct(group, before if level == levels[0] else measure([layer.output for layer in group]))
    after = measure(outputs)
    # Matching each layer's mean is not matching what the model outputs: on OpenSeeFace (hard-swish,
    # squeeze-excitation) it took the output further from the float model's, so that is checked.
    reference_output = _output(float_model, inputs, batch_size)
    error_before = _relative_error(_output(_fast_encoding(qdq_model), inputs, batch_size), reference_output)
    error_after = _relative_error(_output(_fast_encoding(model), inputs, batch_size), reference_output)
    applied = error_after <= error_before
    record = {
        "method": "empirical: per output channel, E[y_int8] - E[y_float] on calibration samples "
        "subtracted from the float bias",
        "mode": mode,
        "samples": int(len(inputs)),
        "layers": len(layers),
        "biases_added": sorted(layer.node for layer in layers if layer.added),
        "skipped": skipped,
        "runs": 2 + max(len(levels) - 1, 0),  # before, one per later level, after (plus the float model's)
        "relative_shift": "mean over channels of |E[y_int8] - E[y_float]| / RMS(y_float), mean over layers",
        "relative_shift_before": _relative_shift(before, reference, outputs),
        "relative_shift_after": _relative_shift(after, reference, outputs),
        "output_error": "RMS(output_int8 - output_float) / RMS(output_float) over the samples",
        "output_error_before": error_before,
        "output_error_after": error_after,
        "applied": applied,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if not applied:
        record["reason"] = "the corrected model's output was further from the float model's; kept uncorrected"
        logger.warning(
            "bias correction made the output error worse on the calibration samples (%.4f -> %.4f); "
            "the model is left uncorrected",
            error_before,
            error_after,
        )
        return _copy(qdq_model), record
    logger.info(
        "bias correction (%s) of %d layers on %d samples: relative mean shift %.4f -> %.4f in %.1f s",
        mode,
        len(layers),
        len(inputs),
        record["relative_shift_before"],
        record["relative_shift_after"],
        record["seconds"],
    )
    return model, record


def with_own_biases(
    qdq_model: onnx.ModelProto, float_model: onnx.ModelProto
) -> tuple[onnx.ModelProto, list[BiasLayer], list[dict]]:
    """A copy of ``qdq_model`` where every correctable layer reads a float bias of its own.

    Correctable: a Conv or Gemm whose weight is read through a DequantizeLinear of an initializer
    (a quantized weight) and whose output the float model has too. A missing bias becomes a zero
    initializer named ``<node>_bias_corrected``; one shared with another reader is copied under that name.

    Returns:
        The copy, its layers in graph order, and the layers skipped with the reason.
    """
    model = onnx.ModelProto()
    model.CopyFrom(qdq_model)
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    float_tensors = {output for node in float_model.graph.node for output in node.output}
    readers_of: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers_of.setdefault(name, []).append(node)

    def float_name(tensor: str) -> str | None:
        """``tensor``'s name in the float model, also through an activation Q -> DQ pair after it."""
        if tensor in float_tensors:
            return tensor
        users = readers_of.get(tensor, [])
        if len(users) == 1 and users[0].op_type == "QuantizeLinear":
            dequantizers = readers_of.get(users[0].output[0], [])
            if len(dequantizers) == 1 and dequantizers[0].op_type == "DequantizeLinear":
                name = dequantizers[0].output[0]
                return name if name in float_tensors else None
        return None

    found: list[tuple[onnx.NodeProto, str, str, float, bool]] = []
    skipped: list[dict] = []
    for node in graph.node:
        if node.op_type not in CORRECTED_OPS or len(node.input) < 2:
            continue
        weight = producers.get(node.input[1])
        if weight is None or weight.op_type != "DequantizeLinear" or weight.input[0] not in initializers:
            continue  # weight kept in float: nothing to correct
        label = node.name or node.output[0]
        reference = float_name(node.output[0])
        if reference is None:
            skipped.append({"layer": label, "reason": "its output is not a tensor of the float model"})
            continue
        channels = _output_channels(node, initializers[weight.input[0]])
        attributes = {attribute.name: onnx.helper.get_attribute_value(attribute) for attribute in node.attribute}
        gain = float(attributes.get("beta", 1.0)) if node.op_type == "Gemm" else 1.0
        if gain == 0:
            skipped.append({"layer": label, "reason": "Gemm with beta 0 ignores its bias"})
            continue
        bias_name = node.input[2] if len(node.input) > 2 else ""
        if not bias_name:
            value = np.zeros(channels, dtype=np.float32)
        elif bias_name in initializers and initializers[bias_name].data_type == onnx.TensorProto.FLOAT:
            value = numpy_helper.to_array(initializers[bias_name])
            if value.size not in (1, channels):
                skipped.append({"layer": label, "reason": f"bias of shape {list(value.shape)} is not per output channel"})
                continue
            if value.size == channels and value.ndim == 1 and readers[bias_name] == 1:
                found.append((node, reference, bias_name, gain, False))
                continue
            value = np.broadcast_to(value.reshape(-1), (channels,)).astype(np.float32)
        else:
            skipped.append({"layer": label, "reason": "bias is not a float initializer (quantized or computed)"})
            continue
        name = f"{label}{ADDED_BIAS_SUFFIX}"
        graph.initializer.append(numpy_helper.from_array(value, name))
        if len(node.input) > 2:
            node.input[2] = name
        else:
            node.input.append(name)
        found.append((node, reference, name, gain, True))

    levels = _levels(graph, {node.output[0] for node, *_ in found})
    layers = [
        BiasLayer(node.name or node.output[0], node.output[0], reference, bias, gain, levels[node.output[0]], added)
        for node, reference, bias, gain, added in found
    ]
    return model, layers, skipped


def channel_statistics(
    model: onnx.ModelProto, outputs: list[str], inputs: np.ndarray, batch_size: int = BATCH_SIZE
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per output channel (axis 1) mean and mean square of each tensor in ``outputs`` over ``inputs``.

    The model is pruned to what those tensors need and run with them as its outputs.

    Returns:
        Tensor name -> ((C,) mean, (C,) mean of squares), float64.
    """
    import onnxruntime

    pruned = _exposing(model, outputs)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    try:
        session = onnxruntime.InferenceSession(pruned.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # ORT raises several types
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
        raise ExportError(f"bias correction: ONNX Runtime cannot run the model ({first})") from None
    feed = session.get_inputs()[0]
    fixed = feed.shape[0] if feed.shape and isinstance(feed.shape[0], int) else None
    step = fixed or batch_size
    sums: dict[str, np.ndarray] = {}
    squares: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for start in range(0, len(inputs), step):
        chunk = np.ascontiguousarray(inputs[start : start + step], dtype=np.float32)
        used = len(chunk)
        if fixed and used < fixed:  # a fixed batch: pad, and drop the padding's outputs
            chunk = np.concatenate([chunk, np.zeros((fixed - used, *chunk.shape[1:]), np.float32)])
        for name, value in zip(outputs, session.run(outputs, {feed.name: chunk})):
            value = np.asarray(value[:used], dtype=np.float64)
            axes = tuple(axis for axis in range(value.ndim) if axis != 1)
            sums[name] = sums.get(name, 0) + value.sum(axis=axes)
            squares[name] = squares.get(name, 0) + np.square(value).sum(axis=axes)
            counts[name] = counts.get(name, 0) + value.size // value.shape[1]
    return {name: (sums[name] / counts[name], squares[name] / counts[name]) for name in outputs}


def output_shifts(
    qdq_model: onnx.ModelProto, float_model: onnx.ModelProto, inputs: np.ndarray, outputs: list[str] | None = None
) -> dict[str, np.ndarray]:
    """Per-channel mean shift ``E[y_int8] - E[y_float]`` of each tensor in ``outputs`` over ``inputs``,
    relative to the float tensor's RMS (default: every quantized Conv/Gemm output).

    Returns:
        Tensor name -> (C,) relative shift.
    """
    layers = with_own_biases(qdq_model, float_model)[1]
    if outputs is not None:
        layers = [layer for layer in layers if layer.output in set(outputs)]
    quantized = channel_statistics(qdq_model, [layer.output for layer in layers], inputs)
    reference = channel_statistics(float_model, [layer.reference for layer in layers], inputs)
    shifts = {}
    for layer in layers:
        mean, square = reference[layer.reference]
        shifts[layer.output] = (quantized[layer.output][0] - mean) / max(float(np.sqrt(square.mean())), 1e-12)
    return shifts


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def _output(model: onnx.ModelProto, inputs: np.ndarray, batch_size: int) -> np.ndarray:
    from runtime.backends import open_model

    with open_model(model.SerializeToString()) as runner:
        return runner.run(inputs, batch_size)


def _relative_error(output: np.ndarray, reference: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(output - reference))) / max(np.sqrt(np.mean(np.square(reference))), 1e-12))


def _fast_encoding(model: onnx.ModelProto) -> onnx.ModelProto:
    """The u8s8 form of an s8s8 model: the same int8 grid, run by ONNX Runtime's integer kernels (about
    twice as fast on x86; outputs equal to about 1e-5 relative); any other model as it is."""
    from export.encodings import u8s8_from_s8s8

    try:
        return u8s8_from_s8s8(model)
    except ExportError:
        return model


def _relative_shift(measured, reference, outputs: list[str]) -> float:
    values = []
    for name in outputs:
        rms = float(np.sqrt(reference[name][1].mean()))
        values.append(float(np.mean(np.abs(measured[name][0] - reference[name][0]))) / max(rms, 1e-12))
    return float(np.mean(values))


def _output_channels(node: onnx.NodeProto, weight: onnx.TensorProto) -> int:
    dims = list(weight.dims)
    if node.op_type == "Conv":
        return int(dims[0])  # (M, C / groups, kH, kW)
    trans_b = next((attribute.i for attribute in node.attribute if attribute.name == "transB"), 0)
    return int(dims[0] if trans_b else dims[1])  # Gemm B: (N, K) with transB, else (K, N)


def _levels(graph: onnx.GraphProto, layer_outputs: set[str]) -> dict[str, int]:
    """Level of each layer output: the most corrected layers on any path before that layer."""
    depth: dict[str, int] = {}  # tensor -> corrected layers on the longest path that made it
    levels: dict[str, int] = {}
    for node in graph.node:  # ONNX graphs are topologically sorted
        before = max((depth.get(name, 0) for name in node.input), default=0)
        after = before
        if node.output and node.output[0] in layer_outputs:
            levels[node.output[0]] = before
            after = before + 1
        for name in node.output:
            depth[name] = after
    return levels


def _exposing(model: onnx.ModelProto, outputs: list[str]) -> onnx.ModelProto:
    """A copy of ``model`` with only the nodes ``outputs`` need and those tensors as its outputs."""
    graph = model.graph
    producers = {output: index for index, node in enumerate(graph.node) for output in node.output}
    needed: set[int] = set()
    stack = [name for name in outputs]
    while stack:
        index = producers.get(stack.pop())
        if index is None or index in needed:
            continue
        needed.add(index)
        stack += [name for name in graph.node[index].input if name]
    missing = [name for name in outputs if name not in producers]
    if missing:
        raise ExportError(f"bias correction: tensor '{missing[0]}' is not computed by the model")
    nodes = [node for index, node in enumerate(graph.node) if index in needed]
    used = {name for node in nodes for name in node.input}
    constants = {tensor.name for tensor in graph.initializer}
    pruned = onnx.helper.make_graph(
        nodes,
        graph.name,
        [value for value in graph.input if value.name not in constants],
        [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in outputs],
        [tensor for tensor in graph.initializer if tensor.name in used],
    )
    return onnx.helper.make_model(pruned, opset_imports=model.opset_import, ir_version=model.ir_version)
