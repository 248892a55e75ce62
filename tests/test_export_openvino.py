"""OpenVINO IR export on the real PFLD-GhostOne model and real annotated faces (faces68).

FP32 IR parity with ONNX Runtime on real face crops, FP16 weights, NNCF INT8 judged by the NME change
on faces held out from calibration (calibration: the 6 even-indexed faces, NME: the 6 odd-indexed),
the Q/DQ ONNX from export.ort read by OpenVINO, NNCF's accuracy control (slow), and one-line errors
that leave no partial .xml/.bin behind.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino", reason="needs the `openvino` package (pip install edgemark[openvino])")
pytest.importorskip("nncf", reason="needs the `nncf` package (pip install edgemark[openvino])")

from export import openvino as openvino_cli
from export import openvino_export
from export import ort as ort_cli
from export.calibration import calibration_array_from_faces, write_calibration_array
from export.evaluation import nme
from runtime.face_crops import crop_faces
from runtime.landmarker import frame_points
from export.openvino_export import (
    IrConfig,
    ir_from_onnx,
    nme_validation_fn,
    validation_items,
)
from conftest import left_in, one_error_line
from runtime.zoo import PFLD_IMPORT_FLAGS
from runtime.annotations import read_pts_folder
from runtime.backends import open_model
from runtime.card import ir_card, read_card, sidecar_path
from runtime.errors import UsageError

PFLD_CARD_FLAGS = list(PFLD_IMPORT_FLAGS)  # the card flags of the data README, kept once in runtime.zoo




@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("openvino")


@pytest.fixture(scope="module")
def all_crops(pfld, faces68_dir):
    return crop_faces(read_pts_folder(faces68_dir), read_card(pfld))


@pytest.fixture(scope="module")
def fp32_ir(work, pfld, split_faces) -> Path:
    output = work / "ir" / "pfld_fp32.xml"
    assert openvino_cli.main([str(pfld), "-o", str(output), "--val-faces", str(split_faces[1])]) == 0
    return output


def _onnx_output(model: Path, inputs: np.ndarray) -> np.ndarray:
    with open_model(model) as runner:
        return runner.run(inputs)


def _ir_output(model: Path, inputs: np.ndarray) -> np.ndarray:
    with open_model(model, inference_precision="f32") as runner:
        return runner.run(inputs)


# --------------------------------------------------------------------------------------------------
# float IRs


def test_fp32_ir_matches_onnxruntime_on_real_faces(fp32_ir, pfld, all_crops, capsys):
    assert fp32_ir.is_file() and fp32_ir.with_suffix(".bin").is_file() and sidecar_path(fp32_ir).is_file()
    difference = float(np.max(np.abs(_ir_output(fp32_ir, all_crops.inputs) - _onnx_output(pfld, all_crops.inputs))))
    with capsys.disabled():
        print(
            f"\nOpenVINO FP32 IR vs ONNX Runtime FP32 on {len(all_crops.inputs)} faces68 crops: max abs {difference:.2e}"
        )
    assert difference <= 1e-4

    card = read_card(fp32_ir)
    onnx_card = read_card(pfld)
    assert (card.format, card.precision) == ("openvino", "fp32")
    assert card.extra["openvino"] == {"weights": "fp32", "compress_to_fp16": False, "int8_from": None}
    # Everything that says how to use the model is the ONNX card's.
    for name in ("layout", "num_points", "input_size", "input_name", "normalisation", "crop_rule", "output_kind"):
        assert getattr(card, name) == getattr(onnx_card, name)
    assert card.extra["parent"] == str(pfld) and "openvino" in card.tools
    assert ir_card(fp32_ir) == card  # embedded in rt_info too
    # save_model compresses to FP16 by default; this IR must really hold FP32 weights.
    assert fp32_ir.with_suffix(".bin").stat().st_size > 0.95 * pfld.stat().st_size
    evaluation = card.extra["evaluation"]
    assert evaluation["faces"] == 6 and evaluation["max_abs_output_diff"] <= 1e-4
    assert abs(evaluation["nme_change"]) < 1e-3


def test_fp16_ir_runs_with_a_small_difference(work, pfld, fp32_ir, all_crops, split_faces, capsys):
    output = work / "ir" / "pfld_fp16.xml"
    assert openvino_cli.main([str(pfld), "-o", str(output), "--fp16", "--val-faces", str(split_faces[1])]) == 0
    card = read_card(output)
    assert card.precision == "fp16" and card.extra["openvino"]["weights"] == "fp16"
    assert output.with_suffix(".bin").stat().st_size < 0.6 * fp32_ir.with_suffix(".bin").stat().st_size
    reference = _onnx_output(pfld, all_crops.inputs)
    fp16 = _ir_output(output, all_crops.inputs)
    difference = float(np.max(np.abs(fp16 - reference)))
    change = card.extra["evaluation"]["nme_change"]
    with capsys.disabled():
        print(
            f"\nOpenVINO FP16-weight IR: max abs {difference:.2e} on 12 faces, NME change {change:+.4f} on 6 held out"
        )
    assert 0 < difference < 1e-2
    assert abs(change) < 0.05


def test_validation_fn_is_negated_nme_of_export_evaluation(fp32_ir, pfld, split_faces):
    """NNCF maximises its metric; the function must give -NME (percent), per face as well."""
    import openvino as ov

    card = read_card(pfld)
    crops = crop_faces(read_pts_folder(split_faces[1]), card)
    compiled = ov.Core().compile_model(str(fp32_ir), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    metric, per_face = nme_validation_fn(card)(compiled, validation_items(crops))
    expected = nme(frame_points(_onnx_output(pfld, crops.inputs), card, crops.matrices), crops.truth, card) * 100
    assert metric < 0
    np.testing.assert_allclose(-np.array(per_face), expected, atol=1e-4)
    assert metric == pytest.approx(-expected.mean(), abs=1e-4)
    # One face at a time (how NNCF ranks layers) gives that face's value.
    single, values = nme_validation_fn(card)(compiled, validation_items(crops)[:1])
    assert single == pytest.approx(per_face[0]) and len(values) == 1


# --------------------------------------------------------------------------------------------------
# INT8


def test_nncf_int8_nme_change_on_held_out_faces(work, pfld, calib, split_faces, capsys):
    results = {}
    for name, extra in (("default", []), ("first_conv_and_head_float", ["--ignore-first-conv-and-head"])):
        output = work / "ir" / f"pfld_int8_{name}.xml"
        command = [str(pfld), "-o", str(output), "--int8", "--calib", str(calib), "--val-faces", str(split_faces[1])]
        assert openvino_cli.main(command + extra) == 0
        card = read_card(output)
        assert (card.format, card.precision) == ("openvino", "int8")
        assert card.calibration["method"] == "nncf_ptq" and card.calibration["count"] == 6
        assert card.calibration["sources"] == {"real": 6} and card.calibration["subset_size"] == 6
        assert card.tools.get("nncf")
        results[name] = card
    default, kept = results["default"], results["first_conv_and_head_float"]
    assert default.calibration["ignored"] == []
    assert len(kept.calibration["ignored"]) == 2
    with capsys.disabled():
        for name, card in results.items():
            evaluation = card.extra["evaluation"]
            scores = evaluation["nme_inter_ocular"]
            print(
                f"\nNNCF INT8 ({name}) on 6 held-out faces: NME {scores['ir']:.3f} % vs FP32 {scores['reference']:.3f} % "
                f"({evaluation['nme_change']:+.3f} points), max abs {evaluation['max_abs_output_diff']:.3f}"
            )
    # Measured here: default +5.0 points (the Gemm head quantized), head and first conv in float +0.5.
    assert 0 < default.extra["evaluation"]["max_abs_output_diff"] < 0.5
    assert default.extra["evaluation"]["nme_change"] < 8.0
    assert kept.extra["evaluation"]["nme_change"] < 1.5


def test_float_types_and_minmax_ranges(work, pfld, calib):
    """--float-types leaves every operation of those types unquantized (no FakeQuantize on their weights
    or inputs); --activation-ranges minmax is NNCF's global min/max; both go into the card."""
    import openvino as ov

    output = work / "ir" / "pfld_int8_depthwise_float.xml"
    command = [str(pfld), "-o", str(output), "--int8", "--calib", str(calib), "--preset", "mixed"]
    assert openvino_cli.main(command + ["--float-types", "GroupConvolution", "--activation-ranges", "minmax"]) == 0
    card = read_card(output)
    assert card.calibration["float_types"] == ["GroupConvolution"]
    assert card.calibration["activation_ranges"] == "minmax"
    ops = ov.Core().read_model(str(output)).get_ordered_ops()
    depthwise = [op for op in ops if op.get_type_name() == "GroupConvolution"]
    assert depthwise  # PFLD-GhostOne's ghost modules are depthwise convolutions
    for op in depthwise:
        readers = {value.get_node().get_type_name() for value in op.input_values()}
        assert "FakeQuantize" not in readers, op.get_friendly_name()
    assert any(op.get_type_name() == "FakeQuantize" for op in ops)  # the rest is INT8


