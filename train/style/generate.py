"""Style transfer at scale: every face of a set in each of ``styles`` styles, written in the AVS release layout.

For each structure face ``j`` and style reference ``i`` the translator decodes ``j``'s landmark map
with ``i``'s posterior mean; a pass takes ``batch_size`` structure faces and all S styles, S x J
outputs in one batch (:meth:`StyleTranslator.transfer`). Each output (``image_size`` square) is
resized to 384x384 with ``cv2.INTER_CUBIC`` and written as ``<out>/<style>/Image/<j>.jpg``, and
``<out>/<style>/label.txt`` gets ``j``'s landmarks in that 384 frame followed by the file name, as
the AVS generator writes them (see :mod:`runtime.annotations`): ``read_avs_root``, ``python -m
train --avs-root`` and ``python -m calib build --avs`` read the folder as they read the released set.

The 384 frame is the crop's: the translator cuts each face with its crop rule at ``image_size`` and
the resize scales that cut by ``384 / image_size`` about the pixel edges, so a label is the face's
original point mapped by the crop matrix at 384 (exactly: ``runtime.crop`` puts pixel centres at
integers, as the resize does). WFLW lines keep their box (mapped the same way) and six attribute
flags; other sets write points only. The landmarks are the structure face's own by construction:
whether the image follows them is what the translator has learnt, which its tests and the report check.

Style references are faces of the set (chosen by ``seed``) or images of a folder without labels,
cut around the face a detector finds (``runtime.detect``; the whole image's centre square when it
finds none). The folder appears only when complete (written beside it, then renamed), with
``generate.json`` saying which checkpoint, loss and references made it.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from runtime import crop
from runtime.annotations import (
    AVS_IMAGE_DIR,
    AVS_IMAGE_SIZE,
    AVS_LABEL_FILE,
    IMAGE_SUFFIXES,
    Sample,
    avs_label_line,
)
from runtime.card import file_sha256
from runtime.errors import UsageError
from runtime.outputs import folder_when_complete, refuse_nonempty_folder
from train.engine import Distributed, progress_bar, select_device
from train.style.data import (
    NORMALISATION,
    crop_rule,
    face_dataset,
    layout_of,
    read_faces,
    to_bgr_uint8,
)
from train.style.fit import load_translator_state
from train.style.losses import describe
from train.style.network import StyleTranslator, TranslatorShape

logger = logging.getLogger(__name__)

MANIFEST = "generate.json"
JPEG_QUALITY = 95


@dataclass(frozen=True)
class GenerateConfig:
    """What :func:`generate` makes.

    Attributes:
        checkpoint: a translator ``last.pt`` from ``python -m train.style fit``.
        data: the annotated faces whose structures are drawn (anything train/ reads).
        output: the folder to create (must not exist or be empty).
        image_root: where list/CSV image paths are relative to.
        styles: number of style references.
        style_images: a folder of unlabelled images to take the references from (else from ``data``).
        batch_size: structure faces per pass (``styles * batch_size`` outputs per pass).
        chunk: most decodes per forward inside a pass (0: all of them at once).
        limit: translate only the first ``limit`` faces (0: all).
        seed: seed of the reference choice.
        device: ``auto``, ``cpu`` or ``cuda``.
        grid: optional contact-sheet PNG of the first pass (styles x structures).
        detector: face detector spec for ``style_images``.
    """

    checkpoint: Path
    data: str
    output: Path
    image_root: str = ""
    styles: int = 8
    style_images: Path | None = None
    batch_size: int = 4
    chunk: int = 0
    limit: int = 0
    seed: int = 0
    device: str = "auto"
    grid: Path | None = None
    detector: str = "yunet"

    def __post_init__(self):
        for flag, value, least in (("--styles", self.styles, 1), ("--batch-size", self.batch_size, 1),
                                   ("--chunk", self.chunk, 0), ("--limit", self.limit, 0), ("--seed", self.seed, 0)):
            if value < least:
                raise UsageError(f"{flag} must be at least {least}, got {value}")
        refuse_nonempty_folder(self.output)
        if self.style_images is not None and not self.style_images.is_dir():
            raise UsageError(f"--style-images {self.style_images}: not a folder; pass a folder of face images")
        if self.grid is not None and self.grid.suffix.lower() != ".png":
            raise UsageError(f"--grid {self.grid}: the contact sheet is a PNG; name it e.g. grid.png")


def load_translator(path: str | Path, device: str | torch.device = "cpu") -> tuple[StyleTranslator, dict[str, Any]]:
    """The translator of a checkpoint in eval mode, with the checkpoint dict."""
    state = load_translator_state(path, device)
    model = StyleTranslator(TranslatorShape(**state["shape"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state


def frame_to_output(image_size: int, output_size: int = AVS_IMAGE_SIZE) -> np.ndarray:
    """2x3 matrix of a resize from ``image_size`` to ``output_size`` (pixel centres at integers)."""
    factor = output_size / image_size
    return np.array([[factor, 0.0, (factor - 1) / 2], [0.0, factor, (factor - 1) / 2]])


def _style_name(index: int, path: Path) -> str:
    return f"style{index}_" + re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem)


@dataclass(frozen=True)
class Reference:
    """One style reference: its style name, image, translator input and where that input was cut.

    Attributes:
        name: the style folder's name.
        image: the reference's image file.
        tensor: (3, S, S) translator input, RGB in [-1, 1].
        matrix: (2, 3) image -> input-square matrix of the cut.
        points: its landmarks in the input square when it is an annotated face of the set, else ``None``.
    """

    name: str
    image: Path
    tensor: torch.Tensor
    matrix: np.ndarray
    points: np.ndarray | None


def references_from_set(dataset, samples: list[Sample], count: int, seed: int) -> list[Reference]:
    """``count`` faces of the set (seeded choice), cut as the translator sees them."""
    if count > len(samples):
        raise UsageError(f"--styles {count} asks for more style references than the {len(samples)} faces of the set")
    references = []
    for k, i in enumerate(np.random.default_rng(seed).choice(len(samples), size=count, replace=False)):
        item, sample = dataset[int(i)], samples[int(i)]
        matrix = item["matrix"].numpy()
        references.append(Reference(_style_name(k, Path(sample.image)), Path(sample.image), item["image"], matrix,
                                    crop.apply(matrix, sample.points)))  # fmt: skip
    return references


def references_from_folder(
    folder: Path, count: int, seed: int, size: int, crop_scale: float, detector: str
) -> list[Reference]:
    """``count`` images of ``folder`` (seeded choice), each cut around its largest detected face."""
    from runtime.detect import make_detector

    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(images) < count:
        raise UsageError(f"--style-images {folder}: {len(images)} images, fewer than --styles {count}")
    finder = make_detector(detector)
    references = []
    for k, i in enumerate(sorted(np.random.default_rng(seed).choice(len(images), size=count, replace=False))):
        path = images[int(i)]
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
            raise UsageError(f"--style-images: {path} cannot be decoded by OpenCV; remove it or convert it")
        boxes, _ = finder.detect(frame)
        if len(boxes):
            matrix = crop.crop_matrix(finder.box_conversion.detector_to_landmarks(boxes[:1])[0], crop_rule(crop_scale), size)
        else:
            logger.warning("%s: no face found; its centre square is the style reference", path)
            height, width = frame.shape[:2]
            matrix = crop.crop_matrix(np.array([-0.5, -0.5, width - 0.5, height - 0.5]), crop_rule(1.0), size)
        tensor = crop.normalise(crop.warp(frame, matrix, size)[None], NORMALISATION)[0]
        references.append(Reference(_style_name(k, path), path, torch.from_numpy(tensor), matrix, None))
    return references


def generate(config: GenerateConfig) -> dict[str, Any]:
    """Write the styled set; returns the manifest (also ``<output>/generate.json``)."""
    device = select_device(config.device, Distributed())
    model, state = load_translator(config.checkpoint, device)
    shape = model.shape
    samples = read_faces(config.data, config.image_root)
    if len(samples[0].points) != shape.num_points:
        raise UsageError(
            f"{config.data}: faces have {len(samples[0].points)} points but the translator was trained on "
            f"{shape.num_points}; use faces of its layout ({state['layout']})"
        )
    layout = layout_of(samples, state["layout"])
    if config.limit:
        samples = samples[: config.limit]
    dataset = face_dataset(samples, layout, shape.image_size, state["crop_scale"], augment=False, seed=0)
    if config.style_images is not None:
        references = references_from_folder(
            config.style_images, config.styles, config.seed, shape.image_size, state["crop_scale"], config.detector
        )
    else:
        references = references_from_set(dataset, samples, config.styles, config.seed)
    styles = torch.stack([reference.tensor for reference in references]).to(device)
    loss_text = describe(state["perceptual"])
    logger.info("translator %s (step %d; loss: %s): %d faces x %d styles", config.checkpoint, state["step"],
                loss_text, len(samples), len(references))  # fmt: skip

    output = config.output
    labels: dict[str, list[str]] = {reference.name: [] for reference in references}
    to_output = frame_to_output(shape.image_size)
    with folder_when_complete(output) as partial:
        for reference in references:
            (partial / reference.name / AVS_IMAGE_DIR).mkdir(parents=True)
        starts = range(0, len(samples), config.batch_size)
        for start in progress_bar(starts, "generate", len(starts)):
            items = [dataset[j] for j in range(start, min(start + config.batch_size, len(samples)))]
            maps = torch.stack([item["heatmaps"] for item in items]).to(device)  # (J, K, S, S)
            grid = model.transfer(styles, maps, chunk=config.chunk)  # (S, J, 3, S, S)
            if start == 0 and config.grid is not None:
                write_contact_sheet(config.grid, styles, torch.stack([item["image"] for item in items]), grid)
            for name, row in zip((reference.name for reference in references), grid):
                for item, image in zip(items, to_bgr_uint8(row)):
                    index = item["index"]
                    file_name = f"{index:06d}.jpg"
                    resized = cv2.resize(image, (AVS_IMAGE_SIZE, AVS_IMAGE_SIZE), interpolation=cv2.INTER_CUBIC)
                    if not cv2.imwrite(str(partial / name / AVS_IMAGE_DIR / file_name), resized,
                                       [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):  # fmt: skip
                        raise OSError(0, "OpenCV could not write the image", str(partial / name / file_name))
                    matrix = crop.compose(to_output, item["matrix"].numpy())  # original frame -> 384 output
                    labels[name].append(avs_label_line(samples[index], matrix, file_name))
        for name, lines in labels.items():
            (partial / name / AVS_LABEL_FILE).write_text("\n".join(lines) + "\n")
        manifest = {
            "checkpoint": str(config.checkpoint),
            "checkpoint_sha256": file_sha256(config.checkpoint),
            "step": state["step"],
            "perceptual": state["perceptual"],
            "data": str(config.data),
            "image_root": str(config.image_root),
            "faces": len(samples),
            "styles": [style_entry(reference, to_output) for reference in references],
            "image_size": shape.image_size,
            "crop_scale": state["crop_scale"],
            "output_size": AVS_IMAGE_SIZE,
            "outputs": len(samples) * len(references),
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2))
    logger.info("wrote %s: %d images in %d style folders", output, manifest["outputs"], len(references))
    return manifest


def style_entry(reference: Reference, to_output: np.ndarray) -> dict[str, Any]:
    """The manifest's record of a reference: name, image, its cut (image -> 384 output frame) and its
    landmarks in that frame when annotated (``null`` for an unlabelled image)."""
    matrix = crop.compose(to_output, reference.matrix)
    points = None if reference.points is None else crop.apply(to_output, reference.points)
    return {
        "name": reference.name,
        "image": str(reference.image),
        "matrix": np.round(matrix, 6).tolist(),
        "points": None if points is None else np.round(points, 4).tolist(),
    }


def write_contact_sheet(path: Path, styles: torch.Tensor, structures: torch.Tensor, grid: torch.Tensor, cell: int = 128):
    """PNG: top row the structure faces, left column the style references, cell (i, j) the transfer."""
    def tile(images) -> list[np.ndarray]:
        return [cv2.resize(image, (cell, cell), interpolation=cv2.INTER_AREA) for image in to_bgr_uint8(images)]

    blank = np.full((cell, cell, 3), 255, np.uint8)
    rows = [np.hstack([blank, *tile(structures)])]
    for style, row in zip(tile(styles), grid):
        rows.append(np.hstack([style, *tile(row)]))
    sheet = np.vstack(rows)
    from runtime.card import atomic_write_bytes

    ok, encoded = cv2.imencode(".png", sheet)
    if not ok:
        raise OSError(0, "OpenCV could not encode the contact sheet", str(path))
    atomic_write_bytes(path, encoded.tobytes())


def avs_from_faces(checkpoint: Path, faces: Path, output: Path, styles: int = 8, seed: int = 0) -> Path:
    """A translator-styled AVS folder of ``faces`` with references from ``faces`` (the calibration study's arm)."""
    count = min(styles, len(read_faces(faces)))
    generate(GenerateConfig(checkpoint=checkpoint, data=str(faces), output=output, styles=count, seed=seed))
    return output
