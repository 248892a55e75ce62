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

  A Relu between two Q/DQ pairs of one grid (``X -> Q -> DQ -> Relu -> Q -> DQ``, ONNX Runtime's
  symmetric form) is folded into the first quantization: ``X -> Q -> DQ`` with zero point 0 (uint8),
  the same scale, whose saturation at 0 is the Relu. Symmetric activations keep the Relu as a float
  op between a dequantize and a quantize, which ONNX Runtime cannot fuse (its Relu fusion wants a
  zero point at the type's minimum): on PFLD-GhostOne 26 such triples took 30 % of the u8s8
  inference (profiled: Relu 0.37, DequantizeLinear 0.36, QuantizeLinear 0.44 of 3.9 ms). Folded,
  every value from 0 to the table's bound gets the level it gets in ``s8s8``; values above the
  bound, which ``s8s8`` clips there, run on to twice the bound on the same grid (the unsigned
  levels 128-255 that zero point 0 frees).

  ONNX Runtime has no integer ConvTranspose either, so ``u8s8`` also writes each quantized 4x4
  stride-2 deconvolution (the heatmap heads' upsampling) as four 2x2 convolutions, one per output
  phase, on the same int8 weights and output grid, then Concat and DepthToSpace: ONNX Runtime runs
  them as QLinearConv (resnet18_deconv, profiled: 58 -> 24 ms per INT8 inference, FP32 62 ms).

Both are made by ONNX Runtime's ``quantize_static`` from the table (its calibration cache holds the
symmetric bounds), then ``u8s8`` by re-typing the activation zero points of the ``s8s8`` graph,
folding its Relus and splitting its deconvolutions. :func:`s8s8_from_u8s8` undoes both, so TensorRT
gets the ``s8s8`` computation exactly. OpenVINO reads either file (``python -m export.openvino``).

Size: one module on purpose (~650 lines): the two encodings and the graph rewrites that make u8s8 fast
(Relu folded into zero points, deconvolutions as sub-pixel convolutions) must keep bit-identical
scales with each other, which its tests check across all of them at once.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from export.artifact import ExportError
from export.ranges import RangeTable
from runtime.errors import first_line

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
            raise ExportError(f"ONNX Runtime could not quantize the model ({first_line(error)}); nothing written") from error
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


def _reencoded(model: onnx.ModelProto, source: np.dtype, zero_points: tuple[int, ...], target: np.dtype) -> onnx.ModelProto:
    """A copy of ``model`` whose activation zero points (each one of ``zero_points`` of ``source``)
    become ``target``'s symmetric zero point; scales and weights unchanged."""
    encoded = onnx.ModelProto()
    encoded.CopyFrom(model)
    initializers = {tensor.name: tensor for tensor in encoded.graph.initializer}
    new_zero_point = 0 if target == np.int8 else UNSIGNED_OFFSET
    for name in _activation_zero_points(encoded):
        tensor = initializers.get(name)
        values = numpy_helper.to_array(tensor) if tensor is not None else None
        if values is None or values.dtype != source or not np.all(np.isin(values, zero_points)):
            raise ExportError(
                f"activation zero point '{name}' is not a constant {np.dtype(source).name} "
                f"{' or '.join(map(str, zero_points))}: not a Q/DQ model of the "
                f"{'s8s8' if source == np.int8 else 'u8s8'} encoding"
            )
        tensor.CopyFrom(numpy_helper.from_array(np.full(values.shape, new_zero_point, dtype=target), name))
    return encoded


def _same_grid(initializers: dict[str, onnx.TensorProto], first: onnx.NodeProto, second: onnx.NodeProto) -> bool:
    """Whether two Q/DQ nodes quantize on one grid (equal constant scales and zero points)."""
    for position in (1, 2):
        a, b = (initializers.get(node.input[position]) if len(node.input) > position else None for node in (first, second))
        if a is None or b is None or not np.array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b)):
            return False
    return True


