"""The landmarker on real faces with the real PFLD-GhostOne model (and the heatmap path on a tiny net).

Checks that it computes exactly what export/evaluation computes for the same faces, that its
landmarks are close to human annotations, that a batch of faces equals one call per face, that a
fixed-batch artifact is looped, and that bad frames and boxes are converted or rejected in one line.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from test_backends import import_pfld, write_tiny_checkpoint

from runtime.face_crops import predict_faces
from runtime.landmarker import frame_points
from runtime.annotations import read_pts_folder
from runtime.backends import load_backend
from runtime.card import read_card
from runtime.crop import landmark_box
from runtime.errors import EdgemarkError, UsageError
from runtime.landmarker import BoxConversion, FrameError, Landmarker, Landmarks, as_bgr, crop_inputs
from runtime.layouts import IBUG68, to_68
from runtime.metrics import nme_per_image

# Outer-eye-corner normalised error, percent, for 98 -> 68 predictions against 68-point truth.
NME_MEDIAN_LIMIT = 10.0


def nme_percent(points: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return nme_per_image(to_68(points), truth, IBUG68, "inter_ocular") * 100


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("landmarker")


@pytest.fixture(scope="module")
def pfld(work, pfld_onnx) -> Path:
    return import_pfld(pfld_onnx, work / "pfld.onnx")


@pytest.fixture(scope="module")
def backend(pfld):
    with load_backend(pfld, "onnxruntime", threads=1) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def landmarker(backend) -> Landmarker:
    return Landmarker(backend)


@pytest.fixture(scope="module")
def samples(faces68_dir):
    return read_pts_folder(faces68_dir)


@pytest.fixture(scope="module")
def frames(samples) -> list[np.ndarray]:
    return [cv2.imread(str(sample.image)) for sample in samples]


@pytest.fixture(scope="module")
def predicted(landmarker, samples, frames) -> np.ndarray:
    """(12, 98, 2) PFLD landmarks, each face cropped by its annotation's landmark box."""
    return np.concatenate(
        [landmarker.predict(frame, landmark_box(s.points), "landmarks").points for s, frame in zip(samples, frames)]
    )


def test_points_equal_export_evaluation(pfld, samples, predicted):
    card = read_card(pfld)
    output, crops = predict_faces(pfld, card, samples)
    expected = frame_points(output, card, crops.matrices)
    assert predicted.shape == expected.shape == (len(samples), 98, 2)
    np.testing.assert_allclose(predicted, expected, rtol=0, atol=1e-4)


def test_landmarks_are_close_to_the_annotations(samples, predicted, landmarker):
    truth = np.stack([s.points for s in samples])
    nme = nme_percent(predicted, truth)
    print(f"\nPFLD via Landmarker on faces68: inter-ocular NME median {np.median(nme):.2f} %, mean {nme.mean():.2f} %")
    assert np.median(nme) < NME_MEDIAN_LIMIT
    assert landmarker.card.layout == "wflw98"


def test_coords_model_confidences_are_nan(landmarker, samples, frames):
    result = landmarker.predict(frames[0], landmark_box(samples[0].points), "landmarks")
    assert isinstance(result, Landmarks) and len(result) == 1
    assert result.points.shape == (1, 98, 2) and result.matrices.shape == (1, 2, 3)
    # A regression head gives no per-point signal; NaN says so instead of inventing one.
    assert result.point_confidence.shape == (1, 98) and np.all(np.isnan(result.point_confidence))
    assert result.face_confidence.shape == (1,) and np.isnan(result.face_confidence[0])
    assert result.latency_s > 0


def mosaic(samples, frames, indices, height=300):
    """Faces side by side in one frame, with their annotations moved along."""
    tiles, truths, offset = [], [], 0
    for index in indices:
        frame, points = frames[index], samples[index].points.astype(np.float64)
        scale = height / frame.shape[0]
        width = round(frame.shape[1] * scale)
        tiles.append(cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA))
        # resize maps pixel centres x -> (x + 0.5) * scale - 0.5
        truths.append((points + 0.5) * [width / frame.shape[1], scale] - 0.5 + [offset, 0])
        offset += width
    return np.hstack(tiles), np.stack(truths)


def test_batch_of_faces_equals_single_calls(landmarker, backend, samples, frames):
    frame, truth = mosaic(samples, frames, [4, 6, 9, 11])
    boxes = np.stack([landmark_box(points) for points in truth])
    calls = []
    original = backend._infer

    def counting(feeds):
        calls.append(len(next(iter(feeds.values()))))
        return original(feeds)

    backend._infer = counting
    try:
        together = landmarker.predict(frame, boxes, "landmarks")
    finally:
        del backend._infer
    assert calls == [4]  # one batched inference for all faces
    single = np.concatenate([landmarker.predict(frame, box, "landmarks").points for box in boxes])
    np.testing.assert_allclose(together.points, single, rtol=0, atol=1e-3)
    assert np.median(nme_percent(together.points, truth)) < NME_MEDIAN_LIMIT


