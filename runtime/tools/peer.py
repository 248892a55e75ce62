"""``python -m runtime.tools.peer``: our end-to-end tracker against MediaPipe Face Mesh, side by side.

Examples::

    export EDGEMARK_PEER_PYTHON=/opt/mediapipe-venv/bin/python EDGEMARK_PEER_SCRIPT=bench/peer_bench.py
    python -m runtime.tools.peer --video face.mp4 --model pfld.onnx
    python -m runtime.tools.peer --video face.mp4 --peer-python /opt/mp/bin/python --peer-script peer_bench.py \\
        --model pfld.onnx --backend onnxruntime --model pfld_int8.xml --backend openvino --json peer.json
    python -m runtime.tools.peer --video scenario:multishot_360 --model pfld_int8.xml   # multi-shot, several people

What is timed is the end-to-end figure of :func:`runtime.tracker.track_frames`: detect, track by the
previous landmarks, crop, infer, decode and smooth every frame of a video decoded into memory
beforehand, with no display or writing. The peer is a ``peer_bench.py`` script's
``mediapipe_run`` (MediaPipe Face Mesh 0.10.14, one face, frames pre-decoded the same way), run by
the Python of the peer's own virtual environment: MediaPipe's last release with the bundled Face
Mesh models needs numpy < 2, so it can never share the project's environment.

Every contender runs in its own long-lived process that decodes the video and warms up once; the
parent then asks them for one timed pass each in turn (MediaPipe, ours, ours, ..., MediaPipe, ours,
...), so passes never overlap and slow drifts of a shared machine hit every contender alike. The ratio
is taken per repetition (ours / the MediaPipe pass just before) and reported as the median.

Settings: our tracker runs as ``python -m runtime.track`` does (YuNet sized to the smallest face, One Euro
smoothing, re-detection every 30 frames) except that it follows one face, as the peer's
``FaceMesh(max_num_faces=1)`` does; ``--max-faces`` and the other tracker flags change that.

Threads: MediaPipe's CPU inference (TFLite with XNNPACK) runs one thread on Linux desktops and its
Python API cannot change that, so our engine gets ``--threads 1`` by default as well. ``--cpus``
pins every contender to the same cores.

Size: one module on purpose (~680 lines): the parent's scheduler and the driver code each contender's
process runs speak one line protocol, which changes on both sides at once.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import queue
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from runtime.detect import DEFAULT_DETECTOR
from runtime.errors import EdgemarkError, UsageError, cli_main
from runtime.machine import machine_description

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
# The peer's environment comes from the command line or these variables, never from this file.
PEER_PYTHON_ENV = "EDGEMARK_PEER_PYTHON"
PEER_SCRIPT_ENV = "EDGEMARK_PEER_SCRIPT"
PEER_VENV_COMMANDS = (
    'python3 -m venv PEER_VENV && PEER_VENV/bin/pip install "mediapipe==0.10.14" "numpy<2" '
    '"opencv-contrib-python<4.11" onnxruntime'
)
MESSAGE_PREFIX = "@@peer "  # protocol lines on a worker's stdout; anything else there is ignored
MEDIAPIPE_INFERENCE_THREADS = 1  # XNNPACK's default on Linux desktops (mediapipe inference_calculator_utils.cc)


class PeerError(EdgemarkError):
    """The peer cannot be run: no peer venv, no peer script, or a contender process that died."""


@dataclass(frozen=True)
class Contender:
    """One of our artifacts on one backend (``backend`` empty: chosen by the file suffix)."""

    model: str
    backend: str = ""

    @property
    def label(self) -> str:
        return f"{Path(self.model).name} on {self.backend or 'auto'}"


@dataclass(frozen=True)
class PeerConfig:
    """What ``python -m runtime.tools.peer`` measures and how.

    Attributes:
        video: the video, decoded into memory by every contender.
        contenders: our artifacts and backends, measured in this order after MediaPipe.
        peer_python: the Python of the peer venv (MediaPipe 0.10.14, numpy < 2).
        peer_script: ``peer_bench.py``, whose ``frames_of`` and ``mediapipe_run`` are the peer.
        reps: timed passes per contender.
        max_frames: use only the first N frames (0: all).
        warmup_frames: frames each contender runs once before the first timed pass.
        threads: intra-op inference threads of our engine.
        cpus: cores every contender is pinned to (empty: no pinning).
        detector, detector_scale, smoothing, redetect_every, max_faces: our tracker's settings.
        plain_onnx: also time peer_bench.py's plain ONNX Runtime loop on this ONNX model ("" : not).
        json_path: where to write the JSON report ("" : nowhere).
        timeout_s: most seconds one worker may take to start or to finish one pass.
    """

    video: str
    contenders: tuple[Contender, ...]
    peer_python: str = ""
    peer_script: str = ""
    reps: int = 5
    max_frames: int = 0
    warmup_frames: int = 10
    threads: int = 1
    cpus: tuple[int, ...] = ()
    detector: str = DEFAULT_DETECTOR
    detector_scale: float | None = None
    smoothing: str = "one_euro"
    redetect_every: int = 30
    max_faces: int = 1
    plain_onnx: str = ""
    json_path: str = ""
    timeout_s: float = 600.0

    def tracker(self) -> dict:
        """The tracker settings every one of our contenders uses (recorded in the report)."""
        return {
            "detector": self.detector,
            "detector_scale": self.detector_scale,
            "smoothing": self.smoothing,
            "redetect_every": self.redetect_every,
            "max_faces": self.max_faces,
        }


# ---------------------------------------------------------------------------------------------- checks
def missing_peer_message(peer_python: str) -> str:
    """The one-line error for a missing peer venv, with the commands that create it."""
    return (
        f"MediaPipe peer venv not found: {peer_python} does not exist. Create it (it needs numpy<2, so it "
        f"stays apart from the project's environment) with: {PEER_VENV_COMMANDS} "
        "(or pass --peer-python PATH to an existing one)"
    )


def check_config(config: PeerConfig) -> None:
    """Reject what cannot work before any process starts.

    Raises:
        UsageError: bad numbers, a missing video or model, a model no backend reads, unknown names.
        PeerError: no peer venv or no peer script.
    """
    from runtime.backends.registry import choose_backend
    from runtime.card import CardError, read_card, sidecar_path
    from runtime.detect import parse_spec
    from runtime.smoothing import smoother_params

    if not config.contenders:
        raise UsageError("give at least one --model ARTIFACT to measure against MediaPipe")
    if config.reps < 1:
        raise UsageError(f"--reps must be at least 1, got {config.reps}")
    if config.max_frames < 0 or config.warmup_frames < 0:
        raise UsageError("--max-frames and --warmup-frames must be >= 0 (0 for --max-frames: every frame)")
    if config.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {config.threads}")
    if config.detector_scale is not None and not 0 < config.detector_scale <= 1:
        raise UsageError(f"--detector-scale must be in (0, 1], got {config.detector_scale}")
    if config.redetect_every < 0 or config.max_faces < 1:
        raise UsageError("--redetect-every must be >= 0 and --max-faces >= 1")
    if config.cpus:
        allowed = sorted(os.sched_getaffinity(0))
        outside = sorted(set(config.cpus) - set(allowed))
        if outside:
            raise UsageError(f"--cpus {outside} are not available to this process; available: {allowed}")
    parse_spec(config.detector)
    smoother_params(config.smoothing)
    if not Path(config.video).is_file():
        raise UsageError(f"--video {config.video}: no such file")
    for contender in config.contenders:
        if not Path(contender.model).is_file():
            raise UsageError(f"--model {contender.model}: no such file")
        choose_backend(contender.model, contender.backend or None)
        if sidecar_path(contender.model).is_file():
            continue  # a card is there; a model that fails to load becomes a failed row, not a usage error
        try:
            read_card(contender.model, verify=False)
        except CardError as error:
            raise UsageError(f"--model {contender.model}: {error}") from None
    if config.plain_onnx and not Path(config.plain_onnx).is_file():
        raise UsageError(f"--plain-onnx {config.plain_onnx}: no such file")
    if not config.peer_python:
        raise PeerError(
            f"no MediaPipe peer venv given: pass --peer-python PATH (or set {PEER_PYTHON_ENV}); to make one: "
            f"{PEER_VENV_COMMANDS}"
        )
    if not Path(config.peer_python).is_file():
        raise PeerError(missing_peer_message(config.peer_python))
    if not config.peer_script or not Path(config.peer_script).is_file():
        raise PeerError(
            f"peer script {config.peer_script or '(none given)'} not found: pass --peer-script PATH to the "
            f"peer_bench.py that defines frames_of and mediapipe_run (or set {PEER_SCRIPT_ENV})"
        )


# ---------------------------------------------------------------------------------------------- workers
# The peer's side, run by the peer venv's Python: peer_bench.py's own functions, driven over stdin/stdout.
PEER_DRIVER = r"""
import importlib.util, json, os, sys, time
spec = json.loads(sys.argv[1])
if spec["cpus"]:  # before any thread starts, so that every thread inherits it
    os.sched_setaffinity(0, spec["cpus"])
