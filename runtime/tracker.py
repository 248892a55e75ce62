"""The video landmark tracker: detect, track by the previous frame's landmarks, smooth.

Per frame::

    frame ──► (re-detect every N frames, or when a track is lost or unsure) ──► boxes
          ──► one batched Landmarker call for every face (landmark boxes of tracked faces,
              detector boxes of new ones) ──► sanity checks ──► smoothing per face ──► faces

Tracking by landmarks: a tracked face is cropped from the bounding box of its last (unsmoothed)
landmarks, so the detector, the slowest stage on a CPU, runs only every ``redetect_every`` frames
(to find new faces and confirm old ones) or when a track is lost. A track is dropped when its
landmark confidence falls below ``min_confidence`` (heatmap models), when its landmarks collapse,
explode or leave the frame (every model, coords models included), or when ``max_missed_detections``
re-detections in a row find no face overlapping it.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from runtime.crop import landmark_box
from runtime.detect import FaceDetector
from runtime.landmarker import FrameError, Landmarker, as_bgr
from runtime.smoothing import Smoother, face_size, make_smoother

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrackerConfig:
    """How the tracker trades speed for robustness.

    Attributes:
        smoothing: smoother name (``one_euro``, ``ema``, ``kalman``, ``none``).
        smoothing_params: the smoother's parameters (see runtime.smoothing).
        fps: frame rate assumed when frames carry no timestamps.
        redetect_every: run the detector every N frames even while tracking (0: only when lost).
        max_faces: most faces tracked at once.
        min_confidence: drop a heatmap-model track whose mean landmark confidence is below this.
        max_missed_detections: drop a track after this many re-detections in a row without an
            overlapping face box.
        match_iou: a detection with at least this IoU to a track's box is that track's face.
    """

    smoothing: str = "one_euro"
    smoothing_params: tuple[tuple[str, float], ...] = ()
    fps: float = 30.0
    redetect_every: int = 30
    max_faces: int = 4
    min_confidence: float = 0.25
    max_missed_detections: int = 2
    match_iou: float = 0.3


@dataclass
class Face:
    """One tracked face in one frame.

    Attributes:
        track_id: stable id while the face is tracked (new faces get new ids).
        points: (K, 2) smoothed landmarks in frame pixels.
        raw_points: (K, 2) landmarks before smoothing.
        confidence: mean landmark confidence (NaN for coordinate-regression models).
        box: (4,) bounding box of the raw landmarks.
    """

    track_id: int
    points: np.ndarray
    raw_points: np.ndarray
    confidence: float
    box: np.ndarray


@dataclass
class FrameResult:
    """What the tracker made of one frame: faces, timing and what happened."""

    index: int
    faces: list[Face]
    detected: bool = False
    error: str = ""
    seconds: float = 0.0
    infer_seconds: float = 0.0


@dataclass
class _Track:
    track_id: int
    points: np.ndarray  # (K, 2) raw landmarks of the last frame
    smoother: Smoother
    missed_detections: int = 0
    box: np.ndarray = field(default_factory=lambda: np.zeros(4))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(A, B) intersection over union of (A, 4) and (B, 4) boxes."""
    a, b = np.asarray(a, dtype=np.float64)[:, None], np.asarray(b, dtype=np.float64)[None]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