def _graph_index(
    graph: onnx.GraphProto,
) -> tuple[dict[str, onnx.TensorProto], dict[str, onnx.NodeProto], dict[str, list[onnx.NodeProto]], set[str]]:
    """Initializers by name, the producer of each tensor, the readers of each tensor, the graph outputs."""
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    producer = {name: node for node in graph.node for name in node.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return initializers, producer, readers, {output.name for output in graph.output}


def _fold_relus(model: onnx.ModelProto) -> int:
    """Fold ``X -> Q -> DQ -> Relu -> Q'`` (Q and Q' on one grid, zero point 128) into ``X -> Q'`` with
    zero point 0, in place; return how many Relus were folded.

    ONNX Runtime gives the tensors a Relu output flows into unchanged in sign (MaxPool, AveragePool,
    Reshape, ...) the Relu output's scale and zero point initializers, so that it can run those ops
    on the integers; the zero point changes for that whole group or not at all. A group is folded
    only when every other tensor quantized with its zero point comes from such an op reading the
    group (so it is non-negative too), and every tensor of each Relu chain has exactly one reader
    and is no graph output.
    """
    graph = model.graph
    initializers, producer, readers, graph_outputs = _graph_index(graph)

    chains: dict[str, list[tuple[onnx.NodeProto, ...]]] = {}  # zero point -> (Q, DQ, Relu, Q') chains
    for relu in graph.node:
        if relu.op_type != "Relu":
            continue
        dequantize = producer.get(relu.input[0])
        is_dequantize = dequantize is not None and dequantize.op_type == "DequantizeLinear"
        quantize = producer.get(dequantize.input[0]) if is_dequantize else None
        after = readers.get(relu.output[0], [])
        if quantize is None or quantize.op_type != "QuantizeLinear" or len(after) != 1 or len(after[0].input) < 3:
            continue
        requantize = after[0]
        chain_tensors = (quantize.input[0], quantize.output[0], dequantize.output[0])
        if (
            requantize.op_type == "QuantizeLinear"
            and quantize.input[0] in producer
            and all(len(readers.get(name, [])) == 1 for name in chain_tensors)
            and not graph_outputs.intersection((*chain_tensors, relu.output[0]))
            and _same_grid(initializers, quantize, dequantize)
            and _same_grid(initializers, quantize, requantize)
        ):
            chains.setdefault(requantize.input[2], []).append((quantize, dequantize, relu, requantize))

    removed: list[onnx.NodeProto] = []
    for zero_point, group in chains.items():
        values = numpy_helper.to_array(initializers[zero_point])
        requantizers = {id(chain[3]) for chain in group}
        if values.dtype != np.uint8 or np.any(values != UNSIGNED_OFFSET):
            continue
        if not all(
            id(node) in requantizers or _stays_non_negative(node, zero_point, producer)
            for node in readers[zero_point]
        ):
            continue
        initializers[zero_point].CopyFrom(numpy_helper.from_array(np.zeros_like(values), zero_point))
        for quantize, dequantize, relu, requantize in group:
            requantize.input[0] = quantize.input[0]
            removed.extend((quantize, dequantize, relu))
    _remove_nodes(graph, removed)
    return len(removed) // 3


# Ops whose outputs hold only values of their inputs (or averages of them): non-negative in, non-negative out.
SIGN_PRESERVING_OPS = {
    "AveragePool", "Concat", "DepthToSpace", "Flatten", "Gather", "GlobalAveragePool", "GlobalMaxPool", "Identity",
    "MaxPool", "Reshape", "Slice", "SpaceToDepth", "Split", "Squeeze", "Transpose", "Unsqueeze",
}  # fmt: skip


def _stays_non_negative(node: onnx.NodeProto, zero_point: str, producer: dict[str, onnx.NodeProto]) -> bool:
    """Whether ``node``, a reader of ``zero_point``, keeps the group non-negative: a dequantizer of the
    group, or a quantizer of a sign-preserving op's output whose data inputs are all the group's."""
    if node.op_type == "DequantizeLinear":
        source = producer.get(node.input[0])
        return source is not None and source.op_type == "QuantizeLinear" and source.input[2] == zero_point
    if node.op_type != "QuantizeLinear":
        return False
    op = producer.get(node.input[0])
    if op is None or op.op_type not in SIGN_PRESERVING_OPS:
        return False
    data = op.input if op.op_type == "Concat" else op.input[:1]
    sources = [producer.get(name) for name in data]
    return all(
        source is not None and source.op_type == "DequantizeLinear" and source.input[2] == zero_point for source in sources
    )


def _remove_nodes(graph: onnx.GraphProto, removed: list[onnx.NodeProto]) -> None:
    """Drop ``removed`` and what only they used (initializers, value infos of their outputs)."""
    if not removed:
        return
    gone = {id(node) for node in removed}
    kept = [node for node in graph.node if id(node) not in gone]
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in graph.node for name in node.input}
    orphans = {name for node in removed for name in node.input} - used
    dropped = {name for node in removed for name in node.output} | orphans
    for tensor in [tensor for tensor in graph.initializer if tensor.name in orphans]:
        graph.initializer.remove(tensor)
    for info in [info for info in graph.value_info if info.name in dropped]:
        graph.value_info.remove(info)