def say(**message):
    print("@@peer " + json.dumps(message), flush=True)
try:
    module_spec = importlib.util.spec_from_file_location("peer_bench", spec["script"])
    bench = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(bench)
    frames = bench.frames_of(spec["video"])
    if spec["max_frames"]:
        frames = frames[: spec["max_frames"]]
    if not frames:
        raise RuntimeError("no frames decoded from " + spec["video"])
    ghost = bench.Ghost(spec["plain_onnx"]) if spec["plain_onnx"] else None
    run = (lambda f: bench.mediapipe_run(f)) if ghost is None else ghost.run
    if spec["warmup_frames"]:
        run(frames[: spec["warmup_frames"]])
    import cv2, numpy, onnxruntime
    versions = {"python": sys.version.split()[0], "numpy": numpy.__version__, "opencv": cv2.__version__,
                "onnxruntime": onnxruntime.__version__}
    try:
        import mediapipe
        versions["mediapipe"] = mediapipe.__version__
    except Exception:
        pass
except Exception as error:
    say(error=f"{type(error).__name__}: {error}")
    sys.exit(1)
say(ready=True, frames=len(frames), versions=versions, cpus=sorted(os.sched_getaffinity(0)))
for line in sys.stdin:
    if line.strip() != "run":
        break
    started = time.time()
    fps, found = run(frames)
    say(fps=fps, faces_found=int(found), frames=len(frames), start=started, end=time.time())
