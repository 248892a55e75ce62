"""Running the study: calibration per fold and source, quantization, scoring, the label-free error."""
from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from calib.study.config import NORMALISATIONS, QUANTIZERS, WORK_MARKER, StudyConfig, StudyError
from calib.study.folds import assign_folds, link_faces
from calib.study.render import markdown_report
from calib.study.summary import summarise
from runtime.annotations import Sample, read_pts_folder
from runtime.card import Card, atomic_write_bytes, read_card
from runtime.errors import first_line

logger = logging.getLogger("calib.study")


# ---------------------------------------------------------------------------------------------------
# The study


@dataclass
class StudyContext:
    config: StudyConfig
    model: Path
    card: Card
    samples: list[Sample]
    folds: list[int]
    work: Path
    crops: Any = None
    fp32: dict[str, np.ndarray] = field(default_factory=dict)  # normalisation -> (N,) NME, percent
    # Label-free inputs (runtime.agreement.LabelFreeInputs): the faces in sample order first (so input
    # i is face i), then their style variants, then the video frames.
    free: Any = None
    free_owner: np.ndarray | None = None  # (M,) the face each input comes from; -1 for video frames
    free_reference: np.ndarray | None = None  # (M, K, 2) FP32 points on every label-free input


def run_study(config: StudyConfig) -> dict[str, Any]:
    """Run the K-fold calibration study, write ``study.json`` and ``study.md``, return the study.

    Raises:
        StudyError, EdgemarkError: before any quantization (no model, too few faces).
    """
    started = time.perf_counter()
    config.output.mkdir(parents=True, exist_ok=True)
    work = config.output / "work"
    if work.exists():
        if not (work / WORK_MARKER).is_file():
            raise StudyError(f"{work}: exists and was not made by calib study; choose another --out or remove it")
        shutil.rmtree(work)
    work.mkdir()
    (work / WORK_MARKER).write_text("calibration arrays and INT8 models of a calib study; safe to delete\n")
    try:
        context = _prepare(config, work)
        jobs = _jobs(config)
        rows: list[dict[str, Any]] = []
        with (
            _quiet_libraries(any(QUANTIZERS[name].toolkit == "openvino" for name in config.quantizers)),
            tqdm(total=len(jobs), desc="calibration study", unit="model", dynamic_ncols=True) as bar,
        ):
            calibrations: dict[tuple[int, str, int], Path | Exception] = {}
            for fold, source, seed, quantizer in jobs:
                bar.set_postfix_str(f"fold {fold} {source} seed {seed} {quantizer}")
                key = (fold, source, seed)
                if key not in calibrations:
                    calibrations[key] = _calibration_or_error(context, fold, source, seed)
                rows.append(_evaluate_job(context, fold, source, seed, quantizer, calibrations[key]))
                bar.update()
        study = summarise(context, rows, time.perf_counter() - started)
    finally:
        if not config.keep_artifacts:
            shutil.rmtree(work, ignore_errors=True)
    atomic_write_bytes(config.output / "study.json", json.dumps(study, indent=2).encode())
    atomic_write_bytes(config.output / "study.md", markdown_report(study).encode())
    logger.info("wrote %s and %s in %.0f s", config.output / "study.json", config.output / "study.md", study["seconds"])
    return study


def _prepare(config: StudyConfig, work: Path) -> StudyContext:
    samples = read_pts_folder(config.faces)
    if len(samples) < config.folds:
        raise StudyError(f"{config.faces}: {len(samples)} faces cannot make {config.folds} folds; lower --folds")
    if config.checkpoint is not None:
        from export.onnx_export import onnx_from_checkpoint

        model = config.output / f"{config.checkpoint.stem}.onnx"
        onnx_from_checkpoint(config.checkpoint, model)
    else:
        model = config.model
        if not model.is_file():
            raise StudyError(f"--model {model}: not found; pass a float .onnx artifact with a card")
    card = read_card(model)
    if card.precision != "fp32":
        raise StudyError(f"{model}: card says precision {card.precision}; the study quantizes an fp32 artifact")
    context = StudyContext(config, model, card, samples, assign_folds(samples, config.folds, config.seed), work)
    for fold in range(config.folds):
        link_faces([s for s, f in zip(samples, context.folds) if f != fold], work / f"fold{fold}" / "train")
        link_faces([s for s, f in zip(samples, context.folds) if f == fold], work / f"fold{fold}" / "eval")
    from runtime.face_crops import crop_faces
    from runtime.backends import open_model

    context.crops = crop_faces(samples, card)
    _label_free_inputs(context)
    with open_model(model) as runner:
        raw = runner.run(context.free.inputs)
    context.fp32 = _scores(raw[: len(samples)], context, np.arange(len(samples)))
    from runtime.landmarker import frame_points

    context.free_reference = frame_points(raw, card, context.free.matrices)
    return context


