"""Assemble the report: load every artifact once, run the measuring stages, benchmark, then the
reference, the NME changes, each row's status and the notes (:func:`build_report`)."""
from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from runtime.bench import (
    ArtifactSpec,
    benchmark_artifacts,
    describe_machine,
    failure_reason,
    machine_description,
)
from runtime.report import measure
from runtime.report.config import THRESHOLD, ReportConfig, match_reference
from runtime.report.measure import Faces
from runtime.report.rows import FAILED, OK, PARTIAL, ArtifactRow, Report
from runtime.tracker import TrackerConfig

logger = logging.getLogger(__name__)

AFLW_NOTE = (
    "The AFLW2000-3D faces' .pts files were written from the 2-D rows of a 3-D fit: their jaw contour "
    "follows the fitted 3-D face, not the visible outline, so their inter-ocular NME is inflated on the jaw; "
    "the box-normalised NME is given beside it."
)


def display_names(specs: Sequence[ArtifactSpec]) -> list[str]:
    """Each spec's label, made unique with ``#2``, ``#3`` for repeats."""
    seen: dict[str, int] = {}
    unique = []
    for name in (spec.label for spec in specs):
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name} #{seen[name]}")
    return unique


def build_report(config: ReportConfig) -> Report:
    """Measure every artifact of ``config`` and return the report (what report.json holds).

    Failures of one artifact or one stage are recorded in its row (``status``, ``reasons``); only
    problems with the shared inputs (faces, video) are raised, before anything is measured.
    """
    from runtime.backends.registry import load_backend
    from runtime.landmarker import Landmarker

    started = time.perf_counter()
    machine = machine_description()
    faces = measure.read_faces(config.faces) if config.faces else None
    frames, video_fps = measure.read_frames(config)
    if faces:
        logger.info("read %d annotated faces from %s", len(faces.samples), config.faces)
    if frames:
        logger.info("decoded %d frames of %s (%.1f fps)", len(frames), config.video, video_fps)

    rows = [ArtifactRow(name, spec.path, spec.backend) for spec, name in zip(config.artifacts, display_names(config.artifacts))]
    # Load every artifact once in this process for the accuracy, label-free and tracking stages.
    bench = config.bench
    backends: dict[int, Any] = {}
    for index, spec in enumerate(config.artifacts):
        row = rows[index]
        try:
            backend = load_backend(spec.path, spec.backend, device=bench.device, threads=bench.threads)
        except Exception as error:  # noqa: BLE001 - a failing artifact is a row, not a crash
            row.reasons["load"] = failure_reason(error)
            logger.warning("%s: cannot load: %s", row.name, row.reasons["load"])
            logger.debug("load failure", exc_info=True)
            continue
        backends[index] = backend
        card = backend.card
        row.backend, row.precision, row.format, row.layout = backend.name, card.precision, card.format, card.layout
        row.calibration_overlap = measure.calibration_overlap(card, faces)

    try:
        landmarkers = {}
        for index, backend in backends.items():
            try:
                landmarkers[index] = Landmarker(backend)
            except Exception as error:  # noqa: BLE001
                rows[index].reasons["load"] = failure_reason(error)
        if faces is not None:
            measure.accuracy_stage(rows, landmarkers, faces)
        if faces is not None or frames:
            references = layout_references(rows, reference_index(config, rows), lambda index: index in landmarkers)
            measure.label_free_stage(config, rows, landmarkers, references, faces, frames)
        if frames:
            measure.video_stage(config, rows, landmarkers, frames, video_fps)
    finally:
        for backend in backends.values():
            backend.close()

    # Speed: every artifact (the failed ones too, so their rows say what the benchmark saw).
    for row, speed in zip(rows, benchmark_artifacts(bench)):
        row.speed = speed
        if speed["status"] != OK:
            row.reasons["speed"] = speed["reason"]
        if row.precision is None:
            row.backend, row.precision, row.format = speed["backend"], speed["precision"], speed["format"]

    reference = reference_index(config, rows)
    nme_changes(rows, reference)
    for row in rows:
        measured = row.accuracy or row.video or row.speed_ok
        row.status = FAILED if not measured else PARTIAL if row.reasons else OK

    synthetic = measure.synthetic_study(config)
    return Report(
        title=config.title,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        machine=machine,
        machine_summary=describe_machine(machine),
        config=config.summary(),
        faces={
            "source": config.faces,
            "count": len(faces.samples) if faces else 0,
            "skipped": faces.skipped if faces else [],
        },
        video={"source": config.video, "frames": len(frames), "fps": video_fps} if frames else None,
        reference=rows[reference].name if reference is not None else None,
        artifacts=rows,
        synthetic=synthetic,
        notes=notes(config, faces, rows, reference),
        seconds=time.perf_counter() - started,
    )


def reference_index(config: ReportConfig, rows: Sequence[ArtifactRow]) -> int | None:
    """The row NME changes are measured against: ``--reference``, else the first fp32 row with an NME."""
    if config.reference is not None:
        return match_reference(config.reference, config.artifacts)
    for index, row in enumerate(rows):
        if row.precision == "fp32" and row.accuracy:
            return index
    return None


