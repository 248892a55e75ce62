"""``python -m runtime.report``: accuracy, speed, tracking and jitter of artifacts in one report.

Examples:
  python -m runtime.report --artifacts pfld.onnx pfld_int8.onnx pfld.xml \\
      --faces ../shared/data/faces68 --video ../shared/data/video/face_closeup.mp4 --out report/
  python -m runtime.report --artifacts pfld.onnx pfld_int8.onnx --backends onnxruntime openvino \\
      --faces ../shared/data/faces68 --out report/ --screenshot report/report.png
  python -m runtime.report --artifacts model.onnx --checkpoint model.pt --reference model.pt@torch --out report/

An artifact is ``PATH`` (backend by suffix), ``PATH@BACKEND``, or expands to one row per backend of
``--backends`` that reads its suffix; ``--checkpoint X.pt`` adds a training checkpoint run by the
torch backend.

For each artifact (one row each; a failing one is a row with its reason, the rest still appears):

- **Accuracy** on annotated faces (``--faces``: a folder of images + ``.pts``, a WFLW list, an HRNet
  CSV). Each face is cropped from its annotation's landmark box with the card's crop rule (a
  detector-box rule uses the annotation's face box when there is one), as ``export.verify`` does,
  so the NME measures the model and not a face detector. 98-point predictions are scored against
  68-point truth through the standard WFLW-98 -> iBUG-68 map (:func:`runtime.layouts.to_68`). NME is
  given inter-ocular (outer eye corners) and box-normalised (sqrt of the truth box's w*h); FR@0.1 and
  AUC@0.1 on the inter-ocular NME; the NME change against the FP32 reference (``--reference``,
  default the first fp32 artifact) in percent points; the WFLW subset table when the annotations
  carry WFLW attributes.
- **Label-free error** (:mod:`runtime.agreement`): the NME of each artifact's points taking the
  points of the FP32 artifact of its layout (the NME change's reference) as the truth, on every video
  frame (cut from that FP32 artifact's own landmarks; frames where it finds no face are skipped) and
  every annotated face, each cut once and fed to every model: mean, p95 and max, the worst inputs
  named. It needs no labels, so it sees every frame, not only the annotated faces.
- **Speed** from :func:`runtime.bench.benchmark_artifacts` (every artifact in its own process,
  interleaved; see that module for what each figure means).
- **Tracking** on the pre-decoded video (``--video``, ``--max-frames``): end-to-end tracker FPS
  (:func:`runtime.tracker.track_frames`: detection, crop, inference, decode, smoothing; no decoding
  or drawing) and real-video jitter (:func:`runtime.jitter.video_jitter`) without smoothing and with
  ``--smoothing``. The two passes of every artifact are interleaved (all raw passes, then all
  smoothed ones).

Plus the synthetic ground-truth study of :mod:`runtime.jitter` on the same faces: smoothing methods
and heatmap decoders, each with NME, jitter and lag against exactly known points.

Outputs in ``--out``: ``report.md``, ``report.json``, a self-contained ``report.html`` (inline CSS,
plots embedded as base64 PNG, so the single file can be mailed), and ``latency_vs_nme.png``,
``ced.png``, ``smoothing_jitter.png``. ``--screenshot PNG`` renders the HTML in headless Chromium.
The exit status is 1 when no artifact produced any figure.
"""
from __future__ import annotations

import argparse
import base64
import datetime
import html
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from runtime.detect import DEFAULT_DETECTOR
from runtime.bench import (
    ArtifactSpec,
    BenchConfig,
    benchmark_artifacts,
    describe_machine,
    failure_reason,
    machine_description,
    speed_cells,
    write_json,
)
from runtime.errors import EdgemarkError, UsageError, cli_main

logger = logging.getLogger(__name__)

THRESHOLD = 0.1
PLOTS = {
    "latency_vs_nme": "latency_vs_nme.png",
    "ced": "ced.png",
    "smoothing_jitter": "smoothing_jitter.png",
}
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
# Per-image NME tables longer than this go to the JSON only.
MAX_PER_IMAGE_ROWS = 60
AFLW_NOTE = (
    "The AFLW2000-3D faces' .pts files were written from the 2-D rows of a 3-D fit: their jaw contour "
    "follows the fitted 3-D face, not the visible outline, so their inter-ocular NME is inflated on the jaw; "
    "the box-normalised NME is given beside it."
)


class ReportError(EdgemarkError):
    """The report as a whole could not be made (its inputs, its output folder, the screenshot)."""


# -------------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class ReportConfig:
    """What ``python -m runtime.report`` measures and writes (see :func:`build_parser` for each flag)."""

    artifacts: tuple[ArtifactSpec, ...]
    out: str
    faces: str = ""
    video: str = ""
    reference: ArtifactSpec | None = None
    device: str = "cpu"
    threads: int = 2
    batch: int = 8
    warmup: int = 20
    runs: int = 200
    rounds: int = 10
    isolate: bool = True
    max_frames: int = 0
    detector: str = DEFAULT_DETECTOR
    smoothing: str = "one_euro"
    synthetic_frames: int = 150
    plots: bool = True
    screenshot: str = ""
    title: str = "edgemark report"

    def __post_init__(self):
        from runtime.detect import parse_spec
        from runtime.smoothing import make_smoother

        self.bench_config()  # validates the artifacts and the speed settings
        if not self.out:
            raise UsageError("--out is required: the folder the report is written to")
        for flag, path in (("--faces", self.faces), ("--video", self.video)):
            if path and not Path(path).exists():
                raise UsageError(f"{flag} {path}: not found; pass an existing path or leave {flag} out")
        if self.max_frames < 0:
            raise UsageError(f"--max-frames {self.max_frames}: need >= 0 (0: every frame)")
        if self.synthetic_frames and self.synthetic_frames < 3:
            raise UsageError(f"--synthetic-frames {self.synthetic_frames}: need >= 3, or 0 to leave the study out")
        parse_spec(self.detector)
        make_smoother(self.smoothing)
        if self.reference is not None and _match_reference(self.reference, self.artifacts) is None:
            listed = ", ".join(spec.label for spec in self.artifacts)
            raise UsageError(f"--reference {self.reference.label} is not one of the artifacts ({listed})")
        if self.plots:
            from runtime.plots import require_matplotlib

            require_matplotlib()
        if self.screenshot:
            find_chromium()

    def bench_config(self) -> BenchConfig:
        return BenchConfig(
            self.artifacts,
            device=self.device,
            threads=self.threads,
            batch=self.batch,
            warmup=self.warmup,
            runs=self.runs,
            rounds=self.rounds,
            isolate=self.isolate,
        )


