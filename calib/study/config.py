"""The study's settings and the quantizers it compares (the arms' methods)."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


from runtime.errors import EdgemarkError, UsageError, unknown_name

logger = logging.getLogger("calib.study")

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
