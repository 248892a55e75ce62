"""Landmark accuracy metrics: NME (inter-ocular, inter-pupil, box), FR, AUC, CED and the WFLW subset table."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from runtime.errors import EdgemarkError
from runtime.layouts import Layout, layout_for_points, shared_with_68

NORMALISATIONS = ("inter_ocular", "inter_pupil", "box")

# WFLW attribute flags in list-file order, and the subset names the papers report.
WFLW_ATTRIBUTES = ("pose", "expression", "illumination", "make_up", "occlusion", "blur")
WFLW_SUBSETS = ("Fullset", "Pose", "Expression", "Illumination", "Make-up", "Occlusion", "Blur")


def normalising_distance(truth: np.ndarray, layout: Layout, normalisation: str = "inter_ocular") -> np.ndarray:
    """Per-image distance NME divides by.

    Args:
        truth: (N, K, 2) ground-truth points in pixels.
        layout: the points' layout (gives eye indices).
        normalisation: ``inter_ocular`` (outer eye corners), ``inter_pupil`` (pupil centres) or
            ``box`` (sqrt(w * h) of the ground-truth bounding box, as in 300-W's box NME).

    Returns:
        (N,) distances.
    """
    truth = np.asarray(truth, dtype=np.float64)
    if normalisation == "inter_ocular":
        a, b = layout.outer_eye_corners
        return np.linalg.norm(truth[:, a] - truth[:, b], axis=-1)
    if normalisation == "inter_pupil":
        left = truth[:, list(layout.pupils[0])].mean(axis=1)
        right = truth[:, list(layout.pupils[1])].mean(axis=1)
        return np.linalg.norm(left - right, axis=-1)
    if normalisation == "box":
        extent = truth.max(axis=1) - truth.min(axis=1)
        return np.sqrt(extent[:, 0] * extent[:, 1])
    raise ValueError(f"Unknown normalisation '{normalisation}'. Valid: {', '.join(NORMALISATIONS)}")


def nme_per_image(
    predicted: np.ndarray, truth: np.ndarray, layout: Layout, normalisation: str = "inter_ocular"
) -> np.ndarray:
    """Mean point-to-point error of each image divided by its normalising distance; shape (N,)."""
    predicted = np.asarray(predicted, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if predicted.shape != truth.shape or predicted.ndim != 3:
        raise ValueError(f"predicted {predicted.shape} and truth {truth.shape} must both be (N, K, 2)")
    errors = np.linalg.norm(predicted - truth, axis=-1).mean(axis=1)
    return errors / normalising_distance(truth, layout, normalisation)


def comparable_points(predicted: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Predictions and annotations on the points both have, and the name of that layout (the one home
    of the 98 -> 68 and 66 -> 68 scoring rule).

    Same point count: unchanged. 68-point annotations: a 98-point model is mapped 98 -> 68 and scored on
    all 68; a 66-point model (``ibug66``) is scored on the 66 points it shares with iBUG-68, i.e.
    without the inner-mouth corners 60 and 64 (:func:`runtime.layouts.shared_with_68`).

    Raises:
        EdgemarkError: point counts no rule relates.
    """
    if predicted.shape[1] == truth.shape[1]:
        return predicted, truth, layout_for_points(truth.shape[1]).name
    if truth.shape[1] == 68 and predicted.shape[1] in (98, 66):
        predicted, truth, layout = shared_with_68(predicted, truth)
        return predicted, truth, layout.name
    raise EdgemarkError(
        f"the model predicts {predicted.shape[1]} points but the annotations have {truth.shape[1]}; score it on "
        "annotations of its own layout, or on 68-point ones (98- and 66-point models)"
    )


def scored_nme(predicted: np.ndarray, truth: np.ndarray, normalisation: str = "inter_ocular") -> tuple[np.ndarray, str]:
    """Per-image NME (fraction) of frame-pixel predictions against annotations, on the points both have
    (:func:`comparable_points`), and the layout scored in."""
    from runtime.layouts import get_layout

    predicted, truth, layout = comparable_points(predicted, truth)
    return nme_per_image(predicted, truth, get_layout(layout), normalisation), layout


def agreement_per_image(
    points: np.ndarray, reference: np.ndarray, layout: Layout, normalisation: str = "inter_ocular"
) -> np.ndarray:
    """Label-free error of one model against another: NME taking ``reference``'s points as the truth.

    Measures what quantization (or any conversion) changed, on inputs nobody annotated: every frame
    of a video, style variants of faces. The normalising distance comes from the reference's own
    points, so no annotation is needed. Shape (N,), a fraction like :func:`nme_per_image`.
    """
    return nme_per_image(points, reference, layout, normalisation)


def summarise_agreement(values: np.ndarray, names: Sequence[str], worst: int = 5) -> dict:
    """Mean, p95 and max of per-input label-free NME (in percent) and the worst inputs by name.

    Args:
        values: (N,) fractions from :func:`agreement_per_image`.
        names: (N,) what each input was (``video.mp4#frame 12``, ``face.jpg``, ``face.jpg@low_light``).
        worst: how many worst inputs to name.

    Non-finite values count as failures: they make ``max`` infinite and lead the worst list.
    """
    values = np.asarray(values, dtype=np.float64) * 100
    if len(values) != len(names):
        raise ValueError(f"{len(values)} values but {len(names)} names")
    if not len(values):
        return {"inputs": 0, "mean": float("nan"), "p95": float("nan"), "max": float("nan"), "worst": []}
    finite = np.isfinite(values)
    ranked = np.where(finite, values, np.inf)
    order = np.argsort(-ranked, kind="stable")[:worst]
    return {
        "inputs": int(len(values)),
        "non_finite": int((~finite).sum()),
        "mean": float(np.mean(ranked)),
        # No interpolation across an infinite value (it would give NaN).
        "p95": float(np.percentile(ranked, 95, method="linear" if finite.all() else "higher")),
        "max": float(np.max(ranked)),
        "worst": [{"input": str(names[i]), "nme": float(ranked[i])} for i in order],
    }


def failure_rate(nme: np.ndarray, threshold: float = 0.1) -> float:
    """FR@threshold: fraction of images whose NME exceeds ``threshold``; a NaN or infinite NME is a failure."""
    return float(np.mean(~(np.asarray(nme, dtype=np.float64) <= threshold)))


def ced_curve(nme: np.ndarray, threshold: float = 0.1, steps: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: (thresholds, fraction of images with NME <= each); NaN never counts."""
    nme = np.sort(np.asarray(nme, dtype=np.float64))
    thresholds = np.linspace(0.0, threshold, steps + 1)
    fractions = np.searchsorted(nme, thresholds, side="right") / max(len(nme), 1)
    return thresholds, fractions


def auc(nme: np.ndarray, threshold: float = 0.1, steps: int = 1000) -> float:
    """AUC@threshold: area under the CED curve up to ``threshold``, scaled to [0, 1]."""
    thresholds, fractions = ced_curve(nme, threshold, steps)
    return float(np.trapezoid(fractions, thresholds) / threshold)


def summarise(nme: np.ndarray, threshold: float = 0.1) -> dict[str, float]:
    """NME (mean), FR and AUC at ``threshold`` for one set of per-image NMEs; NME and FR in percent."""
    nme = np.asarray(nme)
    if len(nme) == 0:
        return {"count": 0, "nme": float("nan"), "fr": float("nan"), "auc": float("nan")}
    return {
        "count": int(len(nme)),
        "nme": float(nme.mean() * 100),
        "fr": failure_rate(nme, threshold) * 100,
        "auc": auc(nme, threshold),
    }


def wflw_subset_table(
    nme: np.ndarray, attributes: Sequence[Mapping[str, int]] | np.ndarray, threshold: float = 0.1
) -> dict[str, dict[str, float]]:
    """WFLW's table: Fullset plus the six attribute subsets, each with NME %, FR % and AUC.

    Args:
        nme: (N,) per-image NME.
        attributes: (N, 6) flags in WFLW list order, or one mapping per image keyed by
            :data:`WFLW_ATTRIBUTES`.
    """
    nme = np.asarray(nme)
    if len(attributes) and isinstance(attributes[0], Mapping):
        flags = np.array([[int(a.get(name, 0)) for name in WFLW_ATTRIBUTES] for a in attributes])
    else:
        flags = np.asarray(attributes, dtype=int).reshape(len(nme), len(WFLW_ATTRIBUTES))
    table = {"Fullset": summarise(nme, threshold)}
    for column, subset in enumerate(WFLW_SUBSETS[1:]):
        table[subset] = summarise(nme[flags[:, column] == 1], threshold)
    return table


def format_table(table: Mapping[str, Mapping[str, float]]) -> str:
    """Render a subset table as Markdown."""
    lines = ["| subset | images | NME % | FR@0.1 % | AUC@0.1 |", "|---|---:|---:|---:|---:|"]
    for subset, row in table.items():
        lines.append(f"| {subset} | {row['count']} | {row['nme']:.2f} | {row['fr']:.2f} | {row['auc']:.4f} |")
    return "\n".join(lines)