def test_unknown_float_type_is_refused(tmp_path, pfld, calib, capsys):
    out = tmp_path / "out"
    command = [str(pfld), "-o", str(out / "m.xml"), "--int8", "--calib", str(calib), "--float-types", "GroupConvolutoin"]
    assert openvino_cli.main(command) == 2
    line = one_error_line(capsys.readouterr())
    assert "GroupConvolutoin" in line and "GroupConvolution" in line
    assert left_in(out) == []


def test_keep_head_float_ignores_the_regression_head(work, pfld, calib, split_faces):
    """--keep-head-float leaves PFLD's fully-connected head in float: the whole-map convolution and the
    pools and reshapes whose outputs the Gemm reads, not just the Gemm."""
    output = work / "ir" / "pfld_int8_head_float.xml"
    command = [str(pfld), "-o", str(output), "--int8", "--calib", str(calib), "--val-faces", str(split_faces[1])]
    assert openvino_cli.main(command + ["--preset", "mixed", "--keep-head-float"]) == 0
    card = read_card(output)
    ignored = card.calibration["ignored"]
    assert {"Conv_109", "Concat_112", "AveragePool_97"} <= set(ignored) and "Gemm_113/WithoutBiases" in ignored
    assert not any(name.startswith("Conv_2") for name in ignored)  # feature convolutions stay INT8
    assert card.calibration["preset"] == "mixed"
    assert card.extra["evaluation"]["nme_change"] < 1.0


