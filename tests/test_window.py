"""The tracker's window, on a virtual X display (Xvfb), as a user sees it.

``python -m runtime.track VIDEO --show`` runs in a subprocess on its own Xvfb; a screenshot of the
screen must show the video frame with green landmark dots on the face and hardly any elsewhere; q
quits it, and so does the window's close button (the WM_DELETE_WINDOW message a window manager sends).
Where no display exists, ``--show`` is one line and exit 2. Set EDGEMARK_SCREENSHOTS=DIR to keep the
screenshots.
"""
from __future__ import annotations

import csv
import ctypes
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.track import main as track_main
from runtime.window import why_no_window
from tests.conftest import REPO, one_error_line

GREEN = np.array([0, 255, 0])  # draw()'s landmark colour (BGR = RGB here), pure at each dot's centre
WINDOW_TIMEOUT_S = 30.0


# ------------------------------------------------------------------------------------------- X display
@pytest.fixture(scope="module")
def xvfb():
    """A virtual X display (1280x1024, 24 bit) on a free display number chosen by Xvfb itself."""
    executable = shutil.which("Xvfb")
    if executable is None:
        pytest.skip("Xvfb is not installed (Debian/Ubuntu: apt-get install xvfb; .ci/run installs it)")
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        # -noreset: by default the server resets when its last client leaves (between two tests); a
        # window opened during that reset was seen mapped but never painted.
        [executable, "-displayfd", str(write_end), "-screen", "0", "1280x1024x24", "-nolisten", "tcp", "-noreset"],
        pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    os.close(write_end)
    number = b""
    while not number.endswith(b"\n"):  # Xvfb writes the display number it took once it accepts clients
        ready, _, _ = select.select([read_end], [], [], 10.0)
        chunk = os.read(read_end, 16) if ready else b""
        if not chunk:
            server.kill()
            pytest.fail(f"Xvfb did not start: {server.communicate()[1].decode(errors='replace')[-500:]}")
        number += chunk
    os.close(read_end)
    yield f":{int(number)}"
    server.terminate()
    server.wait(timeout=10)


