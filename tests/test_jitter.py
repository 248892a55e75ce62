"""Synthetic sequences from real faces, jitter/lag metrics, and the smoother and decoder comparisons."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from runtime.annotations import read_pts_folder
from runtime.crop import apply
from runtime.errors import UsageError
from runtime.jitter import (
    STEP_INTERVAL_S,
    compare_decoders,
    compare_smoothers,
    format_rows,
    heatmap_observations,
    jitter,
    lag_frames,
    main,
    nme_per_frame,
    noisy_observations,
    synthetic_sequence,
    video_jitter,
)

FPS = 30.0
NOISE_PX = 1.2  # on 200 px faces (about 85 px between the outer eye corners)


@pytest.fixture(scope="module")
def faces(faces68_dir):
    return read_pts_folder(faces68_dir)


@pytest.fixture(scope="module")
def lissajous_truths(faces):
    """150 frames (5 s at 30 fps) of every real face moving on a Lissajous path, 200 px faces."""
    return [
        synthetic_sequence(None, face.points, 150, FPS, "lissajous", render=False, seed=index).points
        for index, face in enumerate(faces)
    ]


# ---------------------------------------------------------------- synthetic sequences
def test_rendered_frames_carry_the_face_to_the_true_points(faces):
    face = next(f for f in faces if f.image.name == "aflw2000_image00050.jpg")
    image = cv2.imread(str(face.image))
    sequence = synthetic_sequence(image, face.points, frames=30, path="lissajous", seed=4)
    assert sequence.frames.shape == (30, 400, 400, 3) and sequence.frames.dtype == np.uint8
    assert sequence.points.shape == (30, 68, 2)
    assert np.allclose(sequence.points, np.stack([apply(m, face.points) for m in sequence.matrices]))
    for index in (0, 17, 29):
        # Warping frame t back with the inverse matrix must give the photo again around the face.
        back = cv2.warpAffine(
            sequence.frames[index], cv2.invertAffineTransform(sequence.matrices[index]), image.shape[1::-1]
        )
        x1, y1 = face.points.min(axis=0).astype(int)
        x2, y2 = face.points.max(axis=0).astype(int)
        difference = np.abs(back[y1:y2, x1:x2].astype(float) - image[y1:y2, x1:x2].astype(float)).mean()
        assert difference < 8, difference  # two bilinear resamplings at scale ~0.9
    sizes = [np.sqrt(np.prod(p.max(0) - p.min(0))) for p in sequence.points]
    assert 185 < np.mean(sizes) < 215


def test_paths_still_steps_and_lissajous_move_as_documented(faces):
    points = faces[0].points
    still = synthetic_sequence(None, points, 20, path="still", render=False).points
    assert np.allclose(still, still[0])
    steps = synthetic_sequence(None, points, 90, path="steps", render=False, seed=1).points
    segment = int(STEP_INTERVAL_S * FPS)
    moved = np.abs(np.diff(steps, axis=0)).max(axis=(1, 2)) > 1e-9
    assert list(np.flatnonzero(moved) + 1) == [segment, 2 * segment]
    lissajous = synthetic_sequence(None, points, 150, path="lissajous", render=False, seed=2).points
    speed = np.linalg.norm(np.diff(lissajous, axis=0), axis=-1).max()  # px per frame
    assert 1.0 < speed < 6.0
    with pytest.raises(UsageError, match="Did you mean 'steps'"):
        synthetic_sequence(None, points, path="step", render=False)


# ---------------------------------------------------------------- metrics
def test_jitter_of_white_noise_matches_its_definition(lissajous_truths):
    truth = lissajous_truths[0]
    observed = noisy_observations(truth, 1.5, seed=3)
    inter_ocular = np.linalg.norm(truth[:, 36] - truth[:, 45], axis=-1).mean()
    assert jitter(observed, truth) == pytest.approx(2 * 1.5 / inter_ocular, rel=0.05)
    assert jitter(truth + 4.0, truth) == pytest.approx(0.0, abs=1e-9)  # a constant bias is not jitter
    nme = nme_per_frame(observed, truth)
    assert nme.shape == (150,) and nme.mean() == pytest.approx(1.5 * math.sqrt(math.pi / 2) / inter_ocular, rel=0.05)


def test_video_jitter_without_truth_is_sqrt3_times_jitter_on_a_still_face(faces):
    truth = synthetic_sequence(None, faces[1].points, 300, path="still", render=False).points
    observed = noisy_observations(truth, 1.0, seed=5)
    measured = video_jitter(observed)
    assert measured["pixels"] == pytest.approx(math.sqrt(12) * 1.0, rel=0.05)
    assert measured["normalised"] == pytest.approx(math.sqrt(3) * jitter(observed, truth), rel=0.05)


@pytest.mark.parametrize("delay", [3, -2, 0])
def test_lag_recovers_a_known_delay(lissajous_truths, delay):
    truth = lissajous_truths[2]
    delayed = np.roll(truth, delay, axis=0)  # delayed[t] = truth[t - delay]
    if delay > 0:
        delayed[:delay] = truth[0]
    elif delay < 0:
        delayed[delay:] = truth[-1]
    assert lag_frames(delayed, truth) == delay
    assert lag_frames(noisy_observations(delayed, 1.5, seed=1), truth) == delay


# ---------------------------------------------------------------- comparisons on real faces
@pytest.mark.parametrize("noise_px", [NOISE_PX, 1.5])
def test_one_euro_halves_jitter_with_at_most_one_frame_of_lag(lissajous_truths, noise_px):
    observed = [noisy_observations(truth, noise_px, seed=index) for index, truth in enumerate(lissajous_truths)]
    rows = {row["method"]: row for row in compare_smoothers(lissajous_truths, observed, FPS)}
    print(
        f"\nsmoothers, 12 real faces x 150 frames, {noise_px} px noise on 200 px faces:\n" + format_rows(rows.values())
    )
    assert set(rows) == {"none", "one_euro", "ema", "kalman"}
    assert rows["none"]["lag"] == 0
    assert rows["one_euro"]["jitter"] <= 0.5 * rows["none"]["jitter"]
    assert 0 <= rows["one_euro"]["lag"] <= 1
    for method in ("ema", "kalman"):
        assert all(np.isfinite(rows[method][key]) for key in ("nme", "jitter"))
        assert rows[method]["jitter"] < rows["none"]["jitter"]


def test_comparison_is_independent_of_face_size(faces):
    """The same motion and noise in face-size units give the same normalised rows at 80 and 320 px."""
    rows = {}
    for size in (80.0, 320.0):
        truths = [
            synthetic_sequence(None, face.points, 90, face_size_px=size, render=False, seed=index).points
            for index, face in enumerate(faces[:4])
        ]
        observed = [noisy_observations(t, NOISE_PX * size / 200, seed=index) for index, t in enumerate(truths)]
        rows[size] = compare_smoothers(truths, observed, FPS)
    for small, large in zip(rows[80.0], rows[320.0]):
        assert small["lag"] == large["lag"]
        assert small["jitter"] == pytest.approx(large["jitter"], rel=1e-3)
        assert small["nme"] == pytest.approx(large["nme"], rel=1e-3)


def test_centroid_decoding_jitters_less_than_argmax_on_the_same_heatmaps(lissajous_truths):
    truths = lissajous_truths[:4]
    rows = {row["method"]: row for row in compare_decoders(truths, methods=("argmax", "centroid"), stride=4)}
    print(
        "\ndecoders, 4 real faces x 150 frames, 256 input, 64x64 maps, map noise 0.05:\n" + format_rows(rows.values())
    )
    assert rows["centroid"]["jitter"] <= 0.7 * rows["argmax"]["jitter"]
    assert rows["centroid"]["nme"] < rows["argmax"]["nme"]
    assert rows["argmax"]["lag"] == 0 and rows["centroid"]["lag"] == 0


def test_heatmap_observations_are_unbiased_without_noise(lissajous_truths):
    truth = lissajous_truths[0][:20]
    decoded = heatmap_observations(truth, methods=("argmax", "centroid"), map_noise=0.0)
    # 200 px faces in a 256 input: ~1.3 frame px per input px, 4 input px per heatmap px.
    assert np.abs(decoded["centroid"] - truth).max() < 0.5
    assert np.abs(decoded["argmax"] - truth).max() < 4.0
    with pytest.raises(UsageError, match="Unknown decode method 'mean'"):
        heatmap_observations(truth, methods=("mean",))


def test_command_prints_both_tables(faces68_dir, capsys):
    assert main(["--faces", str(faces68_dir), "--frames", "20"]) == 0
    printed = capsys.readouterr().out
    for method in ("one_euro", "kalman", "ema", "none", "argmax", "centroid", "soft_argmax"):
        assert f"| {method} |" in printed
    assert main(["--faces", str(faces68_dir), "--path", "zigzag"]) == 2
    assert "Unknown sequence path 'zigzag'" in capsys.readouterr().err