"""

# Our side, run by this Python.
OURS_DRIVER = "import sys; from runtime.tools.peer import serve_tracker; serve_tracker(sys.argv[1])"


def _say(**message) -> None:
    print(MESSAGE_PREFIX + json.dumps(message), flush=True)


def decode_video(path: str, max_frames: int = 0) -> list:
    """Every frame of ``path`` (the first ``max_frames`` when > 0), decoded once with OpenCV."""
    from runtime.frames import read_video

    return read_video(path, max_frames)[0]


def serve_tracker(spec_json: str) -> None:
    """Worker loop of one of our contenders: load, warm up, then one timed pass per ``run`` line on stdin."""
    spec = json.loads(spec_json)
    if spec["cpus"]:  # before any engine starts a thread, so that every thread inherits it
        os.sched_setaffinity(0, spec["cpus"])
    try:
        import cv2
        import numpy

        from runtime.backends.registry import load_backend
        from runtime.detect import make_detector
        from runtime.landmarker import Landmarker
        from runtime.tracker import Tracker, TrackerConfig, track_frames

        frames = decode_video(spec["video"], spec["max_frames"])
        if not frames:
            raise PeerError(f"no frames decoded from {spec['video']}")
        backend = load_backend(spec["model"], spec["backend"] or None, device="cpu", threads=spec["threads"])
        tracker_settings = spec["tracker"]
        tracker = Tracker(
            Landmarker(backend),
            make_detector(tracker_settings["detector"], scale=tracker_settings["detector_scale"]),
            TrackerConfig(
                smoothing=tracker_settings["smoothing"],
                redetect_every=tracker_settings["redetect_every"],
                max_faces=tracker_settings["max_faces"],
            ),
        )
        if spec["warmup_frames"]:
            track_frames(tracker, frames[: spec["warmup_frames"]])
        versions = {"python": platform.python_version(), "numpy": numpy.__version__, "opencv": cv2.__version__}
        engine = {"onnxruntime": "onnxruntime", "openvino": "openvino"}.get(backend.name)
        if engine:
            versions[engine] = __import__(engine).__version__
    except Exception as error:  # noqa: BLE001 - any failure becomes the contender's row, not a crash
        _say(error=f"{type(error).__name__}: {error}")
        sys.exit(1)
    _say(
        ready=True, frames=len(frames), versions=versions, backend=backend.name, model=spec["model"],
        precision=backend.card.precision, input_size=backend.card.input_size,
        compute_precision=str(getattr(backend, "inference_precision", "")) or None,
        cpus=sorted(os.sched_getaffinity(0)),
    )  # fmt: skip
    for line in sys.stdin:
        if line.strip() != "run":
            break
        started = time.time()
        result = track_frames(tracker, frames)
        _say(
            fps=result["fps"], faces_found=result["faces_found"], frames=result["frames"],
            infer_ms=1000.0 * result["infer_seconds"] / max(result["frames"], 1), start=started, end=time.time(),
        )  # fmt: skip
    backend.close()


class Worker:
    """A contender's process: started once, asked for one timed pass at a time."""

    def __init__(self, name: str, command: list[str], timeout_s: float):
        self.name = name
        self.timeout_s = timeout_s
        self.ready: dict = {}
        self.error = ""
        self._stderr = tempfile.TemporaryFile(mode="w+")
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1,
            cwd=REPO, env=environment,
        )  # fmt: skip
        self._messages: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self._process.stdout:
            if line.startswith(MESSAGE_PREFIX):
                self._messages.put(json.loads(line[len(MESSAGE_PREFIX) :]))
        self._messages.put(None)  # end of stream

    def _message(self) -> dict:
        try:
            message = self._messages.get(timeout=self.timeout_s)
        except queue.Empty:
            self.close()
            return {"error": f"no answer within {self.timeout_s:.0f} s"}
        if message is None:
            return {"error": f"the process exited ({self._stderr_tail()})"}
        return message

    def start(self) -> bool:
        """Wait until the worker has decoded, loaded and warmed up; False (and ``error``) if it failed."""
        message = self._message()
        if "error" in message:
            self.error = message["error"]
            return False
        self.ready = message
        return True

    def run(self) -> dict:
        """One timed pass: ``{"fps", "faces_found", "frames", ...}`` or ``{"error": ...}``."""
        if self.error:
            return {"error": self.error}
        try:
            self._process.stdin.write("run\n")
            self._process.stdin.flush()
        except (BrokenPipeError, OSError):
            self.error = f"the process exited ({self._stderr_tail()})"
            return {"error": self.error}
        message = self._message()
        if "error" in message:
            self.error = message["error"]
        return message

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        lines = [line.strip() for line in self._stderr.read().splitlines() if line.strip()]
        return lines[-1][:300] if lines else "no error output"

    def close(self) -> None:
        if self._process.poll() is None:
            try:
                self._process.stdin.write("quit\n")
                self._process.stdin.flush()
                self._process.wait(timeout=10)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()
        self._stderr.close()


