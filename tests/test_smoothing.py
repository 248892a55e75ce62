"""Temporal smoothers: registry, parameter checks, behaviour on known signals, face-size scaling."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.errors import UsageError
from runtime.smoothing import (
    SMOOTHERS,
    EmaParams,
    KalmanParams,
    OneEuroParams,
    Smoother,
    face_size,
    make_smoother,
)

FPS = 30.0


def run(smoother: Smoother, sequence: np.ndarray, size: float, fps: float = FPS) -> np.ndarray:
    return np.stack([smoother.smooth(points, index / fps, size) for index, points in enumerate(sequence)])


def random_face(rng: np.random.Generator, count: int = 68, size: float = 200.0) -> np.ndarray:
    return rng.uniform(100, 100 + size, size=(count, 2))


# ---------------------------------------------------------------- registry and parameters
def test_registry_builds_every_smoother_with_defaults():
    assert set(SMOOTHERS) == {"none", "ema", "one_euro", "kalman"}
    points = random_face(np.random.default_rng(0))
    for name in SMOOTHERS:
        smoother = make_smoother(name)
        assert isinstance(smoother, Smoother)
        out = smoother.smooth(points, 0.0, face_size(points))
        assert out.shape == points.shape and out.dtype == np.float32
        assert np.allclose(out, points, atol=1e-3)  # the first frame passes through


def test_unknown_names_and_parameters_are_usage_errors_with_suggestions():
    with pytest.raises(UsageError, match=r"Unknown smoother 'one-euro'.*Did you mean 'one_euro'\?"):
        make_smoother("one-euro")
    with pytest.raises(UsageError, match=r"Unknown parameter 'betta' for smoother 'one_euro'.*Did you mean 'beta'\?"):
        make_smoother("one_euro", betta=1.0)
    with pytest.raises(UsageError, match="Valid: none"):
        make_smoother("none", alpha=0.3)


@pytest.mark.parametrize(
    "name, params",
    [
        ("ema", {"alpha": 0.0}),
        ("ema", {"alpha": 1.5}),
        ("one_euro", {"beta": -1.0}),
        ("one_euro", {"min_cutoff": 0.0}),
        ("one_euro", {"d_cutoff": float("nan")}),
        ("kalman", {"process_noise": 0.0}),
        ("kalman", {"measurement_noise": -0.1}),
    ],
)
def test_bad_values_are_rejected_up_front(name, params):
    with pytest.raises(UsageError, match="must be"):
        make_smoother(name, **params)


def test_fps_must_be_positive_and_params_are_frozen():
    with pytest.raises(UsageError, match="fps"):
        make_smoother("ema", fps=0)
    params = OneEuroParams()
    with pytest.raises(AttributeError):
        params.beta = 1.0  # frozen dataclass
    assert (params.min_cutoff, params.d_cutoff) == (1.0, 1.0)
    assert EmaParams().alpha == 0.5 and KalmanParams().measurement_noise > 0


def test_bad_inputs_to_smooth_raise():
    smoother = make_smoother("one_euro")
    with pytest.raises(ValueError, match=r"\(K, 2\)"):
        smoother.smooth(np.zeros((5, 3)), 0.0, 100.0)
    with pytest.raises(ValueError, match="face_size"):
        smoother.smooth(np.zeros((5, 2)), 0.0, 0.0)


def test_face_size_is_sqrt_of_box_area_and_never_zero():
    assert face_size(np.array([[0.0, 0.0], [200.0, 50.0]])) == pytest.approx(100.0)
    assert face_size(np.array([[3.0, 1.0], [3.0, 41.0]])) == pytest.approx(40.0)  # a vertical line
    assert face_size(np.array([[3.0, 1.0]])) == 1.0


# ---------------------------------------------------------------- behaviour
@pytest.mark.parametrize("name", sorted(SMOOTHERS))
def test_a_still_noiseless_face_stays_exactly_where_it_is(name):
    points = random_face(np.random.default_rng(1))
    out = run(make_smoother(name), np.repeat(points[None], 40, axis=0), face_size(points))
    assert np.abs(out - points).max() < 1e-3


def test_none_passes_observations_through():
    sequence = np.random.default_rng(2).normal(size=(10, 5, 2)) * 50
    assert np.allclose(run(make_smoother("none"), sequence, 100.0), sequence, atol=1e-4)


def test_ema_weight_keeps_its_time_constant_when_a_frame_is_dropped():
    smoother = make_smoother("ema", alpha=0.4)
    start, target = np.zeros((1, 2)), np.full((1, 2), 10.0)
    smoother.smooth(start, 0.0, 100.0)
    skipped = smoother.smooth(target, 2 / FPS, 100.0)  # one frame missing
    assert skipped[0, 0] == pytest.approx(10.0 * (1 - 0.6**2), rel=1e-5)
    smoother.reset()
    assert np.allclose(smoother.smooth(target, 5.0, 100.0), target)  # after reset: first frame again


def test_timestamps_none_or_repeated_mean_one_frame_interval():
    by_time = make_smoother("ema", alpha=0.4)
    by_default = make_smoother("ema", alpha=0.4)
    values = [np.full((1, 2), v) for v in (0.0, 10.0, 4.0)]
    timed = [by_time.smooth(v, 1.0, 50.0) for v in values]  # repeated timestamps
    untimed = [by_default.smooth(v, None, 50.0) for v in values]
    assert np.allclose(timed, untimed)


def test_a_change_of_point_count_starts_a_new_track():
    smoother = make_smoother("kalman")
    smoother.smooth(np.zeros((68, 2)), 0.0, 100.0)
    fresh = np.full((98, 2), 7.0)
    assert np.allclose(smoother.smooth(fresh, 1 / FPS, 100.0), fresh)


def test_one_euro_settles_on_a_step_within_a_second():
    smoother = make_smoother("one_euro")
    sequence = np.zeros((60, 1, 2))
    sequence[10:] = 20.0  # a 20 px jump on a 200 px face
    out = run(smoother, sequence, 200.0)
    assert 0 < out[10, 0, 0] < 20.0  # smoothed, not copied
    assert abs(out[40, 0, 0] - 20.0) < 0.2


def test_kalman_follows_constant_velocity_without_lag():
    frames = np.arange(90)
    sequence = np.zeros((90, 3, 2))
    sequence[..., 0] = (frames * 3.0)[:, None]  # 3 px per frame
    out = run(make_smoother("kalman"), sequence, 200.0)
    assert np.abs(out[-10:] - sequence[-10:]).max() < 0.05


@pytest.mark.parametrize("name", ["one_euro", "kalman", "ema"])
def test_same_parameters_do_the_same_on_small_and_large_faces(name):
    """Face-size scaling: scaling positions and face size by k scales the output by exactly k."""
    rng = np.random.default_rng(3)
    times = np.arange(60) / FPS
    base = random_face(rng, 20, 1.0)  # a face of size ~1 in face-size units
    path = np.stack([np.sin(2 * np.pi * 0.5 * times), np.cos(2 * np.pi * 0.3 * times)], axis=-1) * 0.2
    sequence = base[None] + path[:, None] + rng.normal(0, 0.006, size=(60, 20, 2))
    small = run(make_smoother(name), sequence * 60.0, 60.0)
    large = run(make_smoother(name), sequence * 400.0, 400.0)
    assert np.allclose(small / 60.0, large / 400.0, atol=1e-5)
