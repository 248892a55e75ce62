"""How good a generated set is: does it keep the structure faces' landmarks, and do its styles differ?

``python -m train.style score GENERATED`` reads the folder ``generate`` wrote (its ``generate.json``
names the structure faces, the translator's resolution and crop, and each style reference's cut) and
measures, with a landmark model that had no part in the translator (default: the zoo's PFLD-GhostOne):

- **Structure.** The model's NME on every generated image against the label it was written with (the
  structure face's landmarks), beside its NME on the same faces' real crops written the way the
  generator writes its outputs (cut at the translator's resolution, resized to 384): a translator
  that kept the structure exactly and changed nothing else would score what those crops score. Also
  the original photographs' NME, for scale.
- **Whose layout.** Where a style reference is an annotated face of the set, each transfer with
  another face's structure is scored against both faces' landmarks: a translator whose latent carries
  the whole face draws the style face's layout instead of the structure's. The real crops scored the
  same way give the chance level (aligned crops of two faces can lie closer to each other's labels
  than the model's own error).
- **Styles.** Per image, five statistics inside the face (the hull of its landmarks): CIE Lab mean
  L, a, b (OpenCV's 8-bit scale), L standard deviation (contrast) and the standard deviation of the
  Laplacian (texture, fine detail). Their spread between styles (the SD of the style means), within a
  style (the SD over structures), across the real crops, and the correlation of each style's mean
  with its reference's own statistic (does the colour follow the style?). An unlabelled reference's
  face hull comes from the model's landmarks on it.

Writes nothing but the optional JSON; the crops it needs live in a temporary folder.
"""
from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from runtime import crop
from runtime.annotations import AVS_IMAGE_SIZE, Sample, read_avs_root
from runtime.errors import UsageError
from runtime.face_crops import read_image
from runtime.metrics import scored_nme
from train.style.data import crop_rule, read_faces

logger = logging.getLogger(__name__)

STATISTICS = ("L mean", "a mean", "b mean", "L std", "Laplacian std")
NORMALISATIONS = ("inter_ocular", "box")
LABEL_TOLERANCE_PX = 0.05  # a label file's points against the manifest's crop (written with 4 decimals)


@dataclass(frozen=True)
class ScoreConfig:
    """What :func:`score` measures.

    Attributes:
        generated: a folder written by ``python -m train.style generate``.
        model: a landmark artifact with a card (``.onnx``, ``.xml``, ``.pt``); empty: the zoo's PFLD-GhostOne.
        normalisation: ``inter_ocular`` or ``box`` for the headline NME (both are reported).
        data: the structure faces, when not where ``generate.json`` says (a relative path there is
            relative to the folder generate ran in).
        image_root: with ``data``: where its list/CSV image paths are relative to.
    """

    generated: Path
    model: str = ""
    normalisation: str = "inter_ocular"
    data: str = ""
    image_root: str = ""

    def __post_init__(self):
        if self.normalisation not in NORMALISATIONS:
            raise UsageError(f"--normalisation {self.normalisation}: expected one of {', '.join(NORMALISATIONS)}")


def read_manifest(folder: Path) -> dict[str, Any]:
    """``generate.json`` of a generated folder, refusing one too old to score."""
    from train.style.generate import MANIFEST

    path = folder / MANIFEST
    if not folder.is_dir() or not path.is_file():
        raise UsageError(f"{folder}: no {MANIFEST}; pass a folder written by python -m train.style generate")
    manifest = json.loads(path.read_text())
    missing = [key for key in ("crop_scale", "image_size", "data") if key not in manifest]
    missing += ["styles[].matrix"] if any("matrix" not in style for style in manifest.get("styles", [])) else []
    if missing:
        raise UsageError(f"{path}: written by an older generate (no {', '.join(missing)}); generate the set again to score it")
    return manifest


def face_statistics(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """:data:`STATISTICS` of a BGR image inside the convex hull of ``points``."""
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.rint(points).astype(np.int32)), 1)
    inside = mask.astype(bool)
    if not inside.any():
        return np.full(len(STATISTICS), np.nan)
    lab = cv2.cvtColor(image, cv2.COLOR_BGR2LAB)[inside].astype(np.float64)
    laplacian = cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F)[inside]
    return np.r_[lab.mean(axis=0), lab[:, 0].std(), laplacian.std()]


