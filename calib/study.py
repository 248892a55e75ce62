"""``python -m calib study``: do synthetic style proxies calibrate INT8 as well as real faces? Measured by K-fold.

The project claims that style-diverse synthetic samples calibrate at least as well as real images
(DESIGN.md, INT8). This module measures it on annotated real faces, with real-image calibration as
the control:

1. The faces are split into K folds, stratified by annotation kind (AFLW2000's 3-D-fit jaw vs 2-D
   annotations) and seeded. Each face is evaluated exactly once, by the models calibrated without it.
2. For each fold, calibration sets are built **only from the other folds' faces** (the evaluation
   fold is passed to ``calib build`` as ``--exclude``, so it is refused by path and by content):

   - ``proxies``: style proxies of the training faces (:mod:`calib.styles`, every style, seeded);
   - ``real``: the training faces as they are, the control. There are only a few, so the set is the
     same crops repeated to the proxies' sample count. Repetition adds no information and changes
     no statistic a calibrator uses (MinMax extremes; entropy/percentile histograms, which are
     normalised; NNCF's per-sample means), so it calibrates exactly as the unique crops would; it
     only equalises the count shown. Augmented crops (jitter, flips) would have added variety,
     which is the very thing under test, so they are not used;
   - ``mixed``: proxies plus every training face once as it is (``calib build --proxies --real``);
   - ``translator`` (with ``--translator``): the training faces in the styles of a ``train.style`` translator.
3. Each set quantizes the model with every quantizer (:data:`QUANTIZERS`: ONNX Runtime Q/DQ with
   MinMax, percentile and entropy ranges, per-channel weights; OpenVINO NNCF INT8 default and with
   the first conv and head left in float).
4. Every INT8 model and the FP32 model run on the evaluation fold; the result is the per-face NME
   change (INT8 - FP32, percent points; inter-ocular and box-normalised, since the AFLW2000 jaws
   follow a 3-D fit). The FP32 reference is ONNX Runtime's for every toolkit (OpenVINO FP32 agrees
   to ~1e-5). Beside it, the label-free error (:mod:`runtime.agreement`): the NME of the INT8 points
   taking the FP32 points as the truth, on the evaluation fold's faces, one variant of each style
   proxy of each of them (``face.jpg@low_light``), and, with ``--video``, the video's frames (cut
   from the FP32 model's own landmarks; every fold's models see all of them, named ``#frame (fold k)``),
   as mean, p95 and max with the worst inputs named. It needs no labels, so it sees ten times the
   faces and every frame.
5. Aggregation pools the K evaluation folds (every face once) and pairs the sources per face:
   ``proxies - real`` for each quantizer, with its spread, the faces where each side wins and an
   exact sign-flip permutation p-value, so the reader sees whether a difference is noise. With
   several ``--proxy-seeds`` the change between two draws of the proxies shows the noise floor of
   the calibration draw itself.

A quantizer that fails on a set becomes a row with its reason (``status: failed``); the rest of the
study still appears. Outputs: ``study.json`` (everything, per face) and ``study.md`` (tables ready
for the README, with the exact command and machine).
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import logging
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from runtime.annotations import Sample, read_pts_folder
from runtime.card import Card, atomic_write_bytes, read_card
from runtime.errors import EdgemarkError, UsageError, first_line, unknown_name
from runtime.machine import machine_description

logger = logging.getLogger(__name__)

SOURCES = ("proxies", "real", "mixed")
ALL_SOURCES = (*SOURCES, "translator")  # the default sources, and the translator arm
NORMALISATIONS = ("inter_ocular", "box")
# Faces whose jaw follows AFLW2000's 3-D fit; folds are stratified by this (see ../shared/data/README.md).
THREE_D_FIT_PREFIX = "aflw2000_"
# Above this many paired faces the sign-flip test samples sign patterns instead of enumerating them.
EXACT_SIGN_FLIP_LIMIT = 16
SIGN_FLIP_SAMPLES = 20_000
# Marks OUT/work as the study's own, so a rerun may delete it.
WORK_MARKER = ".calib-study"


class StudyError(EdgemarkError):
    """The study cannot run as asked (no model, too few faces for the folds)."""


# ---------------------------------------------------------------------------------------------------
# Quantizers: name -> how to make an INT8 artifact from the float model and a calibration array


@dataclass(frozen=True)
class Quantizer:
    """One INT8 path of the study.

    Attributes:
        name: registry name (``--quantizers``).
        toolkit: ``onnxruntime`` or ``openvino``.
        description: one line for the tables.
        suffix: the artifact's file suffix.
        make: ``(float_model, calibration, output) -> None``, writing the INT8 artifact.
    """

    name: str
    toolkit: str
    description: str
    suffix: str
    make: Callable[[Path, Path, Path], None]


def _ort(method: str) -> Callable[[Path, Path, Path], None]:
    def make(model: Path, calibration: Path, output: Path) -> None:
        from export.ort_quantize import Int8Config, int8_from_onnx

        int8_from_onnx(Int8Config(model, calibration, output, per_channel=True, method=method))

    return make


def _nncf(ignore_first_conv_and_head: bool) -> Callable[[Path, Path, Path], None]:
    def make(model: Path, calibration: Path, output: Path) -> None:
        from export.openvino_export import IrConfig, ir_from_onnx

        ir_from_onnx(
            IrConfig(
                model,
                output,
                int8=True,
                calibration=calibration,
                ignore_first_conv_and_head=ignore_first_conv_and_head,
            )
        )

    return make


QUANTIZERS: dict[str, Quantizer] = {
    q.name: q
    for q in (
        Quantizer("ort-minmax", "onnxruntime", "ONNX Runtime Q/DQ, MinMax, per-channel", ".onnx", _ort("minmax")),
        Quantizer(
            "ort-percentile",
            "onnxruntime",
            "ONNX Runtime Q/DQ, percentile 99.99, per-channel",
            ".onnx",
            _ort("percentile"),
        ),
        Quantizer(
            "ort-entropy",
            "onnxruntime",
            "ONNX Runtime Q/DQ, entropy (2048 bins), per-channel",
            ".onnx",
            _ort("entropy"),
        ),
        Quantizer("ov-nncf", "openvino", "OpenVINO NNCF INT8 (performance preset)", ".xml", _nncf(False)),
        Quantizer(
            "ov-nncf-ignore",
            "openvino",
            "OpenVINO NNCF INT8, first conv and head in float",
            ".xml",
            _nncf(True),
        ),
    )
}


# ---------------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class StudyConfig:
    """Everything :func:`run_study` needs, validated before any work starts.

    Attributes:
        faces: folder of annotated faces (images + ``.pts``).
        output: folder for ``study.json``, ``study.md`` (and the work files while it runs).
        model: float ONNX artifact with a card, or ``None`` with ``checkpoint``.
        checkpoint: a ``python -m train`` checkpoint, exported to ONNX first (instead of ``model``).
        folds: K of the K-fold split.
        sources: calibration sources to compare (``proxies``, ``real``, ``mixed``).
        quantizers: names in :data:`QUANTIZERS`.
        size: calibration samples per set.
        proxy_seeds: seeds of the proxy styling; the first is the one compared with ``real``, the
            others measure how much a fresh draw of the proxies changes the result.
        seed: seed of the fold split.
        keep_artifacts: keep the calibration arrays and INT8 models under ``output/work``.
        video: a video whose frames join the label-free set (``None``: faces and their styles only).
        video_every: keep every N-th frame of ``video``.
        command: the command line, recorded in the report.
    """

    faces: Path
    output: Path
    model: Path | None = None
    checkpoint: Path | None = None
    folds: int = 2
    sources: tuple[str, ...] = SOURCES
    quantizers: tuple[str, ...] = tuple(QUANTIZERS)
    size: int = 96
    proxy_seeds: tuple[int, ...] = (0,)
    seed: int = 0
    keep_artifacts: bool = False
    video: Path | None = None
    video_every: int = 1
    command: str = ""
    translator: Path | None = None  # style translator checkpoint (python -m train.style fit) of the translator arm

    def __post_init__(self):
        if ("translator" in self.sources) != (self.translator is not None):
            raise UsageError("the 'translator' source and --translator CHECKPOINT.pt go together; give both or neither")
        if (self.model is None) == (self.checkpoint is None):
            raise UsageError("pass exactly one of --model MODEL.onnx and --checkpoint CHECKPOINT.pt")
        if self.model is not None and self.model.suffix != ".onnx":
            raise UsageError(f"--model {self.model}: expected a float .onnx artifact with a card")
        if self.folds < 2:
            raise UsageError(
                f"--folds must be at least 2 (each face is evaluated by models calibrated without it), got {self.folds}"
            )
        if not self.sources:
            raise UsageError(f"--sources is empty; name at least one of {', '.join(ALL_SOURCES)}")
        for source in self.sources:
            if source not in ALL_SOURCES:
                raise unknown_name("calibration source", source, ALL_SOURCES)
        if not self.quantizers:
            raise UsageError(f"--quantizers is empty; name at least one of {', '.join(QUANTIZERS)}")
        for name in self.quantizers:
            if name not in QUANTIZERS:
                raise unknown_name("quantizer", name, tuple(QUANTIZERS))
        for flag, values in (
            ("--sources", self.sources),
            ("--quantizers", self.quantizers),
            ("--proxy-seeds", self.proxy_seeds),
        ):
            if len(set(values)) != len(values):
                raise UsageError(f"{flag} names a value twice ({', '.join(map(str, values))}); list each once")
        if not self.proxy_seeds:
            raise UsageError("--proxy-seeds is empty; give at least one seed, e.g. 0")
        if self.size < 1:
            raise UsageError(f"--size must be at least 1, got {self.size}")
        if self.video is not None and not self.video.is_file():
            raise UsageError(f"--video {self.video}: no such file; pass a video file or leave --video out")
        if self.video_every < 1:
            raise UsageError(f"--video-every must be at least 1 (1: every frame), got {self.video_every}")


# ---------------------------------------------------------------------------------------------------
# Folds


def face_kind(sample: Sample) -> str:
    """``3d_fit`` for AFLW2000 faces (jaw from a 3-D fit), ``2d`` for 2-D human annotations."""
    return "3d_fit" if Path(sample.image).name.startswith(THREE_D_FIT_PREFIX) else "2d"


def assign_folds(samples: list[Sample], folds: int, seed: int) -> list[int]:
    """Fold of each sample: stratified by :func:`face_kind`, shuffled with ``seed``, sizes within one."""
    rng = np.random.default_rng(seed)
    assignment = [0] * len(samples)
    position = 0
    for kind in sorted({face_kind(s) for s in samples}):
        members = [i for i, s in enumerate(samples) if face_kind(s) == kind]
        for index in rng.permutation(members):
            assignment[int(index)] = position % folds
            position += 1
    return assignment


def _link_faces(samples: list[Sample], folder: Path) -> Path:
    """A folder of symbolic links to the samples' images and ``.pts`` files (what ``calib build`` reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    for sample in samples:
        image = Path(sample.image).resolve()
        (folder / image.name).symlink_to(image)
        (folder / f"{image.stem}.pts").symlink_to(image.with_suffix(".pts"))
    return folder