class Xlib:
    """The few Xlib calls the test needs, through ctypes (libX11 is there wherever OpenCV's Qt window is)."""

    def __init__(self, display: str):
        self.lib = lib = ctypes.CDLL("libX11.so.6")
        lib.XOpenDisplay.restype = ctypes.c_void_p
        lib.XOpenDisplay.argtypes = [ctypes.c_char_p]
        lib.XDefaultRootWindow.restype = ctypes.c_ulong
        lib.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
        lib.XQueryTree.argtypes = [ctypes.c_void_p, ctypes.c_ulong] + [ctypes.c_void_p] * 3 + [ctypes.c_void_p]
        lib.XFetchName.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(ctypes.c_char_p)]
        lib.XInternAtom.restype = ctypes.c_ulong
        lib.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        lib.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
        lib.XGetImage.restype = ctypes.POINTER(_XImage)
        lib.XGetImage.argtypes = [ctypes.c_void_p, ctypes.c_ulong] + [ctypes.c_int] * 2 + [ctypes.c_uint] * 2 + [
            ctypes.c_ulong, ctypes.c_int]
        lib.XDestroyImage.argtypes = [ctypes.POINTER(_XImage)]
        lib.XFree.argtypes = [ctypes.c_void_p]
        for name in ("XFlush", "XCloseDisplay"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        self.connection = lib.XOpenDisplay(display.encode())
        assert self.connection, f"cannot open X display {display}"
        self.root = lib.XDefaultRootWindow(self.connection)

    def close(self) -> None:
        self.lib.XCloseDisplay(self.connection)

    def windows_named(self, prefix: str) -> list[int]:
        """Top-level windows whose title starts with ``prefix`` (no window manager: children of the root)."""
        root, parent, children, count = ctypes.c_ulong(), ctypes.c_ulong(), ctypes.POINTER(ctypes.c_ulong)(), ctypes.c_uint()
        self.lib.XQueryTree(self.connection, self.root, ctypes.byref(root), ctypes.byref(parent),
                            ctypes.byref(children), ctypes.byref(count))
        found = []
        for index in range(count.value):
            name = ctypes.c_char_p()
            if self.lib.XFetchName(self.connection, children[index], ctypes.byref(name)) and name.value:
                if name.value.decode(errors="replace").startswith(prefix):
                    found.append(children[index])
                self.lib.XFree(name)
        if children:
            self.lib.XFree(children)
        return found

    def close_window(self, window: int) -> None:
        """Ask ``window`` to close as a window manager does for its close button (WM_DELETE_WINDOW)."""
        event = _XEvent()
        event.xclient.type = 33  # ClientMessage
        event.xclient.window = window
        event.xclient.format = 32
        event.xclient.message_type = self.lib.XInternAtom(self.connection, b"WM_PROTOCOLS", 0)
        event.xclient.data[0] = self.lib.XInternAtom(self.connection, b"WM_DELETE_WINDOW", 0)
        assert self.lib.XSendEvent(self.connection, window, 0, 0, ctypes.byref(event))
        self.lib.XFlush(self.connection)

    def screenshot(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB of the whole screen (24-bit TrueColor: 32 bits a pixel, B G R X in memory)."""
        image = self.lib.XGetImage(self.connection, self.root, 0, 0, 1280, 1024, 0xFFFFFFFF, 2)  # 2: ZPixmap
        assert image and image.contents.bits_per_pixel == 32, "expected a 24-bit Xvfb screen"
        height, stride = image.contents.height, image.contents.bytes_per_line
        data = np.frombuffer(ctypes.string_at(image.contents.data, stride * height), np.uint8)
        pixels = data.reshape(height, stride // 4, 4)[:, : image.contents.width, 2::-1].copy()
        self.lib.XDestroyImage(image)
        return pixels


class _XImage(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int) for name in ("width", "height", "xoffset", "format")] + [
        ("data", ctypes.c_void_p)] + [(name, ctypes.c_int) for name in (
            "byte_order", "bitmap_unit", "bitmap_bit_order", "bitmap_pad", "depth", "bytes_per_line", "bits_per_pixel")]


class _XClientMessageEvent(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("serial", ctypes.c_ulong), ("send_event", ctypes.c_int),
                ("display", ctypes.c_void_p), ("window", ctypes.c_ulong), ("message_type", ctypes.c_ulong),
                ("format", ctypes.c_int), ("data", ctypes.c_long * 5)]


class _XEvent(ctypes.Union):
    _fields_ = [("xclient", _XClientMessageEvent), ("pad", ctypes.c_long * 24)]


def grab(display: str, xlib: Xlib) -> np.ndarray:
    """The screen as (H, W, 3) RGB: Pillow's ImageGrab where Pillow has XCB support, else Xlib's XGetImage."""
    from PIL import ImageGrab, features

    if features.check("xcb"):
        return np.asarray(ImageGrab.grab(xdisplay=display).convert("RGB"))
    return xlib.screenshot()


def green_mask(rgb: np.ndarray) -> np.ndarray:
    return (rgb == GREEN).all(axis=2)


# --------------------------------------------------------------------------------------------- helpers
def start_tracker(args: list[str], display: str, cwd: Path) -> subprocess.Popen:
    environment = {key: value for key, value in os.environ.items() if key != "WAYLAND_DISPLAY"}
    environment.update(DISPLAY=display, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "runtime.track", *args], cwd=cwd, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_landmarks(tracker: subprocess.Popen, display: str, xlib: Xlib) -> np.ndarray:
    """Wait until the window shows landmark dots; return that screenshot, with the tracker paused (SIGSTOP).

    From the moment the window appears the tracker runs only in short slices between screenshots taken
    while it is paused, so that however fast it runs (or however slowly this process gets the CPU) it
    cannot reach the end of the video before the test has seen the window and pressed q.
    """
    deadline = time.monotonic() + WINDOW_TIMEOUT_S
    polls = green = 0

    def check_running() -> None:
        if tracker.poll() is not None:
            out, err = tracker.communicate()
            pytest.fail(f"the tracker ended (exit {tracker.returncode}) before its window showed landmarks "
                        f"({polls} screenshots, the last with {green} green pixels):\n{out[-500:]}\n{err[-2000:]}")
        if time.monotonic() > deadline:
            tracker.kill()
            pytest.fail(f"no window with landmarks within {WINDOW_TIMEOUT_S:.0f} s ({polls} screenshots, the last "
                        f"with {green} green pixels):\n{tracker.communicate()[1][-2000:]}")

    while not xlib.windows_named("edgemark"):
        check_running()
        time.sleep(0.005)
    tracker.send_signal(signal.SIGSTOP)
    while True:
        shot = grab(display, xlib)
        polls, green = polls + 1, int(green_mask(shot).sum())
        if green >= 200:
            return shot
        tracker.send_signal(signal.SIGCONT)
        time.sleep(0.05)
        tracker.send_signal(signal.SIGSTOP)
        check_running()


def finish(tracker: subprocess.Popen) -> tuple[int, str, str]:
    tracker.send_signal(signal.SIGCONT)
    try:
        out, err = tracker.communicate(timeout=WINDOW_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        tracker.kill()
        out, err = tracker.communicate()
        pytest.fail(f"the tracker did not quit:\n{err[-2000:]}")
    return tracker.returncode, out, err


def frame_position(screen_rgb: np.ndarray, frame_bgr: np.ndarray) -> tuple[int, int, float]:
    """Where ``frame`` lies on the screen (x, y of its top-left corner) and how well it matches there."""
    screen = cv2.cvtColor(screen_rgb, cv2.COLOR_RGB2GRAY)
    frame = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
    scores = cv2.matchTemplate(cv2.resize(screen, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA),
                               cv2.resize(frame, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA), cv2.TM_CCOEFF_NORMED)
    _, _, _, (x, y) = cv2.minMaxLoc(scores)
    # Refine at full resolution around the coarse match.
    height, width = frame.shape
    x0, y0 = max(0, 4 * x - 6), max(0, 4 * y - 6)
    region = screen[y0 : y0 + height + 12, x0 : x0 + width + 12]
    _, score, _, (dx, dy) = cv2.minMaxLoc(cv2.matchTemplate(region, frame, cv2.TM_CCOEFF_NORMED))
    return x0 + dx, y0 + dy, score


def face_region(pfld_artifact: Path, frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The box (x1, y1, x2, y2) holding every landmark of ``frames`` as the tracker finds them headless."""
    from runtime.backends.registry import load_backend
    from runtime.detect import make_detector
    from runtime.landmarker import Landmarker
    from runtime.tracker import Tracker, TrackerConfig

    with load_backend(pfld_artifact, "onnxruntime", threads=1) as backend:
        tracker = Tracker(Landmarker(backend), make_detector("haar", scale=0.5), TrackerConfig())
        points = np.concatenate([face.points for frame in frames for face in tracker.process(frame).faces])
    return points.min(axis=0), points.max(axis=0)


def keep_screenshot(path: Path) -> None:
    folder = os.environ.get("EDGEMARK_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(folder) / path.name)


@pytest.fixture(scope="module")
def long_video(video_frames, tmp_path_factory) -> Path:
    """The close-up video played forward, back and forward again (823 frames): on a loaded machine the
    tracker must not reach the end before the test has seen its window (it did once on the 275 frames)."""
    frames = [*video_frames, *video_frames[-2:0:-1], *video_frames]
    path = tmp_path_factory.mktemp("window_video") / "long.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, video_frames[0].shape[1::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


# ----------------------------------------------------------------------------------------------- tests
def test_the_window_shows_landmarks_on_the_face_and_q_quits(xvfb, pfld_artifact, long_video, video_frames, tmp_path):
    table = tmp_path / "landmarks.csv"
    tracker = start_tracker([str(long_video), "--show", "--model", str(pfld_artifact), "--detector", "haar",
                             "--csv", str(table)], xvfb, tmp_path)
    xlib = Xlib(xvfb)
    try:
        shot = wait_for_landmarks(tracker, xvfb, xlib)
        screenshot = tmp_path / "window_landmarks.png"
        cv2.imwrite(str(screenshot), cv2.cvtColor(shot, cv2.COLOR_RGB2BGR))
        keep_screenshot(screenshot)
        windows = xlib.windows_named("edgemark")
        assert len(windows) == 1, windows
        # The user quits: q in the window (xdotool types it as a keyboard would), else the close button.
        if shutil.which("xdotool"):
            subprocess.run(["xdotool", "windowfocus", "--sync", str(windows[0]), "key", "q"], check=True, timeout=10,
                           env={**os.environ, "DISPLAY": xvfb})
        else:
            xlib.close_window(windows[0])
        code, out, err = finish(tracker)
    finally:
        xlib.close()
        if tracker.poll() is None:
            tracker.kill()
    assert code == 0, err[-2000:]
    assert "window closed" in err
    frames = int(out.split(" frames,")[0])
    assert 0 < frames < 3 * len(video_frames) - 2, out  # stopped by the user, not by the end of the video

    # The frame is shown 1:1 (no toolbar, no scaling) somewhere on the screen.
    x, y, score = frame_position(shot, video_frames[0])
    assert score > 0.8, score
    height, width = video_frames[0].shape[:2]
    green = green_mask(shot)
    window = green[y : y + height, x : x + width]
    # The landmarks the tracker finds headless over the first 100 frames (the screenshot shows one of
    # the first few dozen), plus the dots' radius: the green dots lie there, in force, and hardly elsewhere.
    assert not green_mask(video_frames[0][..., ::-1]).any()  # no such green in the video itself
    low, high = face_region(pfld_artifact, video_frames[:100])
    x1, y1 = np.floor(low).astype(int) - 4
    x2, y2 = np.ceil(high).astype(int) + 4
    inside = int(window[max(0, y1) : y2, max(0, x1) : x2].sum())
    outside = int(green.sum()) - inside
    dots = cv2.connectedComponents(window[max(0, y1) : y2, max(0, x1) : x2].astype(np.uint8))[0] - 1
    assert dots >= 70, dots  # 98 landmarks, a few touching
    assert inside >= 5 * dots and outside <= 0.02 * inside, (inside, outside)
    # Files only when asked: the CSV holds the frames tracked before q, nothing else was written.
    with open(table, newline="") as stream:
        assert len({row["frame"] for row in csv.DictReader(stream)}) == frames
    assert sorted(p.name for p in tmp_path.iterdir()) == ["landmarks.csv", "window_landmarks.png"]


def test_a_window_opens_by_default_and_its_close_button_quits(xvfb, pfld_artifact, long_video, tmp_path):
    """No --show, no output flag, a display: a window and no file; closing it ends the run with exit 0."""
    tracker = start_tracker([str(long_video), "--model", str(pfld_artifact)], xvfb, tmp_path)
    xlib = Xlib(xvfb)
    try:
        wait_for_landmarks(tracker, xvfb, xlib)
        (window,) = xlib.windows_named("edgemark")
        xlib.close_window(window)
        code, out, err = finish(tracker)
    finally:
        xlib.close()
        if tracker.poll() is None:
            tracker.kill()
    assert code == 0, err[-2000:]
    assert "window closed" in err and "wrote" not in out
    assert list(tmp_path.iterdir()) == []


def test_show_without_a_display_is_one_line_and_exit_2(pfld_artifact, face_video, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert why_no_window() is not None and "DISPLAY" in why_no_window().reason
    assert track_main([str(face_video), "--show", "--model", str(pfld_artifact)]) == 2
    line = one_error_line(capsys.readouterr())
    assert "no display" in line and "xvfb-run" in line and "ssh -X" in line and "drop --show" in line
    # A DISPLAY nobody serves: Qt would abort the process; the probe says so instead.
    monkeypatch.setenv("DISPLAY", ":4242")
    assert track_main([str(face_video), "--show", "--model", str(pfld_artifact)]) == 2
    assert "no X server answers at DISPLAY=:4242" in one_error_line(capsys.readouterr())
    assert list(tmp_path.iterdir()) == []
