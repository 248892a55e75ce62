"""``python -m runtime.track``: landmarks on a webcam, a video or a folder of images.

Examples:
  python -m runtime.track webcam                                   # a window; default model (downloaded once)
  python -m runtime.track 1 --model pfld_int8.onnx --smooth kalman # camera index 1
  python -m runtime.track face.mp4 --out annotated.mp4 --csv landmarks.csv
  python -m runtime.track face.mp4 --no-show --csv landmarks.csv  # files only, even on a desktop
  python -m runtime.track photos/ --csv faces.csv                  # independent photographs, one row per face
  python -m runtime.track frames/ --frames --model model.xml --backend openvino --json landmarks.json
  python -m runtime.track crowd.mp4 --min-face 0.05 --max-faces 8          # smaller faces, more of them
  python -m runtime.track face.mp4 --detector haar                          # the offline fallback detector
  xvfb-run python -m runtime.track face.mp4 --show                # a window on a virtual display
  python -m runtime.track site_camera.mp4 --save-frames pseudo/ --save-every 10   # frames + .pts

Where a display exists (and OpenCV has a GUI: the opencv-python build) a window shows each frame
with its landmarks and the FPS; q, Esc or closing the window stops the run, and files are written
only when asked (--out, --csv, --json, --save-frames). --show insists on a window (without a
display: exit 2 and what to do); --no-show never opens one. Without a window and without any of
those flags, the annotated video and the per-frame landmarks are written to
<source>_landmarks.mp4 and .csv in the current folder, and one line says so. End of stream, q and
Ctrl-C write the outputs and exit 0. A bad frame is logged and skipped; the stream goes on. Files
are written under hidden .NAME.partial-PID names and renamed when complete; the partial files of a
killed run are removed by the next run that writes the same names. An existing output (or earlier
pseudo-labels in the --save-frames folder) is never replaced without --force: the run stops before
any work, naming it.

Faces are found by YuNet (fetched once by the model zoo; Haar, with a warning, when offline), up to
--max-faces of them (default 4); an id stays with one face: a shot cut or another face under a track
ends it, and the new face gets a new id.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import re
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

from runtime.detect import DEFAULT_DETECTOR
from runtime.errors import EdgemarkError, UsageError, cli_main
from runtime.outputs import add_force_flag, refuse_overwrite
from runtime.window import NoWindow, Window, display_available, why_no_window  # noqa: F401 (display_available: API)

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp")
MAX_CAMERA_INDEX = 4


class SourceError(EdgemarkError):
    """A camera, video or folder that cannot be read."""


class NoDisplayError(UsageError):
    """``--show`` where no window can be opened."""


@dataclass(frozen=True)
class TrackConfig:
    source: str
    model: str = ""  # empty: the default zoo model
    backend: str = ""
    device: str = "cpu"
    threads: int = 0
    detector: str = DEFAULT_DETECTOR
    detector_scale: float | None = None  # None: the detector's own (YuNet: matched to min_face)
    min_face: float | None = None  # smallest face as a fraction of the frame's shorter side (None: 0.1)
    smooth: str = "one_euro"
    redetect_every: int = 30
    max_faces: int = 4
    show: bool | None = None  # None: a window where a display exists; True: insist; False: never
    out: str = ""
    csv_path: str = ""
    json_path: str = ""
    save_frames: str = ""
    save_every: int = 10
    max_frames: int = 0
    frames: bool = False
    force: bool = False  # replace existing outputs (else refuse them before any work)


# ---------------------------------------------------------------------------------------------- sources
def open_source(source: str) -> tuple[Iterator[tuple[np.ndarray | None, float | None]], int, float, str]:
    """Frames of a camera, video file or image folder.

    Returns:
        (iterator of (frame or None for an unreadable one, timestamp in seconds or None),
        frame count or 0 when unknown, frames per second, a name for output files).
    """
    if source == "webcam" or source.isdigit():
        return _camera(source)
    path = Path(source)
    if path.is_dir():
        images = folder_images(path)
        return ((cv2.imread(str(p)), None) for p in images), len(images), 30.0, path.name
    if not path.exists():
        raise SourceError(f"{source}: no such file, folder or camera; expected 'webcam', a camera index, a video or an image folder")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise SourceError(f"{path}: OpenCV cannot open this video (unsupported codec or not a video file)")
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or 0
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    ok, first = capture.read()
    if not ok:
        capture.release()
        raise SourceError(f"{path}: OpenCV opened it but could not decode a single frame; is the file complete?")

    def frames():
        index = 0
        frame = first
        try:
            while frame is not None:
                yield frame, index / fps
                index += 1
                ok, frame = capture.read()
                if not ok:
                    return
        finally:
            capture.release()

    return frames(), count, fps, path.stem


def folder_images(folder: Path) -> list[Path]:
    """The images of a folder source, in the order they are tracked (sorted by name)."""
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise SourceError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return images


def _camera(source: str):
    indices = [int(source)] if source.isdigit() else list(range(MAX_CAMERA_INDEX))
    tried = []
    for index in indices:
        capture = cv2.VideoCapture(index)
        if capture.isOpened():
            ok, first = capture.read()
            if ok:
                fps = capture.get(cv2.CAP_PROP_FPS) or 30.0

                def frames(capture=capture, first=first):
                    started = time.perf_counter()
                    frame = first
                    try:
                        while True:
                            yield frame, time.perf_counter() - started
                            ok, frame = capture.read()
                            if not ok:
                                yield None, time.perf_counter() - started  # a dropped frame, keep going
                    finally:
                        capture.release()

                return frames(), 0, fps, f"camera{index}"
        capture.release()
        tried.append(str(index))
    devices = sorted(str(p) for p in Path("/dev").glob("video*"))
    raise SourceError(
        f"no camera could be opened (tried index {', '.join(tried)} through OpenCV; /dev/video*: "
        f"{', '.join(devices) or 'none'}); pass a video file or an image folder instead"
    )


# ---------------------------------------------------------------------------------------------- outputs
def draw(frame: np.ndarray, faces, fps: float) -> np.ndarray:
    """The frame with each face's landmarks, id and the FPS drawn on it."""
    canvas = frame.copy()
    radius = max(1, round(min(frame.shape[:2]) / 300))
    for face in faces:
        for x, y in face.points:
            cv2.circle(canvas, (int(round(x)), int(round(y))), radius, (0, 255, 0), -1, cv2.LINE_AA)
        x1, y1 = face.box[:2]
        cv2.putText(canvas, f"#{face.track_id}", (int(x1), max(12, int(y1) - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (0, 255, 255), 1, cv2.LINE_AA)
    cv2.putText(canvas, f"{fps:5.1f} FPS", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 255), 2, cv2.LINE_AA)
    return canvas


class Outputs:
    """Annotated video, CSV and JSON, written as frames arrive to temporary files renamed on close.

    Rows go to disk frame by frame, so memory stays flat however long a webcam session runs (every
    row used to be held until the end: 133 -> 408 MB over a 4,950-frame soak). Until :meth:`close`
    the files carry hidden ``.NAME.partial-PID.EXT`` names, so a killed run never leaves a
    half-written file under the final name; the partial files of a run whose process is gone are
    removed when the next run writing the same names starts. A run that fails removes its own.

    Args:
        config: what to write.
        fps: the video's frame rate.
        num_points: landmarks per face (the card's), for the CSV header.
        images: the names of an image folder's images, one per frame, for the CSV's image column.
    """

    def __init__(self, config: TrackConfig, fps: float, num_points: int, images: list[str] | None = None):
        self.config = config
        # Image folders name each row's image; as stills, an image without a face gets a row too.
        self.images = images
        self.stills = images is not None and not config.frames
        self.fps = fps
        self.video = None
        self.size: tuple[int, int] | None = None
        self.temporary: dict[str, Path] = {}
        self._csv_stream = self._csv_writer = self._json_stream = None
        self._json_frames = 0
        for final in (config.out, config.csv_path, config.json_path):
            if final:
                remove_stale_partials(Path(final))
        try:
            if config.csv_path:
                self._csv_stream = open(self._temporary(config.csv_path), "w", newline="")
                self._csv_writer = csv.writer(self._csv_stream)
                self._csv_writer.writerow(
                    ["frame", *(["image"] if images is not None else []), "face_id", "confidence",
                     *[f"{a}{i}" for i in range(num_points) for a in "xy"]]
                )
            if config.json_path:
                self._json_stream = open(self._temporary(config.json_path), "w")
                self._json_stream.write('{"frames": [')
        except BaseException:
            self.abort()
            raise

    def _temporary(self, final: str) -> Path:
        path = Path(final)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = partial_path(path, os.getpid())
        self.temporary[final] = temporary
        return temporary

    def _open_video(self, frame: np.ndarray) -> None:
        """Start the annotated video at the first usable frame: the tracker rejects frames too small to
        hold a face (runtime.tracker.MIN_FRAME_SIDE), which mp4v could not encode either, so a 1x1 first
        image neither fails the writer nor shrinks every later frame to its size."""
        height, width = frame.shape[:2]
        video = cv2.VideoWriter(
            str(self._temporary(self.config.out)), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height)
        )
        if not video.isOpened():
            raise SourceError(f"{self.config.out}: OpenCV cannot write a {width}x{height} video under this name "
                              "(try a .mp4 or .avi name)")
        self.video, self.size = video, (width, height)

    def write(self, frame: np.ndarray | None, result, fps: float) -> None:
        if self.config.out and frame is not None:
            if self.video is None:
                self._open_video(frame)
            canvas = draw(frame, result.faces, fps)
            if canvas.shape[1::-1] != self.size:  # a size change mid-stream: keep the file's size
                canvas = cv2.resize(canvas, self.size)
            self.video.write(canvas)
        image = [self.images[result.index]] if self.images is not None and result.index < len(self.images) else []
        if self._csv_writer is not None:
            self._csv_writer.writerows(
                [result.index, *image, face.track_id, f"{face.confidence:.4f}", *np.round(face.points.reshape(-1), 2).tolist()]
                for face in result.faces
            )
            if self.stills and not result.faces:  # an image without a face: a row that says so (no id, no points)
                reason = "no face" if not result.error else "too small" if result.error.startswith("too small") else "unreadable"
                self._csv_writer.writerow([result.index, *image, "", reason])
        if self.config.save_frames and frame is not None and result.faces and result.index % self.config.save_every == 0:
            save_pseudo_label(Path(self.config.save_frames), result.index, frame, result.faces[0].raw_points)
        if self._json_stream is not None:
            record = {
                "frame": result.index,
                **({"image": image[0]} if image else {}),
                "error": result.error or None,
                "faces": [{"id": f.track_id, "confidence": None if np.isnan(f.confidence) else f.confidence,
                           "points": np.round(f.points, 2).tolist()} for f in result.faces],
            }
            self._json_stream.write(("," if self._json_frames else "") + json.dumps(record))
            self._json_frames += 1

    def close(self) -> list[str]:
        """Finish every output, then move each into place; returns the paths written.

        Every file is complete before any is renamed, so a failure while finishing one never leaves
        another already in place beside it.
        """
        finished = []
        if self.video is not None:
            self.video.release()
            self.video = None
            finished.append(self.config.out)
        elif self.config.out:
            logger.warning("%s not written: no usable frame to make a video of", self.config.out)
        if self._csv_stream is not None:
            self._csv_stream.close()
            self._csv_stream = None
            finished.append(self.config.csv_path)
        if self._json_stream is not None:
            self._json_stream.write("]}")
            self._json_stream.close()
            self._json_stream = None
            finished.append(self.config.json_path)
        for path in finished:
            os.replace(self.temporary.pop(path), path)
        return finished

    def abort(self) -> None:
        """Close every output and remove its partial file: a failed run leaves nothing behind."""
        if self.video is not None:
            self.video.release()
            self.video = None
        for stream in (self._csv_stream, self._json_stream):
            if stream is not None:
                stream.close()
        self._csv_stream = self._json_stream = None
        for temporary in self.temporary.values():
            temporary.unlink(missing_ok=True)
        self.temporary.clear()


