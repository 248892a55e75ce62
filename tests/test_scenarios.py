"""Scenario tests (issue 8): the real tracker, with YuNet detection and PFLD-GhostOne landmarks, on footage
that runtime.scenario composes from real annotated faces, with exact truth for every frame.

Each scenario asserts ids (one per face within a shot, a new id for a new face, never two tracks on one
face), the frames covered (when a track must start and end, derived from ``REDETECT_EVERY``) and
positions (inter-ocular NME of the smoothed points against the truth).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from runtime.backends import load_backend
from runtime.composite import Actor, background, load_actor, paste, similarity
from runtime.detect import FaceDetector, make_detector
from runtime.frames import read_video
from runtime.landmarker import Landmarker
from runtime.layouts import IBUG68, to_68
from runtime.metrics import nme_per_image
from runtime.scenario import SCENARIOS, Footage, render
from runtime.scenario import main as scenario_main
from runtime.tracker import FrameResult, Tracker, TrackerConfig

REDETECT_EVERY = 10
CONFIG = TrackerConfig(redetect_every=REDETECT_EVERY)
# A tracked face is "settled" this many frames after its track started, after it came fully into view
# and after a cut, a jump or a bad frame; positions are judged on settled faces only.
SETTLE = 3
# Positions: a settled face's NME may exceed what the model gives the same face from a perfect crop
# (its landmark box from the truth, in the first frame it is fully in view) by at most this many
# points. Measured (test_positions_of_settled_faces -s): before smoothing the worst excess over all
# scenarios is +0.45 points; after One Euro smoothing +1.9, except +6.1 on "leave", where the face
# sets off at 15 px (a tenth of its size) per frame and the smoothed points lag.
RAW_NME_MARGIN = 2.0
NME_MARGIN = 8.0
SHORT = ("one_face", "enter", "leave", "two_faces", "cut", "size_jump", "ghost", "bad_frames")


# ---------------------------------------------------------------------------------------------------
# Running the tracker and reading what it did


@dataclass
class Seen:
    """One tracked face in one frame, judged against the truth."""

    track_id: int
    actor: str | None  # the actor whose truth box holds the face's centre; None: background
    nme: float  # percent, inter-ocular, smoothed points against that actor's truth (NaN: no points)
    raw_nme: float = math.nan  # the same for the points before smoothing


@dataclass
class Run:
    footage: Footage
    results: list[FrameResult]
    seen: list[list[Seen]]
    baselines: dict[str, float] = field(default_factory=dict)

    def frames_of(self, track_id: int) -> list[int]:
        return [index for index, faces in enumerate(self.seen) if any(s.track_id == track_id for s in faces)]

    def on(self, actor: str | None, frames=None) -> list[tuple[int, int]]:
        """(frame, track id) of every track on ``actor`` (None: on background)."""
        frames = range(len(self.seen)) if frames is None else frames
        return [(index, s.track_id) for index in frames for s in self.seen[index] if s.actor == actor]

    def ids_on(self, actor: str, frames=None) -> set[int]:
        return {track_id for _, track_id in self.on(actor, frames)}

    def tracked(self, actor: str) -> list[int]:
        return sorted({index for index, _ in self.on(actor)})

    def visible(self, actor: str, min_inside: float = 1.0) -> list[int]:
        """Frames where at least ``min_inside`` of the actor's points are in the frame."""
        return [t.index for t in self.footage.truth for f in t.faces if f.actor == actor and f.inside >= min_inside]


def judge(faces, truth) -> list[Seen]:
    """The tracker's faces in one frame against that frame's truth: each is on the actor whose truth box
    holds its centre (the nearest, where boxes overlap), or on background."""
    seen = []
    for face in faces:
        points = to_68(face.points)
        centre = points.mean(axis=0)
        holding = [
            f for f in truth.faces
            if f.box[0] <= centre[0] <= f.box[2] and f.box[1] <= centre[1] <= f.box[3]
        ]  # fmt: skip
        if not holding:
            seen.append(Seen(face.track_id, None, math.nan))
            continue
        nearest = min(holding, key=lambda f: np.linalg.norm((f.box[:2] + f.box[2:]) / 2 - centre))
        nme = raw_nme = math.nan
        if nearest.points is not None:
            both = np.stack([points, to_68(face.raw_points)])
            nme, raw_nme = nme_per_image(both, np.stack([nearest.points] * 2), IBUG68) * 100
        seen.append(Seen(face.track_id, nearest.actor, float(nme), float(raw_nme)))
    return seen