def _match_reference(reference: ArtifactSpec, artifacts: Sequence[ArtifactSpec]) -> int | None:
    """Index of the artifact ``reference`` names (same label, or same file and compatible backend)."""
    for index, spec in enumerate(artifacts):
        if spec.label == reference.label:
            return index
    for index, spec in enumerate(artifacts):
        same_file = Path(spec.path).resolve() == Path(reference.path).resolve()
        if same_file and reference.backend in (None, spec.backend):
            return index
    return None


def expand_artifacts(
    texts: Sequence[str], backends: Sequence[str] = (), checkpoints: Sequence[str] = ()
) -> tuple[ArtifactSpec, ...]:
    """Artifact specs from the command line: ``PATH[@BACKEND]`` each, times ``backends``, plus checkpoints.

    An artifact that names its backend keeps it; otherwise it gets one row per backend of
    ``backends`` that reads its suffix (by suffix alone when none does, or ``backends`` is empty).
    """
    from runtime.backends.registry import get_backend

    for name in backends:
        get_backend(name)
    specs: list[ArtifactSpec] = []
    for text in texts:
        spec = ArtifactSpec.parse(text)
        suffix = Path(spec.path).suffix.lower()
        readers = [name for name in backends if suffix in get_backend(name).capabilities.suffixes]
        if spec.backend is None and readers:
            specs.extend(ArtifactSpec(spec.path, name) for name in readers)
        else:
            specs.append(spec)
    specs.extend(ArtifactSpec(path, "torch") for path in checkpoints)
    return tuple(specs)


# -------------------------------------------------------------------------------------------------
# inputs shared by every artifact


@dataclass
class Faces:
    """Annotated faces read once: images, truth and attributes."""

    images: list[np.ndarray]
    names: list[str]
    paths: list[str]
    truth: np.ndarray  # (N, K, 2) pixels
    boxes: list[np.ndarray | None]
    attributes: list[dict[str, int]]
    skipped: list[str] = field(default_factory=list)

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
    return Faces(
        images=images,
        names=[Path(sample.image).name for sample in kept],
        paths=[str(Path(sample.image).resolve()) for sample in kept],
        truth=np.stack([np.asarray(sample.points, dtype=np.float64) for sample in kept]),
        boxes=[None if sample.box is None else np.asarray(sample.box, dtype=np.float64) for sample in kept],
        attributes=[dict(sample.attributes) for sample in kept],
        skipped=skipped,
    )


def read_video(path: str, max_frames: int = 0) -> tuple[list[np.ndarray], float]:
    """Decode a video into memory (at most ``max_frames``, 0: all); returns the frames and the frame rate."""
    from runtime.frames import FrameError
    from runtime.frames import read_video as decode

    try:
        return decode(path, max_frames)
    except FrameError as error:
        raise ReportError(str(error)) from None


# -------------------------------------------------------------------------------------------------
# per-artifact measurements (in this process)


def predict_faces(landmarker, faces: Faces) -> np.ndarray:
    """(N, K, 2) frame-pixel predictions, each face cropped from its annotation (see the module docstring)."""
    from runtime.crop import landmark_box

    rule_box = landmarker.card.crop_rule.box
    points = []
    for image, truth, box in zip(faces.images, faces.truth, faces.boxes):
        if rule_box == "detector" and box is not None:
            result = landmarker.predict(image, box, box_kind="detector")
        else:
            result = landmarker.predict(image, landmark_box(truth), box_kind="landmarks")
        points.append(result.points[0])
    return np.stack(points)