class Tracker:
    """Landmarks of the faces in a video, frame after frame, on any backend.

    Args:
        landmarker: crops, infers and decodes (owns no state between frames).
        detector: finds faces to start and confirm tracks.
        config: tracking settings.
    """

    def __init__(self, landmarker: Landmarker, detector: FaceDetector, config: TrackerConfig = TrackerConfig()):
        self.landmarker = landmarker
        self.detector = detector
        self.config = config
        make_smoother(config.smoothing, fps=config.fps, **dict(config.smoothing_params))  # validate up front
        self.tracks: list[_Track] = []
        self.frame_index = -1
        self.frame_shape: tuple[int, int] | None = None
        self._next_id = 0

    def reset(self) -> None:
        """Forget every track (a new video, or a frame of another size)."""
        self.tracks = []
        self.frame_shape = None

    def process(self, frame, timestamp_s: float | None = None) -> FrameResult:
        """Track one frame. A bad frame gives a result with ``error`` set and no faces; the tracker goes on.

        Args:
            frame: (H, W, 3) uint8 BGR (grayscale and BGRA are converted).
            timestamp_s: capture time, for the smoother; ``None`` means 1 / fps after the last frame.
        """
        self.frame_index += 1
        started = time.perf_counter()
        try:
            image = as_bgr(frame)
        except FrameError as error:
            logger.warning("frame %d skipped: %s", self.frame_index, error)
            return FrameResult(self.frame_index, [], error=str(error), seconds=time.perf_counter() - started)
        if self.frame_shape is not None and image.shape[:2] != self.frame_shape:
            logger.warning("frame %d: size changed %s -> %s; re-detecting", self.frame_index, self.frame_shape, image.shape[:2])
            self.reset()
        self.frame_shape = image.shape[:2]

        detect_now = not self.tracks or (
            self.config.redetect_every > 0 and self.frame_index % self.config.redetect_every == 0
        )
        new_boxes = np.zeros((0, 4))
        if detect_now:
            boxes, _ = self.detector.detect(image)
            new_boxes = self._match_detections(boxes)
        infer_seconds = 0.0
        faces: list[Face] = []
        # Tracked faces: cropped from their last landmarks. New faces: from their detector boxes.
        if self.tracks:
            result = self.landmarker.predict(image, np.stack([t.box for t in self.tracks]), box_kind="landmarks")
            infer_seconds += result.latency_s
            kept = []
            for track, points, confidence in zip(self.tracks, result.points, result.face_confidence):
                if self._plausible(points, confidence, track.points):
                    kept.append(track)
                    faces.append(self._update(track, points, confidence, timestamp_s))
                else:
                    logger.debug("frame %d: track %d lost", self.frame_index, track.track_id)
            self.tracks = kept
        room = self.config.max_faces - len(self.tracks)
        if len(new_boxes) and room > 0:
            result = self.landmarker.predict(image, new_boxes[:room], box_kind="detector")
            infer_seconds += result.latency_s
            for points, confidence in zip(result.points, result.face_confidence):
                if self._plausible(points, confidence, None):
                    track = _Track(self._next_id, points, self._new_smoother())
                    self._next_id += 1
                    self.tracks.append(track)
                    faces.append(self._update(track, points, confidence, timestamp_s))
        return FrameResult(
            self.frame_index, faces, detected=detect_now, seconds=time.perf_counter() - started,
            infer_seconds=infer_seconds,
        )

    # ------------------------------------------------------------------------------------------
    def _new_smoother(self) -> Smoother:
        return make_smoother(self.config.smoothing, fps=self.config.fps, **dict(self.config.smoothing_params))

    def _update(self, track: _Track, points: np.ndarray, confidence: float, timestamp_s: float | None) -> Face:
        track.points = points
        track.box = landmark_box(points)
        smoothed = track.smoother.smooth(points, timestamp_s, face_size(points))
        return Face(track.track_id, smoothed.astype(np.float64), points, float(confidence), track.box)

    def _match_detections(self, boxes: np.ndarray) -> np.ndarray:
        """Count misses of tracks no detection overlaps; return the detector boxes of new faces."""
        if not self.tracks:
            return np.asarray(boxes, dtype=np.float64)
        track_boxes = self.landmarker.box_conversion.landmarks_to_detector(np.stack([t.box for t in self.tracks]))
        overlap = box_iou(track_boxes, boxes) if len(boxes) else np.zeros((len(self.tracks), 0))
        kept = []
        for track, row in zip(self.tracks, overlap):
            track.missed_detections = 0 if (row >= self.config.match_iou).any() else track.missed_detections + 1
            if track.missed_detections <= self.config.max_missed_detections:
                kept.append(track)
        self.tracks = kept
        claimed = (overlap >= self.config.match_iou).any(axis=0) if len(overlap) else np.zeros(len(boxes), bool)
        return np.asarray(boxes, dtype=np.float64)[~claimed]

    def _plausible(self, points: np.ndarray, confidence: float, previous: np.ndarray | None) -> bool:
        """Landmarks worth keeping: finite, inside the frame, confident, and not collapsed or exploded."""
        if not np.all(np.isfinite(points)):
            return False
        if not math.isnan(confidence) and confidence < self.config.min_confidence:
            return False
        height, width = self.frame_shape
        centre = points.mean(axis=0)
        if not (0 <= centre[0] < width and 0 <= centre[1] < height):
            return False
        size = face_size(points)
        if size < 8:
            return False
        if previous is not None:
            ratio = size / face_size(previous)
            if not 0.6 < ratio < 1.6:
                return False
        return True


def track_frames(tracker: Tracker, frames: list[np.ndarray], fps: float = 30.0) -> dict:
    """Run the tracker over in-memory frames (no decoding, display or writing): the end-to-end figure.

    Returns:
        ``frames``, ``faces_found`` (frames with at least one face), ``fps``, ``seconds``,
        ``infer_seconds`` and the per-frame (T, K, 2) smoothed points of the first track (NaN where
        none).
    """
    tracker.reset()
    tracker.frame_index = -1
    points, found = [], 0
    started = time.perf_counter()
    infer = 0.0
    for index, frame in enumerate(frames):
        result = tracker.process(frame, index / fps)
        infer += result.infer_seconds
        if result.faces:
            found += 1
            points.append(result.faces[0].points)
        else:
            points.append(None)
    seconds = time.perf_counter() - started
    size = next((p.shape for p in points if p is not None), (0, 2))
    sequence = np.stack([p if p is not None else np.full(size, np.nan) for p in points]) if frames else np.zeros((0, 0, 2))
    return {
        "frames": len(frames),
        "faces_found": found,
        "seconds": seconds,
        "fps": len(frames) / seconds if seconds > 0 else float("nan"),
        "infer_seconds": infer,
        "points": sequence,
    }
