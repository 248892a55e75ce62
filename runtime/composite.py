"""Real annotated faces pasted onto face-free backgrounds, with their landmarks moved exactly along.

An **actor** is a real face with its human annotation (``faces68/``, ``faces68_extra/`` and the
``multiface/`` WFLW faces of the shared data, 98 points mapped to iBUG-68 by
:data:`runtime.layouts.WFLW98_TO_68`): the square of the photograph around its landmarks (cut by
whole pixels, never resampled) and a soft elliptical mask over face, forehead and some hair.
:func:`paste` warps an actor into a frame with a similarity matrix and returns its 68 points moved by
that very matrix; :func:`background` makes the face-free frames to paste on. runtime.scenario builds
named test footage from these.

Pixel convention, as everywhere in the project: pixel centres at integers. ``cv2.warpAffine`` with
matrix ``M`` puts the source pixel centred at ``p`` at ``M p`` in the output, so points move by the
same ``M``; a patch first shrunk with ``cv2.resize`` (for large downscales, to avoid aliasing) maps
``x -> (x + 0.5) * factor - 0.5``, and the warp matrix is composed with the inverse of that, so the
points never see the resize. The annotation's own origin is kept (300-W ``.pts`` files are 1-based:
read as written, like every reader in the project).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from runtime.errors import EdgemarkError
from runtime.layouts import WFLW98_TO_68

REPO = Path(__file__).resolve().parents[1]
ACTOR_FOLDERS = ("faces68", "faces68_extra", "multiface")
IMAGE_SUFFIXES = (".jpg", ".png", ".ppm", ".jpeg", ".bmp")
# The patch cut around an actor: a square of this many times its landmark box's longer side.
PATCH_SCALE = 2.4
# The mask: an ellipse over the landmark box widened to the ears and raised to take in the forehead,
# in units of the landmark box's width and height, fading to zero over FEATHER of its radius.
MASK_HALF_WIDTH = 0.62
MASK_TOP, MASK_BOTTOM = -0.45, 1.08  # from the landmark box's top, in box heights
FEATHER = 0.18
# A ghost face (see runtime.scenario.Move): Gaussian blur sigma as a fraction of the face size, and opacity.
GHOST_BLUR, GHOST_OPACITY = 0.04, 0.3


class ScenarioError(EdgemarkError):
    """Shared data missing or unreadable, or a scenario that cannot be rendered."""


def default_data_dir() -> Path:
    """``$EDGEMARK_SHARED/data``, else ``../shared/data`` beside the repository (as the tests look)."""
    shared = os.environ.get("EDGEMARK_SHARED")
    return Path(shared) / "data" if shared else REPO.parent / "shared" / "data"


# ---------------------------------------------------------------------------------------------------
# Actors


@dataclass
class Actor:
    """A real annotated face, cut out for pasting.

    Attributes:
        name: the annotation's file stem (``einstein``, ``7_Cheering_Cheering_7_16_face1``).
        image: (H, W, 3) uint8 BGR: the photograph around the face, cut by whole pixels from a square of
            ``PATCH_SCALE`` times the landmarks' longer side (edges replicated where it leaves the
            photograph) and trimmed to the mask.
        alpha: (H, W) float32 mask in [0, 1]: 1 on the face, feathered to 0.
        points: (68, 2) float64 iBUG-68 landmarks in ``image``'s pixels.
        source: the photograph, relative to the data folder.
    """

    name: str
    image: np.ndarray
    alpha: np.ndarray
    points: np.ndarray
    source: str = ""
    _copies: dict = field(default_factory=dict, repr=False)

    @property
    def size(self) -> float:
        """sqrt(width * height) of the landmarks' box (runtime.smoothing.face_size)."""
        extent = self.points.max(axis=0) - self.points.min(axis=0)
        return float(math.sqrt(extent[0] * extent[1]))

    @property
    def centre(self) -> np.ndarray:
        """(2,) centre of the landmarks' box."""
        return (self.points.min(axis=0) + self.points.max(axis=0)) / 2

    def ghost(self) -> Actor:
        """A faint, soft copy: blurred by ``GHOST_BLUR`` of the face size, pasted at ``GHOST_OPACITY``."""
        if "ghost" not in self._copies:
            image = cv2.GaussianBlur(self.image, (0, 0), GHOST_BLUR * self.size)
            alpha = self.alpha * GHOST_OPACITY
            self._copies["ghost"] = Actor(f"{self.name}(ghost)", image, alpha, self.points, self.source)
        return self._copies["ghost"]

    def shrunk(self, level: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image and mask halved ``level`` times (``cv2.INTER_AREA``) and the 2x3 matrix from the
        actor's pixels to the shrunk copy's (exact per-axis factors after rounding)."""
        if level == 0:
            return self.image, self.alpha, np.array([[1.0, 0, 0], [0, 1.0, 0]])
        if level not in self._copies:
            height, width = self.image.shape[:2]
            size = (max(1, round(width / 2**level)), max(1, round(height / 2**level)))
            image = cv2.resize(self.image, size, interpolation=cv2.INTER_AREA)
            alpha = cv2.resize(self.alpha, size, interpolation=cv2.INTER_AREA)
            factor_x, factor_y = size[0] / width, size[1] / height
            # x -> (x + 0.5) * factor - 0.5: pixel edges scale, centres sit half a pixel inside them.
            matrix = np.array([[factor_x, 0, 0.5 * factor_x - 0.5], [0, factor_y, 0.5 * factor_y - 0.5]])
            self._copies[level] = (image, alpha, matrix)
        return self._copies[level]


def actor_names(data_dir: str | Path | None = None) -> list[str]:
    """Every annotated face in the data folder that can be an actor, sorted."""
    data = Path(data_dir) if data_dir else default_data_dir()
    return sorted(path.stem for folder in ACTOR_FOLDERS for path in (data / folder).glob("*.pts"))


def _find_annotation(name: str, data: Path) -> tuple[Path, Path]:
    for folder in ACTOR_FOLDERS:
        pts = data / folder / f"{name}.pts"
        if pts.is_file():
            # multiface: one photograph holds several faces, <image>_face<k>.pts each
            stem = name.rsplit("_face", 1)[0] if folder == "multiface" else name
            for suffix in IMAGE_SUFFIXES:
                image = pts.with_name(stem + suffix)
                if image.is_file():
                    return pts, image
            raise ScenarioError(f"{pts}: no photograph {stem}.* beside it (looked for {', '.join(IMAGE_SUFFIXES)})")
    raise ScenarioError(
        f"actor '{name}': no {name}.pts in {', '.join(str(data / f) for f in ACTOR_FOLDERS)}; pass --data DIR "
        "with the shared data (faces68/, faces68_extra/, multiface/), by default ../shared/data beside the repository"
    )


def load_actor(name: str, data_dir: str | Path | None = None) -> Actor:
    """Cut an actor out of its photograph.

    Args:
        name: the ``.pts`` file's stem in ``faces68/``, ``faces68_extra/`` or ``multiface/``.
        data_dir: the shared data folder (default :func:`default_data_dir`).

    Raises:
        ScenarioError: no such annotation, no photograph beside it, or an unreadable file.
    """
    from runtime.annotations import read_pts

    data = Path(data_dir) if data_dir else default_data_dir()
    pts, image_path = _find_annotation(name, data)
    points = read_pts(pts).astype(np.float64)
    if len(points) == 98:
        points = points[WFLW98_TO_68]
    elif len(points) != 68:
        raise ScenarioError(f"{pts}: {len(points)} points; an actor needs 68 (iBUG) or 98 (WFLW)")
    photo = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if photo is None:
        raise ScenarioError(f"{image_path}: OpenCV cannot read this image")
    low, high = points.min(axis=0), points.max(axis=0)
    side = math.ceil(PATCH_SCALE * float((high - low).max()))
    left = math.floor((low[0] + high[0]) / 2 - side / 2)
    top = math.floor((low[1] + high[1]) / 2 - side / 2)
    # Integer cut (no resampling), edges replicated where the square leaves the photograph.
    pad = max(0, -left, -top, left + side - photo.shape[1], top + side - photo.shape[0])
    padded = cv2.copyMakeBorder(photo, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else photo
    patch = np.ascontiguousarray(padded[top + pad : top + pad + side, left + pad : left + pad + side])
    points = points - (left, top)
    alpha = face_mask(points, side)
    # Keep only the mask's support (plus a pixel): nothing outside it is ever pasted.
    rows, columns = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    top, bottom = max(0, rows[0] - 1), min(side, rows[-1] + 2)
    left, right = max(0, columns[0] - 1), min(side, columns[-1] + 2)
    return Actor(
        name, np.ascontiguousarray(patch[top:bottom, left:right]), np.ascontiguousarray(alpha[top:bottom, left:right]),
        points - (left, top), str(image_path.relative_to(data)),
    )


def face_mask(points: np.ndarray, side: int) -> np.ndarray:
    """(side, side) float32 soft ellipse over the face of (68, 2) ``points``: 1 inside, 0 outside."""
    low, high = points.min(axis=0), points.max(axis=0)
    width, height = high - low
    centre_x = (low[0] + high[0]) / 2
    top, bottom = low[1] + MASK_TOP * height, low[1] + MASK_BOTTOM * height
    centre_y, radius_y = (top + bottom) / 2, (bottom - top) / 2
    radius_x = MASK_HALF_WIDTH * width
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    radius = np.sqrt(((x - centre_x) / radius_x) ** 2 + ((y - centre_y) / radius_y) ** 2)
    ramp = np.clip((1.0 - radius) / FEATHER, 0.0, 1.0)
    return (ramp * ramp * (3 - 2 * ramp)).astype(np.float32)  # smoothstep


def similarity(actor: Actor, centre_x: float, centre_y: float, size: float, angle: float = 0.0) -> np.ndarray:
    """2x3 matrix from the actor's pixels to the frame's: its landmark-box centre to ``(centre_x,
    centre_y)``, its face size to ``size`` pixels, turned ``angle`` degrees counter-clockwise on screen."""
    scale = size / actor.size
    cos, sin = scale * math.cos(math.radians(angle)), scale * math.sin(math.radians(angle))
    linear = np.array([[cos, sin], [-sin, cos]])  # y points down: this turns counter-clockwise as seen
    return np.hstack([linear, (np.array([centre_x, centre_y]) - linear @ actor.centre)[:, None]])


def paste(frame: np.ndarray, actor: Actor, matrix: np.ndarray) -> np.ndarray:
    """Blend ``actor`` into ``frame`` (in place) at 2x3 ``matrix``; return its (68, 2) points in the frame.

    Only the region the warped patch covers is touched. A patch shrunk by more than half is first
    halved with ``cv2.INTER_AREA`` (``level`` times), so the bilinear warp never skips pixels.
    """
    scale = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
    level = max(0, math.floor(math.log2(1.0 / scale))) if scale < 1 else 0
    image, alpha, shrink = actor.shrunk(level)
    # frame <- actor = matrix; frame <- shrunk copy = matrix o shrink^-1
    inverse_shrink = cv2.invertAffineTransform(shrink)
    warp = matrix[:, :2] @ inverse_shrink[:, :2]
    warp = np.hstack([warp, (matrix[:, :2] @ inverse_shrink[:, 2] + matrix[:, 2])[:, None]])
    height, width = image.shape[:2]
    corners = np.array([[-0.5, -0.5], [width - 0.5, -0.5], [-0.5, height - 0.5], [width - 0.5, height - 0.5]])
    moved = corners @ warp[:, :2].T + warp[:, 2]
    left, top = (max(0, math.floor(v)) for v in moved.min(axis=0))
    right = min(frame.shape[1], math.ceil(moved[:, 0].max()) + 1)
    bottom = min(frame.shape[0], math.ceil(moved[:, 1].max()) + 1)
    if right > left and bottom > top:
        local = warp.copy()
        local[:, 2] -= (left, top)
        size = (right - left, bottom - top)
        face = cv2.warpAffine(image, local, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        weight = cv2.warpAffine(alpha, local, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        region = frame[top:bottom, left:right]
        region[...] = cv2.blendLinear(face, region, weight, 1.0 - weight)
    return actor.points @ matrix[:, :2].T + matrix[:, 2]


# ---------------------------------------------------------------------------------------------------
# Backgrounds


def background(width: int, height: int, seed: int) -> np.ndarray:
    """(height, width, 3) uint8 face-free background: a smooth colour field, blotchy mid-scale texture,
    a few soft-edged bands and rectangles (edges for a detector to reject) and fine grain.

    Deterministic for a seed; every seed gives another palette and layout. Face-free is checked, not
    guaranteed: on 3 of 120 seeds tried YuNet (score 0.6) found a "face"; the scenarios use seeds on
    which neither YuNet nor Haar finds one (tests/test_scenarios.py checks every one).
    """
    rng = np.random.default_rng(seed)
    base = rng.uniform(40, 215, size=(3, 4, 3)).astype(np.float32)
    image = cv2.resize(base, (width, height), interpolation=cv2.INTER_CUBIC)
    blotches = rng.normal(0, 1, size=(max(2, height // 24), max(2, width // 24), 1)).astype(np.float32)
    image += 22 * cv2.resize(blotches, (width, height), interpolation=cv2.INTER_LINEAR)[..., None]
    shapes = np.zeros((height, width, 3), np.float32)
    weight = np.zeros((height, width), np.float32)
    for _ in range(rng.integers(4, 9)):
        colour = rng.uniform(30, 225, size=3).tolist()
        x1, x2 = sorted(rng.integers(0, width, size=2).tolist())
        y1, y2 = sorted(rng.integers(0, height, size=2).tolist())
        if rng.random() < 0.5:  # a horizontal or vertical band across the frame
            if rng.random() < 0.5:
                x1, x2 = 0, width
            else:
                y1, y2 = 0, height
        cv2.rectangle(shapes, (x1, y1), (x2, y2), colour, -1)
        cv2.rectangle(weight, (x1, y1), (x2, y2), 0.55, -1)
    blur = max(3, (min(width, height) // 90) | 1)
    weight = cv2.GaussianBlur(weight, (blur, blur), 0)[..., None]
    shapes = cv2.GaussianBlur(shapes, (blur, blur), 0)
    image = image * (1 - weight) + shapes * weight
    image += 3 * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)
