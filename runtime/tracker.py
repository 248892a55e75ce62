"""The video landmark tracker: detect, track by the previous frame's landmarks, smooth.

Per frame::

    frame ──► (re-detect every N frames, or when a track is lost or unsure) ──► boxes
          ──► one batched Landmarker call for every face (landmark boxes of tracked faces,
              detector boxes of new ones) ──► sanity checks ──► smoothing per face ──► faces

Tracking by landmarks: a tracked face is cropped from the bounding box of its last (unsmoothed)
landmarks, so the detector, the slowest stage on a CPU, runs only every ``redetect_every`` frames
(to find new faces and confirm old ones) or when a track is lost. When the tracker already follows
``max_faces`` faces a new face could not be taken anyway, so that re-detection only confirms the
tracks: the detector searches a small copy of the region around each track instead of the whole
frame, at face widths the detector names (``FaceDetector.confirm_face_px``): Haar first at 56 pixels
(2 ms on the close-up video, against 35 ms for the frame; it misses the face in 32 of the 275
frames), then, only where that finds nothing, at 96 (7 ms; all 275 frames confirmed); YuNet at 32
pixels confirms all 275 (2 ms). A track is dropped when its
landmark confidence falls below ``min_confidence`` (heatmap models), when its landmarks collapse,
explode or leave the frame (every model, coords models included), or when ``max_missed_detections``
re-detections in a row find no face overlapping it.

Identities: an id stays with one face. A shot cut (the frame's colour and grey-level signature jumps,
:mod:`runtime.appearance`) ends every track, and the frame is searched anew; a track whose face
signature jumps from one frame to the next has another face or background under it and ends. Two
tracks that converge on one face merge into the older id. Whenever a track ends, the next frame is
searched, so a face that replaces it is picked up at once.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from runtime.appearance import (
    CUT_DISTANCE,
    CUT_GREY_DISTANCE,
    FACE_CHANGE_DISTANCE,
    FACE_CHANGE_GREY_DISTANCE,
    differs,
    face_signature,
    frame_signature,
)
from runtime.detect import FaceDetector
from runtime.landmarker import FrameError, Landmarker, as_bgr
from runtime.smoothing import Smoother, make_smoother

logger = logging.getLogger(__name__)

# Confirming re-detection of a full tracker: the region around each track, in expected detector
# boxes, and the face widths in pixels of the images the detector searches, tried in this order
# (after the detector's own ``scale``; Haar's smallest window is 24).
CONFIRM_REGION = 2.0
CONFIRM_FACE_PX = (56.0, 96.0)
# A frame whose shorter side is below this is a broken frame (a decoder hiccup, a 1x1 placeholder), not a
# new video: it is skipped and the tracks go on, where a real change of size resets them.
MIN_FRAME_SIDE = 16
# A whole-frame search for one face first looks for faces this many times the smallest size.
COARSE_FACTOR = 2.0
# Weight of each new frame in a track's running mean face signature (about the last 10 frames).
REFERENCE_WEIGHT = 0.1


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
        merge_iou: two tracks whose landmark boxes overlap by at least this IoU are one face: the
            younger track is dropped and the older id goes on.
        cut_distance: a frame whose signature is at least this far (colour; grey: ``CUT_GREY_DISTANCE``)
            from the previous frame's is a shot cut: every track ends and the frame is searched anew
            (1 disables; see runtime.appearance).
        face_change_distance: a track whose face signature moves at least this far (colour; grey:
            ``FACE_CHANGE_GREY_DISTANCE``) from one frame to the next has another face (or background)
            under it: the track ends, the face gets a new id (1 disables).
    """

    smoothing: str = "one_euro"
    smoothing_params: tuple[tuple[str, float], ...] = ()
    fps: float = 30.0
    redetect_every: int = 30
    max_faces: int = 4
    min_confidence: float = 0.25
    max_missed_detections: int = 2
    match_iou: float = 0.3
    merge_iou: float = 0.5
    cut_distance: float = CUT_DISTANCE
    face_change_distance: float = FACE_CHANGE_DISTANCE


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
    cut: bool = False
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
    size: float = 1.0  # face size of ``points`` (runtime.smoothing.face_size)
    signature: np.ndarray | None = None  # colour signature of the face in the last frame (runtime.appearance)
    reference: np.ndarray | None = None  # a slow running mean of those signatures: the face as it usually looks


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
        # How this detector's boxes relate to the landmarks' box (measured per detector, runtime.detect).
        self.box_conversion = getattr(detector, "box_conversion", landmarker.box_conversion)
        self.config = config
        make_smoother(config.smoothing, fps=config.fps, **dict(config.smoothing_params))  # validate up front
        self.tracks: list[_Track] = []
        self.frame_index = -1
        self.frame_shape: tuple[int, int] | None = None
        self._next_id = 0
        self._frame_signature: np.ndarray | None = None
        self._search_next = False  # a track ended: search the next frame for faces
        self.non_finite_faces = 0  # faces whose landmarks came back NaN or infinite (a broken model)

    def reset(self) -> None:
        """Forget every track (a new video, or a frame of another size)."""
        self.tracks = []
        self.frame_shape = None
        self._frame_signature = None
        self._search_next = False

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
        if min(image.shape[:2]) < MIN_FRAME_SIDE:
            error = f"too small: a frame of {image.shape[1]}x{image.shape[0]} pixels cannot hold a face (a broken frame?)"
            logger.warning("frame %d skipped: %s", self.frame_index, error)
            return FrameResult(self.frame_index, [], error=error, seconds=time.perf_counter() - started)
        if self.frame_shape is not None and image.shape[:2] != self.frame_shape:
            logger.warning("frame %d: size changed %s -> %s; re-detecting", self.frame_index, self.frame_shape, image.shape[:2])
            self.reset()
        self.frame_shape = image.shape[:2]
        cut = self._shot_cut(image)
        if cut and self.tracks:
            logger.debug("frame %d: shot cut; %d track(s) end", self.frame_index, len(self.tracks))
            self.tracks = []

        detect_now = not self.tracks or self._search_next or (
            self.config.redetect_every > 0 and self.frame_index % self.config.redetect_every == 0
        )
        self._search_next = False
        new_boxes = np.zeros((0, 4))
        if detect_now:
            if self.tracks and len(self.tracks) >= self.config.max_faces:
                boxes = self._detect_near_tracks(image)  # full: confirm the tracks only
            else:
                boxes = self._detect_frame(image, self.config.max_faces - len(self.tracks))
            new_boxes = self._match_detections(boxes)
        infer_seconds = 0.0
        faces: list[Face] = []
        # Tracked faces: cropped from their last landmarks. New faces: from their detector boxes.
        if self.tracks:
            # Checked already: a converted frame and the finite, non-empty boxes of plausible landmarks.
            result = self.landmarker._predict_checked(image, np.stack([t.box for t in self.tracks]), "landmarks")
            infer_seconds += result.latency_s
            kept = []
            for track, points, confidence in zip(self.tracks, result.points, result.face_confidence):
                box, size = _box_and_size(points)
                if not self._plausible(points, confidence, size, track.size):
                    logger.debug("frame %d: track %d lost", self.frame_index, track.track_id)
                elif not self._same_face(track, image, box):
                    logger.debug("frame %d: track %d ends: another face under it", self.frame_index, track.track_id)
                else:
                    kept.append(track)
                    faces.append(self._update(track, points, box, size, confidence, timestamp_s))
            self._search_next = len(kept) < len(self.tracks)
            self.tracks = kept
        room = self.config.max_faces - len(self.tracks)
        if len(new_boxes) and room > 0:
            result = self.landmarker.predict(image, new_boxes[:room], "detector", self.box_conversion)
            infer_seconds += result.latency_s
            for points, confidence in zip(result.points, result.face_confidence):
                box, size = _box_and_size(points)
                if self._plausible(points, confidence, size, None):
                    signature = face_signature(image, box)
                    track = _Track(self._next_id, points, self._new_smoother(), signature=signature, reference=signature)
                    self._next_id += 1
                    self.tracks.append(track)
                    faces.append(self._update(track, points, box, size, confidence, timestamp_s))
        faces = self._merge_overlapping(faces)
        return FrameResult(
            self.frame_index, faces, detected=detect_now, cut=cut, seconds=time.perf_counter() - started,
            infer_seconds=infer_seconds,
        )

    def _shot_cut(self, image: np.ndarray) -> bool:
        """True when this frame's colour signature is :attr:`TrackerConfig.cut_distance` or more from the last one's."""
        if self.config.cut_distance >= 1:
            return False
        signature = frame_signature(image)
        previous, self._frame_signature = self._frame_signature, signature
        return previous is not None and differs(previous, signature, self.config.cut_distance, CUT_GREY_DISTANCE)

    def _same_face(self, track: _Track, image: np.ndarray, box: np.ndarray) -> bool:
        """Whether the face under ``track``'s new ``box`` still looks like its face (updates the track's
        signatures when it does).

        Another face differs from both the last frame's signature and the running mean of the track's;
        a single broken frame (smeared by the decoder) differs from the last only, and the face after it
        matches the mean again, so the id survives it.
        """
        if self.config.face_change_distance >= 1:
            return True
        signature = face_signature(image, box)
        if signature is None or track.signature is None or track.reference is None:
            track.signature = track.reference = signature
            return True
        thresholds = (self.config.face_change_distance, FACE_CHANGE_GREY_DISTANCE)
        if differs(track.signature, signature, *thresholds) and differs(track.reference, signature, *thresholds):
            return False
        track.signature = signature
        track.reference = (1 - REFERENCE_WEIGHT) * track.reference + REFERENCE_WEIGHT * signature
        return True

    def _merge_overlapping(self, faces: list[Face]) -> list[Face]:
        """Drop tracks that have converged on a face an older track already follows.

        A false detection near a face starts a second track that converges onto the same face; without
        this, a 4,950-frame soak ended with four identical tracks on one face. ``self.tracks`` and
        ``faces`` are in the same order, older tracks first, so the older id always survives.
        """
        kept_tracks: list[_Track] = []
        kept_faces: list[Face] = []
        for track, face in zip(self.tracks, faces):
            if kept_tracks and box_iou(track.box[None], np.stack([t.box for t in kept_tracks])).max() >= self.config.merge_iou:
                logger.debug("frame %d: track %d merged into an older track", self.frame_index, track.track_id)
                continue
            kept_tracks.append(track)
            kept_faces.append(face)
        self.tracks = kept_tracks
        return kept_faces

    # ------------------------------------------------------------------------------------------
    def _new_smoother(self) -> Smoother:
        return make_smoother(self.config.smoothing, fps=self.config.fps, **dict(self.config.smoothing_params))

    def _update(
        self, track: _Track, points: np.ndarray, box: np.ndarray, size: float, confidence: float,
        timestamp_s: float | None,
    ) -> Face:  # fmt: skip
        track.points, track.box, track.size = points, box, size
        smoothed = track.smoother.smooth(points, timestamp_s, size)
        return Face(track.track_id, smoothed.astype(np.float64), points, float(confidence), box)

    def _detect_frame(self, image: np.ndarray, room: int) -> np.ndarray:
        """(D, 4) detector boxes in the whole frame.

        When one more face is all the tracker can take, a quick look for faces at least
        ``COARSE_FACTOR`` times the smallest size comes first (a copy with a quarter of the pixels when
        the detector sizes its input to the face, as YuNet does); the full search runs only where that
        finds nothing. On the 640x360 multishot footage, tracking one face, detection time fell from
        0.23 to 0.08 s over the 320 frames (most faces there are large).
        """
        params = getattr(self.detector, "params", None)
        if room == 1 and params is not None and params.scale is None and 0 < params.min_size * COARSE_FACTOR < 1:
            boxes, _ = self.detector.detect(image, min_size=params.min_size * COARSE_FACTOR)
            if len(boxes):
                return boxes
        return self.detector.detect(image)[0]

    def _detect_near_tracks(self, image: np.ndarray) -> np.ndarray:
        """(D, 4) detector boxes found in the region around each track, in frame pixels.

        Each region is ``CONFIRM_REGION`` times the track's expected detector box, clipped to the
        frame. It is searched small first (the face ``CONFIRM_FACE_PX[0]`` pixels wide where the
        detector looks) and, when that finds no box overlapping the track, again larger
        (``CONFIRM_FACE_PX[1]``): a cheap search confirms most frames, the larger one the rest.
        """
        expected = self.box_conversion.landmarks_to_detector(np.stack([t.box for t in self.tracks]))
        found = []
        for box in expected:
            for face_px in getattr(self.detector, "confirm_face_px", CONFIRM_FACE_PX):
                boxes = self._detect_in_region(image, box, face_px)
                found.append(boxes)
                if len(boxes) and (box_iou(box[None], boxes) >= self.config.match_iou).any():
                    break
        return np.concatenate(found) if found else np.zeros((0, 4))

    def _detect_in_region(self, image: np.ndarray, box: np.ndarray, face_px: float) -> np.ndarray:
        """(D, 4) detector boxes in the region around an expected detector ``box``, searched with the
        face about ``face_px`` pixels wide in the image the detector sees (after its own ``scale``)."""
        height, width = image.shape[:2]
        x1, y1, x2, y2 = box
        side = max(x2 - x1, y2 - y1)
        half = CONFIRM_REGION * side / 2
        centre_x, centre_y = (x1 + x2) / 2, (y1 + y2) / 2
        left, top = max(0, math.floor(centre_x - half)), max(0, math.floor(centre_y - half))
        right, bottom = min(width, math.ceil(centre_x + half)), min(height, math.ceil(centre_y + half))
        if right - left < 2 or bottom - top < 2:
            return np.zeros((0, 4))
        # A fixed detector scale shrinks the region again; a matched one (None) leaves a region this small as it is.
        detector_scale = getattr(getattr(self.detector, "params", None), "scale", None) or 1.0
        factor = min(1.0, face_px / max(side * detector_scale, 1.0))
        # Shrink by a whole factor first (INTER_AREA's fast path: 0.07 ms for a 450x680 frame halved,
        # against 1.4 ms for a fractional factor), then bilinearly by the rest (>= 0.5).
        whole = max(1, min(int(1.0 / factor), right - left, bottom - top))
        right, bottom = right - (right - left) % whole, bottom - (bottom - top) % whole
        region = image[top:bottom, left:right]
        if whole > 1:
            region = cv2.resize(region, ((right - left) // whole, (bottom - top) // whole), interpolation=cv2.INTER_AREA)
        rest = factor * whole
        if rest < 1.0:
            size = (max(1, round(region.shape[1] * rest)), max(1, round(region.shape[0] * rest)))
            region = cv2.resize(region, size, interpolation=cv2.INTER_LINEAR)
        boxes, _ = self.detector.detect(region)
        if not len(boxes):
            return np.zeros((0, 4))
        # Pixel edges scale; pixel centres sit half a pixel inside them (see runtime.detect).
        scale_x, scale_y = (right - left) / region.shape[1], (bottom - top) / region.shape[0]
        boxes = (boxes.astype(np.float64) + 0.5) * (scale_x, scale_y, scale_x, scale_y)
        return boxes - 0.5 + (left, top, left, top)

    def _match_detections(self, boxes: np.ndarray) -> np.ndarray:
        """Count misses of tracks no detection overlaps; return the detector boxes of new faces."""
        if not self.tracks:
            return np.asarray(boxes, dtype=np.float64)
        track_boxes = self.box_conversion.landmarks_to_detector(np.stack([t.box for t in self.tracks]))
        overlap = box_iou(track_boxes, boxes) if len(boxes) else np.zeros((len(self.tracks), 0))
        kept = []
        for track, row in zip(self.tracks, overlap):
            track.missed_detections = 0 if (row >= self.config.match_iou).any() else track.missed_detections + 1
            if track.missed_detections <= self.config.max_missed_detections:
                kept.append(track)
        self.tracks = kept
        claimed = (overlap >= self.config.match_iou).any(axis=0) if len(overlap) else np.zeros(len(boxes), bool)
        return np.asarray(boxes, dtype=np.float64)[~claimed]

    def _plausible(self, points: np.ndarray, confidence: float, size: float, previous_size: float | None) -> bool:
        """Landmarks worth keeping: finite, inside the frame, confident, and not collapsed or exploded.

        ``size`` is the face size of ``points``, ``previous_size`` the track's in the last frame
        (``None`` for a new face).
        """
        total_x, total_y = points.sum(axis=0)  # NaN or infinite if any point is
        if not (math.isfinite(total_x) and math.isfinite(total_y)):
            self.non_finite_faces += 1
            return False
        if not math.isnan(confidence) and confidence < self.config.min_confidence:
            return False
        height, width = self.frame_shape
        centre_x, centre_y = total_x / len(points), total_y / len(points)
        if not (0 <= centre_x < width and 0 <= centre_y < height):
            return False
        if size < 8:
            return False
        if previous_size is not None:
            ratio = size / previous_size
            if not 0.6 < ratio < 1.6:
                return False
        return True


def _box_and_size(points: np.ndarray) -> tuple[np.ndarray, float]:
    """(4,) bounding box of (K, 2) points and :func:`runtime.smoothing.face_size` of them, from one min/max."""
    low, high = points.min(axis=0), points.max(axis=0)
    width, height = float(high[0] - low[0]), float(high[1] - low[1])
    size = math.sqrt(max(width * height, 0.0))  # face_size's formula and fallbacks
    return np.concatenate([low, high]), size if size > 0 else max(width, height, 1.0)


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