def _folded_relu_quantizers(model: onnx.ModelProto) -> list[str]:
    """Names of the ``u8s8`` activation QuantizeLinear nodes that hold a folded Relu: zero point 0, and
    not a sign-preserving op of a group that is non-negative already (:func:`_fold_relus`)."""
    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    producer = {name: node for node in model.graph.node for name in node.output}
    folded = []
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in initializers or len(node.input) < 3:
            continue
        zero_point = initializers.get(node.input[2])
        values = numpy_helper.to_array(zero_point) if zero_point is not None else None
        if values is None or values.dtype != np.uint8 or values.any():
            continue
        if _stays_non_negative(node, node.input[2], producer):
            continue
        if not node.name:
            raise ExportError(f"QuantizeLinear of '{node.input[0]}' has no name; cannot restore its Relu")
        folded.append(node.name)
    return folded


def _unfold_relus(model: onnx.ModelProto, quantizers: list[str]) -> None:
    """Restore ``X -> Q -> DQ -> Relu`` before each named (already signed) QuantizeLinear, in place:
    the inverse of :func:`_fold_relus`, with ONNX Runtime's names for the restored Q/DQ pair."""
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    taken = {name for node in graph.node for name in (node.name, *node.output)} | set(initializers)
    wanted = set(quantizers)
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.name in wanted:
            source = node.input[0]
            scale, zero_point = f"{source}_scale", f"{source}_zero_point"
            quantized, dequantized, activated = (
                f"{source}_QuantizeLinear_Output",
                f"{source}_DequantizeLinear_Output",
                f"{source}_relu",
            )
            clashes = taken.intersection((scale, zero_point, quantized, dequantized, activated))
            if clashes:
                raise ExportError(f"cannot restore the Relu after '{source}': the name '{sorted(clashes)[0]}' is taken")
            graph.initializer.extend(
                [
                    numpy_helper.from_array(numpy_helper.to_array(initializers[node.input[1]]), scale),
                    numpy_helper.from_array(numpy_helper.to_array(initializers[node.input[2]]), zero_point),
                ]
            )
            nodes.extend(
                [
                    onnx.helper.make_node(
                        "QuantizeLinear", [source, scale, zero_point], [quantized], name=f"{source}_QuantizeLinear"
                    ),
                    onnx.helper.make_node(
                        "DequantizeLinear", [quantized, scale, zero_point], [dequantized], name=f"{source}_DequantizeLinear"
                    ),
                    onnx.helper.make_node("Relu", [dequantized], [activated], name=f"{source}_Relu"),
                ]
            )
            node.input[0] = activated
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)


# ConvTranspose(kernel 4, stride 2, pad 1) as four 2x2 convolutions, one per output phase (row parity
# a, column parity b): phase -> kernel rows (or columns) for input offsets (i-1, i) when even, (i, i+1) when odd.
PHASE_TAPS = {0: (3, 1), 1: (2, 0)}
# phase -> (pad before, pad after) of its 2x2 convolution
PHASE_PADS = {0: (1, 0), 1: (0, 1)}
PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))  # DepthToSpace DCR order: channel block a * 2 + b
UPSAMPLING_ATTRIBUTES = {"dilations": [1, 1], "group": 1, "kernel_shape": [4, 4], "pads": [1, 1, 1, 1], "strides": [2, 2]}