# ---------------------------------------------------------------------------------------------------
# Statistics


def sign_flip_p_value(differences: np.ndarray, seed: int = 0) -> float | None:
    """Two-sided p-value of a paired sign-flip permutation test of mean(differences) == 0.

    Exact (every sign pattern) up to :data:`EXACT_SIGN_FLIP_LIMIT` pairs, sampled beyond. ``None``
    for fewer than two pairs.
    """
    values = np.asarray(differences, dtype=np.float64)
    if len(values) < 2:
        return None
    observed = abs(values.mean())
    if len(values) <= EXACT_SIGN_FLIP_LIMIT:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(values))))
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(SIGN_FLIP_SAMPLES, len(values)))
    means = np.abs(signs @ values / len(values))
    return float(np.mean(means >= observed - 1e-12))


def paired_summary(differences: np.ndarray) -> dict[str, Any]:
    """Mean, spread and sign counts of per-face paired differences (percent points)."""
    values = np.asarray(differences, dtype=np.float64)
    count = len(values)
    sd = float(values.std(ddof=1)) if count > 1 else None
    return {
        "faces": count,
        "mean": float(values.mean()) if count else None,
        "sd": sd,
        "se": sd / np.sqrt(count) if sd is not None else None,
        "min": float(values.min()) if count else None,
        "max": float(values.max()) if count else None,
        # "lower" = the first source's INT8 NME is lower on that face (it calibrated better there)
        "first_lower": int(np.sum(values < 0)),
        "first_higher": int(np.sum(values > 0)),
        "sign_flip_p": sign_flip_p_value(values),
    }


