"""Temporal smoothing of landmark points between video frames, chosen by name from a registry.

Every smoother filters each landmark point of one tracked face independently and shares one
interface: ``smooth(points (K, 2), timestamp_s, face_size) -> (K, 2)`` and ``reset()``. Build one
with :func:`make_smoother`::

    smoother = make_smoother("one_euro", fps=30.0, beta=5.0)
    for timestamp, points in stream:
        steady = smoother.smooth(points, timestamp, face_size(points))

**Face-size scaling.** Positions are filtered in the frame's pixels, but every parameter that
contains a length is expressed in *face sizes* and multiplied by the ``face_size`` (pixels) passed
with each frame. For a face of constant size this is exactly the same as dividing the positions by
``face_size`` before filtering and multiplying back after; unlike that, a face that grows or shrinks
(zooms) causes no spurious motion in the filter's state. So the same parameters behave the same way
on a 60-pixel face far from the camera and on a 400-pixel close-up. Parameters in face sizes:

- ``one_euro``: the speed that raises the cutoff is measured in face sizes per second,
  ``|velocity px/s| / face_size``; ``beta`` is therefore in seconds per face size (see
  :class:`OneEuroParams` for the conversion from the pixel-unit ``beta`` of the paper).
- ``kalman``: the process noise (face sizes / s^2) and measurement noise (face sizes).
- ``ema`` and ``none`` have no length parameter; face size does not enter them.

:func:`face_size` gives the size this module expects: ``sqrt(width * height)`` of the landmarks'
bounding box (the same length as ``runtime.metrics``'s ``box`` normalisation), in pixels.

**Time.** ``timestamp_s`` is the frame's capture time in seconds. Filters use the real interval
between frames; when ``timestamp_s`` is ``None``, or does not increase, frames are taken to be
``1 / fps`` apart.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np

from runtime.errors import UsageError, did_you_mean, unknown_name

logger = logging.getLogger(__name__)


def face_size(points: np.ndarray) -> float:
    """Size of a face in pixels: ``sqrt(width * height)`` of the (K, 2) points' bounding box.

    Falls back to the longer side when the box is degenerate (all points on a line), and to 1.0 when
    it is a single point, so the result is always positive.
    """
    points = np.asarray(points, dtype=np.float64)
    extent = points.max(axis=0) - points.min(axis=0)
    size = math.sqrt(max(float(extent[0] * extent[1]), 0.0))
    return size if size > 0 else max(float(extent.max()), 1.0)


def _positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise UsageError(f"smoother parameter {name} must be a positive number, got {value!r}")


def _non_negative(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise UsageError(f"smoother parameter {name} must be a number >= 0, got {value!r}")


# ---------------------------------------------------------------------------------------------------
# Parameters


@dataclass(frozen=True)
class NoneParams:
    """The ``none`` smoother has no parameters: points pass through unchanged."""


@dataclass(frozen=True)
class EmaParams:
    """Exponential moving average ``smoothed = alpha * observed + (1 - alpha) * previous``.

    Attributes:
        alpha: weight of the newest observation at the nominal frame rate, in (0, 1]; 1 disables
            smoothing. For an interval ``dt`` other than ``1 / fps`` the weight becomes
            ``1 - (1 - alpha) ** (dt * fps)`` so the time constant stays the same.
    """

    alpha: float = 0.5

    def __post_init__(self):
        _positive("alpha", self.alpha)
        if self.alpha > 1:
            raise UsageError(f"smoother parameter alpha must be in (0, 1], got {self.alpha!r}")


@dataclass(frozen=True)
class OneEuroParams:
    """The One Euro filter (Casiez, Roussel and Vogel, CHI 2012), per landmark point.

    Each point is low-passed with a cutoff that rises with its speed:
    ``cutoff = min_cutoff + beta * speed``, where ``speed`` is the norm of the point's 2-D velocity
    (itself low-passed at ``d_cutoff``) in face sizes per second. x and y of a point share the cutoff,
    so the filter does not depend on the direction of motion.

    ``beta`` is in seconds per face size. The paper's ``beta`` multiplies a speed in pixels per
    second; a pixel-unit ``beta_px`` on a face of ``S`` pixels equals ``beta = beta_px * S`` here
    (the paper's ~0.007, tuned for a mouse pointer, is 1.4 on a 200-pixel face). The default 5.0
    (0.025 per pixel on a 200-pixel face) was chosen on the synthetic Lissajous sequences of
    :mod:`runtime.jitter` (twelve real faces at 200 px, 30 fps, 0.8 to 2 px noise): it cuts jitter
    by about 60 % with a lag of about 1.1 frames. 1.4 lags about 2 frames on that motion (peak
    75 px/s); 3.0 smooths a little more with a lag of about 1.4 frames.

    Attributes:
        min_cutoff: cutoff in Hz when the point is still; lower = steadier, more lag when slow.
        beta: how fast the cutoff rises with speed (s per face size); higher = less lag when fast.
        d_cutoff: cutoff in Hz of the velocity estimate.
    """

    min_cutoff: float = 1.0
    beta: float = 5.0
    d_cutoff: float = 1.0

    def __post_init__(self):
        _positive("min_cutoff", self.min_cutoff)
        _non_negative("beta", self.beta)
        _positive("d_cutoff", self.d_cutoff)


@dataclass(frozen=True)
class KalmanParams:
    """Constant-velocity Kalman filter per coordinate (state: position and velocity).

    The model is a white-noise acceleration with standard deviation ``process_noise`` and a
    measurement equal to the position plus white noise of standard deviation ``measurement_noise``.
    Both are in face sizes (per second squared for the process noise) and scaled by each frame's
    ``face_size``. All coordinates share the parameters and the frame times, so they share one
    covariance and one gain.

    Attributes:
        process_noise: acceleration standard deviation, face sizes / s^2; higher = follows faster
            motion with less lag, smooths less.
        measurement_noise: observation standard deviation, face sizes (0.006 is 1.2 px on a 200 px
            face); higher = smooths more.
    """

    process_noise: float = 1.0
    measurement_noise: float = 0.006

    def __post_init__(self):
        _positive("process_noise", self.process_noise)
        _positive("measurement_noise", self.measurement_noise)


# ---------------------------------------------------------------------------------------------------
# Smoothers


class Smoother:
    """Base class: checks inputs, keeps frame time, and delegates to ``_smooth``.

    Subclasses implement ``_smooth(points, interval_s, face_size)`` on float64 (K, 2) points and
    ``_reset()``. A change in the number of points starts a new track (the state is reset).
    """

    name = "base"

    def __init__(self, params, fps: float = 30.0):
        _positive("fps", fps)
        self.params = params
        self.fps = float(fps)
        self._last_time: float | None = None
        self._shape: tuple[int, ...] | None = None

    def smooth(self, points: np.ndarray, timestamp_s: float | None, face_size: float) -> np.ndarray:
        """Smooth one frame's points.

        Args:
            points: (K, 2) observed positions in pixels.
            timestamp_s: capture time in seconds, or ``None`` for "1 / fps after the last frame".
            face_size: the face's size in pixels (see :func:`face_size`); scales the parameters
                that contain a length.

        Returns:
            (K, 2) float32 smoothed positions.
        """
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"smooth() needs (K, 2) points, got shape {points.shape}")
        if not (math.isfinite(face_size) and face_size > 0):
            raise ValueError(f"smooth() needs a positive face_size in pixels, got {face_size!r}")
        if self._shape != points.shape:
            if self._shape is not None:
                logger.debug(
                    "%s smoother: point count changed %s -> %s, new track", self.name, self._shape, points.shape
                )
            self.reset()
            self._shape = points.shape
        interval = 1.0 / self.fps
        if timestamp_s is not None:
            if self._last_time is not None and timestamp_s > self._last_time:
                interval = float(timestamp_s - self._last_time)
            self._last_time = float(timestamp_s)
        return self._smooth(points, interval, float(face_size)).astype(np.float32)

    def reset(self) -> None:
        """Forget the track (call when the face is lost or a different face is tracked)."""
        self._last_time = None
        self._shape = None
        self._reset()

    def _smooth(self, points: np.ndarray, interval_s: float, face_size: float) -> np.ndarray:
        raise NotImplementedError

    def _reset(self) -> None:
        raise NotImplementedError


class PassThroughSmoother(Smoother):
    """``none``: returns the observations."""

    name = "none"

    def _smooth(self, points, interval_s, face_size):
        return points.copy()

    def _reset(self):
        pass


class EmaSmoother(Smoother):
    """``ema``: exponential moving average with a time-constant-preserving weight."""

    name = "ema"

    def _reset(self):
        self._state: np.ndarray | None = None

    def __init__(self, params: EmaParams, fps: float = 30.0):
        super().__init__(params, fps)
        self._reset()

    def _smooth(self, points, interval_s, face_size):
        if self._state is None:
            self._state = points.copy()
        else:
            weight = 1.0 - (1.0 - self.params.alpha) ** (interval_s * self.fps)
            self._state = self._state + weight * (points - self._state)
        return self._state.copy()


def _smoothing_factor(interval_s: float, cutoff_hz: np.ndarray | float) -> np.ndarray | float:
    """Weight of the new sample for a first-order low-pass at ``cutoff_hz`` (One Euro's alpha)."""
    time_constant = 1.0 / (2.0 * math.pi * cutoff_hz)
    return 1.0 / (1.0 + time_constant / interval_s)


class OneEuroSmoother(Smoother):
    """``one_euro``: speed-adaptive low-pass per point (see :class:`OneEuroParams`)."""

    name = "one_euro"

    def __init__(self, params: OneEuroParams, fps: float = 30.0):
        super().__init__(params, fps)
        self._reset()

    def _reset(self):
        self._position: np.ndarray | None = None  # (K, 2) px
        self._velocity: np.ndarray | None = None  # (K, 2) px/s

    def _smooth(self, points, interval_s, face_size):
        if self._position is None:
            self._position = points.copy()
            self._velocity = np.zeros_like(points)
            return points.copy()
        raw_velocity = (points - self._position) / interval_s
        velocity_weight = _smoothing_factor(interval_s, self.params.d_cutoff)
        self._velocity = self._velocity + velocity_weight * (raw_velocity - self._velocity)
        # (K,) speed in face sizes per second.
        speed = np.linalg.norm(self._velocity, axis=1) / face_size
        cutoff = self.params.min_cutoff + self.params.beta * speed
        weight = _smoothing_factor(interval_s, cutoff)[:, None]
        self._position = self._position + weight * (points - self._position)
        return self._position.copy()


class KalmanSmoother(Smoother):
    """``kalman``: constant-velocity Kalman filter per coordinate (see :class:`KalmanParams`)."""

    name = "kalman"

    def __init__(self, params: KalmanParams, fps: float = 30.0):
        super().__init__(params, fps)
        self._reset()

    def _reset(self):
        self._position: np.ndarray | None = None  # (K, 2) px
        self._velocity: np.ndarray | None = None  # (K, 2) px/s
        self._covariance: np.ndarray | None = None  # (2, 2) over (position, velocity), shared by all coordinates

    def _smooth(self, points, interval_s, face_size):
        measurement_variance = (self.params.measurement_noise * face_size) ** 2
        if self._position is None:
            self._position = points.copy()
            self._velocity = np.zeros_like(points)
            # Unknown velocity: a prior wide enough to move one face size per second.
            self._covariance = np.diag([measurement_variance, face_size**2])
            return points.copy()
        dt = interval_s
        transition = np.array([[1.0, dt], [0.0, 1.0]])
        acceleration_variance = (self.params.process_noise * face_size) ** 2
        process = acceleration_variance * np.array([[dt**4 / 4, dt**3 / 2], [dt**3 / 2, dt**2]])
        predicted_position = self._position + dt * self._velocity
        covariance = transition @ self._covariance @ transition.T + process
        innovation_variance = covariance[0, 0] + measurement_variance
        gain = covariance[:, 0] / innovation_variance  # (2,) for (position, velocity)
        innovation = points - predicted_position
        self._position = predicted_position + gain[0] * innovation
        self._velocity = self._velocity + gain[1] * innovation
        self._covariance = covariance - np.outer(gain, covariance[0, :])
        return self._position.copy()


# ---------------------------------------------------------------------------------------------------
# Registry


@dataclass(frozen=True)
class SmootherEntry:
    """One registered smoother: its parameter dataclass, its class and a one-line description."""

    params: type
    build: Callable[..., Smoother]
    description: str


SMOOTHERS: dict[str, SmootherEntry] = {
    "none": SmootherEntry(NoneParams, PassThroughSmoother, "no smoothing"),
    "ema": SmootherEntry(EmaParams, EmaSmoother, "exponential moving average (alpha)"),
    "one_euro": SmootherEntry(
        OneEuroParams, OneEuroSmoother, "One Euro filter, speed in face sizes/s (min_cutoff, beta, d_cutoff)"
    ),
    "kalman": SmootherEntry(
        KalmanParams, KalmanSmoother, "constant-velocity Kalman, face-size units (process_noise, measurement_noise)"
    ),
}


def smoother_params(name: str, **params) -> object:
    """Validate ``params`` for smoother ``name`` and return its frozen parameter dataclass.

    Raises:
        UsageError: unknown smoother, unknown parameter, or a value out of range.
    """
    if name not in SMOOTHERS:
        raise unknown_name("smoother", name, list(SMOOTHERS))
    params_class = SMOOTHERS[name].params
    valid = [field.name for field in fields(params_class)]
    for key in params:
        if key not in valid:
            accepted = ", ".join(valid) if valid else "none"
            raise UsageError(
                f"Unknown parameter '{key}' for smoother '{name}'. Valid: {accepted}.{did_you_mean(key, valid)}"
            )
    return params_class(**params)


def make_smoother(name: str, fps: float = 30.0, **params) -> Smoother:
    """Build the smoother registered as ``name``.

    Args:
        name: one of :data:`SMOOTHERS` (``none``, ``ema``, ``one_euro``, ``kalman``).
        fps: nominal frame rate, used when frames carry no timestamp.
        **params: fields of that smoother's parameter dataclass (e.g. ``beta=3.0``).

    Raises:
        UsageError: unknown name (with a did-you-mean), unknown parameter or invalid value.
    """
    validated = smoother_params(name, **params)
    return SMOOTHERS[name].build(validated, fps=fps)
