"""Contact sheet of a calibration set: a few input crops per style, labelled, as one PNG.

Deployment engineers want to see what an INT8 model was calibrated on. One row per style (in the
set's order), a label panel on the left with the style name and its sample count, then the first
``columns`` crops of that style exactly as the model sees them before normalisation (input size,
channel order shown as BGR on disk, no resizing).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from runtime.card import atomic_write_bytes

logger = logging.getLogger(__name__)

LABEL_WIDTH = 200
GAP = 2
BACKGROUND = (32, 32, 32)
EMPTY_CELL = (64, 64, 64)
TEXT = (235, 235, 235)


def contact_sheet_shape(rows: int, columns: int, input_size: int) -> tuple[int, int]:
    """(height, width) of a sheet with ``rows`` styles and ``columns`` crops of ``input_size`` each."""
    cell = input_size + GAP
    return GAP + rows * cell, LABEL_WIDTH + GAP + columns * cell


def contact_sheet(crops: np.ndarray, styles: Sequence[str], columns: int = 6) -> np.ndarray:
    """Lay out crops by style.

    Args:
        crops: (N, S, S, 3) uint8 BGR input crops.
        styles: the style of each crop (N labels); rows follow their first appearance.
        columns: crops shown per style; a style with fewer leaves grey cells.

    Returns:
        (H, W, 3) uint8 BGR image, of shape :func:`contact_sheet_shape`.
    """
    order = list(dict.fromkeys(styles))
    size = crops.shape[1]
    height, width = contact_sheet_shape(len(order), columns, size)
    sheet = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    for row, style in enumerate(order):
        members = [index for index, label in enumerate(styles) if label == style]
        top = GAP + row * (size + GAP)
        cv2.putText(sheet, style, (8, top + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.45, TEXT, 1, cv2.LINE_AA)
        cv2.putText(sheet, f"n={len(members)}", (8, top + 40), cv2.FONT_HERSHEY_SIMPLEX, 0.45, TEXT, 1, cv2.LINE_AA)
        for column in range(columns):
            left = LABEL_WIDTH + GAP + column * (size + GAP)
            cell = sheet[top : top + size, left : left + size]
            cell[:] = crops[members[column]] if column < len(members) else EMPTY_CELL
    return sheet


def write_contact_sheet(path: str | Path, crops: np.ndarray, styles: Sequence[str], columns: int = 6) -> Path:
    """Write :func:`contact_sheet` as a PNG atomically and return its path."""
    sheet = contact_sheet(crops, styles, columns)
    ok, encoded = cv2.imencode(".png", sheet)
    if not ok:
        raise RuntimeError("OpenCV failed to PNG-encode the contact sheet")
    atomic_write_bytes(path, encoded.tobytes())
    logger.info("wrote preview %s (%dx%d, %d styles)", path, sheet.shape[1], sheet.shape[0], len(set(styles)))
    return Path(path)
