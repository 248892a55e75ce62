"""Structural checks that a Q/DQ ONNX model is what TensorRT's explicit quantization accepts.

TensorRT (10.x/11.x, strongly typed) builds INT8 from Q/DQ nodes only when they are symmetric int8
(zero point 0), weights are per output channel (or per tensor) on the right axis, activations are
per tensor, and no DequantizeLinear takes int32 (a quantized bias). The heatmap decode must stay in
float, so no Q/DQ may touch ArgMax/Softmax/TopK. These checks run here without TensorRT.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
# Graph ops that decode heatmaps or pick peaks; they, and what feeds them, stay in float.
DECODE_OPS = ("ArgMax", "ArgMin", "Softmax", "LogSoftmax", "TopK")
# Ops that only move data: looking through them from a decode op still finds what it decodes.
SHAPE_OPS = ("Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Identity")
# Op type -> (weight input index, the weight's output-channel axis); Gemm depends on transB.
WEIGHT_INPUTS = {"Conv": (1, 0), "ConvTranspose": (1, 1), "MatMul": (1, -1)}


def check_trt_ready(model: onnx.ModelProto, per_channel: bool = True) -> list[str]:
    """List what would stop TensorRT from building ``model`` as an explicitly quantized INT8 network.

    Args:
        model: a Q/DQ ONNX model.
        per_channel: weights were quantized per output channel (``False``: per tensor).

    Returns:
        One line per problem; empty when the model is ready.
    """
    graph = model.graph
    constants = {tensor.name: tensor for tensor in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = node.attribute[0].t
    producers = {output: node for node in graph.node for output in node.output}
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
    for node in graph.node:
        for index, name in enumerate(node.input):
            consumers[name].append((node, index))

    problems: list[str] = []
    qdq_nodes = [node for node in graph.node if node.op_type in QDQ_OPS]
    if not qdq_nodes:
        return ["no QuantizeLinear/DequantizeLinear nodes: the model is not quantized"]

    for node in qdq_nodes:
        label = f"{node.op_type} '{node.name or node.output[0]}'"
        scale = _constant(constants, node.input[1] if len(node.input) > 1 else "")
        zero_point_name = node.input[2] if len(node.input) > 2 else ""
        zero_point = constants.get(zero_point_name) if zero_point_name else None
        if zero_point is None:
            # Without a zero point QuantizeLinear produces uint8; a computed one cannot be checked.
            problems.append(f"{label}: zero point missing or not a constant (TensorRT needs a constant int8 0)")
        elif zero_point.data_type != onnx.TensorProto.INT8:
            type_name = onnx.TensorProto.DataType.Name(zero_point.data_type)
            hint = " (a quantized bias: quantize with QuantizeBias=False)" if type_name == "INT32" else ""
            problems.append(f"{label}: zero point is {type_name}, TensorRT needs int8{hint}")
        elif np.any(numpy_helper.to_array(zero_point) != 0):
            problems.append(f"{label}: zero point is not 0 (asymmetric); TensorRT needs symmetric quantization")
        if scale is None:
            problems.append(f"{label}: scale is not a constant")
            continue
        if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
            problems.append(f"{label}: scale has non-positive or non-finite values")

        weight = constants.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if weight is not None:
            problems += _check_weight(
                label, node, numpy_helper.to_array(weight), scale, consumers[node.output[0]], per_channel
            )
        elif scale.size != 1:
            problems.append(f"{label}: activation scale has {scale.size} values; TensorRT needs per-tensor activations")

    for node in graph.node:
        if node.op_type not in DECODE_OPS:
            continue
        touched = [name for name in node.input if _quantized_source(name, producers)]
        touched += [name for name in node.output if any(c.op_type == "QuantizeLinear" for c, _ in consumers[name])]
        if touched:
            problems.append(
                f"{node.op_type} '{node.name}': decode op is inside the quantized region "
                f"({', '.join(touched)}); keep heatmap decoding in float"
            )
    return problems


def _quantized_source(name: str, producers: dict[str, onnx.NodeProto]) -> bool:
    """Whether ``name`` comes from a DequantizeLinear, looking back through data-movement ops."""
    node = producers.get(name)
    while node is not None and node.op_type in SHAPE_OPS:
        node = producers.get(node.input[0])
    return node is not None and node.op_type == "DequantizeLinear"


def float_tail(model: onnx.ModelProto) -> list[str]:
    """Take the model's outputs and everything its decode ops read out of the quantized region, in place.

    ONNX Runtime puts a Q/DQ pair on graph outputs and on the inputs of data-movement ops before a
    Softmax/ArgMax, even when the decode op itself is excluded; the decode would then read int8-rounded
    logits. Every consumer in the float region (decode ops, what follows them, the data-movement ops
    feeding them, graph outputs) is rewired to the float tensor before the pair, and pairs left unused
    are removed. TensorRT then runs the last layer with int8 inputs and a float output.

    Returns:
        The tensors that now reach the float region unquantized.
    """
    graph = model.graph
    nodes = list(graph.node)
    producers = {name: index for index, node in enumerate(nodes) for name in node.output}
    consumers: dict[str, list[int]] = defaultdict(list)
    for index, node in enumerate(nodes):
        for name in node.input:
            consumers[name].append(index)
    outputs = {value.name for value in graph.output}

    region = set()
    stack = [index for index, node in enumerate(nodes) if node.op_type in DECODE_OPS]
    while stack:  # decode ops and everything downstream of them
        index = stack.pop()
        if index not in region:
            region.add(index)
            stack += [c for name in nodes[index].output for c in consumers[name]]
    changed = True
    while changed:  # plus data-movement and Q/DQ nodes that feed only the region
        changed = False
        for index, node in enumerate(nodes):
            if index in region or node.op_type not in SHAPE_OPS + QDQ_OPS:
                continue
            users = [c for name in node.output for c in consumers[name]]
            if users and all(c in region for c in users) and not any(name in outputs for name in node.output):
                region.add(index)
                changed = True

    def float_source(name: str) -> str | None:
        """The float tensor behind an activation Q -> DQ pair that produces ``name``."""
        dequantize = nodes[producers[name]] if name in producers else None
        if dequantize is None or dequantize.op_type != "DequantizeLinear" or dequantize.input[0] not in producers:
            return None
        quantize = nodes[producers[dequantize.input[0]]]
        return quantize.input[0] if quantize.op_type == "QuantizeLinear" else None

    freed = []
    for index in sorted(region):
        node = nodes[index]
        if node.op_type in QDQ_OPS:
            continue
        for position, name in enumerate(node.input):
            source = float_source(name)
            if source is not None:
                node.input[position] = source
                freed.append(source)
    for value in graph.output:
        source = float_source(value.name)
        if source is None:
            continue
        graph.node.remove(nodes[producers[value.name]])  # the DequantizeLinear that produced it
        if source in producers and len(consumers[source]) == 1:  # read only by the QuantizeLinear
            producer = nodes[producers[source]]
            producer.output[list(producer.output).index(source)] = value.name
        else:
            graph.node.append(onnx.helper.make_node("Identity", [source], [value.name], name=f"{value.name}_float"))
        freed.append(value.name)
    _remove_unused_qdq(graph)
    return sorted(set(freed))


def _remove_unused_qdq(graph: onnx.GraphProto) -> None:
    """Drop Q/DQ nodes whose outputs nobody reads, then initializers nobody reads."""
    outputs = {value.name for value in graph.output}
    while True:
        used = {name for node in graph.node for name in node.input} | outputs
        unused = [n for n in graph.node if n.op_type in QDQ_OPS and not any(name in used for name in n.output)]
        if not unused:
            break
        for node in unused:
            graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    kept = [tensor for tensor in graph.initializer if tensor.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _check_weight(label, node, weight: np.ndarray, scale: np.ndarray, users, per_channel: bool) -> list[str]:
    problems = []
    for user, index in users:
        axis = _weight_axis(user, index)
        if axis is None:
            continue
        axis = axis % weight.ndim
        channels = weight.shape[axis]
        declared = next((a.i for a in node.attribute if a.name == "axis"), 1) % weight.ndim
        if per_channel:
            if scale.size != channels or (scale.size > 1 and declared != axis):
                problems.append(
                    f"{label}: weight of {user.op_type} '{user.name}' is quantized with {scale.size} scale(s) on axis "
                    f"{declared}; per-channel needs {channels} on output-channel axis {axis}"
                )
        elif scale.size != 1:
            problems.append(
                f"{label}: weight of {user.op_type} '{user.name}' has {scale.size} scales; per-tensor needs 1"
            )
    return problems


def _weight_axis(user: onnx.NodeProto, index: int) -> int | None:
    """Output-channel axis of the weight at input ``index`` of ``user``, or ``None`` if it is no weight."""
    if user.op_type == "Gemm":
        if index != 1:
            return None
        trans_b = next((a.i for a in user.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    if user.op_type in WEIGHT_INPUTS and WEIGHT_INPUTS[user.op_type][0] == index:
        return WEIGHT_INPUTS[user.op_type][1]
    return None


def _constant(constants, name: str) -> np.ndarray | None:
    tensor = constants.get(name) if name else None
    return None if tensor is None else numpy_helper.to_array(tensor).astype(np.float64).reshape(-1)


def qdq_summary(model: onnx.ModelProto) -> dict[str, int]:
    """Counts of Q/DQ nodes and of quantized weights, for logs and the card."""
    constants = {tensor.name for tensor in model.graph.initializer}
    dequantize = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    return {
        "quantize_linear": sum(n.op_type == "QuantizeLinear" for n in model.graph.node),
        "dequantize_linear": len(dequantize),
        "quantized_weights": sum(n.input[0] in constants for n in dequantize),
    }


def quantize_constant_weights(model: onnx.ModelProto) -> list[str]:
    """Store constant weights as int8 initializers read by their DequantizeLinear, in place.

    A model exported from fake-quantized torch (QAT) holds ``float weight -> QuantizeLinear ->
    DequantizeLinear``; the post-training path (and TensorRT's QAT examples) hold the int8 weight
    itself. Each QuantizeLinear whose input, scale and zero point are constants is evaluated here
    (round half to even, as ONNX specifies) and removed. Identity nodes that only repeat an
    initializer (torch's exporter writes them for equal scales) are bypassed first, so that every
    scale is a constant the checks and TensorRT can read, and Constant nodes read only by Q/DQ (torch
    writes zero points so) become initializers, as in the post-training path's files.

    Returns:
        The names of the float weights that were replaced.
    """
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    outputs = {value.name for value in graph.output}
    for node in [n for n in graph.node if n.op_type == "Identity" and n.input[0] in initializers]:
        if node.output[0] in outputs:
            continue
        for user in graph.node:
            for position, name in enumerate(user.input):
                if name == node.output[0]:
                    user.input[position] = node.input[0]
        graph.node.remove(node)
    readers: dict[str, set[str]] = defaultdict(set)
    for node in graph.node:
        for name in node.input:
            readers[name].add(node.op_type)
    for node in [n for n in graph.node if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"]:
        name = node.output[0]
        if readers[name] and readers[name] <= set(QDQ_OPS) and name not in outputs and name not in initializers:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = name
            graph.initializer.append(tensor)
            initializers[name] = tensor
            graph.node.remove(node)
    constants = dict(initializers)
    replaced = []
    for node in [n for n in graph.node if n.op_type == "QuantizeLinear"]:
        names = list(node.input) + [""] * (3 - len(node.input))
        if names[0] not in initializers or names[1] not in constants or names[2] not in constants:
            continue
        weight = numpy_helper.to_array(initializers[names[0]]).astype(np.float32)
        scale = numpy_helper.to_array(constants[names[1]]).astype(np.float32)
        zero_point = numpy_helper.to_array(constants[names[2]])
        if zero_point.dtype != np.int8:
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % weight.ndim
        shape = [1] * weight.ndim
        if scale.size > 1:
            shape[axis] = -1
        values = np.rint(weight / scale.reshape(shape)) + zero_point.astype(np.float32).reshape(shape)
        quantized = numpy_helper.from_array(np.clip(values, -128, 127).astype(np.int8), f"{names[0]}_quantized")
        graph.initializer.append(quantized)
        for user in graph.node:
            for position, name in enumerate(user.input):
                if name == node.output[0]:
                    user.input[position] = quantized.name
        graph.node.remove(node)
        replaced.append(names[0])
    used = {name for node in graph.node for name in node.input}
    kept = [tensor for tensor in graph.initializer if tensor.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return replaced
