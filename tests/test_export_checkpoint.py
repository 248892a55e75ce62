"""Checkpoint -> ONNX export (and the heatmap paths of import, INT8 and verify) on the tiny test net."""
from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from export import onnx as onnx_cli  # noqa: E402
from export import ort as ort_cli  # noqa: E402
from export import verify as verify_cli  # noqa: E402
from export.calibration import calibration_array_from_faces  # noqa: E402
from export.encodings import s8s8_from_u8s8  # noqa: E402
from runtime.backends import open_model  # noqa: E402
from export.onnx_export import onnx_from_checkpoint  # noqa: E402
from export.qdq import check_trt_ready  # noqa: E402
from runtime.card import read_card  # noqa: E402
from train.checkpoint import file_sha256  # noqa: E402
from conftest import write_checkpoint  # noqa: E402

MODEL = "tiny_heatmap"
SIZE = 64


def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _write_checkpoint(path, **overrides):
    from train.models import list_models

    if MODEL not in list_models():
        pytest.skip(f"train.models has no '{MODEL}' model")
    write_checkpoint(path, MODEL, SIZE, **overrides)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return _write_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="module")
def exported(checkpoint, faces68_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    assert onnx_cli.main([str(checkpoint), "-o", str(output), "--parity-images", str(faces68_dir)]) == 0
    return output


def test_checkpoint_export_card_and_parity(exported, checkpoint):
    card = read_card(exported)
    assert (card.layout, card.num_points, card.input_size) == ("ibug68", 68, SIZE)
    assert (card.output_kind, card.heatmap_stride, card.decode, card.input_name) == ("heatmap", 4, "centroid", "input")
    assert card.source_sha256 == file_sha256(checkpoint)
    assert {"torch", "onnx", "onnxruntime"} <= set(card.tools)
    assert card.extra["parity"]["max_abs"] <= 1e-4
    assert card.extra["parity"]["inputs"].startswith("8 real faces")
    model = onnx.load(str(exported))
    assert model.graph.input[0].name == "input" and model.graph.output[0].name == "heatmaps"
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert not any(node.op_type == "BatchNormalization" for node in model.graph.node)
    output = open_model(exported).run(np.zeros((3, 3, SIZE, SIZE), np.float32), batch_size=3)
    assert output.shape == (3, 68, SIZE // 4, SIZE // 4)


def test_library_call_with_random_parity(checkpoint, tmp_path):
    card = onnx_from_checkpoint(checkpoint, tmp_path / "tiny.onnx", opset=13)
    assert card == read_card(tmp_path / "tiny.onnx")
    assert card.extra["opset"] == 13 and card.extra["parity"]["inputs"] == "2 seeded random inputs"


def test_heatmap_int8_and_verify(exported, faces68_dir, tmp_path, capsys):
    calib = tmp_path / "calib.npz"
    calibration_array_from_faces(faces68_dir, read_card(exported), calib)
    int8 = tmp_path / "tiny_int8.onnx"
    assert ort_cli.main(["--int8", str(exported), "--calib", str(calib), "--batch-size", "4", "-o", str(int8)]) == 0
    # export.ort writes ONNX Runtime's u8s8 by default; TensorRT builds its s8s8 form.
    assert check_trt_ready(s8s8_from_u8s8(onnx.load(str(int8)))) == []
    # Random weights: the NME means nothing, but the heatmap decode and back-projection run end to end.
    assert (
        verify_cli.main(
            [str(int8), "--reference", str(exported), "--images", str(faces68_dir), "--max-nme-change", "1000",
             "--max-label-free-p95", "1000"]  # fmt: skip
        )
        == 0
    )
    assert "scored as ibug68" in capsys.readouterr().out


def test_import_heatmap_model_checks_stride(exported, tmp_path, capsys):
    flags = ["--layout", "ibug68", "--input-size", str(SIZE), "--output-kind", "heatmap"]
    good = tmp_path / "imported.onnx"
    assert onnx_cli.main(["--import", str(exported), "-o", str(good), *flags, "--heatmap-stride", "4"]) == 0
    assert read_card(good).batch is None
    capsys.readouterr()
    assert (
        onnx_cli.main(["--import", str(exported), "-o", str(tmp_path / "bad.onnx"), *flags, "--heatmap-stride", "8"])
        == 1
    )
    assert "(1, 68, 8, 8)" in _one_error(capsys)
    assert not (tmp_path / "bad.onnx").exists()


def test_missing_checkpoint(tmp_path, capsys):
    assert onnx_cli.main([str(tmp_path / "none.pt"), "-o", str(tmp_path / "out.onnx")]) == 1
    assert "checkpoint not found" in _one_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_checkpoint_card_mismatch(tmp_path, capsys):
    checkpoint = _write_checkpoint(tmp_path / "wrong_stride.pt", heatmap_stride=2)
    assert onnx_cli.main([str(checkpoint), "-o", str(tmp_path / "out.onnx")]) == 1
    assert "stride 2" in _one_error(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wrong_stride.pt"]


def test_parity_failure_writes_nothing(checkpoint, tmp_path, capsys):
    assert onnx_cli.main([str(checkpoint), "-o", str(tmp_path / "out.onnx"), "--max-abs", "1e-12"]) == 1
    assert "differs from torch" in _one_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_bad_flags(checkpoint, tmp_path, capsys):
    assert onnx_cli.main([str(checkpoint), "-o", str(tmp_path / "out.onnx"), "--opset", "9"]) == 2
    assert "--opset" in _one_error(capsys)
    assert onnx_cli.main([str(checkpoint), "-o", str(tmp_path / "out.txt")]) == 1
    assert ".onnx" in _one_error(capsys)
    if importlib.util.find_spec("onnxsim") is None:
        assert onnx_cli.main([str(checkpoint), "-o", str(tmp_path / "out.onnx"), "--simplify"]) == 2
        assert "onnxsim" in _one_error(capsys)
    assert list(tmp_path.iterdir()) == []
