"""The training dataset: crop each face by the shared crop rule, augment, and draw heatmap targets.

Per item: read the frame (``cv2.imread``, BGR) -> crop matrix from the landmarks' box (``runtime.crop``)
-> compose a random affine (``train.augment``) -> warp once -> photometric jitter on the crop ->
normalise -> Gaussian targets at the exact transformed points (the heatmap codec, ``runtime.codecs``).

Randomness comes only from a numpy Generator seeded with ``(seed, epoch, index)``, so an item is
the same whichever DataLoader worker or DDP rank draws it and after a resume; call
:meth:`LandmarkDataset.set_epoch` at the start of every epoch.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from runtime import crop
from runtime.annotations import Sample
from runtime.errors import EdgemarkError, UsageError
from runtime.layouts import Layout, get_layout
from train.augment import AugmentConfig, map_points, photometric, random_affine
from runtime.codecs import HeatmapCodec

logger = logging.getLogger(__name__)


class DatasetError(EdgemarkError):
    """Training data that cannot be used as given (wrong point count, missing box)."""


class ImageReadError(DatasetError):
    """An image file that is missing or that OpenCV cannot decode."""


class LandmarkDataset(Dataset):
    """Annotated faces as model inputs, heatmap targets and the matrices that produced them.

    Each item is a dict:

    - ``image``: (3, S, S) float32, normalised as ``normalisation`` says.
    - ``heatmaps``: (K, S / stride, S / stride) float32 Gaussian targets.
    - ``weights``: (K,) float32, 0 for points outside the input square (their maps are empty).
    - ``points``: (K, 2) float32 landmarks in input pixels after augmentation, relabelled after a flip.
    - ``matrix``: (2, 3) float64 frame -> input matrix used for the warp. Without a flip
      ``points[i] = matrix @ frame_point[i]``; after a flip ``points[i] = matrix @ frame_point[perm[i]]``
      with ``perm`` the layout's flip permutation (``flipped`` says which).
    - ``flipped``: bool, whether the augmentation mirrored the face.
    - ``index``: int, the item's index (to restore order after a shuffled or distributed pass).

    Args:
        samples: annotated faces; each must have ``layout.num_points`` points.
        layout: the landmark layout (or its registered name); gives the flip permutation.
        input_size: side S of the model input square.
        heatmap_stride: input pixels per heatmap pixel; must divide ``input_size``.
        normalisation: channel order and mean/std of the model input.
        crop_rule: how a face box becomes the input square; ``box="landmarks"`` uses the bounding box
            of the points, ``box="detector"`` each sample's annotated ``box``.
        sigma: target Gaussian sigma in heatmap pixels.
        augment: augmentation ranges, or None for none (validation).
        seed: base seed (>= 0) of the per-item generators.

    Raises:
        DatasetError: a sample's point count differs from the layout's, or ``box="detector"`` and a
            sample has no box.
        UsageError: ``heatmap_stride`` does not divide ``input_size``, or a negative seed.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        layout: Layout | str,
        input_size: int = 256,
        heatmap_stride: int = 4,
        normalisation: crop.Normalisation = crop.Normalisation(),
        crop_rule: crop.CropRule = crop.CropRule(),
        sigma: float = 1.5,
        augment: AugmentConfig | None = None,
        seed: int = 0,
    ):
        self.samples = list(samples)
        self.layout = get_layout(layout) if isinstance(layout, str) else layout
        if input_size < 1 or heatmap_stride < 1 or input_size % heatmap_stride:
            raise UsageError(
                f"heatmap stride {heatmap_stride} must divide input size {input_size}; "
                "pick an input size that is a multiple of the model's stride"
            )
        if seed < 0:
            raise UsageError(f"dataset seed must be >= 0, got {seed}")
        if crop_rule.box not in ("landmarks", "detector"):
            raise UsageError(f"crop rule box must be 'landmarks' or 'detector', got '{crop_rule.box}'")
        self.input_size = input_size
        self.heatmap_stride = heatmap_stride
        self.heatmap_size = input_size // heatmap_stride
        self.normalisation = normalisation
        self.crop_rule = crop_rule
        self.sigma = sigma
        self.codec = HeatmapCodec(self.layout.num_points, input_size, heatmap_stride, sigma=sigma)  # the targets
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self._check_samples()
        logger.info(
            "dataset: %d faces, layout %s, input %d, heatmap %d (stride %d), augmentation %s",
            len(self.samples),
            self.layout.name,
            input_size,
            self.heatmap_size,
            heatmap_stride,
            "on" if augment is not None else "off",
        )

    def _check_samples(self) -> None:
        expected = self.layout.num_points
        for index, sample in enumerate(self.samples):
            points = np.asarray(sample.points)
            if points.ndim != 2 or points.shape != (expected, 2):
                raise DatasetError(
                    f"sample {index} ({sample.image}) has points of shape {points.shape}, but layout "
                    f"'{self.layout.name}' needs ({expected}, 2); choose the layout that matches the annotations"
                )
            if self.crop_rule.box == "detector" and sample.box is None:
                raise DatasetError(
                    f"sample {index} ({sample.image}) has no face box but the crop rule uses box='detector'; "
                    "use box='landmarks' or annotations that carry boxes (WFLW lists, HRNet CSVs)"
                )

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch`` (call before iterating each epoch, on every rank).

        DataLoader workers hold a copy of the dataset made when iteration starts, so this takes effect
        with ``persistent_workers=False`` (the default); persistent workers would keep the old epoch.
        """
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    def generator(self, index: int) -> np.random.Generator:
        """The Generator item ``index`` draws from in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, index])

    def _face_box(self, sample: Sample, points: np.ndarray) -> np.ndarray:
        if self.crop_rule.box == "detector":
            return np.asarray(sample.box, dtype=np.float64)
        finite = points[np.isfinite(points).all(axis=1)]
        return crop.landmark_box(finite if len(finite) else np.zeros((1, 2)))

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        path = Path(sample.image)
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            state = "does not exist" if not path.is_file() else "cannot be decoded by OpenCV"
            raise ImageReadError(f"image {path} (sample {index}) {state}; check the dataset's image root and the file")
        points = np.asarray(sample.points, dtype=np.float64)  # (K, 2) frame pixels
        matrix = crop.crop_matrix(self._face_box(sample, points), self.crop_rule, self.input_size)
        flipped = False
        rng = self.generator(index)
        if self.augment is not None:
            affine = random_affine(rng, self.augment, self.input_size)
            matrix, flipped = crop.compose(affine.matrix, matrix), affine.flipped
        image = crop.warp(frame, matrix, self.input_size)  # (S, S, 3) uint8 BGR
        if self.augment is not None:
            image = photometric(rng, image, self.augment)
        input_points = map_points(points, matrix, flipped, self.layout)  # (K, 2) input pixels
        heatmaps, weights = self.codec.encode(input_points)  # (K, S/stride, S/stride), (K,)
        tensor = crop.normalise(image[None], self.normalisation)[0]  # (3, S, S)
        return {
            "image": torch.from_numpy(tensor),
            "heatmaps": torch.from_numpy(heatmaps),
            "weights": torch.from_numpy(weights),
            "points": torch.from_numpy(input_points.astype(np.float32)),
            "matrix": torch.from_numpy(matrix.astype(np.float64)),
            "flipped": flipped,
            "index": index,
        }


