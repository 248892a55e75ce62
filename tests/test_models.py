"""Model registry, shapes, ONNX export, HRNet checkpoint parity and the complexity command."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from runtime.errors import UsageError
from train.models import build_model, count_flops, count_macs, count_parameters, list_models, model_info
from train.models.__main__ import main

# Smallest input each model accepts (all are fully convolutional); keeps CPU forwards fast.
SMALLEST_INPUT = {"resnet18_deconv": 64, "mobilenetv3_edge": 112, "hrnetv2_w18": 64, "fan_hourglass2": 64}


@pytest.fixture(autouse=True)
def _few_threads():
    # The CI machine has 2 cores shared with other jobs; more threads only add contention.
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def test_registry_lists_the_four_models():
    assert {"resnet18_deconv", "mobilenetv3_edge", "hrnetv2_w18", "fan_hourglass2"} <= set(list_models())
    assert list_models() == sorted(list_models())


@pytest.mark.parametrize("num_points", [98, 68])
@pytest.mark.parametrize("name", list_models())
def test_forward_gives_heatmaps_of_the_registered_stride(name, num_points):
    info = model_info(name)
    size = SMALLEST_INPUT.get(name, info.input_size)
    torch.manual_seed(0)
    model = build_model(name, num_points, input_size=size).eval()
    assert (model.input_size, model.heatmap_stride, model.num_points) == (size, info.heatmap_stride, num_points)
    images = torch.randn(2, 3, size, size)
    side = size // info.heatmap_stride
    with torch.no_grad():
        heatmaps = model(images)
        assert isinstance(heatmaps, torch.Tensor)
        assert heatmaps.shape == (2, num_points, side, side)
        if hasattr(model, "forward_all"):
            stacks = model.forward_all(images)
            assert isinstance(stacks, list) and len(stacks) >= 2
            assert all(stack.shape == (2, num_points, side, side) for stack in stacks)
            torch.testing.assert_close(stacks[-1], heatmaps)


def test_fan_intermediate_supervision_reaches_the_first_stack():
    torch.manual_seed(0)
    model = build_model("fan_hourglass2", 68, input_size=64).train()
    first, last = model.forward_all(torch.randn(2, 3, 64, 64))
    first.square().mean().backward()
    # The first stack's loss trains the first stack only; the last stack gets no gradient from it.
    assert model.stacks[0].heatmaps.weight.grad.abs().sum() > 0
    assert model.stacks[1].heatmaps.weight.grad is None
    assert last.requires_grad


@pytest.mark.parametrize("name", list_models())
def test_registry_metadata_matches_the_built_module(name):
    info = model_info(name)
    with torch.device("meta"):  # shapes and attributes only; no weights initialised
        model = build_model(name, 98)
    assert info.name == name and info.description
    assert (model.input_size, model.heatmap_stride, model.num_points) == (info.input_size, info.heatmap_stride, 98)
    assert info.heatmap_size == info.input_size // info.heatmap_stride


def test_unknown_model_suggests_the_closest_name():
    with pytest.raises(UsageError, match=r"Unknown model 'hrnetv2-w18'\. Valid: .*Did you mean 'hrnetv2_w18'\?"):
        build_model("hrnetv2-w18", 98)
    with pytest.raises(UsageError, match="Did you mean 'resnet18_deconv'"):
        model_info("resnet18_deconvolution")


def test_bad_options_are_usage_errors():
    with pytest.raises(UsageError, match="multiple of 16 from 112 to 256; got 120. Nearest legal: 128"):
        build_model("mobilenetv3_edge", 98, input_size=120)
    with pytest.raises(UsageError, match="no option 'width'. Valid options: input_size"):
        build_model("hrnetv2_w18", 98, width=32)
    with pytest.raises(UsageError, match="num_points must be a positive integer"):
        build_model("resnet18_deconv", 0)


def test_mobilenet_is_small_and_cheap():
    with torch.device("meta"):
        edge = build_model("mobilenetv3_edge", 98)
        baseline = build_model("resnet18_deconv", 98)
    assert count_parameters(edge) < 2_000_000
    assert count_flops(edge, edge.input_size) * 20 < count_flops(baseline, baseline.input_size)


def test_macs_of_known_layers():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 16*16 outputs * 8 channels * 3*3*3 = 55_296
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # 16*16 * 8 * 1*3*3 = 18_432
        nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1),  # 16*16*8 inputs * 4 * 4*4 = 131_072
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 10),  # 40
    )
    assert count_macs(model, 16) == 55_296 + 18_432 + 131_072 + 40
    assert count_flops(model, 16) == pytest.approx(2 * 204_840 / 1e9)
    assert model.training  # mode restored


def test_macs_on_meta_device_equal_a_real_forward():
    torch.manual_seed(0)
    real = build_model("mobilenetv3_edge", 98)
    with torch.device("meta"):
        meta = build_model("mobilenetv3_edge", 98)
    assert count_macs(meta, 128) == count_macs(real, 128) > 0


def _randomise_statistics(model: nn.Module, generator: torch.Generator) -> None:
    """Give BatchNorm non-trivial statistics and the head O(1) weights, so export parity means something."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.2, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.normal_(0.0, 0.2, generator=generator)
        model.final.weight.normal_(0.0, 0.1, generator=generator)


