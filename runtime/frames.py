"""Video frames as the runtime takes them: one conversion and one error type for every stage."""
from __future__ import annotations

import cv2
import numpy as np

from runtime.errors import EdgemarkError


class FrameError(EdgemarkError):
    """A frame or a face box the landmarker cannot use (None, empty, wrong dtype or channels, bad box)."""


def as_bgr(frame) -> np.ndarray:
    """A frame as (H, W, 3) uint8 BGR: grayscale and BGRA are converted, anything else is rejected.

    Raises:
        FrameError: ``None``, not an array, empty, not 8-bit, or an unsupported channel count.
    """
    if frame is None:
        raise FrameError("no frame (got None): the camera or video returned nothing; check the source")
    if not isinstance(frame, np.ndarray):
        raise FrameError(f"frame is a {type(frame).__name__}; expected a numpy array (H, W, 3) uint8 BGR")
    if frame.size == 0 or frame.ndim < 2 or min(frame.shape[:2]) == 0:
        raise FrameError(f"empty frame (shape {frame.shape}); expected (H, W, 3) uint8 BGR")
    if frame.dtype != np.uint8:
        raise FrameError(
            f"frame dtype is {frame.dtype}; expected 8-bit BGR (uint8), "
            "e.g. np.clip(frame * 255, 0, 255).astype(np.uint8)"
        )
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_BGRA2BGR)
    raise FrameError(f"frame shape {frame.shape} is not an image; expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)")


def read_video(path, max_frames: int = 0, start: int = 0) -> tuple[list[np.ndarray], float]:
    """Decode a video file into memory: the one video reader of the report, the peer and the scenarios.

    Args:
        path: the video file.
        max_frames: at most this many frames (0: to the end).
        start: index of the first frame read.

    Returns:
        The (H, W, 3) uint8 BGR frames and the frame rate (30 when the file does not say).

    Raises:
        FrameError: OpenCV cannot open the file, or decodes no frame from it.
    """
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise FrameError(f"{path}: OpenCV cannot open this video (unsupported codec or not a video file)")
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    if start:
        capture.set(cv2.CAP_PROP_POS_FRAMES, start)
    frames = []
    try:
        while not max_frames or len(frames) < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    if not frames:
        raise FrameError(f"{path}: OpenCV opened it but decoded no frame{f' from frame {start}' if start else ''}; "
                         "is the file complete?")
    return frames, float(fps)
