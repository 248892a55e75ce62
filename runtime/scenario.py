"""Test footage with exact ground truth, composed from real annotated faces.

Examples::

    python -m runtime.scenario --list
    python -m runtime.scenario cut --out cut.mp4 --truth cut.json
    python -m runtime.scenario multishot_720 --out multishot_720.mp4 --truth multishot_720.json
    python -m runtime.scenario two_faces --out two.mp4 --truth two.json --data /path/to/shared/data

An **actor** is a real face with its human annotation (``faces68/``, ``faces68_extra/`` and the
``multiface/`` WFLW faces of the shared data, 98 points mapped to iBUG-68 by
:data:`runtime.layouts.WFLW98_TO_68`): the square of the photograph around its landmarks and a soft
elliptical mask over face, forehead and some hair. Each frame pastes actors onto a synthetic,
face-free background with a similarity transform (centre, size, angle) interpolated along the shot's
key frames; the truth of that frame is the actor's 68 points moved by the very matrix the pixels
were warped with. Shots are cut together hard (a new background and new actors from one frame to
the next); a shot can instead hold frames of the real close-up video (a face with no annotation:
its truth says a face is there, not where its points are).

Pixel convention, as everywhere in the project: pixel centres at integers. ``cv2.warpAffine`` with
matrix ``M`` puts the source pixel centred at ``p`` at ``M p`` in the output, so points move by the
same ``M``; a patch first shrunk with ``cv2.resize`` (for large downscales, to avoid aliasing) maps
``x -> (x + 0.5) * factor - 0.5``, and the warp matrix is composed with the inverse of that, so the
points never see the resize. The annotation's own origin is kept (300-W ``.pts`` files are 1-based:
read as written, like every reader in the project).

Bad frames (a dropped frame ``None``, a 1x1 frame, a frame garbled as by a decoder error) replace
rendered frames at given indices; in the written video a dropped or 1x1 frame is a black frame and
the truth names what it stands for.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from runtime.errors import EdgemarkError, UsageError, cli_main, unknown_name
from runtime.layouts import WFLW98_TO_68

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
ACTOR_FOLDERS = ("faces68", "faces68_extra", "multiface")
IMAGE_SUFFIXES = (".jpg", ".png", ".ppm", ".jpeg", ".bmp")
BAD_FRAME_KINDS = ("none", "tiny", "garbled")
# The patch cut around an actor: a square of this many times its landmark box's longer side.
PATCH_SCALE = 2.4
# The mask: an ellipse over the landmark box widened to the ears and raised to take in the forehead,
# in units of the landmark box's width and height, fading to zero over FEATHER of its radius.
MASK_HALF_WIDTH = 0.62
MASK_TOP, MASK_BOTTOM = -0.45, 1.08  # from the landmark box's top, in box heights
FEATHER = 0.18
# A ghost face (see Move): Gaussian blur sigma as a fraction of the face size, and opacity.
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
        image: (S, S, 3) uint8 BGR square of the photograph around the face (edges replicated
            where the square leaves the photograph).
        alpha: (S, S) float32 mask in [0, 1]: 1 on the face, feathered to 0.
        points: (68, 2) float64 iBUG-68 landmarks in ``image``'s pixels.
        source: the photograph, relative to the data folder.
    """

    name: str
    image: np.ndarray
    alpha: np.ndarray
    points: np.ndarray
    source: str = ""
    _shrunk: dict = field(default_factory=dict, repr=False)

    @property
    def size(self) -> float:
        """sqrt(width * height) of the landmarks' box (runtime.smoothing.face_size)."""
        extent = self.points.max(axis=0) - self.points.min(axis=0)
        return float(math.sqrt(extent[0] * extent[1]))

    @property
    def centre(self) -> np.ndarray:
        """(2,) centre of the landmarks' box."""
        return (self.points.min(axis=0) + self.points.max(axis=0)) / 2

    def ghost(self) -> "Actor":
        """A faint, soft copy: blurred by ``GHOST_BLUR`` of the face size, pasted at ``GHOST_OPACITY``."""
        if "ghost" not in self._shrunk:
            image = cv2.GaussianBlur(self.image, (0, 0), GHOST_BLUR * self.size)
            self._shrunk["ghost"] = Actor(f"{self.name}(ghost)", image, self.alpha * GHOST_OPACITY, self.points, self.source)
        return self._shrunk["ghost"]

    def shrunk(self, level: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image and mask halved ``level`` times (``cv2.INTER_AREA``) and the 2x3 matrix from the
        actor's pixels to the shrunk copy's (exact per-axis factors after rounding)."""
        if level == 0:
            return self.image, self.alpha, np.array([[1.0, 0, 0], [0, 1.0, 0]])
        if level not in self._shrunk:
            height, width = self.image.shape[:2]
            size = (max(1, round(width / 2**level)), max(1, round(height / 2**level)))
            image = cv2.resize(self.image, size, interpolation=cv2.INTER_AREA)
            alpha = cv2.resize(self.alpha, size, interpolation=cv2.INTER_AREA)
            factor_x, factor_y = size[0] / width, size[1] / height
            # x -> (x + 0.5) * factor - 0.5: pixel edges scale, centres sit half a pixel inside them.
            matrix = np.array([[factor_x, 0, 0.5 * factor_x - 0.5], [0, factor_y, 0.5 * factor_y - 0.5]])
            self._shrunk[level] = (image, alpha, matrix)
        return self._shrunk[level]


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

    Deterministic for a seed; every seed gives another palette and layout.
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


# ---------------------------------------------------------------------------------------------------
# Scenario descriptions


@dataclass(frozen=True)
class Key:
    """Where an actor is at one frame of a shot (positions in between are interpolated linearly).

    Attributes:
        frame: frame index within the shot.
        x, y: centre of the landmarks' box, as fractions of the frame's width and height.
        size: face size (sqrt(w * h) of the landmarks' box) as a fraction of the frame's height.
        angle: degrees, counter-clockwise on screen.
    """

    frame: int
    x: float
    y: float
    size: float
    angle: float = 0.0


@dataclass(frozen=True)
class Move:
    """One actor's path through a shot; it is in the frame from its first key to its last.

    A ``ghost`` is a faint, soft copy of the face printed on the background (a poster, a reflection):
    part of the background, no face to find, not in the truth. False detections happen on such
    patterns, and a landmark model follows them as readily as a face.
    """

    actor: str
    keys: tuple[Key, ...]
    ghost: bool = False

    def at(self, frame: int) -> Key | None:
        """The interpolated key at ``frame``, or ``None`` when the actor is not in the shot then."""
        keys = self.keys
        if not keys or frame < keys[0].frame or frame > keys[-1].frame:
            return None
        for before, after in zip(keys, keys[1:]):
            if before.frame <= frame <= after.frame:
                if after.frame == before.frame:
                    return after
                t = (frame - before.frame) / (after.frame - before.frame)
                mix = lambda a, b: a + t * (b - a)  # noqa: E731
                return Key(frame, mix(before.x, after.x), mix(before.y, after.y), mix(before.size, after.size),
                           mix(before.angle, after.angle))  # fmt: skip
        return keys[-1]


@dataclass(frozen=True)
class Shot:
    """A run of frames between two cuts.

    Attributes:
        frames: how many frames.
        background: seed of the face-free background.
        moves: the actors and their paths.
        video: a video under the data folder (``video/face_closeup.mp4``) whose frames fill the shot
            instead, scaled to the frame's height and centred on the background.
        video_start: first frame of that video.
    """

    frames: int
    background: int = 0
    moves: tuple[Move, ...] = ()
    video: str = ""
    video_start: int = 0


@dataclass(frozen=True)
class Scenario:
    """A named piece of test footage: frame size, shots, bad frames, and what it is for."""

    name: str
    description: str
    width: int
    height: int
    shots: tuple[Shot, ...]
    fps: float = 30.0
    bad_frames: tuple[tuple[int, str], ...] = ()  # (frame index, kind in BAD_FRAME_KINDS)

    @property
    def frame_count(self) -> int:
        return sum(shot.frames for shot in self.shots)

    @property
    def cuts(self) -> list[int]:
        """Index of the first frame of every shot after the first."""
        starts = np.cumsum([0] + [shot.frames for shot in self.shots])
        return [int(start) for start in starts[1:-1]]


def _still(actor: str, frames: int, x: float, y: float, size: float, drift: tuple[float, float] = (0.0, 0.0),
           start: int = 0) -> Move:  # fmt: skip
    """An actor in view from ``start`` to the shot's end, drifting by ``drift`` (fractions) overall."""
    last = frames - 1
    return Move(actor, (Key(start, x, y, size), Key(last, x + drift[0], y + drift[1], size)))


def _scenarios() -> dict[str, Scenario]:
    width, height = 480, 360
    scenarios = [
        Scenario(
            "one_face", "one face drifting slowly and turning a little (60 frames): the baseline",
            width, height,
            (Shot(60, 1, (Move("aflw2000_image00050", (Key(0, 0.45, 0.5, 0.42, 0), Key(30, 0.5, 0.52, 0.44, 6),
                                                       Key(59, 0.55, 0.5, 0.40, -4))),)),),
        ),
        Scenario(
            "enter", "empty for 13 frames, then a face slides in from the right edge (frames 13-33) and stays",
            width, height,
            (Shot(60, 17, (Move("lfpw_image_0010", (Key(13, 1.12, 0.5, 0.4), Key(33, 0.62, 0.5, 0.4),
                                                   Key(59, 0.58, 0.48, 0.4))),)),),
        ),
        Scenario(
            "leave", "a face in view, then sliding out of the left edge (frames 20-40); empty for 10 frames",
            width, height,
            (Shot(50, 3, (Move("aflw2000_image01322", (Key(0, 0.4, 0.5, 0.4), Key(20, 0.38, 0.5, 0.4),
                                                       Key(40, -0.25, 0.5, 0.4))),)),),
        ),
        Scenario(
            "two_faces", "one face from the start; a second appears at frame 23 while the first is tracked",
            width, height,
            (Shot(70, 4, (_still("breakingbad", 70, 0.27, 0.45, 0.36, (0.03, 0.02)),
                          _still("300w_indoor_020", 70, 0.74, 0.55, 0.33, (-0.03, 0.0), start=23))),),
        ),
        Scenario(
            "cut", "three shots, cuts at 37 and 71: a face; another face in the same place; a third face "
            "elsewhere (every cut must end the track and give the new face a new id)",
            width, height,
            (Shot(37, 5, (_still("300wlp_AFW_134212_2_0", 37, 0.5, 0.5, 0.42, (0.02, 0)),)),
             Shot(34, 6, (_still("7_Cheering_Cheering_7_16_face1", 34, 0.51, 0.5, 0.42, (0.02, 0)),)),
             Shot(30, 7, (_still("aflw2000_image03614", 30, 0.25, 0.45, 0.36, (0.0, 0.02)),))),
        ),
        Scenario(
            "size_jump", "one face that doubles in size from frame 27 to 28 (a zoom cut on the same face and "
            "background) and halves again from frame 53 to 54",
            width, height,
            (Shot(75, 8, (Move("300w_indoor_029", (Key(0, 0.5, 0.5, 0.28), Key(27, 0.5, 0.5, 0.28),
                                                   Key(28, 0.5, 0.52, 0.56), Key(53, 0.5, 0.52, 0.56),
                                                   Key(54, 0.5, 0.5, 0.28), Key(74, 0.5, 0.5, 0.28))),)),),
        ),
        Scenario(
            "ghost", "one face, and a faint soft copy of another face printed on the background (a poster): "
            "no face to find, for false detections",
            width, height,
            (Shot(60, 15, (_still("300w_indoor_029", 60, 0.7, 0.5, 0.36, (-0.02, 0.01)),
                           Move("aflw2000_image00050", (Key(0, 0.24, 0.48, 0.32), Key(59, 0.26, 0.5, 0.32)),
                                ghost=True))),),
        ),
        Scenario(
            "bad_frames", "one face; frame 11 is dropped (None), frame 22 is 1x1, frame 30 is garbled "
            "(lower part smeared as by a decoder error)",
            width, height,
            (Shot(45, 9, (_still("aflw2000_image02616", 45, 0.5, 0.5, 0.4, (0.04, 0.0)),)),),
            bad_frames=((11, "none"), (22, "tiny"), (30, "garbled")),
        ),
    ]
    scenarios += [_multishot(640, 360), _multishot(1280, 720)]
    return {scenario.name: scenario for scenario in scenarios}


def _multishot(width: int, height: int) -> Scenario:
    """Eight shots, 320 frames: 1-3 faces each, eleven different people, two shots of the close-up video."""
    cheer = "7_Cheering_Cheering_7_16_face"
    shots = (
        Shot(40, 11, (_still("aflw2000_image00050", 40, 0.22, 0.5, 0.34, (0.12, 0.0)),
                      _still("lfpw_image_0010", 40, 0.74, 0.48, 0.36, (0.0, 0.03)))),
        Shot(45, 0, video="video/face_closeup.mp4", video_start=0),
        Shot(40, 12, (_still(f"{cheer}0", 40, 0.2, 0.4, 0.22, (0.02, 0.01)),
                      _still(f"{cheer}1", 40, 0.5, 0.55, 0.26, (0.0, -0.02)),
                      _still(f"{cheer}2", 40, 0.8, 0.45, 0.2, (-0.02, 0.0)))),
        Shot(40, 19, (_still("breakingbad", 40, 0.3, 0.5, 0.4, (0.02, 0.0)),
                      Move("takeo", (Key(10, 1.1, 0.5, 0.3), Key(25, 0.75, 0.5, 0.3), Key(39, 0.74, 0.52, 0.3))))),
        Shot(45, 20, (Move("einstein", (Key(0, 0.45, 0.5, 0.22), Key(44, 0.55, 0.5, 0.5))),)),
        Shot(40, 15, (_still("300w_indoor_029", 40, 0.3, 0.52, 0.38, (0.0, -0.02)),
                      _still("aflw2000_image01322", 40, 0.72, 0.48, 0.34, (-0.03, 0.02)))),
        Shot(30, 0, video="video/face_closeup.mp4", video_start=150),
        Shot(40, 21, (Move("36_Football_americanfootball_ball_36_415_face0",
                           (Key(0, 0.3, 0.5, 0.3), Key(15, 0.25, 0.5, 0.3), Key(35, -0.2, 0.5, 0.3))),
                      _still("aflw2000_image02420", 40, 0.7, 0.5, 0.36, (0.0, 0.02)))),
    )  # fmt: skip
    return Scenario(
        f"multishot_{height}",
        f"{width}x{height}, 320 frames in 8 shots: 1-3 faces each, 11 people, two shots of the close-up video "
        "(faces entering, leaving, zooming), for speed and faces-found measurements",
        width, height, shots,
    )  # fmt: skip


SCENARIOS: dict[str, Scenario] = _scenarios()


def get_scenario(name: str) -> Scenario:
    """A registered scenario by name (:data:`SCENARIOS`)."""
    if name not in SCENARIOS:
        raise unknown_name("scenario", name, list(SCENARIOS))
    return SCENARIOS[name]


# ---------------------------------------------------------------------------------------------------
# Rendering


@dataclass
class FaceTruth:
    """One face in one frame.

    Attributes:
        actor: the actor's name (``face_closeup`` for the video's face).
        points: (68, 2) iBUG-68 points in frame pixels; ``None`` for the unannotated video face.
        box: (4,) x1, y1, x2, y2 of the points; for the video face the region the video fills.
        inside: fraction of the points inside the frame (a face entering or leaving is partly out).
    """

    actor: str
    points: np.ndarray | None
    box: np.ndarray
    inside: float = 1.0


@dataclass
class FrameTruth:
    """What one frame holds: its faces, the ghost faces printed on its background (no faces to find),
    and what stands in for it when it is a bad frame (a BAD_FRAME_KINDS entry)."""

    index: int
    shot: int
    faces: list[FaceTruth]
    bad: str = ""
    ghosts: list[FaceTruth] = field(default_factory=list)


@dataclass
class Footage:
    """Rendered frames and their truth. ``frames[i]`` is ``None`` for a dropped frame."""

    scenario: Scenario
    frames: list[np.ndarray | None]
    truth: list[FrameTruth]
    actors: dict[str, str]  # name -> photograph, relative to the data folder

    def to_json(self) -> dict:
        """The truth as plain JSON types (points rounded to 1/1000 pixel)."""
        scenario = self.scenario
        starts = [0] + scenario.cuts
        return {
            "scenario": scenario.name,
            "description": scenario.description,
            "width": scenario.width,
            "height": scenario.height,
            "fps": scenario.fps,
            "frame_count": scenario.frame_count,
            "convention": "pixel centres at integers; points in iBUG-68 order; each annotation's own origin",
            "actors": self.actors,
            "cuts": scenario.cuts,
            "shots": [
                {"index": index, "start": start, "stop": start + shot.frames, "background": shot.background,
                 "video": shot.video or None,
                 "actors": [move.actor for move in shot.moves] if not shot.video else ["face_closeup"]}
                for index, (start, shot) in enumerate(zip(starts, scenario.shots))
            ],  # fmt: skip
            "frames": [
                {"index": frame.index, "shot": frame.shot, "bad": frame.bad or None,
                 "faces": [{"actor": face.actor, "inside": round(face.inside, 3),
                            "box": np.round(face.box, 3).tolist(),
                            "points": None if face.points is None else np.round(face.points, 3).tolist()}
                           for face in frame.faces],
                 **({"ghosts": [{"actor": g.actor, "box": np.round(g.box, 3).tolist()} for g in frame.ghosts]}
                    if frame.ghosts else {})}
                for frame in self.truth
            ],  # fmt: skip
        }


def _video_frames(path: Path, start: int, count: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ScenarioError(f"{path}: OpenCV cannot open this video; pass --data DIR with video/face_closeup.mp4")
    capture.set(cv2.CAP_PROP_POS_FRAMES, start)
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    if len(frames) < count:
        raise ScenarioError(f"{path}: {len(frames)} frames from frame {start}; the scenario needs {count}")
    return frames


def _garble(frame: np.ndarray, seed: int) -> np.ndarray:
    """The frame with its lower 45 % broken into 16x16 blocks copied from wrong places and smeared
    grey, as a decoder shows a corrupt stream."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    height, width = frame.shape[:2]
    block = 16
    for top in range(int(height * 0.55) // block * block, height - block + 1, block):
        for left in range(0, width - block + 1, block):
            if rng.random() < 0.6:
                y = int(rng.integers(0, height - block))
                x = int(rng.integers(0, width - block))
                out[top : top + block, left : left + block] = frame[y : y + block, x : x + block]
            else:
                out[top : top + block, left : left + block] = int(rng.integers(100, 140))
    return out


def render(scenario: Scenario | str, data_dir: str | Path | None = None) -> Footage:
    """Compose a scenario's frames and their exact truth.

    Args:
        scenario: a :class:`Scenario` or a registered name.
        data_dir: the shared data folder (default :func:`default_data_dir`).

    Raises:
        ScenarioError: missing or unreadable data.
        UsageError: an unknown scenario name.
    """
    if isinstance(scenario, str):
        scenario = get_scenario(scenario)
    data = Path(data_dir) if data_dir else default_data_dir()
    width, height = scenario.width, scenario.height
    actors: dict[str, Actor] = {}
    frames: list[np.ndarray | None] = []
    truth: list[FrameTruth] = []
    for shot_index, shot in enumerate(scenario.shots):
        backdrop = background(width, height, shot.background)
        video = _video_frames(data / shot.video, shot.video_start, shot.frames) if shot.video else None
        for local in range(shot.frames):
            frame = backdrop.copy()
            faces, ghosts = [], []
            if video is not None:
                source = video[local]
                scale = height / source.shape[0]
                size = (max(1, round(source.shape[1] * scale)), height)
                fitted = cv2.resize(source, size, interpolation=cv2.INTER_AREA)
                left = (width - size[0]) // 2
                if left >= 0:
                    frame[:, left : left + size[0]] = fitted
                else:  # wider than the frame: its middle
                    frame[:] = fitted[:, -left : -left + width]
                region = np.array([left - 0.5, -0.5, left + size[0] - 0.5, height - 0.5])
                faces.append(FaceTruth("face_closeup", None, region))
            for move in shot.moves:
                key = move.at(local)
                if key is None:
                    continue
                if move.actor not in actors:
                    actors[move.actor] = load_actor(move.actor, data)
                actor = actors[move.actor].ghost() if move.ghost else actors[move.actor]
                matrix = similarity(actor, key.x * width, key.y * height, key.size * height, key.angle)
                points = paste(frame, actor, matrix)
                if move.ghost:
                    ghosts.append(FaceTruth(move.actor, points, np.concatenate([points.min(axis=0), points.max(axis=0)])))
                    continue
                inside = np.mean((points[:, 0] > -0.5) & (points[:, 0] < width - 0.5)
                                 & (points[:, 1] > -0.5) & (points[:, 1] < height - 0.5))  # fmt: skip
                if inside > 0:
                    box = np.concatenate([points.min(axis=0), points.max(axis=0)])
                    faces.append(FaceTruth(move.actor, points, box, float(inside)))
            truth.append(FrameTruth(len(frames), shot_index, faces, ghosts=ghosts))
            frames.append(frame)
    for index, kind in scenario.bad_frames:
        if kind not in BAD_FRAME_KINDS:
            raise unknown_name("bad frame kind", kind, BAD_FRAME_KINDS)
        if not 0 <= index < len(frames):
            raise ScenarioError(f"scenario {scenario.name}: bad frame {index} is outside its {len(frames)} frames")
        truth[index].bad = kind
        if kind == "none":
            frames[index], truth[index].faces = None, []
        elif kind == "tiny":
            frames[index], truth[index].faces = np.full((1, 1, 3), 127, np.uint8), []
        else:
            frames[index] = _garble(frames[index], index)
    return Footage(scenario, frames, truth, {name: actor.source for name, actor in actors.items()})


def write_footage(footage: Footage, video_path: str | Path, truth_path: str | Path | None = None) -> None:
    """Write the frames as an MP4 (``mp4v``) and the truth as JSON, each under a temporary name first.

    A dropped or 1x1 frame is written as a black frame (the truth names it).
    """
    from runtime.card import atomic_write_bytes

    scenario = footage.scenario
    video_path = Path(video_path)
    video_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{video_path.stem}.", suffix=f".partial{video_path.suffix}",
                                         dir=video_path.parent)  # fmt: skip
    os.close(handle)
    try:
        writer = cv2.VideoWriter(temporary, cv2.VideoWriter_fourcc(*"mp4v"), scenario.fps, (scenario.width, scenario.height))
        if not writer.isOpened():
            raise ScenarioError(f"{video_path}: OpenCV cannot write this video (use a .mp4 or .avi name)")
        black = np.zeros((scenario.height, scenario.width, 3), np.uint8)
        for frame in footage.frames:
            usable = frame is not None and frame.shape[:2] == (scenario.height, scenario.width)
            writer.write(frame if usable else black)
        writer.release()
        if truth_path:
            atomic_write_bytes(truth_path, json.dumps(footage.to_json()).encode())
        os.replace(temporary, video_path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------------
# Command line


@dataclass(frozen=True)
class ScenarioConfig:
    name: str = ""
    out: str = ""
    truth: str = ""
    data: str = ""
    list: bool = False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.scenario",
        description="Write a named test scenario (real annotated faces composited on face-free backgrounds, "
        "moved along known paths, cut together) as a video and its exact per-frame ground truth (JSON).",
        epilog="Examples:\n"
        "  python -m runtime.scenario --list\n"
        "  python -m runtime.scenario cut --out cut.mp4 --truth cut.json\n"
        "  python -m runtime.scenario multishot_720 --out multishot_720.mp4 --truth multishot_720.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", nargs="?", default="", help="scenario name (see --list)")
    parser.add_argument("--out", default="", help="video to write (.mp4)")
    parser.add_argument("--truth", default="", help="ground truth to write (.json): actors, cuts, per-frame 68 points and boxes")
    parser.add_argument("--data", default="", help=f"shared data folder (default: {default_data_dir()})")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return parser


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    config = ScenarioConfig(**vars(build_parser().parse_args(argv)))
    if config.list:
        for scenario in SCENARIOS.values():
            print(f"{scenario.name:15s} {scenario.width}x{scenario.height} {scenario.frame_count:4d} frames  "
                  f"{scenario.description}")  # fmt: skip
        return 0
    if not config.name:
        raise UsageError(f"name a scenario (one of: {', '.join(SCENARIOS)}) or pass --list")
    if not config.out and not config.truth:
        raise UsageError("nothing to write: pass --out VIDEO.mp4 and/or --truth TRUTH.json")
    scenario = get_scenario(config.name)
    footage = render(scenario, config.data or None)
    if config.out:
        write_footage(footage, config.out, config.truth or None)
    else:
        from runtime.card import atomic_write_bytes

        atomic_write_bytes(config.truth, json.dumps(footage.to_json()).encode())
    written = [path for path in (config.out, config.truth) if path]
    print(f"{scenario.name}: {scenario.frame_count} frames {scenario.width}x{scenario.height}, "
          f"{len(scenario.shots)} shot(s); wrote {', '.join(written)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