# ---------------------------------------------------------------------------------------------- report
def summarise(fps: list[float]) -> dict:
    ordered = sorted(fps)
    return {
        "fps": [round(value, 2) for value in fps],
        "median_fps": round(_median(ordered), 2) if ordered else None,
        "min_fps": round(ordered[0], 2) if ordered else None,
        "max_fps": round(ordered[-1], 2) if ordered else None,
    }


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _pass_times(runs: dict[int, dict], started: float) -> list[list]:
    """[repetition, start, end] of each timed pass, in seconds after the command started."""
    return [[rep, round(run["start"] - started, 3), round(run["end"] - started, 3)] for rep, run in runs.items()]


def _load() -> list[float]:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return []


def measure(config: PeerConfig) -> dict:
    """Start every contender, time ``reps`` interleaved passes of each, and build the report.

    A contender of ours that fails to load or crashes becomes a row with its reason; MediaPipe, the
    yardstick, must run.

    Raises:
        PeerError: the MediaPipe worker cannot start or fails during a pass.
    """
    common = {"video": str(Path(config.video).resolve()), "max_frames": config.max_frames,
              "warmup_frames": config.warmup_frames, "cpus": list(config.cpus)}  # fmt: skip
    peer_spec = {**common, "script": str(Path(config.peer_script).resolve()), "plain_onnx": ""}
    started = time.time()
    load_start = _load()
    workers: list[tuple[str, Worker]] = []
    try:
        mediapipe = Worker("mediapipe", [config.peer_python, "-c", PEER_DRIVER, json.dumps(peer_spec)], config.timeout_s)
        workers.append(("mediapipe", mediapipe))
        if config.plain_onnx:
            plain_spec = {**peer_spec, "plain_onnx": str(Path(config.plain_onnx).resolve())}
            command = [config.peer_python, "-c", PEER_DRIVER, json.dumps(plain_spec)]
            workers.append(("plain_loop", Worker("plain_loop", command, config.timeout_s)))
        for index, contender in enumerate(config.contenders):
            spec = {**common, "model": str(Path(contender.model).resolve()), "backend": contender.backend,
                    "threads": config.threads, "tracker": config.tracker()}  # fmt: skip
            command = [sys.executable, "-c", OURS_DRIVER, json.dumps(spec)]
            workers.append((f"ours_{index}", Worker(contender.label, command, config.timeout_s)))
        # Start-up (decode, load, warm-up) overlaps between workers; timed passes never do.
        for key, worker in workers:
            if not worker.start():
                if key == "mediapipe":
                    raise PeerError(
                        f"the MediaPipe peer did not start with {config.peer_python}: {worker.error}. "
                        f"Recreate the venv with: {PEER_VENV_COMMANDS}"
                    )
                logger.warning("%s: %s", worker.name, worker.error)
            elif key.startswith("ours_"):
                worker.name = f"{Path(worker.ready.get('model', worker.name)).name} on {worker.ready['backend']}"
        results: dict[str, dict[int, dict]] = {key: {} for key, _ in workers}  # key -> repetition -> pass
        for rep in range(config.reps):
            for key, worker in workers:
                if worker.error:
                    continue
                outcome = worker.run()
                if "error" in outcome:
                    if key == "mediapipe":
                        raise PeerError(f"the MediaPipe peer failed in pass {rep + 1}: {outcome['error']}")
                    logger.warning("%s failed in pass %d: %s", worker.name, rep + 1, outcome["error"])
                    continue
                results[key][rep] = outcome
                logger.info("pass %d/%d %-40s %7.1f FPS", rep + 1, config.reps, worker.name, outcome["fps"])
    finally:
        for _, worker in workers:
            worker.close()

    peer_runs = results["mediapipe"]
    report = {
        "video": str(config.video),
        "frames": mediapipe.ready.get("frames"),
        "reps": config.reps,
        "order": "interleaved: MediaPipe, then each contender, per repetition; one process per contender",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "machine": machine_description(),
        "load_average": {"start": load_start, "end": _load()},
        "threads": {"ours": config.threads, "mediapipe": MEDIAPIPE_INFERENCE_THREADS,
                    "note": "inference threads; MediaPipe's XNNPACK default on Linux is 1 and not settable from Python"},  # fmt: skip
        "cpus": list(config.cpus),
        "tracker": config.tracker(),
        "mediapipe": {
            "name": "MediaPipe Face Mesh (peer_bench.py mediapipe_run)",
            "versions": mediapipe.ready.get("versions", {}),
            "cpus": mediapipe.ready.get("cpus"),
            "faces_found": min(r["faces_found"] for r in peer_runs.values()) if peer_runs else None,
            **summarise([r["fps"] for r in peer_runs.values()]),
            "pass_times": _pass_times(peer_runs, started),
        },
        "contenders": [],
    }
    for key, worker in workers:
        if key == "mediapipe":
            continue
        runs = list(results[key].values())
        row: dict = {"label": worker.name, "status": "ok" if runs and not worker.error else "failed"}
        if worker.error:
            row["reason"] = worker.error
        if key == "plain_loop":
            row.update(kind="peer_bench.py plain ONNX Runtime loop (its own 2 intra-op threads)", model=config.plain_onnx)
        else:
            contender = config.contenders[int(key.split("_")[1])]
            row.update(kind="runtime.tracker.track_frames", model=contender.model,
                       backend=worker.ready.get("backend", contender.backend), precision=worker.ready.get("precision"),
                       compute_precision=worker.ready.get("compute_precision"))  # fmt: skip
        row["versions"] = worker.ready.get("versions", {})
        row["cpus"] = worker.ready.get("cpus")
        row["faces_found"] = min(r["faces_found"] for r in runs) if runs else None
        row.update(summarise([r["fps"] for r in runs]))
        row["pass_times"] = _pass_times(results[key], started)
        if runs and "infer_ms" in runs[0]:
            row["infer_ms_median"] = round(_median([r["infer_ms"] for r in runs]), 3)
        # Paired ratios: each pass against the MediaPipe pass of the same repetition.
        ratios = [run["fps"] / peer_runs[rep]["fps"] for rep, run in results[key].items() if peer_runs[rep]["fps"] > 0]
        row["ratio_per_rep"] = [round(value, 3) for value in ratios]
        row["ratio_median"] = round(_median(ratios), 3) if ratios else None
        if row["median_fps"] and report["mediapipe"]["median_fps"]:
            row["ratio_of_medians"] = round(row["median_fps"] / report["mediapipe"]["median_fps"], 3)
        if key == "plain_loop":
            report["plain_loop"] = row
        else:
            report["contenders"].append(row)
    return report


