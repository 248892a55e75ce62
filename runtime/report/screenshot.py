"""The report page in headless Chromium: a PNG of the whole page, as tall as the page is."""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from runtime.report.config import ReportError

logger = logging.getLogger(__name__)

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
# Tallest screenshot taken; a longer page is cut here (with a warning). Chromium renders this in a few seconds.
MAX_HEIGHT = 30000
# Written into a copy of the page: once everything (the embedded plots too) is laid out, the page's
# full height lands in an attribute that --dump-dom prints.
_MEASURE_SCRIPT = (
    "<script>window.addEventListener('load', function () { document.documentElement.setAttribute("
    "'data-page-height', String(Math.ceil(document.documentElement.scrollHeight))); });</script>"
)
_HEIGHT = re.compile(r'data-page-height="(\d+)"')


def find_chromium() -> str:
    """Path of a Chromium/Chrome executable, or a :class:`ReportError` saying how to install one."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    for path in ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/snap/bin/chromium"):
        if os.access(path, os.X_OK):
            return path
    raise ReportError(
        f"--screenshot needs Chromium or Chrome, found none of {', '.join(CHROMIUM_NAMES)} on PATH; "
        "install it (Debian/Ubuntu: apt-get install chromium) or leave --screenshot out"
    )


def _run_chromium(browser: str, profile: str, arguments: list[str], page: Path, timeout_s: float) -> str:
    """Run headless Chromium with a fresh profile, no sandbox (root in containers), no GPU and no
    network services, so it works on a headless CI box; returns its stdout."""
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--hide-scrollbars", f"--user-data-dir={profile}", *arguments, page.as_uri(),
    ]  # fmt: skip
    try:
        finished = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise ReportError(f"{browser} did not finish rendering {page.name} within {timeout_s:g} s") from None
    if finished.returncode != 0:
        tail = (finished.stderr or finished.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ReportError(f"{browser} could not render {page.name} (exit {finished.returncode}: {tail[0][:300]})")
    return finished.stdout


def page_height(page: str | Path, width: int = 1280, timeout_s: float = 120) -> int:
    """Height in CSS pixels of ``page`` laid out ``width`` wide (images included), measured in headless Chromium."""
    browser = find_chromium()
    page = Path(page).resolve()
    text = page.read_text(encoding="utf-8")
    at = text.rfind("</body>")
    measured = text[:at] + _MEASURE_SCRIPT + text[at:] if at >= 0 else text + _MEASURE_SCRIPT
    with tempfile.TemporaryDirectory(prefix="edgemark-chromium-") as folder:
        copy = Path(folder) / page.name  # beside nothing: the report page is self-contained
        copy.write_text(measured, encoding="utf-8")
        # A short window, so the page's height is its content's, not the window's.
        dom = _run_chromium(browser, str(Path(folder) / "profile"), ["--dump-dom", f"--window-size={width},600"],
                            copy, timeout_s)  # fmt: skip
    found = _HEIGHT.search(dom)
    if not found:
        raise ReportError(f"{browser} rendered {page.name} but did not report its height; is it an HTML page?")
    return int(found.group(1))


def screenshot_html(page: str | Path, png: str | Path, width: int = 1280, height: int | None = None,
                    timeout_s: float = 120) -> Path:  # fmt: skip
    """Render ``page`` in headless Chromium and save a PNG ``width`` wide of the whole page.

    Args:
        page: the HTML file.
        png: where the PNG goes.
        width: the window's width in pixels.
        height: the window's height; ``None`` measures the page (:func:`page_height`) so nothing is cut
            (at most :data:`MAX_HEIGHT`).
        timeout_s: longest wait for each Chromium run.
    """
    browser = find_chromium()
    page, png = Path(page).resolve(), Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if height is None:
        height = page_height(page, width, timeout_s)
        if height > MAX_HEIGHT:
            logger.warning("%s is %d px tall; the screenshot shows its first %d px", page.name, height, MAX_HEIGHT)
            height = MAX_HEIGHT
    if png.exists():
        png.unlink()
    with tempfile.TemporaryDirectory(prefix="edgemark-chromium-") as profile:
        _run_chromium(browser, profile, [f"--screenshot={png}", f"--window-size={width},{height}"], page, timeout_s)
    if not png.is_file():
        raise ReportError(f"{browser} ran but wrote no screenshot of {page.name} to {png}")
    logger.info("rendered %s to %s (%dx%d) in %.1f s", page.name, png, width, height, time.perf_counter() - started)
    return png
