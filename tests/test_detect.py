"""Face detection: registry and errors, bad frames, and the Haar cascade on real faces and real video."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from runtime import detect as detectlib
from runtime.annotations import read_pts_folder
from runtime.crop import landmark_box
from runtime.detect import DETECTORS, DetectorError, FaceDetector, HaarParams, make_detector, parse_spec
from runtime.frames import as_bgr
from runtime.errors import UsageError
from runtime.jitter import synthetic_sequence


def iou(a: np.ndarray, b: np.ndarray) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    overlap = width * height
    return overlap / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - overlap)


def finds(boxes: np.ndarray, points: np.ndarray) -> bool:
    """A box holds the annotated face: it contains the landmarks' centre and overlaps their box."""
    truth = landmark_box(points)
    centre = (truth[:2] + truth[2:]) / 2
    return any(
        box[0] <= centre[0] <= box[2] and box[1] <= centre[1] <= box[3] and iou(box, truth) >= 0.3 for box in boxes
    )


@pytest.fixture(scope="module")
def haar() -> FaceDetector:
    return make_detector("haar")


@pytest.fixture(scope="module")
def faces(faces68_dir):
    return read_pts_folder(faces68_dir)


@pytest.fixture(scope="module")
def frontal_face(faces):
    face = next(f for f in faces if f.image.name == "aflw2000_image00050.jpg")
    return cv2.imread(str(face.image)), face.points


def read_frames(path, count: int, step: int = 1) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    index = 0
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        if index % step == 0:
            frames.append(frame)
        index += 1
    capture.release()
    return frames


# ---------------------------------------------------------------- registry and errors
def test_specs_parse_and_unknown_names_suggest():
    assert set(DETECTORS) == {"haar", "yunet"}
    assert parse_spec("haar") == ("haar", None)
    assert parse_spec("yunet:models/face_detection_yunet.onnx") == ("yunet", "models/face_detection_yunet.onnx")
    assert parse_spec("YuNet:C:/models/y.onnx") == ("yunet", "C:/models/y.onnx")
    with pytest.raises(UsageError, match=r"Unknown face detector 'yunt'. Valid: haar, yunet. Did you mean 'yunet'\?"):
        make_detector("yunt:model.onnx")


def test_default_detector_is_the_zoo_yunet_and_falls_back_to_haar_offline(yunet_onnx, tmp_path, monkeypatch, caplog):
    from runtime.zoo import CACHE_ENV, URL_ENV

    detector = make_detector()  # the test run's cache holds the zoo's YuNet (conftest.model_cache)
    assert (detector.name, detector.model_path.name) == ("yunet", yunet_onnx.name)
    assert detector.box_conversion is not make_detector("haar").box_conversion

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "empty-cache"))
    monkeypatch.setenv(URL_ENV, "http://127.0.0.1:9/models")  # nothing listens: offline
    with caplog.at_level("WARNING", logger="runtime.detect"):
        fallback = make_detector("yunet", min_size=0.2, score_threshold=0.5)  # YuNet-only options are dropped
    assert fallback.name == "haar" and fallback.params.min_size == 0.2
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1 and "Haar fallback" in warnings[0] and "put the file at" in warnings[0]
    assert not (tmp_path / "empty-cache" / "models" / "yunet" / yunet_onnx.name).exists()


def test_yunet_without_its_file_says_what_to_do_in_one_line(tmp_path):
    missing = tmp_path / "face_detection_yunet.onnx"
    with pytest.raises(DetectorError) as error:
        make_detector(f"yunet:{missing}")
    message = str(error.value)
    assert "\n" not in message and "not found" in message and "opencv_zoo" in message and str(missing) in message
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx model")
    with pytest.raises(DetectorError, match="could not load it as a YuNet ONNX model") as error:
        make_detector(f"yunet:{garbage}")
    assert "\n" not in str(error.value)


def test_bad_options_and_cascade_files_fail_early(tmp_path):
    with pytest.raises(UsageError, match=r"Unknown option 'min_neighbours'.*Did you mean 'min_neighbors'\?"):
        make_detector("haar", min_neighbours=3)
    with pytest.raises(UsageError, match="scale must be in"):
        make_detector("haar", scale=2.0)
    with pytest.raises(UsageError, match="min_size"):
        make_detector("haar", min_size=1.5)
    with pytest.raises(DetectorError, match="Haar cascade file not found"):
        make_detector(f"haar:{tmp_path / 'missing.xml'}")
    bad = tmp_path / "bad.xml"
    bad.write_text("<opencv_storage></opencv_storage>")
    with pytest.raises(DetectorError, match="not a readable OpenCV cascade"):
        make_detector(f"haar:{bad}")
    with pytest.raises(AttributeError):
        HaarParams().scale = 0.5  # frozen