def style_variants(samples: list[Sample], card: Card, seed: int) -> Any:
    """One variant of every style proxy of every face, cut as the face is; named ``face.jpg@style``.

    Returns:
        :class:`runtime.agreement.LabelFreeInputs` of kind ``style``, faces in order, styles in
        :data:`calib.styles.STYLES` order within each face.
    """
    from calib.build import Candidate, styled_crop
    from calib.styles import STYLES, style_seed
    from runtime.agreement import LabelFreeInputs
    from runtime.card import file_sha256
    from runtime.crop import crop_matrix, normalise
    from runtime.face_crops import face_box, read_image

    crops, matrices, names = [], [], []
    for sample in samples:
        frame, sha256 = read_image(sample.image), file_sha256(sample.image)
        matrix = crop_matrix(face_box(sample, card), card.crop_rule, card.input_size)  # styles move no pixel
        for style in STYLES:
            rng = np.random.default_rng(style_seed(seed, style, sha256, 0))
            crop, _ = styled_crop(frame, Candidate(sample, "proxy", style, style), card, rng)
            crops.append(crop)
            matrices.append(matrix)
            names.append(f"{Path(sample.image).name}@{style}")
    inputs = normalise(np.stack(crops), card.normalisation)
    return LabelFreeInputs(inputs, np.stack(matrices), names, ["style"] * len(names))


