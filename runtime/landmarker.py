"""Face boxes in a frame -> landmarks in that frame, on any backend, driven only by the artifact's card.

The pipeline, once for every backend::

    frame (H, W, 3) uint8 BGR, boxes (F, 4)
      -> the box the card's crop rule starts from (detector box or landmarks' box, converted if needed)
      -> crop matrices (F, 2, 3) frame -> input square  (runtime.crop.crop_matrix)
      -> crops (F, S, S, 3) -> normalised input (F, 3, S, S) float32
      -> one batched backend.infer (a loop when the artifact's batch is fixed)
      -> decode: heatmaps (F, K, H', W') by centroid/argmax/soft_argmax, coords (F, 2K) directly
         (the card's coords_slice of a longer output), or heatmaps + offset maps (F, 3K, G, G) by peak cell
         and offsets (runtime.heatmap.decode_offsets)
      -> input-square pixels -> frame pixels with each crop's inverse matrix

Coordinate conventions: pixel centres are at integers in the frame and in the input square. A
``coords`` output holds (x, y) pairs normalised to the crop's extent, 0 at its left/top edge and 1 at
its right/bottom edge, so the input-pixel coordinate is ``value * input_size - 0.5``. A non-square
crop rule (``CropRule.scale_y``) scales x and y differently; the matrices carry that, so
back-projection stays one exact inverse per crop.

The pure functions (:func:`crop_inputs`, :func:`decode_output`) are what export/ verification should
share with the runtime, so that exported artifacts are judged by exactly the runtime's math.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.backends.base import Backend
from runtime.card import Card
from runtime.crop import apply, crop_matrix, invert, landmark_box, normalise, warp
from runtime.errors import UsageError, unknown_name
from runtime.codecs import codec_for
from runtime.heatmap import DECODERS, OFFSET_DECODE
from runtime.frames import FrameError, as_bgr  # noqa: F401  (re-exported: callers catch FrameError here)

BOX_KINDS = ("detector", "landmarks")


@dataclass(frozen=True)
class BoxConversion:
    """How a face detector's box relates to the bounding box of the face's landmarks.

    The landmarks' box has the detector box's width and height times ``scale`` and its centre
    ``shift_y * detector height`` lower. Used when a crop rule expects one kind of box and the
    caller has the other.

    The default was measured with OpenCV's ``haarcascade_frontalface_default.xml``
    (``detectMultiScale(gray, 1.1, 5)``) on the nine faces68 images where it finds the annotated face:
    the 68-point box's longer side is 0.80 of the (square) Haar box (median; 0.70-0.92) and its
    centre sits 0.16 of the box lower (0.12-0.20), the Haar box reaching up to the forehead while
    the landmarks stop at the brows. Other detectors (YuNet, RetinaFace) draw tighter boxes: pass
    their own conversion.
    """

    scale: float = 0.80
    shift_y: float = 0.16

    def __post_init__(self):
        if not self.scale > 0:
            raise UsageError(f"box conversion scale must be positive, got {self.scale}")

    def detector_to_landmarks(self, boxes: np.ndarray) -> np.ndarray:
        """(F, 4) detector boxes -> (F, 4) estimated landmark boxes."""
        centre_x, centre_y, width, height = _centre_size(boxes)
        centre_y = centre_y + self.shift_y * height
        return _from_centre_size(centre_x, centre_y, width * self.scale, height * self.scale)

    def landmarks_to_detector(self, boxes: np.ndarray) -> np.ndarray:
        """(F, 4) landmark boxes -> (F, 4) estimated detector boxes (inverse of the above)."""
        centre_x, centre_y, width, height = _centre_size(boxes)
        width, height = width / self.scale, height / self.scale
        return _from_centre_size(centre_x, centre_y - self.shift_y * height, width, height)


HAAR_BOX_CONVERSION = BoxConversion()
# YuNet 2023mar (cv2.FaceDetectorYN, score 0.6) on the 20 annotated faces of faces68, faces68_extra and
# multiface: its boxes are taller than wide (width 0.74 of the height, median); the 68-point box's
# longer side is 0.79 of the YuNet box's longer side (median; quartiles 0.76-0.83), its centre 0.125
# of the box height lower (0.10-0.13). Measured NME of PFLD-GhostOne from a single detection: this
# rule 9.34 % mean, Haar's 9.57 %, a separate width/height rule 9.50 %, so one scale serves.
YUNET_BOX_CONVERSION = BoxConversion(scale=0.79, shift_y=0.125)


def _centre_size(boxes: np.ndarray) -> tuple[np.ndarray, ...]:
    x1, y1, x2, y2 = np.asarray(boxes, dtype=np.float64).T
    return (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1


def _from_centre_size(centre_x, centre_y, width, height) -> np.ndarray:
    return np.stack([centre_x - width / 2, centre_y - height / 2, centre_x + width / 2, centre_y + height / 2], axis=-1)


@dataclass(frozen=True)
class Landmarks:
    """Landmarks of the faces in one frame.

    Attributes:
        points: (F, K, 2) float64 x, y in frame pixels (pixel centres at integers).
        point_confidence: (F, K) float32. Heatmap models: the heatmap peak clipped to [0, 1] (targets
            peak at 1). Coords models have no per-point signal: NaN, not a made-up number.
        face_confidence: (F,) float32: mean point confidence (NaN for coords models).
        matrices: (F, 2, 3) frame -> input-square matrices of the crops.
        layout: landmark layout name from the card (``wflw98``, ``ibug68``, ...).
        latency_s: backend time for this frame (sum over the calls when the batch is fixed).
    """

    points: np.ndarray
    point_confidence: np.ndarray
    face_confidence: np.ndarray
    matrices: np.ndarray
    layout: str
    latency_s: float = 0.0

    def __len__(self) -> int:
        return len(self.points)


# -------------------------------------------------------------------------------------------------
# pure functions: frame and boxes -> model input, model output -> frame points


def as_boxes(boxes) -> np.ndarray:
    """(F, 4) float64 x1, y1, x2, y2 boxes; a single (4,) box becomes (1, 4).

    Raises:
        FrameError: wrong shape, non-finite values, or a box with no width or height.
    """
    try:
        array = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError):
        raise FrameError(f"face boxes must be numbers (F, 4) x1, y1, x2, y2; got {boxes!r:.80}") from None
    if array.ndim == 1 and array.shape[0] == 4:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != 4:
        if array.size == 0:
            return np.zeros((0, 4))
        raise FrameError(f"face boxes have shape {array.shape}; expected (F, 4) x1, y1, x2, y2 in frame pixels")
    if not np.all(np.isfinite(array)):
        raise FrameError("a face box has NaN or infinite coordinates")
    bad = np.flatnonzero((array[:, 2] <= array[:, 0]) | (array[:, 3] <= array[:, 1]))
    if len(bad):
        raise FrameError(
            f"face box {bad[0]} {array[bad[0]].round(1).tolist()} has no area; "
            "expected x1 < x2 and y1 < y2 (x1, y1, x2, y2)"
        )
    return array


def rule_boxes(
    boxes: np.ndarray, box_kind: str, card: Card, conversion: BoxConversion = HAAR_BOX_CONVERSION
) -> np.ndarray:
    """The boxes the card's crop rule starts from, converting detector <-> landmark boxes when needed."""
    if box_kind not in BOX_KINDS:
        raise unknown_name("box kind", box_kind, BOX_KINDS)
    wanted = card.crop_rule.box
    if box_kind == wanted:
        return boxes
    if wanted == "landmarks":
        return conversion.detector_to_landmarks(boxes)
    return conversion.landmarks_to_detector(boxes)