def format_table(report: dict) -> str:
    """The report as a few lines of text: machine, settings, then one row per contender."""
    cpu = report["machine"]
    lines = [
        f"machine: {cpu['cpu']}, {cpu['usable_cpus']} CPUs ({', '.join(cpu['isa']) or 'no AVX2'}), "
        f"load average {report['load_average']['start']} -> {report['load_average']['end']}",
        f"video: {Path(report['video']).name}, {report['frames']} frames in memory; {report['reps']} interleaved "
        f"passes; inference threads ours {report['threads']['ours']}, MediaPipe {report['threads']['mediapipe']}; "
        f"tracker {', '.join(f'{k}={v}' for k, v in report['tracker'].items())}",
        f"{'contender':44s} {'precision':9s} {'FPS median':>10s} {'min-max':>13s} {'faces':>9s} {'vs MediaPipe':>12s}",
    ]
    peer = report["mediapipe"]
    frames = report["frames"]
    name = f"MediaPipe Face Mesh {peer['versions'].get('mediapipe', '')}".strip()
    lines.append(
        f"{name:44s} {'-':9s} {peer['median_fps']:10.1f} {peer['min_fps']:6.1f}-{peer['max_fps']:<6.1f} "
        f"{peer['faces_found']:>4}/{frames:<4} {'1.00x':>12s}"
    )
    rows = list(report["contenders"]) + ([report["plain_loop"]] if "plain_loop" in report else [])
    for row in rows:
        label = row["label"] if "backend" in row else "peer_bench.py plain ORT loop (2 threads)"
        if row["status"] != "ok":
            lines.append(f"{label[:44]:44s} failed: {row.get('reason', 'no passes')}")
            continue
        ratio = f"{row['ratio_median']:.2f}x" if row["ratio_median"] is not None else "-"
        precision = row.get("precision") or "-"
        if row.get("compute_precision") and row["compute_precision"] not in ("f32", precision):
            precision = f"{precision}/{row['compute_precision']}"  # e.g. fp16 weights computed in bf16
        lines.append(
            f"{label[:44]:44s} {precision:9s} {row['median_fps']:10.1f} "
            f"{row['min_fps']:6.1f}-{row['max_fps']:<6.1f} {row['faces_found']:>4}/{frames:<4} {ratio:>12s}"
        )
    lines.append("vs MediaPipe: median over passes of (our FPS / the MediaPipe FPS of the same repetition)")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- command
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.tools.peer",
        description="End-to-end tracker FPS against MediaPipe Face Mesh, side by side, interleaved.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples::", 1)[1].split("What is timed", 1)[0].rstrip() + "\n",
    )
    parser.add_argument("--video", required=True,
                        help="video decoded into memory by every contender, or scenario:NAME for footage runtime.scenario "
                             "composes (e.g. scenario:multishot_360; see python -m runtime.scenario --list)")
    parser.add_argument("--model", action="append", default=[], metavar="ARTIFACT",
                        help="our artifact (repeatable; each is one contender)")  # fmt: skip
    parser.add_argument("--backend", action="append", default=[],
                        help="backend per --model, in the same order (one for all, or none: by file suffix)")  # fmt: skip
    parser.add_argument("--peer-python", default=os.environ.get(PEER_PYTHON_ENV, ""),
                        help=f"the MediaPipe venv's Python (default: ${PEER_PYTHON_ENV})")
    parser.add_argument("--peer-script", default=os.environ.get(PEER_SCRIPT_ENV, ""),
                        help=f"peer_bench.py, defining frames_of and mediapipe_run (default: ${PEER_SCRIPT_ENV})")
    parser.add_argument("--reps", type=int, default=5, help="timed passes per contender (default 5)")
    parser.add_argument("--max-frames", type=int, default=0, help="only the first N frames (default 0: all)")
    parser.add_argument("--warmup-frames", type=int, default=10, help="untimed frames per contender first (default 10)")
    parser.add_argument("--threads", type=int, default=1,
                        help="our engine's inference threads (default 1, as MediaPipe's XNNPACK on Linux)")  # fmt: skip
    parser.add_argument("--cpus", default="", help="pin every contender to these cores, e.g. 0 or 0,1 (default: no pinning)")
    parser.add_argument("--detector", default=DEFAULT_DETECTOR, help="our face detector spec (default yunet; haar, yunet:PATH)")
    parser.add_argument("--detector-scale", type=float, default=None,
                        help="detect on a copy scaled by this (default: the detector's own; YuNet matched to the face size)")
    parser.add_argument("--smooth", default="one_euro", help="our smoother (default one_euro)")
    parser.add_argument("--redetect-every", type=int, default=30,
                        help="our tracker re-detects every N frames (0: only when lost; default 30)")  # fmt: skip
    parser.add_argument("--max-faces", type=int, default=1,
                        help="most faces our tracker follows (default 1, as the peer's FaceMesh(max_num_faces=1))")  # fmt: skip
    parser.add_argument("--plain-onnx", default="",
                        help="also time peer_bench.py's plain ONNX Runtime loop on this ONNX model")  # fmt: skip
    parser.add_argument("--json", dest="json_path", default="", help="write the report here")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one worker may take per step (default 600)")
    return parser