def _attributes(node: onnx.NodeProto) -> dict:
    return {attribute.name: onnx.helper.get_attribute_value(attribute) for attribute in node.attribute}


def _subpixel_upsampling(model: onnx.ModelProto) -> int:
    """Rewrite each quantized ``ConvTranspose(kernel 4, stride 2, pad 1)`` as four 2x2 convolutions
    (one per output phase) -> Concat -> DepthToSpace, in place; return how many were rewritten.

    ONNX Runtime has no integer ConvTranspose: it runs one on dequantized floats, and on a heatmap
    head (resnet18_deconv: three 4x4 stride-2 deconvolutions at 256 channels) that float part took
    two thirds of the INT8 inference, more than the whole FP32 deconvolution (profiled: 38.8 ms of 58
    against 29.8 ms in FP32). Each phase reads the same int8 weights (a quarter of the taps each, the
    same per-channel scales) and is quantized on the deconvolution output's grid, so ONNX Runtime fuses
    them into QLinearConv; concatenating and moving channels to space changes no value.
    """
    graph = model.graph
    initializers, producer, readers, graph_outputs = _graph_index(graph)
    replacements: dict[int, list[onnx.NodeProto]] = {}  # id(node) -> the nodes that take its place
    removed_initializers: set[str] = set()
    for node in graph.node:
        if node.op_type != "ConvTranspose" or len(node.input) != 2 or not node.name:
            continue
        attributes = {**{"dilations": [1, 1], "group": 1}, **_attributes(node)}
        weight_dequantize, activation_dequantize = producer.get(node.input[1]), producer.get(node.input[0])
        after = readers.get(node.output[0], [])
        if (
            attributes != UPSAMPLING_ATTRIBUTES
            or weight_dequantize is None
            or weight_dequantize.op_type != "DequantizeLinear"
            or weight_dequantize.input[0] not in initializers
            or len(readers[weight_dequantize.output[0]]) != 1
            or len(readers[weight_dequantize.input[0]]) != 1
            or activation_dequantize is None
            or activation_dequantize.op_type != "DequantizeLinear"
            or len(after) != 1
            or after[0].op_type != "QuantizeLinear"
            or node.output[0] in graph_outputs
        ):
            continue
        weights = numpy_helper.to_array(initializers[weight_dequantize.input[0]])  # (Cin, Cout, 4, 4) int8
        scale = numpy_helper.to_array(initializers[weight_dequantize.input[1]])
        axis = _attributes(weight_dequantize).get("axis", 1)
        if weights.dtype != np.int8 or weights.shape[2:] != (4, 4) or (scale.ndim == 1 and axis != 1):
            continue
        output, output_scale, output_zero_point = node.output[0], after[0].input[1], after[0].input[2]
        weight_nodes, nodes, phase_outputs = [], [], []
        for a, b in PHASES:
            suffix = f"_phase{a}{b}"
            taps = weights[:, :, PHASE_TAPS[a], :][:, :, :, PHASE_TAPS[b]]
            phase_weights = numpy_helper.from_array(
                np.ascontiguousarray(taps.transpose(1, 0, 2, 3)), weight_dequantize.input[0] + suffix
            )  # (Cout, Cin, 2, 2)
            graph.initializer.append(phase_weights)
            weight_nodes.append(
                onnx.helper.make_node(
                    "DequantizeLinear",
                    [phase_weights.name, *weight_dequantize.input[1:]],
                    [weight_dequantize.output[0] + suffix],
                    name=weight_dequantize.name + suffix,
                    **({"axis": 0} if scale.ndim == 1 else {}),
                )
            )
            (top, bottom), (left, right) = PHASE_PADS[a], PHASE_PADS[b]
            phase = output + suffix
            nodes.append(
                onnx.helper.make_node(
                    "Conv",
                    [node.input[0], weight_dequantize.output[0] + suffix],
                    [phase],
                    name=node.name + suffix,
                    kernel_shape=[2, 2],
                    pads=[top, left, bottom, right],
                )
            )
            nodes.extend(_qdq_pair(phase, output_scale, output_zero_point))
            phase_outputs.append(nodes[-1].output[0])
        phases = output + "_phases"
        nodes.append(onnx.helper.make_node("Concat", phase_outputs, [phases], name=node.name + "_phases", axis=1))
        nodes.extend(_qdq_pair(phases, output_scale, output_zero_point))
        nodes.append(
            onnx.helper.make_node(
                "DepthToSpace", [nodes[-1].output[0]], [output], name=node.name + "_DepthToSpace", blocksize=2, mode="DCR"
            )
        )
        replacements[id(weight_dequantize)] = weight_nodes
        replacements[id(node)] = nodes
        removed_initializers.add(weight_dequantize.input[0])
    if not replacements:
        return 0
    rewritten = [new for node in graph.node for new in replacements.get(id(node), [node])]
    del graph.node[:]
    graph.node.extend(rewritten)
    for tensor in [tensor for tensor in graph.initializer if tensor.name in removed_initializers]:
        graph.initializer.remove(tensor)
    return len(replacements) // 2