def _summary(values: np.ndarray) -> dict[str, float]:
    return {"n": len(values), "mean": float(np.mean(values)), "median": float(np.median(values))}


def _output_matrix(sample: Sample, crop_scale: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The translator's cut of ``sample`` (frame -> S) and that cut resized to the 384 output (frame -> 384)."""
    from train.style.generate import frame_to_output

    cut = crop.crop_matrix(crop.landmark_box(sample.points), crop_rule(crop_scale), size)
    return cut, crop.compose(frame_to_output(size), cut)


def real_crops(samples: list[Sample], crop_scale: float, size: int, folder: Path) -> list[Sample]:
    """Each structure face written as a perfect translator would: cut at ``size``, resized to 384."""
    crops = []
    for index, sample in enumerate(samples):
        cut, to_output = _output_matrix(sample, crop_scale, size)
        image = cv2.resize(crop.warp(read_image(sample.image), cut, size), (AVS_IMAGE_SIZE, AVS_IMAGE_SIZE),
                           interpolation=cv2.INTER_CUBIC)  # fmt: skip
        path = folder / f"{index:06d}.png"
        cv2.imwrite(str(path), image)
        crops.append(Sample(image=path, points=crop.apply(to_output, sample.points)))
    return crops


class _Model:
    """A landmark artifact run on annotated faces (cut by their annotations, or by a given box)."""

    def __init__(self, spec: str):
        from runtime.backends.registry import load_backend

        if not spec:
            from runtime.zoo import fetch_model

            spec = str(fetch_model())
        self.path = spec
        self.backend = load_backend(spec)
        self.card = self.backend.card

    def points(self, samples: list[Sample], images: list[np.ndarray] | None = None) -> np.ndarray:
        """(N, K, 2) predicted points in each sample's image (``images``: those images already read)."""
        from runtime.face_crops import crop_faces
        from runtime.landmarker import Landmarker, frame_points

        crops = crop_faces(samples, self.card, images)
        output, _ = Landmarker(self.backend).run(crops.inputs)
        return frame_points(output, self.card, crops.matrices)

    def close(self):
        self.backend.close()


def _truth(samples: list[Sample]) -> np.ndarray:
    return np.stack([sample.points for sample in samples]).astype(np.float64)


def _nme(predicted: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image NME in percent, both normalisations (:func:`runtime.metrics.scored_nme`)."""
    return {name: scored_nme(predicted, truth, name)[0] * 100 for name in NORMALISATIONS}


def score(config: ScoreConfig) -> dict[str, Any]:
    """Measure a generated folder (see the module docstring); returns the JSON-ready result."""
    from train.engine import progress_bar

    manifest = read_manifest(config.generated)
    size, crop_scale = int(manifest["image_size"]), float(manifest["crop_scale"])
    data, root = (config.data, config.image_root) if config.data else (manifest["data"], manifest.get("image_root"))
    if not Path(data).exists():
        raise UsageError(f"{data}: the structure faces of {config.generated} are not there; pass --data where they are")
    samples = read_faces(data, root or None)[: manifest["faces"]]
    generated = read_avs_root(config.generated)
    by_style: dict[str, list[tuple[int, Sample]]] = {style["name"]: [] for style in manifest["styles"]}
    for item in generated:
        index = int(Path(item.image).stem)
        if index >= len(samples):
            raise UsageError(f"{item.image}: face {index}, but {data} holds {len(samples)} faces; "
                             "the folder and the faces do not belong together")  # fmt: skip
        _, to_output = _output_matrix(samples[index], crop_scale, size)
        if np.abs(item.points - crop.apply(to_output, samples[index].points)).max() > LABEL_TOLERANCE_PX:
            raise UsageError(f"{item.image}: its label is not face {index}'s landmarks in the manifest's crop; "
                             f"the folder and {data} do not belong together")  # fmt: skip
        by_style[item.source].append((index, item))
    if any(len(items) != len(samples) for items in by_style.values()):
        raise UsageError(f"{config.generated}: a style folder does not hold all {len(samples)} faces; generate it again")

    model = _Model(config.model)
    head = config.normalisation
    try:
        with tempfile.TemporaryDirectory(prefix="edgemark-style-score-") as work:
            crops = real_crops(samples, crop_scale, size, Path(work))
            crop_images = [read_image(crop_sample.image) for crop_sample in crops]
        crop_points, crop_truth = model.points(crops, crop_images), _truth(crops)
        real_crop_nme = _nme(crop_points, crop_truth)
        structure: dict[str, Any] = {
            "real_photos": {k: _summary(v) for k, v in _nme(model.points(samples), _truth(samples)).items()},
            "real_crops": {k: _summary(v) for k, v in real_crop_nme.items()},
        }
        per_style, everything, layout_pairs = {}, {k: [] for k in NORMALISATIONS}, []
        style_stats, reference_stats = [], []
        for style in progress_bar(manifest["styles"], "score", len(manifest["styles"])):
            items = sorted(by_style[style["name"]], key=lambda pair: pair[0])
            indices, outputs = [index for index, _ in items], [item for _, item in items]
            images = [read_image(item.image) for item in outputs]
            predicted = model.points(outputs, images)
            values = _nme(predicted, _truth(outputs))
            for name in NORMALISATIONS:
                everything[name].append(values[name])
            per_style[style["name"]] = _summary(values[head])
            style_stats.append([face_statistics(image, item.points) for image, item in zip(images, outputs)])
            reference_stats.append(_reference_statistics(style, crop_scale, model))
            if style.get("points") is not None:
                style_points = np.asarray(style["points"], dtype=np.float64)
                layout_pairs += _layout_pairs(style_points, indices, predicted, values[head], crop_points,
                                              crop_truth, real_crop_nme[head], head)  # fmt: skip
        generated_nme = {k: np.concatenate(v) for k, v in everything.items()}
        structure["generated"] = {k: _summary(v) for k, v in generated_nme.items()}
        structure["per_style"] = per_style
        structure["excess_median"] = float(np.median(generated_nme[head]) - np.median(real_crop_nme[head]))
        structure["ratio_median"] = float(np.median(generated_nme[head]) / np.median(real_crop_nme[head]))
        real_stats = np.array([face_statistics(image, s.points) for image, s in zip(crop_images, crops)])
    finally:
        model.close()
    return {
        "generated": str(config.generated),
        "model": model.path,
        "normalisation": head,
        "faces": len(samples),
        "styles": len(manifest["styles"]),
        "translator": {"checkpoint": manifest.get("checkpoint"), "step": manifest.get("step"),
                       "image_size": size, "perceptual": manifest.get("perceptual", {}).get("kind")},  # fmt: skip
        "structure": structure,
        "layout": _layout_summary(layout_pairs),
        "style": _style_summary(np.array(style_stats), np.array(reference_stats), real_stats),
    }


def _reference_statistics(style: dict[str, Any], crop_scale: float, model: _Model) -> np.ndarray:
    """The reference's statistics in its cut at 384; its face hull from its labels, else from the model."""
    image = crop.warp(read_image(style["image"]), np.asarray(style["matrix"], dtype=np.float64), AVS_IMAGE_SIZE)
    if style.get("points") is not None:
        return face_statistics(image, np.asarray(style["points"], dtype=np.float64))
    # The cut is the face's box widened crop_scale times, so the face's box is the cut's centre square.
    half = AVS_IMAGE_SIZE / crop_scale / 2
    centre = (AVS_IMAGE_SIZE - 1) / 2
    box = np.array([[centre - half, centre - half], [centre + half, centre + half]])
    points = model.points([Sample(image=Path(style["image"]), points=box)], [image])[0]
    return face_statistics(image, points)


def _layout_pairs(
    style_points: np.ndarray, indices: list[int], predicted: np.ndarray, structure_nme: np.ndarray,
    crop_points: np.ndarray, crop_truth: np.ndarray, crop_nme: np.ndarray, head: str,
) -> list[tuple[float, ...]]:
    """For each transfer between two different faces: (NME vs the structure face, NME vs the style face),
    then the same two for the structure face's real crop (the chance level: aligned crops of different
    faces can sit closer to each other's labels than the model's own error).

    ``indices[k]`` is the structure face of output ``k``, ``predicted`` the model's points on the outputs;
    ``crop_*`` are the real crops' predictions, labels and NME, in face order.
    """
    others = [k for k, index in enumerate(indices) if np.abs(crop_truth[index] - style_points).max() > 1e-3]
    if not others:
        return []
    faces = [indices[k] for k in others]
    truth = np.repeat(style_points[None], len(others), axis=0)
    against_style = _nme(predicted[others], truth)[head]
    real_against_style = _nme(crop_points[faces], truth)[head]
    return [(float(own), float(other), float(real_own), float(real_other))
            for own, other, real_own, real_other
            in zip(structure_nme[others], against_style, crop_nme[faces], real_against_style)]  # fmt: skip


def _layout_summary(pairs: list[tuple[float, ...]]) -> dict[str, Any] | None:
    if not pairs:
        return None  # every reference unlabelled: nothing to compare against
    values = np.array(pairs)
    return {
        "transfers": len(pairs),
        "vs_structure_face": _summary(values[:, 0]),
        "vs_style_face": _summary(values[:, 1]),
        "closer_to_style_face": float(np.mean(values[:, 1] < values[:, 0])),
        "real_crops_closer_to_style_face": float(np.mean(values[:, 3] < values[:, 2])),
    }


def _style_summary(stats: np.ndarray, references: np.ndarray, real: np.ndarray) -> dict[str, Any]:
    """``stats`` (S styles, J faces, 5): spreads between and within styles, against the real crops' spread."""
    means = np.nanmean(stats, axis=1)  # (S, 5)
    table = {}
    for k, name in enumerate(STATISTICS):
        follows = None
        if len(means) > 2 and np.nanstd(references[:, k]) > 0 and np.nanstd(means[:, k]) > 0:
            follows = float(np.corrcoef(means[:, k], references[:, k])[0, 1])
        table[name] = {
            "between_styles_sd": float(np.nanstd(means[:, k])),
            "within_style_sd": float(np.nanmean(np.nanstd(stats[:, :, k], axis=1))),
            "real_crops_sd": float(np.nanstd(real[:, k])),
            "follows_reference_corr": follows,
        }
    return table


def render(result: dict[str, Any]) -> str:
    """The result as the few lines a person reads."""
    head = result["normalisation"]
    structure = result["structure"]
    lines = [
        f"{result['generated']}: {result['faces']} faces x {result['styles']} styles, scored by {result['model']} "
        f"(NME {head.replace('_', '-')}, %, mean / median)",
        "  real photographs      {mean:6.2f} / {median:6.2f}".format(**structure["real_photos"][head]),
        "  real crops (perfect)  {mean:6.2f} / {median:6.2f}".format(**structure["real_crops"][head]),
        "  generated             {mean:6.2f} / {median:6.2f}".format(**structure["generated"][head]),
        f"  median excess over the real crops: {structure['excess_median']:+.2f} points "
        f"(x{structure['ratio_median']:.2f})",
    ]
    layout = result["layout"]
    if layout is not None:
        lines.append(f"  transfers closer to the style face's layout than the structure's: "
                     f"{layout['closer_to_style_face'] * 100:.0f} % of {layout['transfers']} "
                     f"(the real crops, by chance: {layout['real_crops_closer_to_style_face'] * 100:.0f} %)")  # fmt: skip
    lines.append("  style statistic        between styles  within a style  real crops  follows reference (corr)")
    for name, row in result["style"].items():
        follows = "n/a" if row["follows_reference_corr"] is None else f"{row['follows_reference_corr']:+.2f}"
        lines.append(f"  {name:<21s}  {row['between_styles_sd']:14.2f}  {row['within_style_sd']:14.2f}  "
                     f"{row['real_crops_sd']:10.2f}  {follows:>9s}")  # fmt: skip
    return "\n".join(lines)
