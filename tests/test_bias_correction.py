"""Bias correction of Q/DQ models and the range convergence check, on the real PFLD-GhostOne.

The calibration array comes from style proxies of pseudo-labelled frames of the real video (the
README's pipeline, small); held-out inputs are whole source images the correction never saw.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from export import ort as ort_cli
from export.bias_correction import bias_corrected, output_shifts, with_own_biases
from export.calibration import read_calibration_array
from export.encodings import qdq_from_ranges
from export.mixed_precision import validation_split
from export.ort_quantize import Int8Config, nodes_kept_float, prepared_for_quantization, range_table
from export.qdq import check_trt_ready
from export.range_convergence import range_convergence
from runtime.card import read_card
from tests.conftest import left_in, one_error_line


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bias_correction")


@pytest.fixture(scope="module")
def split(video_calib) -> tuple[np.ndarray, np.ndarray]:
    """(calibration inputs, held-out inputs): whole source frames held out."""
    calibration = read_calibration_array(video_calib)
    held_out = validation_split(calibration.manifest["samples"], len(calibration), 0.25)
    return calibration.inputs[~held_out], calibration.inputs[held_out]


@pytest.fixture(scope="module")
def models(pfld_artifact, video_calib, split) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """(float model, its s8s8 Q/DQ model calibrated on the calibration part of the split)."""
    from export.calibration import CalibrationSet

    float_model = prepared_for_quantization(onnx.load(str(pfld_artifact)))
    config = Int8Config(model=pfld_artifact, calibration=video_calib, output=Path("unused.onnx"))
    table = range_table(float_model, CalibrationSet(split[0]), read_card(pfld_artifact).input_name, config, "")
    return float_model, qdq_from_ranges(float_model, table, True, nodes_kept_float(float_model, ()))


@pytest.fixture(scope="module")
def corrected(models, split) -> tuple[onnx.ModelProto, dict]:
    float_model, qdq = models
    return bias_corrected(qdq, float_model, split[0][:16])


def test_bias_correction_reduces_the_mean_output_shift_on_held_out_inputs(models, split, corrected):
    float_model, qdq = models
    model, record = corrected
    before = output_shifts(qdq, float_model, split[1])
    after = output_shifts(model, float_model, split[1])
    assert before.keys() == after.keys() and len(before) == 52  # 51 Conv + the Gemm head
    mean_before = np.mean([np.abs(shift).mean() for shift in before.values()])
    mean_after = np.mean([np.abs(shift).mean() for shift in after.values()])
    # Measured on held-out frames: the per-channel mean shift falls to well under half (16 samples
    # measured it; 0.0086 -> 0.0022 of the float outputs' RMS with this pipeline's full array).
    assert mean_after < 0.5 * mean_before, (mean_before, mean_after)
    assert record["mode"] == "sequential" and record["layers"] == 52 and record["samples"] == 16
    assert record["relative_shift_after"] < 0.25 * record["relative_shift_before"]
    # What the model outputs moved towards the float model's too, so the correction was applied.
    assert record["applied"] and record["output_error_after"] < record["output_error_before"]
    assert record["biases_added"] == ["Conv_109"]  # conv8 has no bias of its own


def test_bias_correction_changes_float_biases_only_and_stays_trt_ready(models, corrected):
    _, qdq = models
    model, _ = corrected
    assert check_trt_ready(model) == []
    assert [node.op_type for node in model.graph.node] == [node.op_type for node in qdq.graph.node]
    before = {tensor.name: numpy_helper.to_array(tensor) for tensor in qdq.graph.initializer}
    after = {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}
    changed = sorted(name for name in before if not np.array_equal(before[name], after[name]))
    _, layers, _ = with_own_biases(qdq, models[0])
    biases = {layer.bias for layer in layers}
    assert set(changed) <= biases and len(changed) > 40
    assert set(after) - set(before) == {"Conv_109_bias_corrected"}
    assert all(after[name].dtype == np.float32 for name in biases)


def test_all_at_once_correction_over_corrects(models, split, corrected):
    """Measuring every shift on the uncorrected model counts upstream shifts again downstream."""
    float_model, qdq = models
    _, record = bias_corrected(qdq, float_model, split[0][:16], mode="all_at_once")
    assert record["relative_shift_after"] > corrected[1]["relative_shift_after"]


def test_convergence_report_shape_and_shrinking_changes(pfld_artifact, video_calib):
    config = Int8Config(model=pfld_artifact, calibration=video_calib, output=Path("unused.onnx"), validation_samples=16)
    report = range_convergence(config, sizes=(8, 32), repeats=1)
    rows = report["rows"]
    assert [row["samples"] for row in rows] == [8, 32, report["pool"]]
    assert report["pool"] > 32 and report["validation_inputs"] == 16
    changes = [row["max_relative_change"] for row in rows]
    medians = [row["median_relative_change"] for row in rows]
    # MinMax over nested subsets only widens bounds: the differences shrink, to none at the pool.
    assert changes == sorted(changes, reverse=True) and medians == sorted(medians, reverse=True)
    assert changes[-1] == 0 and changes[0] > 0
    assert all(np.isfinite(row["label_free_nme"]) and row["label_free_nme"] > 0 for row in rows)
    json.dumps(report)


@pytest.mark.slow
def test_convergence_cli_prints_a_table_and_writes_nothing(work, pfld_artifact, video_calib, capsys):
    before = left_in(work)
    assert ort_cli.main(["--int8", str(pfld_artifact), "--calib", str(video_calib), "--convergence", "16,32"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split()[0] == "samples" and [line.split()[0] for line in table[2:]][:2] == ["16", "32"]
    assert left_in(work) == before


def test_output_defaults_to_int8_beside_the_model(tmp_path, pfld_artifact, video_calib, capsys):
    """Without -o the INT8 model is <model>_int8.onnx beside the model (issue 13), named when written."""
    import shutil

    from runtime.card import sidecar_path

    model = tmp_path / "pfld.onnx"
    shutil.copyfile(pfld_artifact, model)
    shutil.copyfile(sidecar_path(pfld_artifact), sidecar_path(model))
    assert ort_cli.main(["--int8", str(model), "--calib", str(video_calib)]) == 0
    assert read_card(tmp_path / "pfld_int8.onnx").precision == "int8"
    assert f"wrote {tmp_path / 'pfld_int8.onnx'}" in capsys.readouterr().out


@pytest.mark.slow
def test_bias_correction_cli_records_it_in_the_card(work, pfld_artifact, video_calib):
    output = work / "pfld_bc.onnx"
    assert ort_cli.main(
        ["--int8", str(pfld_artifact), "--calib", str(video_calib), "--bias-correction", "--encoding", "s8s8",
         "-o", str(output)]
    ) == 0  # fmt: skip
    quantization = read_card(output).extra["quantization"]
    assert quantization["bias"] == "float, bias-corrected"
    record = quantization["bias_correction"]
    assert record["layers"] == 52 and record["relative_shift_after"] < record["relative_shift_before"]
    assert check_trt_ready(onnx.load(str(output))) == []


@pytest.mark.slow
def test_bias_correction_is_not_applied_where_it_moves_the_output_away(work, openseeface_onnx, faces68_dir):
    """OpenSeeFace's heatmap network: every layer's mean shift falls, its output moves away from the
    float model's (hard-swish, squeeze-excitation gates, peak-cell decoding), so the model is kept."""
    from export.calibration import calibration_array_from_faces
    from export.onnx import main as export_onnx
    from runtime.zoo import OPENSEEFACE_IMPORT_FLAGS

    artifact = work / "openseeface.onnx"
    assert export_onnx(["--import", str(openseeface_onnx), "-o", str(artifact), *OPENSEEFACE_IMPORT_FLAGS]) == 0
    calibration = calibration_array_from_faces(faces68_dir, read_card(artifact))
    float_model = prepared_for_quantization(onnx.load(str(artifact)))
    config = Int8Config(model=artifact, calibration=Path("unused.npz"), output=Path("unused.onnx"))
    table = range_table(float_model, calibration, read_card(artifact).input_name, config, "")
    qdq = qdq_from_ranges(float_model, table, True, nodes_kept_float(float_model, ()))
    model, record = bias_corrected(qdq, float_model, calibration.inputs)
    assert record["relative_shift_after"] < 0.1 * record["relative_shift_before"]
    assert record["output_error_after"] > record["output_error_before"]
    assert not record["applied"] and "kept uncorrected" in record["reason"]
    assert model.graph == qdq.graph
