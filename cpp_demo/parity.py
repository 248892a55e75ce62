"""Parity and speed of cpp_demo's edgemark_track against ``python -m runtime.track``.

    python cpp_demo/parity.py landmarks --model artifacts/pfld.onnx --video face.mp4 --detector yunet:FILE.onnx
    python cpp_demo/parity.py fps --model artifacts/pfld.xml --model artifacts/pfld_int8.xml --video face.mp4 ...

``landmarks`` runs the Python tracker with smoothing off, records the box every face was cropped from
(the detector's box for a new face, the previous frame's landmark box for a tracked one), feeds the
same boxes to the C++ tracker (``--boxes``) and prints the largest landmark difference in pixels.
``fps`` runs both command lines on the same video, model and engine (OpenVINO), alternating, and
prints their overall FPS side by side.

Not part of the library: a comparison tool, taking its environment (the built binary) as arguments.
"""
from __future__ import annotations

import argparse
import csv
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BINARY = HERE / "build" / "edgemark_track"
BOXES_HEADER = ["frame", "face_id", "box_kind", "x1", "y1", "x2", "y2"]


@dataclass
class PythonRun:
    """What the Python tracker did on each frame: faces by id, and the box each was cropped from."""

    raw_points: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)  # (frame, id) -> (K, 2)
    points: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)  # smoothed, as the CSV has them
    boxes: list[tuple[int, int, str, np.ndarray]] = field(default_factory=list)  # frame, id, kind, (4,)
    fps: float = 30.0


def python_run(model: str, video: str, detector: str, backend: str | None = None, smooth: str = "none",
               max_frames: int = 0) -> PythonRun:
    """Track ``video`` with runtime.tracker as runtime.track does, recording every crop box."""
    from runtime.backends.registry import load_backend
    from runtime.detect import make_detector
    from runtime.frames import read_video
    from runtime.landmarker import Landmarker
    from runtime.tracker import Tracker, TrackerConfig

    class RecordingLandmarker(Landmarker):
        """Keeps the detector boxes of new faces (the tracker crops them through ``predict``)."""

        def __init__(self, backend):
            super().__init__(backend)
            self.calls: list[tuple[np.ndarray, np.ndarray]] = []  # (boxes, points) of this frame's predict calls

        def predict(self, frame, boxes, box_kind="detector", conversion=None):
            result = super().predict(frame, boxes, box_kind, conversion)
            self.calls.append((np.asarray(boxes, dtype=np.float64), result.points))
            return result

    frames, fps = read_video(video, max_frames=max_frames)
    run = PythonRun(fps=fps)
    with load_backend(model, backend) as loaded:
        landmarker = RecordingLandmarker(loaded)
        tracker = Tracker(landmarker, make_detector(detector), TrackerConfig(smoothing=smooth, fps=fps))
        previous: dict[int, np.ndarray] = {}  # id -> landmark box of the last frame
        for index, frame in enumerate(frames):
            landmarker.calls.clear()
            result = tracker.process(frame, index / fps)
            for face in result.faces:
                if face.track_id in previous:
                    run.boxes.append((index, face.track_id, "landmarks", previous[face.track_id]))
                else:
                    box = next(boxes[i] for boxes, points in landmarker.calls for i in range(len(points))
                               if np.array_equal(points[i], face.raw_points))
                    run.boxes.append((index, face.track_id, "detector", box))
                run.raw_points[index, face.track_id] = face.raw_points
                run.points[index, face.track_id] = face.points
            previous = {face.track_id: face.box for face in result.faces}
    return run


def write_boxes(run: PythonRun, path: Path) -> Path:
    """The crop boxes of a Python run as edgemark_track's --boxes file (full precision)."""
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(BOXES_HEADER)
        for index, face_id, kind, box in run.boxes:
            writer.writerow([index, face_id, kind, *(repr(float(value)) for value in box)])
    return path