def mix_avs(
    real_samples: Sequence[Sample], avs_samples: Sequence[Sample], ratio: float, seed: int, epoch: int = 0
) -> list[Sample]:
    """The training list: every real sample plus ``round(ratio * len(real))`` synthetic ones.

    Synthetic samples are drawn without replacement when there are enough, with replacement
    otherwise, from a Generator seeded with ``(seed, epoch)`` (pass the epoch to redraw them each
    epoch; the default keeps one draw for the run).

    Args:
        real_samples: the real training faces.
        avs_samples: the synthetic pool (e.g. from :func:`runtime.annotations.read_avs_root`).
        ratio: synthetic samples per real one (1.0: as many synthetic as real; 0: none).
        seed: base seed (>= 0).
        epoch: redraw index (>= 0).

    Returns:
        Real samples first, then the drawn synthetic ones (the sampler shuffles).

    Raises:
        UsageError: negative ratio or seed.
        DatasetError: a positive ratio with an empty synthetic pool.
    """
    if ratio < 0:
        raise UsageError(f"AVS ratio must be >= 0 (synthetic samples per real one), got {ratio}")
    if seed < 0 or epoch < 0:
        raise UsageError(f"seed and epoch must be >= 0, got {seed} and {epoch}")
    count = int(round(ratio * len(real_samples)))
    if count == 0:
        return list(real_samples)
    if not avs_samples:
        raise DatasetError(
            f"AVS ratio {ratio} asks for {count} synthetic samples but the synthetic set is empty; "
            "check the AVS folder or set the ratio to 0"
        )
    replace = count > len(avs_samples)
    chosen = np.random.default_rng([seed, epoch]).choice(len(avs_samples), size=count, replace=replace)
    if replace:
        logger.info("AVS: %d synthetic samples drawn with replacement from %d", count, len(avs_samples))
    return list(real_samples) + [avs_samples[i] for i in chosen]
