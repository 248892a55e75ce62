"""Score an artifact on annotated faces with the runtime's landmark math: ``python -m export.verify``.

Export uses this to check what it made (import checks, INT8 accuracy, ``python -m export.verify``).
Models run through :mod:`runtime.backends` (``open_model`` also runs models that exist only in memory,
for checks before anything is written); cropping, normalisation, decoding and back-projection to the frame are the runtime landmarker's
(:func:`runtime.landmarker.crop_inputs` / :func:`runtime.landmarker.decode_output`), so export
verifies exactly what the tracker runs.

Coordinate conventions: pixel centres are at integers in the frame and in the input square
(:func:`runtime.crop.crop_matrix`). A ``coords`` output holds (x, y) pairs normalised to the crop's
extent, 0 at its left/top edge and 1 at its right/bottom edge, so the input-pixel coordinate is
``value * input_size - 0.5`` (PFLD's ``(point - corner) / box_size`` labels, resized by OpenCV).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.detect import DEFAULT_DETECTOR
from runtime.card import Card
from runtime.errors import EdgemarkError
from runtime.face_crops import crop_faces
from runtime.landmarker import frame_points
from runtime.layouts import get_layout
from runtime.metrics import comparable_points, scored_nme

logger = logging.getLogger(__name__)


def nme(predicted: np.ndarray, truth: np.ndarray, card: Card, normalisation: str = "inter_ocular") -> np.ndarray:
    """Per-image NME of frame-pixel predictions against the annotations, as a fraction
    (:func:`runtime.metrics.scored_nme`; ``card`` is kept for the callers' symmetry)."""
    return scored_nme(predicted, truth, normalisation)[0]


# Precision -> default elementwise budget; INT8 is judged by NME change, not elementwise.
DEFAULT_MAX_ABS = {"fp32": 1e-4, "fp16": 1e-2, "int8": None}
# Budget on the label-free p95 (percent of the reference's inter-ocular distance). Measured on PFLD
# over the 12 faces of faces68 and the 275 frames of face_closeup.mp4 against ONNX Runtime FP32:
# OpenVINO FP16 (run in BF16 on an AVX-512 BF16 CPU) p95 0.32, OpenVINO NNCF INT8 (first conv and head
# in float) 2.77, ONNX Runtime Q/DQ INT8 (MinMax) 4.58. 2 % of the inter-ocular distance is about 1.3 px
# on a 64 px eye span, within human annotation noise: six times what FP16 costs, and a bar the two
# INT8 artifacts above miss, as they miss the 0.5-point NME-change budget.
DEFAULT_MAX_LABEL_FREE_P95 = 2.0


@dataclass(frozen=True)
class VerifyConfig:
    """What :func:`verify_artifact` compares and the budgets it enforces.

    Attributes:
        artifact: the artifact to check.
        reference: the artifact it was made from (usually the fp32 ONNX).
        images: folder of annotated faces (scored against their labels, and part of the label-free set).
        max_abs: budget on the max abs output difference; ``None`` picks by the artifact's
            precision (fp32 1e-4, fp16 1e-2, int8 not judged elementwise).
        max_nme_change: budget on how much worse (percent points of NME against the annotations)
            the artifact may be, inter-ocular and box-normalised alike.
        max_label_free_p95: budget on the p95 of the label-free NME (the artifact's points against the
            reference's, percent of the reference's inter-ocular distance).
        video: a video whose frames join the label-free set (``None``: the faces only).
        video_every: keep every N-th frame of ``video``.
        detector: face detector that starts the reference's track on the video.
        worst: how many worst points, faces and label-free inputs to report.
    """

    artifact: Path
    reference: Path
    images: Path
    max_abs: float | None = None
    max_nme_change: float = 0.5
    max_label_free_p95: float = DEFAULT_MAX_LABEL_FREE_P95
    video: Path | None = None
    video_every: int = 1
    detector: str = DEFAULT_DETECTOR
    worst: int = 5

    def __post_init__(self):
        from runtime.errors import UsageError

        budgets = (("--max-nme-change", self.max_nme_change), ("--max-label-free-p95", self.max_label_free_p95))
        for flag, value in budgets:
            if not np.isfinite(value) or value < 0:
                raise UsageError(f"{flag} {value}: need a finite budget >= 0 (percent points)")
        if self.video_every < 1:
            raise UsageError(f"--video-every {self.video_every}: need >= 1 (1: every frame)")
        if self.video is not None and not Path(self.video).is_file():
            raise UsageError(f"--video {self.video}: no such file; pass a video file or leave --video out")


def _non_finite(values: np.ndarray) -> int:
    return int(np.size(values) - np.count_nonzero(np.isfinite(values)))


def verify_artifact(config: VerifyConfig) -> dict:
    """Run an artifact and its reference on real faces (and video frames) and compare them.

    Two measures: NME against the annotations (both models, the change) and the label-free NME of the
    artifact's points against the reference's (:mod:`runtime.agreement`) on the faces and every
    ``video_every``-th video frame. Both models get identical input tensors. Anything non-finite (an
    output, an NME) fails.

    Returns:
        A JSON-ready report: max abs output difference, NME (inter-ocular and box, percent) of
        both, the NME changes, the worst points and faces, the label-free summary (mean, p95, max,
        worst inputs), the budgets and whether they held.
    """
    from runtime.agreement import check_comparable, compare, face_inputs, join, read_video_inputs
    from runtime.annotations import read_pts_folder
    from runtime.backends.registry import load_backend
    from runtime.card import read_card
    from runtime.landmarker import Landmarker

    for path in (config.artifact, config.reference):
        if not Path(path).is_file():
            raise EdgemarkError(f"{path}: not found; pass an existing artifact (.onnx, .xml, .engine) with a card")
    artifact_card, reference_card = read_card(config.artifact), read_card(config.reference)
    if (artifact_card.layout, artifact_card.num_points) != (reference_card.layout, reference_card.num_points):
        raise EdgemarkError(
            f"{config.artifact} predicts {artifact_card.layout} but {config.reference} predicts "
            f"{reference_card.layout}; compare artifacts of the same model"
        )
    check_comparable(artifact_card, reference_card, str(config.artifact), str(config.reference))
    samples = read_pts_folder(config.images)
    # One crop per face, shared: the cards take the same input (checked above).
    crops = crop_faces(samples, reference_card)
    with load_backend(config.artifact) as artifact_backend, load_backend(config.reference) as reference_backend:
        artifact, reference = Landmarker(artifact_backend), Landmarker(reference_backend)
        artifact_out, _ = artifact.run(crops.inputs)
        reference_out, _ = reference.run(crops.inputs)
        label_free_inputs = face_inputs(samples, reference_card)
        if config.video is not None:
            video = read_video_inputs(config.video, reference, config.video_every, config.detector)
            label_free_inputs = join(video, label_free_inputs)
        label_free = compare(artifact, reference, label_free_inputs, config.worst)
    artifact_points = frame_points(artifact_out, artifact_card, crops.matrices)
    reference_points = frame_points(reference_out, reference_card, crops.matrices)
    truth = crops.truth

    max_abs = (
        float(np.max(np.abs(artifact_out.astype(np.float64) - reference_out)))
        if artifact_out.shape == reference_out.shape
        else float("inf")
    )
    scores = {}
    for name, points, card in (
        ("artifact", artifact_points, artifact_card),
        ("reference", reference_points, reference_card),
    ):
        scores[name] = {norm: nme(points, truth, card, norm) for norm in ("inter_ocular", "box")}
    changes = {
        norm: float((scores["artifact"][norm].mean() - scores["reference"][norm].mean()) * 100)
        for norm in ("inter_ocular", "box")
    }
    change = changes["inter_ocular"]

    # Per-point shift of the artifact from the reference, in percent of each face's inter-ocular distance.
    _, scored_truth, scored_layout = comparable_points(reference_points, truth)
    eyes = get_layout(scored_layout).outer_eye_corners
    distance = np.linalg.norm(scored_truth[:, eyes[0]] - scored_truth[:, eyes[1]], axis=-1)
    shift = np.linalg.norm(artifact_points - reference_points, axis=-1) / distance[:, None] * 100  # (N, K)
    # A non-finite shift ranks first: it is the worst there is.
    ranked_shift = np.where(np.isfinite(shift), shift, np.inf)
    point_order = np.argsort(-ranked_shift.mean(axis=0), kind="stable")[: config.worst]
    face_change = (scores["artifact"]["inter_ocular"] - scores["reference"]["inter_ocular"]) * 100
    face_order = np.argsort(-np.where(np.isfinite(face_change), face_change, np.inf), kind="stable")[: config.worst]

    budget_abs = config.max_abs if config.max_abs is not None else DEFAULT_MAX_ABS.get(artifact_card.precision)
    failures = []
    bad_outputs = _non_finite(artifact_out)
    if bad_outputs:
        failures.append(f"{bad_outputs} non-finite (NaN/inf) output values on the annotated faces")
    if budget_abs is not None and not max_abs <= budget_abs:  # `not <=`: NaN fails too
        failures.append(f"max abs output difference {max_abs:.2e} > {budget_abs:.0e}")
    for norm, label in (("inter_ocular", "NME change"), ("box", "box NME change")):
        if not changes[norm] <= config.max_nme_change:
            failures.append(f"{label} {changes[norm]:+.3f} > {config.max_nme_change} points")
    free = label_free["inter_ocular"]
    if free["inputs"] == 0:
        failures.append("no label-free input (no face, and no video frame with a face)")
    elif free["non_finite"] or label_free["box"]["non_finite"]:
        count = max(free["non_finite"], label_free["box"]["non_finite"])
        failures.append(f"label-free NME is non-finite on {count} inputs")
    elif not free["p95"] <= config.max_label_free_p95:
        failures.append(f"label-free p95 {free['p95']:.3f} > {config.max_label_free_p95} % inter-ocular")
    return {
        "artifact": str(config.artifact),
        "reference": str(config.reference),
        "precision": {"artifact": artifact_card.precision, "reference": reference_card.precision},
        "images": str(config.images),
        "video": str(config.video) if config.video is not None else None,
        "video_every": config.video_every,
        "faces": len(samples),
        "scored_layout": scored_layout,
        "max_abs_output_diff": max_abs,
        "nme": {
            name: {norm: float(values.mean() * 100) for norm, values in score.items()} for name, score in scores.items()
        },
        "nme_change": change,
        "nme_change_box": changes["box"],
        "per_face": [
            {"image": image, "artifact": float(a * 100), "reference": float(r * 100)}
            for image, a, r in zip(
                crops.images, scores["artifact"]["inter_ocular"], scores["reference"]["inter_ocular"]
            )
        ],
        "worst_points": [
            {"index": int(i), "mean_shift": float(shift[:, i].mean()), "max_shift": float(shift[:, i].max())}
            for i in point_order
        ],
        "worst_faces": [{"image": crops.images[i], "nme_change": float(face_change[i])} for i in face_order],
        "label_free": label_free,
        "budgets": {
            "max_abs": budget_abs,
            "max_nme_change": config.max_nme_change,
            "max_label_free_p95": config.max_label_free_p95,
        },
        "failures": failures,
        "passed": not failures,
    }