def read_tracker_csv(path: Path) -> dict[tuple[int, int], np.ndarray]:
    """(frame, id) -> (K, 2) points of a tracker CSV (a video's: no image column)."""
    with open(path, newline="") as stream:
        rows = list(csv.reader(stream))
    return {(int(row[0]), int(row[1])): np.asarray(row[3:], dtype=np.float64).reshape(-1, 2) for row in rows[1:]}


def cpp_track(source: str, model: str, *flags: str, binary: Path = BINARY) -> subprocess.CompletedProcess:
    """Run edgemark_track; returns the finished process (stdout, stderr, returncode)."""
    return subprocess.run([str(binary), source, "--model", model, *flags], capture_output=True, text=True)


def largest_difference(expected: dict, actual: dict) -> float:
    """Largest |x|, |y| difference in pixels over the faces of both runs (they must have the same faces)."""
    if set(expected) != set(actual):
        missing, extra = sorted(set(expected) - set(actual))[:5], sorted(set(actual) - set(expected))[:5]
        raise AssertionError(f"the runs found different faces: only in the first {missing}, only in the second {extra}")
    return max(float(np.abs(expected[key] - actual[key]).max()) for key in expected)


def overall_fps(stdout: str) -> float:
    """The 'N frames, ..., X FPS overall' figure both command lines print."""
    match = re.search(r"([\d.]+) FPS overall", stdout)
    if match is None:
        raise RuntimeError(f"no 'FPS overall' line in: {stdout[-300:]}")
    return float(match.group(1))


def compare_fps(models: list[str], video: str, detector: str, repeats: int, work: Path, threads: int = 0) -> list[dict]:
    """Both command lines on each model, alternating, ``repeats`` times each; median overall FPS."""
    rows = []
    for model in models:
        figures: dict[str, list[float]] = {"python": [], "cpp": []}
        for _ in range(repeats):
            common = [video, "--model", model, "--detector", detector, "--csv", str(work / "fps.csv"),
                      *(["--threads", str(threads)] if threads else [])]
            python = subprocess.run([sys.executable, "-m", "runtime.track", *common, "--backend", "openvino", "--no-show"],
                                    capture_output=True, text=True, check=True)
            figures["python"].append(overall_fps(python.stdout))
            cpp = subprocess.run([str(BINARY), *common], capture_output=True, text=True, check=True)
            figures["cpp"].append(overall_fps(cpp.stdout))
        rows.append({"model": model, **{name: statistics.median(values) for name, values in figures.items()},
                     "runs": figures})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["landmarks", "fps"])
    parser.add_argument("--model", action="append", required=True)
    parser.add_argument("--video", required=True)
    parser.add_argument("--detector", default="yunet")
    parser.add_argument("--backend", default=None, help="the Python tracker's backend for 'landmarks' (default: by suffix)")
    parser.add_argument("--max-frames", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="inference threads of both trackers (0: OpenVINO's default)")
    parser.add_argument("--work", default=".", help="folder for the runs' files")
    args = parser.parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.what == "fps":
        for row in compare_fps(args.model, args.video, args.detector, args.repeats, work, args.threads):
            print(f"{row['model']}: python {row['python']:.1f} FPS, C++ {row['cpp']:.1f} FPS "
                  f"(x{row['cpp'] / row['python']:.2f}; runs {row['runs']})")
        return 0
    for model in args.model:
        run = python_run(model, args.video, args.detector, args.backend, max_frames=args.max_frames)
        boxes = write_boxes(run, work / "boxes.csv")
        finished = cpp_track(args.video, model, "--smooth", "none", "--boxes", str(boxes), "--csv", str(work / "cpp.csv"),
                             *(["--max-frames", str(args.max_frames)] if args.max_frames else []))
        if finished.returncode:
            print(finished.stderr, file=sys.stderr)
            return finished.returncode
        cpp = read_tracker_csv(work / "cpp.csv")
        print(f"{model}: {len(run.raw_points)} faces, largest landmark difference "
              f"{largest_difference(run.raw_points, cpp):.3f} px (C++ CSV rounded to 0.01 px)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