def test_qdq_onnx_read_by_openvino(work, pfld, calib, split_faces, capsys):
    import openvino as ov

    qdq = work / "pfld_qdq.onnx"
    assert ort_cli.main(["--int8", str(pfld), "--calib", str(calib), "-o", str(qdq)]) == 0
    output = work / "ir" / "pfld_qdq.xml"
    assert openvino_cli.main([str(qdq), "-o", str(output), "--val-faces", str(split_faces[1])]) == 0
    card, qdq_card = read_card(output), read_card(qdq)
    assert card.precision == "int8" and card.extra["openvino"]["int8_from"] == "onnx_qdq"
    assert card.calibration == qdq_card.calibration  # one calibration, copied
    assert card.extra["quantization"] == qdq_card.extra["quantization"]
    ops = {op.get_type_name() for op in ov.Core().read_model(str(output)).get_ordered_ops()}
    assert "FakeQuantize" in ops
    # The file's float layers are FP32: the IR asks for them so, and the runtime backend obeys the card
    # (OpenVINO's own default is bf16 on CPUs with AVX-512 BF16 or AMX).
    assert card.extra["openvino"]["inference_precision"] == "f32"
    from runtime.backends.registry import load_backend

    with load_backend(output) as backend:
        assert backend.inference_precision == "f32"

    # The reference of this evaluation is the same Q/DQ model run by ONNX Runtime.
    evaluation = card.extra["evaluation"]
    held_out = crop_faces(read_pts_folder(split_faces[1]), card)
    fp32_points = frame_points(_onnx_output(pfld, held_out.inputs), card, held_out.matrices)
    fp32 = nme(fp32_points, held_out.truth, card).mean() * 100
    scores = evaluation["nme_inter_ocular"]
    with capsys.disabled():
        print(
            f"\nQ/DQ INT8 on 6 held-out faces: OpenVINO {scores['ir']:.3f} %, ONNX Runtime {scores['reference']:.3f} %, "
            f"FP32 {fp32:.3f} %; OpenVINO vs ONNX Runtime max abs {evaluation['max_abs_output_diff']:.3f}"
        )
    assert abs(evaluation["nme_change"]) < 0.75
    assert evaluation["max_abs_output_diff"] < 0.1


@pytest.mark.slow
def test_accuracy_control_meets_the_nme_budget(work, pfld, calib, split_faces, capsys):
    output = work / "ir" / "pfld_int8_accuracy_control.xml"
    command = [str(pfld), "-o", str(output), "--int8", "--calib", str(calib)]
    assert openvino_cli.main(command + ["--max-nme-drop", "0.5", "--val-faces", str(split_faces[1])]) == 0
    card = read_card(output)
    control = card.calibration["accuracy_control"]
    with capsys.disabled():
        print(
            f"\nNNCF accuracy control (max drop 0.5): NME {control['nme_int8']:.3f} % vs float {control['nme_float']:.3f} % "
            f"({control['nme_drop']:+.3f}), {control['fake_quantize_nodes']} FakeQuantize nodes left"
        )
    assert control["nme_drop"] <= 0.5
    assert card.extra["evaluation"]["nme_change"] <= 0.5 + 1e-6


# --------------------------------------------------------------------------------------------------
# errors: one line, non-zero, nothing left behind