# ---------------------------------------------------------------------------------------------------
# The study


@dataclass
class _Context:
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
        study = _summarise(context, rows, time.perf_counter() - started)
    finally:
        if not config.keep_artifacts:
            shutil.rmtree(work, ignore_errors=True)
    atomic_write_bytes(config.output / "study.json", json.dumps(study, indent=2).encode())
    atomic_write_bytes(config.output / "study.md", markdown_report(study).encode())
    logger.info("wrote %s and %s in %.0f s", config.output / "study.json", config.output / "study.md", study["seconds"])
    return study


def _prepare(config: StudyConfig, work: Path) -> _Context:
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
    context = _Context(config, model, card, samples, assign_folds(samples, config.folds, config.seed), work)
    for fold in range(config.folds):
        _link_faces([s for s, f in zip(samples, context.folds) if f != fold], work / f"fold{fold}" / "train")
        _link_faces([s for s, f in zip(samples, context.folds) if f == fold], work / f"fold{fold}" / "eval")
    from export.evaluation import crop_faces
    from runtime.backends import open_model

    context.crops = crop_faces(samples, card)
    _label_free_inputs(context)
    with open_model(model) as runner:
        raw = runner.run(context.free.inputs)
    context.fp32 = _scores(raw[: len(samples)], context, np.arange(len(samples)))
    from export.evaluation import frame_points

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