def config_from_args(args: argparse.Namespace) -> PeerConfig:
    models, backends = args.model, args.backend
    if not models:
        raise UsageError("give at least one --model ARTIFACT to measure against MediaPipe")
    if len(backends) not in (0, 1, len(models)):
        raise UsageError(
            f"{len(models)} --model but {len(backends)} --backend; give one --backend per --model, "
            "one for all, or none (chosen by file suffix)"
        )
    if len(backends) == 1:
        backends = backends * len(models)
    elif not backends:
        backends = [""] * len(models)
    try:
        cpus = tuple(int(part) for part in args.cpus.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"--cpus takes core numbers separated by commas (e.g. 0,1), got '{args.cpus}'") from None
    return PeerConfig(
        video=args.video,
        contenders=tuple(Contender(model, backend) for model, backend in zip(models, backends)),
        peer_python=args.peer_python,
        peer_script=args.peer_script,
        reps=args.reps,
        max_frames=args.max_frames,
        warmup_frames=args.warmup_frames,
        threads=args.threads,
        cpus=cpus,
        detector=args.detector,
        detector_scale=args.detector_scale,
        smoothing=args.smooth,
        redetect_every=args.redetect_every,
        max_faces=args.max_faces,
        plain_onnx=args.plain_onnx,
        json_path=args.json_path,
        timeout_s=args.timeout,
    )


