"""Colour signatures of frames and faces: how the tracker sees a shot cut or a different face under a track.

A signature is a normalised HSV histogram (8 hue x 4 saturation x 4 value bins; value keeps grey
footage apart) of a small copy of the frame or of a face's box, compared by Bhattacharyya distance
(0 = same distribution, 1 = disjoint). It needs no model and costs tens of microseconds, which is
what a per-frame check may cost beside a 1 ms landmark model.

Two histograms make a signature: colour (HSV, 8 hue x 4 saturation x 4 value bins) and grey level
(32 bins). A change counts only when both distances pass their thresholds, so a frame that only
loses its colour (a camera switching to infrared, a grey frame in a colour stream) is not a cut.

Thresholds, from distances measured on the shared real data (few faces: the margins, not the exact
values, are what to trust), colour / grey:

- Whole frames: consecutive frames of ``face_closeup.mp4`` (a moving close-up, 275 frames) are at
  most 0.13 / 0.06 apart; two different photographs of ``faces68``, ``faces68_extra`` and
  ``multiface`` are 0.47 / 0.22 apart or more in 95 % of pairs (medians 0.73 / 0.43):
  :data:`CUT_DISTANCE` 0.35 / :data:`CUT_GREY_DISTANCE` 0.12, passed by 97 % of those pairs. A cut
  between two shots of similar colour is not seen here; the face check catches it where it matters,
  under a track.
- Faces (the square around the landmarks' box): the same face in consecutive frames is at most
  0.17 / 0.11 apart; two different people's faces 0.40 / 0.26 or more in 95 % of pairs (smallest
  0.23 / 0.19): :data:`FACE_CHANGE_DISTANCE` 0.3 / :data:`FACE_CHANGE_GREY_DISTANCE` 0.15, passed by
  98 % of those pairs.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

COLOUR_BINS = (8, 4, 4)
GREY_BINS = 32
FRAME_SAMPLES = 64  # pixels sampled along a frame's longer side (at least; under twice)
FACE_SAMPLES = 32  # pixels sampled across a face's box (at least; under twice)
CUT_DISTANCE = 0.35
CUT_GREY_DISTANCE = 0.12
FACE_CHANGE_DISTANCE = 0.3
FACE_CHANGE_GREY_DISTANCE = 0.15


def _signature(small_bgr: np.ndarray) -> np.ndarray:
    hsv = cv2.cvtColor(small_bgr, cv2.COLOR_BGR2HSV)
    colour = cv2.calcHist([hsv], [0, 1, 2], None, list(COLOUR_BINS), [0, 180, 0, 256, 0, 256]).reshape(-1)
    grey = cv2.calcHist([cv2.cvtColor(small_bgr, cv2.COLOR_BGR2GRAY)], [0], None, [GREY_BINS], [0, 256]).reshape(-1)
    return np.concatenate([colour / max(float(colour.sum()), 1.0), grey / max(float(grey.sum()), 1.0)])


def frame_signature(image_bgr: np.ndarray) -> np.ndarray:
    """(160,) float32 signature of a whole (H, W, 3) uint8 BGR frame, from every step-th pixel (a grid of
    ``FRAME_SAMPLES`` to twice that along the longer side)."""
    step = max(1, max(image_bgr.shape[:2]) // FRAME_SAMPLES)
    return _signature(np.ascontiguousarray(image_bgr[::step, ::step]))


def face_signature(image_bgr: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """(160,) float32 signature of the square around a face's (4,) ``x1, y1, x2, y2`` box, or None when
    that square lies outside the frame."""
    height, width = image_bgr.shape[:2]
    x1, y1, x2, y2 = (float(value) for value in box)
    half = max(x2 - x1, y2 - y1) / 2
    centre_x, centre_y = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = max(0, math.floor(centre_x - half)), max(0, math.floor(centre_y - half))
    right, bottom = min(width, math.ceil(centre_x + half) + 1), min(height, math.ceil(centre_y + half) + 1)
    if right - left < 2 or bottom - top < 2:
        return None
    # Every step-th pixel (``FACE_SAMPLES`` to twice that across the face), histogrammed as they are:
    # no resampling, which cost more than the histograms.
    step = max(1, min(right - left, bottom - top) // FACE_SAMPLES)
    return _signature(np.ascontiguousarray(image_bgr[top:bottom:step, left:right:step]))


def signature_distances(first: np.ndarray, second: np.ndarray) -> tuple[float, float]:
    """(colour, grey) Bhattacharyya distances of two signatures, each in [0, 1]."""
    split = int(np.prod(COLOUR_BINS))
    colour = cv2.compareHist(first[:split], second[:split], cv2.HISTCMP_BHATTACHARYYA)
    grey = cv2.compareHist(first[split:], second[split:], cv2.HISTCMP_BHATTACHARYYA)
    return float(colour), float(grey)


def differs(first: np.ndarray, second: np.ndarray, colour_distance: float, grey_distance: float) -> bool:
    """Whether two signatures are at least ``colour_distance`` apart in colour and ``grey_distance`` in grey."""
    colour, grey = signature_distances(first, second)
    return colour >= colour_distance and grey >= grey_distance