def test_fixed_batch_artifact_is_looped(work, pfld_onnx, samples, frames, landmarker):
    fixed = import_pfld(pfld_onnx, work / "pfld_batch1.onnx", keep_batch=True)
    assert read_card(fixed).batch == 1
    frame, truth = mosaic(samples, frames, [4, 6, 9])
    boxes = np.stack([landmark_box(points) for points in truth])
    with load_backend(fixed) as backend:
        looped = Landmarker(backend)
        assert looped.fixed_batch == 1
        result = looped.predict(frame, boxes, "landmarks")
    np.testing.assert_allclose(result.points, landmarker.predict(frame, boxes, "landmarks").points, rtol=0, atol=1e-3)


def test_no_faces_gives_empty_landmarks_without_inference(landmarker, backend, frames):
    before = backend.last_latency_s
    result = landmarker.predict(frames[0], np.zeros((0, 4)))
    assert result.points.shape == (0, 98, 2) and result.point_confidence.shape == (0, 98)
    assert result.face_confidence.shape == (0,) and backend.last_latency_s == before


def test_predict_from_points_uses_the_landmark_box_rule(landmarker, samples, frames):
    sample, frame = samples[8], frames[8]
    from_points = landmarker.predict_from_points(frame, sample.points)
    from_box = landmarker.predict(frame, landmark_box(sample.points), "landmarks")
    np.testing.assert_array_equal(from_points.points, from_box.points)
    # Tracking: feeding the prediction back keeps it on the face.
    tracked = landmarker.predict_from_points(frame, from_points.points)
    assert nme_percent(tracked.points, sample.points[None])[0] < NME_MEDIAN_LIMIT
    with pytest.raises(FrameError):
        landmarker.predict_from_points(frame, np.zeros((5,)))
    with pytest.raises(FrameError):
        landmarker.predict_from_points(frame, np.full((68, 2), np.nan))


def test_detector_boxes_are_converted_for_a_landmark_box_rule(landmarker, samples, frames):
    """The Haar-box -> landmark-box conversion (BoxConversion's measured default) keeps NME sane."""
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    if cascade.empty():
        pytest.skip("this OpenCV build ships no Haar cascades (opencv-python 5.x)")
    errors = []
    for sample, frame in zip(samples, frames):
        faces = cascade.detectMultiScale(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), 1.1, 5, minSize=(40, 40))
        box = landmark_box(sample.points)
        centre, side = (box[:2] + box[2:]) / 2, max(box[2:] - box[:2])
        found = [f for f in faces if np.all(np.abs(f[:2] + f[2:] / 2 - centre) < side / 2)]
        if found:
            x, y, w, h = found[0]
            errors.append(nme_percent(landmarker.predict(frame, [x, y, x + w, y + h]).points, sample.points[None])[0])
    assert len(errors) >= 6, "Haar finds most faces68 faces"
    print(f"\nHaar boxes -> landmark boxes: {len(errors)} faces, NME median {np.median(errors):.2f} %")
    assert np.median(errors) < NME_MEDIAN_LIMIT


def test_box_conversion_round_trips():
    conversion = BoxConversion()
    boxes = np.array([[10.0, 20.0, 110.0, 140.0], [0.0, 0.0, 50.0, 50.0]])
    np.testing.assert_allclose(conversion.landmarks_to_detector(conversion.detector_to_landmarks(boxes)), boxes)
    with pytest.raises(UsageError):
        BoxConversion(scale=0)


@pytest.mark.parametrize(
    "convert",
    [
        pytest.param(lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2GRAY), id="gray-2d"),
        pytest.param(lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)[..., None], id="gray-1ch"),
        pytest.param(lambda f: cv2.cvtColor(f, cv2.COLOR_BGR2BGRA), id="bgra"),
    ],
)
def test_gray_and_bgra_frames_are_converted(landmarker, samples, frames, convert):
    sample, frame = samples[9], frames[9]
    box = landmark_box(sample.points)
    converted = convert(frame)
    expected_frame = as_bgr(converted)
    assert expected_frame.shape == frame.shape and expected_frame.dtype == np.uint8
    result = landmarker.predict(converted, box, "landmarks")
    np.testing.assert_array_equal(result.points, landmarker.predict(expected_frame, box, "landmarks").points)
    if converted.ndim == 3 and converted.shape[2] == 4:
        np.testing.assert_array_equal(result.points, landmarker.predict(frame, box, "landmarks").points)


