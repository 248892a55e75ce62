"""The tracker on the real close-up video and through bad frames, and the track command's outputs and errors."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.backends.registry import load_backend
from runtime.detect import make_detector
from runtime.landmarker import Landmarker
from runtime.smoothing import face_size
from runtime.track import main as track_main
from runtime.tracker import Tracker, TrackerConfig, track_frames


@pytest.fixture(scope="module")
def tracker(pfld_artifact):
    with load_backend(pfld_artifact, "onnxruntime", threads=1) as backend:
        yield Tracker(Landmarker(backend), make_detector("haar", scale=0.5), TrackerConfig())


def test_tracks_the_real_face_in_every_frame_continuously(tracker, video_frames, face_video):
    result = track_frames(tracker, video_frames)
    points = result["points"]  # (T, 98, 2) smoothed
    assert result["frames"] == 275 and result["faces_found"] == 275
    # Inside the face: brows, eyes and nose (33-75, 96-97) lie in Haar's box of the same frame
    # (enlarged by 10 %); the mouth (76-95) lies below the nose tip, above the chin and between the
    # jaw's ends; the jaw contour lies in the frame. (Haar's box ends at the lips of a yawning face.)
    detector = make_detector("haar", scale=0.5)
    height, width = video_frames[0].shape[:2]
    for index in range(0, 275, 25):
        boxes, _ = detector.detect(video_frames[index])
        x1, y1, x2, y2 = boxes[0]
        margin = 0.1 * (x2 - x1)
        face = points[index]
        upper = np.concatenate([face[33:76], face[96:98]])
        assert ((upper[:, 0] > x1 - margin) & (upper[:, 0] < x2 + margin)).all(), index
        assert ((upper[:, 1] > y1 - margin) & (upper[:, 1] < y2 + margin)).all(), index
        mouth = face[76:96]
        assert (mouth[:, 1] > face[54, 1]).all() and (mouth[:, 1] < face[16, 1]).all(), index
        assert (mouth[:, 0] > face[0, 0]).all() and (mouth[:, 0] < face[32, 0]).all(), index
        contour = face[:33]
        assert (contour >= 0).all() and (contour[:, 0] < width).all() and (contour[:, 1] < height).all(), index
    # Continuous: the face centre never jumps more than a fifth of the face size between frames,
    # and the size changes smoothly.
    centres = points.mean(axis=1)
    sizes = np.array([face_size(p) for p in points])
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1) / sizes[1:]
    assert steps.max() < 0.2, steps.max()
    assert np.abs(np.diff(sizes) / sizes[1:]).max() < 0.15


def test_bad_frames_do_not_stop_the_tracker(tracker, video_frames):
    tracker.reset()
    frame = video_frames[0]
    results = [
        tracker.process(frame),
        tracker.process(None),  # a dropped frame
        tracker.process(np.zeros((0, 0, 3), np.uint8)),  # empty
        tracker.process(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)),  # grayscale
        tracker.process(cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA)),  # 4 channels
        tracker.process(cv2.resize(frame, None, fx=0.5, fy=0.5)),  # size change: re-detect
        tracker.process(video_frames[1]),
    ]
    assert [bool(r.error) for r in results] == [False, True, True, False, False, False, False]
    assert all(len(r.faces) == 1 for i, r in enumerate(results) if i not in (1, 2))
    assert results[5].detected  # the new size forced a re-detection
    assert results[0].faces[0].track_id == results[4].faces[0].track_id  # same face, same id


def test_two_faces_keep_their_ids(tracker, video_frames):
    tracker.reset()
    ids = []
    for frame in video_frames[:40]:
        small = cv2.resize(frame, None, fx=0.5, fy=0.5)
        pair = np.hstack([small, cv2.flip(small, 1)])  # the face and its mirror image, side by side
        faces = sorted(tracker.process(pair).faces, key=lambda face: face.box[0])
        ids.append(tuple(face.track_id for face in faces))
    assert all(len(pair) == 2 for pair in ids), ids[:5]
    assert len(set(ids)) == 1, "ids changed while both faces stayed in view"


def test_track_command_writes_video_csv_and_json(pfld_artifact, face_video, tmp_path):
    out, table, frames_json = tmp_path / "x.mp4", tmp_path / "x.csv", tmp_path / "x.json"
    code = track_main([str(face_video), "--model", str(pfld_artifact), "--out", str(out), "--csv", str(table),
                       "--json", str(frames_json), "--threads", "1"])
    assert code == 0
    capture = cv2.VideoCapture(str(out))
    count, first = 0, None
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        first = frame if first is None else first
        count += 1
    assert count == 275 and first.shape == (680, 450, 3)
    with open(table, newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 275 and len(rows[0]) == 3 + 2 * 98
    # The landmarks are drawn: green dots where the CSV says.
    x, y = round(float(rows[0]["x54"])), round(float(rows[0]["y54"]))
    patch = first[y - 2 : y + 3, x - 2 : x + 3].reshape(-1, 3)
    assert (patch[:, 1] > 200).any() and (patch[:, 2] < 100).any()
    assert len(json.loads(frames_json.read_text())["frames"]) == 275
    assert not list(tmp_path.glob(".*partial*"))


def test_image_folder_without_faces_and_bad_sources(pfld_artifact, pfld_onnx, tmp_path, capsys):
    blank = tmp_path / "blank"
    blank.mkdir()
    for index in range(3):
        cv2.imwrite(str(blank / f"{index}.png"), np.full((120, 160, 3), 127, np.uint8))
    # As one video's frames, a stream without any face is an error; as photographs, three "no face" rows.
    assert track_main([str(blank), "--frames", "--model", str(pfld_artifact), "--csv", str(tmp_path / "b.csv")]) == 1
    assert "no face found in any of 3 frames" in capsys.readouterr().err
    assert track_main([str(blank), "--model", str(pfld_artifact), "--csv", str(tmp_path / "b.csv")]) == 0
    assert [line.split(",")[3] for line in (tmp_path / "b.csv").read_text().splitlines()[1:]] == ["no face"] * 3
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    assert track_main([str(broken), "--model", str(pfld_artifact)]) == 1
    assert "cannot open this video" in capsys.readouterr().err
    assert track_main([str(tmp_path / "missing.mp4"), "--model", str(pfld_artifact)]) == 1
    assert "no such file, folder or camera" in capsys.readouterr().err
    no_card = tmp_path / "model.onnx"  # the third-party file as downloaded: no sidecar, no metadata
    no_card.write_bytes(pfld_onnx.read_bytes())
    code = track_main([str(blank), "--model", str(no_card)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("error: ") and "card" in err[-1]


def test_no_camera_lists_what_was_tried(pfld_artifact, capsys):
    if sorted(__import__("pathlib").Path("/dev").glob("video*")):
        pytest.skip("this machine has a camera")
    assert track_main(["webcam", "--model", str(pfld_artifact)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no camera could be opened (tried index 0, 1, 2, 3" in err


def test_ctrl_c_flushes_outputs(pfld_artifact, face_video, tmp_path, monkeypatch):
    import runtime.track as track

    real_open = track.open_source

    def interrupted_after_ten(source):
        frames, count, fps, name = real_open(source)

        def generator():
            for index, item in enumerate(frames):
                if index == 10:
                    raise KeyboardInterrupt
                yield item

        return generator(), count, fps, name

    monkeypatch.setattr(track, "open_source", interrupted_after_ten)
    table = tmp_path / "x.csv"
    assert track_main([str(face_video), "--model", str(pfld_artifact), "--csv", str(table)]) == 0
    assert len(table.read_text().splitlines()) == 11  # header + 10 frames


def test_pseudo_labels_feed_calibration(pfld_artifact, face_video, tmp_path):
    from runtime.annotations import read_pts_folder

    folder = tmp_path / "pseudo"
    assert track_main([str(face_video), "--model", str(pfld_artifact), "--save-frames", str(folder),
                       "--save-every", "25", "--max-frames", "100", "--threads", "1"]) == 0
    samples = read_pts_folder(folder)
    assert [s.image.name for s in samples] == [f"frame_{i:06d}.png" for i in (0, 25, 50, 75)]
    first = cv2.imread(str(samples[0].image))
    assert first.shape == (680, 450, 3) and samples[0].points.shape == (98, 2)
    assert (samples[0].points > 0).all() and (samples[0].points[:, 0] < 450).all()


def test_rows_reach_disk_as_frames_arrive(pfld_artifact, face_video, tmp_path, monkeypatch):
    """CSV and JSON are streamed: while tracking, the hidden partial files already hold the rows of the
    frames seen so far (memory stays flat on a long webcam session); the final names appear at the end."""
    import runtime.track as track

    real_open = track.open_source
    sizes = []
    table, frames_json = tmp_path / "x.csv", tmp_path / "x.json"

    def watched(source):
        frames, count, fps, name = real_open(source)

        def generator():
            for index, item in enumerate(frames):
                if index in (50, 150):  # the partial files name the process writing them
                    partial = tmp_path / f".x.partial-{os.getpid()}.csv"
                    sizes.append((partial.stat().st_size, (tmp_path / f".x.partial-{os.getpid()}.json").stat().st_size))
                    assert not table.exists() and not frames_json.exists()
                if index == 200:
                    return
                yield item

        return generator(), count, fps, name

    monkeypatch.setattr(track, "open_source", watched)
    assert track_main([str(face_video), "--model", str(pfld_artifact), "--csv", str(table), "--json", str(frames_json)]) == 0
    (csv_at_50, json_at_50), (csv_at_150, json_at_150) = sizes
    assert 0 < csv_at_50 < csv_at_150 and 0 < json_at_50 < json_at_150
    assert len(table.read_text().splitlines()) == 201  # header + 200 frames
    assert len(json.loads(frames_json.read_text())["frames"]) == 200
    assert not list(tmp_path.glob(".*partial*"))


def test_a_folder_of_photographs_is_stills(pfld_artifact, faces68_dir, tmp_path):
    """Same-size photographs of different people: each image is detected on its own (no track or smoothing
    carries over), and an image without a face is a row saying so, not a failed run. --frames tracks them."""
    folder = tmp_path / "photos"
    folder.mkdir()
    same_size = sorted(faces68_dir.glob("aflw2000_image*.jpg"))[:3]  # 450 x 450 each
    for path in same_size:
        (folder / path.name).write_bytes(path.read_bytes())
    cv2.imwrite(str(folder / "aflw2000_image00099_blank.png"), np.full((450, 450, 3), 90, np.uint8))
    table = tmp_path / "stills.csv"
    assert track_main([str(folder), "--model", str(pfld_artifact), "--csv", str(table), "--threads", "1"]) == 0
    with open(table, newline="") as stream:
        rows = list(csv.DictReader(stream))
    by_image = {}
    for row in rows:
        by_image.setdefault(row["image"], []).append(row)
    assert set(by_image) == {path.name for path in folder.iterdir()}
    blank = by_image["aflw2000_image00099_blank.png"]
    assert len(blank) == 1 and blank[0]["face_id"] == "" and blank[0]["confidence"] == "no face"
    # Each photograph gives what it gives alone: nothing carried over from the image before it.
    for path in same_size:
        alone = tmp_path / f"alone_{path.stem}"
        alone.mkdir()
        (alone / path.name).write_bytes(path.read_bytes())
        single = tmp_path / f"{path.stem}.csv"
        assert track_main([str(alone), "--model", str(pfld_artifact), "--csv", str(single), "--threads", "1"]) == 0
        with open(single, newline="") as stream:
            expected = list(csv.DictReader(stream))
        got = by_image[path.name]
        assert [row["x54"] for row in got] == [row["x54"] for row in expected]
    # As one video's frames, the tracks carry: ids continue across images.
    frames_table = tmp_path / "frames.csv"
    assert track_main([str(folder), "--frames", "--model", str(pfld_artifact), "--csv", str(frames_table)]) == 0
    with open(frames_table, newline="") as stream:
        assert all(row["face_id"] != "" for row in csv.DictReader(stream))


def test_a_second_track_on_the_same_face_merges_into_the_older_id(pfld_artifact, video_frames):
    """A duplicate track (as a false detection next to the face starts one) is dropped as soon as it
    overlaps the older track; disabling the merge leaves two ids on one face."""
    from runtime.tracker import _Track

    def run(merge_iou: float) -> list[list[int]]:
        with load_backend(pfld_artifact, "onnxruntime", threads=1) as backend:
            tracker = Tracker(Landmarker(backend), make_detector("haar", scale=0.5), TrackerConfig(merge_iou=merge_iou))
            first = tracker.process(video_frames[0])
            assert [face.track_id for face in first.faces] == [0]
            older = tracker.tracks[0]
            shifted = older.points + 0.08 * older.size  # a box overlapping the face, a few pixels off
            tracker.tracks.append(_Track(99, shifted, tracker._new_smoother(), box=older.box + 0.08 * older.size,
                                         size=older.size))
            return [[face.track_id for face in tracker.process(frame).faces] for frame in video_frames[1:6]]

    assert run(0.5) == [[0]] * 5
    assert run(1.01)[0] == [0, 99]  # merging off: the duplicate survives


def test_the_default_detector_finds_the_faces68_faces_end_to_end(pfld_artifact, faces68_dir, tmp_path):
    """Issue 8 acceptance: stills, the tracker finding each face itself with the default detector (YuNet from
    the zoo cache), at least 11 of the 12 annotated faces; Haar, the offline fallback, finds fewer."""
    from runtime.annotations import read_pts
    from runtime.crop import landmark_box
    from runtime.tracker import box_iou

    def found(detector: str) -> int:
        table = tmp_path / f"{detector}.csv"
        assert track_main([str(faces68_dir), "--model", str(pfld_artifact), "--csv", str(table),
                           "--detector", detector]) == 0  # fmt: skip
        hits = set()
        with open(table, newline="") as stream:
            for row in csv.DictReader(stream):
                if row["face_id"] == "":
                    continue
                points = np.array([[float(row[f"x{i}"]), float(row[f"y{i}"])] for i in range(98)])
                truth = read_pts(faces68_dir / f"{Path(row['image']).stem}.pts")
                if box_iou(landmark_box(points)[None], landmark_box(truth)[None])[0, 0] > 0.5:
                    hits.add(row["image"])
        return len(hits)

    default = found("yunet")
    assert default >= 11
    assert found("haar") < default


def test_a_shot_cut_ends_the_tracks_and_the_next_face_gets_a_new_id(tracker, video_frames, faces68_dir):
    """A cut from the close-up video to a photograph of someone else: every track ends at the cut and the
    new face gets a new id in that same frame. The video itself (275 frames of one moving face) has no cut."""
    height, width = video_frames[0].shape[:2]
    photo = cv2.imread(str(faces68_dir / "breakingbad.jpg"))
    scale = min(width / photo.shape[1], height / photo.shape[0])
    resized = cv2.resize(photo, None, fx=scale, fy=scale)
    other = np.zeros_like(video_frames[0])
    other[: resized.shape[0], : resized.shape[1]] = resized
    tracker.reset()
    results = [tracker.process(frame) for frame in [*video_frames[:6], other, other, *video_frames[6:9]]]
    assert [r.cut for r in results] == [False] * 6 + [True, False, True, False, False]
    ids = [[face.track_id for face in r.faces] for r in results]
    assert all(len(face_ids) == 1 for face_ids in ids)
    assert len({face_ids[0] for face_ids in ids[:6]}) == 1
    assert ids[6][0] not in ids[0] and ids[7] == ids[6]
    assert ids[8][0] not in ids[0] + ids[6] and ids[9] == ids[8] == ids[10]
    tracker.reset()
    assert not any(tracker.process(frame).cut for frame in video_frames)
def test_without_a_display_the_default_files_are_written_and_one_line_says_so(pfld_artifact, face_video, tmp_path,
                                                                              monkeypatch, caplog):
    """Headless (the test session unsets DISPLAY) and no output asked: <name>_landmarks.mp4 and .csv, and
    one line naming them, why there is no window and how to choose; --no-show with --csv writes only it."""
    monkeypatch.chdir(tmp_path)
    with caplog.at_level("INFO", logger="runtime.track"):
        assert track_main([str(face_video), "--model", str(pfld_artifact), "--max-frames", "5"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face_closeup_landmarks.csv", "face_closeup_landmarks.mp4"]
    said = [r.getMessage() for r in caplog.records if "face_closeup_landmarks.mp4" in r.getMessage()]
    assert len(said) == 1, said
    assert "no display (DISPLAY and WAYLAND_DISPLAY are unset)" in said[0] and "--out/--csv" in said[0]
    assert "xvfb-run" in said[0] and "ssh -X" in said[0]
    for path in tmp_path.iterdir():
        path.unlink()
    assert track_main([str(face_video), "--model", str(pfld_artifact), "--max-frames", "5", "--no-show",
                       "--csv", "only.csv"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["only.csv"]


def test_a_killed_run_leaves_partials_that_the_next_run_removes(pfld_artifact, face_video, tmp_path, caplog):
    """kill -9 mid-run leaves hidden partial files named by the dead process; the next run writing the same
    names removes them (one line each), and leaves alone those of a process still running and of other names."""
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    out = tmp_path / "out"
    names = ["--out", str(out / "x.mp4"), "--csv", str(out / "x.csv"), "--json", str(out / "x.json")]
    killed = subprocess.Popen([sys.executable, "-m", "runtime.track", str(face_video), "--model", str(pfld_artifact),
                               "--no-show", *names], env={**os.environ, "PYTHONPATH": str(REPO)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial_csv = out / f".x.partial-{killed.pid}.csv"
    deadline = time.monotonic() + 60
    while not (partial_csv.exists() and partial_csv.stat().st_size > 20_000) and time.monotonic() < deadline:
        assert killed.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    left = sorted(p.name for p in out.iterdir())
    assert left == [f".x.partial-{killed.pid}{suffix}" for suffix in (".csv", ".json", ".mp4")], left
    # Beside them: a run still going (a live process), an earlier version's unnamed partial, another name's.
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for name in (f".x.partial-{alive.pid}.csv", ".x.partial.mp4", f".y.partial-{killed.pid}.csv"):
            (out / name).write_text("partial")
        with caplog.at_level("INFO", logger="runtime.track"):
            assert track_main([str(face_video), "--model", str(pfld_artifact), "--max-frames", "5", *names]) == 0
        assert sorted(p.name for p in out.iterdir()) == sorted(
            [f".x.partial-{alive.pid}.csv", f".y.partial-{killed.pid}.csv", "x.csv", "x.json", "x.mp4"])
    finally:
        alive.kill()
        alive.wait()
    removed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("removed ")]
    assert len(removed) == 4, removed
    assert sum(f"left by process {killed.pid} " in line for line in removed) == 3
    assert len((out / "x.csv").read_text().splitlines()) == 6  # the new run's own rows only


def test_a_tiny_or_unreadable_first_image_does_not_end_the_run(pfld_artifact, faces68_dir, tmp_path, capsys):
    """A 1x1 first image used to open a video OpenCV cannot write and end the run with FileNotFoundError on
    the final rename: the video now starts at the first frame big enough, and every image has its row."""
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a_tiny.png"), np.zeros((1, 1, 3), np.uint8))
    (folder / "b_broken.jpg").write_bytes(b"not an image")
    (folder / "c_face.jpg").write_bytes(min(faces68_dir.glob("aflw2000_image*.jpg")).read_bytes())
    cv2.imwrite(str(folder / "d_tiny.png"), np.zeros((1, 1, 3), np.uint8))
    out = tmp_path / "out"
    for frames in ([], ["--frames"]):
        video, table = out / "v.mp4", out / "t.csv"
        assert track_main([str(folder), *frames, "--model", str(pfld_artifact), "--out", str(video), "--csv", str(table),
                           "--json", str(out / "j.json"), "--force"]) == 0, capsys.readouterr().err
        capture = cv2.VideoCapture(str(video))
        shown = []
        while (frame := capture.read()[1]) is not None:
            shown.append(frame.shape)
        assert shown == [(450, 450, 3)]  # c_face; the 1x1 images are skipped as broken frames
        with open(table, newline="") as stream:
            rows = list(csv.DictReader(stream))
        assert {row["image"] for row in rows if row["face_id"] != ""} == {"c_face.jpg"}
        if not frames:  # photographs: an image without a face is a row saying why
            assert [(row["image"], row["confidence"]) for row in rows if row["face_id"] == ""] == [
                ("a_tiny.png", "too small"), ("b_broken.jpg", "unreadable"), ("d_tiny.png", "too small")]
        assert sorted(p.name for p in out.iterdir()) == ["j.json", "t.csv", "v.mp4"]
    # Nothing big enough for a video at all: the other files, a line saying why there is no video.
    (folder / "c_face.jpg").unlink()
    assert track_main([str(folder), "--model", str(pfld_artifact), "--out", str(out / "w.mp4"),
                       "--csv", str(out / "w.csv")]) == 0
    assert not (out / "w.mp4").exists() and (out / "w.csv").exists()
    assert not list(out.glob(".*partial*"))


def test_a_failed_run_leaves_no_file(pfld_artifact, face_video, tmp_path, capsys):
    """A video OpenCV cannot write (an unknown suffix) ends the run with one line; the CSV begun beside it
    is removed, not left as a partial file or moved into place."""
    from tests.conftest import one_error_line

    out = tmp_path / "out"
    assert track_main([str(face_video), "--model", str(pfld_artifact), "--out", str(out / "x.unknown"),
                       "--csv", str(out / "x.csv"), "--max-frames", "3"]) == 1
    assert "OpenCV cannot write a 450x680 video under this name" in one_error_line(capsys.readouterr())
    assert list(out.iterdir()) == []


def test_a_model_that_outputs_nan_is_named_not_the_lighting(pfld_artifact, face_video, tmp_path, capsys):
    """Issue 9: a NaN model used to end with "no face found ... check the lighting"."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(pfld_artifact))
    first = model.graph.initializer[0]
    broken = numpy_helper.to_array(first).copy()
    broken[...] = np.nan
    first.CopyFrom(numpy_helper.from_array(broken, first.name))
    from export.artifact import save_artifact
    from runtime.card import read_card

    artifact = save_artifact(model, read_card(pfld_artifact), tmp_path / "nan_model.onnx")
    table = tmp_path / "nan.csv"
    code = track_main([str(face_video), "--model", str(artifact), "--csv", str(table), "--max-frames", "3"])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code != 0 and "NaN or infinite landmarks" in line and "lighting" not in line
    assert not table.exists() and not list(tmp_path.glob(".*partial*"))