def test_yunet_wrapper_maps_boxes_back_and_sorts_largest_first(monkeypatch, tmp_path):
    """cv2.FaceDetectorYN replaced by a stub: checks the wrapper's scaling, filtering and order."""

    class StubYuNet:
        def __init__(self):
            self.sizes = []

        def setInputSize(self, size):
            self.sizes.append(size)

        def detect(self, image):
            faces = np.zeros((3, 15), dtype=np.float32)
            faces[0, :4], faces[0, -1] = (10, 10, 20, 20), 0.9  # 20 px in the half-size copy
            faces[1, :4], faces[1, -1] = (50, 40, 60, 70), 0.7
            faces[2, :4], faces[2, -1] = (0, 0, 4, 4), 0.95  # below min_size
            return 1, faces

    stub = StubYuNet()
    monkeypatch.setattr(detectlib.cv2.FaceDetectorYN, "create", staticmethod(lambda *args: stub), raising=False)
    model = tmp_path / "face_detection_yunet.onnx"
    model.write_bytes(b"stub")
    detector = make_detector(f"yunet:{model}", scale=0.5)
    boxes, scores = detector.detect(np.zeros((200, 300, 3), dtype=np.uint8))
    assert stub.sizes == [(150, 100)]
    assert np.allclose(scores, [0.7, 0.9])
    assert np.allclose(boxes, [[99.5, 79.5, 219.5, 219.5], [19.5, 19.5, 59.5, 59.5]])


# ---------------------------------------------------------------- bad frames
def test_bad_frames_never_crash(haar, frontal_face):
    image, _ = frontal_face
    for frame in (
        None,
        np.zeros((0, 0, 3), np.uint8),
        np.zeros((5,), np.uint8),
        np.zeros((4, 4, 2), np.uint8),
        np.zeros((2, 3, 4, 5), np.uint8),
        np.zeros((10, 10), bool),
        np.zeros((1, 1, 3), np.uint8),
        image.astype(np.float32) / 255,  # not 8-bit: rejected with a warning (runtime.frames.as_bgr)
        image.astype(np.uint16) * 257,
    ):
        boxes, scores = haar.detect(frame)
        assert boxes.shape == (0, 4) and scores.shape == (0,)
    reference, _ = haar.detect(image)
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    converted = (
        gray,
        gray[..., None],
        cv2.cvtColor(image, cv2.COLOR_BGR2BGRA),
        image[:, :, ::-1][:, :, ::-1],
    )
    for frame in converted:
        boxes, _ = haar.detect(frame)
        assert len(boxes) == 1 and iou(boxes[0], reference[0]) > 0.9
    assert as_bgr(np.zeros((3, 4, 1), np.uint8)).shape == (3, 4, 3)


# ---------------------------------------------------------------- real faces
def test_haar_finds_most_annotated_real_faces(haar, faces):
    found = []
    for face in faces:
        boxes, scores = haar.detect(cv2.imread(str(face.image)))
        assert boxes.dtype == np.float32 and scores.shape == (len(boxes),)
        if finds(boxes, face.points):
            found.append(face.image.name)
    missed = sorted({face.image.name for face in faces} - set(found))
    print(f"\nHaar found the annotated face in {len(found)}/{len(faces)} faces68 images; missed: {', '.join(missed)}")
    assert len(found) >= 7, missed


def test_downscaled_detection_maps_back_to_the_same_box(haar, frontal_face):
    image, points = frontal_face
    full, _ = haar.detect(image)
    half, _ = make_detector("haar", scale=0.5).detect(image)
    assert len(full) == 1 and len(half) == 1
    assert iou(full[0], half[0]) > 0.85
    assert finds(half, points)


def test_several_faces_come_largest_first(haar, frontal_face):
    image, _ = frontal_face
    canvas = np.full((500, 800, 3), 128, np.uint8)
    canvas[25:475, 340:790] = image
    canvas[150:375, 20:245] = cv2.resize(image, (225, 225), interpolation=cv2.INTER_AREA)
    boxes, scores = haar.detect(canvas)
    assert len(boxes) == 2 and len(scores) == 2
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert areas[0] > 3 * areas[1] and boxes[0, 0] > 340 and boxes[1, 2] < 245


def test_haar_box_moves_with_a_face_on_a_known_path(haar, frontal_face):
    image, points = frontal_face
    sequence = synthetic_sequence(image, points, frames=20, path="lissajous", seed=1)
    offsets = []
    for frame, truth in zip(sequence.frames, sequence.points):
        boxes, _ = haar.detect(frame)
        assert len(boxes) >= 1 and finds(boxes[:1], truth)
        true_box = landmark_box(truth)
        offsets.append((boxes[0, :2] + boxes[0, 2:]) / 2 - (true_box[:2] + true_box[2:]) / 2)
    # The box keeps a steady offset from the face (Haar boxes include the forehead): it follows the face.
    assert np.std(np.array(offsets), axis=0).max() < 0.05 * 200


def test_haar_tracks_the_face_in_the_real_video(face_video):
    frames = read_frames(face_video, 60)  # the first 2 s, consecutive frames
    detector = make_detector("haar", scale=0.5)
    results = [detector.detect(frame)[0] for frame in frames]
    single = sum(len(boxes) == 1 for boxes in results)
    print(f"\nHaar (scale 0.5) on face_closeup.mp4: one face in {single}/{len(frames)} consecutive frames")
    assert len(frames) == 60 and single >= 0.9 * len(frames)
    height, width = frames[0].shape[:2]
    previous = None
    for boxes in results:
        if len(boxes) == 0:
            previous = None
            continue
        box = boxes[0]
        side = box[2] - box[0]
        centre = (box[:2] + box[2:]) / 2
        # A close-up: the face spans most of the 450 px width, centred horizontally.
        assert 0.5 * width < side < width and width / 3 < centre[0] < 2 * width / 3 and 0 < centre[1] < height
        if previous is not None:
            previous_side = previous[2] - previous[0]
            assert np.linalg.norm(centre - (previous[:2] + previous[2:]) / 2) < 0.1 * previous_side
            assert abs(np.log(side / previous_side)) < 0.1
        previous = box