def _label_free_inputs(context: _Context) -> None:
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


def _calibration_or_error(context: _Context, fold: int, source: str, seed: int) -> Path | Exception:
    try:
        return build_fold_calibration(context, fold, source, seed)
    except Exception as error:
        logger.debug("calibration set fold %d %s seed %d failed", fold, source, seed, exc_info=True)
        return error


def build_fold_calibration(context: _Context, fold: int, source: str, seed: int) -> Path:
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
    context: _Context, fold: int, source: str, seed: int, quantizer_name: str, calibration: Path | Exception
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


def _label_free_values(raw: np.ndarray, context: _Context, selection: np.ndarray, fold: int) -> dict[str, list]:
    """Per-input label-free NME (percent; ``None`` when not finite) of one INT8 model, with the inputs' names.

    Video frames are seen by every fold's model, so their names carry the fold.
    """
    from export.evaluation import frame_points
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


def _scores(raw: np.ndarray, context: _Context, indices: np.ndarray) -> dict[str, np.ndarray]:
    """Per-face NME in percent, by normalisation, for the faces at ``indices``."""
    from export.evaluation import frame_points, nme

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


# ---------------------------------------------------------------------------------------------------
# Aggregation


def _summarise(context: _Context, rows: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    config = context.config
    names = [Path(image).name for image in context.crops.images]
    primary = config.proxy_seeds[0]
    table = []
    for quantizer in config.quantizers:
        for source in config.sources:
            for seed in config.proxy_seeds if source != "real" else (primary,):
                table.append(_aggregate(rows, quantizer, source, seed, config.folds))
    paired = []
    for quantizer in config.quantizers:
        for first, second, first_seed in _pairs(config):
            entry = {"quantizer": quantizer, "first": first, "second": second, "first_seed": first_seed}
            entry.update(_paired(rows, quantizer, (first, first_seed), (second, primary)))
            paired.append(entry)
    return {
        "title": "INT8 calibration study: synthetic style proxies vs real faces",
        "command": config.command,
        "config": {key: _jsonable(value) for key, value in asdict(config).items()},
        "model": {
            "path": str(context.model),
            "layout": context.card.layout,
            "output_kind": context.card.output_kind,
            "input_size": context.card.input_size,
            "source_sha256": context.card.source_sha256,
        },
        "memorised": _memorisation_note(context),
        "machine": machine_description(),  # runtime.machine
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": round(seconds, 1),
        "folds": [
            {"fold": fold, "evaluation_faces": [n for n, f in zip(names, context.folds) if f == fold]}
            for fold in range(config.folds)
        ],
        "fp32": {
            "faces": [
                {"image": name, **{norm: float(context.fp32[norm][i]) for norm in NORMALISATIONS}, "kind": face_kind(s)}
                for i, (name, s) in enumerate(zip(names, context.samples))
            ],
            **{f"mean_{norm}": float(context.fp32[norm].mean()) for norm in NORMALISATIONS},
        },
        "quantizers": {name: QUANTIZERS[name].description for name in config.quantizers},
        "table": table,
        "paired": paired,
        "rows": rows,
    }


def _pairs(config: StudyConfig) -> list[tuple[str, str, int]]:
    """(first source, second source, first's seed): proxies - real, mixed - real, proxies(seed) - proxies(seed 0)."""
    pairs = []
    primary = config.proxy_seeds[0]
    for source in ("proxies", "mixed", "translator"):
        if source in config.sources and "real" in config.sources:
            pairs.append((source, "real", primary))
    if "proxies" in config.sources:
        pairs += [("proxies", "proxies", seed) for seed in config.proxy_seeds[1:]]
    return pairs


def _select(rows, quantizer: str, source: str, seed: int) -> list[dict[str, Any]]:
    return [r for r in rows if r["quantizer"] == quantizer and r["source"] == source and r["seed"] == seed]


def _aggregate(rows, quantizer: str, source: str, seed: int, folds: int) -> dict[str, Any]:
    selected = _select(rows, quantizer, source, seed)
    failed = [r for r in selected if r["status"] != "ok"]
    entry: dict[str, Any] = {"quantizer": quantizer, "source": source, "seed": seed}
    if failed:
        entry["status"] = "failed"
        entry["reason"] = "; ".join(f"fold {r['fold']}: {r['reason']}" for r in failed)
    else:
        entry["status"] = "ok"
    faces = [face for r in selected if r["status"] == "ok" for face in r["faces"]]
    entry["faces"] = len(faces)
    for norm in NORMALISATIONS:
        values = np.array([face[f"change_{norm}"] for face in faces])
        entry[f"mean_change_{norm}"] = float(values.mean()) if len(values) else None
        entry[f"sd_change_{norm}"] = float(values.std(ddof=1)) if len(values) > 1 else None
    entry["per_fold_inter_ocular"] = {
        str(r["fold"]): r["mean_change_inter_ocular"]
        for r in sorted(selected, key=lambda r: r["fold"])
        if r["status"] == "ok"
    }
    entry["label_free"] = _pooled_label_free([r["label_free"] for r in selected if r["status"] == "ok"])
    return entry


def _pooled_label_free(per_fold: list[dict[str, list]]) -> dict[str, Any] | None:
    """Label-free summaries (mean, p95, max, worst inputs; percent) pooled over the folds, overall and per kind."""
    from runtime.metrics import summarise_agreement

    if not per_fold:
        return None
    names = [name for fold in per_fold for name in fold["inputs"]]
    kinds = np.array([kind for fold in per_fold for kind in fold["kinds"]])
    pooled: dict[str, Any] = {}
    for norm in NORMALISATIONS:
        # Stored in percent, None where not finite; summarise_agreement takes fractions.
        values = np.array([np.nan if v is None else v / 100 for fold in per_fold for v in fold[norm]], dtype=np.float64)
        pooled[norm] = summarise_agreement(values, names)
        if norm == "inter_ocular":
            pooled["by_kind"] = {
                kind: summarise_agreement(
                    values[kinds == kind], [name for name, k in zip(names, kinds) if k == kind], worst=1
                )
                for kind in ("face", "style", "frame")
                if np.any(kinds == kind)
            }
    return pooled


def _paired(rows, quantizer: str, first: tuple[str, int], second: tuple[str, int]) -> dict[str, Any]:
    """Per-face differences first - second of the INT8 NME change (FP32 cancels: it is INT8 NME first - second)."""

    def by_face(source: str, seed: int) -> dict[str, dict[str, float]]:
        return {
            face["image"]: face
            for r in _select(rows, quantizer, source, seed)
            if r["status"] == "ok"
            for face in r["faces"]
        }

    a, b = by_face(*first), by_face(*second)
    common = sorted(set(a) & set(b))
    result: dict[str, Any] = {"per_face": []}
    for norm in NORMALISATIONS:
        differences = np.array([a[name][f"change_{norm}"] - b[name][f"change_{norm}"] for name in common])
        result[norm] = paired_summary(differences)
    result["per_face"] = [
        {"image": name, **{norm: a[name][f"change_{norm}"] - b[name][f"change_{norm}"] for norm in NORMALISATIONS}}
        for name in common
    ]
    return result


def _memorisation_note(context: _Context) -> str | None:
    """Say so when the model was trained on the evaluation faces (a checkpoint's recorded training data)."""
    if context.config.checkpoint is None:
        return None
    from calib.build import file_sha256
    from runtime.annotations import read_dataset
    from train.checkpoint import load_checkpoint

    training = (load_checkpoint(context.config.checkpoint).get("config") or {}).get("train_data")
    if not training:
        return "the checkpoint does not record its training data; check it did not include these faces"
    candidates = [Path(training), Path(context.config.checkpoint).parent / training]
    folder = next((path for path in candidates if path.exists()), None)
    if folder is None:
        return f"the checkpoint was trained on {training} (not found from here); check it did not include these faces"
    trained = {file_sha256(sample.image) for sample in read_dataset(folder)}
    overlap = sum(file_sha256(sample.image) in trained for sample in context.samples)
    if not overlap:
        return None
    return (
        f"the model was trained on {overlap} of these {len(context.samples)} faces ({training}): it has memorised "
        "them, so its FP32 and INT8 NME are optimistic; the INT8 changes still compare calibration sources fairly"
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------------
# Markdown


def _number(value: float | None, digits: int = 2, signed: bool = True) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _label_free_cell(label_free: dict[str, Any] | None) -> str:
    if not label_free or not label_free["inter_ocular"]["inputs"]:
        return "–"
    io = label_free["inter_ocular"]
    return " / ".join(_number(io[key], signed=False) for key in ("mean", "p95", "max"))


def _label_free_section(study: dict[str, Any]) -> list[str]:
    """Label-free error per quantizer and source: by input kind, and the worst inputs named."""
    entries = [e for e in study["table"] if e.get("label_free") and e["label_free"]["inter_ocular"]["inputs"]]
    if not entries:
        return []
    kinds = [kind for kind in ("face", "style", "frame") if any(kind in e["label_free"]["by_kind"] for e in entries)]
    titles = {"face": "faces", "style": "style variants", "frame": "video frames"}
    counts = {kind: entries[0]["label_free"]["by_kind"][kind]["inputs"] for kind in kinds}
    lines = [
        "",
        "## Label-free error: INT8 points against FP32 points, no labels",
        "",
        (
            "NME of the INT8 model's points taking the FP32 model's points as the truth, in percent of the FP32 "
            "points' inter-ocular distance, pooled over the folds: "
            + ", ".join(f"{counts[kind]} {titles[kind]}" for kind in kinds)
            + " (faces and style variants of the evaluation folds; one variant of every style proxy per face; "
            "video frames cut from the FP32 model's own landmarks, seen by every fold's model). Each input is "
            "cut once and fed to both models. Mean / p95 per kind; the worst inputs overall."
        ),
        "",
        "| quantizer | calibration | "
        + " | ".join(f"{titles[kind]} mean / p95" for kind in kinds)
        + " | worst inputs (io %) |",
        "| --- | --- | " + " | ".join("---" for _ in kinds) + " | --- |",
    ]
    for entry in entries:
        free = entry["label_free"]
        cells = []
        for kind in kinds:
            summary = free["by_kind"].get(kind)
            mean, p95 = (_number(summary[key], signed=False) for key in ("mean", "p95")) if summary else ("–", "–")
            cells.append(f"{mean} / {p95}")
        worst = ", ".join(f"{w['input']} {_number(w['nme'], signed=False)}" for w in free["inter_ocular"]["worst"][:3])
        seeded = len(study["config"]["proxy_seeds"]) > 1 and entry["source"] != "real"
        source = entry["source"] + (f" (seed {entry['seed']})" if seeded else "")
        lines.append(f"| {entry['quantizer']} | {source} | " + " | ".join(cells) + f" | {worst} |")
    return lines


def markdown_report(study: dict[str, Any]) -> str:
    """``study.md``: the protocol, the exact command and machine, the tables, the notes."""
    config, machine, fp32 = study["config"], study["machine"], study["fp32"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["libraries"].items())
    kinds = {face["kind"] for face in fp32["faces"]}
    lines = [
        f"# {study['title']}",
        "",
        (
            f"Model `{study['model']['path']}` ({study['model']['layout']}, {study['model']['output_kind']}, "
            f"{study['model']['input_size']} px), {len(fp32['faces'])} faces from `{config['faces']}`. "
            f"FP32 NME: inter-ocular {fp32['mean_inter_ocular']:.2f} %, box {fp32['mean_box']:.2f} %."
        ),
        "",
        "```",
        study["command"] or "(library call)",
        "```",
        "",
        (
            f"Machine: {machine['cpu']}, {machine['usable_cpus']} usable CPUs ({' '.join(machine['isa'])}); {versions}. "
            f"{study['date']}, {study['seconds']:.0f} s."
        ),
        "",
        (
            f"Protocol: {config['folds']}-fold split (seed {config['seed']}, stratified by annotation kind); "
            "for each fold every calibration set is built only from the other folds' faces (the evaluation "
            "fold is `--exclude`d), each INT8 model is scored on the evaluation fold, and the folds are pooled, "
            f"so each face counts once. Calibration sets of {config['size']} samples: `proxies` = style proxies "
            "of the training faces (all styles), `real` = the training faces as they are, repeated to the same "
            "count (repetition changes no calibration statistic: it equals the unique crops), `mixed` = proxies "
            "plus each training face once. Values are NME changes INT8 − FP32 in percent points (lower is better); "
            "FP32 is ONNX Runtime's for every toolkit."
        ),
        "",
    ]
    if study.get("memorised"):
        lines += [f"**Note:** {study['memorised']}.", ""]
    lines += [
        "## NME change per quantizer and calibration source",
        "",
        "| quantizer | calibration | Δ NME inter-ocular (mean ± SD over faces) | per fold | Δ NME box "
        "| label-free io % mean / p95 / max | status |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for entry in study["table"]:
        source = entry["source"] + (
            f" (seed {entry['seed']})" if len(config["proxy_seeds"]) > 1 and entry["source"] != "real" else ""
        )
        folds = ", ".join(_number(v) for v in entry["per_fold_inter_ocular"].values()) or "–"
        io = (
            f"{_number(entry['mean_change_inter_ocular'])} ± {_number(entry['sd_change_inter_ocular'], signed=False)}"
            if entry["mean_change_inter_ocular"] is not None
            else "–"
        )
        status = "ok" if entry["status"] == "ok" else f"failed: {entry['reason']}"
        lines.append(
            f"| {entry['quantizer']} | {source} | {io} | {folds} | {_number(entry['mean_change_box'])} "
            f"| {_label_free_cell(entry.get('label_free'))} | {status} |"
        )
    lines += _label_free_section(study)
    if study["paired"]:
        lines += [
            "",
            "## Paired per face: does the source matter?",
            "",
            (
                "Difference of INT8 NME between two calibration sources on the same face (first − second; "
                "negative: the first calibrated better). SE = SD/√n; p = exact two-sided sign-flip permutation "
                "test of a zero mean. Rows `proxies (seed s) − proxies` compare two draws of the same proxies: "
                "their size is the noise floor of the calibration draw."
            ),
            "",
            "| quantizer | comparison | mean Δ inter-ocular ± SE | SD | range | faces lower / higher | p | mean Δ box ± SE | p box |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for entry in study["paired"]:
            io, box = entry["inter_ocular"], entry["box"]
            first = entry["first"] + (f" (seed {entry['first_seed']})" if entry["first"] == entry["second"] else "")
            if io["faces"] == 0:
                lines.append(
                    f"| {entry['quantizer']} | {first} − {entry['second']} | no faces in common (failed rows) | | | | | | |"
                )
                continue
            lines.append(
                f"| {entry['quantizer']} | {first} − {entry['second']} | {_number(io['mean'])} ± {_number(io['se'], signed=False)} "
                f"| {_number(io['sd'], signed=False)} | {_number(io['min'])} … {_number(io['max'])} "
                f"| {io['first_lower']} / {io['first_higher']} | {_p(io['sign_flip_p'])} "
                f"| {_number(box['mean'])} ± {_number(box['se'], signed=False)} | {_p(box['sign_flip_p'])} |"
            )
        main = [e for e in study["paired"] if e["first"] == "proxies" and e["second"] == "real"]
        if main:
            names = [face["image"] for face in main[0]["per_face"]]
            kinds_by_name = {face["image"]: face["kind"] for face in fp32["faces"]}
            lines += [
                "",
                "Per face, proxies − real (inter-ocular points):",
                "",
                "| face | kind | " + " | ".join(e["quantizer"] for e in main) + " |",
                "| --- | --- | " + " | ".join("---" for _ in main) + " |",
            ]
            for name in names:
                cells = []
                for entry in main:
                    value = next((f["inter_ocular"] for f in entry["per_face"] if f["image"] == name), None)
                    cells.append(_number(value))
                lines.append(f"| {name} | {kinds_by_name.get(name, '')} | " + " | ".join(cells) + " |")
    lines += ["", "## Notes", ""]
    if "3d_fit" in kinds:
        lines.append(
            "- AFLW2000 faces (`3d_fit`) have jaw contours from a 3-D fit, which a model trained on 2-D "
            "annotations does not follow, and which inflates their inter-ocular NME: read the box-normalised "
            "column beside it."
        )
    lines += [
        (
            f"- {len(fp32['faces'])} faces is a small sample: treat differences smaller than their SE, or with "
            "p above ~0.1, as noise. The claim about the hard WFLW subsets needs WFLW (not available here)."
        ),
        (
            "- p treats the faces as the random unit; it leaves out the randomness of the calibration draw, "
            "which the `proxies (seed s) − proxies` rows show. Over many comparisons about 1 in 20 reaches "
            f"p < 0.05 by chance ({len(study['paired'])} comparisons here)."
        ),
        "- Quantizers: " + "; ".join(f"`{k}`: {v}" for k, v in study["quantizers"].items()) + ".",
        "- Per-face values, fold membership and every failure reason are in `study.json`.",
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Command


def add_parser(commands) -> None:
    """Register ``study`` on the ``python -m calib`` subcommands."""
    import argparse

    study = commands.add_parser(
        "study",
        help="K-fold study: do style proxies calibrate INT8 as well as real faces?",
        description="K-fold INT8 calibration study on annotated faces: style proxies vs real faces (vs mixed), "
        "ONNX Runtime Q/DQ and OpenVINO NNCF, NME change per face, paired comparison.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="quantizers:\n" + "\n".join(f"  {q.name:<16} {q.description}" for q in QUANTIZERS.values()),
    )
    model = study.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", type=Path, metavar="MODEL.onnx", help="float ONNX artifact with a card")
    model.add_argument(
        "--checkpoint", type=Path, metavar="CHECKPOINT.pt", help="python -m train checkpoint, exported to ONNX first"
    )
    study.add_argument("--faces", type=Path, required=True, metavar="DIR", help="annotated faces (images + .pts)")
    study.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for study.json and study.md")
    study.add_argument("--folds", type=int, default=2, help="K of the K-fold split (default 2)")
    study.add_argument(
        "--sources",
        default=",".join(SOURCES),
        metavar="NAMES",
        help=f"calibration sources (default {','.join(SOURCES)}; also: translator, with --translator)",
    )
    study.add_argument("--translator", type=Path, metavar="CHECKPOINT.pt", help="style translator of the translator source")
    study.add_argument(
        "--quantizers", default=",".join(QUANTIZERS), metavar="NAMES", help="quantizers (default: all, listed below)"
    )
    study.add_argument("--size", type=int, default=96, help="calibration samples per set (default 96)")
    study.add_argument(
        "--proxy-seeds",
        default="0",
        metavar="SEEDS",
        help="seeds of the proxy styling, comma-separated; more than one measures the draw's noise (default 0)",
    )
    study.add_argument("--seed", type=int, default=0, help="seed of the fold split and the style variants (default 0)")
    study.add_argument(
        "--video", type=Path, metavar="VIDEO", help="a video whose frames join the label-free set (INT8 vs FP32 points)"
    )
    study.add_argument("--video-every", type=int, default=1, metavar="N", help="use every N-th video frame (default 1)")
    study.add_argument(
        "--keep-artifacts", action="store_true", help="keep calibration arrays and INT8 models under OUT/work"
    )
    study.set_defaults(run=main_from_args)


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def config_from_args(args, argv: list[str] | None = None) -> StudyConfig:
    try:
        seeds = tuple(int(seed) for seed in _names(args.proxy_seeds))
    except ValueError:
        raise UsageError(f"--proxy-seeds '{args.proxy_seeds}': expected comma-separated integers, e.g. 0,1") from None
    return StudyConfig(
        faces=args.faces,
        output=args.out,
        model=args.model,
        checkpoint=args.checkpoint,
        folds=args.folds,
        sources=_names(args.sources),
        quantizers=_names(args.quantizers),
        size=args.size,
        proxy_seeds=seeds,
        seed=args.seed,
        keep_artifacts=args.keep_artifacts,
        video=args.video,
        video_every=args.video_every,
        translator=args.translator,
        command=" ".join(["python -m calib", *map(shlex.quote, argv if argv is not None else sys.argv[1:])]),
    )


def main_from_args(args, argv: list[str] | None = None) -> int:
    """Run the study for parsed ``python -m calib study`` flags; print where the report went."""
    study = run_study(config_from_args(args, argv))
    failed = [row for row in study["rows"] if row["status"] != "ok"]
    print(
        f"wrote {Path(args.out) / 'study.md'} and study.json: {len(study['rows'])} INT8 models over "
        f"{study['config']['folds']} folds, {len(failed)} failed"
    )
    return 0