def test_missing_and_corrupt_model(tmp_path, capsys):
    out = tmp_path / "out"
    assert openvino_cli.main([str(tmp_path / "absent.onnx"), "-o", str(out / "m.xml")]) == 1
    assert "not found" in one_error_line(capsys.readouterr())
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07garbage" * 50)
    assert openvino_cli.main([str(corrupt), "-o", str(out / "m.xml")]) == 1
    one_error_line(capsys.readouterr())
    assert left_in(out) == []


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--int8"], "--int8 needs calibration images and none are at hand"),
        (["--calib", "c.npz"], "only make sense with --int8"),
        (["--preset", "mixed"], "--preset only make sense with --int8"),
        (["--ignore-first-conv-and-head"], "only make sense with --int8"),
        (["--float-types", "GroupConvolution"], "only make sense with --int8"),
        (["--activation-ranges", "minmax"], "only make sense with --int8"),
        (["--int8", "--calib", "c.npz", "--fp16"], "--fp16 cannot be combined with --int8"),
        (["--int8", "--calib", "c.npz", "--max-nme-drop", "0.5"], "--max-nme-drop needs --val-faces"),
        (["--int8", "--calib", "c.npz", "--subset-size", "0"], "--subset-size must be at least 1"),
    ],
)
def test_bad_flag_combinations_exit_2(tmp_path, pfld, flags, expected, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./pseudo frames to calibrate on by default
    out = tmp_path / "out"
    assert openvino_cli.main([str(pfld), "-o", str(out / "m.xml"), *flags]) == 2
    assert expected in one_error_line(capsys.readouterr())
    assert left_in(out) == []


def test_output_must_be_xml(tmp_path, pfld, capsys):
    assert openvino_cli.main([str(pfld), "-o", str(tmp_path / "m.bin")]) == 2
    assert ".xml" in one_error_line(capsys.readouterr())


def test_calibration_too_small(tmp_path, pfld, capsys):
    out = tmp_path / "out"
    empty = tmp_path / "empty.npz"
    write_calibration_array(empty, np.zeros((0, 3, 112, 112), np.float32))
    small = tmp_path / "small.npz"
    write_calibration_array(small, np.zeros((4, 3, 64, 64), np.float32))
    for path, expected in ((empty, "no samples"), (small, "(3, 112, 112)")):
        assert openvino_cli.main([str(pfld), "-o", str(out / "m.xml"), "--int8", "--calib", str(path)]) == 1
        assert expected in one_error_line(capsys.readouterr())
    assert openvino_cli.main([str(pfld), "-o", str(out / "m.xml"), "--int8", "--calib", str(tmp_path / "no.npz")]) == 1
    assert "not found" in one_error_line(capsys.readouterr())
    assert left_in(out) == []


def test_calibration_made_with_another_card(tmp_path, pfld, split_faces, capsys):
    card = read_card(pfld)
    other = card.with_changes(normalisation=dataclasses.replace(card.normalisation, channel_order="RGB"))
    calib = tmp_path / "rgb.npz"
    calibration_array_from_faces(split_faces[0][:2], other, calib)
    out = tmp_path / "out"
    assert openvino_cli.main([str(pfld), "-o", str(out / "m.xml"), "--int8", "--calib", str(calib)]) == 1
    assert "normalisation" in one_error_line(capsys.readouterr())
    assert left_in(out) == []


def test_int8_of_a_qdq_model_is_refused(tmp_path, work, pfld, calib, capsys):
    qdq = tmp_path / "qdq.onnx"
    assert ort_cli.main(["--int8", str(pfld), "--calib", str(calib), "-o", str(qdq)]) == 0
    capsys.readouterr()
    out = tmp_path / "out"
    assert openvino_cli.main([str(qdq), "-o", str(out / "m.xml"), "--int8", "--calib", str(calib)]) == 2
    assert "already INT8 Q/DQ" in one_error_line(capsys.readouterr())
    assert openvino_cli.main([str(qdq), "-o", str(out / "m.xml"), "--fp16"]) == 2
    one_error_line(capsys.readouterr())
    assert left_in(out) == []


def test_a_failed_write_leaves_nothing(tmp_path, pfld, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(openvino_export, "write_card", broken)
    out = tmp_path / "out"
    with pytest.raises(OSError):
        ir_from_onnx(IrConfig(pfld, out / "m.xml"))
    assert left_in(out) == []


def test_missing_nncf_is_reported_before_work(tmp_path, pfld, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nncf" else real(name, *a))
    with pytest.raises(UsageError, match=r"pip install edgemark\[openvino\]"):
        ir_from_onnx(IrConfig(pfld, tmp_path / "m.xml", int8=True, calibration=tmp_path / "c.npz"))
    assert left_in(tmp_path) == []
