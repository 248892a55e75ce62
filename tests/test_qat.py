"""Quantization-aware fine-tuning (train/qat.py) and its Q/DQ export, on the tiny net and four real faces."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

torch = pytest.importorskip("torch")

from conftest import HAS_OPENVINO, one_error_line, randomise_batchnorm  # noqa: E402
from export import onnx as onnx_cli  # noqa: E402
from runtime.face_crops import crop_faces  # noqa: E402
from export.onnx_export import QAT_MAX_ABS, torch_to_onnx  # noqa: E402
from export.ort_quantize import KEEP_FLOAT  # noqa: E402
from export.qdq import DECODE_OPS, check_trt_ready, quantize_constant_weights  # noqa: E402
from runtime.annotations import read_pts_folder  # noqa: E402
from runtime.backends import load_backend  # noqa: E402
from runtime.card import file_sha256, read_card  # noqa: E402
from runtime.crop import CropRule, Normalisation  # noqa: E402
from train import qat  # noqa: E402
from train.__main__ import build_parser  # noqa: E402
from train.__main__ import main as train_main  # noqa: E402
from train.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint  # noqa: E402
from train.config import config_from_args  # noqa: E402
from train.models import build_model  # noqa: E402

MODEL, SIZE, FACES = "tiny_heatmap", 64, 4
# Heatmaps of the QAT tiny net on the four faces (peak 0.34), each engine against torch's fake
# quantization, measured here: ONNX Runtime max abs 3.5e-3, mean 2.8e-4; OpenVINO 9.8e-4, 1.4e-4.
# Int8 is not bit-exact across engines (another summation order can move a value to the next int8
# step, which spreads downstream); the limits leave ~5x room for other CPUs.
BACKEND_MAX_ABS, BACKEND_MEAN_ABS = 2e-2, 2e-3


@pytest.fixture(scope="module")
def faces(faces68_dir, tmp_path_factory):
    """Four real annotated faces (links into ../shared/data/faces68)."""
    folder = tmp_path_factory.mktemp("faces")
    for image in sorted(faces68_dir.glob("*.jpg"))[:FACES]:
        for path in (image, image.with_suffix(".pts")):
            (folder / path.name).symlink_to(path)
    return folder


@pytest.fixture(scope="module")
def float_checkpoint(tmp_path_factory):
    """A float tiny_heatmap checkpoint with non-trivial BatchNorm statistics (so folding is exercised)."""
    torch.manual_seed(0)
    model = build_model(MODEL, 68, input_size=SIZE)
    randomise_batchnorm(model, weights=True)
    state = {
        "model_name": MODEL, "num_points": 68, "layout": "ibug68", "input_size": SIZE, "heatmap_stride": 4,
        "sigma": 1.5, "decode": "centroid", "normalisation": Normalisation().to_dict(),
        "crop_rule": CropRule().to_dict(), "model": model.state_dict(), "epoch": 1,
    }  # fmt: skip
    return save_checkpoint(tmp_path_factory.mktemp("float") / "float.pt", state)


def qat_args(faces, out_dir, *extra) -> list[str]:
    return [
        "--train-data", str(faces), "--layout", "ibug68", "--model", MODEL, "--input-size", str(SIZE),
        "--batch-size", "4", "--workers", "0", "--device", "cpu", "--augment", "false",
        "--tensorboard", "false", "--out-dir", str(out_dir), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def qat_run(faces, float_checkpoint, tmp_path_factory):
    """One QAT step from the float checkpoint, exported to Q/DQ ONNX: (checkpoint, artifact)."""
    out_dir = tmp_path_factory.mktemp("qat")
    args = qat_args(faces, out_dir, "--qat", "--init", str(float_checkpoint), "--epochs", "1",
                    "--max-steps-per-epoch", "1", "--qat-calibration-batches", "1", "--qat-freeze-bn-steps", "1")  # fmt: skip
    assert train_main(args) == 0
    artifact = out_dir / "qat.onnx"
    assert onnx_cli.main([str(out_dir / "last.pt"), "-o", str(artifact), "--parity-images", str(faces)]) == 0
    return out_dir / "last.pt", artifact


def test_qat_without_init_is_one_line_and_exit_2(faces, tmp_path, capsys):
    assert train_main(qat_args(faces, tmp_path / "run", "--qat")) == 2
    assert "--init" in one_error_line(capsys.readouterr())
    assert not (tmp_path / "run").exists()


def test_qat_defaults_are_short_and_slow_unless_given():
    config = config_from_args(build_parser().parse_args(["--qat", "--init", "x.pt"]))
    assert (config.epochs, config.lr) == (5, 1e-4)
    config = config_from_args(build_parser().parse_args(["--qat", "--init", "x.pt", "--epochs", "2", "--lr", "1e-3"]))
    assert (config.epochs, config.lr) == (2, 1e-3)
    assert config_from_args(build_parser().parse_args([])).epochs == 60  # plain training keeps its defaults


def test_keep_float_names_are_export_ort_names():
    assert qat.KEEP_FLOAT == KEEP_FLOAT


def test_qat_step_runs_and_checkpoint_records_it(qat_run, float_checkpoint):
    checkpoint, _ = qat_run
    state = load_checkpoint(checkpoint)
    record = state["qat"]
    assert record["init_sha256"] == file_sha256(float_checkpoint)
    assert record["settings"]["freeze_bn_steps"] == 1
    # Every conv of the tiny net is quantized, every BatchNorm folded; one training step was taken.
    assert len(record["quantized"]) == 6 and len(record["folded_batch_norms"]) == 5
    steps = [value for key, value in state["model"].items() if key.endswith(".steps")]
    assert steps and all(int(value) == 1 for value in steps)


def test_exported_model_is_symmetric_per_channel_qdq_with_float_decode(qat_run):
    _, artifact = qat_run
    model = onnx.load(str(artifact))
    assert check_trt_ready(model, per_channel=True) == []
    graph = model.graph
    initializers = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    assert len(convs) == 6
    for conv in convs:
        weight_dq, input_dq = producers[conv.input[1]], producers[conv.input[0]]
        assert weight_dq.op_type == input_dq.op_type == "DequantizeLinear"
        weight, scale, zero_point = (initializers[name] for name in weight_dq.input)
        assert weight.dtype == np.int8 and zero_point.dtype == np.int8 and not zero_point.any()
        assert scale.shape == (weight.shape[0],)  # per output channel
        assert next(a.i for a in weight_dq.attribute if a.name == "axis") == 0
        assert initializers[input_dq.input[1]].size == 1  # activations per tensor
        assert len(conv.input) == 3 and initializers[conv.input[2]].dtype == np.float32  # float bias
    # The heatmaps leave the graph from the head Conv in float; no decode op is in the graph at all.
    assert producers[graph.output[0].name].op_type == "Conv"
    assert not [node for node in graph.node if node.op_type in DECODE_OPS]


def test_card_records_qat(qat_run, float_checkpoint):
    checkpoint, artifact = qat_run
    card = read_card(artifact)
    assert card.precision == "int8" and card.decode == "centroid" and card.output_kind == "heatmap"
    calibration = card.calibration
    assert calibration["method"] == "qat"
    assert calibration["init_checkpoint"] == str(float_checkpoint)
    assert calibration["init_sha256"] == file_sha256(float_checkpoint)
    assert calibration["fine_tuning"]["epochs"] == 1 and calibration["fine_tuning"]["lr"] == 1e-4
    assert card.source_sha256 == file_sha256(checkpoint)
    assert card.extra["quantization"]["weights"] == "int8 symmetric per-channel"
    assert card.extra["quantization"]["quantized_weights"] == 6
    embedded = next(p.value for p in onnx.load(str(artifact)).metadata_props if p.key == "edgemark.card")
    assert json.loads(embedded)["calibration"]["method"] == "qat"


@pytest.mark.parametrize(
    "backend",
    ["onnxruntime", pytest.param("openvino", marks=pytest.mark.skipif(not HAS_OPENVINO, reason="needs openvino"))],
)
def test_backends_match_torch_fake_quantization_on_real_faces(qat_run, faces, backend):
    checkpoint, artifact = qat_run
    model, _ = model_from_checkpoint(checkpoint)
    card = read_card(artifact)
    crops = crop_faces(read_pts_folder(faces), card)
    with torch.no_grad():
        reference = model(torch.from_numpy(crops.inputs)).numpy()
    with load_backend(artifact, backend) as runner:
        output = runner.infer({runner.input_spec.name: crops.inputs})
    output = next(iter(output.values()))
    difference = np.abs(output - reference)
    assert difference.max() <= BACKEND_MAX_ABS and difference.mean() <= BACKEND_MEAN_ABS
    assert difference.max() <= QAT_MAX_ABS  # what the export's own parity check allows


def test_training_form_equals_export_form():
    """What the QAT model computes in eval mode is what the exported (frozen) form computes."""
    torch.manual_seed(1)
    model = build_model(MODEL, 68, input_size=SIZE)
    randomise_batchnorm(model)
    qat.prepare_qat(model, qat.QatSettings(), SIZE)
    images = torch.randn(4, 3, SIZE, SIZE)
    qat.calibrate_ranges(model, [{"image": images}], torch.device("cpu"))
    with torch.no_grad():
        training_form = model.eval()(images)
        export_form = qat.frozen_for_export(model)(images)
    assert torch.equal(training_form, export_form)


def test_keep_float_leaves_first_and_last_convolution_float():
    model = build_model(MODEL, 68, input_size=SIZE)
    record = qat.prepare_qat(model, qat.QatSettings(keep_float=("first_conv", "head")), SIZE)
    assert record["kept_float"] == ["features.0.0", "head"]
    assert isinstance(model.head, torch.nn.Conv2d) and isinstance(model.features[0][0], torch.nn.Conv2d)
    assert isinstance(model.features[1][0], qat.QuantConv)


def test_conv_transpose_weights_are_quantized_on_axis_1():
    """ONNX lays a ConvTranspose weight out as (C_in, C_out / groups, kH, kW): output channels on axis 1."""
    torch.manual_seed(2)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.ConvTranspose2d(8, 6, 4, stride=2, padding=1, bias=False), torch.nn.BatchNorm2d(6),
    )  # fmt: skip
    model[3].running_var.uniform_(0.5, 2.0)
    record = qat.prepare_qat(model, qat.QatSettings(), 16)
    assert record["folded_batch_norms"] == ["3"]
    qat.calibrate_ranges(model, [{"image": torch.randn(2, 3, 16, 16)}], torch.device("cpu"))
    onnx_model = onnx.load_from_string(torch_to_onnx(qat.frozen_for_export(model), 16, 17))
    quantize_constant_weights(onnx_model)
    assert check_trt_ready(onnx_model) == []
    deconv = next(node for node in onnx_model.graph.node if node.op_type == "ConvTranspose")
    dequantize = next(node for node in onnx_model.graph.node if node.output[0] == deconv.input[1])
    assert next(a.i for a in dequantize.attribute if a.name == "axis") == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fan_hourglass2", "hrnetv2_w18", "mobilenetv3_edge", "resnet18_deconv"])
def test_every_registered_model_trains_and_exports_qat(name):
    """Each model of the zoo: prepared (pre-activation BatchNorms stay unfolded), one step, TensorRT-ready Q/DQ."""
    from runtime.backends import open_model
    from train.models import model_info

    size = model_info(name).input_size
    torch.manual_seed(0)
    model = build_model(name, 68, input_size=size)
    qat.prepare_qat(model, qat.QatSettings(), size)
    images = torch.randn(2, 3, size, size)
    qat.calibrate_ranges(model, [{"image": images}], torch.device("cpu"))
    model.train()
    model(images).mean().backward()
    frozen = qat.frozen_for_export(model)
    onnx_model = onnx.load_from_string(torch_to_onnx(frozen, size, 17))
    quantize_constant_weights(onnx_model)
    assert check_trt_ready(onnx_model) == []
    with torch.no_grad():
        reference = frozen(images).numpy()
    output = open_model(onnx_model.SerializeToString()).run(images.numpy(), batch_size=2)
    assert np.abs(output - reference).max() <= QAT_MAX_ABS


def test_keep_float_depthwise_leaves_every_depthwise_convolution_float():
    import torch

    from train.models import build_model

    torch.manual_seed(0)
    model = build_model("mobilenetv3_edge", 68, input_size=112)
    depthwise = {name for name, module in model.named_modules()
                 if isinstance(module, torch.nn.Conv2d) and module.groups > 1 and module.in_channels == module.groups}  # fmt: skip
    record = qat.prepare_qat(model, qat.QatSettings(keep_float=("depthwise",)), 112)
    assert depthwise and depthwise <= set(record["kept_float"]) and not depthwise & set(record["quantized"])
