"""Readers for landmark annotation files in their upstream formats (torch-free).

Every reader raises :class:`AnnotationError` naming the file and line of a malformed entry.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.errors import EdgemarkError


class AnnotationError(EdgemarkError):
    """A malformed or missing annotation file; the message names the file and line."""


@dataclass
class Sample:
    """One annotated face.

    Attributes:
        image: path of the image file.
        points: (K, 2) float32 pixel coordinates, pixel centres at integers as in the files.
        box: optional (x1, y1, x2, y2) face box from the annotation.
        attributes: optional flags (e.g. WFLW's pose/expression/... as 0/1).
        source: where the sample came from (``real`` or an AVS style name); calibration and
            training mixers read it.
    """

    image: Path
    points: np.ndarray
    box: np.ndarray | None = None
    attributes: dict[str, int] = field(default_factory=dict)
    source: str = "real"


def read_pts(path: str | Path) -> np.ndarray:
    """Read an iBUG/300-W ``.pts`` file into (K, 2) float32.

    Format: ``version: 1``, ``n_points: K``, ``{``, K lines of ``x y``, ``}``.
    """
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: annotation file not found; expected an iBUG .pts file")
    lines = path.read_text(errors="replace").splitlines()
    count = None
    points: list[tuple[float, float]] = []
    inside = False
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("n_points"):
            try:
                count = int(line.split(":", 1)[1])
            except (IndexError, ValueError):
                raise AnnotationError(f"{path}:{number}: expected 'n_points: <int>', got '{line}'") from None
        elif line == "{":
            inside = True
        elif line == "}":
            inside = False
        elif inside:
            values = line.split()
            try:
                if len(values) != 2:
                    raise ValueError
                points.append((float(values[0]), float(values[1])))
            except ValueError:
                raise AnnotationError(f"{path}:{number}: expected two numbers 'x y', got '{line}'") from None
    if count is None or len(points) != count:
        raise AnnotationError(
            f"{path}: n_points says {count} but {len(points)} points were read; fix or re-export the file"
        )
    return np.asarray(points, dtype=np.float32)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp")


def read_pts_folder(folder: str | Path) -> list[Sample]:
    """Every image in ``folder`` that has a ``.pts`` file of the same stem, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AnnotationError(f"{folder}: not a directory; expected a folder of images with .pts files beside them")
    samples = []
    for pts in sorted(folder.glob("*.pts")):
        images = [pts.with_suffix(s) for s in IMAGE_SUFFIXES if pts.with_suffix(s).is_file()]
        if not images:
            raise AnnotationError(f"{pts}: no image beside it (looked for {', '.join(IMAGE_SUFFIXES)})")
        samples.append(Sample(image=images[0], points=read_pts(pts)))
    if not samples:
        raise AnnotationError(f"{folder}: no .pts files found; expected images with iBUG .pts annotations")
    return samples
