"""Face detection that works offline out of the box, chosen by a spec string.

Specs (``--detector``):

- ``yunet`` (the default) — YuNet 2023mar (WIDER FACE; boxes, five keypoints, confidences in [0, 1])
  through ``cv2.FaceDetectorYN`` (OpenCV >= 4.8), its ONNX file fetched once by the model zoo
  (``runtime.zoo``: checksum, atomic cache, offline message). Finds profile, small and
  three-quarter faces that Haar misses (all 20 annotated faces of ``faces68``, ``faces68_extra`` and
  ``multiface``, against 14 for Haar). Offline with an empty cache it falls back to ``haar`` with one
  warning saying where to put the file.
- ``yunet:path/to/face_detection_yunet_2023mar.onnx`` — the same with a file the user supplies.
  YuNet's five keypoints are not used to place the crop: on the 20 annotated faces the landmarks'
  centre strayed from where the keypoints' mean put it by up to 0.7 eye-to-mouth distances (about a
  quarter of the box side) with pose, from where the box put it (``YUNET_BOX_CONVERSION``) by at
  most 0.14 of the box side.
- ``haar`` — OpenCV's Haar cascade ``haarcascade_frontalface_default.xml`` from
  ``cv2.data.haarcascades``: needs nothing beyond the wheel, but only OpenCV 4.x has it (5.x removed
  ``cv2.CascadeClassifier`` and ships no cascades, hence the project's ``<5`` pin). Frontal and
  near-frontal faces only; its scores are the cascade's final-stage weights, not probabilities.
- ``haar:path/to/cascade.xml`` — another OpenCV cascade file (e.g. ``haarcascade_frontalface_alt2.xml``).

Every detector returns boxes as (F, 4) float32 ``x1, y1, x2, y2`` in the frame's pixels, with pixel
centres at integers as everywhere in the project (so a box covering pixel columns ``a..b`` has
``x1 = a - 0.5`` and ``x2 = b + 0.5``), largest first, plus (F,) float32 scores. Boxes are not
clipped to the frame: a face partly outside keeps its full size, which the crop rule needs. Each
detector carries the measured relation of its boxes to the landmarks' box (``box_conversion``).

Resolution: ``min_size`` is the smallest face wanted, as a fraction of the frame's shorter side.
``scale=None`` (YuNet's default) detects on a copy resized so that such a face is
``smallest_face_px`` pixels wide there, the size below which the detector starts to miss faces
(YuNet: 32 px, where it found 16 of 20 annotated faces, all 20 at 48 px; 15 at 24 px): detection
costs the same at 360p and 720p. A number fixes the factor (1 = full resolution). Frames that are
``None``, empty or of an unexpected shape give an empty result (with a warning); grayscale,
single-channel and BGRA frames are converted (:func:`runtime.frames.as_bgr`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import cv2
import numpy as np

from runtime.errors import EdgemarkError, UsageError, did_you_mean, unknown_name
from runtime.frames import FrameError, as_bgr
from runtime.landmarker import HAAR_BOX_CONVERSION, YUNET_BOX_CONVERSION, BoxConversion

logger = logging.getLogger(__name__)

DEFAULT_DETECTOR = "yunet"
HAAR_DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"
YUNET_HELP = (
    "download face_detection_yunet_2023mar.onnx from the OpenCV model zoo "
    "(github.com/opencv/opencv_zoo, models/face_detection_yunet) and pass --detector yunet:PATH"
)


class DetectorError(EdgemarkError):
    """A detector that cannot be built: missing or unreadable model file, missing OpenCV feature."""


def _check_common(min_size: float, scale: float | None) -> None:
    if not (isinstance(min_size, (int, float)) and 0 <= min_size < 1):
        raise UsageError(f"detector min_size is a fraction of the frame's shorter side in [0, 1), got {min_size!r}")
    if scale is not None and not (isinstance(scale, (int, float)) and 0 < scale <= 1):
        raise UsageError(f"detector scale must be in (0, 1] (1 = full resolution) or None (matched to min_size), got {scale!r}")


@dataclass(frozen=True)
class HaarParams:
    """Options of the Haar cascade detector.

    Attributes:
        min_size: smallest face side as a fraction of the frame's shorter side.
        scale: resize factor of the copy detection runs on (1 = full resolution; None: matched to
            ``min_size``, the smallest face 24 px, the cascade's window).
        scale_factor: step between the cascade's scales (``detectMultiScale``'s ``scaleFactor``).
        min_neighbors: overlapping hits needed to keep a face; higher = fewer false positives.
        equalize: equalise the histogram first (helps low-contrast frames, can add false positives).
    """

    min_size: float = 0.1
    scale: float | None = 1.0
    scale_factor: float = 1.1
    min_neighbors: int = 5
    equalize: bool = False

    def __post_init__(self):
        _check_common(self.min_size, self.scale)
        if not self.scale_factor > 1:
            raise UsageError(f"haar scale_factor must be > 1, got {self.scale_factor!r}")
        if not (isinstance(self.min_neighbors, int) and self.min_neighbors >= 0):
            raise UsageError(f"haar min_neighbors must be an integer >= 0, got {self.min_neighbors!r}")


@dataclass(frozen=True)
class YuNetParams:
    """Options of the YuNet detector.

    Attributes:
        min_size: smallest face side as a fraction of the frame's shorter side.
        scale: resize factor of the copy detection runs on (1 = full resolution; None, the default:
            matched to ``min_size``, see the module docstring).
        score_threshold: lowest face confidence kept.
        nms_threshold: IoU above which overlapping boxes are merged.
        top_k: most candidates kept before non-maximum suppression.
    """

    min_size: float = 0.1
    scale: float | None = None
    score_threshold: float = 0.6
    nms_threshold: float = 0.3
    top_k: int = 50

    def __post_init__(self):
        _check_common(self.min_size, self.scale)
        if not 0 <= self.score_threshold <= 1:
            raise UsageError(f"yunet score_threshold must be in [0, 1], got {self.score_threshold!r}")
        if not 0 < self.nms_threshold <= 1:
            raise UsageError(f"yunet nms_threshold must be in (0, 1], got {self.nms_threshold!r}")
        if not (isinstance(self.top_k, int) and self.top_k > 0):
            raise UsageError(f"yunet top_k must be a positive integer, got {self.top_k!r}")


def _empty() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 4), dtype=np.float32), np.zeros((0,), dtype=np.float32)



class FaceDetector:
    """Base class: converts the frame, downscales, delegates to ``_detect`` and maps boxes back.

    Subclasses implement ``_detect(image_bgr, min_side_px) -> (boxes (F, 4) as x, y, w, h in the
    detection image's pixel edges, scores (F,))``.
    """

    name = "base"
    # The face width below which the detector starts to miss faces, in the pixels it sees.
    smallest_face_px = 24.0
    # Confirming re-detection around a track (runtime.tracker): face widths to search at, in order.
    confirm_face_px: tuple[float, ...] = (56.0, 96.0)
    box_conversion: BoxConversion = HAAR_BOX_CONVERSION

    def __init__(self, params):
        self.params = params

    def scale_for(self, shorter_side: int, min_size: float | None = None) -> float:
        """The resize factor detection uses on a frame whose shorter side is ``shorter_side`` pixels
        (``min_size``: another smallest face than the detector's own)."""
        if self.params.scale is not None:
            return float(self.params.scale)
        min_size = self.params.min_size if min_size is None else min_size
        if min_size <= 0:
            return 1.0
        return min(1.0, self.smallest_face_px / (min_size * shorter_side))

    def detect(self, frame_bgr, min_size: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Find faces in one frame.

        Args:
            frame_bgr: (H, W, 3) uint8 BGR frame (grayscale and BGRA are converted, see :func:`runtime.frames.as_bgr`).
            min_size: for this call, the smallest face as a fraction of the shorter side, instead of the
                detector's own (a larger one searches a smaller copy: a quick look for large faces).

        Returns:
            (F, 4) float32 boxes ``x1, y1, x2, y2`` in frame pixels (pixel centres at integers),
            largest area first, and (F,) float32 scores. Empty arrays when there is no face or the
            frame is unusable.
        """
        try:
            image = as_bgr(frame_bgr)
        except FrameError as error:
            logger.warning("%s detector: no faces in an unusable frame (%s)", self.name, error)
            return _empty()
        height, width = image.shape[:2]
        min_size = self.params.min_size if min_size is None else min_size
        scale = self.scale_for(min(height, width), min_size)
        if scale < 1:
            small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = cv2.resize(image, small_size, interpolation=cv2.INTER_AREA)
        # Exact per-axis factors after rounding the resized size.
        factor_x = width / image.shape[1]
        factor_y = height / image.shape[0]
        min_side = min_size * min(image.shape[:2])
        rectangles, scores = self._detect(image, min_side)
        if len(rectangles) == 0:
            return _empty()
        rectangles = np.asarray(rectangles, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        keep = (rectangles[:, 2] >= min_side) & (rectangles[:, 3] >= min_side)
        rectangles, scores = rectangles[keep], scores[keep]
        # Pixel edges in the detection image -> pixel-centre coordinates in the frame.
        boxes = (
            np.stack(
                [
                    rectangles[:, 0] * factor_x,
                    rectangles[:, 1] * factor_y,
                    (rectangles[:, 0] + rectangles[:, 2]) * factor_x,
                    (rectangles[:, 1] + rectangles[:, 3]) * factor_y,
                ],
                axis=1,
            )
            - 0.5
        )
        order = np.argsort(-(rectangles[:, 2] * rectangles[:, 3]), kind="stable")
        return boxes[order].astype(np.float32), scores[order]

    def _detect(self, image_bgr: np.ndarray, min_side_px: float) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class HaarDetector(FaceDetector):
    """OpenCV Haar cascade (see the module docstring)."""

    name = "haar"

    def __init__(self, params: HaarParams, model_path: str | None = None):
        super().__init__(params)
        if not hasattr(cv2, "CascadeClassifier"):
            raise DetectorError(
                f"OpenCV {cv2.__version__} has no CascadeClassifier (removed in 5.x); "
                "install 'opencv-python-headless<4.11' or use --detector yunet:PATH"
            )
        if model_path is None:
            folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
            if folder is None:
                raise DetectorError(
                    f"OpenCV {cv2.__version__} ships no Haar cascades (cv2.data.haarcascades is missing); "
                    "install 'opencv-python-headless<4.11', pass --detector haar:PATH, or use --detector yunet:PATH"
                )
            path = Path(folder) / HAAR_DEFAULT_CASCADE
        else:
            path = Path(model_path)
        if not path.is_file():
            raise DetectorError(
                f"Haar cascade file not found: {path}; pass an OpenCV cascade XML as --detector haar:PATH"
            )
        self.model_path = path
        unreadable = DetectorError(
            f"{path}: not a readable OpenCV cascade XML; pass one such as {HAAR_DEFAULT_CASCADE}"
        )
        try:
            self._cascade = cv2.CascadeClassifier(str(path))
        except (cv2.error, SystemError):  # OpenCV 4.10 raises SystemError for a malformed XML
            raise unreadable from None
        if self._cascade.empty():
            raise unreadable

    def _detect(self, image_bgr, min_side_px):
        gray = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
        if self.params.equalize:
            gray = cv2.equalizeHist(gray)
        side = max(1, math.ceil(min_side_px))
        if side > min(gray.shape):
            return _empty()
        rectangles, _, weights = self._cascade.detectMultiScale3(
            gray,
            scaleFactor=self.params.scale_factor,
            minNeighbors=self.params.min_neighbors,
            minSize=(side, side),
            outputRejectLevels=True,
        )
        if len(rectangles) == 0:
            return _empty()
        return np.asarray(rectangles), np.asarray(weights, dtype=np.float32).reshape(-1)


class YuNetDetector(FaceDetector):
    """YuNet through ``cv2.FaceDetectorYN`` (see the module docstring)."""

    name = "yunet"
    smallest_face_px = 32.0
    # Around a track on face_closeup.mp4, a face 32 px wide was confirmed in all 275 frames (2 ms a search).
    confirm_face_px = (32.0, 64.0)
    box_conversion = YUNET_BOX_CONVERSION

    def __init__(self, params: YuNetParams, model_path: str | None = None):
        super().__init__(params)
        if not model_path:
            raise UsageError(f"the yunet detector needs its ONNX file: --detector yunet:PATH; {YUNET_HELP}")
        path = Path(model_path)
        if not path.is_file():
            raise DetectorError(f"YuNet model file not found: {path}; {YUNET_HELP}")
        if not hasattr(cv2, "FaceDetectorYN"):
            raise DetectorError(
                f"OpenCV {cv2.__version__} has no cv2.FaceDetectorYN; install opencv-python-headless>=4.8"
            )
        self.model_path = path
        try:
            self._detector = cv2.FaceDetectorYN.create(
                str(path), "", (320, 320), params.score_threshold, params.nms_threshold, params.top_k
            )
        except cv2.error as error:
            reason = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown OpenCV error"
            raise DetectorError(
                f"{path}: OpenCV could not load it as a YuNet ONNX model ({reason}); {YUNET_HELP}"
            ) from None
        self._input_size: tuple[int, int] | None = None

    def _detect(self, image_bgr, min_side_px):
        size = (image_bgr.shape[1], image_bgr.shape[0])
        if size != self._input_size:
            self._detector.setInputSize(size)
            self._input_size = size
        _, faces = self._detector.detect(image_bgr)
        if faces is None or len(faces) == 0:
            return _empty()
        # (F, 15): x, y, w, h, five landmark x/y pairs, score.
        return faces[:, :4], faces[:, -1]


# ---------------------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class DetectorEntry:
    """One registered detector: options dataclass, builder, whether its spec needs a model path."""

    params: type
    build: Callable[..., FaceDetector]
    needs_model: bool
    description: str


DETECTORS: dict[str, DetectorEntry] = {
    "haar": DetectorEntry(HaarParams, HaarDetector, False, "OpenCV Haar cascade (bundled with opencv<4.11)"),
    "yunet": DetectorEntry(
        YuNetParams, YuNetDetector, False, "YuNet via cv2.FaceDetectorYN (from the model zoo, or yunet:PATH to its ONNX)"
    ),
}


def _names(params: type) -> list[str]:
    return [field.name for field in fields(params)]


def _zoo_yunet() -> str | None:
    """The zoo's YuNet file (downloaded on first use), or None with one warning when it cannot be had."""
    from runtime.zoo import ZooError, fetch_file, model_paths

    try:
        return str(fetch_file("yunet", timeout_s=10.0))
    except ZooError as error:
        logger.warning(
            "YuNet is not in the model cache and could not be fetched (%s); using the Haar fallback, which misses "
            "profile and small faces. For YuNet offline, put the file at %s", str(error).split(";")[0], model_paths("yunet")[0]
        )
        return None


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split ``name[:path]`` into the registry name and the optional model path.

    Raises:
        UsageError: unknown name (with a did-you-mean).
    """
    name, separator, path = str(spec).partition(":")
    name = name.strip().lower()
    if name not in DETECTORS:
        raise unknown_name("face detector", name, list(DETECTORS))
    return name, (path if separator and path else None)


def make_detector(spec: str = DEFAULT_DETECTOR, **options) -> FaceDetector:
    """Build a face detector from a spec such as ``yunet``, ``haar`` or ``yunet:models/face_detection_yunet.onnx``.

    Args:
        spec: ``name[:model path]`` (see the module docstring).
        **options: fields of that detector's options dataclass (``min_size``, ``scale``, ...); a value
            of None keeps the detector's default.

    Raises:
        UsageError: unknown detector or option, invalid value.
        DetectorError: the model file is missing or unreadable, or OpenCV lacks the detector.
    """
    name, model_path = parse_spec(spec)
    entry = DETECTORS[name]
    valid = _names(entry.params)
    for key in options:
        if key not in valid:
            raise UsageError(
                f"Unknown option '{key}' for detector '{name}'. Valid: {', '.join(valid)}.{did_you_mean(key, valid)}"
            )
    options = {key: value for key, value in options.items() if value is not None}
    if name == "yunet" and model_path is None:
        model_path = _zoo_yunet()
        if model_path is None:
            return make_detector("haar", **{k: v for k, v in options.items() if k in _names(HaarParams)})
    detector = entry.build(entry.params(**options), model_path=model_path)
    logger.debug("face detector %s (%s)", name, getattr(detector, "model_path", ""))
    return detector
