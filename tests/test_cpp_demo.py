"""cpp_demo/: the C++ tracker (OpenVINO) against runtime.track on the real close-up video.

Built once per session with cpp_demo/build.sh (skipped, with the reason, where the toolchain or the
system packages are missing). Parity is judged on the same crops: the Python tracker's boxes are
fed to the C++ one (--boxes), smoothing off, because tracking by landmarks feeds each frame's
result into the next crop and amplifies any difference (two Python runs of one ONNX file, on ONNX
Runtime and on OpenVINO, drift apart by pixels after frame 44 of this video).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "cpp_demo"))

import parity  # noqa: E402  (cpp_demo/parity.py)

BUILD_SCRIPT = REPO / "cpp_demo" / "build.sh"
SYSTEM_PACKAGES = ("libopencv-dev", "nlohmann-json3-dev")
PIXEL_TOLERANCE = 0.5  # the acceptance: every landmark within 0.5 px of the Python tracker's
SHORT_RUN = 60  # frames of the default parity test; the slow ones cover the whole video


@pytest.fixture(scope="session")
def cpp_tracker() -> Path:
    """cpp_demo/build/edgemark_track, built (or brought up to date) once per test run."""
    missing = [tool for tool in ("cmake", "g++") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"cpp_demo needs {' and '.join(missing)} to build (apt-get install cmake g++)")
    if shutil.which("dpkg-query"):
        absent = [package for package in SYSTEM_PACKAGES if subprocess.run(
            ["dpkg-query", "-W", "-f=${db:Status-Status}", package], capture_output=True, text=True).stdout != "installed"]
        if absent:  # build.sh would apt-get them as root; a test run installs nothing
            pytest.skip(f"cpp_demo needs {' '.join(absent)}: run cpp_demo/build.sh as root, or apt-get install -y {' '.join(absent)}")
    built = subprocess.run(["bash", str(BUILD_SCRIPT)], capture_output=True, text=True,
                           env={**os.environ, "PYTHON": sys.executable})
    if built.returncode:
        reason = (built.stderr.strip().splitlines() or ["build failed"])[-1]
        if "apt-get install" in reason or "no 'openvino' package" in reason:
            pytest.skip(f"cpp_demo cannot build here: {reason}")
        pytest.fail(f"cpp_demo/build.sh failed:\n{built.stdout[-3000:]}\n{built.stderr[-3000:]}")
    return parity.BINARY


@pytest.fixture(scope="session")
def yunet_spec(yunet_onnx) -> str:
    return f"yunet:{yunet_onnx}"


@pytest.fixture(scope="module")
def short_python_run(pfld_artifact, face_video, yunet_spec) -> parity.PythonRun:
    """The Python tracker (ONNX Runtime, smoothing off) over the first SHORT_RUN frames, with its crop boxes."""
    return parity.python_run(str(pfld_artifact), str(face_video), yunet_spec, max_frames=SHORT_RUN)


@pytest.fixture(scope="module")
def int8_ir(pfld_artifact, faces68_dir, tmp_path_factory) -> Path:
    """An NNCF INT8 OpenVINO IR of PFLD-GhostOne, calibrated on the twelve faces68 faces (~20 s)."""
    pytest.importorskip("nncf", reason="the INT8 IR needs NNCF (pip install -e '.[openvino]')")
    from export import openvino as openvino_cli
    from export.calibration import calibration_array_from_faces
    from runtime.annotations import read_pts_folder
    from runtime.card import read_card

    work = tmp_path_factory.mktemp("cpp_int8")
    calibration_array_from_faces(read_pts_folder(faces68_dir), read_card(pfld_artifact), work / "calib.npz")
    output = work / "pfld_int8.xml"
    assert openvino_cli.main([str(pfld_artifact), "-o", str(output), "--int8", "--calib", str(work / "calib.npz")]) == 0
    return output


def _replay(cpp_tracker, run: parity.PythonRun, model: Path, video: Path, work: Path, max_frames: int = 0) -> dict:
    boxes = parity.write_boxes(run, work / "boxes.csv")
    flags = ["--smooth", "none", "--boxes", str(boxes), "--csv", str(work / "cpp.csv")]
    finished = parity.cpp_track(str(video), str(model), *flags, *(["--max-frames", str(max_frames)] if max_frames else []),
                                binary=cpp_tracker)
    assert finished.returncode == 0, finished.stderr
    return parity.read_tracker_csv(work / "cpp.csv")


def test_same_boxes_same_landmarks_fp32_onnx(cpp_tracker, short_python_run, pfld_artifact, face_video, tmp_path):
    cpp = _replay(cpp_tracker, short_python_run, pfld_artifact, face_video, tmp_path, SHORT_RUN)
    assert len(cpp) == SHORT_RUN
    # The C++ CSV holds 0.01 px; ONNX Runtime (Python) and OpenVINO (C++) agree far inside that.
    assert parity.largest_difference(short_python_run.raw_points, cpp) <= 0.006


@pytest.mark.slow
def test_same_boxes_same_landmarks_whole_video_fp32_onnx(cpp_tracker, pfld_artifact, face_video, yunet_spec, tmp_path):
    run = parity.python_run(str(pfld_artifact), str(face_video), yunet_spec)
    cpp = _replay(cpp_tracker, run, pfld_artifact, face_video, tmp_path)
    assert len(cpp) == 275
    assert parity.largest_difference(run.raw_points, cpp) <= PIXEL_TOLERANCE


@pytest.mark.slow
def test_same_boxes_same_landmarks_whole_video_int8_ir(cpp_tracker, int8_ir, face_video, yunet_spec, tmp_path):
    run = parity.python_run(str(int8_ir), str(face_video), yunet_spec)  # OpenVINO in both
    cpp = _replay(cpp_tracker, run, int8_ir, face_video, tmp_path)
    assert len(cpp) == 275
    assert parity.largest_difference(run.raw_points, cpp) <= PIXEL_TOLERANCE


def test_own_detection_and_tracking_match_python(cpp_tracker, pfld_artifact, face_video, yunet_spec, tmp_path):
    """No boxes given: YuNet decoded in C++, the crop from its box, tracking, a re-detection at frame 30."""
    frames = 31
    run = parity.python_run(str(pfld_artifact), str(face_video), yunet_spec, backend="openvino", max_frames=frames)
    finished = parity.cpp_track(str(face_video), str(pfld_artifact), "--detector", yunet_spec, "--smooth", "none",
                                "--max-frames", str(frames), "--csv", str(tmp_path / "cpp.csv"), binary=cpp_tracker)
    assert finished.returncode == 0, finished.stderr
    assert f"{frames} frames, a face in {frames}, 0 bad" in finished.stdout
    assert parity.largest_difference(run.raw_points, parity.read_tracker_csv(tmp_path / "cpp.csv")) <= PIXEL_TOLERANCE


def test_csv_is_the_python_trackers(cpp_tracker, pfld_artifact, face_video, yunet_spec, tmp_path):
    from runtime.track import main as track_main

    common = [str(face_video), "--model", str(pfld_artifact), "--detector", yunet_spec, "--max-frames", "3"]
    assert track_main([*common, "--no-show", "--csv", str(tmp_path / "python.csv"), "--smooth", "none"]) == 0
    finished = subprocess.run([str(cpp_tracker), *common, "--csv", str(tmp_path / "cpp.csv"), "--out",
                               str(tmp_path / "cpp.mp4"), "--smooth", "none"], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    python_lines = (tmp_path / "python.csv").read_bytes().split(b"\r\n")
    cpp_lines = (tmp_path / "cpp.csv").read_bytes().split(b"\r\n")
    assert cpp_lines[0] == python_lines[0] and len(cpp_lines) == len(python_lines) == 5
    assert [line.split(b",")[:3] for line in cpp_lines] == [line.split(b",")[:3] for line in python_lines]
    assert (tmp_path / "cpp.mp4").stat().st_size > 10_000
    assert "FPS overall" in finished.stdout and not list(tmp_path.glob(".*partial*"))


def test_one_euro_matches_python_on_a_recorded_sequence(cpp_tracker, short_python_run, tmp_path):
    """edgemark_smooth (the C++ filters) on the Python tracker's raw landmarks, against runtime.smoothing."""
    from runtime.smoothing import face_size, make_smoother

    raw = tmp_path / "raw.csv"
    count = len(next(iter(short_python_run.raw_points.values())))
    with open(raw, "w") as stream:
        stream.write(",".join(["frame", "face_id", "confidence", *[f"{a}{i}" for i in range(count) for a in "xy"]]) + "\n")
        for (frame, face_id), points in sorted(short_python_run.raw_points.items()):
            stream.write(",".join([str(frame), str(face_id), "nan", *(repr(float(v)) for v in points.reshape(-1))]) + "\n")
    fps = short_python_run.fps
    smoothed = tmp_path / "smoothed.csv"
    finished = subprocess.run([str(cpp_tracker.parent / "edgemark_smooth"), str(raw), str(smoothed), "--smooth", "one_euro",
                               "--fps", repr(fps)], capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    cpp = parity.read_tracker_csv(smoothed)
    smoother = make_smoother("one_euro", fps=fps)
    largest = 0.0
    moved = 0.0
    for (frame, face_id), points in sorted(short_python_run.raw_points.items()):
        expected = smoother.smooth(points, frame / fps, face_size(points))
        largest = max(largest, float(np.abs(expected - cpp[frame, face_id]).max()))
        moved = max(moved, float(np.abs(expected - points).max()))
    assert moved > 0.5  # the filter did smooth: the check compares something
    assert largest <= 1e-3


@pytest.mark.parametrize("case", ["missing model", "bad card", "card of another format", "unreadable video", "bad flag"])
def test_bad_inputs_exit_non_zero_with_one_line(cpp_tracker, pfld_artifact, face_video, tmp_path, case):
    model, source, flags = str(pfld_artifact), str(face_video), []
    if case == "missing model":
        model = str(tmp_path / "absent.onnx")
    elif case in ("bad card", "card of another format"):
        copy = tmp_path / "model.onnx"
        shutil.copyfile(pfld_artifact, copy)
        card = Path(f"{pfld_artifact}.json").read_text()
        Path(f"{copy}.json").write_text(card[: len(card) // 2] if case == "bad card" else card.replace('"onnx"', '"openvino"'))
        model = str(copy)
    elif case == "unreadable video":
        source = str(tmp_path / "broken.mp4")
        Path(source).write_bytes(b"not a video" * 100)
    else:
        flags = ["--smooth", "gaussian"]
    finished = parity.cpp_track(source, model, "--csv", str(tmp_path / "out.csv"), *flags, binary=cpp_tracker)
    lines = finished.stderr.strip().splitlines()
    assert finished.returncode == (2 if case == "bad flag" else 1), finished.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), finished.stderr
    expected = {"missing model": "no such model file", "bad card": "not valid JSON", "card of another format": "is onnx",
                "unreadable video": "cannot open this video", "bad flag": "Unknown smoother 'gaussian'"}[case]
    assert expected in lines[0]
    assert not (tmp_path / "out.csv").exists() and not list(tmp_path.glob(".*partial*"))