def layout_references(
    rows: Sequence[ArtifactRow], reference: int | None, usable: Callable[[int], bool]
) -> dict[str | None, int]:
    """Layout -> index of the row other rows of that layout are compared with.

    The reference row for its own layout; for any other layout (another model in the same report, e.g.
    a train/ model beside a third-party one) the first FP32 row of that layout. Only rows for which
    ``usable(index)`` holds count.
    """
    references: dict[str | None, int] = {}
    if reference is not None and usable(reference):
        references[rows[reference].layout] = reference
    for index, row in enumerate(rows):
        if row.precision == "fp32" and usable(index) and row.layout not in references:
            references[row.layout] = index
    return references


def nme_changes(rows: Sequence[ArtifactRow], reference: int | None) -> None:
    """``nme_change`` of every scored row in percent points, against an FP32 row of the same layout.

    Rows of the reference's layout are compared with the reference; rows of another layout with the
    first FP32 row of their own layout (:func:`layout_references`), recorded in
    ``nme_change_reference``; ``None`` where there is none.
    """
    scored = layout_references(rows, reference, lambda index: bool(rows[index].accuracy))
    references = {layout: rows[index] for layout, index in scored.items()}
    for row in rows:
        if row.accuracy is None:
            continue
        against = references.get(row.layout)
        if against is None:
            row.accuracy.nme_change = None
            continue
        row.accuracy.nme_change_reference = against.name
        row.accuracy.nme_change = {
            norm: getattr(row.accuracy, norm)["nme"] - getattr(against.accuracy, norm)["nme"]
            for norm in ("inter_ocular", "box")
        }


def notes(config: ReportConfig, faces: Faces | None, rows: Sequence[ArtifactRow], reference: int | None) -> list[str]:
    """What a reader needs to read the figures right: how faces are cut, small samples, calibration
    overlap, missing references, skipped inputs, how FPS and speed were measured."""
    found = []
    if faces is not None:
        names = faces.names
        scored_98_as_68 = any(row.accuracy and row.accuracy.scored_layout == "ibug68" and row.layout == "wflw98"
                              for row in rows)  # fmt: skip
        found.append(
            "Faces are cropped from each annotation's landmark box with the artifact's crop rule (as export.verify "
            "does), so NME measures the landmark model, not a face detector. "
            + ("98-point predictions are scored on the 68 iBUG points (standard WFLW-98 to 68 map). "
               if scored_98_as_68 else "")
            + f"FR and AUC use the inter-ocular NME at {THRESHOLD}."
        )  # fmt: skip
        if any(name.startswith("aflw2000") for name in names):
            found.append(AFLW_NOTE)
        if len(names) < 50:
            found.append(
                f"Only {len(names)} faces: one face moves the mean NME by about 1/{len(names)} of its "
                "error and FR moves in steps of " + f"{100 / len(names):.1f} %; read small differences as noise."
            )
        if faces.skipped:
            found.append(f"Skipped {len(faces.skipped)} unreadable images: " + "; ".join(faces.skipped[:5]))
    for row in rows:
        if row.calibration_overlap:
            found.append(
                f"{row.name} was calibrated on {row.calibration_overlap} of these evaluation faces "
                "(from its calibration manifest): its NME change is optimistic."
            )
    if any(row.accuracy for row in rows):
        if reference is None:
            found.append("No FP32 artifact with an NME: the NME change column is empty (name one with --reference).")
        elif not rows[reference].accuracy:
            row = rows[reference]
            found.append(f"The reference {row.name} has no NME ({row.reason_text() or 'no faces'}): "
                         "the NME change column is empty.")  # fmt: skip
    for row in rows:
        if row.label_free_note:
            found.append(f"{row.name}: no label-free figures: {row.label_free_note}.")
        skipped = (row.label_free or {}).get("skipped") or []
        if skipped and row.name == (row.label_free or {}).get("reference"):
            found.append(f"Label-free set of {row.name}: {len(skipped)} video frames skipped (no face found by it), "
                         f"e.g. {skipped[0]}.")  # fmt: skip
    if config.video:
        found.append(
            f"Tracker FPS: one pass per artifact over frames decoded beforehand (face detector {config.detector}, "
            f"re-detection every {TrackerConfig.redetect_every} frames; {config.bench.threads} inference threads), "
            "wall time of the whole per-frame "
            "pipeline, nothing drawn. Video jitter has no ground truth: RMS second difference of the first track's "
            "points (real head motion counts too), in percent of the predicted inter-ocular distance."
        )
        flagged = [row.name for row in rows if row.video_flagged]
        if flagged:
            found.append(
                f"Flagged on the video: {', '.join(flagged)} (lost the face, or raw jitter over "
                f"{measure.WILD_JITTER_PERCENT:g} %): status partial, its tracking row and plot point marked; "
                "an NME on annotated faces alone does not make such a model usable on video."
            )
    found.append(
        f"Speed: every artifact in its own process, {config.bench.threads} threads, interleaved in "
        f"{config.bench.rounds} rounds; see python -m runtime.bench --help for each figure."
    )
    return found