def _qdq_pair(tensor: str, scale: str, zero_point: str) -> list[onnx.NodeProto]:
    """QuantizeLinear -> DequantizeLinear of ``tensor`` with ONNX Runtime's names."""
    quantized, dequantized = f"{tensor}_QuantizeLinear_Output", f"{tensor}_DequantizeLinear_Output"
    return [
        onnx.helper.make_node("QuantizeLinear", [tensor, scale, zero_point], [quantized], name=f"{tensor}_QuantizeLinear"),
        onnx.helper.make_node(
            "DequantizeLinear", [quantized, scale, zero_point], [dequantized], name=f"{tensor}_DequantizeLinear"
        ),
    ]


def _transposed_from_subpixel(model: onnx.ModelProto) -> None:
    """The inverse of :func:`_subpixel_upsampling`, in place: each ``<name>_DepthToSpace`` it made
    becomes the ConvTranspose ``<name>`` again, with its int8 weights reassembled from the phases."""
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    by_name = {node.name: node for node in graph.node if node.name}
    producer = {name: node for node in graph.node for name in node.output}
    replacements: dict[int, list[onnx.NodeProto]] = {}  # id(first node of a block) -> its restored nodes
    dropped: set[int] = set()
    removed_initializers: set[str] = set()
    for node in graph.node:
        if node.op_type != "DepthToSpace" or not node.name.endswith("_DepthToSpace"):
            continue
        name, output = node.name.removesuffix("_DepthToSpace"), node.output[0]
        convolutions = [by_name.get(f"{name}_phase{a}{b}") for a, b in PHASES]
        if any(convolution is None or convolution.op_type != "Conv" for convolution in convolutions):
            raise ExportError(f"'{node.name}' is not the DepthToSpace of a rewritten ConvTranspose; cannot restore it")
        weight_dequantizers = [producer[convolution.input[1]] for convolution in convolutions]
        cout, cin = numpy_helper.to_array(initializers[weight_dequantizers[0].input[0]]).shape[:2]
        weights = np.zeros((cin, cout, 4, 4), np.int8)
        for (a, b), dequantize in zip(PHASES, weight_dequantizers):
            taps = numpy_helper.to_array(initializers[dequantize.input[0]])  # (Cout, Cin, 2, 2)
            for p, row in enumerate(PHASE_TAPS[a]):
                for q, column in enumerate(PHASE_TAPS[b]):
                    weights[:, :, row, column] = taps[:, :, p, q].T
        first = weight_dequantizers[0]
        weight_name = first.input[0].removesuffix("_phase00")
        graph.initializer.append(numpy_helper.from_array(weights, weight_name))
        per_channel = numpy_helper.to_array(initializers[first.input[1]]).ndim == 1
        weight_dequantize = onnx.helper.make_node(
            "DequantizeLinear",
            [weight_name, *first.input[1:]],
            [first.output[0].removesuffix("_phase00")],
            name=first.name.removesuffix("_phase00"),
            **({"axis": 1} if per_channel else {}),
        )
        transposed = onnx.helper.make_node(
            "ConvTranspose",
            [convolutions[0].input[0], weight_dequantize.output[0]],
            [output],
            name=name,
            **UPSAMPLING_ATTRIBUTES,
        )
        made = [*weight_dequantizers, *convolutions, node, by_name[f"{name}_phases"]]
        quantized_tensors = [output + "_phases", *(f"{output}_phase{a}{b}" for a, b in PHASES)]
        made += [by_name[f"{tensor}_{op}"] for tensor in quantized_tensors for op in ("QuantizeLinear", "DequantizeLinear")]
        replacements[id(first)] = [weight_dequantize]
        replacements[id(convolutions[0])] = [transposed]
        dropped |= {id(made_node) for made_node in made} - set(replacements)
        removed_initializers.update(dequantize.input[0] for dequantize in weight_dequantizers)
    rebuilt = [new for node in graph.node if id(node) not in dropped for new in replacements.get(id(node), [node])]
    del graph.node[:]
    graph.node.extend(rebuilt)
    for tensor in [tensor for tensor in graph.initializer if tensor.name in removed_initializers]:
        graph.initializer.remove(tensor)


