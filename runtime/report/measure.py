"""The report's measurements in this process: the shared inputs (annotated faces, decoded video) and,
per artifact, accuracy, label-free error, tracking and the synthetic study.

Each stage fills the rows' results; a failure of one artifact at one stage becomes that row's
reason (the rest still appears). Speed is measured elsewhere (:func:`runtime.bench.benchmark_artifacts`,
every artifact in its own process).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from runtime.annotations import Sample
from runtime.bench import failure_reason
from runtime.errors import EdgemarkError
from runtime.report.config import THRESHOLD, ReportConfig, ReportError
from runtime.report.rows import Accuracy, ArtifactRow, TrackerPass, Tracking

logger = logging.getLogger(__name__)

# A tracking is flagged (the model does not track this video; its figures are not a result) when its
# raw jitter passes this, in percent of the inter-ocular distance per frame: real head motion and a
# working model give 1-10 %; a model that has lost the face gives tens to hundreds.
WILD_JITTER_PERCENT = 25.0
# ... or when it never keeps the face 3 frames running (no jitter to measure: the face is lost within a few frames),
# ... or when it keeps the face in fewer than this fraction of the frames the best artifact of the
# report kept it in (the same detector runs for all, so the difference is the model losing the face).
LOST_FRACTION = 0.8


# -------------------------------------------------------------------------------------------------
# inputs shared by every artifact


@dataclass
class Faces:
    """Annotated faces read once: the samples and their images (BGR), in the same order."""

    samples: list[Sample]
    images: list[np.ndarray]
    skipped: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [Path(sample.image).name for sample in self.samples]

    @property
    def paths(self) -> list[str]:
        return [str(Path(sample.image).resolve()) for sample in self.samples]

    @property
    def truth(self) -> np.ndarray:
        """(N, K, 2) annotated points in pixels."""
        return np.stack([np.asarray(sample.points, dtype=np.float64) for sample in self.samples])

    @property
    def attributes(self) -> list[dict[str, int]]:
        return [dict(sample.attributes) for sample in self.samples]

    @property
    def has_wflw_attributes(self) -> bool:
        from runtime.metrics import WFLW_ATTRIBUTES

        return any(set(WFLW_ATTRIBUTES) <= set(a) for a in self.attributes)


def read_faces(spec: str) -> Faces:
    """Every readable annotated face of ``spec`` (see :func:`runtime.annotations.read_dataset`)."""
    from runtime.annotations import read_dataset

    samples = read_dataset(spec)
    images, kept, skipped = [], [], []
    for sample in samples:
        image = cv2.imread(str(sample.image), cv2.IMREAD_COLOR)
        if image is None:
            skipped.append(f"{sample.image}: OpenCV cannot read it")
            continue
        images.append(image)
        kept.append(sample)
    if not kept:
        raise ReportError(f"{spec}: none of the {len(samples)} annotated images could be read")
    counts = {len(sample.points) for sample in kept}
    if len(counts) != 1:
        raise ReportError(f"{spec}: faces carry different point counts ({sorted(counts)}); use one layout")
    return Faces(kept, images, skipped)


def read_frames(config: ReportConfig) -> tuple[list[np.ndarray], float]:
    """The video's frames decoded into memory (:func:`runtime.frames.read_video`) and its frame rate."""
    from runtime.frames import FrameError, read_video

    if not config.video:
        return [], 30.0
    try:
        return read_video(config.video, config.max_frames)
    except FrameError as error:
        raise ReportError(str(error)) from None


# -------------------------------------------------------------------------------------------------
# accuracy on the annotated faces


def predict_faces(landmarker, faces: Faces) -> np.ndarray:
    """(N, K, 2) frame-pixel predictions, each face cut from its annotation's box as ``export.verify``
    cuts it (:func:`runtime.face_crops.face_box`), so the NME measures the model, not a face detector."""
    from runtime.face_crops import face_box

    card = landmarker.card
    points = []
    for image, sample in zip(faces.images, faces.samples):
        # The box is already the kind the card's crop rule starts from: no detector/landmark conversion.
        result = landmarker.predict(image, face_box(sample, card), box_kind=card.crop_rule.box)
        points.append(result.points[0])
    return np.stack(points)


