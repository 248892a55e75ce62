"""The tracker's live view: whether a window can open here, and the window itself.

OpenCV's pip wheel ``opencv-python`` draws its windows with a bundled Qt 5 that talks X11 only
(its one platform plugin is ``xcb``). When Qt cannot reach the X server it does not raise: it
aborts the process (``could not connect to display``), and with it every file being written. So
the display is probed first, the way Qt will open it (``XOpenDisplay``), and the system libraries
its ``xcb`` plugin loads are looked up, so that a missing display or library is one clear line
instead of a core dump.
"""
from __future__ import annotations

import ctypes
import os
import re
import sys
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

WINDOW_NAME = "edgemark"
QUIT_KEYS = (ord("q"), ord("Q"), 27)  # 27: Esc

# What Qt's xcb platform plugin in the opencv-python wheel links against, outside the wheel, and the
# Debian/Ubuntu package of each (`import cv2` itself already needs libGL.so.1 and libglib-2.0.so.0).
QT_XCB_LIBRARIES = {
    "libxcb.so.1": "libxcb1",
    "libX11.so.6": "libx11-6",
    "libXext.so.6": "libxext6",
    "libSM.so.6": "libsm6",
    "libICE.so.6": "libice6",
}

HOW_TO_GET_A_WINDOW = "run on a desktop, over `ssh -X`, or under `xvfb-run`"


class NoWindow(NamedTuple):
    """Why no window can be opened here, and what would give one."""

    reason: str
    fix: str


def gui_backend() -> str:
    """OpenCV's GUI backend as its build information names it (``QT5``, ``GTK3``, ``WIN32UI``, ``COCOA``);
    empty for a build without one (``opencv-python-headless``)."""
    match = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    return "" if match is None or match.group(1).upper() == "NONE" else match.group(1)


def why_no_window() -> NoWindow | None:
    """What stands between this process and a window; None when one can be opened."""
    backend = gui_backend()
    if not backend:
        return NoWindow("this OpenCV has no GUI (a headless build such as opencv-python-headless)",
                        "uninstall opencv-python-headless and install opencv-python")
    if sys.platform in ("win32", "darwin"):
        return None
    display, wayland = os.environ.get("DISPLAY", ""), os.environ.get("WAYLAND_DISPLAY", "")
    qt = backend.upper().startswith("QT")
    if not display:
        if not wayland:
            return NoWindow("no display (DISPLAY and WAYLAND_DISPLAY are unset)", HOW_TO_GET_A_WINDOW)
        if qt and not _bundled_qt_speaks_wayland():
            return NoWindow("WAYLAND_DISPLAY is set but DISPLAY is not, and this OpenCV's Qt draws through X11 only",
                            "enable XWayland, or run under `xvfb-run`")
        return None
    if qt:
        missing = [name for name in QT_XCB_LIBRARIES if not _loadable(name)]
        if missing:
            packages = " ".join(QT_XCB_LIBRARIES[name] for name in missing)
            return NoWindow(f"OpenCV's Qt window needs {', '.join(missing)}, not installed",
                            f"install them (Debian/Ubuntu: apt-get install {packages})")
    if not _x_server_answers():
        return NoWindow(f"no X server answers at DISPLAY={display}",
                        "check DISPLAY (left over from an ended `ssh -X` session?), or run under `xvfb-run`")
    return None


def display_available() -> bool:
    """True when a window can be opened: a display that answers and an OpenCV build with a GUI backend."""
    return why_no_window() is None


def _bundled_qt_speaks_wayland() -> bool:
    platforms = Path(cv2.__file__).parent / "qt" / "plugins" / "platforms"
    if not platforms.is_dir():
        return True  # a system Qt, not the wheel's: it may have its Wayland plugin
    return any("wayland" in plugin.name for plugin in platforms.iterdir())


def _loadable(library: str) -> bool:
    try:
        ctypes.CDLL(library)
    except OSError:
        return False
    return True


def _x_server_answers() -> bool:
    """Open and close a connection to ``$DISPLAY`` as every X client does (authority cookie included)."""
    try:
        xlib = ctypes.CDLL("libX11.so.6")
    except OSError:
        return True  # not an X11 stack this probe knows; let OpenCV's backend try
    xlib.XOpenDisplay.restype = ctypes.c_void_p
    xlib.XOpenDisplay.argtypes = [ctypes.c_char_p]
    xlib.XCloseDisplay.argtypes = [ctypes.c_void_p]
    connection = xlib.XOpenDisplay(None)
    if not connection:
        return False
    xlib.XCloseDisplay(connection)
    return True


class Window:
    """A window showing each frame as drawn; q, Esc or closing the window asks to stop.

    Args:
        title: the window's title bar text.
    """

    def __init__(self, title: str):
        # GUI_NORMAL: no toolbar or status bar over the frame (Qt's default adds both).
        cv2.namedWindow(WINDOW_NAME, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
        cv2.setWindowTitle(WINDOW_NAME, title)
        self.shown = False

    def show(self, canvas: np.ndarray | None) -> bool:
        """Show ``canvas`` (None: keep the last frame, still answer keys); returns False when the user quit."""
        if canvas is not None:
            cv2.imshow(WINDOW_NAME, canvas)
            self.shown = True
        key = cv2.waitKey(1)
        if key != -1 and key & 0xFF in QUIT_KEYS:
            return False
        return not self.shown or self.is_open()

    def is_open(self) -> bool:
        try:
            return cv2.getWindowProperty(WINDOW_NAME, cv2.WND_PROP_VISIBLE) >= 1
        except cv2.error:  # some backends raise for a window the user closed
            return False

    def close(self) -> None:
        try:
            cv2.destroyWindow(WINDOW_NAME)
        except cv2.error:
            pass  # already closed by the user
        cv2.waitKey(1)  # let the backend process the close
