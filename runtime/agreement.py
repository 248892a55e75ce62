"""Label-free error: how far a converted artifact's points are from its FP32 source's, on inputs nobody annotated.

NME against ground truth needs annotations, and there are few (12 faces in ``faces68``): too few to
see a rare quantization failure. Taking the reference model's (usually the FP32 source's) points as
the truth needs no labels, so every frame of a video, every annotated face and every style variant
of it can be an input. The measure is :func:`runtime.metrics.agreement_per_image` (NME of the
artifact's points with the reference's as truth, normalised by the reference's own inter-ocular
distance or box), summarised by :func:`runtime.metrics.summarise_agreement` as mean, p95 and max
with the worst inputs named: ``face_closeup.mp4#17`` (frame 17, 0-based), ``einstein.jpg``,
``einstein.jpg@low_light``.

Both models see the identical input tensor: every input is cut once, with the reference's card, from
a box that does not depend on the model under test:

- annotated faces: the annotation's box (:func:`runtime.face_crops.face_box`), as ``export.verify``
  crops them;
- video frames: the landmark box of the reference's own points on that frame, found by tracking the
  video with the reference (:class:`runtime.tracker.Tracker`, no smoothing). Frames where the
  reference finds no face are skipped and counted;
- style variants (made where ``calib`` is the caller, see ``calib.study``): crops passed in directly.

Used by ``python -m export.verify``, ``python -m runtime.report`` and ``python -m calib study``.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runtime.detect import DEFAULT_DETECTOR
from runtime.card import Card
from runtime.crop import landmark_box
from runtime.errors import EdgemarkError
from runtime.landmarker import Landmarker, crop_inputs, decode_output
from runtime.layouts import get_layout
from runtime.metrics import agreement_per_image, summarise_agreement

logger = logging.getLogger(__name__)

NORMALISATIONS = ("inter_ocular", "box")
# Inputs per backend call: bounds memory for big inputs and long videos.
CHUNK = 64


class AgreementError(EdgemarkError):
    """Two artifacts that cannot be compared on identical inputs (other preprocessing or layout)."""


@dataclass
class LabelFreeInputs:
    """Model inputs without labels, cut once so that every model compared sees the same tensors.

    Attributes:
        inputs: (N, 3, S, S) float32, cut and normalised with the reference's card.
        matrices: (N, 2, 3) frame -> input-square matrices (to map the points back to the frame).
        names: what each input is (``video.mp4#17``, ``face.jpg``, ``face.jpg@low_light``).
        kinds: per input ``frame``, ``face`` or ``style``.
        skipped: inputs left out, with why (frames where the reference found no face).
    """

    inputs: np.ndarray
    matrices: np.ndarray
    names: list[str]
    kinds: list[str]
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def empty(cls, card: Card) -> "LabelFreeInputs":
        size = card.input_size
        return cls(np.zeros((0, 3, size, size), np.float32), np.zeros((0, 2, 3)), [], [])

    def counts(self) -> dict[str, int]:
        """Inputs per kind, plus ``skipped``."""
        counts = {kind: self.kinds.count(kind) for kind in ("frame", "face", "style") if kind in self.kinds}
        return {**counts, "skipped": len(self.skipped)}


def join(*parts: LabelFreeInputs) -> LabelFreeInputs:
    """One set from several (same input size); names must stay unique."""
    parts = tuple(part for part in parts if part is not None)
    if not parts:
        raise ValueError("join needs at least one set")
    names = [name for part in parts for name in part.names]
    if len(set(names)) != len(names):
        raise ValueError("label-free inputs are named twice; name each input once")
    return LabelFreeInputs(
        inputs=np.concatenate([part.inputs for part in parts]),
        matrices=np.concatenate([part.matrices for part in parts]),
        names=names,
        kinds=[kind for part in parts for kind in part.kinds],
        skipped=[entry for part in parts for entry in part.skipped],
    )


def face_inputs(samples, card: Card, images: Sequence[np.ndarray] | None = None) -> LabelFreeInputs:
    """Annotated faces cut from their annotation's box (as ``export.verify`` cuts them); named by file name.

    Args:
        samples: :class:`runtime.annotations.Sample` s.
        card: the reference's card.
        images: the samples' images already in memory, or ``None`` to read them.
    """
    from runtime.face_crops import crop_faces

    crops = crop_faces(samples, card, images)
    names = [Path(image).name for image in crops.images]
    return LabelFreeInputs(crops.inputs, crops.matrices, names, ["face"] * len(names))


def video_inputs(
    frames: Iterable[np.ndarray | None],
    reference: Landmarker,
    name: str,
    every: int = 1,
    detector: str = DEFAULT_DETECTOR,
) -> LabelFreeInputs:
    """Every ``every``-th frame cut from the landmark box of the reference's own points on it.

    The reference tracks every frame (so the boxes follow the face as in deployment; no smoothing),
    then each kept frame is cut once more from the bounding box of the reference's points on that
    frame with the card's crop rule. The box depends on the reference only, so every model compared
    sees the same tensor. The first tracked face of each frame is used.

    Args:
        frames: BGR frames in order (``None`` for an unreadable one).
        reference: the reference model's landmarker (its card cuts the inputs).
        name: the video's name for the inputs' names (``name#index``, index 0-based over all frames).
        every: keep every N-th frame (1: all).
        detector: face detector spec of :func:`runtime.detect.make_detector` (to start the track).
    """
    from runtime.detect import make_detector
    from runtime.tracker import Tracker, TrackerConfig

    if every < 1:
        raise EdgemarkError(f"video every {every}: need >= 1 (1: every frame)")
    tracker = Tracker(reference, make_detector(detector), TrackerConfig(smoothing="none"))
    card = reference.card
    inputs, matrices, names, skipped = [], [], [], []
    for index, frame in enumerate(frames):
        result = tracker.process(frame)
        if index % every:
            continue
        label = f"{name}#{index}"
        if not result.faces:
            skipped.append(f"{label}: {result.error or 'the reference found no face'}")
            continue
        frame_inputs, frame_matrices = crop_inputs(frame, landmark_box(result.faces[0].raw_points), card, "landmarks")
        inputs.append(frame_inputs)
        matrices.append(frame_matrices)
        names.append(label)
    if skipped:
        kept = len(skipped) + len(names)
        logger.info("%s: the reference found no face in %d of the %d kept frames", name, len(skipped), kept)
    if not names:
        empty = LabelFreeInputs.empty(card)
        empty.skipped = skipped
        return empty
    return LabelFreeInputs(np.concatenate(inputs), np.concatenate(matrices), names, ["frame"] * len(names), skipped)


def read_video_inputs(
    path: str | Path, reference: Landmarker, every: int = 1, detector: str = DEFAULT_DETECTOR
) -> LabelFreeInputs:
    """:func:`video_inputs` of a video file, decoded frame by frame (never all in memory)."""
    from runtime.track import open_source

    path = Path(path)
    if not path.is_file():
        raise EdgemarkError(f"{path}: no such video file")
    frames, _, _, _ = open_source(str(path))
    return video_inputs((frame for frame, _ in frames), reference, path.name, every, detector)


def check_comparable(
    card: Card, reference_card: Card, artifact: str = "artifact", reference: str = "reference"
) -> None:
    """Raise :class:`AgreementError` unless both cards take the same input tensor and predict the same points."""
    for what, mine, theirs in (
        ("input size", card.input_size, reference_card.input_size),
        ("crop rule", card.crop_rule, reference_card.crop_rule),
        ("normalisation", card.normalisation, reference_card.normalisation),
        ("layout", (card.layout, card.num_points), (reference_card.layout, reference_card.num_points)),
    ):
        if mine != theirs:
            raise AgreementError(
                f"{artifact} and {reference} differ in {what} ({mine} vs {theirs}); the label-free comparison "
                "feeds both the same input, so compare an artifact with the model it was made from"
            )


def predict_points(landmarker: Landmarker, inputs: LabelFreeInputs) -> np.ndarray:
    """(N, K, 2) frame points of a model on the label-free inputs (raw outputs decoded by its card)."""
    card = landmarker.card
    if len(inputs) == 0:
        return np.zeros((0, card.num_points, 2))
    points = []
    for start in range(0, len(inputs), CHUNK):
        output, _ = landmarker.run(inputs.inputs[start : start + CHUNK])
        points.append(decode_output(output, card, inputs.matrices[start : start + CHUNK], landmarker.decode)[0])
    return np.concatenate(points)


def agreement_from_points(
    points: np.ndarray, reference_points: np.ndarray, layout: str, names: Sequence[str], worst: int = 5
) -> dict[str, Any]:
    """Label-free NME of ``points`` against ``reference_points`` (both (N, K, 2), same layout).

    Returns:
        ``inter_ocular`` and ``box``: :func:`runtime.metrics.summarise_agreement` each (percent);
        ``per_input``: ``{"input", "inter_ocular", "box"}`` per input in percent (non-finite as
        ``None``, which JSON can carry).
    """
    values = {norm: agreement_per_image(points, reference_points, get_layout(layout), norm) for norm in NORMALISATIONS}
    result: dict[str, Any] = {"inputs": len(names), "layout": get_layout(layout).name}
    for norm in NORMALISATIONS:
        result[norm] = summarise_agreement(values[norm], names, worst)
    result["per_input"] = [
        {"input": name, **{norm: _json_number(values[norm][i] * 100) for norm in NORMALISATIONS}}
        for i, name in enumerate(names)
    ]
    return result


def _json_number(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def compare(
    artifact: Landmarker,
    reference: Landmarker,
    inputs: LabelFreeInputs,
    worst: int = 5,
    reference_points: np.ndarray | None = None,
) -> dict[str, Any]:
    """Label-free error of ``artifact`` against ``reference`` on ``inputs`` (see the module docstring).

    Args:
        artifact: the model under test.
        reference: the model taken as the truth (its card cut ``inputs``).
        inputs: the label-free inputs.
        worst: how many worst inputs to name.
        reference_points: the reference's points on ``inputs`` when already computed (several artifacts
            against one reference).

    Returns:
        :func:`agreement_from_points`'s result plus ``counts`` (inputs per kind, skipped) and ``skipped``.
    """
    check_comparable(artifact.card, reference.card, artifact.backend.artifact.name, reference.backend.artifact.name)
    if reference_points is None:
        reference_points = predict_points(reference, inputs)
    points = predict_points(artifact, inputs)
    result = agreement_from_points(points, reference_points, artifact.card.layout, inputs.names, worst)
    result["counts"] = inputs.counts()
    result["skipped"] = list(inputs.skipped)
    return result


def format_summary(result: dict[str, Any]) -> list[str]:
    """A few lines for a terminal: mean / p95 / max per normalisation, the worst inputs, what was skipped."""
    counts = result["counts"]
    described = ", ".join(f"{count} {kind}s" for kind, count in counts.items() if kind != "skipped" and count)
    lines = [
        f"label-free vs the reference on {result['inputs']} inputs ({described or 'none'}; "
        f"{counts.get('skipped', 0)} frames skipped: no face), % of the reference's own distance:"
    ]
    for norm, label in (("inter_ocular", "inter-ocular"), ("box", "box")):
        summary = result[norm]
        non_finite = f", {summary['non_finite']} non-finite" if summary.get("non_finite") else ""
        lines.append(
            f"  {label:<12} mean {summary['mean']:.3f}  p95 {summary['p95']:.3f}  max {summary['max']:.3f}{non_finite}"
        )
    worst = ", ".join(f"{entry['input']} {entry['nme']:.2f}" for entry in result["inter_ocular"]["worst"])
    lines.append(f"  worst inputs (inter-ocular %): {worst}")
    return lines
