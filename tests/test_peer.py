"""``python -m runtime.tools.peer``: argument checks, the missing-venv error, the interleaved protocol and its report.

MediaPipe is not a project dependency. Most tests drive the command with a stand-in peer script (the
same two functions as ``peer_bench.py``, run by this Python); the real MediaPipe run is tested only
where the peer venv exists, and skipped with the commands to create it otherwise.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import SHARED
from runtime.tools.peer import PEER_VENV_COMMANDS, format_table, main

# Where this machine keeps the MediaPipe venv and the peer script (the tool itself takes them as arguments).
PEER_PYTHON = Path(os.environ.get("EDGEMARK_PEER_PYTHON", "/tmp/peers/bin/python"))
PEER_SCRIPT = Path(os.environ.get("EDGEMARK_PEER_SCRIPT", str(SHARED / "bench" / "peer_bench.py")))

# peer_bench.py's interface, minus MediaPipe: frames_of(path) -> frames, mediapipe_run(frames) -> (fps, found).
STAND_IN_PEER = textwrap.dedent(
    """
    import time
    import cv2

    def frames_of(path):
        capture = cv2.VideoCapture(path)
        frames = []
        while True:
            ok, frame = capture.read()
            if not ok:
                return frames
            frames.append(frame)

    def mediapipe_run(frames):
        started = time.perf_counter()
        time.sleep(0.002 * len(frames))
        return len(frames) / (time.perf_counter() - started), len(frames)
    """
)


def _peer_venv_reason() -> str:
    """Why the real MediaPipe test cannot run here ('' when it can)."""
    python = PEER_PYTHON
    if not python.is_file():
        return f"MediaPipe peer venv not found at {python} (MediaPipe is not a project dependency); create it: {PEER_VENV_COMMANDS}"
    if not PEER_SCRIPT.is_file():
        return f"peer script not found at {PEER_SCRIPT}"
    probe = subprocess.run([str(python), "-c", "import mediapipe"], capture_output=True, timeout=120)
    if probe.returncode != 0:
        return f"{python} cannot import mediapipe; recreate the venv: {PEER_VENV_COMMANDS}"
    return ""


@pytest.fixture()
def stand_in_peer(tmp_path) -> Path:
    script = tmp_path / "peer_bench_stand_in.py"
    script.write_text(STAND_IN_PEER)
    return script


def _last_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1] if lines else ""


def test_arguments_are_checked_before_any_process_starts(pfld_artifact, face_video, pfld_onnx, tmp_path, capsys):
    video, model = str(face_video), str(pfld_artifact)
    assert main(["--video", video]) == 2
    assert "at least one --model" in _last_error_line(capsys)
    assert main(["--video", video, "--model", model, "--model", model, "--backend", "onnxruntime", "--backend",
                 "openvino", "--backend", "onnxruntime"]) == 2  # fmt: skip
    assert "2 --model but 3 --backend" in _last_error_line(capsys)
    assert main(["--video", video, "--model", model, "--reps", "0"]) == 2
    assert "--reps must be at least 1" in _last_error_line(capsys)
    assert main(["--video", video, "--model", model, "--threads", "0"]) == 2
    assert "--threads" in _last_error_line(capsys)
    assert main(["--video", video, "--model", model, "--detector-scale", "1.5"]) == 2
    assert "--detector-scale" in _last_error_line(capsys)
    assert main(["--video", video, "--model", model, "--cpus", "0,x"]) == 2
    assert "--cpus takes core numbers" in _last_error_line(capsys)
    assert main(["--video", video, "--model", model, "--cpus", "4096"]) == 2
    assert "not available to this process" in _last_error_line(capsys)
    assert main(["--video", str(tmp_path / "missing.mp4"), "--model", model]) == 2
    assert "no such file" in _last_error_line(capsys)
    assert main(["--video", video, "--model", model, "--backend", "ort"]) == 2
    assert "Did you mean 'onnxruntime'?" in _last_error_line(capsys)
    assert main(["--video", video, "--model", model, "--smooth", "one_eur"]) == 2
    assert "Did you mean 'one_euro'?" in _last_error_line(capsys)
    no_card = tmp_path / "model.onnx"  # the third-party file as downloaded: no card
    no_card.write_bytes(pfld_onnx.read_bytes())
    assert main(["--video", video, "--model", str(no_card)]) == 2
    assert "card" in _last_error_line(capsys)


def test_missing_peer_venv_is_one_line_with_the_commands(pfld_artifact, face_video, tmp_path, capsys):
    missing = tmp_path / "no_venv" / "bin" / "python"
    code = main(["--video", str(face_video), "--model", str(pfld_artifact), "--peer-python", str(missing)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith("error: MediaPipe peer venv not found") and str(missing) in err[0]
    assert PEER_VENV_COMMANDS in err[0]  # the exact commands that create it
    code = main(["--video", str(face_video), "--model", str(pfld_artifact), "--peer-python", sys.executable,
                 "--peer-script", str(tmp_path / "nowhere.py")])  # fmt: skip
    assert code == 1 and "not found: pass --peer-script" in _last_error_line(capsys)


def test_the_peer_environment_is_an_argument_not_a_path_in_the_code(pfld_artifact, face_video, capsys, monkeypatch):
    monkeypatch.delenv("EDGEMARK_PEER_PYTHON", raising=False)
    code = main(["--video", str(face_video), "--model", str(pfld_artifact)])
    assert code == 1 and "pass --peer-python PATH (or set EDGEMARK_PEER_PYTHON)" in _last_error_line(capsys)


def test_interleaved_passes_and_report_with_a_stand_in_peer(pfld_artifact, face_video, stand_in_peer, tmp_path, capsys):
    broken = tmp_path / "broken.onnx"  # has a card but no model: its row fails, the others run
    broken.write_bytes(b"not an onnx model")
    Path(f"{broken}.json").write_text(Path(f"{pfld_artifact}.json").read_text())
    out = tmp_path / "peer.json"
    code = main([
        "--video", str(face_video), "--model", str(pfld_artifact), "--model", str(broken), "--backend", "onnxruntime",
        "--peer-python", sys.executable, "--peer-script", str(stand_in_peer), "--reps", "2", "--max-frames", "12",
        "--warmup-frames", "2", "--cpus", "0", "--json", str(out),
    ])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    report = json.loads(out.read_text())
    assert report["frames"] == 12 and report["reps"] == 2
    assert report["threads"]["ours"] == 1 == report["threads"]["mediapipe"]
    assert report["tracker"]["smoothing"] == "one_euro" and report["tracker"]["detector"] == "yunet"
    assert report["machine"]["usable_cpus"] >= 1 and report["machine"]["cpu"]
    assert report["command"].startswith("python -m runtime.tools.peer --video")
    peer = report["mediapipe"]
    assert len(peer["fps"]) == 2 and peer["median_fps"] > 0 and peer["faces_found"] == 12
    ours, failed = report["contenders"]
    assert ours["status"] == "ok" and ours["backend"] == "onnxruntime" and ours["precision"] == "fp32"
    assert len(ours["fps"]) == 2 and ours["faces_found"] == 12 and ours["infer_ms_median"] > 0
    assert ours["versions"]["onnxruntime"] and ours["versions"]["numpy"].startswith("2")
    assert len(ours["ratio_per_rep"]) == 2 and ours["ratio_median"] > 0
    assert report["cpus"] == [0] and ours["cpus"] == [0] and peer["cpus"] == [0]  # --cpus pinned both
    assert ours["ratio_median"] == pytest.approx(sorted(ours["ratio_per_rep"])[0] / 2 + sorted(ours["ratio_per_rep"])[1] / 2, abs=2e-3)
    assert failed["status"] == "failed" and "not a readable ONNX model" in failed["reason"] and failed["fps"] == []
    # Interleaved and never overlapping: MediaPipe pass 1, ours pass 1, MediaPipe pass 2, ours pass 2.
    windows = sorted([*peer["pass_times"], *ours["pass_times"]], key=lambda window: window[1])
    assert [window[0] for window in windows] == [0, 0, 1, 1]
    assert all(earlier[2] <= later[1] for earlier, later in zip(windows, windows[1:]))
    assert "MediaPipe" in printed and "pfld.onnx on onnxruntime" in printed and "failed:" in printed


def test_every_contender_failing_exits_1(face_video, pfld_artifact, stand_in_peer, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    Path(f"{broken}.json").write_text(Path(f"{pfld_artifact}.json").read_text())
    code = main(["--video", str(face_video), "--model", str(broken), "--peer-python", sys.executable,
                 "--peer-script", str(stand_in_peer), "--reps", "1", "--max-frames", "3", "--warmup-frames", "0"])  # fmt: skip
    assert code == 1


def test_a_peer_that_cannot_start_is_one_line(face_video, pfld_artifact, tmp_path, capsys):
    script = tmp_path / "peer_bench.py"
    script.write_text("import mediapipe_that_does_not_exist\n")
    code = main(["--video", str(face_video), "--model", str(pfld_artifact), "--peer-python", sys.executable,
                 "--peer-script", str(script), "--reps", "1", "--max-frames", "3"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 1 and err.startswith("error: the MediaPipe peer did not start") and "mediapipe_that_does_not_exist" in err


def test_table_names_the_machine_ratios_and_failures():
    report = {
        "video": "v.mp4", "frames": 10, "reps": 2, "tracker": {"redetect_every": 30},
        "machine": {"cpu": "Test CPU", "usable_cpus": 2, "isa": ["avx2"]},
        "load_average": {"start": [1.0], "end": [1.1]}, "threads": {"ours": 1, "mediapipe": 1},
        "mediapipe": {"versions": {"mediapipe": "0.10.14"}, "median_fps": 100.0, "min_fps": 90.0, "max_fps": 110.0,
                      "faces_found": 10},
        "contenders": [
            {"label": "a.onnx on onnxruntime", "backend": "onnxruntime", "status": "ok", "precision": "fp32",
             "median_fps": 150.0, "min_fps": 140.0, "max_fps": 160.0, "faces_found": 10, "ratio_median": 1.5},
            {"label": "b.xml on openvino", "backend": "openvino", "status": "failed", "reason": "no device"},
        ],
    }  # fmt: skip
    table = format_table(report)
    assert "Test CPU, 2 CPUs (avx2)" in table and "MediaPipe Face Mesh 0.10.14" in table
    assert "1.50x" in table and "b.xml on openvino" in table and "failed: no device" in table


def test_real_mediapipe_peer_json(pfld_artifact, face_video, tmp_path):
    reason = _peer_venv_reason()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "peer.json"
    code = main(["--video", str(face_video), "--model", str(pfld_artifact), "--reps", "1", "--max-frames", "30",
                 "--peer-python", str(PEER_PYTHON), "--peer-script", str(PEER_SCRIPT), "--json", str(out)])  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    assert report["mediapipe"]["versions"]["mediapipe"] == "0.10.14"
    assert report["mediapipe"]["versions"]["numpy"].startswith("1.")  # the peer's own numpy < 2
    assert report["mediapipe"]["faces_found"] == 30 and report["mediapipe"]["median_fps"] > 0
    (ours,) = report["contenders"]
    assert ours["status"] == "ok" and ours["faces_found"] == 30 and ours["ratio_median"] > 0


# --- the speed-ups behind the comparison keep the results -------------------------------------------------


@pytest.mark.parametrize("order", ["BGR", "RGB"])
def test_table_normalisation_is_bit_identical_to_the_formula(order):
    import numpy as np

    from runtime.crop import Normalisation, normalise

    normalisation = Normalisation(order, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    rng = np.random.default_rng(0)
    for crops in (rng.integers(0, 256, (1, 112, 112, 3), np.uint8), rng.integers(0, 256, (3, 40, 30, 3), np.uint8),
                  rng.integers(0, 256, (2, 50, 60, 3), np.uint8)[:, ::2, ::3]):  # fmt: skip
        channels = crops[..., ::-1] if order == "RGB" else crops
        mean, std = np.float32(normalisation.mean), np.float32(normalisation.std)
        expected = ((channels.astype(np.float32) / 255.0 - mean) / std).transpose(0, 3, 1, 2)
        tensor = normalise(crops, normalisation)
        assert tensor.dtype == np.float32 and tensor.flags.c_contiguous and np.array_equal(tensor, expected)


def test_full_tracker_confirms_near_its_tracks_with_the_same_results(pfld_artifact, video_frames):
    import numpy as np

    from runtime.backends.registry import load_backend
    from runtime.detect import make_detector
    from runtime.landmarker import Landmarker
    from runtime.tracker import Tracker, TrackerConfig, track_frames

    with load_backend(pfld_artifact, "onnxruntime", threads=1) as backend:
        config = TrackerConfig(max_faces=1, redetect_every=10)  # full after the first frame: confirmations only
        confirming = Tracker(Landmarker(backend), make_detector("haar", scale=0.5), config)
        searched = []
        original = confirming._detect_near_tracks
        confirming._detect_near_tracks = lambda image: searched.append(1) or original(image)
        whole_frame = Tracker(Landmarker(backend), make_detector("haar", scale=0.5), config)
        whole_frame._detect_near_tracks = lambda image: whole_frame.detector.detect(image)[0]
        frames = video_frames[:120]
        fast, reference = track_frames(confirming, frames), track_frames(whole_frame, frames)
    assert len(searched) == 11 and fast["faces_found"] == 120
    assert np.array_equal(fast["points"], reference["points"])


def test_openvino_single_face_request_matches_the_dynamic_batch(pfld_artifact):
    pytest.importorskip("openvino", reason="needs the openvino package")
    import numpy as np

    from runtime.backends.registry import load_backend

    with load_backend(pfld_artifact, "openvino", threads=1) as backend:
        assert backend.input_spec.fixed_batch is None and backend._single_request is not None
        assert backend.inference_precision == "f32"  # an fp32 card computes in fp32 even where bf16 is faster
        inputs = np.random.default_rng(0).standard_normal((3, 3, 112, 112)).astype(np.float32)
        name = backend.input_spec.name
        batch = next(iter(backend.infer({name: inputs}).values()))
        single = np.concatenate([next(iter(backend.infer({name: inputs[i : i + 1]}).values())) for i in range(3)])
    assert single.shape == batch.shape == (3, 196) and np.allclose(single, batch, atol=1e-5)


def test_a_scenario_is_composed_for_the_contenders(pfld_artifact, stand_in_peer, faces68_dir, tmp_path, capsys):
    """--video scenario:NAME runs every contender on footage runtime.scenario composes (issue 8, item 7)."""
    out = tmp_path / "peer.json"
    code = main([
        "--video", "scenario:two_faces", "--model", str(pfld_artifact), "--peer-python", sys.executable,
        "--peer-script", str(stand_in_peer), "--reps", "1", "--max-frames", "30", "--warmup-frames", "1",
        "--json", str(out),
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["frames"] == 30 and report["contenders"][0]["faces_found"] == 30
    assert report["video"].endswith("two_faces.mp4")
