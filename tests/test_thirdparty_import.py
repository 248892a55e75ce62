"""Two more real third-party models through the import: OpenSeeFace (heatmaps + offset maps, 66
points) and Peppa slim-160 (68 points in the first 136 of 143 outputs), both cropped per axis.

Each import is checked against a straightforward reference written here from the data README's
description of the author's decoding (own crop geometry, own normalisation, the original ONNX file
run by ONNX Runtime directly), so that the runtime's path (card -> crop_inputs -> backend ->
decode_output) is judged by something that shares none of its code. Skips, with the reason, where
the models or faces are absent.
"""
from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import pytest

from conftest import one_error_line
from export import onnx as onnx_cli
from export import verify as verify_cli
from export.evaluation import nme
from runtime.face_crops import predict_faces
from runtime.face_crops import crop_faces
from runtime.landmarker import frame_points
from runtime.metrics import comparable_points
from runtime.annotations import read_pts_folder
from runtime.card import Card, read_card, sidecar_path
from runtime.crop import CropRule, Normalisation, apply, crop_matrix, invert
from runtime.errors import UsageError
from runtime.heatmap import HeatmapOffsets, decode_offsets
from runtime.landmarker import crop_inputs, decode_output
from runtime.layouts import IBUG66, IBUG66_TO_68, IBUG68
from runtime.zoo import OPENSEEFACE_IMPORT_FLAGS, PEPPA_IMPORT_FLAGS

# Runtime path vs the reference decode, per point, in frame pixels. Both cut the same geometry and
# run the same weights (the import only unfuses FusedConv: ~1e-6 apart), so only float rounding differs.
MAX_POINT_DIFFERENCE_PX = 0.05
# Inter-ocular NME on faces68 (percent). Measured here: OpenSeeFace 12.46 (66 points), Peppa 12.32;
# the data README's straightforward decodes gave about 13 and 12.
MAX_NME = {"openseeface": 14.0, "peppa": 13.5}
INNER_MOUTH_CORNERS = (60, 64)


def _import(model, flags, folder, name):
    output = folder / f"{name}.onnx"
    assert onnx_cli.main(["--import", str(model), "-o", str(output), *flags]) == 0
    return output


@pytest.fixture(scope="module")
def openseeface_artifact(openseeface_onnx, tmp_path_factory):
    return _import(openseeface_onnx, OPENSEEFACE_IMPORT_FLAGS, tmp_path_factory.mktemp("openseeface"), "openseeface")


@pytest.fixture(scope="module")
def peppa_artifact(peppa_onnx, tmp_path_factory):
    return _import(peppa_onnx, PEPPA_IMPORT_FLAGS, tmp_path_factory.mktemp("peppa"), "peppa")


@pytest.fixture(scope="module")
def faces(faces68_dir):
    return read_pts_folder(faces68_dir)


# --------------------------------------------------------------------------------------------------
# the reference: the README's description, written out plainly


def reference_crop(image, points, widen_x, widen_y, size):
    """The landmarks' box widened by ``widen_x`` of its width on each side and ``widen_y`` of its
    height above and below, stretched to ``size`` x ``size``; the region's outer edges land on the
    input's outer pixel edges (pixel centres at integers). Returns the crop and its 3x3 matrix."""
    x1, y1 = points.min(axis=0)
    x2, y2 = points.max(axis=0)
    left, right = x1 - widen_x * (x2 - x1), x2 + widen_x * (x2 - x1)
    top, bottom = y1 - widen_y * (y2 - y1), y2 + widen_y * (y2 - y1)
    scale_x, scale_y = size / (right - left), size / (bottom - top)
    # input = (frame - region edge) * scale - 0.5
    matrix = np.array([[scale_x, 0, -left * scale_x - 0.5], [0, scale_y, -top * scale_y - 0.5], [0, 0, 1]])
    crop = cv2.warpAffine(image, matrix[:2], (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
    return crop, matrix


def to_frame(matrix, input_points):
    homogeneous = np.c_[input_points, np.ones(len(input_points))]
    return (homogeneous @ np.linalg.inv(matrix).T)[:, :2]


def session(model_path):
    import onnxruntime

    return onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])