def _label_free_inputs(context: StudyContext) -> None:
    """The study's label-free set: faces, their style variants, the video's frames (with ``--video``)."""
    from runtime.agreement import LabelFreeInputs, join, read_video_inputs

    config, card = context.config, context.card
    faces = LabelFreeInputs(
        context.crops.inputs, context.crops.matrices, [Path(image).name for image in context.crops.images],
        ["face"] * len(context.samples),
    )  # fmt: skip
    styles = style_variants(context.samples, card, config.seed)
    parts = [faces, styles]
    count = len(context.samples)
    owner = [*range(count), *np.repeat(np.arange(count), len(styles) // count)]
    if config.video is not None:
        from runtime.backends.registry import load_backend
        from runtime.landmarker import Landmarker

        with load_backend(context.model) as backend:
            frames = read_video_inputs(config.video, Landmarker(backend), config.video_every)
        parts.append(frames)
        owner += [-1] * len(frames)
        logger.info(
            "label-free set: %d frames of %s (%d skipped: no face)", len(frames), config.video, len(frames.skipped)
        )
    context.free = join(*parts)
    context.free_owner = np.asarray(owner, dtype=int)


def _jobs(config: StudyConfig) -> list[tuple[int, str, int, str]]:
    jobs = []
    for fold in range(config.folds):
        for source in config.sources:
            seeds = config.proxy_seeds if source != "real" else config.proxy_seeds[:1]
            for seed in seeds:
                jobs += [(fold, source, seed, quantizer) for quantizer in config.quantizers]
    return jobs


def _calibration_or_error(context: StudyContext, fold: int, source: str, seed: int) -> Path | Exception:
    try:
        return build_fold_calibration(context, fold, source, seed)
    except Exception as error:
        logger.debug("calibration set fold %d %s seed %d failed", fold, source, seed, exc_info=True)
        return error


def build_fold_calibration(context: StudyContext, fold: int, source: str, seed: int) -> Path:
    """Build one fold's calibration array from its training faces only; returns its ``.npz``."""
    from calib.build import BuildConfig, build_calibration_set
    from export.calibration import write_calibration_array

    config = context.config
    folder = context.work / f"fold{fold}"
    output = folder / f"{source}_seed{seed}.npz"
    train, evaluation = folder / "train", folder / "eval"
    common = {"card": context.model, "output": output, "seed": seed, "batch_size": 1, "exclude": (evaluation,)}
    if source == "proxies":
        build_calibration_set(BuildConfig(proxies=(train,), size=config.size, **common))
    elif source == "mixed":
        build_calibration_set(BuildConfig(proxies=(train,), real=(train,), size=config.size, **common))
    elif source == "translator":
        from train.style.generate import avs_from_faces

        styled = avs_from_faces(config.translator, train, folder / f"translator_seed{seed}", seed=seed)
        build_calibration_set(BuildConfig(avs=(styled,), size=config.size, **common))
    else:
        plain = build_calibration_set(BuildConfig(real=(train,), size=config.size, **common))
        repeats = int(np.ceil(config.size / len(plain)))
        manifest = dict(plain.manifest)
        manifest["repeated"] = {
            "unique_samples": len(plain),
            "times": repeats,
            "why": "the real control has the proxies' sample count; repetition changes no calibration statistic",
        }
        manifest["samples"] = (manifest.get("samples", []) * repeats)[: config.size]
        write_calibration_array(output, np.tile(plain.inputs, (repeats, 1, 1, 1))[: config.size], manifest)
    return output


def _evaluate_job(
    context: StudyContext, fold: int, source: str, seed: int, quantizer_name: str, calibration: Path | Exception
) -> dict[str, Any]:
    quantizer = QUANTIZERS[quantizer_name]
    indices = np.array([i for i, f in enumerate(context.folds) if f == fold])
    row: dict[str, Any] = {"fold": fold, "source": source, "seed": seed, "quantizer": quantizer_name}
    started = time.perf_counter()
    try:
        if isinstance(calibration, Exception):
            raise calibration
        artifact = context.work / f"fold{fold}" / f"{source}_seed{seed}_{quantizer_name}{quantizer.suffix}"
        quantizer.make(context.model, calibration, artifact)
        # The fold's faces (inputs 0..F-1 are the faces, so these come first, in ``indices`` order),
        # their style variants and every video frame: one run.
        selection = np.flatnonzero(np.isin(context.free_owner, indices) | (context.free_owner == -1))
        raw = _run_artifact(artifact, context.free.inputs[selection])
        scores = _scores(raw[: len(indices)], context, indices)
        label_free = _label_free_values(raw, context, selection, fold)
    except Exception as error:
        row.update(status="failed", reason=first_line(error))
        logger.debug("fold %d %s %s failed", fold, source, quantizer_name, exc_info=True)
        return row
    row["status"] = "ok"
    row["seconds"] = round(time.perf_counter() - started, 2)
    row["faces"] = [
        {
            "image": Path(context.crops.images[index]).name,
            **{f"change_{norm}": float(scores[norm][position] - context.fp32[norm][index]) for norm in NORMALISATIONS},
        }
        for position, index in enumerate(indices)
    ]
    for norm in NORMALISATIONS:
        row[f"mean_change_{norm}"] = float(np.mean([face[f"change_{norm}"] for face in row["faces"]]))
    row["label_free"] = label_free
    return row


def _label_free_values(raw: np.ndarray, context: StudyContext, selection: np.ndarray, fold: int) -> dict[str, list]:
    """Per-input label-free NME (percent; ``None`` when not finite) of one INT8 model, with the inputs' names.

    Video frames are seen by every fold's model, so their names carry the fold.
    """
    from runtime.landmarker import frame_points
    from runtime.agreement import agreement_from_points

    points = frame_points(raw, context.card, context.free.matrices[selection])
    names = [
        f"{context.free.names[i]} (fold {fold})" if context.free_owner[i] == -1 else context.free.names[i]
        for i in selection
    ]
    result = agreement_from_points(points, context.free_reference[selection], context.card.layout, names)
    return {
        "inputs": names,
        "kinds": [context.free.kinds[i] for i in selection],
        **{norm: [entry[norm] for entry in result["per_input"]] for norm in NORMALISATIONS},
    }


def _run_artifact(artifact: Path, inputs: np.ndarray) -> np.ndarray:
    """The artifact's first output (backend by suffix; OpenVINO computes in f32, so arms compare ranges,
    not the CPU's bf16)."""
    from runtime.backends import open_model

    options = {"inference_precision": "f32"} if artifact.suffix == ".xml" else {}
    with open_model(artifact, **options) as runner:
        return runner.run(inputs)


def _scores(raw: np.ndarray, context: StudyContext, indices: np.ndarray) -> dict[str, np.ndarray]:
    """Per-face NME in percent, by normalisation, for the faces at ``indices``."""
    from export.evaluation import nme
    from runtime.landmarker import frame_points

    points = frame_points(raw, context.card, context.crops.matrices[indices])
    truth = context.crops.truth[indices]
    return {norm: nme(points, truth, context.card, norm) * 100 for norm in NORMALISATIONS}


@contextlib.contextmanager
def _quiet_libraries(uses_nncf: bool):
    """Per-stage INFO lines of calib/export/NNCF would bury the progress bar: warnings only while it runs."""
    names = ("calib", "export", "nncf", "openvino")
    if uses_nncf:
        with contextlib.suppress(ImportError):
            import nncf  # noqa: F401 - it sets its logger to INFO on import: import first, then quieten
    loggers = {name: logging.getLogger(name) for name in names}
    levels = {name: log.level for name, log in loggers.items()}
    for log in loggers.values():
        log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, log in loggers.items():
            log.setLevel(levels[name])
