"""The TensorRT-readiness checker and the decode-op exclusion, on tiny hand-built ONNX graphs."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.artifact import save_artifact
from export.calibration import write_calibration_array
from export.ort_quantize import Int8Config, int8_from_onnx, nodes_kept_float
from export.qdq import check_trt_ready
from runtime.card import Card
from runtime.crop import CropRule, Normalisation

POINTS, SIZE = 19, 16  # aflw19: the smallest registered layout


def _softmax_heatmap_model() -> onnx.ModelProto:
    """input (N, 3, 16, 16) -> Conv -> Relu -> Conv -> Softmax over each map -> (N, 19, 16, 16)."""
    rng = np.random.default_rng(0)
    initializers = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, "w1"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32) * 0.1, "b1"),
        numpy_helper.from_array(rng.standard_normal((POINTS, 8, 1, 1)).astype(np.float32) * 0.3, "w2"),
        numpy_helper.from_array(np.zeros(POINTS, np.float32), "b2"),
        numpy_helper.from_array(np.array([0, POINTS, SIZE * SIZE], np.int64), "flat"),
        numpy_helper.from_array(np.array([0, POINTS, SIZE, SIZE], np.int64), "maps"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2"),
        helper.make_node("Reshape", ["c2", "flat"], ["f"], name="flatten"),
        helper.make_node("Softmax", ["f"], ["p"], name="softmax", axis=-1),
        helper.make_node("Reshape", ["p", "maps"], ["heatmaps"], name="unflatten"),
    ]
    graph = helper.make_graph(
        nodes,
        "softmax_heatmaps",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, ["batch", POINTS, SIZE, SIZE])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _card() -> Card:
    return Card(
        layout="aflw19",
        num_points=POINTS,
        input_size=SIZE,
        normalisation=Normalisation(),
        output_kind="heatmap",
        heatmap_stride=1,
        decode="soft_argmax",
        crop_rule=CropRule(),
    )


@pytest.fixture()
def softmax_artifact(tmp_path):
    path = tmp_path / "softmax.onnx"
    save_artifact(_softmax_heatmap_model(), _card(), path)
    calib = tmp_path / "calib.npz"
    inputs = np.random.default_rng(1).standard_normal((8, 3, SIZE, SIZE)).astype(np.float32)
    write_calibration_array(calib, inputs, {"samples": [{"source": "style_a"}] * 5 + [{"source": "real"}] * 3})
    return path, calib


def test_decode_ops_stay_float(softmax_artifact, tmp_path):
    model_path, calib = softmax_artifact
    assert nodes_kept_float(onnx.load(str(model_path)), ()) == ["softmax"]
    output = tmp_path / "int8.onnx"
    card = int8_from_onnx(Int8Config(model_path, calib, output, batch_size=4, encoding="s8s8"))
    quantized = onnx.load(str(output))
    assert check_trt_ready(quantized) == []
    producers = {name: node for node in quantized.graph.node for name in node.output}
    softmax = next(node for node in quantized.graph.node if node.op_type == "Softmax")
    assert producers[softmax.input[0]].op_type != "DequantizeLinear"
    assert card.calibration["sources"] == {"real": 3, "style_a": 5}
    assert card.extra["quantization"]["nodes_kept_float"] == ["softmax"]


def _qdq(model: onnx.ModelProto, tensor: str, scale, zero_point: np.ndarray, axis: int | None = None) -> str:
    """Insert a Q -> DQ pair on ``tensor`` (activation) and return the dequantized name."""
    graph = model.graph
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.asarray(scale, np.float32), f"{tensor}_s"),
            numpy_helper.from_array(zero_point, f"{tensor}_z"),
        ]
    )
    extra = {"axis": axis} if axis is not None else {}
    graph.node.extend(
        [
            helper.make_node("QuantizeLinear", [tensor, f"{tensor}_s", f"{tensor}_z"], [f"{tensor}_q"], **extra),
            helper.make_node(
                "DequantizeLinear", [f"{tensor}_q", f"{tensor}_s", f"{tensor}_z"], [f"{tensor}_dq"], **extra
            ),
        ]
    )
    return f"{tensor}_dq"


def test_checker_flags_asymmetric_int32_and_quantized_decode():
    model = _softmax_heatmap_model()
    softmax = next(node for node in model.graph.node if node.op_type == "Softmax")
    softmax.input[0] = _qdq(model, "f", 0.1, np.array(3, np.int8))  # non-zero zero point, feeds Softmax
    conv1 = next(node for node in model.graph.node if node.name == "conv1")
    conv1.input[0] = _qdq(model, "input", 0.02, np.array(128, np.uint8))  # uint8 activation
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(np.zeros(8, np.int32), "b1_q"),
            numpy_helper.from_array(np.full(8, 1e-4, np.float32), "b1_s"),
            numpy_helper.from_array(np.zeros(8, np.int32), "b1_z"),
        ]
    )
    model.graph.node.append(helper.make_node("DequantizeLinear", ["b1_q", "b1_s", "b1_z"], ["b1_dq"], name="bias_dq"))
    conv1.input[2] = "b1_dq"
    problems = check_trt_ready(model)
    text = "\n".join(problems)
    assert "zero point is not 0" in text
    assert "zero point is UINT8" in text
    assert "INT32" in text and "QuantizeBias=False" in text
    assert "decode op is inside the quantized region" in text


def test_checker_wants_per_channel_weights_on_the_output_axis():
    model = _softmax_heatmap_model()
    weight = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "w1"))
    scale = np.abs(weight).reshape(3, -1).max(axis=1) / 127  # wrong axis: per input channel
    quantized = np.clip(np.round(weight / scale[None, :, None, None]), -127, 127).astype(np.int8)
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(quantized, "w1_q"),
            numpy_helper.from_array(scale.astype(np.float32), "w1_s"),
            numpy_helper.from_array(np.zeros(3, np.int8), "w1_z"),
        ]
    )
    model.graph.node.insert(0, helper.make_node("DequantizeLinear", ["w1_q", "w1_s", "w1_z"], ["w1_dq"], axis=1))
    next(node for node in model.graph.node if node.name == "conv1").input[1] = "w1_dq"
    problems = check_trt_ready(model)
    assert any("per-channel needs 8 on output-channel axis 0" in problem for problem in problems)
    unquantized = check_trt_ready(_softmax_heatmap_model())
    assert unquantized == ["no QuantizeLinear/DequantizeLinear nodes: the model is not quantized"]


def test_every_quantization_point_is_in_a_float_group_even_a_quantized_graph_output():
    """The mixed-precision search can only keep float what a group holds: a quantized graph output (no
    reader) used to fall out of every group (Peppa: 7.2 % label-free NME it could never take back)."""
    import onnx
    from onnx import TensorProto, helper

    from export.mixed_precision import float_groups, quantization_points

    scale = helper.make_tensor("scale", TensorProto.FLOAT, [], [0.1])
    zero = helper.make_tensor("zero", TensorProto.INT8, [], [0])
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "scale", "zero"], ["x_q"], name="x_Q"),
        helper.make_node("DequantizeLinear", ["x_q", "scale", "zero"], ["x_dq"], name="x_DQ"),
        helper.make_node("Relu", ["x_dq"], ["y"], name="relu"),
        helper.make_node("QuantizeLinear", ["y", "scale", "zero"], ["y_q"], name="y_Q"),
        helper.make_node("DequantizeLinear", ["y_q", "scale", "zero"], ["out"], name="y_DQ"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4])], [scale, zero])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    points = {point.name for point in quantization_points(model)}
    assert points == {"x", "y"}
    grouped = [name for group in float_groups(model) for name in group.points]
    assert sorted(grouped) == ["x", "y"] and all(group.points for group in float_groups(model))
