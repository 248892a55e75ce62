"""The torch-free landmark core: layouts, metrics, heatmap decoding, crop rule, card."""
from __future__ import annotations

import json

import numpy as np
import pytest

from runtime import crop as croplib
from runtime.annotations import AnnotationError, read_pts, read_pts_folder
from runtime.card import Card, CardError, read_card, sidecar_path, write_card
from runtime.errors import UsageError
from runtime.codecs import heatmap_to_input, input_to_heatmap
from runtime.heatmap import argmax, centroid, decode, soft_argmax
from runtime.layouts import IBUG68, LAYOUTS, WFLW98, WFLW98_TO_68, flip_points, get_layout, to_68
from runtime.metrics import (
    agreement_per_image,
    auc,
    ced_curve,
    failure_rate,
    nme_per_image,
    summarise,
    summarise_agreement,
    wflw_subset_table,
)


def gaussian_maps(centres: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """(N, K, size, size) Gaussians at sub-pixel ``centres`` (N, K, 2)."""
    ys, xs = np.mgrid[:size, :size]
    dx = xs[None, None] - centres[..., 0, None, None]
    dy = ys[None, None] - centres[..., 1, None, None]
    return np.exp(-(dx**2 + dy**2) / (2 * sigma**2)).astype(np.float32)


# ---------------------------------------------------------------- decoding
def test_centroid_is_subpixel_where_argmax_is_not():
    rng = np.random.default_rng(7)
    centres = rng.uniform(6, 57, size=(8, 50, 2))
    maps = gaussian_maps(centres, 64, sigma=1.5)
    centroid_error = np.linalg.norm(centroid(maps)[0] - centres, axis=-1)
    argmax_error = np.linalg.norm(argmax(maps)[0] - centres, axis=-1)
    assert centroid_error.max() < 0.05, centroid_error.max()
    assert argmax_error.mean() >= 0.25, argmax_error.mean()


def test_centroid_handles_peaks_at_the_border_and_empty_maps():
    maps = gaussian_maps(np.array([[[0.0, 0.0], [63.0, 30.2]]]), 64, sigma=1.5)
    coords, _ = centroid(maps)
    assert np.abs(coords[0, 0]).max() < 1.5  # half the Gaussian is off the map: biased inwards by < sigma
    assert abs(coords[0, 1, 1] - 30.2) < 0.05
    zero_coords, zero_peak = centroid(np.zeros((1, 1, 8, 8), dtype=np.float32))
    assert np.isfinite(zero_coords).all() and zero_peak[0, 0] == 0


def test_soft_argmax_and_confidence():
    centres = np.array([[[20.3, 41.7]]])
    maps = gaussian_maps(centres, 64, sigma=1.5) * 0.8
    coords, confidence = decode(maps, "soft_argmax")
    assert np.abs(coords - centres).max() < 0.5
    assert confidence[0, 0] == pytest.approx(0.8, abs=0.05)
    with pytest.raises(ValueError, match="Valid: argmax, centroid, soft_argmax"):
        decode(maps, "mean")


def test_heatmap_input_mapping_round_trips_and_centres_pixels():
    coords = np.array([[0.0, 0.0], [63.0, 31.5]])
    assert np.allclose(input_to_heatmap(heatmap_to_input(coords, 4), 4), coords)
    # heatmap pixel 0 covers input pixels 0..3, whose centre is 1.5
    assert heatmap_to_input(np.array([0.0]), 4)[0] == 1.5


def test_torch_decoders_match_numpy():
    torch = pytest.importorskip("torch")
    from train import decode as torch_decode

    rng = np.random.default_rng(3)
    maps = gaussian_maps(rng.uniform(4, 28, size=(2, 5, 2)), 32, 1.5) + rng.uniform(0, 0.05, (2, 5, 32, 32)).astype(np.float32)
    for name, numpy_decoder in (("argmax", argmax), ("centroid", centroid)):
        expected = numpy_decoder(maps)[0]
        got = torch_decode.decode(torch.from_numpy(maps), name).numpy()
        assert np.abs(got - expected).max() < 1e-4, name
    assert np.abs(torch_decode.soft_argmax(torch.from_numpy(maps)).numpy() - soft_argmax(maps)[0]).max() < 1e-3


# ---------------------------------------------------------------- layouts
@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_flip_permutations_are_involutions(name):
    layout = LAYOUTS[name]
    permutation = layout.flip_permutation
    assert sorted(permutation) == list(range(layout.num_points))
    assert (permutation[permutation] == np.arange(layout.num_points)).all()
    eye_a, eye_b = layout.outer_eye_corners
    assert permutation[eye_a] == eye_b


def test_unknown_layout_suggests_the_right_one():
    with pytest.raises(UsageError, match="Did you mean 'wflw98'"):
        get_layout("wflw")


def test_wflw_map_is_consistent_with_both_flip_permutations():
    # Flipping then mapping 98 -> 68 must equal mapping then flipping: the map keeps left and right apart.
    assert len(WFLW98_TO_68) == 68 and len(set(WFLW98_TO_68.tolist())) == 68
    assert (WFLW98.flip_permutation[WFLW98_TO_68] == WFLW98_TO_68[IBUG68.flip_permutation]).all()
    assert WFLW98_TO_68[36] == WFLW98.outer_eye_corners[0] and WFLW98_TO_68[45] == WFLW98.outer_eye_corners[1]


def test_flip_maps_left_to_right_on_a_labelled_face(faces68_dir):
    points = read_pts(faces68_dir / "einstein.pts")
    width = 1000.0
    flipped = flip_points(points, IBUG68, width)
    # Image-left points (jaw start, left brow, left eye outer corner) sit left of their partners,
    # before and after the flip, and the flip twice gives the original.
    for a, b in ((0, 16), (17, 26), (36, 45), (48, 54)):
        assert points[a, 0] < points[b, 0] and flipped[a, 0] < flipped[b, 0]
    assert np.allclose(flip_points(flipped, IBUG68, width), points)
    # The flipped chin (8) is the mirrored chin.
    assert flipped[8, 0] == pytest.approx(width - 1 - points[8, 0])


def test_98_to_68_lands_on_the_right_points(faces68_dir):
    """Fit a 98-point face from a 68-point labelled one and check the mapped subset equals the original points."""
    truth = read_pts(faces68_dir / "einstein.pts")
    wflw = np.zeros((98, 2), dtype=np.float32)
    wflw[WFLW98_TO_68] = truth
    assert np.array_equal(to_68(wflw), truth)
    # Semantics: mapped eye corners and mouth corners are the iBUG ones.
    assert np.array_equal(wflw[60], truth[36]) and np.array_equal(wflw[72], truth[45])
    assert np.array_equal(wflw[76], truth[48]) and np.array_equal(wflw[82], truth[54])
    assert np.array_equal(wflw[16], truth[8])  # chin
    assert np.array_equal(wflw[54], truth[30])  # nose tip


# ---------------------------------------------------------------- metrics
def test_nme_and_normalisations():
    truth = np.zeros((1, 68, 2))
    truth[0, :, 0] = np.linspace(0, 100, 68)
    truth[0, :, 1] = np.linspace(0, 50, 68)
    predicted = truth + [3.0, 4.0]  # every point 5 px off
    ocular = np.linalg.norm(truth[0, 36] - truth[0, 45])
    assert nme_per_image(predicted, truth, IBUG68)[0] == pytest.approx(5 / ocular)
    assert nme_per_image(predicted, truth, IBUG68, "box")[0] == pytest.approx(5 / np.sqrt(100 * 50))
    pupil = np.linalg.norm(truth[0, 36:42].mean(0) - truth[0, 42:48].mean(0))
    assert nme_per_image(predicted, truth, IBUG68, "inter_pupil")[0] == pytest.approx(5 / pupil)


def test_label_free_agreement_takes_the_reference_as_truth(faces68_dir):
    reference = np.stack([read_pts(path) for path in sorted(faces68_dir.glob("*.pts"))[:4]])
    moved = reference.copy()
    moved[1] += 3.0  # every point of face 1 shifted by (3, 3) px
    eyes = np.linalg.norm(reference[1, 36] - reference[1, 45])
    values = agreement_per_image(moved, reference, IBUG68)
    assert values[[0, 2, 3]].tolist() == [0, 0, 0]
    assert values[1] == pytest.approx(np.hypot(3, 3) / eyes)
    summary = summarise_agreement(values, ["a", "b", "c", "d"], worst=2)
    assert summary["worst"][0] == {"input": "b", "nme": pytest.approx(values[1] * 100)}
    assert summary["max"] == pytest.approx(values[1] * 100) and summary["mean"] == pytest.approx(values[1] * 25)
    broken = summarise_agreement(np.array([0.01, np.nan]), ["ok", "nan"])
    assert broken["non_finite"] == 1 and broken["max"] == np.inf and broken["worst"][0]["input"] == "nan"


def test_failure_rate_auc_and_ced():
    nme = np.array([0.01, 0.02, 0.05, 0.2])
    assert failure_rate(nme) == 0.25
    thresholds, fractions = ced_curve(nme)
    assert fractions[0] == 0 and fractions[-1] == 0.75
    # Exact area: each image with error e < 0.1 contributes (0.1 - e) / 0.1 / N.
    assert auc(nme) == pytest.approx(((0.09 + 0.08 + 0.05) / 0.1) / 4, abs=1e-3)
    assert summarise(nme)["nme"] == pytest.approx(7.0)


def test_wflw_subset_table():
    nme = np.array([0.04, 0.06, 0.08])
    flags = np.array([[1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 1], [1, 0, 0, 0, 0, 1]])
    table = wflw_subset_table(nme, flags)
    assert list(table) == ["Fullset", "Pose", "Expression", "Illumination", "Make-up", "Occlusion", "Blur"]
    assert table["Pose"]["nme"] == pytest.approx(6.0) and table["Pose"]["count"] == 2
    assert table["Blur"]["nme"] == pytest.approx(7.0) and table["Illumination"]["count"] == 0


# ---------------------------------------------------------------- crop and card
def test_crop_matrix_maps_box_centre_to_input_centre_and_inverts():
    box = np.array([40.0, 60.0, 140.0, 180.0])
    rule = croplib.CropRule(scale=1.2)
    matrix = croplib.crop_matrix(box, rule, 112)
    assert np.allclose(croplib.apply(matrix, [[90.0, 120.0]]), [[55.5, 55.5]])
    side = 1.2 * 120
    assert matrix[0, 0] == pytest.approx(112 / side)
    points = np.array([[12.0, 7.0], [300.0, 2.5]])
    assert np.allclose(croplib.apply(croplib.invert(matrix), croplib.apply(matrix, points)), points)


def test_crop_and_normalise_on_a_real_face(faces68_dir):
    import cv2

    image = cv2.imread(str(faces68_dir / "einstein.jpg"))
    points = read_pts(faces68_dir / "einstein.pts")
    matrix = croplib.crop_matrix(croplib.landmark_box(points), croplib.CropRule(scale=1.2), 112)
    crop = croplib.warp(image, matrix, 112)
    inside = croplib.apply(matrix, points)
    assert inside.min() >= 112 * 0.05 and inside.max() <= 112 * 0.95  # the face fills the square with a margin
    tensor = croplib.normalise(crop[None], croplib.Normalisation("BGR", (0.5,) * 3, (0.5,) * 3))
    assert tensor.shape == (1, 3, 112, 112) and tensor.dtype == np.float32
    assert -1.0 <= tensor.min() and tensor.max() <= 1.0
    rgb = croplib.normalise(crop[None], croplib.Normalisation("RGB", (0.5,) * 3, (0.5,) * 3))
    assert np.array_equal(rgb[0, 0], tensor[0, 2])  # channel order really swaps


def test_card_round_trip_and_errors(tmp_path):
    card = Card(
        layout="wflw98", num_points=98, input_size=112, output_kind="coords", decode="direct",
        normalisation=croplib.Normalisation("BGR", (0.5,) * 3, (0.5,) * 3), crop_rule=croplib.CropRule(scale=1.2),
    )
    artifact = tmp_path / "model.onnx"
    write_card(artifact, card)
    assert sidecar_path(artifact).name == "model.onnx.json"
    assert read_card(artifact) == card
    with pytest.raises(UsageError, match="num_points=68"):
        card.with_changes(num_points=68)
    with pytest.raises(UsageError, match="heatmap_stride"):
        card.with_changes(output_kind="heatmap")
    with pytest.raises(CardError, match="no card found"):
        read_card(tmp_path / "other.onnx")
    sidecar_path(artifact).write_text("{not json")
    with pytest.raises(CardError, match="not valid JSON"):
        read_card(artifact)
    sidecar_path(artifact).write_text(json.dumps({"layout": "wflw98"}))
    with pytest.raises(CardError, match="incomplete"):
        read_card(artifact)


# ---------------------------------------------------------------- annotations
def test_read_pts_on_real_faces(faces68_dir):
    samples = read_pts_folder(faces68_dir)
    assert len(samples) == 12
    assert all(sample.points.shape == (68, 2) and sample.image.is_file() for sample in samples)


def test_malformed_pts_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.pts"
    bad.write_text("version: 1\nn_points: 2\n{\n1.0 2.0\n3.0 oops\n}\n")
    with pytest.raises(AnnotationError, match=r"bad.pts:5: expected two numbers"):
        read_pts(bad)
    short = tmp_path / "short.pts"
    short.write_text("version: 1\nn_points: 3\n{\n1 2\n}\n")
    with pytest.raises(AnnotationError, match="n_points says 3 but 1"):
        read_pts(short)
    with pytest.raises(AnnotationError, match="not found"):
        read_pts(tmp_path / "missing.pts")


def test_non_finite_nme_is_a_failure_in_every_summary():
    from runtime.metrics import auc, failure_rate, summarise

    nme = np.array([0.02, np.nan, np.inf, 0.05])
    assert failure_rate(nme) == 0.5
    assert auc(nme) < auc(np.array([0.02, 0.05])) / 2 + 1e-9
    summary = summarise(nme)
    assert summary["fr"] == 50.0 and not np.isfinite(summary["nme"])


def test_the_embedded_card_is_the_authority_and_the_model_hash_is_checked(pfld_artifact, tmp_path):
    """Issue 9: a stale sidecar that disagrees with the card inside the model is an error, not silently
    preferred; a model whose content changed under its card is refused; a card without a hash reads unchecked."""
    import shutil

    import onnx

    from runtime.card import content_sha256

    artifact = tmp_path / "model.onnx"
    shutil.copyfile(pfld_artifact, artifact)
    card = read_card(pfld_artifact)
    assert card.model_sha256 == content_sha256(artifact)
    assert read_card(artifact) == card  # no sidecar: the embedded card
    write_card(artifact, card.with_changes(normalisation=card.normalisation.__class__("RGB", (0.5,) * 3, (0.5,) * 3)))
    with pytest.raises(CardError, match=r"disagrees with the card inside model.onnx \(on .*normalisation\)"):
        read_card(artifact)
    write_card(artifact, card)
    assert read_card(artifact) == card
    model = onnx.load(str(artifact))
    model.graph.node[0].name = "renamed"
    onnx.save(model, str(artifact))
    with pytest.raises(CardError, match="does not match its card"):
        read_card(artifact)
    assert read_card(artifact, verify=False) == card
    sidecar_only = tmp_path / "sidecar_only.bin"
    sidecar_only.write_bytes(b"engine")
    write_card(sidecar_only, card.with_changes(model_sha256=""))
    assert read_card(sidecar_only).model_sha256 == ""


def test_each_codec_decodes_what_it_encodes():
    """Codecs own the pixel convention: encode then decode returns the input-pixel points."""
    from runtime.codecs import CoordsCodec, HeatmapCodec

    rng = np.random.default_rng(5)
    points = rng.uniform(20, 230, size=(3, 68, 2))  # input pixels of a 256 px crop, sub-pixel
    heatmaps, weights = HeatmapCodec(68, 256, 4, "centroid", sigma=1.5).encode(points)
    assert heatmaps.shape == (3, 68, 64, 64) and weights.min() == 1
    decoded, confidence = HeatmapCodec(68, 256, 4, "centroid").decode(heatmaps)
    assert np.abs(decoded - points).max() < 0.1 and confidence.min() > 0.7  # centroid window bias ~0.05 px
    values, _ = CoordsCodec(68, 256).encode(points)
    assert values.shape == (3, 136) and np.allclose(CoordsCodec(68, 256).decode(values)[0], points, atol=1e-4)


def test_codec_for_names_the_cards_output_kind(pfld_artifact):
    from runtime.card import read_card
    from runtime.codecs import CODECS, codec_for
    from runtime.card import OUTPUT_KINDS

    assert set(CODECS) == set(OUTPUT_KINDS)
    assert codec_for(read_card(pfld_artifact)).kind == "coords"