def openseeface_reference(session, sample):
    """66 frame points: RGB ImageNet input; per point the heatmap's peak cell; the offsets at that
    cell are logit(v) / 16 * 223 input px, channels 66-131 along rows (the author's "x"), 132-197
    along columns; cells 223 / 27 px apart."""
    image = cv2.imread(str(sample.image))
    crop, matrix = reference_crop(image, sample.points.astype(np.float64), 0.10, 0.125, 224)
    rgb = crop[..., ::-1].astype(np.float32) / 255.0
    tensor = ((rgb - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).astype(np.float32).transpose(2, 0, 1)[None]
    output = session.run(None, {session.get_inputs()[0].name: tensor})[0][0]  # (198, 28, 28)
    points = []
    for k in range(66):
        row, column = np.unravel_index(np.argmax(output[k]), (28, 28))
        v_row = np.clip(output[66 + k, row, column], 1e-7, 1 - 1e-7)
        v_column = np.clip(output[132 + k, row, column], 1e-7, 1 - 1e-7)
        y = row * 223 / 27 + np.log(v_row / (1 - v_row)) / 16 * 223
        x = column * 223 / 27 + np.log(v_column / (1 - v_column)) / 16 * 223
        points.append((x, y))
    return to_frame(matrix, np.array(points))


def peppa_reference(session, sample):
    """68 frame points: BGR (x - 127) / 127 input; the first 136 outputs are (x, y) in [0, 1] of the crop."""
    image = cv2.imread(str(sample.image))
    crop, matrix = reference_crop(image, sample.points.astype(np.float64), 0.2, 0.2, 160)
    tensor = ((crop.astype(np.float32) - 127.0) / 127.0).transpose(2, 0, 1)[None]
    output = session.run(None, {session.get_inputs()[0].name: tensor})[0][0]
    return to_frame(matrix, output[:136].reshape(68, 2) * 160 - 0.5)


def runtime_points(artifact, samples):
    card = read_card(artifact)
    output, crops = predict_faces(artifact, card, samples)
    return frame_points(output, card, crops.matrices), crops.truth, card


# --------------------------------------------------------------------------------------------------
# the two imports


def test_openseeface_import_agrees_with_the_reference_decode(openseeface_artifact, openseeface_onnx, faces):
    points, truth, card = runtime_points(openseeface_artifact, faces)
    original = session(openseeface_onnx)  # the file as downloaded, not the imported artifact
    reference = np.stack([openseeface_reference(original, sample) for sample in faces])
    difference = np.linalg.norm(points - reference, axis=-1)  # (12, 66) frame px
    assert difference.max() < MAX_POINT_DIFFERENCE_PX, f"worst point {difference.max():.3f} px"

    scores = nme(points, truth, card) * 100
    assert scores.mean() < MAX_NME["openseeface"], f"NME {scores.mean():.2f} %"
    model = onnx.load(str(openseeface_artifact))
    assert not [n for n in model.graph.node if n.domain == "com.microsoft"], "FusedConv left in the artifact"
    assert all(node.name for node in model.graph.node)


def test_openseeface_offset_axes_are_rows_then_columns(openseeface_artifact, faces):
    """The author's code names the row axis x; swapping the two offset groups must score worse."""
    card = read_card(openseeface_artifact)
    output, crops = predict_faces(openseeface_artifact, card, faces)
    scores = {}
    for groups in (("heatmap", "y_offset", "x_offset"), ("heatmap", "x_offset", "y_offset")):
        spec = HeatmapOffsets(**{**card.heatmap_offsets.to_dict(), "channel_groups": groups})
        swapped = card.with_changes(heatmap_offsets=spec)
        scores[groups[1]] = nme(frame_points(output, swapped, crops.matrices), crops.truth, swapped).mean()
    assert card.heatmap_offsets.channel_groups[1] == "y_offset"
    assert scores["y_offset"] < scores["x_offset"] - 0.005, scores  # measured 12.5 % vs 13.9 %


def test_peppa_import_reads_only_the_first_136_values(peppa_artifact, peppa_onnx, faces):
    card = read_card(peppa_artifact)
    assert card.coords_slice == (0, 136)
    points, truth, _ = runtime_points(peppa_artifact, faces)
    original = session(peppa_onnx)
    reference = np.stack([peppa_reference(original, sample) for sample in faces])
    difference = np.linalg.norm(points - reference, axis=-1)
    assert difference.max() < MAX_POINT_DIFFERENCE_PX, f"worst point {difference.max():.3f} px"
    scores = nme(points, truth, card) * 100
    assert scores.mean() < MAX_NME["peppa"], f"NME {scores.mean():.2f} %"


def test_peppa_without_a_coords_slice_is_one_line_naming_the_flag(peppa_onnx, tmp_path, capsys):
    flags = list(PEPPA_IMPORT_FLAGS)
    at = flags.index("--coords-slice")
    del flags[at : at + 3]
    assert onnx_cli.main(["--import", str(peppa_onnx), "-o", str(tmp_path / "p.onnx"), *flags]) != 0
    line = one_error_line(capsys.readouterr())
    assert "143 values per image" in line and "--coords-slice" in line
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------------
# 66 points on 68-point annotations


def test_66_points_are_scored_on_the_66_shared_points(faces):
    truth = np.stack([sample.points for sample in faces]).astype(np.float64)
    card = Card("ibug66", 66, 224, Normalisation(), "heatmap_offsets", CropRule(), decode="peak_offset",
                heatmap_offsets=HeatmapOffsets(28, 223 / 27, 223.0))  # fmt: skip
    predicted = truth[:, IBUG66_TO_68] + 1.0
    scored, scored_truth, layout = comparable_points(predicted, truth)
    assert layout == "ibug66" and scored_truth.shape == (len(faces), 66, 2)
    assert not set(INNER_MOUTH_CORNERS) & set(IBUG66_TO_68.tolist())
    eyes = np.linalg.norm(truth[:, 36] - truth[:, 45], axis=-1)
    assert np.allclose(nme(predicted, truth, card), np.sqrt(2) / eyes)
    # Flip pairs and eye corners are iBUG-68's, renumbered.
    assert (IBUG66_TO_68[IBUG66.flip_permutation] == IBUG68.flip_permutation[IBUG66_TO_68]).all()
    assert tuple(IBUG66_TO_68[list(IBUG66.outer_eye_corners)]) == IBUG68.outer_eye_corners


# --------------------------------------------------------------------------------------------------
# the per-axis crop rule and old cards


def test_per_axis_crop_round_trips_frame_input_frame():
    card = Card("ibug68", 68, 160, Normalisation("BGR"), "coords", CropRule("landmarks", 1.2, 0.05, 1.25))
    box = np.array([100.0, 80.0, 180.0, 200.0])  # 80 wide, 120 tall
    frame = np.zeros((320, 320, 3), np.uint8)
    inputs, matrices = crop_inputs(frame, box, card, "landmarks")
    matrix = matrices[0]
    # Region edges on the input's outer pixel edges, each axis on its own.
    width, height = 1.2 * 80, 1.25 * 120
    centre = np.array([140.0, 140.0 + 0.05 * height])
    corners = centre + np.array([[-width / 2, -height / 2], [width / 2, height / 2]])
    assert np.allclose(apply(matrix, corners), [[-0.5, -0.5], [159.5, 159.5]])
    # Frame -> input -> coords output -> decode_output -> frame.
    rng = np.random.default_rng(0)
    frame_points_in = rng.uniform([100, 80], [180, 200], size=(68, 2))
    encoded = (apply(matrix, frame_points_in) + 0.5) / 160
    decoded, _ = decode_output(encoded.reshape(1, -1), card, matrices)
    assert np.abs(decoded[0] - frame_points_in).max() < 1e-9
    assert np.allclose(invert(invert(matrix)), matrix)


OLD_SQUARE_CARD = {
    "calibration": {}, "crop_rule": {"box": "landmarks", "scale": 1.2, "shift_y": 0.0}, "decode": "direct",
    "extra": {"batch": "dynamic"}, "format": "onnx", "heatmap_stride": None, "input_name": "input",
    "input_size": 112, "layout": "wflw98",
    "normalisation": {"channel_order": "BGR", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    "num_points": 98, "output_kind": "coords", "precision": "fp32", "source": "pfld.onnx", "source_sha256": "",
    "tools": {}, "version": 1,
}  # fmt: skip


def test_old_square_cards_load_and_crop_unchanged():
    card = Card.from_dict(OLD_SQUARE_CARD)
    assert card.crop_rule.scale_y is None and card.heatmap_offsets is None and card.coords_slice is None
    assert card.batch is None and card.output_name == ""  # once untyped entries of extra, now fields
    # Written back as it was but for the batch, which moved from extra to its own field.
    assert json.loads(card.to_json()) == {**OLD_SQUARE_CARD, "extra": {}, "batch": "dynamic"}
    # The square rule's matrix, as it always was: side 1.2 * longer side, centre at (size - 1) / 2.
    matrix = crop_matrix(np.array([10.0, 20.0, 60.0, 120.0]), card.crop_rule, 112)
    k = 112 / 120
    assert np.allclose(matrix, [[k, 0, 55.5 - k * 35], [0, k, 55.5 - k * 70]])


def test_a_heatmap_offsets_card_without_its_fields_is_one_line(openseeface_artifact, faces68_dir, tmp_path, capsys):
    values = json.loads(sidecar_path(openseeface_artifact).read_text())
    del values["heatmap_offsets"]
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(openseeface_artifact.read_bytes())
    sidecar_path(broken).write_text(json.dumps(values))
    code = verify_cli.main([str(broken), "--reference", str(openseeface_artifact), "--images", str(faces68_dir)])
    assert code != 0
    line = one_error_line(capsys.readouterr())
    assert "heatmap_offsets" in line and "cell_spacing" in line
    with pytest.raises(UsageError):
        Card.from_dict(values)


def test_heatmap_offsets_import_without_offset_flags_is_one_line(openseeface_onnx, tmp_path, capsys):
    flags = list(OPENSEEFACE_IMPORT_FLAGS)
    at = flags.index("--cell-spacing")
    del flags[at : at + 2]
    assert onnx_cli.main(["--import", str(openseeface_onnx), "-o", str(tmp_path / "o.onnx"), *flags]) != 0
    assert "--cell-spacing" in one_error_line(capsys.readouterr())
    assert not list(tmp_path.iterdir())


def test_offset_decode_reads_the_peak_cell_and_its_offsets():
    """Golden: one point, peak at row 2 / column 5 of an 8x8 grid, offsets sigmoid-squashed."""
    spec = HeatmapOffsets(grid_size=8, cell_spacing=3.0, offset_scale=10.0, channel_groups=("heatmap", "y_offset", "x_offset"),
                          offset_transform="logit", offset_divisor=2.0)  # fmt: skip
    output = np.full((1, 3, 8, 8), 0.5, np.float32)
    output[0, 0] = 0.0
    output[0, 0, 2, 5] = 0.9  # heatmap peak
    output[0, 1, 2, 5] = 1 / (1 + np.exp(-0.4))  # y offset: logit 0.4 -> 0.4 * 10 / 2 = 2 px
    output[0, 2, 2, 5] = 1 / (1 + np.exp(0.2))  # x offset: logit -0.2 -> -1 px
    points, confidence = decode_offsets(output, spec, 1)
    assert np.allclose(points[0, 0], [5 * 3.0 - 1.0, 2 * 3.0 + 2.0], atol=1e-5)
    assert confidence[0, 0] == pytest.approx(0.9)


def test_crop_faces_uses_the_per_axis_rule(openseeface_artifact, faces):
    """export/'s face cropping is the runtime's: a non-square face box gives a non-square scale."""
    card = read_card(openseeface_artifact)
    crops = crop_faces(faces[:2], card)
    for matrix, sample in zip(crops.matrices, faces[:2]):
        width, height = np.ptp(sample.points, axis=0)
        assert matrix[0, 0] == pytest.approx(224 / (1.2 * width))
        assert matrix[1, 1] == pytest.approx(224 / (1.25 * height))