def u8s8_from_s8s8(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same quantization with unsigned activations: zero point 0 -> 128 (uint8), scales unchanged,
    Relus between two quantizations of one grid folded into the first (zero point 0).

    Raises:
        ExportError: ``model`` is not an ``s8s8`` graph (an activation zero point that is not int8 0).
    """
    encoded = _reencoded(model, np.int8, (0,), np.uint8)
    _fold_relus(encoded)
    _subpixel_upsampling(encoded)
    return encoded


def s8s8_from_u8s8(model: onnx.ModelProto) -> onnx.ModelProto:
    """The inverse of :func:`u8s8_from_s8s8`: TensorRT's signed form of an ONNX Runtime ``u8s8`` file,
    with its folded Relus restored (the ``s8s8`` computation exactly).

    Raises:
        ExportError: ``model`` is not a ``u8s8`` graph (an activation zero point that is not uint8 128
            or 0).
    """
    unsigned = onnx.ModelProto()
    unsigned.CopyFrom(model)
    _transposed_from_subpixel(unsigned)
    folded = _folded_relu_quantizers(unsigned)
    signed = _reencoded(unsigned, np.uint8, (UNSIGNED_OFFSET, 0), np.int8)
    _unfold_relus(signed, folded)
    return signed


def encoding_of(card_extra: dict) -> str:
    """The encoding a card records (files made before encodings were recorded are ``s8s8``)."""
    return str(card_extra.get("quantization", {}).get("encoding", "s8s8"))


# Ops that compute in whatever precision they are fed: an engine may run them on int8 data when their
# input is dequantized, rounding the result to the input's grid.
PRECISION_FOLLOWING_OPS = (
    "AveragePool", "GlobalAveragePool", "MaxPool", "GlobalMaxPool", "Reshape", "Flatten", "Squeeze", "Unsqueeze",
    "Transpose", "Concat", "Relu", "Clip", "Resize", "Identity",
)  # fmt: skip


def _float_islands_read_float(graph: onnx.GraphProto) -> None:
    """Make precision-following ops whose output stays float compute from float inputs.

    Q/DQ semantics compute ``AveragePool(DequantizeLinear(q))`` in float. OpenVINO moves the
    dequantization after such an op (and after a Concat feeding it) and runs it on the int8 values,
    rounding its result to the int8 grid, which is harmless when the output is requantized and not when
    it stays float: PFLD-GhostOne with its head kept float lost +0.52 NME points on OpenVINO against
    +0.07 on ONNX Runtime from the same file, 0.13-0.15 relative error on the head's average pools.
    So such an op reads the unquantized tensor instead of ``DequantizeLinear(QuantizeLinear(x))``,
    through float copies of the precision-following ops (a Concat, a Relu) between it and the nearest
    compute op; both engines then compute what is written.
    """
    producers = {output: node for node in graph.node for output in node.output}
    requantized = {node.input[0] for node in graph.node if node.op_type == "QuantizeLinear"}
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    constants = set(initializers)
    copies: dict[str, str] = {}
    added: list[onnx.NodeProto] = []

    def float_source(name: str) -> str:
        """A tensor with ``name``'s value computed without activation quantization on the way."""
        if name in copies:
            return copies[name]
        producer = producers.get(name)
        result = name
        if producer is not None and producer.op_type == "DequantizeLinear" and producer.input[0] not in constants:
            quantize = producers.get(producer.input[0])
            if quantize is not None and quantize.op_type == "QuantizeLinear":
                result = float_source(quantize.input[0])
                if _clamps_at_zero(quantize, initializers):  # a Relu folded into an unsigned zero point 0
                    relu = onnx.helper.make_node("Relu", [result], [f"{result}_relu_float"], name=f"{result}_relu_float")
                    added.append(relu)
                    result = relu.output[0]
        elif producer is not None and producer.op_type in PRECISION_FOLLOWING_OPS:
            inputs = [float_source(source) if source else source for source in producer.input]
            if inputs != list(producer.input):
                copy = onnx.NodeProto()
                copy.CopyFrom(producer)
                copy.name = f"{producer.name or name}_float"
                del copy.input[:]
                copy.input.extend(inputs)
                del copy.output[:]
                copy.output.extend(f"{output}_float" for output in producer.output)
                added.append(copy)
                result = f"{name}_float"
        copies[name] = result
        return result

    for node in list(graph.node):
        if node.op_type not in PRECISION_FOLLOWING_OPS or any(output in requantized for output in node.output):
            continue
        for position, name in enumerate(list(node.input)):
            if name:
                node.input[position] = float_source(name)
    if added:
        # Copies go right before their first reader so the graph stays topologically sorted.
        ordered: list[onnx.NodeProto] = []
        pending = {node.output[0]: node for node in added}
        placed: set[str] = set()

        def place(tensor: str) -> None:
            copy = pending.get(tensor)
            if copy is None or tensor in placed:
                return
            for source in copy.input:
                place(source)
            placed.add(tensor)
            ordered.append(copy)

        nodes = list(graph.node)
        del graph.node[:]
        for node in nodes:
            before = len(ordered)
            for source in node.input:
                place(source)
            graph.node.extend(ordered[before:])
            graph.node.append(node)
    # Drop Q/DQ pairs nobody reads any more.
    while True:
        read = {name for node in graph.node for name in node.input} | {output.name for output in graph.output}
        unused = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.output[0] not in read]
        if not unused:
            return
        for node in unused:
            graph.node.remove(node)


