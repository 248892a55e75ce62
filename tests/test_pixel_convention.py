"""Golden tests of the pixel convention: pixel centres at integers, everywhere (issue 8).

Every expected number here is derived by hand in the comments, not computed by the code under test,
so dropping or doubling a half-pixel shift anywhere on the way from a detector's box to the landmarks
in the frame fails a test. Half a pixel is far below what the scenario tests' NME bounds can see.
"""
from __future__ import annotations

import numpy as np
import pytest

from runtime.card import Card
from runtime.crop import CropRule, Normalisation, crop_matrix, warp
from runtime.detect import FaceDetector, HaarParams
from runtime.landmarker import decode_output

BGR_HALF = Normalisation("BGR", (0.5,) * 3, (0.5,) * 3)


def test_coords_output_spans_the_crop_from_edge_to_edge():
    """A coords model's value u in [0, 1] runs from the crop's left pixel edge (u = 0) to its right one (u = 1).

    Landmark box (40, 60)-(140, 180): 100 x 120, centre (90, 120). Crop rule: a square 1.2 x 120 = 144 on
    a side around the centre, so its outer pixel edges lie at x = 90 -/+ 72 = 18 and 162, y = 48 and 192.
    The 112-pixel input's outer edges (-0.5 and 111.5) map onto them, so u -> x = 18 + 144 u and
    v -> y = 48 + 144 v. Without the half-pixel shift in the decode, every point would sit
    0.5 x 144 / 112 = 0.64 px right of and below these.
    """
    card = Card("wflw98", 98, 112, BGR_HALF, "coords", CropRule(box="landmarks", scale=1.2), decode="direct")
    matrix = crop_matrix(np.array([40.0, 60.0, 140.0, 180.0]), card.crop_rule, card.input_size)
    normalised = np.full((98, 2), 0.5)
    normalised[:4] = [[0.0, 0.0], [1.0, 1.0], [0.5, 0.5], [0.25, 0.75]]
    points, _ = decode_output(normalised.reshape(1, -1).astype(np.float32), card, matrix[None])
    expected = [[18.0, 48.0], [162.0, 192.0], [90.0, 120.0], [54.0, 156.0]]
    np.testing.assert_allclose(points[0, :4], expected, rtol=0, atol=1e-6)


def test_heatmap_cell_centres():
    """Heatmap cell c of stride 4 covers input pixels 4c .. 4c + 3, whose centre is 4c + 1.5.

    Landmark box (99.5, 49.5)-(163.5, 113.5) with crop scale 1 is a 64-pixel square whose outer edges are
    exactly the 64-pixel input's: the input pixel x is the frame pixel x + 100 (y + 50). A one-hot map
    at cell (column 0, row 0) decodes to (101.5, 51.5); at (15, 7) to (161.5, 79.5).
    """
    card = Card("aflw19", 19, 64, BGR_HALF, "heatmap", CropRule(box="landmarks", scale=1.0), decode="argmax",
                heatmap_stride=4)  # fmt: skip
    matrix = crop_matrix(np.array([99.5, 49.5, 163.5, 113.5]), card.crop_rule, card.input_size)
    np.testing.assert_allclose(matrix, [[1, 0, -100], [0, 1, -50]], atol=1e-12)
    heatmaps = np.zeros((1, 19, 16, 16), np.float32)
    heatmaps[0, :, 8, 8] = 1
    heatmaps[0, 0, 8, 8], heatmaps[0, 0, 0, 0] = 0, 1
    heatmaps[0, 1, 8, 8], heatmaps[0, 1, 7, 15] = 0, 1
    points, _ = decode_output(heatmaps, card, matrix[None])
    np.testing.assert_allclose(points[0, :3], [[101.5, 51.5], [161.5, 79.5], [133.5, 83.5]], rtol=0, atol=1e-6)


def test_crop_puts_a_frame_pixel_where_the_matrix_says():
    """With the matrix a whole-pixel shift (the box above), frame pixel (130, 70) is input pixel (30, 20)."""
    frame = np.zeros((200, 300, 3), np.uint8)
    frame[70, 130] = 255
    matrix = crop_matrix(np.array([99.5, 49.5, 163.5, 113.5]), CropRule(box="landmarks", scale=1.0), 64)
    crop = warp(frame, matrix, 64)
    assert list(zip(*np.nonzero(crop[..., 0]))) == [(20, 30)]


class FixedBoxDetector(FaceDetector):
    """Finds one face, always the same rectangle, in the image it is given (after the base class's resize)."""

    name = "fixed"

    def _detect(self, image_bgr, min_side_px):
        self.seen = image_bgr.shape[:2]
        return np.array([[10, 20, 30, 40]]), np.array([1.0], np.float32)


@pytest.mark.parametrize("scale, expected", [
    # Rectangle x, y, w, h = 10, 20, 30, 40 covers detection-image pixels 10..39 and 20..59, whose outer
    # edges in pixel-centre coordinates are 9.5 .. 39.5 and 19.5 .. 59.5.
    (1.0, [9.5, 19.5, 39.5, 59.5]),
    # On the half-size copy (200x100 -> 100x50) the same pixels are frame pixels 20..79 and 40..119:
    # outer edges 19.5 .. 79.5 and 39.5 .. 119.5.
    (0.5, [19.5, 39.5, 79.5, 119.5]),
])  # fmt: skip
def test_detector_boxes_are_pixel_edges_in_frame_pixels(scale, expected):
    detector = FixedBoxDetector(HaarParams(min_size=0.0, scale=scale))
    boxes, _ = detector.detect(np.zeros((100, 200, 3), np.uint8))
    assert detector.seen == (round(100 * scale), round(200 * scale))
    np.testing.assert_allclose(boxes, [expected], rtol=0, atol=1e-6)
