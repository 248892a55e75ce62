"""Run an ONNX artifact on annotated faces: an in-memory ONNX Runtime runner plus the runtime's landmark math.

Export uses this to check what it made (import checks, INT8 accuracy, ``python -m export.verify``).
:class:`OnnxRunner` also runs models that exist only in memory (checks before anything is written);
cropping, normalisation, decoding and back-projection to the frame are the runtime landmarker's
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
from typing import Sequence

import cv2
import numpy as np

from runtime.annotations import Sample
from runtime.card import Card
from runtime.crop import landmark_box
from runtime.errors import EdgemarkError
from runtime.landmarker import crop_inputs, decode_output
from runtime.layouts import get_layout, shared_with_68
from runtime.metrics import nme_per_image

logger = logging.getLogger(__name__)


class ModelLoadError(EdgemarkError):
    """An ONNX file that ONNX Runtime cannot load or run."""


class OnnxRunner:
    """The smallest useful ONNX Runtime backend: load, describe the input, run, close.

    Args:
        model: path of an ``.onnx`` file or its serialized bytes.
        threads: intra-op threads (``None``: ONNX Runtime's default).
    """

    def __init__(self, model: str | Path | bytes, threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        source = model if isinstance(model, bytes) else str(model)
        name = "<in-memory model>" if isinstance(model, bytes) else str(model)
        try:
            self._session = onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # ORT raises several types (Fail, InvalidGraph, NoSuchFile, ...)
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelLoadError(f"{name}: ONNX Runtime cannot load it ({first[:300]})") from None
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelLoadError(f"{name}: expected one image input, found {len(inputs)} ({[i.name for i in inputs]})")
        self.input_name: str = inputs[0].name
        # e.g. [1, 3, 112, 112] or ['batch', 3, 112, 112]
        self.input_shape: list[int | str | None] = list(inputs[0].shape)
        self.output_names: list[str] = [output.name for output in self._session.get_outputs()]

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the model insists on, or ``None`` when the batch dimension is dynamic."""
        first = self.input_shape[0] if self.input_shape else None
        return first if isinstance(first, int) else None

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on ``feeds`` and return every output by name."""
        values = self._session.run(None, feeds)
        return dict(zip(self.output_names, values))

    def run(self, inputs: np.ndarray, batch_size: int = 8) -> np.ndarray:
        """First output for (N, 3, S, S) ``inputs``, run in batches (size 1 when the batch is fixed at 1)."""
        return run_in_batches(self, inputs, batch_size)

    def close(self) -> None:
        """Release the session."""
        self._session = None


def run_in_batches(runner, inputs: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """First output of ``runner`` (``infer``, ``input_name``, ``output_names``, ``fixed_batch``) for
    (N, 3, S, S) ``inputs``, run in batches (size 1 when the model's batch is fixed at 1)."""
    batch_size = runner.fixed_batch or batch_size
    outputs = []
    for start in range(0, len(inputs), batch_size):
        chunk = np.ascontiguousarray(inputs[start : start + batch_size], dtype=np.float32)
        outputs.append(runner.infer({runner.input_name: chunk})[runner.output_names[0]])
    return np.concatenate(outputs, axis=0)


@dataclass
class FaceCrops:
    """Annotated faces cut and normalised as the model's input.

    Attributes:
        inputs: (N, 3, S, S) float32 model input.
        matrices: (N, 2, 3) frame -> input-square affine matrices.
        truth: (N, K, 2) annotated points in frame pixels.
        images: image file of each face.
    """

    inputs: np.ndarray
    matrices: np.ndarray
    truth: np.ndarray
    images: list[str]


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as 8-bit BGR; an unreadable file raises a one-line error."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise EdgemarkError(f"{path}: OpenCV cannot read this image; expected a JPEG/PNG/PPM/BMP file")
    return image


def face_box(sample: Sample, card: Card) -> np.ndarray:
    """The box the card's crop rule starts from: the landmarks' box, or the annotation's face box.

    A ``detector`` rule on annotations without face boxes falls back to the landmarks' box (logged),
    which is how landmark benchmarks crop anyway.
    """
    if card.crop_rule.box == "detector":
        if sample.box is not None:
            return np.asarray(sample.box, dtype=np.float64)
        logger.warning("%s: no face box in the annotation; cropping by the landmarks' box", sample.image)
    return landmark_box(sample.points)


def crop_faces(samples: Sequence[Sample], card: Card) -> FaceCrops:
    """Cut every sample with the card's crop rule and normalise it as the model expects.

    The cutting is the runtime landmarker's own (:func:`runtime.landmarker.crop_inputs`), so what is
    verified here is what runs on the edge.
    """
    inputs, matrices = [], []
    for sample in samples:
        # The box is already the kind the rule starts from: no detector/landmark conversion.
        face_inputs, face_matrices = crop_inputs(read_image(sample.image), face_box(sample, card), card, card.crop_rule.box)
        inputs.append(face_inputs)
        matrices.append(face_matrices)
    return FaceCrops(
        inputs=np.concatenate(inputs),
        matrices=np.concatenate(matrices),
        truth=np.stack([np.asarray(sample.points, dtype=np.float64) for sample in samples]),
        images=[str(sample.image) for sample in samples],
    )


def frame_points(output: np.ndarray, card: Card, matrices: np.ndarray) -> np.ndarray:
    """Decode raw outputs and map the points back to frame pixels (the runtime landmarker's decoding)."""
    return decode_output(output, card, matrices)[0]


def comparable_points(
    predicted: np.ndarray, truth: np.ndarray, card: Card
) -> tuple[np.ndarray, np.ndarray, str]:
    """Predictions and annotations on the points both have, and the name of that layout.

    Same point count: unchanged, in the card's layout. 68-point annotations: a 98-point model is
    mapped 98 -> 68 and scored on all 68; a 66-point model (``ibug66``) is scored on the 66 points it
    shares with iBUG-68, i.e. without the inner-mouth corners 60 and 64
    (:func:`runtime.layouts.shared_with_68`).
    """
    if predicted.shape[1] == truth.shape[1]:
        return predicted, truth, get_layout(card.layout).name
    if truth.shape[1] == 68 and predicted.shape[1] in (98, 66):
        predicted, truth, layout = shared_with_68(predicted, truth)
        return predicted, truth, layout.name
    raise EdgemarkError(
        f"the model predicts {predicted.shape[1]} points ({card.layout}) but the annotations have "
        f"{truth.shape[1]}; annotate with the same layout or with 68 points"
    )


def nme(predicted: np.ndarray, truth: np.ndarray, card: Card, normalisation: str = "inter_ocular") -> np.ndarray:
    """Per-image NME of frame-pixel predictions against the annotations, as a fraction."""
    predicted, truth, layout_name = comparable_points(predicted, truth, card)
    return nme_per_image(predicted, truth, get_layout(layout_name), normalisation)


# Precision -> default elementwise budget; INT8 is judged by NME change, not elementwise.
DEFAULT_MAX_ABS = {"fp32": 1e-4, "fp16": 1e-2, "int8": None}


@dataclass(frozen=True)
class VerifyConfig:
    """What :func:`verify_artifact` compares and the budgets it enforces.

    Attributes:
        artifact: the ONNX artifact to check.
        reference: the ONNX artifact it was made from (usually the fp32 one).
        images: folder of annotated faces.
        max_abs: budget on the max abs output difference; ``None`` picks by the artifact's
            precision (fp32 1e-4, fp16 1e-2, int8 not judged elementwise).
        max_nme_change: budget on how much worse (inter-ocular NME, percent points) the artifact may be.
        worst: how many worst points and faces to report.
    """

    artifact: Path
    reference: Path
    images: Path
    max_abs: float | None = None
    max_nme_change: float = 0.5
    worst: int = 5


def predict_faces(model: str | Path, card: Card, samples: Sequence[Sample]) -> tuple[np.ndarray, FaceCrops]:
    """Raw outputs of an artifact (any runtime backend, chosen by suffix) on annotated faces, and their crops."""
    from runtime.backends.registry import load_backend
    from runtime.landmarker import Landmarker

    crops = crop_faces(samples, card)
    with load_backend(model) as backend:
        output, _ = Landmarker(backend).run(crops.inputs)
    return output, crops


def verify_artifact(config: VerifyConfig) -> dict:
    """Run an artifact and its reference on real faces and compare outputs and NME.

    Returns:
        A JSON-ready report: max abs output difference, NME (inter-ocular and box, percent) of
        both, the NME change, the worst points and faces, the budgets and whether they held.
    """
    from runtime.annotations import read_pts_folder
    from runtime.card import read_card

    for path in (config.artifact, config.reference):
        if not Path(path).is_file():
            raise EdgemarkError(f"{path}: not found; pass an existing artifact (.onnx, .xml, .engine) with a card")
    artifact_card, reference_card = read_card(config.artifact), read_card(config.reference)
    if (artifact_card.layout, artifact_card.num_points) != (reference_card.layout, reference_card.num_points):
        raise EdgemarkError(
            f"{config.artifact} predicts {artifact_card.layout} but {config.reference} predicts "
            f"{reference_card.layout}; compare artifacts of the same model"
        )
    samples = read_pts_folder(config.images)
    artifact_out, artifact_crops = predict_faces(config.artifact, artifact_card, samples)
    reference_out, reference_crops = predict_faces(config.reference, reference_card, samples)
    artifact_points = frame_points(artifact_out, artifact_card, artifact_crops.matrices)
    reference_points = frame_points(reference_out, reference_card, reference_crops.matrices)
    truth = artifact_crops.truth

    max_abs = (
        float(np.max(np.abs(artifact_out - reference_out)))
        if artifact_out.shape == reference_out.shape
        else float("inf")
    )
    scores = {}
    for name, points, card in (
        ("artifact", artifact_points, artifact_card),
        ("reference", reference_points, reference_card),
    ):
        scores[name] = {norm: nme(points, truth, card, norm) for norm in ("inter_ocular", "box")}
    change = float((scores["artifact"]["inter_ocular"].mean() - scores["reference"]["inter_ocular"].mean()) * 100)

    # Per-point shift of the artifact from the reference, in percent of each face's inter-ocular distance.
    _, scored_truth, scored_layout = comparable_points(reference_points, truth, reference_card)
    eyes = get_layout(scored_layout).outer_eye_corners
    distance = np.linalg.norm(scored_truth[:, eyes[0]] - scored_truth[:, eyes[1]], axis=-1)
    shift = np.linalg.norm(artifact_points - reference_points, axis=-1) / distance[:, None] * 100  # (N, K)
    point_order = np.argsort(-shift.mean(axis=0))[: config.worst]
    face_change = (scores["artifact"]["inter_ocular"] - scores["reference"]["inter_ocular"]) * 100
    face_order = np.argsort(-face_change)[: config.worst]

    budget_abs = config.max_abs if config.max_abs is not None else DEFAULT_MAX_ABS.get(artifact_card.precision)
    failures = []
    if budget_abs is not None and max_abs > budget_abs:
        failures.append(f"max abs output difference {max_abs:.2e} > {budget_abs:.0e}")
    if change > config.max_nme_change:
        failures.append(f"NME change {change:+.3f} > {config.max_nme_change} points")
    return {
        "artifact": str(config.artifact),
        "reference": str(config.reference),
        "precision": {"artifact": artifact_card.precision, "reference": reference_card.precision},
        "images": str(config.images),
        "faces": len(samples),
        "scored_layout": scored_layout,
        "max_abs_output_diff": max_abs,
        "nme": {
            name: {norm: float(values.mean() * 100) for norm, values in score.items()} for name, score in scores.items()
        },
        "nme_change": change,
        "per_face": [
            {"image": image, "artifact": float(a * 100), "reference": float(r * 100)}
            for image, a, r in zip(
                artifact_crops.images, scores["artifact"]["inter_ocular"], scores["reference"]["inter_ocular"]
            )
        ],
        "worst_points": [
            {"index": int(i), "mean_shift": float(shift[:, i].mean()), "max_shift": float(shift[:, i].max())}
            for i in point_order
        ],
        "worst_faces": [{"image": artifact_crops.images[i], "nme_change": float(face_change[i])} for i in face_order],
        "budgets": {"max_abs": budget_abs, "max_nme_change": config.max_nme_change},
        "failures": failures,
        "passed": not failures,
    }