@pytest.mark.parametrize(
    "frame, words",
    [
        pytest.param(None, "None", id="none"),
        pytest.param(np.zeros((0, 0, 3), np.uint8), "empty", id="empty"),
        pytest.param(np.zeros((480, 0, 3), np.uint8), "empty", id="zero-width"),
        pytest.param(np.zeros((48, 64, 3), np.float32), "uint8", id="float"),
        pytest.param(np.zeros((48, 64, 5), np.uint8), "(48, 64, 5)", id="5-channels"),
        pytest.param(np.zeros((2, 48, 64, 3), np.uint8), "not an image", id="4-d"),
        pytest.param([[0, 1], [2, 3]], "list", id="list"),
    ],
)
def test_bad_frames_are_rejected_in_one_line(landmarker, frame, words):
    with pytest.raises(FrameError) as error:
        landmarker.predict(frame, [10, 10, 40, 40])
    assert words in str(error.value) and "\n" not in str(error.value)
    assert isinstance(error.value, EdgemarkError)


@pytest.mark.parametrize(
    "boxes, words",
    [
        pytest.param([10, 10, 5, 40], "no area", id="inverted"),
        pytest.param([[10, 10, 40]], "(F, 4)", id="three-values"),
        pytest.param([[10, np.nan, 40, 40]], "NaN", id="nan"),
        pytest.param("face", "numbers", id="text"),
    ],
)
def test_bad_boxes_are_rejected_in_one_line(landmarker, frames, boxes, words):
    with pytest.raises(FrameError) as error:
        landmarker.predict(frames[0], boxes)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_bad_box_kind_and_decode(landmarker, backend, frames):
    with pytest.raises(UsageError) as error:
        landmarker.predict(frames[0], [10, 10, 40, 40], box_kind="detection")
    assert "Did you mean 'detector'?" in str(error.value)
    with pytest.raises(UsageError) as error:
        Landmarker(backend, decode="centroid")
    assert "coords" in str(error.value)
    assert Landmarker(backend, decode="direct").decode == "direct"


# --------------------------------------------------------------------------------------------------
# heatmap path: a seeded tiny net (random weights: checks the math, not the accuracy)


@pytest.fixture(scope="module")
def tiny_onnx(work) -> Path:
    from export.onnx_export import onnx_from_checkpoint

    checkpoint = write_tiny_checkpoint(work / "tiny.pt")
    output = work / "tiny.onnx"
    onnx_from_checkpoint(checkpoint, output)
    return output


def test_heatmap_points_equal_export_evaluation(tiny_onnx, samples, frames):
    card = read_card(tiny_onnx)
    output, crops = predict_faces(tiny_onnx, card, samples[:4])
    expected = frame_points(output, card, crops.matrices)
    with load_backend(tiny_onnx) as backend:
        landmarker = Landmarker(backend)
        results = [landmarker.predict(f, landmark_box(s.points), "landmarks") for s, f in zip(samples[:4], frames[:4])]
    np.testing.assert_allclose(np.concatenate([r.points for r in results]), expected, rtol=0, atol=1e-4)
    confidence = np.concatenate([r.point_confidence for r in results])
    assert confidence.shape == (4, 68) and np.all((confidence >= 0) & (confidence <= 1))
    faces = np.concatenate([r.face_confidence for r in results])
    np.testing.assert_allclose(faces, confidence.mean(axis=1), rtol=1e-6)


def test_heatmap_decode_override(tiny_onnx, samples, frames):
    with load_backend(tiny_onnx) as backend:
        box = landmark_box(samples[0].points)
        centroid = Landmarker(backend).predict(frames[0], box, "landmarks")
        argmax = Landmarker(backend, decode="argmax").predict(frames[0], box, "landmarks")
        inputs, matrices = crop_inputs(frames[0], box, backend.card, "landmarks")
        with pytest.raises(UsageError) as error:
            Landmarker(backend, decode="softargmax")
        assert "Did you mean 'soft_argmax'?" in str(error.value)
    assert inputs.shape == (1, 3, 64, 64) and matrices.shape == (1, 2, 3)
    # argmax lands on the heatmap grid: input pixel = 4 * cell + 1.5
    grid = (np.stack([np.append(p, 1.0) for p in argmax.points[0]]) @ np.vstack([matrices[0], [0, 0, 1]]).T)[:, :2]
    np.testing.assert_allclose((grid - 1.5) / 4, np.round((grid - 1.5) / 4), atol=1e-6)
    assert not np.allclose(centroid.points, argmax.points)
