"""Heatmap targets, augmentation geometry and the training dataset."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from runtime import crop
from runtime.annotations import Sample, read_pts_folder, read_wflw_list
from runtime.errors import EdgemarkError, UsageError
from runtime.codecs import gaussian_heatmaps, heatmap_to_input
from runtime.heatmap import centroid
from runtime.layouts import AFLW19, IBUG68, flip_points
from train.augment import AugmentConfig, affine_about_centre, map_points, photometric, random_affine
from train.data import DatasetError, ImageReadError, LandmarkDataset, mix_avs

FIXTURES = Path(__file__).resolve().parent / "fixtures"
WFLW_LIST = FIXTURES / "wflw" / "list_98pt_rect_attr_train.txt"
WFLW_IMAGES = FIXTURES / "wflw" / "WFLW_images"
# Pixel values in [0, 1], BGR as read: lets tests read the model input back as an image.
RAW = crop.Normalisation(channel_order="BGR", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
GEOMETRY_ONLY = AugmentConfig(photometric=False)


def _wflw_samples() -> list[Sample]:
    return read_wflw_list(WFLW_LIST, WFLW_IMAGES)


# --- targets ---------------------------------------------------------------------------------------


def test_gaussian_targets_decode_to_their_subpixel_centres():
    rng = np.random.default_rng(0)
    points = rng.uniform(5.0, 59.0, size=(200, 2))  # (K, 2) heatmap pixels, away from the borders
    heatmaps, weights = gaussian_heatmaps(points, 64, sigma=1.5)
    assert heatmaps.shape == (200, 64, 64) and heatmaps.dtype == np.float32
    decoded, _ = centroid(heatmaps[None])
    assert np.abs(decoded[0] - points).max() < 0.05
    assert np.all(weights == 1.0)


def test_gaussian_targets_peak_at_centre_and_ignore_outside_points():
    points = np.array([[10.0, 20.0], [-1.0, 5.0], [64.2, 3.0], [np.nan, 4.0], [-0.4, 5.0], [30.5, 30.5]])
    heatmaps, weights = gaussian_heatmaps(points, 64, sigma=1.5)
    assert heatmaps[0, 20, 10] == pytest.approx(1.0)
    assert heatmaps[0].argmax() == 20 * 64 + 10
    np.testing.assert_array_equal(weights, [1, 0, 0, 0, 1, 1])
    assert not heatmaps[1:4].any()
    # Between four pixels, each neighbour holds exp(-0.5^2 / sigma^2): not rounded to one pixel.
    np.testing.assert_allclose(heatmaps[5, 30:32, 30:32], np.exp(-0.25 / 1.5**2), rtol=1e-6)


# --- augmentation ----------------------------------------------------------------------------------


def test_affine_about_centre_matches_opencv_rotation_and_mirrors_columns():
    matrix = affine_about_centre(100, angle_degrees=30, scale=1.2, shift=(3, -2))
    expected = cv2.getRotationMatrix2D((49.5, 49.5), 30, 1.2)
    expected[:, 2] += (3, -2)
    np.testing.assert_allclose(matrix, expected, atol=1e-12)
    mirror = affine_about_centre(100, flip=True)
    np.testing.assert_allclose(crop.apply(mirror, [[0.0, 7.0], [99.0, 8.0]]), [[99.0, 7.0], [0.0, 8.0]])


def _dot_image(points: np.ndarray, levels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Black (H, W, 3) uint8 frame with a filled disc of grey ``levels[i]`` at each point."""
    frame = np.zeros((size[1], size[0], 3), np.uint8)
    for (x, y), level in zip(points, levels):
        cv2.circle(frame, (int(round(x)), int(round(y))), 7, (int(level),) * 3, -1, lineType=cv2.LINE_8)
    return frame


def _dot_layout_points() -> np.ndarray:
    """19 integer points (AFLW-19 count) on a grid, >= 24 px apart, so discs never touch."""
    grid = np.array([(x, y) for y in range(4) for x in range(5)], dtype=np.float64)[:19]
    return grid * [30.0, 26.0] + [40.0, 35.0]


def _value_at(image: np.ndarray, point: np.ndarray) -> float:
    """Bilinear grey value of an (S, S, 3) uint8 image at a sub-pixel point."""
    return float(cv2.getRectSubPix(image[..., 0], (1, 1), (float(point[0]), float(point[1])))[0, 0])