def score_points(predicted: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Per-image inter-ocular and box NME (fractions) and the layout scored in
    (:func:`runtime.metrics.scored_nme`)."""
    from runtime.metrics import scored_nme

    try:
        inter_ocular, layout = scored_nme(predicted, truth, "inter_ocular")
    except EdgemarkError as error:
        raise ReportError(str(error)) from None
    return inter_ocular, scored_nme(predicted, truth, "box")[0], layout


def accuracy(landmarker, faces: Faces) -> Accuracy:
    """NME (inter-ocular and box), FR and AUC at 0.1, per-image NME, and the WFLW table if attributes allow."""
    from runtime.metrics import summarise, wflw_subset_table

    started = time.perf_counter()
    predicted = predict_faces(landmarker, faces)
    inter_ocular, box, layout = score_points(predicted, faces.truth)
    return Accuracy(
        faces=len(faces.samples),
        scored_layout=layout,
        inter_ocular=summarise(inter_ocular, THRESHOLD),
        box=summarise(box, THRESHOLD),
        per_image=[
            {"image": name, "inter_ocular": float(a * 100), "box": float(b * 100)}
            for name, a, b in zip(faces.names, inter_ocular, box)
        ],
        wflw_subsets=wflw_subset_table(inter_ocular, faces.attributes, THRESHOLD) if faces.has_wflw_attributes else None,
        seconds=time.perf_counter() - started,
        nme_per_image=(inter_ocular, box),
    )


def accuracy_stage(rows: list[ArtifactRow], landmarkers: dict, faces: Faces) -> None:
    """:func:`accuracy` of every loaded artifact into its row."""
    from tqdm import tqdm

    for index, landmarker in tqdm(landmarkers.items(), desc="accuracy", unit="artifact", leave=False):
        row = rows[index]
        try:
            row.accuracy = accuracy(landmarker, faces)
        except Exception as error:  # noqa: BLE001 - a failing artifact is a row, not a crash
            row.reasons["accuracy"] = failure_reason(error)
            logger.warning("%s: accuracy failed: %s", row.name, row.reasons["accuracy"])
            logger.debug("accuracy failure", exc_info=True)
            continue
        result = row.accuracy
        logger.info(
            "%s: NME %.2f %% inter-ocular, %.2f %% box on %d faces in %.1f s",
            row.name, result.inter_ocular["nme"], result.box["nme"], result.faces, result.seconds,
        )  # fmt: skip


def calibration_overlap(card, faces: Faces | None) -> int | None:
    """How many evaluation images were in the artifact's calibration set (from its manifest), if known."""
    source = (card.calibration or {}).get("file")
    if not source or faces is None or not Path(source).is_file():
        return None
    try:
        with np.load(source, allow_pickle=False) as archive:
            manifest = json.loads(str(archive["manifest"])) if "manifest" in archive else None
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None
    if not manifest:
        return None
    used = {str(Path(sample["image"]).resolve()) for sample in manifest.get("samples", []) if "image" in sample}
    return len(used & set(faces.paths))


# -------------------------------------------------------------------------------------------------
# label-free error against the FP32 artifact of each layout


def label_free_stage(config: ReportConfig, rows: list[ArtifactRow], landmarkers: dict, references: dict,
                     faces: Faces | None, frames: list[np.ndarray]) -> None:  # fmt: skip
    """Label-free error of every artifact against the FP32 artifact of its layout (the NME change's reference).

    Inputs (:mod:`runtime.agreement`): every video frame, cut from the reference's own landmarks, and
    every annotated face, cut from its annotation; each input is cut once and fed to every model.

    Args:
        references: layout -> index of its reference row (:func:`runtime.report.assemble.layout_references`).
    """
    from runtime.agreement import (
        AgreementError,
        check_comparable,
        compare,
        face_inputs,
        join,
        predict_points,
        video_inputs,
    )

    for layout, reference_index in references.items():
        reference, reference_name = landmarkers[reference_index], rows[reference_index].name
        members = [index for index in landmarkers if rows[index].layout == layout]
        try:
            parts = []
            if frames:
                parts.append(video_inputs(frames, reference, Path(config.video).name, detector=config.detector))
            if faces is not None:
                parts.append(face_inputs(faces.samples, reference.card, faces.images))
            inputs = join(*parts)
            reference_points = predict_points(reference, inputs)
        except Exception as error:  # noqa: BLE001 - the rest of the report still appears
            for index in members:
                rows[index].reasons["label_free"] = f"reference {reference_name}: {failure_reason(error)}"
            logger.warning("label-free inputs of %s failed: %s", reference_name, failure_reason(error))
            continue
        for index in members:
            row = rows[index]
            try:
                check_comparable(landmarkers[index].card, reference.card, row.name, reference_name)
            except AgreementError as error:  # another model of the same layout: not a failure, just not comparable
                row.label_free_note = str(error)
                continue
            try:
                result = compare(landmarkers[index], reference, inputs, reference_points=reference_points)
            except Exception as error:  # noqa: BLE001
                row.reasons["label_free"] = failure_reason(error)
                logger.debug("label-free failure", exc_info=True)
                continue
            result.pop("per_input")  # the summaries and worst inputs are the report's; export.verify keeps every input
            result["reference"] = reference_name
            row.label_free = result
            logger.info(
                "%s: label-free vs %s on %d inputs: mean %.3f %%, p95 %.3f %% inter-ocular",
                row.name, reference_name, result["inputs"], result["inter_ocular"]["mean"],
                result["inter_ocular"]["p95"],
            )  # fmt: skip


# -------------------------------------------------------------------------------------------------
# tracking the real video


def finite_segments(points: np.ndarray) -> list[np.ndarray]:
    """Runs of consecutive frames whose points are all finite (a lost face splits the sequence)."""
    finite = np.isfinite(points).all(axis=(1, 2)) if len(points) else np.zeros(0, bool)
    segments, start = [], None
    for index, ok in enumerate([*finite, False]):
        if ok and start is None:
            start = index
        elif not ok and start is not None:
            segments.append(points[start:index])
            start = None
    return segments


def track_video(landmarker, detector, frames: list[np.ndarray], fps: float, smoothing: str) -> TrackerPass:
    """One tracker pass over the in-memory frames: FPS, faces found and jitter of the first track."""
    from runtime.jitter import video_jitter
    from runtime.tracker import Tracker, TrackerConfig, track_frames

    tracker = Tracker(landmarker, detector, TrackerConfig(smoothing=smoothing, fps=fps))
    result = track_frames(tracker, frames, fps)
    segments = finite_segments(result["points"]) if result["points"].size else []
    jitter = video_jitter(segments) if segments else {"pixels": float("nan"), "normalised": float("nan")}
    return TrackerPass(
        smoothing=smoothing,
        frames=result["frames"],
        faces_found=result["faces_found"],
        fps=result["fps"],
        seconds=result["seconds"],
        infer_ms_per_frame=result["infer_seconds"] / max(result["frames"], 1) * 1000,
        jitter_px=jitter["pixels"],
        jitter_percent=jitter["normalised"] * 100,
    )


def video_stage(config: ReportConfig, rows: list[ArtifactRow], landmarkers: dict, frames, fps: float) -> None:
    """Tracker passes: every artifact without smoothing, then every artifact smoothed (interleaved).

    With ``--smoothing none`` the raw pass is the smoothed one (one pass per artifact). A tracking that
    loses the face or jitters wildly is flagged (:func:`flag_tracking`).
    """
    from tqdm import tqdm

    from runtime.detect import make_detector

    try:
        detector = make_detector(config.detector)
    except Exception as error:  # noqa: BLE001
        for index in landmarkers:
            rows[index].reasons["video"] = f"face detector: {failure_reason(error)}"
        return
    kinds = {"raw": "none"} if config.smoothing == "none" else {"raw": "none", "smoothed": config.smoothing}
    passes: dict[int, dict[str, TrackerPass]] = {index: {} for index in landmarkers}
    jobs = [(kind, index) for kind in kinds for index in landmarkers]
    for kind, index in tqdm(jobs, desc="tracking", unit="pass", leave=False):
        row = rows[index]
        if "video" in row.reasons:
            continue
        try:
            passes[index][kind] = track_video(landmarkers[index], detector, frames, fps, kinds[kind])
        except Exception as error:  # noqa: BLE001
            row.reasons["video"] = failure_reason(error)
            logger.warning("%s: tracking failed: %s", row.name, row.reasons["video"])
            logger.debug("tracking failure", exc_info=True)
    for index, results in passes.items():
        row = rows[index]
        if "video" in row.reasons or len(results) < len(kinds):
            continue
        row.video = Tracking(raw=results["raw"], smoothed=results.get("smoothed", results["raw"]))
        logger.info(
            "%s: tracker %.0f FPS, jitter %.3f %% raw, %.3f %% %s", row.name, row.video.smoothed.fps,
            row.video.raw.jitter_percent, row.video.smoothed.jitter_percent, config.smoothing,
        )  # fmt: skip
    best_found = max((row.video.smoothed.faces_found for row in rows if row.video), default=0)
    for row in rows:
        if row.video:
            reason = flag_tracking(row.video, best_found)
            if reason:
                row.reasons["video"] = reason
                logger.warning("%s: tracking flagged: %s", row.name, reason)


def flag_tracking(video: Tracking, best_found: int) -> str:
    """Why a tracking is not a result (the face lost, never held, or wild jitter), or ``""`` when it is one.

    Args:
        video: the artifact's passes.
        best_found: the most frames with a face any artifact of the report tracked on this video.
    """
    smoothed, raw = video.smoothed, video.raw
    if smoothed.faces_found == 0:
        return f"no face tracked in any of {smoothed.frames} frames"
    problems = []
    kept = min(raw.faces_found, smoothed.faces_found)
    if kept < LOST_FRACTION * best_found:
        problems.append(f"lost the face: a face in {kept} of {smoothed.frames} frames, where another artifact "
                        f"kept it in {best_found}")  # fmt: skip
    if not np.isfinite(raw.jitter_percent):
        problems.append("never kept the face 3 frames running")
    elif raw.jitter_percent > WILD_JITTER_PERCENT:
        problems.append(f"raw jitter {raw.jitter_percent:.0f} % of the inter-ocular distance, where a working "
                        f"model stays under {WILD_JITTER_PERCENT:g} %")  # fmt: skip
    if not problems:
        return ""
    return "does not track this video (" + "; ".join(problems) + "): its tracking figures are not a result"


# -------------------------------------------------------------------------------------------------
# synthetic ground truth


def synthetic_study(config: ReportConfig) -> dict[str, Any] | None:
    """:func:`runtime.jitter.measure` on the annotated faces (``None`` without faces or with 0 frames)."""
    if not config.faces or not config.synthetic_frames:
        return None
    from runtime.jitter import JitterConfig, measure

    settings = JitterConfig(faces=config.faces, frames=config.synthetic_frames)
    try:
        tables = measure(settings)
    except Exception as error:  # noqa: BLE001 - the rest of the report still appears
        logger.warning("synthetic study failed: %s", failure_reason(error))
        return {"error": failure_reason(error), "settings": asdict(settings)}
    return {**tables, "settings": asdict(settings)}