def track(footage: Footage, tracker: Tracker, before_frame=None) -> Run:
    results = []
    for index, frame in enumerate(footage.frames):
        if before_frame is not None:
            before_frame(index)
        results.append(tracker.process(frame, index / footage.scenario.fps))
    return Run(footage, results, [judge(r.faces, t) for r, t in zip(results, footage.truth)])


def next_detection(frame: int) -> int:
    """The first frame at or after ``frame`` on which a tracker that already follows a face re-detects."""
    return -(-frame // REDETECT_EVERY) * REDETECT_EVERY


@pytest.fixture(scope="module")
def data(faces68_dir):
    return faces68_dir.parent


@pytest.fixture(scope="module")
def landmarker(pfld_artifact):
    with load_backend(pfld_artifact, "onnxruntime", threads=1) as backend:
        yield Landmarker(backend)


@pytest.fixture(scope="module")
def yunet(yunet_onnx) -> FaceDetector:
    return make_detector(f"yunet:{yunet_onnx}")


@pytest.fixture(scope="module")
def footage(data):
    cache = {}

    def get(name: str) -> Footage:
        if name not in cache:
            cache[name] = render(name, data)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def runs(footage, landmarker, yunet):
    """The tracker's run over a named scenario (rendered and run once per module)."""
    cache = {}

    def get(name: str) -> Run:
        if name not in cache:
            cache[name] = track(footage(name), Tracker(landmarker, yunet, CONFIG))
        return cache[name]

    return get


def baseline(run: Run, landmarker: Landmarker, actor: str) -> float:
    """NME (%) the model gives ``actor`` from a perfect crop, in the first frame it is fully in view."""
    if actor not in run.baselines:
        index = run.visible(actor)[0]
        truth = next(f for f in run.footage.truth[index].faces if f.actor == actor)
        points = landmarker.predict(run.footage.frames[index], truth.box, "landmarks").points
        run.baselines[actor] = float(nme_per_image(to_68(points), truth.points[None], IBUG68)[0] * 100)
    return run.baselines[actor]


def settled_frames(run: Run) -> list[tuple[int, Seen]]:
    """(frame, face) of every tracked face on an annotated actor that has settled (see SETTLE)."""
    scenario = run.footage.scenario
    events = set(scenario.cuts) | {index for index, _ in scenario.bad_frames}
    for shot_start, shot in zip([0] + scenario.cuts, scenario.shots):
        for move in shot.moves:  # jumps: a change of size of more than 20 % from one frame to the next
            for before, after in zip(move.keys, move.keys[1:]):
                if after.frame == before.frame + 1 and abs(after.size / before.size - 1) > 0.2:
                    events.add(shot_start + after.frame)
    visible = {actor: set(run.visible(actor)) for actor in {f.actor for t in run.footage.truth for f in t.faces}}
    settled = []
    for index, faces in enumerate(run.seen):
        if any(index - SETTLE < event <= index for event in events):
            continue
        for face in faces:
            if face.actor is None or math.isnan(face.nme):
                continue
            window = range(index - SETTLE, index + 1)
            started = all(w >= 0 and any(s.track_id == face.track_id for s in run.seen[w]) for w in window)
            in_view = all(w in visible[face.actor] for w in window)
            if started and in_view:
                settled.append((index, face))
    return settled


# ---------------------------------------------------------------------------------------------------
# Every scenario: positions, no duplicates, no id on two people


@pytest.mark.parametrize("name", SHORT)
def test_positions_of_settled_faces(name, runs, landmarker):
    run = runs(name)
    settled = settled_frames(run)
    in_view = sum(1 for t in run.footage.truth for f in t.faces if f.points is not None and f.inside == 1)
    assert len(settled) > 0.5 * in_view  # most faces in view are judged
    excess = [(face.nme - baseline(run, landmarker, face.actor), index, face) for index, face in settled]
    raw = [(face.raw_nme - baseline(run, landmarker, face.actor), index, face) for index, face in settled]
    worst, worst_raw = max(excess, key=lambda item: item[0]), max(raw, key=lambda item: item[0])
    print(f"\n{name}: {len(settled)} settled faces, NME over the perfect-crop baseline: smoothed median "
          f"{np.median([e[0] for e in excess]):+.2f}, worst {worst[0]:+.2f} (frame {worst[1]}); raw median "
          f"{np.median([e[0] for e in raw]):+.2f}, worst {worst_raw[0]:+.2f} points (frame {worst_raw[1]})")
    assert worst_raw[0] <= RAW_NME_MARGIN, worst_raw
    assert worst[0] <= NME_MARGIN, worst


@pytest.mark.parametrize("name", SHORT)
def test_never_two_tracks_on_one_face(name, runs):
    run = runs(name)
    for index, faces in enumerate(run.seen):
        actors = [s.actor for s in faces if s.actor is not None]
        assert len(actors) == len(set(actors)), (index, faces)


@pytest.mark.parametrize("name", SHORT)
def test_an_id_stays_on_one_person(name, runs):
    """An id is never on two different actors, and each actor keeps one id through a shot (after a
    zoom a new id is fair; a 1x1 frame has its own test, test_a_tiny_frame_keeps_the_track)."""
    run = runs(name)
    actors_of: dict[int, set] = {}
    for faces in run.seen:
        for face in faces:
            if face.actor is not None:
                actors_of.setdefault(face.track_id, set()).add(face.actor)
    assert all(len(actors) == 1 for actors in actors_of.values()), actors_of
    if name in ("size_jump", "bad_frames"):
        return
    starts = [0] + run.footage.scenario.cuts + [len(run.seen)]
    for start, stop in zip(starts, starts[1:]):
        for actor in {f.actor for t in run.footage.truth[start:stop] for f in t.faces}:
            ids = run.ids_on(actor, range(start, stop))
            assert len(ids) <= 1, (actor, start, ids)


# ---------------------------------------------------------------------------------------------------
# Entering, leaving, two faces


def test_a_face_entering_is_picked_up_while_it_comes_in(runs):
    run = runs("enter")
    appears = run.visible("lfpw_image_0010", min_inside=1e-9)[0]
    in_view = run.visible("lfpw_image_0010")[0]
    tracked = run.tracked("lfpw_image_0010")
    assert all(not faces for faces in run.seen[:appears]), "a track before the face came in"
    # No track yet, so the detector runs on every frame: the face is found by the time it is all in view.
    assert appears < tracked[0] <= in_view, (appears, tracked[0], in_view)
    assert tracked == list(range(tracked[0], len(run.seen))), "the track broke off"
    assert len(run.ids_on("lfpw_image_0010")) == 1 and not run.on(None)


def test_a_face_leaving_ends_its_track(runs):
    run = runs("leave")
    actor = "aflw2000_image01322"
    half_out = run.visible(actor, min_inside=0.5)[-1] + 1  # the landmarks' centre leaves the frame about here
    tracked = run.tracked(actor)
    assert tracked == list(range(tracked[-1] + 1)) and len(run.ids_on(actor)) == 1
    # Measured: half out at 33, last tracked 34 (the size check drops the collapsing landmarks); without
    # the size check 36, without any plausibility check a track stays on the background to the end.
    assert half_out - 3 <= tracked[-1] <= half_out + 2, (tracked[-1], half_out)
    # And nothing lingers on the background it leaves behind.
    assert all(not faces for faces in run.seen[half_out + 3 :]), run.seen[half_out + 3 :]


def test_a_second_face_is_picked_up_at_the_next_detection(runs):
    run = runs("two_faces")
    first, second = "breakingbad", "300w_indoor_020"
    appears = run.visible(second)[0]
    tracked = run.tracked(second)
    # The first face's track exists, so the detector runs only every REDETECT_EVERY frames.
    assert appears <= tracked[0] <= next_detection(appears), (appears, tracked[0])
    assert tracked == list(range(tracked[0], len(run.seen)))
    assert run.tracked(first) == list(range(len(run.seen)))
    ids = run.ids_on(first), run.ids_on(second)
    assert len(ids[0]) == len(ids[1]) == 1 and ids[0] != ids[1]


# ---------------------------------------------------------------------------------------------------
# Cuts


def test_a_cut_ends_every_track_and_new_faces_get_new_ids(runs):
    run = runs("cut")
    cuts = run.footage.scenario.cuts
    starts = [0] + cuts + [len(run.seen)]
    for cut, stop in zip(cuts, starts[2:]):
        before = {s.track_id for faces in run.seen[:cut] for s in faces}
        after = {s.track_id for faces in run.seen[cut:stop] for s in faces}
        assert not before & after, f"ids {before & after} went on across the cut at frame {cut}"
        # The new face: found right at the cut (a cut calls for a detection), one id to the shot's end.
        actor = run.footage.truth[cut].faces[0].actor
        assert run.tracked(actor)[0] <= cut + 1 and len(run.ids_on(actor)) == 1


def test_after_a_cut_no_track_stays_on_the_background(runs):
    """Cut at 71: the face moves elsewhere. The old track, left on background, is gone within 4 frames
    (measured: on the background at 71 and 72, then its landmarks collapse and the size check drops
    them; without the size check it stays to 75, without any plausibility check to the next three
    re-detections); the new face is found as soon as no track is left (the detector then runs every
    frame)."""
    run = runs("cut")
    cut = run.footage.scenario.cuts[1]
    on_background = [index for index, _ in run.on(None)]
    assert all(cut <= index < cut + 4 for index in on_background), on_background
    new_face = run.footage.truth[cut].faces[0].actor
    assert run.tracked(new_face)[0] <= cut + 4
    assert run.tracked(new_face) == list(range(run.tracked(new_face)[0], len(run.seen)))


# ---------------------------------------------------------------------------------------------------
# Size jump


def test_a_size_jump_is_followed_within_one_detection(runs, landmarker):
    """After each jump, from SETTLE frames past the next re-detection to the next jump: one track on the
    face, in place."""
    run = runs("size_jump")
    actor = "300w_indoor_029"
    for jump, next_jump in [(28, 54), (54, len(run.seen))]:
        for index in range(next_detection(jump) + SETTLE, next_jump):
            faces = [s for s in run.seen[index] if s.actor == actor]
            assert len(faces) == 1, (index, run.seen[index])
            assert faces[0].nme <= baseline(run, landmarker, actor) + NME_MARGIN, (index, faces[0])
    assert not run.on(None)


# ---------------------------------------------------------------------------------------------------
# False detection on background


class WithFalseBoxes(FaceDetector):
    """The real detector plus a made-up face box on background at given frames (the test tells it the frame)."""

    def __init__(self, detector: FaceDetector, box, frames, frame_size: tuple[int, int]):
        super().__init__(detector.params)
        self.detector, self.box, self.frames = detector, np.asarray(box, np.float32), set(frames)
        self.name = f"{detector.name}+false"
        self.frame = -1  # set by the test before each frame
        self.frame_size = frame_size  # (height, width): only full-frame searches get the false box

    def detect(self, frame_bgr):
        boxes, scores = self.detector.detect(frame_bgr)
        if self.frame in self.frames and frame_bgr.shape[:2] == self.frame_size:
            boxes, scores = np.vstack([boxes, self.box[None]]), np.append(scores, np.float32(0.9))
        return boxes, scores


def test_a_false_detection_leaves_no_lasting_track(footage, landmarker, yunet):
    """A made-up detector box at frame 10 on the "ghost" scenario's faint face printed on the background
    (a box where a detector would put one for it). The landmark model follows the ghost as it would a
    face, and nothing looks implausible, so only re-detections that find no face there can end the track."""
    clip = footage("ghost")
    false_frame = 10  # a re-detection frame: the detector runs then while the real face is tracked
    ghost = clip.truth[false_frame].ghosts[0].box
    found, _ = yunet.detect(clip.frames[false_frame])
    centres = (found[:, :2] + found[:, 2:]) / 2
    assert not any(ghost[0] <= x <= ghost[2] and ghost[1] <= y <= ghost[3] for x, y in centres), (
        "YuNet finds the ghost face: the made-up box would not be a false detection")
    box = landmarker.box_conversion.landmarks_to_detector(ghost[None])[0]
    detector = WithFalseBoxes(yunet, box, [false_frame], (clip.scenario.height, clip.scenario.width))

    def tell(index: int) -> None:
        detector.frame = index

    run = track(clip, Tracker(landmarker, detector, CONFIG), before_frame=tell)
    actor = "300w_indoor_029"
    assert run.tracked(actor) == list(range(len(run.seen))) and len(run.ids_on(actor)) == 1
    false_ids = {track_id for _, track_id in run.on(None)}
    assert len(false_ids) == 1, "the false box started no track: the test no longer exercises anything"
    frames = run.frames_of(false_ids.pop())
    print(f"\nthe false detection's track lived {len(frames)} frames")
    # A track no detection overlaps is dropped at its (max_missed_detections + 1)-th re-detection without one.
    lifetime = (CONFIG.max_missed_detections + 1) * REDETECT_EVERY
    assert frames[0] == false_frame and len(frames) <= lifetime, (frames[0], len(frames))
    assert not run.on(None, range(false_frame + lifetime, len(run.seen)))


# ---------------------------------------------------------------------------------------------------
# Bad frames


def test_bad_frames_do_not_stop_tracking(runs):
    run = runs("bad_frames")
    actor = "aflw2000_image02616"
    bad = dict(run.footage.scenario.bad_frames)
    assert len(run.results) == len(run.footage.frames)
    assert run.results[11].error and not run.results[11].faces  # dropped frame
    assert not run.results[22].faces  # 1x1: no face in it
    assert len(run.results[30].faces) <= 1 and not run.on(None)  # garbled: no crash, nothing made up
    good = [index for index in range(len(run.seen)) if index not in bad]
    # Tracked on every good frame; a bad frame may cost the one frame after it.
    missing = [index for index in good if index not in run.tracked(actor)]
    assert all(index - 1 in bad for index in missing), missing


def test_a_tiny_frame_keeps_the_track(runs):
    run = runs("bad_frames")
    assert len(run.ids_on("aflw2000_image02616")) == 1


# ---------------------------------------------------------------------------------------------------
# The footage itself: pixel convention, truth on real faces, backgrounds, command line


def test_paste_moves_points_exactly_as_the_pixels():
    """A synthetic actor holding one Gaussian dot: wherever paste puts the patch, the dot's intensity
    centroid lands on the matrix times the dot's position (downscales that go through the halved copies
    included)."""
    side = 201
    y, x = np.mgrid[0:side, 0:side]
    dot = np.array([83.3, 121.7])
    blob = 255 * np.exp(-((x - dot[0]) ** 2 + (y - dot[1]) ** 2) / (2 * 6.0**2))
    image = np.repeat(np.rint(blob).astype(np.uint8)[..., None], 3, axis=2)
    points = np.array([[40.0, 50.0], [160.0, 50.0], [100.0, 170.0]] + [[100.0, 100.0]] * 65)
    actor = Actor("dot", image, np.ones((side, side), np.float32), points)
    for centre, size, angle in [((160.3, 120.8), actor.size, 0.0), ((100.0, 90.5), actor.size * 1.7, 23.0),
                                ((200.2, 140.0), actor.size * 0.3, -40.0), ((60.0, 70.0), actor.size * 0.12, 5.0)]:
        frame = np.zeros((240, 320, 3), np.uint8)
        matrix = similarity(actor, *centre, size, angle)
        moved = paste(frame, actor, matrix)
        expected = dot @ matrix[:, :2].T + matrix[:, 2]
        weight = frame[..., 0].astype(np.float64)
        fy, fx = np.mgrid[0 : frame.shape[0], 0 : frame.shape[1]]
        centroid = np.array([(weight * fx).sum(), (weight * fy).sum()]) / weight.sum()
        assert np.abs(centroid - expected).max() < 0.05, (centre, size, angle, centroid, expected)
        np.testing.assert_allclose(moved, points @ matrix[:, :2].T + matrix[:, 2])


def test_truth_fits_the_real_face_a_real_model_finds(data, landmarker, yunet):
    """Composited at another place, size and angle, a face is found by YuNet where the truth says, and
    PFLD's error against the moved truth is what it is on the original photograph."""
    for name in ("aflw2000_image00050", "7_Cheering_Cheering_7_16_face2", "takeo"):
        actor = load_actor(name, data)
        photo_points = landmarker.predict(actor.image, np.concatenate([actor.points.min(0), actor.points.max(0)]),
                                          "landmarks").points  # fmt: skip
        photo_nme = nme_per_image(to_68(photo_points), actor.points[None], IBUG68)[0] * 100
        for centre, size, angle in [((250.0, 170.0), 90.0, 0.0), ((300.5, 200.25), 150.0, 12.0)]:
            frame = background(480, 360, 1)
            truth = paste(frame, actor, similarity(actor, *centre, size, angle))
            box = np.concatenate([truth.min(0), truth.max(0)])
            found, _ = yunet.detect(frame)
            assert len(found) == 1
            centre_found = (found[0, :2] + found[0, 2:]) / 2
            assert box[0] < centre_found[0] < box[2] and box[1] < centre_found[1] < box[3]
            predicted = landmarker.predict(frame, box, "landmarks").points
            nme = nme_per_image(to_68(predicted), truth[None], IBUG68)[0] * 100
            assert abs(nme - photo_nme) < 1.5, (name, size, angle, nme, photo_nme)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_backgrounds_hold_no_face(name, yunet):
    scenario = SCENARIOS[name]
    haar = make_detector("haar")
    for shot in scenario.shots:
        image = background(scenario.width, scenario.height, shot.background)
        assert not len(yunet.detect(image)[0]) and not len(haar.detect(image)[0]), (name, shot.background)


def test_scenarios_are_what_they_say(footage):
    clip = footage("two_faces")
    assert len(clip.frames) == len(clip.truth) == clip.scenario.frame_count == 70
    assert [len(t.faces) for t in clip.truth] == [1] * 23 + [2] * 47
    cut = footage("cut")
    assert cut.scenario.cuts == [37, 71] and [t.shot for t in cut.truth[36:38]] == [0, 1]
    for name in ("multishot_360", "multishot_720"):
        scenario = SCENARIOS[name]
        assert scenario.frame_count == 320 and len(scenario.cuts) == 7
        people = {move.actor for shot in scenario.shots for move in shot.moves}
        assert len(people) == 12
        assert all(1 <= len(shot.moves) <= 3 or shot.video for shot in scenario.shots)
        assert sum(bool(shot.video) for shot in scenario.shots) == 2
    assert (SCENARIOS["multishot_720"].width, SCENARIOS["multishot_360"].width) == (1280, 640)


def test_command_writes_video_and_truth(data, tmp_path, capsys):
    video, truth = tmp_path / "out" / "cut.mp4", tmp_path / "out" / "cut.json"
    assert scenario_main(["cut", "--out", str(video), "--truth", str(truth), "--data", str(data)]) == 0
    frames, _ = read_video(video)
    assert len(frames) == 101 and frames[0].shape == (360, 480, 3)
    written = json.loads(truth.read_text())
    assert written["cuts"] == [37, 71] and len(written["frames"]) == 101
    face = written["frames"][40]["faces"][0]
    assert face["actor"] == "7_Cheering_Cheering_7_16_face1" and np.array(face["points"]).shape == (68, 2)
    assert sorted(p.name for p in video.parent.iterdir()) == ["cut.json", "cut.mp4"]  # no temporary left
    assert scenario_main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in SCENARIOS)
    assert scenario_main(["cutt", "--out", str(video)]) == 2
    assert "Did you mean 'cut'?" in capsys.readouterr().err
    assert scenario_main(["cut"]) == 2
    assert "nothing to write" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------