def crop_inputs(
    frame: np.ndarray,
    boxes: np.ndarray,
    card: Card,
    box_kind: str = "detector",
    conversion: BoxConversion = HAAR_BOX_CONVERSION,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut and normalise every face of a frame as the card's model expects.

    Args:
        frame: image (converted with :func:`as_bgr`).
        boxes: (F, 4) or (4,) x1, y1, x2, y2 in frame pixels.
        card: the artifact's card (crop rule, input size, normalisation).
        box_kind: what ``boxes`` are: ``detector`` boxes or ``landmarks`` bounding boxes.
        conversion: detector box <-> landmark box relation, used when ``box_kind`` is not the rule's.

    Returns:
        (F, 3, S, S) float32 model input and (F, 2, 3) frame -> input-square matrices.
    """
    return _cut(as_bgr(frame), rule_boxes(as_boxes(boxes), box_kind, card, conversion), card)


def _cut(frame: np.ndarray, boxes: np.ndarray, card: Card) -> tuple[np.ndarray, np.ndarray]:
    """:func:`crop_inputs` after its checks: (H, W, 3) uint8 BGR frame, (F, 4) boxes of the rule's kind."""
    size = card.input_size
    if len(boxes) == 0:
        return np.zeros((0, 3, size, size), np.float32), np.zeros((0, 2, 3))
    if len(boxes) == 1:  # the tracking case: skip the stacking copies
        matrices = crop_matrix(boxes[0], card.crop_rule, size)[None]
        crops = warp(frame, matrices[0], size)[None]
    else:
        matrices = np.stack([crop_matrix(box, card.crop_rule, size) for box in boxes])
        crops = np.stack([warp(frame, matrix, size) for matrix in matrices])  # (F, S, S, 3) uint8 BGR
    return normalise(crops, card.normalisation), matrices


def decode_output(
    output: np.ndarray, card: Card, matrices: np.ndarray, decode_method: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Raw model output -> (F, K, 2) frame points and (F, K) point confidences.

    Args:
        output: (F, 2K) normalised coordinates for ``coords`` cards (or (F, M) holding them at the card's
            ``coords_slice``), (F, 3K, G, G) for ``heatmap_offsets`` cards, (F, K, H, W) heatmaps otherwise.
        card: the artifact's card.
        matrices: (F, 2, 3) frame -> input-square matrices the inputs were cut with.
        decode_method: heatmap decode override (``None``: the card's).

    Raises:
        BackendError: an output whose shape does not fit the card.
    """
    output = np.asarray(output)
    count = len(output)
    points, confidence = codec_for(card).decode(output, decode_method)
    if count == 1:
        frame_points = apply(invert(matrices[0]), points[0])[None]
    else:
        frame_points = np.stack([apply(invert(m), p) for m, p in zip(matrices, points)]) if count else points
    return frame_points, confidence.astype(np.float32, copy=False)


def frame_points(output: np.ndarray, card: Card, matrices: np.ndarray) -> np.ndarray:
    """Raw outputs -> (F, K, 2) frame-pixel points (:func:`decode_output` without the confidences)."""
    return decode_output(output, card, matrices)[0]


# -------------------------------------------------------------------------------------------------
# the landmarker


class Landmarker:
    """Landmarks for face boxes in a frame, on any :class:`~runtime.backends.Backend`.

    The landmarker does not own the backend: close the backend yourself (or use it as a context
    manager around the landmarker's use).

    Args:
        backend: a loaded backend; its card drives cropping, normalisation and decoding.
        decode: heatmap decode override (``centroid``, ``argmax``, ``soft_argmax``); ``None`` uses
            the card's. Coords models only take ``direct``.
        box_conversion: detector box <-> landmark box relation (default: measured for OpenCV's Haar
            cascade, see :class:`BoxConversion`).
    """

    def __init__(
        self, backend: Backend, decode: str | None = None, box_conversion: BoxConversion = HAAR_BOX_CONVERSION
    ):
        card = backend.card
        if decode is not None:
            if card.output_kind == "coords" and decode != "direct":
                raise UsageError(
                    f"decode '{decode}' is for heatmap models; {backend.artifact.name} outputs coords (decode 'direct')"
                )
            if card.output_kind == "heatmap_offsets" and decode != OFFSET_DECODE:
                raise UsageError(
                    f"decode '{decode}' does not apply to {backend.artifact.name}: its heatmaps come with offset "
                    f"maps (decode '{OFFSET_DECODE}')"
                )
            if card.output_kind == "heatmap" and decode not in DECODERS:
                raise unknown_name("decode method", decode, DECODERS)
        self.backend = backend
        self.card = card
        self.decode = decode or card.decode
        self.box_conversion = box_conversion
        self.fixed_batch = backend.fixed_batch

    def predict(
        self, frame: np.ndarray, boxes, box_kind: str = "detector", conversion: BoxConversion | None = None
    ) -> Landmarks:
        """Landmarks for every box, in one batched inference.

        Args:
            frame: (H, W, 3) uint8 BGR; grayscale (H, W) / (H, W, 1) and BGRA (H, W, 4) are converted.
            boxes: (F, 4) or (4,) x1, y1, x2, y2 face boxes in frame pixels.
            box_kind: ``detector`` (a face detector's box) or ``landmarks`` (bounding box of known or
                annotated landmarks). A box that is not the kind the card's crop rule starts from is
                converted with :attr:`box_conversion`.
            conversion: the detector's own box relation for this call (``FaceDetector.box_conversion``);
                None uses :attr:`box_conversion`.

        Returns:
            :class:`Landmarks` with F faces (F may be 0).

        Raises:
            FrameError: a bad frame or box.
            BackendError: the backend rejected the input or returned an unexpected output.
        """
        return self._predict_checked(as_bgr(frame), as_boxes(boxes), box_kind, conversion)

    def _predict_checked(
        self, image: np.ndarray, boxes: np.ndarray, box_kind: str, conversion: BoxConversion | None = None
    ) -> Landmarks:
        """:meth:`predict` for a frame already converted by :func:`as_bgr` and boxes already checked
        by :func:`as_boxes` (the tracker's per-frame path, whose boxes come from plausible landmarks)."""
        rule = rule_boxes(boxes, box_kind, self.card, conversion or self.box_conversion)
        inputs, matrices = _cut(image, rule, self.card)
        output, latency = self.run(inputs)
        points, confidence = decode_output(output, self.card, matrices, self.decode)
        if self.card.output_kind == "coords":  # no per-point signal: NaN, as the mean of NaNs would be
            face_confidence = np.full(len(confidence), np.nan, dtype=np.float32)
        else:
            face_confidence = confidence.mean(axis=1).astype(np.float32)  # (F,)
        return Landmarks(points, confidence, face_confidence, matrices, self.card.layout, latency)

    def predict_from_points(self, frame: np.ndarray, previous_points) -> Landmarks:
        """Landmarks cropped by the bounding box of earlier landmarks (tracking by the last frame).

        Args:
            frame: the new frame.
            previous_points: (K, 2) or (F, K, 2) points of the faces in the previous frame, in any
                layout (only their bounding box is used).
        """
        points = np.asarray(previous_points, dtype=np.float64)
        if points.ndim == 2:
            points = points[None]
        if points.ndim != 3 or points.shape[-1] != 2 or points.shape[1] < 2:
            raise FrameError(f"previous points have shape {points.shape}; expected (K, 2) or (F, K, 2)")
        if not np.all(np.isfinite(points)):
            raise FrameError("previous points contain NaN or infinite values; re-detect the face instead")
        boxes = np.stack([landmark_box(face) for face in points]) if len(points) else np.zeros((0, 4))
        return self.predict(frame, boxes, box_kind="landmarks")

    def run(self, inputs: np.ndarray) -> tuple[np.ndarray, float]:
        """The model's output for (N, 3, S, S) inputs and the backend time it took.

        One ``infer`` for the whole batch; an artifact with a fixed batch B runs in chunks of B, the
        last one zero-padded.
        """
        name = self.backend.input_spec.name
        if len(inputs) == 0:
            return self._empty_output(), 0.0
        if not self.fixed_batch:
            return self._primary(self.backend.infer({name: inputs})), self.backend.last_latency_s or 0.0
        outputs, latency = [], 0.0
        for start in range(0, len(inputs), self.fixed_batch):
            chunk = inputs[start : start + self.fixed_batch]
            padded = np.zeros((self.fixed_batch, *inputs.shape[1:]), dtype=inputs.dtype)
            padded[: len(chunk)] = chunk
            outputs.append(self._primary(self.backend.infer({name: padded}))[: len(chunk)])
            latency += self.backend.last_latency_s or 0.0
        return np.concatenate(outputs), latency

    def _primary(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """The landmark output: the card's ``output_name`` when the backend reports it, else the first."""
        name = self.card.output_name
        return outputs[name] if name in outputs else next(iter(outputs.values()))

    def _empty_output(self) -> np.ndarray:
        card = self.card
        if card.output_kind == "coords":
            values = card.coords_slice[1] if card.coords_slice else 2 * card.num_points
            return np.zeros((0, values), dtype=np.float32)
        if card.output_kind == "heatmap_offsets":
            grid = card.heatmap_offsets.grid_size
            return np.zeros((0, 3 * card.num_points, grid, grid), dtype=np.float32)
        size = card.input_size // card.heatmap_stride
        return np.zeros((0, card.num_points, size, size), dtype=np.float32)