# The TorchScript exporter: torch 2.13's default dynamo exporter takes ~10 s here and cannot write
# opset 17 for this model (onnx's version converter fails on ReduceMean), it falls back to opset 18.
@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning")
def test_mobilenet_onnx_export_matches_torch_in_onnxruntime(tmp_path):
    onnx = pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = build_model("mobilenetv3_edge", 98, input_size=112).eval()
    _randomise_statistics(model, torch.Generator().manual_seed(1))
    path = tmp_path / "edge.onnx"
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, 112, 112),),
        str(path),
        input_names=["input"],
        output_names=["heatmaps"],
        dynamic_axes={"input": {0: "batch"}, "heatmaps": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    graph = onnx.load(str(path))
    assert graph.opset_import[0].version == 17
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (2, 3):
        images = torch.randn(batch, 3, 112, 112, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = model(images).numpy()
        (actual,) = session.run(None, {"input": images.numpy()})
        assert actual.shape == (batch, 98, 28, 28)
        assert np.abs(expected).max() > 0.1  # a real signal, not near-zero heatmaps
        assert np.abs(actual - expected).max() < 1e-4


# --- HRNetV2-W18 parity with the official HRNet facial landmark code -------------------------------

# experiments/wflw/face_alignment_wflw_hrnet_w18.yaml, MODEL.EXTRA, as the official code reads it.
OFFICIAL_W18_EXTRA = {
    "FINAL_CONV_KERNEL": 1,
    "STAGE2": {"NUM_MODULES": 1, "NUM_BRANCHES": 2, "BLOCK": "BASIC", "NUM_BLOCKS": [4, 4], "NUM_CHANNELS": [18, 36]},
    "STAGE3": {
        "NUM_MODULES": 4,
        "NUM_BRANCHES": 3,
        "BLOCK": "BASIC",
        "NUM_BLOCKS": [4, 4, 4],
        "NUM_CHANNELS": [18, 36, 72],
    },
    "STAGE4": {
        "NUM_MODULES": 3,
        "NUM_BRANCHES": 4,
        "BLOCK": "BASIC",
        "NUM_BLOCKS": [4, 4, 4, 4],
        "NUM_CHANNELS": [18, 36, 72, 144],
    },
}
EXPANSION = {"BASIC": 1, "BOTTLENECK": 4}


def official_hrnet_state_dict_shapes(extra: dict, num_joints: int) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the official ``HighResolutionNet(config).state_dict()``, from the config alone.

    Walks the official ``lib/models/hrnet.py`` construction (stem, ``layer1``, ``_make_transition_layer``,
    ``_make_stage`` / ``HighResolutionModule._make_one_branch`` / ``_make_fuse_layers``, ``head``) with its
    module names; ``None`` entries of ModuleLists and parameter-free modules (ReLU, Softmax) add no keys.
    Every BatchNorm saves ``num_batches_tracked`` (PyTorch >= 0.4.1; the official code targets 1.0).
    Convolutions have no bias except the two head convolutions (``nn.Conv2d`` default ``bias=True``).
    """
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name: str, in_channels: int, out_channels: int, kernel: int, bias: bool = False) -> None:
        shapes[f"{name}.weight"] = (out_channels, in_channels, kernel, kernel)
        if bias:
            shapes[f"{name}.bias"] = (out_channels,)

    def batch_norm(name: str, channels: int) -> None:
        for entry in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{entry}"] = (channels,)
        shapes[f"{name}.num_batches_tracked"] = ()

    def block(name: str, kind: str, in_channels: int, planes: int) -> None:
        """One BasicBlock / Bottleneck at stride 1, with ``downsample`` if the width changes."""
        out_channels = planes * EXPANSION[kind]
        if kind == "BASIC":
            conv(f"{name}.conv1", in_channels, planes, 3)
            batch_norm(f"{name}.bn1", planes)
            conv(f"{name}.conv2", planes, planes, 3)
            batch_norm(f"{name}.bn2", planes)
        else:
            conv(f"{name}.conv1", in_channels, planes, 1)
            batch_norm(f"{name}.bn1", planes)
            conv(f"{name}.conv2", planes, planes, 3)
            batch_norm(f"{name}.bn2", planes)
            conv(f"{name}.conv3", planes, out_channels, 1)
            batch_norm(f"{name}.bn3", out_channels)
        if in_channels != out_channels:
            conv(f"{name}.downsample.0", in_channels, out_channels, 1)
            batch_norm(f"{name}.downsample.1", out_channels)

    # Stem: two stride-2 3x3 convs, then layer1 = 4 Bottlenecks of 64 planes (256 out).
    conv("conv1", 3, 64, 3)
    batch_norm("bn1", 64)
    conv("conv2", 64, 64, 3)
    batch_norm("bn2", 64)
    in_channels = 64
    for index in range(4):
        block(f"layer1.{index}", "BOTTLENECK", in_channels, 64)
        in_channels = 256

    previous = [256]
    for number, key in enumerate(("STAGE2", "STAGE3", "STAGE4"), start=1):
        stage = extra[key]
        expansion = EXPANSION[stage["BLOCK"]]
        current = [channels * expansion for channels in stage["NUM_CHANNELS"]]
        # _make_transition_layer(previous, current)
        for branch, channels in enumerate(current):
            if branch < len(previous):
                if channels != previous[branch]:
                    conv(f"transition{number}.{branch}.0", previous[branch], channels, 3)
                    batch_norm(f"transition{number}.{branch}.1", channels)
            else:
                for step in range(branch + 1 - len(previous)):
                    out_channels = channels if step == branch - len(previous) else previous[-1]
                    conv(f"transition{number}.{branch}.{step}.0", previous[-1], out_channels, 3)
                    batch_norm(f"transition{number}.{branch}.{step}.1", out_channels)
        # _make_stage: NUM_MODULES HighResolutionModules sharing (and updating) num_inchannels.
        widths = list(current)
        for module in range(stage["NUM_MODULES"]):
            prefix = f"stage{number + 1}.{module}"
            for branch in range(stage["NUM_BRANCHES"]):
                planes = stage["NUM_CHANNELS"][branch]
                for index in range(stage["NUM_BLOCKS"][branch]):
                    block(f"{prefix}.branches.{branch}.{index}", stage["BLOCK"], widths[branch], planes)
                    widths[branch] = planes * expansion
            for target in range(stage["NUM_BRANCHES"]):
                for source in range(stage["NUM_BRANCHES"]):
                    fuse = f"{prefix}.fuse_layers.{target}.{source}"
                    if source > target:
                        conv(f"{fuse}.0", widths[source], widths[target], 1)
                        batch_norm(f"{fuse}.1", widths[target])
                    elif source < target:
                        for step in range(target - source):
                            out_channels = widths[target] if step == target - source - 1 else widths[source]
                            conv(f"{fuse}.{step}.0", widths[source], out_channels, 3)
                            batch_norm(f"{fuse}.{step}.1", out_channels)
        previous = widths

    final_channels = sum(previous)
    conv("head.0", final_channels, final_channels, 1, bias=True)
    batch_norm("head.1", final_channels)
    conv("head.3", final_channels, num_joints, extra["FINAL_CONV_KERNEL"], bias=True)
    return shapes


def _parameter_count(shapes: dict[str, tuple[int, ...]]) -> int:
    buffers = (".running_mean", ".running_var", ".num_batches_tracked")
    return sum(int(np.prod(shape)) for key, shape in shapes.items() if not key.endswith(buffers))


def test_hrnet_state_dict_matches_the_official_w18_checkpoint_layout():
    expected = official_hrnet_state_dict_shapes(OFFICIAL_W18_EXTRA, num_joints=98)
    with torch.device("meta"):
        model = build_model("hrnetv2_w18", 98)
    actual = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert sorted(set(expected) - set(actual)) == []  # missing keys
    assert sorted(set(actual) - set(expected)) == []  # unexpected keys
    assert actual == expected
    assert list(actual) == list(expected)  # also registered in the official order

    # Spot checks written out by hand from the official code.
    assert expected["head.0.weight"] == (270, 270, 1, 1) and expected["head.0.bias"] == (270,)
    assert expected["head.3.weight"] == (98, 270, 1, 1) and expected["head.3.bias"] == (98,)
    assert expected["transition1.0.0.weight"] == (18, 256, 3, 3)
    assert expected["transition1.1.0.0.weight"] == (36, 256, 3, 3)
    assert expected["transition3.3.0.0.weight"] == (144, 72, 3, 3)
    assert expected["stage4.2.fuse_layers.3.0.2.0.weight"] == (144, 18, 3, 3)
    assert expected["stage4.2.fuse_layers.0.3.0.weight"] == (18, 144, 1, 1)
    assert expected["layer1.0.downsample.0.weight"] == (256, 64, 1, 1)
    assert expected["bn1.num_batches_tracked"] == ()
    assert "stage4.0.fuse_layers.0.0.0.weight" not in expected  # i == j is None in the official ModuleList

    # HRNetV2-W18 with 98 points: 9.66 M parameters (the README rounds the 17-point backbone to 9.3 M).
    parameters = _parameter_count(expected)
    assert parameters == count_parameters(model) == 9_662_528


def test_hrnet_state_dict_loads_strictly_into_a_fresh_model():
    # What loading HR18-WFLW.pth does: strict load of a same-layout state dict, buffers included.
    torch.manual_seed(0)
    source = build_model("hrnetv2_w18", 68, input_size=64)
    target = build_model("hrnetv2_w18", 68, input_size=64)
    target.load_state_dict(source.state_dict(), strict=True)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(target.eval()(images), source.eval()(images))


# --- python -m train.models ----------------------------------------------------------------------


def test_complexity_command_prints_markdown_and_writes_json(tmp_path, capsys):
    path = tmp_path / "m.json"
    assert main(["--json", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "| model | input | heatmap | params (M) | GFLOPs |" in printed
    payload = json.loads(path.read_text())
    assert payload["num_points"] == 98
    rows = {row["model"]: row for row in payload["models"]}
    assert set(rows) == set(list_models())
    for name, row in rows.items():
        assert f"| {name} |" in printed
        assert row["parameters"] > 0 and row["gflops"] == pytest.approx(2 * row["macs"] / 1e9)
        assert row["heatmap_size"] * model_info(name).heatmap_stride == row["input_size"]
    assert rows["hrnetv2_w18"]["parameters"] == 9_662_528
    assert rows["mobilenetv3_edge"]["gflops"] < rows["resnet18_deconv"]["gflops"] / 20


def test_complexity_command_rejects_unknown_models(capsys):
    assert main(["--models", "mobilenet_edge"]) == 2
    assert "Did you mean 'mobilenetv3_edge'?" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("name", list_models())
def test_every_model_exports_to_onnx_with_dynamic_batch(name, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    size = SMALLEST_INPUT.get(name, model_info(name).input_size)
    torch.manual_seed(0)
    model = build_model(name, 68, input_size=size).eval()
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, size, size),),
        str(path),
        input_names=["input"],
        output_names=["heatmaps"],
        dynamic_axes={"input": {0: "batch"}, "heatmaps": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    images = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = model(images).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (actual,) = session.run(None, {"input": images.numpy()})
    assert actual.shape == expected.shape
    assert np.abs(actual - expected).max() < 1e-4 * max(1.0, float(np.abs(expected).max()))