def write_json(path: str, report: dict) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.partial")
    temporary.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(temporary, target)


SCENARIO_PREFIX = "scenario:"


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    config = config_from_args(build_parser().parse_args(argv))
    if config.video.startswith(SCENARIO_PREFIX):  # footage composed from the shared faces, with truth
        from runtime.scenario import write_scenario

        with tempfile.TemporaryDirectory(prefix="edgemark-peer-") as folder:
            name = config.video[len(SCENARIO_PREFIX):]
            video = Path(folder) / f"{name}.mp4"
            write_scenario(name, video)
            return _run(dataclasses.replace(config, video=str(video)), argv)
    return _run(config, argv)


def _run(config: PeerConfig, argv: Sequence[str] | None) -> int:
    check_config(config)
    logger.info(
        "measuring %d contender(s) against MediaPipe: %d interleaved passes on %s",
        len(config.contenders), config.reps, config.video,
    )
    report = measure(config)
    report["command"] = "python -m runtime.tools.peer " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    print(format_table(report))
    if config.json_path:
        write_json(config.json_path, report)
        print(f"report: {config.json_path}")
    failed = [row["label"] for row in report["contenders"] if row["status"] != "ok"]
    return 1 if failed and len(failed) == len(report["contenders"]) else 0


if __name__ == "__main__":
    sys.exit(main())