def test_forced_geometric_transform_keeps_landmarks_on_image_content():
    points = _dot_layout_points()
    levels = 40 + 10 * np.arange(19)
    frame = _dot_image(points, levels, (220, 150))
    size = 96
    crop_matrix = crop.crop_matrix(crop.landmark_box(points), crop.CropRule(), size)
    for angle, scale, shift, flip in [(25.0, 1.2, (5.0, -3.0), False), (-30.0, 0.8, (-4.0, 2.0), True)]:
        affine = affine_about_centre(size, angle, scale, shift, flip)
        matrix = crop.compose(affine, crop_matrix)
        warped = crop.warp(frame, matrix, size)  # one warp for crop + augmentation
        moved = map_points(points, matrix, flip, AFLW19)
        expected = levels[AFLW19.flip_permutation] if flip else levels
        inside = np.all((moved > 2) & (moved < size - 3), axis=1)
        assert inside.sum() >= 15
        for point, level in zip(moved[inside], expected[inside]):
            assert abs(_value_at(warped, point) - level) <= 4, (angle, flip, point, level)


def test_random_augmentation_keeps_landmarks_on_image_content(tmp_path):
    points = _dot_layout_points()
    levels = 40 + 10 * np.arange(19)
    path = tmp_path / "dots.png"
    cv2.imwrite(str(path), _dot_image(points, levels, (220, 150)))
    samples = [Sample(image=path, points=points.astype(np.float32))] * 6
    dataset = LandmarkDataset(samples, AFLW19, input_size=96, heatmap_stride=4, normalisation=RAW, augment=GEOMETRY_ONLY)
    seen_flip = set()
    for epoch in range(2):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            item = dataset[index]
            image = np.rint(item["image"].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)
            flipped = bool(item["flipped"])
            seen_flip.add(flipped)
            expected = levels[AFLW19.flip_permutation] if flipped else levels
            for point, weight, level in zip(item["points"].numpy(), item["weights"].numpy(), expected):
                if weight and np.all((point > 2) & (point < 93)):
                    assert abs(_value_at(image, point) - level) <= 4
            # The returned matrix reproduces the points from the frame (after relabelling).
            remapped = map_points(points, item["matrix"].numpy(), flipped, AFLW19)
            np.testing.assert_allclose(item["points"].numpy(), remapped, atol=1e-3)
    assert seen_flip == {True, False}


def test_flip_puts_the_image_left_eye_corner_on_the_left(faces68_dir):
    samples = read_pts_folder(faces68_dir)[:4]
    forced_flip = AugmentConfig(
        rotation_degrees=0, scale_range=(1.0, 1.0), translation_fraction=0, flip_probability=1.0, photometric=False
    )
    plain = LandmarkDataset(samples, "ibug68", input_size=64, normalisation=RAW)
    flipped = LandmarkDataset(samples, "ibug68", input_size=64, normalisation=RAW, augment=forced_flip)
    left, right = IBUG68.outer_eye_corners
    for index in range(len(samples)):
        before, after = plain[index], flipped[index]
        assert after["flipped"]
        assert before["points"][left, 0] < before["points"][right, 0]
        assert after["points"][left, 0] < after["points"][right, 0]
        # Same as mirroring the unaugmented crop and its (relabelled) points.
        expected = flip_points(before["points"].numpy(), IBUG68, 64)
        np.testing.assert_allclose(after["points"].numpy(), expected, atol=1e-4)
        mirrored = before["image"].numpy()[:, :, ::-1]
        assert np.abs(after["image"].numpy() - mirrored).mean() < 2 / 255


# --- dataset ---------------------------------------------------------------------------------------


def test_dataset_items_on_real_faces(faces68_dir):
    samples = read_pts_folder(faces68_dir)
    dataset = LandmarkDataset(samples, "ibug68", input_size=128, heatmap_stride=4, augment=AugmentConfig(), seed=3)
    assert len(dataset) == 12
    item = dataset[5]
    assert item["image"].shape == (3, 128, 128) and item["image"].dtype == torch.float32
    assert item["heatmaps"].shape == (68, 32, 32) and item["heatmaps"].dtype == torch.float32
    assert item["weights"].shape == (68,) and item["weights"].dtype == torch.float32
    assert item["points"].shape == (68, 2) and item["points"].dtype == torch.float32
    assert item["matrix"].shape == (2, 3) and item["matrix"].dtype == torch.float64
    assert item["index"] == 5
    # Targets sit at the returned points (decoded back to input pixels).
    decoded, _ = centroid(item["heatmaps"].numpy()[None])
    visible = (item["weights"].numpy() > 0) & np.all((item["points"].numpy() > 20) & (item["points"].numpy() < 108), 1)
    assert visible.sum() > 40
    error = np.abs(heatmap_to_input(decoded[0], 4) - item["points"].numpy())[visible]
    assert error.max() < 0.25
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=2)))
    assert batch["image"].shape == (2, 3, 128, 128) and batch["index"].tolist() == [0, 1]