# The long sequence (item 7's footage): what the tracker finds on it today


@pytest.mark.slow
def test_multishot_faces_found(runs):
    """Item 7's footage: faces found (a track on a face in the truth) of all face-frames, measured."""
    run = runs("multishot_360")
    truth = {(t.index, f.actor) for t in run.footage.truth for f in t.faces}
    found = {(index, s.actor) for index, faces in enumerate(run.seen) for s in faces if s.actor is not None}
    on_background = len(run.on(None))
    actors_of: dict[int, set] = {}
    for faces in run.seen:
        for face in faces:
            actors_of.setdefault(face.track_id, set()).add(face.actor)
    switched = {track_id: actors for track_id, actors in actors_of.items() if len(actors - {None}) > 1}
    print(f"\nmultishot_360: {len(found)} of {len(truth)} face-frames tracked, {on_background} track-frames on "
          f"background, {len(actors_of)} ids, ids on two people: {switched}")
    assert len(found) >= 0.9 * len(truth)


def test_command_scores_the_tracker_against_the_truth(data, pfld_artifact, yunet_onnx, tmp_path, capsys):
    """--track MODEL: the README's multi-shot figures come from this; on two_faces both people are followed."""
    scores = tmp_path / "scores.json"
    assert scenario_main(["two_faces", "--track", str(pfld_artifact), "--json", str(scores), "--data", str(data)]) == 0
    result = json.loads(scores.read_text())
    assert result["frames"] == 70 and result["true_face_frames"] == 70 + 70 - 23
    # The second face waits at most one default re-detection interval to be picked up.
    assert result["followed"] >= result["true_face_frames"] - TrackerConfig().redetect_every
    assert result["on_background"] == 0 and result["ids"] == 2 and result["ids_on_several_people"] == 0
    assert "true face-frames followed" in capsys.readouterr().out