def score_points(predicted: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Per-image inter-ocular and box NME (fractions) and the layout scored in
    (:func:`runtime.metrics.comparable_points`)."""
    from runtime.metrics import scored_nme

    try:
        inter_ocular, layout = scored_nme(predicted, truth, "inter_ocular")
    except EdgemarkError as error:
        raise ReportError(str(error)) from None
    return inter_ocular, scored_nme(predicted, truth, "box")[0], layout


def accuracy(landmarker, faces: Faces) -> dict[str, Any]:
    """NME (inter-ocular and box), FR and AUC at 0.1, per-image NME, and the WFLW table if attributes allow."""
    from runtime.metrics import summarise, wflw_subset_table

    started = time.perf_counter()
    predicted = predict_faces(landmarker, faces)
    inter_ocular, box, layout = score_points(predicted, faces.truth)
    result = {
        "faces": len(faces.names),
        "scored_layout": layout,
        "inter_ocular": summarise(inter_ocular, THRESHOLD),
        "box": summarise(box, THRESHOLD),
        "per_image": [
            {"image": name, "inter_ocular": float(a * 100), "box": float(b * 100)}
            for name, a, b in zip(faces.names, inter_ocular, box)
        ],
        "wflw_subsets": wflw_subset_table(inter_ocular, faces.attributes, THRESHOLD) if faces.has_wflw_attributes else None,
        "seconds": time.perf_counter() - started,
    }
    result["_nme"] = (inter_ocular, box)  # for the plots; dropped before the JSON
    return result


def _finite_segments(points: np.ndarray) -> list[np.ndarray]:
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


def track_video(landmarker, detector, frames: list[np.ndarray], fps: float, smoothing: str) -> dict[str, Any]:
    """One tracker pass over the in-memory frames: FPS, faces found and jitter of the first track."""
    from runtime.jitter import video_jitter
    from runtime.tracker import Tracker, TrackerConfig, track_frames

    tracker = Tracker(landmarker, detector, TrackerConfig(smoothing=smoothing, fps=fps))
    result = track_frames(tracker, frames, fps)
    segments = _finite_segments(result["points"]) if result["points"].size else []
    jitter = video_jitter(segments) if segments else {"pixels": float("nan"), "normalised": float("nan")}
    return {
        "smoothing": smoothing,
        "frames": result["frames"],
        "faces_found": result["faces_found"],
        "fps": result["fps"],
        "seconds": result["seconds"],
        "infer_ms_per_frame": result["infer_seconds"] / max(result["frames"], 1) * 1000,
        "jitter_px": jitter["pixels"],
        "jitter_percent": jitter["normalised"] * 100,
    }


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
# the report


def _display_names(specs: Sequence[ArtifactSpec]) -> list[str]:
    names = [spec.label for spec in specs]
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name} #{seen[name]}")
    return unique


def build_report(config: ReportConfig) -> dict[str, Any]:
    """Measure every artifact of ``config`` and return the report document (also what report.json holds).

    Failures of one artifact or one stage are recorded in its row (``status``, ``reasons``); only
    problems with the shared inputs (faces, video) are raised, before anything is measured.
    """
    from tqdm import tqdm

    from runtime.backends.registry import load_backend
    from runtime.landmarker import Landmarker

    started = time.perf_counter()
    machine = machine_description()
    faces = read_faces(config.faces) if config.faces else None
    frames, video_fps = read_video(config.video, config.max_frames) if config.video else ([], 30.0)
    if faces:
        logger.info("read %d annotated faces from %s", len(faces.names), config.faces)
    if frames:
        logger.info("decoded %d frames of %s (%.1f fps)", len(frames), config.video, video_fps)

    names = _display_names(config.artifacts)
    rows: list[dict[str, Any]] = []
    for spec, name in zip(config.artifacts, names):
        rows.append(
            {
                "name": name,
                "artifact": spec.path,
                "backend": spec.backend,
                "precision": None,
                "format": None,
                "status": "failed",
                "reasons": {},
                "accuracy": None,
                "video": None,
                "speed": None,
                "calibration_overlap": None,
                "label_free": None,
            }
        )

    # Load every artifact once in this process for the accuracy and tracking stages.
    backends: dict[int, Any] = {}
    for index, spec in enumerate(config.artifacts):
        row = rows[index]
        try:
            backend = load_backend(spec.path, spec.backend, device=config.device, threads=config.threads)
        except Exception as error:  # noqa: BLE001 - a failing artifact is a row, not a crash
            row["reasons"]["load"] = failure_reason(error)
            logger.warning("%s: cannot load: %s", row["name"], row["reasons"]["load"])
            logger.debug("load failure", exc_info=True)
            continue
        backends[index] = backend
        card = backend.card
        row.update(backend=backend.name, precision=card.precision, format=card.format, layout=card.layout)
        row["calibration_overlap"] = calibration_overlap(card, faces)

    try:
        landmarkers = {}
        for index, backend in backends.items():
            try:
                landmarkers[index] = Landmarker(backend)
            except Exception as error:  # noqa: BLE001
                rows[index]["reasons"]["load"] = failure_reason(error)
        if faces is not None:
            for index, landmarker in tqdm(landmarkers.items(), desc="accuracy", unit="artifact", leave=False):
                try:
                    rows[index]["accuracy"] = accuracy(landmarker, faces)
                except Exception as error:  # noqa: BLE001
                    rows[index]["reasons"]["accuracy"] = failure_reason(error)
                    logger.warning("%s: accuracy failed: %s", rows[index]["name"], rows[index]["reasons"]["accuracy"])
                    logger.debug("accuracy failure", exc_info=True)
                    continue
                result = rows[index]["accuracy"]
                logger.info(
                    "%s: NME %.2f %% inter-ocular, %.2f %% box on %d faces in %.1f s",
                    rows[index]["name"], result["inter_ocular"]["nme"], result["box"]["nme"], result["faces"],
                    result["seconds"],
                )  # fmt: skip
        if faces is not None or frames:
            _label_free_stage(config, rows, landmarkers, faces, frames)
        if frames:
            _video_stage(config, rows, landmarkers, frames, video_fps)
    finally:
        for backend in backends.values():
            backend.close()

    # Speed: every artifact (the failed ones too, so their rows say what the benchmark saw).
    for index, speed in enumerate(benchmark_artifacts(config.bench_config())):
        rows[index]["speed"] = speed
        if speed["status"] != "ok":
            rows[index]["reasons"]["speed"] = speed["reason"]
        if rows[index]["precision"] is None:
            rows[index].update(backend=speed["backend"], precision=speed["precision"], format=speed["format"])

    reference_index = _reference_index(config, rows)
    _nme_changes(rows, reference_index)
    for row in rows:
        measured = [row["accuracy"], row["video"], row["speed"] if (row["speed"] or {}).get("status") == "ok" else None]
        if not any(measured):
            row["status"] = "failed"
        else:
            row["status"] = "partial" if row["reasons"] else "ok"

    synthetic = _synthetic_study(config)
    notes = _notes(config, faces, rows, reference_index)
    document = {
        "title": config.title,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "machine_summary": describe_machine(machine),
        "config": _config_summary(config),
        "faces": {
            "source": config.faces,
            "count": len(faces.names) if faces else 0,
            "skipped": faces.skipped if faces else [],
        },
        "video": {"source": config.video, "frames": len(frames), "fps": video_fps} if frames else None,
        "reference": rows[reference_index]["name"] if reference_index is not None else None,
        "artifacts": rows,
        "synthetic": synthetic,
        "notes": notes,
        "seconds": time.perf_counter() - started,
    }
    return document


def _label_free_stage(config: ReportConfig, rows, landmarkers, faces: Faces | None, frames: list[np.ndarray]) -> None:
    """Label-free error of every artifact against the FP32 artifact of its layout (the NME change's reference).

    Inputs (:mod:`runtime.agreement`): every video frame, cut from the reference's own landmarks, and
    every annotated face, cut from its annotation; each input is cut once and fed to every model.
    """
    from runtime.agreement import AgreementError, check_comparable, compare, face_inputs, join, predict_points
    from runtime.agreement import video_inputs
    from runtime.annotations import Sample

    references = _layout_references(rows, _reference_index(config, rows), lambda index: index in landmarkers)
    for layout, reference_index in references.items():
        reference = landmarkers[reference_index]
        members = [index for index in landmarkers if rows[index].get("layout") == layout]
        try:
            parts = []
            if frames:
                parts.append(video_inputs(frames, reference, Path(config.video).name, detector=config.detector))
            if faces is not None:
                samples = [Sample(Path(p), truth, box) for p, truth, box in zip(faces.paths, faces.truth, faces.boxes)]
                parts.append(face_inputs(samples, reference.card, faces.images))
            inputs = join(*parts)
            reference_points = predict_points(reference, inputs)
        except Exception as error:  # noqa: BLE001 - the rest of the report still appears
            for index in members:
                reason = f"reference {rows[reference_index]['name']}: {failure_reason(error)}"
                rows[index]["reasons"]["label_free"] = reason
            logger.warning("label-free inputs of %s failed: %s", rows[reference_index]["name"], failure_reason(error))
            continue
        for index in members:
            try:
                names = rows[index]["name"], rows[reference_index]["name"]
                check_comparable(landmarkers[index].card, reference.card, *names)
            except AgreementError as error:  # another model of the same layout: not a failure, just not comparable
                rows[index]["label_free_note"] = str(error)
                continue
            try:
                result = compare(landmarkers[index], reference, inputs, reference_points=reference_points)
            except Exception as error:  # noqa: BLE001
                rows[index]["reasons"]["label_free"] = failure_reason(error)
                logger.debug("label-free failure", exc_info=True)
                continue
            result.pop("per_input")  # the summaries and worst inputs are the report's; export.verify keeps every input
            result["reference"] = rows[reference_index]["name"]
            rows[index]["label_free"] = result
            logger.info(
                "%s: label-free vs %s on %d inputs: mean %.3f %%, p95 %.3f %% inter-ocular",
                rows[index]["name"], result["reference"], result["inputs"], result["inter_ocular"]["mean"],
                result["inter_ocular"]["p95"],
            )  # fmt: skip


def _video_stage(config: ReportConfig, rows, landmarkers, frames, fps) -> None:
    """Tracker passes: every artifact without smoothing, then every artifact smoothed (interleaved)."""
    from tqdm import tqdm

    from runtime.detect import make_detector

    try:
        detector = make_detector(config.detector)
    except Exception as error:  # noqa: BLE001
        for index in landmarkers:
            rows[index]["reasons"]["video"] = f"face detector: {failure_reason(error)}"
        return
    passes: dict[int, dict[str, Any]] = {index: {} for index in landmarkers}
    jobs = [(smoothing, index) for smoothing in ("none", config.smoothing) for index in landmarkers]
    for smoothing, index in tqdm(jobs, desc="tracking", unit="pass", leave=False):
        if "video" in rows[index]["reasons"]:
            continue
        try:
            passes[index][smoothing] = track_video(landmarkers[index], detector, frames, fps, smoothing)
        except Exception as error:  # noqa: BLE001
            rows[index]["reasons"]["video"] = failure_reason(error)
            logger.warning("%s: tracking failed: %s", rows[index]["name"], rows[index]["reasons"]["video"])
            logger.debug("tracking failure", exc_info=True)
    for index, results in passes.items():
        if "video" in rows[index]["reasons"] or len(results) < 2:
            continue
        raw, smoothed = results["none"], results[config.smoothing]
        rows[index]["video"] = {
            "frames": smoothed["frames"],
            "faces_found": smoothed["faces_found"],
            "fps": smoothed["fps"],
            "fps_unsmoothed": raw["fps"],
            "infer_ms_per_frame": smoothed["infer_ms_per_frame"],
            "smoothing": config.smoothing,
            "jitter_raw_percent": raw["jitter_percent"],
            "jitter_raw_px": raw["jitter_px"],
            "jitter_smoothed_percent": smoothed["jitter_percent"],
            "jitter_smoothed_px": smoothed["jitter_px"],
        }
        if smoothed["faces_found"] == 0:
            rows[index]["reasons"]["video"] = f"no face tracked in any of {smoothed['frames']} frames"
        logger.info(
            "%s: tracker %.0f FPS, jitter %.3f %% raw, %.3f %% %s",
            rows[index]["name"], smoothed["fps"], raw["jitter_percent"], smoothed["jitter_percent"], config.smoothing,
        )  # fmt: skip


def _reference_index(config: ReportConfig, rows) -> int | None:
    """The row NME changes are measured against: ``--reference``, else the first fp32 row with an NME."""
    if config.reference is not None:
        return _match_reference(config.reference, config.artifacts)
    for index, row in enumerate(rows):
        if row["precision"] == "fp32" and row["accuracy"]:
            return index
    return None


def _layout_references(rows, reference_index: int | None, usable) -> dict[Any, int]:
    """Layout -> index of the row other rows of that layout are compared with.

    The reference row for its own layout; for any other layout (another model in the same report, e.g.
    a train/ model beside a third-party one) the first FP32 row of that layout. Only rows for which
    ``usable(index)`` holds count.
    """
    references: dict[Any, int] = {}
    if reference_index is not None and usable(reference_index):
        references[rows[reference_index].get("layout")] = reference_index
    for index, row in enumerate(rows):
        if row["precision"] == "fp32" and usable(index) and row.get("layout") not in references:
            references[row.get("layout")] = index
    return references


def _nme_changes(rows, reference_index: int | None) -> None:
    """``nme_change`` of every scored row in percent points, against an FP32 row of the same layout.

    Rows of the reference's layout are compared with the reference; rows of another layout with the
    first FP32 row of their own layout (:func:`_layout_references`), recorded in
    ``nme_change_reference``; ``None`` where there is none.
    """
    scored = _layout_references(rows, reference_index, lambda index: bool(rows[index]["accuracy"]))
    references = {layout: rows[index] for layout, index in scored.items()}
    for row in rows:
        if row["accuracy"] is None:
            continue
        reference = references.get(row.get("layout"))
        if reference is None:
            row["accuracy"]["nme_change"] = None
            continue
        row["accuracy"]["nme_change_reference"] = reference["name"]
        row["accuracy"]["nme_change"] = {
            norm: row["accuracy"][norm]["nme"] - reference["accuracy"][norm]["nme"] for norm in ("inter_ocular", "box")
        }


def _synthetic_study(config: ReportConfig) -> dict[str, Any] | None:
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


def _notes(config: ReportConfig, faces: Faces | None, rows, reference_index) -> list[str]:
    notes = []
    if faces is not None:
        notes.append(
            "Faces are cropped from each annotation's landmark box with the artifact's crop rule (as export.verify "
            "does), so NME measures the landmark model, not a face detector. "
            + ("98-point predictions are scored on the 68 iBUG points (standard WFLW-98 to 68 map). "
               if any((r["accuracy"] or {}).get("scored_layout") == "ibug68" and r.get("layout") == "wflw98"
                      for r in rows) else "")
            + f"FR and AUC use the inter-ocular NME at {THRESHOLD}."
        )  # fmt: skip
        if any(name.startswith("aflw2000") for name in faces.names):
            notes.append(AFLW_NOTE)
        if len(faces.names) < 50:
            notes.append(
                f"Only {len(faces.names)} faces: one face moves the mean NME by about 1/{len(faces.names)} of its "
                "error and FR moves in steps of " + f"{100 / len(faces.names):.1f} %; read small differences as noise."
            )
        if faces.skipped:
            notes.append(f"Skipped {len(faces.skipped)} unreadable images: " + "; ".join(faces.skipped[:5]))
    for row in rows:
        if row["calibration_overlap"]:
            notes.append(
                f"{row['name']} was calibrated on {row['calibration_overlap']} of these evaluation faces "
                "(from its calibration manifest): its NME change is optimistic."
            )
    if any(r["accuracy"] for r in rows):
        if reference_index is None:
            notes.append("No FP32 artifact with an NME: the NME change column is empty (name one with --reference).")
        elif not rows[reference_index]["accuracy"]:
            reference = rows[reference_index]
            notes.append(f"The reference {reference['name']} has no NME ({_reasons(reference) or 'no faces'}): "
                         "the NME change column is empty.")
    for row in rows:
        if row.get("label_free_note"):
            notes.append(f"{row['name']}: no label-free figures: {row['label_free_note']}.")
        skipped = (row["label_free"] or {}).get("skipped") or []
        if skipped and row["name"] == (row["label_free"] or {}).get("reference"):
            notes.append(f"Label-free set of {row['name']}: {len(skipped)} video frames skipped (no face found by it), "
                         f"e.g. {skipped[0]}.")  # fmt: skip
    if config.video:
        notes.append(
            f"Tracker FPS: one pass per artifact over frames decoded beforehand (Haar detector at half size, "
            f"re-detection every 30 frames; {config.threads} inference threads), wall time of the whole per-frame "
            "pipeline, nothing drawn. Video jitter has no ground truth: RMS second difference of the first track's "
            "points (real head motion counts too), in percent of the predicted inter-ocular distance."
        )
    notes.append(
        f"Speed: every artifact in its own process, {config.threads} threads, interleaved in {config.rounds} "
        f"rounds; see python -m runtime.bench --help for each figure."
    )
    return notes


def _config_summary(config: ReportConfig) -> dict[str, Any]:
    values = asdict(config)
    values["artifacts"] = [spec.label for spec in config.artifacts]
    values["reference"] = config.reference.label if config.reference else None
    return values


# -------------------------------------------------------------------------------------------------
# rendering: one list of blocks, written as Markdown and as HTML


@dataclass
class Table:
    """A table rendered the same way to Markdown and HTML; ``failed`` marks rows to highlight."""

    headers: list[str]
    rows: list[list[str]]
    align: str  # one of "l"/"r" per column
    failed: list[bool] = field(default_factory=list)
    caption: str = ""


def _fmt(value, digits: int = 2, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    value = round(float(value), digits) + 0.0  # no "-0.000"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _reasons(row) -> str:
    """``load, speed: reason; video: other reason``: stages that failed for the same reason share it."""
    stages: dict[str, list[str]] = {}
    for stage, reason in row["reasons"].items():
        stages.setdefault(reason, []).append(stage)
    return "; ".join(f"{', '.join(names)}: {reason}" for reason, names in stages.items())


def _stage_reason(row, stage: str) -> str:
    """Why ``stage`` has no figures for this row: its own failure, else the load failure."""
    return row["reasons"].get(stage) or row["reasons"].get("load", "")


def _blocks(document: dict[str, Any], plots: dict[str, Path]) -> list[tuple[str, Any]]:
    rows = document["artifacts"]
    blocks: list[tuple[str, Any]] = [("h1", document["title"])]
    blocks.append(("p", f"Made {document['created']} in {document['seconds']:.0f} s on: {document['machine_summary']}."))
    reference = document["reference"]
    settings = document["config"]
    blocks.append(
        ("p", f"NME change is measured against {reference or 'no reference (none found)'} "
              "(models of another landmark layout: against the first FP32 artifact of their layout). "
              f"Faces: {document['faces']['source'] or 'none'} ({document['faces']['count']}). "
              f"Video: {settings['video'] or 'none'}"
              + (f" ({document['video']['frames']} frames at {document['video']['fps']:.0f} fps)." if document["video"] else "."))
    )  # fmt: skip

    # --- summary of failures first, so nobody misses them
    failing = [row for row in rows if row["reasons"]]
    if failing:
        blocks.append(("h2", "Failures"))
        blocks.append(("ul", [f"{row['name']} ({row['status']}): {_reasons(row)}" for row in failing]))

    blocks.append(("h2", "Accuracy"))
    accuracy_rows, failed = [], []
    for row in rows:
        result = row["accuracy"] or {}
        change = result.get("nme_change") or {}
        io, box = result.get("inter_ocular") or {}, result.get("box") or {}
        accuracy_rows.append(
            [row["name"], row["backend"] or "—", row["precision"] or "—", row["status"], str(result.get("faces", "—")),
             _fmt(io.get("nme")), _fmt(box.get("nme")), _fmt(change.get("inter_ocular"), 3, True),
             _fmt(change.get("box"), 3, True), _fmt(io.get("fr"), 1), _fmt(io.get("auc"), 4),
             _stage_reason(row, "accuracy")]
        )  # fmt: skip
        failed.append(not result)
    blocks.append(
        ("table", Table(
            ["artifact", "backend", "precision", "status", "faces", "NME io %", "NME box %", "Δ NME io (pts)",
             "Δ NME box (pts)", "FR@0.1 %", "AUC@0.1", "reason"],
            accuracy_rows, "llllrrrrrrrl", failed,
            "NME in percent of the inter-ocular distance (io) and of sqrt(w·h) of the truth box (box); Δ against "
            f"{reference or 'the reference'} (another layout: its own FP32 artifact); FR/AUC on inter-ocular NME at 0.1."))
    )  # fmt: skip

    labelled = [row for row in rows if row["label_free"] or "label_free" in row["reasons"]]
    if labelled:
        blocks.append(("h2", "Label-free error against FP32"))
        free_rows, failed = [], []
        for row in labelled:
            result = row["label_free"] or {}
            io, box = result.get("inter_ocular") or {}, result.get("box") or {}
            counts = result.get("counts") or {}
            worst = (io.get("worst") or [{}])[0]
            inputs = " + ".join(f"{counts[kind]} {kind}s" for kind in ("frame", "face", "style") if counts.get(kind))
            free_rows.append(
                [row["name"], row["precision"] or "—", result.get("reference", "—"), inputs or "—",
                 _fmt(io.get("mean"), 3), _fmt(io.get("p95"), 3), _fmt(io.get("max"), 3), _fmt(box.get("mean"), 3),
                 _fmt(box.get("p95"), 3),
                 f"{worst['input']} ({_fmt(worst['nme'])})" if worst else "—", _stage_reason(row, "label_free")]
            )  # fmt: skip
            failed.append(not result)
        blocks.append(
            ("table", Table(
                ["artifact", "precision", "against", "inputs", "mean io %", "p95 io %", "max io %", "mean box %",
                 "p95 box %", "worst input (io %)", "reason"],
                free_rows, "llllrrrrrll", failed,
                "NME of each artifact's points taking the FP32 artifact's points as the truth (no labels), in percent "
                "of the FP32 points' own inter-ocular distance (io) or sqrt(w·h) of their box; every video frame "
                "(cut from the FP32 model's own landmarks; frames where it finds no face are skipped) and every "
                "face, each cut once and fed to both models. Worst inputs: report.json."))
        )  # fmt: skip

    blocks.append(("h2", "Speed"))
    speed_rows, failed = [], []
    for row in rows:
        speed = row["speed"] or {}
        latency = speed.get("latency_ms") or {}
        throughput, memory, note = speed_cells(speed)
        speed_rows.append(
            [row["name"], row["backend"] or "—", row["precision"] or "—", _fmt(speed.get("load_s")),
             _fmt(latency.get("p50"), 3), _fmt(latency.get("p90"), 3), _fmt(latency.get("p99"), 3), throughput,
             _fmt(speed.get("file_mb")), memory, note]
        )  # fmt: skip
        failed.append(speed.get("status") != "ok")
    blocks.append(
        ("table", Table(
            ["artifact", "backend", "precision", "load s", "p50 ms", "p90 ms", "p99 ms", "images/s (batch)",
             "size MB", "peak RSS MB (+artifact)", "note"],
            speed_rows, "lllrrrrrrrl", failed,
            f"Latency at batch 1 with {settings['threads']} threads after {settings['warmup']} warm-up calls, "
            f"{settings['runs']} timed calls per artifact interleaved in {settings['rounds']} rounds, each artifact "
            "in its own process; peak RSS of that process (+ the rise from loading and running the artifact)."))
    )  # fmt: skip

    if document["video"]:
        blocks.append(("h2", "Tracking the real video"))
        video_rows, failed = [], []
        for row in rows:
            video = row["video"] or {}
            video_rows.append(
                [row["name"], row["backend"] or "—", row["precision"] or "—",
                 f"{video['faces_found']}/{video['frames']}" if video else "—", _fmt(video.get("fps"), 0),
                 _fmt(video.get("infer_ms_per_frame")), _fmt(video.get("jitter_raw_percent"), 3),
                 _fmt(video.get("jitter_raw_px"), 2), _fmt(video.get("jitter_smoothed_percent"), 3),
                 _fmt(video.get("jitter_smoothed_px"), 2), _stage_reason(row, "video")]
            )  # fmt: skip
            failed.append(not video)
        smoothing = settings["smoothing"]
        blocks.append(
            ("table", Table(
                ["artifact", "backend", "precision", "frames with a face", "tracker FPS", "inference ms/frame",
                 "jitter raw %", "jitter raw px", f"jitter {smoothing} %", f"jitter {smoothing} px", "reason"],
                video_rows, "lllrrrrrrrl", failed,
                "End-to-end tracker FPS with smoothing on; jitter = RMS second difference of the tracked points "
                "(no ground truth) without smoothing and with it."))
        )  # fmt: skip

    for key, title in (("latency_vs_nme", "Speed vs accuracy"), ("ced", "Cumulative error distribution"),
                       ("smoothing_jitter", "Jitter per smoothing method")):  # fmt: skip
        if key in plots:
            blocks.append(("h2", title))
            blocks.append(("img", (plots[key], title)))

    subsets = [row for row in rows if (row["accuracy"] or {}).get("wflw_subsets")]
    if subsets:
        blocks.append(("h2", "WFLW subsets"))
        for row in subsets:
            table = row["accuracy"]["wflw_subsets"]
            blocks.append(
                ("table", Table(
                    ["subset", "images", "NME %", "FR@0.1 %", "AUC@0.1"],
                    [[name, str(v["count"]), _fmt(v["nme"]), _fmt(v["fr"]), _fmt(v["auc"], 4)] for name, v in table.items()],
                    "lrrrr", caption=row["name"]))
            )  # fmt: skip

    scored = [row for row in rows if row["accuracy"]]
    if scored and len(scored[0]["accuracy"]["per_image"]) <= MAX_PER_IMAGE_ROWS:
        blocks.append(("h2", "NME per image (inter-ocular / box, %)"))
        images = [entry["image"] for entry in scored[0]["accuracy"]["per_image"]]
        table_rows = []
        for position, image in enumerate(images):
            cells = [image]
            for row in scored:
                entry = row["accuracy"]["per_image"][position]
                cells.append(f"{entry['inter_ocular']:.2f} / {entry['box']:.2f}")
            table_rows.append(cells)
        blocks.append(("table", Table(["image", *[row["name"] for row in scored]], table_rows, "l" + "r" * len(scored))))

    synthetic = document["synthetic"]
    if synthetic:
        blocks.append(("h2", "Synthetic ground truth: smoothing and decoding"))
        if "error" in synthetic:
            blocks.append(("p", f"The synthetic study failed: {synthetic['error']}"))
        else:
            s = synthetic["settings"]
            blocks.append(
                ("p", (f"Each annotated face moves along a known {s['path']} path ({s['frames']} frames at "
                       f"{s['fps']:g} fps, {s['face_size_px']:g} px faces), so every frame's true points are exact. "
                       f"Smoothers get the true points plus {s['noise_px']} px Gaussian noise; decoders get noisy "
                       f"Gaussian heatmaps (stride {s['stride']}, noise {s['map_noise']} of the peak). Jitter is the "
                       "RMS frame-to-frame change of the error; lag in frames (positive: trails the truth)."))
            )  # fmt: skip
            for key, title in (("smoothers", "smoothing method"), ("decoders", "heatmap decoder")):
                blocks.append(
                    ("table", Table(
                        [title, "NME %", "jitter %", "lag (frames)"],
                        [[r["method"], _fmt(r["nme"], 3), _fmt(r["jitter"], 3), str(r["lag"])] for r in synthetic[key]],
                        "lrrr"))
                )  # fmt: skip

    blocks.append(("h2", "Notes"))
    blocks.append(("ul", document["notes"]))
    blocks.append(("h2", "Machine"))
    machine = document["machine"]
    machine_rows = [[key, ", ".join(value) if isinstance(value, list) else str(value)]
                    for key, value in machine.items() if key != "libraries"]  # fmt: skip
    machine_rows += [[f"{name} version", version] for name, version in machine["libraries"].items()]
    blocks.append(("table", Table(["", ""], machine_rows, "ll")))
    return blocks


def _markdown_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks, folder: Path) -> str:
    """The blocks as Markdown; images are linked relative to ``folder``."""
    lines: list[str] = []
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3"):
            lines += ["#" * int(kind[1]) + " " + content, ""]
        elif kind == "p":
            lines += [content, ""]
        elif kind == "ul":
            lines += [f"- {item}" for item in content] + [""]
        elif kind == "img":
            path, title = content
            lines += [f"![{title}]({os.path.relpath(path, folder)})", ""]
        elif kind == "table":
            if content.caption:
                lines += [f"*{content.caption}*", ""]
            lines.append("| " + " | ".join(_markdown_cell(h) for h in content.headers) + " |")
            lines.append("|" + "|".join("---:" if a == "r" else "---" for a in content.align) + "|")
            for row in content.rows:
                lines.append("| " + " | ".join(_markdown_cell(c) for c in row) + " |")
            lines.append("")
    return "\n".join(lines)


STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; margin: 24px auto;
       max-width: 1220px; padding: 0 16px; color: #1a1a1a; line-height: 1.45; font-size: 14px; }
h1 { font-size: 26px; border-bottom: 3px solid #1f4e79; padding-bottom: 6px; }
h2 { font-size: 19px; color: #1f4e79; margin-top: 30px; border-bottom: 1px solid #d0d7de; padding-bottom: 3px; }
table { border-collapse: collapse; margin: 8px 0 18px; font-size: 12.5px; }
th { background: #1f4e79; color: #ffffff; padding: 6px 9px; text-align: left; font-weight: 600; }
td { padding: 5px 9px; border-bottom: 1px solid #e1e4e8; vertical-align: top; }
td.r { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #f6f8fa; }
tr.failed td { background: #fde8e8; color: #8a1f1f; }
caption { caption-side: top; text-align: left; font-style: italic; color: #555; padding-bottom: 4px; max-width: 1100px; }
img { max-width: 100%; border: 1px solid #d0d7de; margin: 6px 0 12px; }
ul { padding-left: 22px; } li { margin-bottom: 4px; }
"""


def render_html(blocks, title: str) -> str:
    """The blocks as one self-contained HTML page (inline CSS, images as base64 data URIs)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
    ]
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3"):
            parts.append(f"<{kind}>{html.escape(content)}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{html.escape(content)}</p>")
        elif kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in content) + "</ul>")
        elif kind == "img":
            path, alt = content
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            parts.append(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')
        elif kind == "table":
            parts.append("<table>")
            if content.caption:
                parts.append(f"<caption>{html.escape(content.caption)}</caption>")
            if any(content.headers):
                parts.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in content.headers) + "</tr>")
            for index, row in enumerate(content.rows):
                failed = index < len(content.failed) and content.failed[index]
                cells = "".join(
                    f'<td class="{align}">{html.escape(str(cell))}</td>' for cell, align in zip(row, content.align)
                )
                parts.append(f'<tr class="failed">{cells}</tr>' if failed else f"<tr>{cells}</tr>")
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def draw_plots(document: dict[str, Any], folder: Path) -> dict[str, Path]:
    """The report's PNGs in ``folder``; a plot that fails is logged and left out (the report still appears)."""
    from runtime import plots

    rows = document["artifacts"]
    made: dict[str, Path] = {}
    reference = next((r for r in rows if r["name"] == document["reference"]), None)
    reference_nme = (reference["accuracy"] or {}).get("inter_ocular", {}).get("nme") if reference else None
    scatter = [
        (row["name"], row["speed"]["latency_ms"]["p50"], row["accuracy"]["inter_ocular"]["nme"], index)
        for index, row in enumerate(rows)
        if row["accuracy"] and (row["speed"] or {}).get("latency_ms")
    ]
    curves = [(row["name"], *row["accuracy"]["_nme"], index) for index, row in enumerate(rows) if row["accuracy"]]
    video = [
        (row["name"], row["video"]["jitter_raw_percent"], row["video"]["jitter_smoothed_percent"], index)
        for index, row in enumerate(rows)
        if row["video"]
    ]
    jobs = []
    if curves:
        jobs.append(("latency_vs_nme", lambda path: plots.latency_vs_nme(scatter, path, reference_nme)))
        jobs.append(("ced", lambda path: plots.ced_curves(curves, path, THRESHOLD)))
    synthetic = document["synthetic"]
    if synthetic and "smoothers" in synthetic:
        jobs.append(("smoothing_jitter", lambda path: plots.smoothing_jitter(synthetic["smoothers"], path, video)))
    for key, draw in jobs:
        try:
            made[key] = draw(folder / PLOTS[key])
        except Exception as error:  # noqa: BLE001
            document["notes"].append(f"Plot {PLOTS[key]} could not be drawn: {failure_reason(error)}")
            logger.warning("plot %s failed: %s", key, failure_reason(error))
    return made


def write_report(document: dict[str, Any], config: ReportConfig) -> dict[str, Path]:
    """Write report.md, report.json, report.html and the plots into ``config.out``; returns the paths."""
    from runtime.card import atomic_write_bytes

    folder = Path(config.out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ReportError(f"{folder}: cannot create the output folder ({error.strerror})") from None
    plots = draw_plots(document, folder) if config.plots else {}
    document["plots"] = {key: path.name for key, path in plots.items()}
    blocks = _blocks(document, plots)
    paths = {"markdown": folder / "report.md", "html": folder / "report.html", "json": folder / "report.json"}
    atomic_write_bytes(paths["markdown"], render_markdown(blocks, folder).encode())
    atomic_write_bytes(paths["html"], render_html(blocks, document["title"]).encode())
    for row in document["artifacts"]:
        if row["accuracy"]:
            row["accuracy"].pop("_nme", None)
    write_json(paths["json"], document)
    return {**paths, **plots}


# -------------------------------------------------------------------------------------------------
# headless browser


def find_chromium() -> str:
    """Path of a Chromium/Chrome executable, or a :class:`ReportError` saying how to install one."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    for path in ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/snap/bin/chromium"):
        if os.access(path, os.X_OK):
            return path
    raise ReportError(
        f"--screenshot needs Chromium or Chrome, found none of {', '.join(CHROMIUM_NAMES)} on PATH; "
        "install it (Debian/Ubuntu: apt-get install chromium) or leave --screenshot out"
    )


def screenshot_html(page: str | Path, png: str | Path, width: int = 1280, height: int = 2400, timeout_s: float = 120) -> Path:
    """Render ``page`` in headless Chromium and save a ``width`` x ``height`` PNG of the top of it.

    Runs with a fresh temporary profile, no sandbox (root in containers), no GPU and no network
    services, so it works on a headless CI box.
    """
    browser = find_chromium()
    page, png = Path(page).resolve(), Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgemark-chromium-") as profile:
        command = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={png}",
            f"--window-size={width},{height}", page.as_uri(),
        ]  # fmt: skip
        if png.exists():
            png.unlink()
        started = time.perf_counter()
        try:
            finished = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise ReportError(f"{browser} did not finish the screenshot within {timeout_s:g} s") from None
        if finished.returncode != 0 or not png.is_file():
            tail = (finished.stderr or finished.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ReportError(f"{browser} could not render {page.name} (exit {finished.returncode}: {tail[0][:300]})")
    logger.info("rendered %s to %s (%dx%d) in %.1f s", page.name, png, width, height, time.perf_counter() - started)
    return png


def make_report(config: ReportConfig) -> tuple[dict[str, Any], dict[str, Path]]:
    """Measure, write every output and (with ``config.screenshot``) render the page; returns the document and paths."""
    document = build_report(config)
    paths = write_report(document, config)
    if config.screenshot:
        paths["screenshot"] = screenshot_html(paths["html"], config.screenshot)
    return document, paths


# -------------------------------------------------------------------------------------------------
# command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.report",
        description="Accuracy, speed, tracking and jitter of landmark artifacts in one report (md, html, json, png).",
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--artifacts", nargs="+", action="extend", default=[], metavar="ARTIFACT",
                        help="PATH or PATH@BACKEND each (repeatable)")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="X.pt",
                        help="a training checkpoint, run with the torch backend (repeatable)")
    parser.add_argument("--backends", nargs="+", action="extend", default=[], metavar="NAME",
                        help="run each artifact on every one of these backends that reads its suffix")
    parser.add_argument("--reference", default="", help="the FP32 artifact NME changes are measured against "
                                                        "(default: the first fp32 artifact)")
    parser.add_argument("--faces", default="", help="annotated faces: folder of images + .pts, WFLW list, HRNet CSV")
    parser.add_argument("--video", default="", help="a video of a face for tracker FPS and jitter")
    parser.add_argument("--max-frames", type=int, default=0, help="use at most N video frames (0: all)")
    parser.add_argument("--out", required=True, help="folder to write report.md/html/json and the plots to")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="inference threads everywhere (default 2)")
    parser.add_argument("--batch", type=int, default=8, help="throughput batch (default 8)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--runs", type=int, default=200, help="timed batch-1 calls per artifact (default 200)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved benchmark rounds (default 10)")
    parser.add_argument("--detector", default=DEFAULT_DETECTOR, help="face detector of the tracker (yunet, haar, yunet:PATH)")
    parser.add_argument("--smoothing", default="one_euro", help="tracker smoothing for FPS and smoothed jitter")
    parser.add_argument("--synthetic-frames", type=int, default=150,
                        help="frames per synthetic sequence (0: leave the synthetic study out)")
    parser.add_argument("--no-plots", action="store_true", help="write no PNG plots (no matplotlib needed)")
    parser.add_argument("--screenshot", default="", metavar="PNG", help="render report.html in headless Chromium")
    parser.add_argument("--title", default="edgemark report")
    return parser


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    for text in arguments.artifacts or ():
        ArtifactSpec.parse_existing(text)  # a typo'd path is one line now, not a failed row at the end
    artifacts = expand_artifacts(arguments.artifacts, arguments.backends, arguments.checkpoint)
    if not artifacts:
        raise UsageError("no artifacts: pass --artifacts PATH[@BACKEND] ... and/or --checkpoint X.pt")
    config = ReportConfig(
        artifacts=artifacts,
        out=arguments.out,
        faces=arguments.faces,
        video=arguments.video,
        reference=ArtifactSpec.parse(arguments.reference) if arguments.reference else None,
        device=arguments.device,
        threads=arguments.threads,
        batch=arguments.batch,
        warmup=arguments.warmup,
        runs=arguments.runs,
        rounds=arguments.rounds,
        max_frames=arguments.max_frames,
        detector=arguments.detector,
        smoothing=arguments.smoothing,
        synthetic_frames=arguments.synthetic_frames,
        plots=not arguments.no_plots,
        screenshot=arguments.screenshot,
        title=arguments.title,
    )
    document, paths = make_report(config)
    for row in document["artifacts"]:
        reasons = f" ({_reasons(row)})" if row["reasons"] else ""
        print(f"{row['name']}: {row['status']}{reasons}")
    for path in paths.values():
        print(f"wrote {path}")
    return 0 if any(row["status"] != "failed" for row in document["artifacts"]) else 1


if __name__ == "__main__":
    sys.exit(main())
