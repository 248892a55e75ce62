"""The report's typed rows: one :class:`ArtifactRow` per artifact with a result per stage, and the
:class:`Report` they make. ``to_json`` gives what report.json holds (its keys are the report's
public format: keep them)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# A row's status: every stage measured, some stage failed or was flagged, nothing measured.
OK, PARTIAL, FAILED = "ok", "partial", "failed"


@dataclass
class Accuracy:
    """NME of one artifact on the annotated faces (percent unless said otherwise).

    Attributes:
        faces: how many faces were scored.
        scored_layout: the layout the points were compared in (98-point predictions on 68-point truth: ``ibug68``).
        inter_ocular, box: :func:`runtime.metrics.summarise` of the inter-ocular and box-normalised NME.
        per_image: ``{"image", "inter_ocular", "box"}`` per face.
        wflw_subsets: :func:`runtime.metrics.wflw_subset_table`, when the annotations carry WFLW attributes.
        seconds: time taken.
        nme_per_image: (N,) inter-ocular and (N,) box NME as fractions, for the plots (not in the JSON).
        nme_change: NME minus the FP32 reference's of this layout, per normalisation, in percent points.
        nme_change_reference: the row ``nme_change`` is measured against.
    """

    faces: int
    scored_layout: str
    inter_ocular: dict[str, float]
    box: dict[str, float]
    per_image: list[dict[str, Any]]
    wflw_subsets: dict[str, dict[str, float]] | None
    seconds: float
    nme_per_image: tuple[np.ndarray, np.ndarray] = field(repr=False, default_factory=lambda: (np.zeros(0), np.zeros(0)))
    nme_change: dict[str, float] | None = None
    nme_change_reference: str | None = None

    def to_json(self) -> dict[str, Any]:
        document = {
            "faces": self.faces,
            "scored_layout": self.scored_layout,
            "inter_ocular": self.inter_ocular,
            "box": self.box,
            "per_image": self.per_image,
            "wflw_subsets": self.wflw_subsets,
            "seconds": self.seconds,
        }
        if self.nme_change_reference is not None:
            document["nme_change_reference"] = self.nme_change_reference
        document["nme_change"] = self.nme_change
        return document


@dataclass
class TrackerPass:
    """One tracker pass over the video (:func:`runtime.report.measure.track_video`)."""

    smoothing: str
    frames: int
    faces_found: int
    fps: float
    seconds: float
    infer_ms_per_frame: float
    jitter_px: float
    jitter_percent: float  # of the predicted inter-ocular distance


@dataclass
class Tracking:
    """An artifact on the real video: the raw pass (no smoothing) and the smoothed pass.

    With ``--smoothing none`` both are the same pass.
    """

    raw: TrackerPass
    smoothed: TrackerPass

    def to_json(self) -> dict[str, Any]:
        raw, smoothed = self.raw, self.smoothed
        return {
            "frames": smoothed.frames,
            "faces_found": smoothed.faces_found,
            "fps": smoothed.fps,
            "fps_unsmoothed": raw.fps,
            "infer_ms_per_frame": smoothed.infer_ms_per_frame,
            "smoothing": smoothed.smoothing,
            "jitter_raw_percent": raw.jitter_percent,
            "jitter_raw_px": raw.jitter_px,
            "jitter_smoothed_percent": smoothed.jitter_percent,
            "jitter_smoothed_px": smoothed.jitter_px,
        }


@dataclass
class ArtifactRow:
    """One artifact of the report: what it is, its status and its result per stage.

    Attributes:
        name: unique display name (the spec's label, ``#2`` etc. for repeats).
        artifact, backend: the spec (backend filled in once known).
        precision, format, layout: from the card (``layout`` only once the artifact loaded).
        status: :data:`OK`, :data:`PARTIAL` (a stage failed or was flagged) or :data:`FAILED`.
        reasons: stage -> why it failed or was flagged (``load``, ``accuracy``, ``label_free``, ``video``, ``speed``).
        accuracy, video, speed, label_free: per-stage results (``speed``: :func:`runtime.bench.benchmark_artifacts`'
            row; ``label_free``: :func:`runtime.agreement.compare` without ``per_input``).
        calibration_overlap: evaluation faces that were in the artifact's calibration set, if known.
        label_free_note: why there are no label-free figures although nothing failed (not comparable).
    """

    name: str
    artifact: str
    backend: str | None
    precision: str | None = None
    format: str | None = None
    layout: str | None = None
    status: str = FAILED
    reasons: dict[str, str] = field(default_factory=dict)
    accuracy: Accuracy | None = None
    video: Tracking | None = None
    speed: dict[str, Any] | None = None
    calibration_overlap: int | None = None
    label_free: dict[str, Any] | None = None
    label_free_note: str | None = None

    @property
    def speed_ok(self) -> bool:
        return (self.speed or {}).get("status") == OK

    @property
    def video_flagged(self) -> bool:
        """Tracked, but the tracking was flagged (lost the face, wild jitter): its figures are not a result."""
        return self.video is not None and "video" in self.reasons

    def reason_text(self) -> str:
        """``load, speed: reason; video: other reason``: stages that failed for the same reason share it."""
        stages: dict[str, list[str]] = {}
        for stage, reason in self.reasons.items():
            stages.setdefault(reason, []).append(stage)
        return "; ".join(f"{', '.join(names)}: {reason}" for reason, names in stages.items())

    def stage_reason(self, stage: str) -> str:
        """Why ``stage`` has no (trustworthy) figures for this row: its own reason, else the load failure."""
        return self.reasons.get(stage) or self.reasons.get("load", "")

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "name": self.name,
            "artifact": self.artifact,
            "backend": self.backend,
            "precision": self.precision,
            "format": self.format,
            "status": self.status,
            "reasons": self.reasons,
            "accuracy": self.accuracy.to_json() if self.accuracy else None,
            "video": self.video.to_json() if self.video else None,
            "speed": self.speed,
            "calibration_overlap": self.calibration_overlap,
            "label_free": self.label_free,
        }
        if self.layout is not None:
            document["layout"] = self.layout
        if self.label_free_note is not None:
            document["label_free_note"] = self.label_free_note
        return document


@dataclass
class Report:
    """Everything the report measured; :meth:`to_json` is report.json.

    Attributes:
        title, created, seconds: the title, when it was made (ISO 8601 UTC) and how long it took.
        machine, machine_summary: :func:`runtime.bench.machine_description` and its one-line summary.
        config: :meth:`ReportConfig.summary`.
        faces: ``{"source", "count", "skipped"}`` of the annotated faces.
        video: ``{"source", "frames", "fps"}`` of the decoded video, ``None`` without one.
        reference: name of the row NME changes are measured against, if any.
        artifacts: one row per artifact, in the order given.
        synthetic: the synthetic ground-truth study (:func:`runtime.jitter.measure` tables and settings,
            or ``error``), ``None`` when left out.
        notes: what a reader needs to read the figures right.
        plots: plot key -> PNG file name in the report folder (filled when written).
    """

    title: str
    created: str
    machine: dict[str, Any]
    machine_summary: str
    config: dict[str, Any]
    faces: dict[str, Any]
    video: dict[str, Any] | None
    reference: str | None
    artifacts: list[ArtifactRow]
    synthetic: dict[str, Any] | None
    notes: list[str]
    seconds: float
    plots: dict[str, str] = field(default_factory=dict)

    def row(self, name: str | None) -> ArtifactRow | None:
        return next((row for row in self.artifacts if row.name == name), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "created": self.created,
            "machine": self.machine,
            "machine_summary": self.machine_summary,
            "config": self.config,
            "faces": self.faces,
            "video": self.video,
            "reference": self.reference,
            "artifacts": [row.to_json() for row in self.artifacts],
            "synthetic": self.synthetic,
            "notes": self.notes,
            "seconds": self.seconds,
            "plots": self.plots,
        }
