"""Synthetic ground-truth sequences and jitter / lag metrics, to measure smoothing and decoding honestly.

A real annotated face is moved along a known smooth path (:func:`synthetic_sequence`), so every
frame has exact true points. Observations of those points come either from a plain noise model
(:func:`noisy_observations`) or from noisy Gaussian heatmaps decoded the way the runtime decodes a
network's output (:func:`heatmap_observations`), which compares argmax and centroid decoding on the
*same* maps. :func:`compare_smoothers` and :func:`compare_decoders` turn that into report rows.

Metric definitions (all point arrays are (T, K, 2) pixels; every metric also takes a list of such
sequences and pools over them):

- **NME** per frame: mean point-to-point error divided by the frame's normalising distance
  (inter-ocular by default, as in :mod:`runtime.metrics`).
- **jitter** (with truth): with ``e_t = predicted_t - truth_t``, the RMS over frames ``t >= 1`` and
  points of the 2-D length ``|e_t - e_(t-1)|``, each divided by the frame's normalising distance.
  A constant bias or a steady lag adds almost nothing; frame-to-frame wobble is all it measures.
  For i.i.d. Gaussian noise of ``sigma`` pixels per coordinate it is ``2 * sigma / distance``.
- **video jitter** (no truth, e.g. on a real video): the RMS over frames and points of the 2-D
  length of the second difference ``p_(t+1) - 2 p_t + p_(t-1)``, in pixels and divided by the
  predicted points' normalising distance. It counts real acceleration too; for i.i.d. noise on a
  still face it is ``sqrt(3)`` times the jitter above.
- **lag**: the integer shift ``s`` in frames (``|s| <= max_lag``) minimising the mean squared
  distance between ``predicted_t`` and ``truth_(t-s)``; positive means the prediction trails.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from runtime import heatmap as heatmaplib
from runtime.codecs import HeatmapCodec
from runtime.crop import CropRule, apply, crop_matrix, landmark_box
from runtime.errors import UsageError, cli_main, unknown_name
from runtime.layouts import layout_for_points
from runtime.metrics import normalising_distance
from runtime.smoothing import face_size, make_smoother

logger = logging.getLogger(__name__)

PATHS = ("lissajous", "still", "steps")

# Lissajous path frequencies in Hz (x and y translation, rotation, zoom): incommensurate so the
# face never retraces its path within a few seconds; peak speed at amplitude 0.15 and a 200 px face
# is about 75 px/s (2.5 px per frame at 30 fps), a person moving their head at a moderate pace.
LISSAJOUS_HZ = {"x": 0.4, "y": 0.3, "rotation": 0.25, "zoom": 0.2}
# Seconds between jumps of the ``steps`` path.
STEP_INTERVAL_S = 1.0
# The crop rule heatmap observations use unless told otherwise (the runtime's default rule).
DEFAULT_CROP = CropRule()

Sequences = np.ndarray | Sequence[np.ndarray]


@dataclass
class SyntheticSequence:
    """A face moved along a known path.

    Attributes:
        frames: (T, H, W, 3) uint8 BGR frames, or ``None`` when not rendered.
        points: (T, K, 2) float64 true points in each frame's pixels.
        matrices: (T, 2, 3) affine maps from the source image to each frame.
        fps: frame rate the path was sampled at.
        path: the path's name.
    """

    frames: np.ndarray | None
    points: np.ndarray
    matrices: np.ndarray
    fps: float
    path: str

    @property
    def timestamps(self) -> np.ndarray:
        """(T,) frame times in seconds."""
        return np.arange(len(self.points)) / self.fps


def _path_parameters(path: str, frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """(T, 4) unit-amplitude path: x offset, y offset, rotation, zoom, each in [-1, 1]."""
    times = np.arange(frames) / fps
    if path == "still":
        return np.zeros((frames, 4))
    if path == "lissajous":
        phases = rng.uniform(0, 2 * math.pi, size=4)
        frequencies = np.array([LISSAJOUS_HZ[key] for key in ("x", "y", "rotation", "zoom")])
        return np.sin(2 * math.pi * times[:, None] * frequencies + phases)
    if path == "steps":
        segment = (times // STEP_INTERVAL_S).astype(int)
        targets = rng.uniform(-1, 1, size=(segment.max() + 1, 4))
        targets[0] = 0.0
        return targets[segment]
    raise unknown_name("sequence path", path, PATHS)


def synthetic_sequence(
    image: np.ndarray | None,
    points: np.ndarray,
    frames: int = 150,
    fps: float = 30.0,
    path: str = "lissajous",
    amplitude: float = 0.15,
    rotation_deg: float = 5.0,
    zoom: float = 0.05,
    face_size_px: float | None = 200.0,
    frame_size: int | None = None,
    render: bool = True,
    seed: int = 0,
) -> SyntheticSequence:
    """Move an annotated real face along a known path and return the frames and true points.

    Frame ``t`` is ``cv2.warpAffine(image, M_t)`` (bilinear, black outside the photo) with
    ``M_t`` = translate to the frame centre plus the path offset, rotate and scale about the face
    centre, after a base scaling that makes the face ``face_size_px`` pixels; the true points are
    the annotation mapped by the same ``M_t``, so they stay exact.

    Paths: ``lissajous`` (sines at :data:`LISSAJOUS_HZ` with seeded phases), ``still`` (no motion) and
    ``steps`` (a jump to a seeded random pose every :data:`STEP_INTERVAL_S` seconds, the first
    segment at rest), all at the given amplitudes. ``steps`` is for the step response (lag,
    overshoot): its jumps dominate the jitter metric, which is meant for smooth paths.

    Args:
        image: the source photo, BGR (grayscale is converted); may be ``None`` when ``render`` is off.
        points: (K, 2) its annotation in pixels.
        frames: number of frames.
        fps: frame rate.
        path: one of :data:`PATHS`.
        amplitude: peak translation in face sizes.
        rotation_deg: peak in-plane rotation in degrees (positive is anticlockwise on screen).
        zoom: peak relative scale change (0.05 is +-5 %).
        face_size_px: face size in the frames (:func:`runtime.smoothing.face_size`); ``None`` keeps
            the photo's scale.
        frame_size: side of the square frames; default twice the face size.
        render: also warp the image (``False`` gives points and matrices only, for noise models).
        seed: seeds the path's phases or step poses.

    Raises:
        UsageError: unknown path or a non-positive count, rate or size.
    """
    if path not in PATHS:
        raise unknown_name("sequence path", path, PATHS)
    if frames < 2 or fps <= 0:
        raise UsageError(f"synthetic_sequence needs frames >= 2 and fps > 0, got frames={frames}, fps={fps}")
    points = np.asarray(points, dtype=np.float64)
    source_size = face_size(points)
    base_scale = 1.0 if face_size_px is None else face_size_px / source_size
    size_in_frame = source_size * base_scale
    side = int(frame_size) if frame_size is not None else round(2 * size_in_frame)
    if side < 8:
        raise UsageError(f"synthetic_sequence frame_size must be at least 8 pixels, got {side}")
    source_box = landmark_box(points)
    source_centre = (source_box[:2] + source_box[2:]) / 2
    frame_centre = np.full(2, (side - 1) / 2.0)
    unit = _path_parameters(path, frames, fps, np.random.default_rng(seed))
    matrices = np.empty((frames, 2, 3))
    for index, (offset_x, offset_y, turn, grow) in enumerate(unit):
        angle = math.radians(rotation_deg * turn)
        scale = base_scale * (1.0 + zoom * grow)
        linear = scale * np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
        target = frame_centre + amplitude * size_in_frame * np.array([offset_x, offset_y])
        matrices[index, :, :2] = linear
        matrices[index, :, 2] = target - linear @ source_centre
    truth = np.stack([apply(matrix, points) for matrix in matrices])
    rendered = None
    if render:
        if image is None:
            raise UsageError("synthetic_sequence needs the source image to render frames; pass it or render=False")
        image = np.asarray(image)
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        rendered = np.stack(
            [
                cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
                for matrix in matrices
            ]
        )
    return SyntheticSequence(frames=rendered, points=truth, matrices=matrices, fps=float(fps), path=path)


# ---------------------------------------------------------------------------------------------------
# Observation models


def noisy_observations(true_points: np.ndarray, sigma_px: float, seed: int = 0) -> np.ndarray:
    """True points plus i.i.d. Gaussian noise of ``sigma_px`` pixels per coordinate, point and frame."""
    if sigma_px < 0:
        raise UsageError(f"noise sigma must be >= 0 pixels, got {sigma_px}")
    true_points = np.asarray(true_points, dtype=np.float64)
    return true_points + np.random.default_rng(seed).normal(0.0, sigma_px, size=true_points.shape)


def heatmap_observations(
    true_points: np.ndarray,
    methods: Sequence[str] = ("argmax", "centroid"),
    input_size: int = 256,
    stride: int = 4,
    heatmap_sigma: float = 1.5,
    map_noise: float = 0.05,
    crop: CropRule = DEFAULT_CROP,
    seed: int = 0,
    chunk: int = 16,
) -> dict[str, np.ndarray]:
    """Observations decoded from noisy Gaussian heatmaps, every method on the same maps.

    One crop serves the whole sequence: ``crop`` applied to the bounding box of the true points over
    all frames, as if the face box were held still; so the points move across the heatmap grid as
    the face moves, which is what exposes argmax's quantisation. Each frame's points are mapped into
    the ``input_size / stride`` heatmap, a unit-peak Gaussian of ``heatmap_sigma`` heatmap pixels is
    rendered per point, i.i.d. Gaussian noise of ``map_noise`` (peak = 1) is added to every heatmap
    pixel, and each method of :mod:`runtime.heatmap` decodes the maps; coordinates go back to frame
    pixels through the inverse crop. I.i.d. pixel noise is a stand-in for a network's errors, which
    are spatially correlated: the comparison isolates the decoder, not a model's accuracy.

    Args:
        true_points: (T, K, 2) pixels.
        methods: decoders from :data:`runtime.heatmap.DECODERS`.
        input_size: model input side in pixels.
        stride: input pixels per heatmap pixel (4 gives 64x64 maps for a 256 input).
        heatmap_sigma: Gaussian sigma in heatmap pixels.
        map_noise: noise standard deviation relative to the peak.
        crop: the crop rule.
        seed: seeds the map noise.
        chunk: frames decoded at once (bounds memory: T x K x H x W floats otherwise).

    Returns:
        method -> (T, K, 2) observed points in frame pixels.
    """
    for method in methods:
        if method not in heatmaplib.DECODERS:
            raise unknown_name("decode method", method, heatmaplib.DECODERS)
    if input_size % stride:
        raise UsageError(f"input_size {input_size} must be a multiple of the stride {stride}")
    true_points = np.asarray(true_points, dtype=np.float64)
    frames = len(true_points)
    matrix = crop_matrix(landmark_box(true_points.reshape(-1, 2)), crop, input_size)
    inverse = cv2.invertAffineTransform(matrix)
    codec = HeatmapCodec(true_points.shape[1], input_size, stride, sigma=heatmap_sigma)
    rng = np.random.default_rng(seed)
    decoded = {method: np.empty_like(true_points) for method in methods}
    for start in range(0, frames, chunk):
        stop = min(start + chunk, frames)
        maps, _ = codec.encode(apply(matrix, true_points[start:stop]))  # (N, K, H/s, W/s) training targets
        maps += map_noise * rng.standard_normal(size=maps.shape, dtype=np.float32)
        for method in methods:
            decoded[method][start:stop] = apply(inverse, codec.decode(maps, method)[0])
    return decoded


# ---------------------------------------------------------------------------------------------------
# Metrics


def _as_list(sequences: Sequences) -> list[np.ndarray]:
    """A (T, K, 2) array or a list of them -> list of float64 arrays."""
    if isinstance(sequences, np.ndarray) and sequences.ndim == 3:
        return [sequences.astype(np.float64)]
    return [np.asarray(sequence, dtype=np.float64) for sequence in sequences]


def _pairs(predicted: Sequences, truth: Sequences) -> list[tuple[np.ndarray, np.ndarray]]:
    predicted, truth = _as_list(predicted), _as_list(truth)
    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predicted sequences but {len(truth)} true ones")
    for one, other in zip(predicted, truth):
        if one.shape != other.shape or one.ndim != 3 or one.shape[-1] != 2:
            raise ValueError(f"predicted {one.shape} and truth {other.shape} must both be (T, K, 2)")
    return list(zip(predicted, truth))


def _distance(points: np.ndarray, normalisation: str) -> np.ndarray:
    """(T,) normalising distance of (T, K, 2) points (any point count for ``box``)."""
    if normalisation == "box":
        extent = points.max(axis=1) - points.min(axis=1)
        return np.sqrt(extent[:, 0] * extent[:, 1])
    return normalising_distance(points, layout_for_points(points.shape[1]), normalisation)


def nme_per_frame(predicted: np.ndarray, truth: np.ndarray, normalisation: str = "inter_ocular") -> np.ndarray:
    """(T,) NME of each frame of one sequence (fraction, not percent)."""
    [(predicted, truth)] = _pairs(predicted, truth)
    errors = np.linalg.norm(predicted - truth, axis=-1).mean(axis=1)
    return errors / _distance(truth, normalisation)


def jitter(predicted: Sequences, truth: Sequences, normalisation: str = "inter_ocular") -> float:
    """RMS frame-to-frame change of the error, normalised (fraction); see the module docstring.

    Args:
        predicted: (T, K, 2) pixels, or a list of sequences (pooled).
        truth: the same shapes.
        normalisation: ``inter_ocular``, ``inter_pupil`` or ``box`` of the true points.
    """
    squares, count = 0.0, 0
    for one, other in _pairs(predicted, truth):
        error = one - other
        change = np.linalg.norm(np.diff(error, axis=0), axis=-1) / _distance(other, normalisation)[1:, None]
        squares += float((change**2).sum())
        count += change.size
    return math.sqrt(squares / count) if count else float("nan")


def video_jitter(points: Sequences, normalisation: str = "inter_ocular") -> dict[str, float]:
    """Jitter of a sequence without truth: RMS second difference (see the module docstring).

    Returns:
        ``{"pixels": RMS in pixels, "normalised": RMS divided by each frame's normalising distance}``.
    """
    squares_px = squares = 0.0
    count = 0
    for sequence in _as_list(points):
        if len(sequence) < 3:
            continue
        second = np.linalg.norm(sequence[2:] - 2 * sequence[1:-1] + sequence[:-2], axis=-1)  # (T-2, K)
        squares_px += float((second**2).sum())
        squares += float(((second / _distance(sequence[1:-1], normalisation)[:, None]) ** 2).sum())
        count += second.size
    if not count:
        return {"pixels": float("nan"), "normalised": float("nan")}
    return {"pixels": math.sqrt(squares_px / count), "normalised": math.sqrt(squares / count)}


def lag_frames(predicted: Sequences, truth: Sequences, max_lag: int = 10) -> int:
    """Integer shift (frames) that best aligns prediction with truth; positive = prediction trails.

    Minimises the mean squared distance between ``predicted[t]`` and ``truth[t - s]`` over the
    frames where both exist, pooled over sequences; ties go to the smaller ``|s|``.
    """
    shifts = sorted(range(-max_lag, max_lag + 1), key=abs)
    totals = np.zeros(len(shifts))
    counts = np.zeros(len(shifts))
    for one, other in _pairs(predicted, truth):
        frames = len(one)
        for position, shift in enumerate(shifts):
            if abs(shift) >= frames:
                continue
            if shift >= 0:
                difference = one[shift:] - other[: frames - shift]
            else:
                difference = one[:shift] - other[-shift:]
            totals[position] += float((difference**2).sum())
            counts[position] += difference.shape[0] * difference.shape[1]
    mean = np.where(counts > 0, totals / np.maximum(counts, 1), np.inf)
    return int(shifts[int(np.argmin(mean))])


def _row(method: str, predicted: list[np.ndarray], truth: list[np.ndarray], normalisation: str) -> dict:
    nme = np.concatenate([nme_per_frame(one, other, normalisation) for one, other in zip(predicted, truth)])
    return {
        "method": method,
        "nme": float(nme.mean() * 100),
        "jitter": jitter(predicted, truth, normalisation) * 100,
        "lag": lag_frames(predicted, truth),
    }


# ---------------------------------------------------------------------------------------------------
# Comparisons


def smooth_sequence(observations: np.ndarray, method: str, fps: float = 30.0, **params) -> np.ndarray:
    """Run smoother ``method`` over (T, K, 2) observations taken at ``fps``; returns (T, K, 2).

    Each frame's face size is measured on that frame's observation, as a tracker must.
    """
    smoother = make_smoother(method, fps=fps, **params)
    observations = np.asarray(observations, dtype=np.float64)
    return np.stack(
        [smoother.smooth(frame, index / fps, face_size(frame)) for index, frame in enumerate(observations)]
    ).astype(np.float64)


def compare_smoothers(
    truth: Sequences,
    observations: Sequences,
    fps: float = 30.0,
    methods: Sequence[str] = ("none", "one_euro", "ema", "kalman"),
    params: dict[str, dict] | None = None,
    normalisation: str = "inter_ocular",
) -> list[dict]:
    """Smooth the same observations with each method and score against the truth.

    Args:
        truth: (T, K, 2) true points, or a list of sequences.
        observations: matching noisy observations.
        fps: frame rate of the sequences.
        methods: smoother names.
        params: optional per-method parameters, e.g. ``{"one_euro": {"beta": 2.0}}``.
        normalisation: for NME and jitter.

    Returns:
        One row per method: ``method``, ``nme`` (%), ``jitter`` (%, same normalisation) and ``lag``
        (frames), pooled over all sequences.
    """
    pairs = _pairs(observations, truth)
    observations, truth = [pair[0] for pair in pairs], [pair[1] for pair in pairs]
    params = params or {}
    rows = []
    for method in methods:
        started = time.perf_counter()
        smoothed = [smooth_sequence(sequence, method, fps, **params.get(method, {})) for sequence in observations]
        rows.append(_row(method, smoothed, truth, normalisation))
        logger.debug("smoothed %d sequences with %s in %.2f s", len(smoothed), method, time.perf_counter() - started)
    return rows


def compare_decoders(
    truth: Sequences,
    methods: Sequence[str] = ("argmax", "centroid", "soft_argmax"),
    normalisation: str = "inter_ocular",
    seed: int = 0,
    **heatmap_options,
) -> list[dict]:
    """Decode the same noisy heatmaps of each sequence with each method and score against the truth.

    Args:
        truth: (T, K, 2) true points, or a list of sequences (sequence ``i`` uses seed ``seed + i``).
        methods: decoders from :data:`runtime.heatmap.DECODERS`.
        normalisation: for NME and jitter.
        seed: seeds the map noise.
        **heatmap_options: passed to :func:`heatmap_observations` (``stride``, ``map_noise``, ...).

    Returns:
        One row per method: ``method``, ``nme`` (%), ``jitter`` (%) and ``lag`` (frames).
    """
    truth = _as_list(truth)
    decoded = [
        heatmap_observations(sequence, methods=methods, seed=seed + index, **heatmap_options)
        for index, sequence in enumerate(truth)
    ]
    return [_row(method, [one[method] for one in decoded], truth, normalisation) for method in methods]


def format_rows(rows: Sequence[dict]) -> str:
    """Render comparison rows as a Markdown table."""
    lines = ["| method | NME % | jitter % | lag (frames) |", "|---|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['method']} | {row['nme']:.3f} | {row['jitter']:.3f} | {row['lag']} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Command


@dataclass(frozen=True)
class JitterConfig:
    """What ``python -m runtime.jitter`` measures (see :func:`build_parser` for each flag)."""

    faces: str
    path: str = "lissajous"
    frames: int = 150
    fps: float = 30.0
    face_size_px: float = 200.0
    noise_px: float = 1.2
    map_noise: float = 0.05
    stride: int = 4
    seed: int = 0

    def __post_init__(self):
        if self.path not in PATHS:
            raise unknown_name("sequence path", self.path, PATHS)
        if self.frames < 3 or self.fps <= 0 or self.face_size_px <= 0 or self.noise_px < 0 or self.map_noise < 0:
            raise UsageError(
                "need frames >= 3, fps > 0, face size > 0, noise >= 0; got "
                f"frames={self.frames}, fps={self.fps}, face size={self.face_size_px}, "
                f"noise={self.noise_px}, map noise={self.map_noise}"
            )


def measure(config: JitterConfig) -> dict[str, list[dict]]:
    """Smoother and decoder tables on synthetic sequences of every face in ``config.faces``.

    Returns:
        ``{"smoothers": rows, "decoders": rows}``.
    """
    from runtime.annotations import read_pts_folder

    started = time.perf_counter()
    samples = read_pts_folder(config.faces)
    truths = [
        synthetic_sequence(
            None,
            sample.points,
            config.frames,
            config.fps,
            config.path,
            face_size_px=config.face_size_px,
            render=False,
            seed=config.seed + index,
        ).points
        for index, sample in enumerate(samples)
    ]
    observations = [
        noisy_observations(truth, config.noise_px, config.seed + index) for index, truth in enumerate(truths)
    ]
    tables = {
        "smoothers": compare_smoothers(truths, observations, config.fps),
        "decoders": compare_decoders(truths, seed=config.seed, stride=config.stride, map_noise=config.map_noise),
    }
    logger.info(
        "jitter tables: %d faces x %d frames (%s) in %.1f s",
        len(samples),
        config.frames,
        config.path,
        time.perf_counter() - started,
    )
    return tables


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.jitter",
        description="Jitter, lag and NME of each smoother and heatmap decoder on synthetic motion of real annotated faces.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  python -m runtime.jitter --faces ../shared/data/faces68\n"
        "  python -m runtime.jitter --faces FACES --path steps --face-size 120 --noise-px 1.5 --frames 300\n"
        "  python -m runtime.jitter --faces FACES --map-noise 0.1 --stride 4 --seed 1   # decoders on noisier maps\n",
    )
    parser.add_argument(
        "--faces", required=True, help="folder of images with iBUG .pts files (e.g. ../shared/data/faces68)"
    )
    parser.add_argument(
        "--path", default="lissajous", help=f"motion path: {', '.join(PATHS)} (default lissajous)"
    )
    parser.add_argument("--frames", type=int, default=150, help="frames per sequence, >= 3 (default 150)")
    parser.add_argument("--fps", type=float, default=30.0, help="frame rate the smoothers assume, > 0 (default 30)")
    parser.add_argument(
        "--face-size", type=float, default=200.0, help="face size in pixels (sqrt of landmark box area), > 0 (default 200)"
    )
    parser.add_argument(
        "--noise-px", type=float, default=1.2, help="observation noise per coordinate for the smoother table, pixels >= 0 (default 1.2)"
    )
    parser.add_argument(
        "--map-noise", type=float, default=0.05, help="heatmap pixel noise (peak = 1) for the decoder table, >= 0 (default 0.05)"
    )
    parser.add_argument(
        "--stride", type=int, default=4, help="heatmap stride for the decoder table, a positive integer (default 4)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise, an integer (default 0)")
    return parser


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    config = JitterConfig(
        faces=arguments.faces,
        path=arguments.path,
        frames=arguments.frames,
        fps=arguments.fps,
        face_size_px=arguments.face_size,
        noise_px=arguments.noise_px,
        map_noise=arguments.map_noise,
        stride=arguments.stride,
        seed=arguments.seed,
    )
    tables = measure(config)
    print(
        f"Smoothing ({config.noise_px} px noise, {config.face_size_px:g} px faces, {config.fps:g} fps, {config.path}):"
    )
    print(format_rows(tables["smoothers"]))
    print(f"\nDecoding (256 input, stride {config.stride}, map noise {config.map_noise}):")
    print(format_rows(tables["decoders"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