def partial_path(final: Path, pid: int) -> Path:
    """The hidden name ``final`` is written under by process ``pid`` until it is complete."""
    return final.with_name(f".{final.stem}.partial-{pid}{final.suffix}")


def remove_stale_partials(final: Path) -> list[Path]:
    """Remove the partial files of ``final`` that runs killed before their end left behind.

    A partial file names the process writing it; one whose process is gone is stale (the unnamed
    ``.NAME.partial.EXT`` of earlier versions too). Files of runs still going are left alone.

    Returns:
        The files removed (one line is logged for each).
    """
    if not final.parent.is_dir():
        return []
    pattern = re.compile(rf"\.{re.escape(final.stem)}\.partial(?:-(\d+))?{re.escape(final.suffix)}")
    removed = []
    for candidate in sorted(final.parent.iterdir()):
        match = pattern.fullmatch(candidate.name)
        if match is None or (match.group(1) is not None and process_alive(int(match.group(1)))):
            continue
        try:
            size = candidate.stat().st_size
            candidate.unlink()
        except FileNotFoundError:
            continue  # another run cleaned it up first
        except OSError as error:
            logger.warning("could not remove %s, left by a killed run: %s", candidate, error)
            continue
        owner = f"process {match.group(1)}" if match.group(1) else "a run of an earlier version"
        logger.info("removed %s (%.1f MB), left by %s that ended before finishing it", candidate, size / 1e6, owner)
        removed.append(candidate)
    return removed


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (ours counts; one we may not signal exists)."""
    if pid == os.getpid():
        return True
    if sys.platform == "win32":
        return True  # os.kill(pid, 0) would terminate it there; keep the file rather than guess
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def earlier_pseudo_labels(folder: str) -> list[Path]:
    """The ``frame_*.pts`` pseudo-labels an earlier ``--save-frames`` run left in ``folder`` (a new run would
    replace those of the same frame numbers and mix with the rest)."""
    return sorted(Path(folder).glob("frame_*.pts")) if folder and Path(folder).is_dir() else []


def save_pseudo_label(folder: Path, index: int, frame: np.ndarray, points: np.ndarray) -> None:
    """Write a frame and its tracked landmarks as ``frame_<index>.png`` + iBUG ``.pts``.

    Pseudo-labels of deployment footage: ``python -m calib build --proxies FOLDER`` styles them into a
    calibration set drawn from the scenes the model will see, disjoint from any annotated evaluation set.
    """
    from runtime.card import atomic_write_bytes

    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"frame_{index:06d}"
    ok, encoded = cv2.imencode(".png", frame)
    if not ok:
        raise SourceError(f"{stem}.png: OpenCV could not encode the frame")
    lines = ["version: 1", f"n_points: {len(points)}", "{", *(f"{x:.3f} {y:.3f}" for x, y in points), "}", ""]
    atomic_write_bytes(stem.with_suffix(".pts"), "\n".join(lines).encode())
    atomic_write_bytes(stem.with_suffix(".png"), encoded.tobytes())


# ---------------------------------------------------------------------------------------------- main loop
def window_wanted(show: bool | None) -> NoWindow | None:
    """None when a window is to be opened for ``--show``/``--no-show``/neither, else why not.

    Raises:
        NoDisplayError: ``--show`` where no window can be opened.
    """
    if show is False:
        return NoWindow("--no-show", "")
    no_window = why_no_window()
    if no_window is not None and show:
        raise NoDisplayError(
            f"--show: {no_window.reason}; for a window, {no_window.fix}; or drop --show to write files "
            "(default <source>_landmarks.mp4 and .csv; choose with --out/--csv/--json)"
        )
    return no_window


def run_tracker(config: TrackConfig) -> dict:
    """Track ``config.source``, show it in a window and/or write the requested outputs; returns a summary.

    Raises:
        NoDisplayError: ``config.show`` is True where no window can be opened (checked before any work).
    """
    from runtime.backends.registry import load_backend
    from runtime.detect import make_detector
    from runtime.landmarker import Landmarker
    from runtime.tracker import Tracker, TrackerConfig

    no_window = window_wanted(config.show)
    show = no_window is None
    frames, count, fps, name = open_source(config.source)
    if not show and not (config.out or config.csv_path or config.json_path or config.save_frames):
        config = replace(config, out=f"{name}_landmarks.mp4", csv_path=f"{name}_landmarks.csv")
        how = f"; for a window instead, {no_window.fix}" if no_window.fix else ""
        logger.info("%s: writing %s and %s (choose the files with --out/--csv/--json%s)", no_window.reason,
                    config.out, config.csv_path, how)
    refuse_overwrite([config.out, config.csv_path, config.json_path, *earlier_pseudo_labels(config.save_frames)],
                     config.force)
    model = config.model
    if not model:
        from runtime.zoo import fetch_model

        model = str(fetch_model())
    backend = load_backend(model, config.backend or None, device=config.device, threads=config.threads or None)
    detector = make_detector(config.detector, scale=config.detector_scale, min_size=config.min_face)
    tracker = Tracker(Landmarker(backend), detector, TrackerConfig(
        smoothing=config.smooth, fps=fps, redetect_every=config.redetect_every, max_faces=config.max_faces))
    folder = Path(config.source) if Path(config.source).is_dir() else None
    # An image folder is a set of independent photographs unless --frames says it is one video's frames.
    stills = folder is not None and not config.frames
    images = [path.name for path in folder_images(folder)] if folder is not None else None
    outputs = progress = window = None
    processed = with_faces = bad = 0
    smoothed_fps = 0.0
    started = time.perf_counter()
    try:
        outputs = Outputs(config, fps, backend.card.num_points, images)
        try:
            if show:
                window = Window(f"edgemark: {name} (q or Esc quits)")
            elif count:
                from tqdm import tqdm

                progress = tqdm(total=min(count, config.max_frames or count), desc="tracking", unit="frame", leave=False)
            for frame, timestamp in frames:
                if stills:
                    tracker.reset()  # no track, and so no smoothing, carries from one photograph to the next
                result = tracker.process(frame, timestamp)
                processed += 1
                with_faces += bool(result.faces)
                bad += bool(result.error)
                instant = 1.0 / max(result.seconds, 1e-6)
                smoothed_fps = instant if smoothed_fps == 0 else 0.9 * smoothed_fps + 0.1 * instant
                usable = None if result.error else tracker_frame(frame)
                outputs.write(usable, result, smoothed_fps)
                if window is not None and not window.show(None if usable is None else draw(usable, result.faces, smoothed_fps)):
                    logger.info("window closed (q, Esc or its close button) after %d frames", processed)
                    break
                if progress is not None:
                    progress.update(1)
                if config.max_frames and processed >= config.max_frames:
                    break
        except KeyboardInterrupt:
            logger.info("interrupted: writing what was tracked so far")
        if processed and not with_faces:  # decided before any file is committed: a failed run writes none
            _nothing_found(config, model, processed, tracker.non_finite_faces, stills)
        written = outputs.close()
    except BaseException:
        if outputs is not None:
            outputs.abort()
        raise
    finally:
        if progress is not None:
            progress.close()
        if window is not None:
            window.close()
        backend.close()
    seconds = time.perf_counter() - started
    return {"frames": processed, "frames_with_faces": with_faces, "bad_frames": bad, "seconds": seconds,
            "written": written}


def _nothing_found(config: TrackConfig, model: str, processed: int, non_finite_faces: int, stills: bool) -> None:
    """A run without a single face: the model's fault (NaN landmarks) or the footage's, said in one line.

    Raises:
        SourceError: unless the source is a folder of stills (each image then has a 'no face' row).
    """
    if non_finite_faces:
        raise SourceError(
            f"{model}: the model gave NaN or infinite landmarks for all {non_finite_faces} face(s) the detector "
            "found; the artifact is broken, not the footage: check it with python -m export.verify, or re-export it"
        )
    if stills:
        logger.warning("no face found in any of the %d images (detector '%s'); each has a 'no face' row",
                       processed, config.detector)
        return
    raise SourceError(f"{config.source}: no face found in any of {processed} frames (detector '{config.detector}'); "
                      "check the lighting, or try --min-face 0.05 for small faces")


def tracker_frame(frame) -> np.ndarray | None:
    """The frame as it should be drawn on (BGR uint8), or None when it cannot be drawn."""
    from runtime.landmarker import FrameError, as_bgr

    try:
        return as_bgr(frame)
    except FrameError:
        return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.track", description="Track facial landmarks in a video, camera or image folder.",
        epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", nargs="?", default="webcam", help="webcam, a camera index, a video file or an image folder")
    parser.add_argument("--model", default="", help="artifact with a card (.onnx, .xml, .engine, .pt); default: the zoo's PFLD-GhostOne")
    parser.add_argument("--backend", default="", help="onnxruntime, openvino, tensorrt or torch (default: by file suffix)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, GPU (backend-specific)")
    parser.add_argument("--threads", type=int, default=0, help="inference threads (0: backend default)")
    parser.add_argument("--detector", default=DEFAULT_DETECTOR,
                        help="yunet (default, from the model zoo; Haar when offline), yunet:FILE.onnx, haar or haar:FILE.xml")
    parser.add_argument("--detector-scale", type=float, default=None,
                        help="detect on a copy scaled by this (default: YuNet sized so the smallest face is 32 px)")
    parser.add_argument("--min-face", type=float, default=None,
                        help="smallest face to find, as a fraction of the frame's shorter side (default 0.1)")
    parser.add_argument("--smooth", default="one_euro", help="one_euro, ema, kalman or none")
    parser.add_argument("--redetect-every", type=int, default=30, help="re-run the detector every N frames (0: only when lost)")
    parser.add_argument("--max-faces", type=int, default=4)
    parser.add_argument(
        "--show", action=argparse.BooleanOptionalAction, default=None,
        help="--show: a window, or exit 2 where none can open; --no-show: never a window; default: a window where "
        "a display exists (then files only when asked), else the default files",
    )
    parser.add_argument("--out", default="", help="annotated video to write (.mp4)")
    parser.add_argument("--csv", dest="csv_path", default="", help="per-frame landmarks as CSV")
    parser.add_argument("--json", dest="json_path", default="", help="per-frame landmarks as JSON")
    parser.add_argument("--save-frames", default="", metavar="DIR",
                        help="write every Nth frame with its landmarks as .png + .pts (pseudo-labels for calib)")
    parser.add_argument("--save-every", type=int, default=10, help="N for --save-frames")
    parser.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0: end of stream)")
    add_force_flag(parser)
    parser.add_argument(
        "--frames",
        action="store_true",
        help="an image folder is the frames of one video (tracks and smoothing carry over); default: independent "
        "photographs, each detected on its own",
    )
    return parser


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = TrackConfig(**vars(args))
    if (
        config.redetect_every < 0 or config.max_faces < 1 or config.save_every < 1 or config.max_frames < 0
        or (config.detector_scale is not None and not 0 < config.detector_scale <= 1)
        or (config.min_face is not None and not 0 < config.min_face < 1)
    ):  # fmt: skip
        raise UsageError(
            "--redetect-every must be >= 0, --max-faces >= 1, --save-every >= 1, --max-frames >= 0 (0: all), "
            "--detector-scale in (0, 1] and --min-face in (0, 1)"
        )
    summary = run_tracker(config)
    print(f"{summary['frames']} frames, a face in {summary['frames_with_faces']}, {summary['bad_frames']} bad, "
          f"{summary['frames'] / max(summary['seconds'], 1e-9):.1f} FPS overall")
    for path in summary["written"]:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
