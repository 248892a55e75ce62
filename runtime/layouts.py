"""Keypoint layouts: point count, horizontal-flip permutation and the points NME normalises by.

Index conventions follow the datasets' own files (0-based). "Left"/"right" below mean the image's
left/right for a frontal face, as in the annotation tools.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from runtime.errors import EdgemarkError, unknown_name


@dataclass(frozen=True)
class Layout:
    """One landmark layout.

    Attributes:
        name: registry name (``wflw98``, ``ibug68``, ``cofw29``, ``aflw19``).
        num_points: number of landmarks.
        flip_pairs: index pairs that swap under a horizontal flip; unlisted points map to themselves.
        outer_eye_corners: (image-left eye outer corner, image-right eye outer corner), for inter-ocular NME.
        pupils: index groups whose mean is each pupil centre, for inter-pupil NME.
    """

    name: str
    num_points: int
    flip_pairs: tuple[tuple[int, int], ...]
    outer_eye_corners: tuple[int, int]
    pupils: tuple[tuple[int, ...], tuple[int, ...]]

    @property
    def flip_permutation(self) -> np.ndarray:
        """``perm`` such that ``flipped[i] = mirrored_points[perm[i]]`` after a horizontal flip."""
        perm = np.arange(self.num_points)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm


def _mirror(left: range | list[int], right: range | list[int]) -> list[tuple[int, int]]:
    """Pair ``left[i]`` with ``right[i]``."""
    left, right = list(left), list(right)
    assert len(left) == len(right)
    return list(zip(left, right))


# iBUG 300-W 68-point markup.
_IBUG68_PAIRS = (
    _mirror(range(0, 8), range(16, 8, -1))  # jaw 0..7 <-> 16..9
    + _mirror(range(17, 22), range(26, 21, -1))  # brows
    + _mirror([31, 32], [35, 34])  # nostrils
    + _mirror([36, 37, 38, 39, 40, 41], [45, 44, 43, 42, 47, 46])  # eyes
    + _mirror([48, 49, 50, 55, 56], [54, 53, 52, 59, 58])  # outer lips
    + _mirror([60, 61, 65], [64, 63, 67])  # inner lips
)
IBUG68 = Layout(
    name="ibug68",
    num_points=68,
    flip_pairs=tuple(_IBUG68_PAIRS),
    outer_eye_corners=(36, 45),
    pupils=(tuple(range(36, 42)), tuple(range(42, 48))),
)

# iBUG-68 without the inner-mouth corners 60 and 64 (OpenSeeFace's 66 points).
# IBUG66_TO_68[j] is the 68-point index of 66-point j.
IBUG66_TO_68 = np.array([i for i in range(68) if i not in (60, 64)])
_FROM_68 = {int(index68): index66 for index66, index68 in enumerate(IBUG66_TO_68)}
IBUG66 = Layout(
    name="ibug66",
    num_points=66,
    flip_pairs=tuple((_FROM_68[a], _FROM_68[b]) for a, b in _IBUG68_PAIRS if a in _FROM_68 and b in _FROM_68),
    outer_eye_corners=(_FROM_68[36], _FROM_68[45]),
    pupils=(tuple(range(36, 42)), tuple(range(42, 48))),
)

# WFLW 98-point markup (same pairs as the HRNet facial-landmark code).
_WFLW98_PAIRS = (
    _mirror(range(0, 16), range(32, 16, -1))  # contour 0..15 <-> 32..17, 16 is the chin
    + _mirror([33, 34, 35, 36, 37, 38, 39, 40, 41], [46, 45, 44, 43, 42, 50, 49, 48, 47])  # brows
    + _mirror([55, 56], [59, 58])  # nostrils
    + _mirror([60, 61, 62, 63, 64, 65, 66, 67], [72, 71, 70, 69, 68, 75, 74, 73])  # eyes
    + _mirror([76, 77, 78, 87, 86], [82, 81, 80, 83, 84])  # outer lips
    + _mirror([88, 89, 95], [92, 91, 93])  # inner lips
    + [(96, 97)]  # pupils
)
WFLW98 = Layout(
    name="wflw98",
    num_points=98,
    flip_pairs=tuple(_WFLW98_PAIRS),
    outer_eye_corners=(60, 72),
    pupils=((96,), (97,)),
)

# COFW 29-point markup (HRNet's pairs; 8/9 outer eye corners, 16/17 pupils).
COFW29 = Layout(
    name="cofw29",
    num_points=29,
    flip_pairs=((0, 1), (4, 6), (2, 3), (5, 7), (8, 9), (10, 11), (12, 14), (16, 17), (13, 15), (18, 19), (22, 23)),
    outer_eye_corners=(8, 9),
    pupils=((16,), (17,)),
)

# AFLW 19-point markup (6/11 outer eye corners, 7/10 eye centres). AFLW is usually scored by box size.
AFLW19 = Layout(
    name="aflw19",
    num_points=19,
    flip_pairs=((0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9), (12, 14), (15, 17)),
    outer_eye_corners=(6, 11),
    pupils=((7,), (10,)),
)

LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (WFLW98, IBUG68, IBUG66, COFW29, AFLW19)}
_BY_COUNT = {layout.num_points: layout for layout in LAYOUTS.values()}

# The standard WFLW-98 -> iBUG-68 index map: WFLW98_TO_68[j] is the WFLW index of 68-point j.
WFLW98_TO_68 = np.array(
    list(range(0, 33, 2))  # jaw: every second contour point
    + [33, 34, 35, 36, 37, 42, 43, 44, 45, 46]  # brows: upper arcs
    + [51, 52, 53, 54, 55, 56, 57, 58, 59]  # nose
    + [60, 61, 63, 64, 65, 67, 68, 69, 71, 72, 73, 75]  # eyes: corners and two lid points each
    + list(range(76, 96))  # mouth
)


def get_layout(name: str) -> Layout:
    """Look a layout up by name; unknown names raise a :class:`UsageError` listing the valid ones."""
    try:
        return LAYOUTS[name]
    except KeyError:
        raise unknown_name("landmark layout", name, list(LAYOUTS)) from None


def layout_for_points(num_points: int) -> Layout:
    """The layout with ``num_points`` points (each registered layout has a distinct count)."""
    if num_points not in _BY_COUNT:
        raise unknown_name("landmark count", str(num_points), [str(n) for n in _BY_COUNT])
    return _BY_COUNT[num_points]


def to_68(points: np.ndarray) -> np.ndarray:
    """Convert (..., 98, 2) WFLW points to (..., 68, 2) iBUG points; 68-point input passes through."""
    if points.shape[-2] == 68:
        return points
    if points.shape[-2] != 98:
        raise ValueError(f"to_68 needs 98 or 68 points, got {points.shape[-2]}")
    return points[..., WFLW98_TO_68, :]


def shared_with_68(predicted: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, Layout]:
    """Predictions and 68-point annotations on the points both have, and that layout.

    98-point predictions go through the standard 98 -> 68 map and are scored on all 68 points;
    66-point predictions (iBUG-68 without the inner-mouth corners 60 and 64) are scored on those 66,
    the annotations reduced to them.

    Args:
        predicted: (N, K, 2) with K in 98, 68 or 66.
        truth: (N, 68, 2).

    Raises:
        ValueError: a point count with no map to 68.
    """
    count = predicted.shape[-2]
    if count == 66:
        return predicted, truth[..., IBUG66_TO_68, :], IBUG66
    return to_68(predicted), truth, IBUG68


def flip_points(points: np.ndarray, layout: Layout, width: float) -> np.ndarray:
    """Mirror (K, 2) pixel-centre coordinates in an image ``width`` pixels wide and relabel left/right."""
    mirrored = points.copy()
    mirrored[..., 0] = (width - 1) - mirrored[..., 0]
    return mirrored[..., layout.flip_permutation, :]


# Face regions by layout (0-based indices of each dataset's own markup): the outer lip contour and
# each eye's contour, for make-up.
FACE_REGIONS: dict[str, dict[str, tuple[int, ...]]] = {
    "ibug68": {
        "lips": tuple(range(48, 60)),
        "left_eye": tuple(range(36, 42)),
        "right_eye": tuple(range(42, 48)),
    },
    "wflw98": {
        "lips": tuple(range(76, 88)),
        "left_eye": tuple(range(60, 68)),
        "right_eye": tuple(range(68, 76)),
    },
}


def face_region(points: np.ndarray, region: str) -> np.ndarray:
    """(M, 2) landmarks of ``region`` (``lips``, ``left_eye``, ``right_eye``) for a 68- or 98-point face."""
    layout = layout_for_points(len(points)).name
    if layout not in FACE_REGIONS:
        raise EdgemarkError(
            f"the make_up style needs 68-point (ibug68) or 98-point (wflw98) landmarks to find lips and eyes, "
            f"got {len(points)} points ({layout}); leave make_up out with --styles"
        )
    return np.asarray(points)[list(FACE_REGIONS[layout][region])]
