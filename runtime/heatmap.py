"""Heatmap -> coordinate decoding in numpy (the runtime's path; train/decode.py mirrors it in torch).

Coordinates are in heatmap pixels with pixel centres at integers; :mod:`runtime.codecs` (the heatmap
codec) maps them to the model input's pixels and draws the training targets.

Heatmaps with offset maps (card output kind ``heatmap_offsets``, e.g. OpenSeeFace) are decoded by
:func:`decode_offsets` straight to input pixels, as :class:`HeatmapOffsets` describes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from runtime.errors import UsageError

DECODERS = ("argmax", "centroid", "soft_argmax")
OFFSET_DECODE = "peak_offset"
OFFSET_GROUPS = ("heatmap", "x_offset", "y_offset")
OFFSET_TRANSFORMS = ("identity", "logit")
# The author's clamp before the logit (OpenSeeFace tracker.py): keeps saturated sigmoids finite.
_LOGIT_EPSILON = 1e-7


def argmax(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer peak of each map.

    Args:
        heatmaps: (N, K, H, W).

    Returns:
        (N, K, 2) x, y of the peaks as float, and (N, K) peak values.
    """
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, h * w)
    index = flat.argmax(axis=-1)
    peak = np.take_along_axis(flat, index[..., None], axis=-1)[..., 0]
    coords = np.stack([index % w, index // w], axis=-1).astype(np.float32)
    return coords, peak.astype(np.float32)


def centroid(heatmaps: np.ndarray, radius: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel peak: mean of pixel positions weighted by the map in a window around the argmax.

    The window is ``(2 * radius + 1)`` pixels square, clipped at the borders; negative values are
    ignored. This is the FAN training code's heatmap -> coordinate refinement generalised from a
    quarter-pixel nudge to a weighted mean, which is what removes argmax's quantisation jitter.

    Args:
        heatmaps: (N, K, H, W).
        radius: half window size in heatmap pixels; at least 2.5x the target Gaussian sigma
            (4 keeps the bias under 0.02 px for sigma 1.5).

    Returns:
        (N, K, 2) sub-pixel x, y and (N, K) peak values.
    """
    n, k, h, w = heatmaps.shape
    peaks, peak_values = argmax(heatmaps)
    offsets = np.arange(-radius, radius + 1)
    # (N, K, S) window coordinates, clipped so the window never leaves the map.
    xs = np.clip(peaks[..., 0:1].astype(np.int64) + offsets, 0, w - 1)
    ys = np.clip(peaks[..., 1:2].astype(np.int64) + offsets, 0, h - 1)
    batch = np.arange(n)[:, None, None, None]
    point = np.arange(k)[None, :, None, None]
    # (N, K, S, S) window values, rows y, columns x.
    window = heatmaps[batch, point, ys[..., :, None], xs[..., None, :]].astype(np.float64)
    # Clipping repeats border pixels; count each real pixel once.
    valid_x = (peaks[..., 0:1] + offsets >= 0) & (peaks[..., 0:1] + offsets <= w - 1)
    valid_y = (peaks[..., 1:2] + offsets >= 0) & (peaks[..., 1:2] + offsets <= h - 1)
    weights = np.clip(window, 0, None) * valid_y[..., :, None] * valid_x[..., None, :]
    total = weights.sum(axis=(-1, -2))
    safe = np.where(total > 0, total, 1.0)
    x = (weights * xs[..., None, :]).sum(axis=(-1, -2)) / safe
    y = (weights * ys[..., :, None]).sum(axis=(-1, -2)) / safe
    coords = np.where((total > 0)[..., None], np.stack([x, y], axis=-1), peaks)
    return coords.astype(np.float32), peak_values


def soft_argmax(heatmaps: np.ndarray, beta: float = 50.0) -> tuple[np.ndarray, np.ndarray]:
    """Expectation of pixel position under ``softmax(beta * heatmap)`` over the whole map."""
    n, k, h, w = heatmaps.shape
    logits = beta * heatmaps.reshape(n, k, h * w).astype(np.float64)
    logits -= logits.max(axis=-1, keepdims=True)
    probability = np.exp(logits)
    probability /= probability.sum(axis=-1, keepdims=True)
    probability = probability.reshape(n, k, h, w)
    x = (probability.sum(axis=2) * np.arange(w)).sum(axis=-1)
    y = (probability.sum(axis=3) * np.arange(h)).sum(axis=-1)
    _, peak_values = argmax(heatmaps)
    return np.stack([x, y], axis=-1).astype(np.float32), peak_values


def decode(heatmaps: np.ndarray, method: str = "centroid", **options) -> tuple[np.ndarray, np.ndarray]:
    """Decode (N, K, H, W) heatmaps with ``method``; returns coordinates (N, K, 2) and confidences (N, K).

    Confidence is the peak value clipped to [0, 1] (targets peak at 1).
    """
    decoders = {"argmax": argmax, "centroid": centroid, "soft_argmax": soft_argmax}
    if method not in decoders:
        raise ValueError(f"Unknown decode method '{method}'. Valid: {', '.join(DECODERS)}")
    coords, peaks = decoders[method](np.asarray(heatmaps), **options)
    return coords, np.clip(peaks, 0.0, 1.0)


@dataclass(frozen=True)
class HeatmapOffsets:
    """Layout and decoding of a heatmap + offset-map output (card output kind ``heatmap_offsets``).

    The output is (N, 3K, G, G): three groups of K maps stacked on the channel axis in
    ``channel_groups`` order (OpenSeeFace's 198 channels: 66 heatmaps, 66 row offsets, 66 column
    offsets). Point k is the peak cell (row r, column c) of its heatmap plus the offsets read at that
    cell, in input pixels with pixel centres at integers::

        x = c * cell_spacing + offset_scale * transform(x_offset[k, r, c]) / offset_divisor
        y = r * cell_spacing + offset_scale * transform(y_offset[k, r, c]) / offset_divisor

    Cell (0, 0) sits on the centre of input pixel (0, 0); with ``cell_spacing = (S - 1) / (G - 1)``
    the last cell sits on pixel ``S - 1`` (OpenSeeFace: 223 / 27 for S = 224, G = 28).

    Attributes:
        grid_size: G, cells per side of each map.
        cell_spacing: input pixels between neighbouring cells.
        offset_scale: input pixels per unit of transformed, divided offset (OpenSeeFace: S - 1 = 223).
        channel_groups: order of the three K-channel groups: a permutation of ``heatmap``,
            ``x_offset``, ``y_offset``.
        offset_transform: ``logit`` when the model squashes offsets with a sigmoid (OpenSeeFace),
            ``identity`` when it outputs them raw.
        offset_divisor: divides the transformed offset (OpenSeeFace's logit factor 16).
    """

    grid_size: int
    cell_spacing: float
    offset_scale: float
    channel_groups: tuple[str, str, str] = ("heatmap", "x_offset", "y_offset")
    offset_transform: str = "identity"
    offset_divisor: float = 1.0

    def __post_init__(self):
        if sorted(self.channel_groups) != sorted(OFFSET_GROUPS):
            raise UsageError(
                f"offset channel groups {list(self.channel_groups)} must order each of {', '.join(OFFSET_GROUPS)} once"
            )
        if self.offset_transform not in OFFSET_TRANSFORMS:
            raise UsageError(f"offset transform '{self.offset_transform}' is not one of {', '.join(OFFSET_TRANSFORMS)}")
        if not (self.grid_size >= 1 and self.cell_spacing > 0 and self.offset_scale > 0 and self.offset_divisor > 0):
            raise UsageError(
                f"heatmap offsets need grid_size >= 1 and positive cell_spacing, offset_scale and offset_divisor; got "
                f"{self.grid_size}, {self.cell_spacing}, {self.offset_scale}, {self.offset_divisor}"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "HeatmapOffsets":
        values = dict(values)
        if "channel_groups" in values:
            values["channel_groups"] = tuple(values["channel_groups"])
        return cls(**values)


def decode_offsets(output: np.ndarray, spec: HeatmapOffsets, num_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode (N, 3K, G, G) heatmap + offset maps into input-pixel points.

    Args:
        output: the model's output.
        spec: its layout and offset decoding.
        num_points: K.

    Returns:
        (N, K, 2) x, y in input pixels (pixel centres at integers) and (N, K) confidences: the peak
        values clipped to [0, 1].
    """
    n = len(output)
    k, g = num_points, spec.grid_size
    groups = np.asarray(output).reshape(n, 3, k, g * g)
    index = {name: position for position, name in enumerate(spec.channel_groups)}
    heatmaps = groups[:, index["heatmap"]]
    peak_cell = heatmaps.argmax(axis=-1)[..., None]  # (N, K, 1) flat index of the peak cell
    peak = np.take_along_axis(heatmaps, peak_cell, axis=-1)[..., 0]
    offsets = []
    for axis in ("x_offset", "y_offset"):
        value = np.take_along_axis(groups[:, index[axis]], peak_cell, axis=-1)[..., 0].astype(np.float64)
        if spec.offset_transform == "logit":
            value = np.clip(value, _LOGIT_EPSILON, 1.0 - _LOGIT_EPSILON)
            value = np.log(value / (1.0 - value))
        offsets.append(value * spec.offset_scale / spec.offset_divisor)
    row, column = np.divmod(peak_cell[..., 0], g)
    x = column * spec.cell_spacing + offsets[0]
    y = row * spec.cell_spacing + offsets[1]
    return np.stack([x, y], axis=-1), np.clip(peak, 0.0, 1.0).astype(np.float32)