def _clamps_at_zero(quantize: onnx.NodeProto, initializers: dict[str, onnx.TensorProto]) -> bool:
    """A QuantizeLinear to uint8 with zero point 0: it clamps negatives to 0 (a Relu folded in)."""
    zero_point = initializers.get(quantize.input[2]) if len(quantize.input) > 2 else None
    if zero_point is None:
        return False
    values = numpy_helper.to_array(zero_point)
    return values.dtype == np.uint8 and not values.any()


def openvino_form(model: onnx.ModelProto) -> onnx.ModelProto:
    """The Q/DQ model as OpenVINO must be given it to compute what the file means.

    Only a mixed-precision graph changes (:func:`_float_islands_read_float`): pooling and data
    movement whose output stays float read float inputs. ONNX Runtime does not need this and would pay
    for it: the float copies keep it from fusing the convolutions before them (PFLD-GhostOne with its
    head float: 2.15 ms without, 2.96 ms with, FP32 2.34 ms), so the rewrite is made for OpenVINO only.
    """
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    _float_islands_read_float(rewritten.graph)
    return rewritten


def encode(model: onnx.ModelProto, encoding: str) -> onnx.ModelProto:
    """``model`` (``s8s8``) in ``encoding``."""
    return u8s8_from_s8s8(model) if encoding == "u8s8" else model