def test_dataset_is_deterministic_per_seed_epoch_and_index():
    samples = _wflw_samples()
    make = lambda seed: LandmarkDataset(samples, "wflw98", input_size=64, augment=AugmentConfig(), seed=seed)
    first, second = make(7), make(7)
    # Different access order (as different workers would see) gives identical items.
    a = [first[i] for i in (0, 1, 2)]
    b = [second[i] for i in (2, 1, 0)][::-1]
    for x, y in zip(a, b):
        for key in ("image", "heatmaps", "points", "matrix"):
            assert torch.equal(x[key], y[key])
    first.set_epoch(1)
    assert not torch.equal(first[0]["image"], a[0]["image"])
    first.set_epoch(0)
    assert torch.equal(first[0]["image"], a[0]["image"])
    assert not torch.equal(make(8)[0]["matrix"], a[0]["matrix"])


def test_dataset_without_augmentation_is_the_plain_crop():
    samples = _wflw_samples()
    item = LandmarkDataset(samples, "wflw98", input_size=64, normalisation=RAW)[2]
    matrix = crop.crop_matrix(crop.landmark_box(samples[2].points), crop.CropRule(), 64)
    np.testing.assert_allclose(item["matrix"].numpy(), matrix)
    np.testing.assert_allclose(item["points"].numpy(), crop.apply(matrix, samples[2].points), atol=1e-4)
    assert not item["flipped"]


def test_unreadable_or_missing_image_names_the_path(tmp_path):
    points = _wflw_samples()[0].points
    missing = tmp_path / "missing.jpg"
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not a jpeg")
    dataset = LandmarkDataset([Sample(missing, points), Sample(corrupt, points)], "wflw98", input_size=64)
    with pytest.raises(ImageReadError, match=r"missing\.jpg .*does not exist"):
        dataset[0]
    with pytest.raises(ImageReadError, match=r"corrupt\.jpg .*cannot be decoded"):
        dataset[1]
    assert issubclass(ImageReadError, EdgemarkError)


def test_dataset_rejects_mismatched_points_and_bad_settings():
    samples = _wflw_samples()
    with pytest.raises(DatasetError, match=r"\(98, 2\), but layout 'ibug68' needs \(68, 2\)"):
        LandmarkDataset(samples, "ibug68")
    with pytest.raises(UsageError, match="stride 5 must divide input size 64"):
        LandmarkDataset(samples, "wflw98", input_size=64, heatmap_stride=5)
    no_box = [Sample(s.image, s.points) for s in samples]
    with pytest.raises(DatasetError, match="no face box"):
        LandmarkDataset(no_box, "wflw98", crop_rule=crop.CropRule(box="detector"))


def test_augment_config_validation_and_photometric_determinism():
    with pytest.raises(UsageError, match="flip_probability"):
        AugmentConfig(flip_probability=1.5)
    with pytest.raises(UsageError, match="scale_range"):
        AugmentConfig(scale_range=(1.2, 0.8))
    image = cv2.imread(str(WFLW_IMAGES / "51--Dresses" / "51_Dresses_wearingdress_51_377.jpg"))
    strong = AugmentConfig(blur_probability=1.0, noise_probability=1.0, grayscale_probability=0.0)
    one = photometric(np.random.default_rng(1), image, strong)
    assert one.dtype == np.uint8 and one.shape == image.shape
    np.testing.assert_array_equal(one, photometric(np.random.default_rng(1), image, strong))
    assert not np.array_equal(one, image)
    np.testing.assert_array_equal(photometric(np.random.default_rng(1), image, AugmentConfig.off()), image)
    identity = random_affine(np.random.default_rng(1), AugmentConfig.off(), 64)
    np.testing.assert_array_equal(identity.matrix, [[1, 0, 0], [0, 1, 0]])
    assert not identity.flipped


# --- AVS mixing ------------------------------------------------------------------------------------


def _fake(count: int, source: str) -> list[Sample]:
    return [Sample(Path(f"{source}{i}.jpg"), np.zeros((98, 2), np.float32), source=source) for i in range(count)]


def test_mix_avs_ratio_and_replacement():
    real, synthetic = _fake(10, "real"), _fake(25, "style_a")
    mixed = mix_avs(real, synthetic, 1.0, seed=0)
    assert mixed[:10] == real and len(mixed) == 20
    drawn = [s.image for s in mixed[10:]]
    assert len(set(drawn)) == 10 and all(s.source == "style_a" for s in mixed[10:])  # without replacement
    assert [s.image for s in mix_avs(real, synthetic, 1.0, seed=0)[10:]] == drawn
    assert [s.image for s in mix_avs(real, synthetic, 1.0, seed=1)[10:]] != drawn
    assert len(mix_avs(real, synthetic, 3.0, seed=0)) == 40  # 30 from 25: with replacement
    assert mix_avs(real, synthetic, 0.0, seed=0) == real
    assert len(mix_avs(real, synthetic, 0.5, seed=0)) == 15
    with pytest.raises(UsageError, match="ratio must be >= 0"):
        mix_avs(real, synthetic, -1.0, seed=0)
    with pytest.raises(DatasetError, match="synthetic set is empty"):
        mix_avs(real, [], 1.0, seed=0)
