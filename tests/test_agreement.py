"""Label-free error (runtime.agreement) and export.verify's gates on it, with the real PFLD model, faces and video."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from export import verify as verify_cli
from export.artifact import save_artifact
from runtime.agreement import (
    AgreementError,
    check_comparable,
    compare,
    face_inputs,
    join,
    predict_points,
    video_inputs,
)
from runtime.annotations import read_pts_folder
from runtime.backends.registry import load_backend
from runtime.card import read_card
from runtime.landmarker import Landmarker
from tests.conftest import HAS_OPENVINO, one_error_line

onnx = pytest.importorskip("onnx", reason="the perturbed models are made with the `onnx` package")
from onnx import numpy_helper  # noqa: E402

VIDEO_FRAMES = 12  # enough for real tracking (detect, then track) and still fast
VERIFY_EVERY = "10"  # 28 of the 275 frames in the verify runs


@pytest.fixture(scope="module")
def reference(pfld_artifact):
    with load_backend(pfld_artifact) as backend:
        yield Landmarker(backend)


@pytest.fixture(scope="module")
def inputs(reference, faces68_dir, video_frames):
    """Every 3rd of the first 12 frames (cut from the reference's own landmarks) and four annotated faces."""
    frames = video_inputs(video_frames[:VIDEO_FRAMES], reference, "face_closeup.mp4", every=3)
    faces = face_inputs(read_pts_folder(faces68_dir)[:4], reference.card)
    return join(frames, faces)


def _perturbed(pfld_artifact, folder, name: str, edit) -> str:
    """A copy of the PFLD artifact (same card) with ``edit(initializers by name, graph)`` applied to its weights."""
    model = onnx.load(str(pfld_artifact))
    edit({init.name: init for init in model.graph.initializer}, model.graph)
    path = folder / name
    save_artifact(model, read_card(pfld_artifact), path)  # the card's model hash follows the edited weights
    return str(path)


def _scale_weight(initializers, node, factor: float, index=None) -> None:
    tensor = initializers[node.input[1]]
    weight = numpy_helper.to_array(tensor).copy()
    if index is None:
        weight *= factor
    else:
        weight[index] *= factor
    tensor.CopyFrom(numpy_helper.from_array(weight, tensor.name))


def _first(graph, op_type: str):
    return next(node for node in graph.node if node.op_type == op_type)


def test_inputs_are_named_and_cut_from_the_reference(inputs):
    assert inputs.names == [
        "face_closeup.mp4#0", "face_closeup.mp4#3", "face_closeup.mp4#6", "face_closeup.mp4#9",
        "aflw2000_image00050.jpg", "aflw2000_image00251.jpg", "aflw2000_image00475.jpg", "aflw2000_image00516.jpg",
    ]  # fmt: skip
    assert inputs.counts() == {"frame": 4, "face": 4, "skipped": 0}
    assert inputs.inputs.shape == (8, 3, 112, 112) and inputs.inputs.dtype == np.float32
    assert np.isfinite(inputs.inputs).all()


def test_identical_artifacts_agree_exactly(pfld_artifact, reference, inputs):
    # A second, separately loaded session of the same artifact: same tensors in, same points out.
    with load_backend(pfld_artifact) as backend:
        result = compare(Landmarker(backend), reference, inputs)
    for norm in ("inter_ocular", "box"):
        assert result[norm]["mean"] == result[norm]["p95"] == result[norm]["max"] == 0.0
        assert result[norm]["non_finite"] == 0
    assert [entry["input"] for entry in result["per_input"]] == inputs.names


@pytest.mark.skipif(not HAS_OPENVINO, reason="needs the `openvino` package (pip install edgemark[openvino])")
def test_fp16_ir_is_small_but_not_zero(pfld_artifact, reference, inputs, tmp_path):
    from export import openvino as openvino_cli

    ir = tmp_path / "pfld_fp16.xml"
    assert openvino_cli.main([str(pfld_artifact), "-o", str(ir), "--fp16"]) == 0
    with load_backend(ir) as backend:
        result = compare(Landmarker(backend), reference, inputs)
    io = result["inter_ocular"]
    # Measured: mean about 0.3 % of the inter-ocular distance, well under a pixel.
    assert 0 < io["mean"] <= io["p95"] <= io["max"] < 1.5
    assert 0 < result["box"]["mean"] < io["mean"]  # the box is wider than the eye span


def test_perturbed_weights_move_points_and_the_worst_inputs_are_named(pfld_artifact, reference, inputs, tmp_path):
    scale_head = lambda weights, graph: _scale_weight(weights, _first(graph, "Gemm"), 1.3)  # noqa: E731
    scaled = _perturbed(pfld_artifact, tmp_path, "head_scaled.onnx", scale_head)
    with load_backend(scaled) as backend:
        result = compare(Landmarker(backend), reference, inputs, worst=3)
    io = result["inter_ocular"]
    assert io["mean"] > 1 and io["non_finite"] == 0
    values = {entry["input"]: entry["inter_ocular"] for entry in result["per_input"]}
    assert [w["input"] for w in io["worst"]] == sorted(values, key=values.get, reverse=True)[:3]
    assert io["max"] == io["worst"][0]["nme"] == max(values.values())


def test_a_model_of_another_input_is_refused(pfld_artifact):
    card = read_card(pfld_artifact)
    other = dataclasses.replace(card, input_size=128)
    with pytest.raises(AgreementError, match="input size"):
        check_comparable(other, card)


def test_predict_points_on_no_input(reference):
    from runtime.agreement import LabelFreeInputs

    assert predict_points(reference, LabelFreeInputs.empty(reference.card)).shape == (0, 98, 2)


# --------------------------------------------------------------------------------------------------
# export.verify


def _verify(artifact, reference_artifact, faces68_dir, face_video, json_path, *flags) -> tuple[int, dict]:
    status = verify_cli.main(
        [str(artifact), "--reference", str(reference_artifact), "--images", str(faces68_dir),
         "--video", str(face_video), "--video-every", VERIFY_EVERY, "--json", str(json_path), *flags]
    )  # fmt: skip
    return status, json.loads(json_path.read_text())


def test_verify_against_itself_is_exactly_zero_and_names_frames(
    pfld_artifact, faces68_dir, face_video, tmp_path, capsys
):
    status, report = _verify(pfld_artifact, pfld_artifact, faces68_dir, face_video, tmp_path / "self.json")
    assert status == 0 and "PASS" in capsys.readouterr().out
    free = report["label_free"]
    assert free["counts"] == {"frame": 28, "face": 12, "skipped": 0}
    assert free["inter_ocular"]["max"] == free["box"]["max"] == 0.0
    frames = [entry["input"] for entry in free["per_input"] if "#" in entry["input"]]
    assert frames[:3] == ["face_closeup.mp4#0", "face_closeup.mp4#10", "face_closeup.mp4#20"]
    assert report["video_every"] == 10 and report["budgets"]["max_label_free_p95"] == 2.0


def test_label_free_gate_catches_what_the_annotated_faces_miss(
    pfld_artifact, faces68_dir, face_video, tmp_path, capsys
):
    """First conv's weights x1.3 (a mis-scaled first layer): on the 12 annotated faces the NME moves by
    +0.2 points (inter-ocular; +0.1 box), inside the 0.5 budget, but the points move by 2.6 % of the
    inter-ocular distance at p95 over faces and frames (measured), which the label-free gate catches."""
    scale_first_conv = lambda weights, graph: _scale_weight(weights, _first(graph, "Conv"), 1.3)  # noqa: E731
    scaled = _perturbed(pfld_artifact, tmp_path, "first_conv_scaled.onnx", scale_first_conv)
    # --max-abs 1: judged as a converted (e.g. INT8) artifact is, by NME change and agreement only.
    status, report = _verify(scaled, pfld_artifact, faces68_dir, face_video, tmp_path / "scaled.json", "--max-abs", "1")
    printed = capsys.readouterr()
    assert abs(report["nme_change"]) < 0.5 and abs(report["nme_change_box"]) < 0.5
    assert report["label_free"]["inter_ocular"]["p95"] > 2.0
    assert status == 1 and report["passed"] is False
    # The label-free gate is the only one that fails: the labelled gates alone would let it through.
    assert len(report["failures"]) == 1 and report["failures"][0].startswith("label-free p95")
    assert "label-free p95" in one_error_line(printed)
    worst = report["label_free"]["inter_ocular"]["worst"]
    assert len(worst) == 5 and all(w["input"] in printed.out for w in worst)


def test_nan_model_fails_verify(pfld_artifact, faces68_dir, tmp_path, capsys):
    def poison(initializers, graph):
        tensor = initializers[_first(graph, "Gemm").input[1]]
        weight = numpy_helper.to_array(tensor).copy()
        weight[0, 0] = np.nan  # the first output coordinate is NaN for every input
        tensor.CopyFrom(numpy_helper.from_array(weight, tensor.name))

    nan_model = _perturbed(pfld_artifact, tmp_path, "nan.onnx", poison)
    status = verify_cli.main(
        [nan_model, "--reference", str(pfld_artifact), "--images", str(faces68_dir), "--max-abs", "1e9",
         "--max-nme-change", "1e9", "--max-label-free-p95", "1e9", "--json", str(tmp_path / "nan.json")]
    )  # fmt: skip
    printed = capsys.readouterr()
    assert status == 1 and "PASS" not in printed.out
    report = json.loads((tmp_path / "nan.json").read_text())
    failures = "; ".join(report["failures"])
    assert "non-finite (NaN/inf) output values" in failures and "label-free NME is non-finite on 12 inputs" in failures
    assert report["label_free"]["inter_ocular"]["non_finite"] == 12


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--video-every", "0"], "--video-every 0"),
        (["--max-label-free-p95", "-1"], "--max-label-free-p95 -1"),
        (["--video", "no_such.mp4"], "--video no_such.mp4"),
    ],
)
def test_verify_bad_flags_are_one_line(pfld_artifact, faces68_dir, capsys, flags, expected):
    argv = [str(pfld_artifact), "--reference", str(pfld_artifact), "--images", str(faces68_dir), *flags]
    assert verify_cli.main(argv) == 2
    assert expected in one_error_line(capsys.readouterr())


def test_layers_point_down():
    """runtime <- export <- calib: the label-free code in runtime imports neither export nor calib (not even
    lazily), and export's verification does not import calib (which is why verify has no style variants)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    forbidden = {
        "runtime/agreement.py": {"export", "calib", "train", "torch"},
        "runtime/face_crops.py": {"export", "calib", "train", "torch"},
        **{f"runtime/report/{path.name}": {"export", "calib"} for path in (root / "runtime" / "report").glob("*.py")},
        "export/evaluation.py": {"calib"},
        "export/verify.py": {"calib"},
    }
    assert "runtime/report/measure.py" in forbidden  # the report package is checked, file by file
    for path, packages in forbidden.items():
        imported = set()
        for node in ast.walk(ast.parse((root / path).read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
        assert not imported & packages, f"{path} imports {sorted(imported & packages)}"
