"""Named test footage with exact ground truth, composed from real annotated faces.

Examples::

    python -m runtime.scenario --list
    python -m runtime.scenario cut --out cut.mp4 --truth cut.json
    python -m runtime.scenario multishot_720 --out multishot_720.mp4 --truth multishot_720.json
    python -m runtime.scenario two_faces --out two.mp4 --truth two.json --data /path/to/shared/data
    python -m runtime.scenario multishot_360 --track pfld.onnx --json multishot_360_scores.json   # tracker vs truth

Each frame pastes actors (runtime.composite: real faces with their annotations) onto a synthetic,
face-free background with a similarity transform (centre, size, angle) interpolated along the shot's
key frames; the truth of that frame is each actor's 68 points moved by the very matrix its pixels
were warped with. Shots are cut together hard (a new background and new actors from one frame to
the next); a shot can instead hold frames of the real close-up video (a face with no annotation:
its truth says a face is there and the region it fills, not where its points are).

Bad frames (a dropped frame ``None``, a 1x1 frame, a frame garbled as by a decoder error) replace
rendered frames at given indices; in the written video a dropped or 1x1 frame is a black frame and
the truth names what it stands for.

Size: one module on purpose (~630 lines): each scenario's composition and the truth it records are
written together, so a change to how a face is placed cannot drift from the truth it is scored against.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from runtime.composite import Actor, ScenarioError, background, default_data_dir, load_actor, paste, similarity
from runtime.errors import UsageError, cli_main, unknown_name

logger = logging.getLogger(__name__)

BAD_FRAME_KINDS = ("none", "tiny", "garbled")


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
        if not keys or not keys[0].frame <= frame <= keys[-1].frame:
            return None
        # The last key at or before the frame and the next one (a jump: two keys on adjacent frames).
        index = max(i for i, key in enumerate(keys) if key.frame <= frame)
        before, after = keys[index], keys[min(index + 1, len(keys) - 1)]
        if after.frame == before.frame:
            return before
        t = (frame - before.frame) / (after.frame - before.frame)
        start, stop = (before.x, before.y, before.size, before.angle), (after.x, after.y, after.size, after.angle)
        return Key(frame, *(a + t * (b - a) for a, b in zip(start, stop)))


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

    def __post_init__(self):
        for index, kind in self.bad_frames:
            if kind not in BAD_FRAME_KINDS:
                raise unknown_name("bad frame kind", kind, BAD_FRAME_KINDS)
            if not 0 <= index < self.frame_count:
                raise UsageError(f"scenario {self.name}: bad frame {index} is outside its {self.frame_count} frames")

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
    """Eight shots, 320 frames: 1-3 faces each, 12 annotated people, two shots of the close-up video."""
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
        f"{width}x{height}, 320 frames in 8 shots: 1-3 faces each, 12 annotated people, two shots of the close-up "
        "video; faces entering, leaving, zooming; for speed and faces-found measurements",
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
        return truth_json(self.scenario, self.truth, self.actors)


def truth_json(scenario: Scenario, truth: list[FrameTruth], actors: dict[str, str]) -> dict:
    """A scenario's truth as plain JSON types (points rounded to 1/1000 pixel).

    Args:
        scenario: what was rendered.
        truth: one :class:`FrameTruth` per frame.
        actors: actor name -> photograph, relative to the data folder.
    """
    starts = [0] + scenario.cuts
    return {
        "scenario": scenario.name,
        "description": scenario.description,
        "width": scenario.width,
        "height": scenario.height,
        "fps": scenario.fps,
        "frame_count": scenario.frame_count,
        "convention": "pixel centres at integers; points in iBUG-68 order; each annotation's own origin",
        "actors": actors,
        "cuts": scenario.cuts,
        "shots": [
            {"index": index, "start": start, "stop": start + shot.frames, "background": shot.background,
             "video": shot.video or None,
             "actors": ["face_closeup"] if shot.video else [move.actor for move in shot.moves]}
            for index, (start, shot) in enumerate(zip(starts, scenario.shots))
        ],
        "frames": [_frame_json(frame) for frame in truth],
    }


def _box(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points.min(axis=0), points.max(axis=0)])


def _frame_json(frame: FrameTruth) -> dict:
    faces = [
        {"actor": face.actor, "inside": round(face.inside, 3), "box": np.round(face.box, 3).tolist(),
         "points": None if face.points is None else np.round(face.points, 3).tolist()}
        for face in frame.faces
    ]
    record = {"index": frame.index, "shot": frame.shot, "bad": frame.bad or None, "faces": faces}
    if frame.ghosts:
        record["ghosts"] = [{"actor": ghost.actor, "box": np.round(ghost.box, 3).tolist()} for ghost in frame.ghosts]
    return record


def _video_frames(path: Path, start: int, count: int) -> list[np.ndarray]:
    from runtime.frames import FrameError, read_video

    try:
        frames, _ = read_video(path, count, start)
    except FrameError as error:
        raise ScenarioError(f"{error}; pass --data DIR with video/face_closeup.mp4") from None
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


def compose(
    scenario: Scenario, data_dir: str | Path | None = None, actors: dict[str, Actor] | None = None
) -> Iterator[tuple[np.ndarray | None, FrameTruth]]:
    """A scenario's frames and their exact truth, one at a time (a dropped frame is ``None``).

    Args:
        scenario: what to compose.
        data_dir: the shared data folder (default :func:`default_data_dir`).
        actors: filled with the actors used, by name (they are loaded on first use).

    Raises:
        ScenarioError: missing or unreadable data.
    """
    data = Path(data_dir) if data_dir else default_data_dir()
    width, height = scenario.width, scenario.height
    actors = {} if actors is None else actors
    bad = dict(scenario.bad_frames)
    index = 0
    for shot_index, shot in enumerate(scenario.shots):
        backdrop = background(width, height, shot.background)
        video = _video_frames(data / shot.video, shot.video_start, shot.frames) if shot.video else None
        for local in range(shot.frames):
            frame = backdrop.copy()
            truth = FrameTruth(index, shot_index, [])
            if video is not None:
                truth.faces.append(_fit_video(frame, video[local]))
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
                    truth.ghosts.append(FaceTruth(move.actor, points, _box(points)))
                    continue
                inside = np.mean((points[:, 0] > -0.5) & (points[:, 0] < width - 0.5)
                                 & (points[:, 1] > -0.5) & (points[:, 1] < height - 0.5))  # fmt: skip
                if inside > 0:
                    truth.faces.append(FaceTruth(move.actor, points, _box(points), float(inside)))
            if index in bad:
                frame, truth.bad = _bad_frame(frame, bad[index], index), bad[index]
                if frame is None or frame.shape[:2] != (height, width):
                    truth.faces = []
            yield frame, truth
            index += 1


def _fit_video(frame: np.ndarray, source: np.ndarray) -> FaceTruth:
    """Put a video frame, scaled to the frame's height, in the middle of ``frame``; the face's truth."""
    height, width = frame.shape[:2]
    size = (max(1, round(source.shape[1] * height / source.shape[0])), height)
    fitted = cv2.resize(source, size, interpolation=cv2.INTER_AREA)
    left = (width - size[0]) // 2
    if left >= 0:
        frame[:, left : left + size[0]] = fitted
    else:  # wider than the frame: its middle
        frame[:] = fitted[:, -left : -left + width]
    return FaceTruth("face_closeup", None, np.array([left - 0.5, -0.5, left + size[0] - 0.5, height - 0.5]))


def _bad_frame(frame: np.ndarray, kind: str, index: int) -> np.ndarray | None:
    if kind == "none":
        return None
    if kind == "tiny":
        return np.full((1, 1, 3), 127, np.uint8)
    return _garble(frame, index)


def render(scenario: Scenario | str, data_dir: str | Path | None = None) -> Footage:
    """Every frame of a scenario and its exact truth, in memory (see :func:`compose`).

    Raises:
        ScenarioError: missing or unreadable data.
        UsageError: an unknown scenario name.
    """
    if isinstance(scenario, str):
        scenario = get_scenario(scenario)
    actors: dict[str, Actor] = {}
    frames, truth = [], []
    for frame, frame_truth in compose(scenario, data_dir, actors):
        frames.append(frame)
        truth.append(frame_truth)
    return Footage(scenario, frames, truth, _sources(actors))


def write_scenario(
    scenario: Scenario | str, video_path: str | Path = "", truth_path: str | Path = "", data_dir: str | Path | None = None
) -> None:
    """Write a scenario as an MP4 (``mp4v``) and/or its truth as JSON, frame by frame (flat memory).

    Each file is written under a temporary name beside it and renamed when complete, the video last. A
    dropped or 1x1 frame is written as a black frame (the truth names it).

    Raises:
        ScenarioError: missing data, or a video OpenCV cannot write.
        UsageError: an unknown scenario name, or nothing to write.
    """
    from runtime.card import atomic_write_bytes, move_into_place

    if isinstance(scenario, str):
        scenario = get_scenario(scenario)
    if not video_path and not truth_path:
        raise UsageError("nothing to write: pass a video path and/or a truth path")
    actors: dict[str, Actor] = {}
    frames = compose(scenario, data_dir, actors)
    if not video_path:
        truth = [frame_truth for _, frame_truth in frames]
        atomic_write_bytes(truth_path, json.dumps(truth_json(scenario, truth, _sources(actors))).encode())
        return
    video_path = Path(video_path)
    video_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{video_path.stem}.", suffix=f".partial{video_path.suffix}",
                                         dir=video_path.parent)  # fmt: skip
    os.close(handle)
    try:
        size = (scenario.width, scenario.height)
        writer = cv2.VideoWriter(temporary, cv2.VideoWriter_fourcc(*"mp4v"), scenario.fps, size)
        if not writer.isOpened():
            raise ScenarioError(f"{video_path}: OpenCV cannot write this video (use a .mp4 or .avi name)")
        black = np.zeros((scenario.height, scenario.width, 3), np.uint8)
        truth = []
        for frame, frame_truth in frames:
            usable = frame is not None and frame.shape[:2] == (scenario.height, scenario.width)
            writer.write(frame if usable else black)
            truth.append(frame_truth)
        writer.release()
        if truth_path:
            atomic_write_bytes(truth_path, json.dumps(truth_json(scenario, truth, _sources(actors))).encode())
        move_into_place(temporary, video_path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _sources(actors: dict[str, Actor]) -> dict[str, str]:
    return {name: actor.source for name, actor in actors.items()}


# ---------------------------------------------------------------------------------------------------
# Command line


@dataclass(frozen=True)
class ScenarioConfig:
    name: str = ""
    out: str = ""
    truth: str = ""
    data: str = ""
    list: bool = False
    track: str = ""
    max_faces: int = 4
    json_path: str = ""


def score_tracker(footage: Footage, tracker) -> dict:
    """The tracker over rendered footage, judged by its truth: how many true face-frames it follows, how
    many of its track-frames sit on no face, and whether an id ever moves to another person.

    A track-frame is on a face when its landmarks' box overlaps a true face's box by IoU > 0.3.
    """
    from runtime.tracker import box_iou

    tracker.reset()
    followed = on_background = true_faces = 0
    people: dict[int, set[str]] = {}
    for frame, truth in zip(footage.frames, footage.truth):
        faces = tracker.process(frame).faces
        true_faces += len(truth.faces)
        boxes = np.stack([face.box for face in truth.faces]) if truth.faces else np.zeros((0, 4))
        for face in faces:
            overlap = box_iou(face.box[None], boxes)[0] if len(boxes) else np.zeros(0)
            if len(overlap) and overlap.max() > 0.3:
                followed += 1
                people.setdefault(face.track_id, set()).add(truth.faces[int(overlap.argmax())].actor)
            else:
                on_background += 1
    return {
        "frames": len(footage.frames), "true_face_frames": true_faces, "followed": followed,
        "on_background": on_background, "ids": len(people),
        "ids_on_several_people": sum(1 for actors in people.values() if len(actors) > 1),
    }  # fmt: skip


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
    parser.add_argument(
        "--truth", default="", help="ground truth to write (.json): actors, cuts, per-frame 68 points and boxes"
    )
    parser.add_argument("--data", default="", help=f"shared data folder (default: {default_data_dir()})")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--track", default="", metavar="MODEL",
                        help="run the tracker (default detector and settings) with this artifact over the footage "
                             "and score it against the truth")  # fmt: skip
    parser.add_argument("--max-faces", type=int, default=4, help="the tracker's --max-faces with --track (default 4)")
    parser.add_argument("--json", dest="json_path", default="", help="with --track: write the scores here")
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
    if not config.out and not config.truth and not config.track:
        raise UsageError(
            "nothing to write: pass --out VIDEO.mp4 and/or --truth TRUTH.json (or --track MODEL to score the tracker)"
        )
    if config.max_faces < 1:
        raise UsageError(f"--max-faces must be >= 1, got {config.max_faces}")
    scenario = get_scenario(config.name)
    if config.track:
        _track_and_score(scenario, config)
    if not config.out and not config.truth:
        return 0
    write_scenario(scenario, config.out, config.truth, config.data or None)
    written = [path for path in (config.out, config.truth) if path]
    print(f"{scenario.name}: {scenario.frame_count} frames {scenario.width}x{scenario.height}, "
          f"{len(scenario.shots)} shot(s); wrote {', '.join(written)}")  # fmt: skip
    return 0


def _track_and_score(scenario: Scenario, config: ScenarioConfig) -> None:
    from runtime.backends.registry import load_backend
    from runtime.card import atomic_write_bytes
    from runtime.detect import make_detector
    from runtime.landmarker import Landmarker
    from runtime.tracker import Tracker, TrackerConfig

    footage = render(scenario, config.data or None)
    with load_backend(config.track) as backend:
        tracker = Tracker(Landmarker(backend), make_detector(), TrackerConfig(max_faces=config.max_faces))
        scores = {"scenario": scenario.name, "model": config.track, "max_faces": config.max_faces,
                  **score_tracker(footage, tracker)}  # fmt: skip
    print(f"{scenario.name}: {scores['followed']} of {scores['true_face_frames']} true face-frames followed, "
          f"{scores['on_background']} track-frames on no face, {scores['ids']} ids, "
          f"{scores['ids_on_several_people']} on more than one person")  # fmt: skip
    if config.json_path:
        atomic_write_bytes(config.json_path, (json.dumps(scores, indent=2) + "\n").encode())


if __name__ == "__main__":
    sys.exit(main())
