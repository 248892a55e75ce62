"""What ``python -m export.ort --int8``, ``export.openvino --int8`` and ``export.trt --int8`` use when
typed alone: the default model, output name and calibration source, one rule each for all three.

- **Model**: the model zoo's ``pfld_ghostone`` (:data:`DEFAULT_MODEL`), downloaded once and cached by
  :func:`runtime.zoo.fetch_model`; a zoo name may be given in place of a file. Chosen over "the newest
  trained run" because it exists on a fresh install, needs no torch, and is the model the tracker
  runs by default; a trained checkpoint is one ``python -m export.onnx`` away and then passed by name.
- **Output**: ``<model stem><suffix>`` (``_int8.onnx``, ``_int8.xml``, ``_int8.engine``, ...) beside
  the model, or in the current folder for a zoo model (whose file lives in the cache).
- **Calibration** (:func:`resolve_calibration`): ``--calib CALIB.npz`` as given; ``--calib FACES/``
  (images + ``.pts``) or, with no ``--calib``, the pseudo-labelled frames in ``./pseudo/`` (what
  ``python -m runtime.track VIDEO --save-frames pseudo`` writes) become style proxies of those faces
  (``python -m calib build --proxies``: the nine synthetic styles of :mod:`calib.styles` applied to
  the footage at hand), written to ``<output folder>/<model stem>_calib.npz`` and reused from there on
  the next run. With none of these, one line gives the command that makes the frames.

The calibration set is built by running ``python -m calib build`` (the line is logged, so it can be
re-run by hand with other options): export never imports calib, which builds on export.
"""
from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from runtime.annotations import IMAGE_SUFFIXES
from runtime.errors import EdgemarkError, UsageError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "pfld_ghostone"
# Where `python -m runtime.track VIDEO --save-frames pseudo` puts its pseudo-labelled frames (README's name).
PSEUDO_DIR = Path("pseudo")
MAKE_PSEUDO = "python -m runtime.track VIDEO.mp4 --save-frames pseudo --save-every 5"

MODEL_HELP = (
    f"ONNX artifact with a card, or a model zoo name (default: the zoo's {DEFAULT_MODEL}, downloaded once "
    "to $EDGEMARK_CACHE or ~/.cache/edgemark)"
)
CALIB_HELP = (
    "calibration array (.npz from python -m calib build), or a folder of annotated faces (images + .pts) to "
    "make style proxies of; default: <model>_calib.npz beside the output if it exists, else style proxies of "
    "the pseudo-labelled frames in ./pseudo (python -m runtime.track VIDEO --save-frames pseudo)"
)


class NoCalibration(UsageError):
    """INT8 of a float model was asked for without ``--calib`` and no calibration source is at hand (exit 2)."""


def resolve_model(model: str | Path | None) -> tuple[Path, bool]:
    """The ONNX artifact to export from, and whether it came from the model zoo.

    Args:
        model: a path (used as given), a zoo name, or ``None`` for :data:`DEFAULT_MODEL`.

    Raises:
        UsageError, ZooError: an unknown zoo name; a zoo model that cannot be downloaded (the line says
            where to put the file by hand).
    """
    from runtime.zoo import ZOO, ZooError, fetch_model

    if model is not None:
        text = str(model)
        if Path(text).exists() or text not in ZOO:
            return Path(text), False
    name = DEFAULT_MODEL if model is None else str(model)
    try:
        path = fetch_model(name)
    except ZooError as error:
        if model is not None:
            raise
        raise ZooError(
            f"no MODEL given, and the default (the zoo's {name}) is not cached here: {error}; or pass MODEL.onnx"
        ) from None
    logger.info("model: %s from the model zoo (%s)", name, path)
    return path, True


def default_output(model: Path, from_zoo: bool, suffix: str) -> Path:
    """``<model stem><suffix>`` beside ``model``, or in the current folder for a zoo model."""
    folder = Path(".") if from_zoo else model.parent
    return folder / f"{model.stem}{suffix}"


def model_and_output(model: str | Path | None, output: Path | None, suffix: str) -> tuple[Path, Path]:
    """The model to export from (:func:`resolve_model`) and the output: ``output`` when given, else
    :func:`default_output` with ``suffix`` (what export.ort, export.openvino and export.trt share)."""
    path, from_zoo = resolve_model(model)
    return path, output if output is not None else default_output(path, from_zoo, suffix)


def default_calibration_path(model: Path, output: Path) -> Path:
    """Where the default calibration array of ``model`` goes: ``<output folder>/<model stem>_calib.npz``."""
    return output.parent / f"{model.stem}_calib.npz"


def needs_calibration(model: Path) -> bool:
    """True for a float model (INT8 needs a calibration); False for a Q/DQ one, or an unreadable one
    (the export then says what is wrong with it)."""
    from runtime.card import read_card

    try:
        return read_card(model).precision != "int8"
    except Exception:  # noqa: BLE001 - the export's own checks name the problem in one line
        return False


def resolve_calibration(calib: Path | None, model: Path, output: Path, force: bool = False) -> tuple[Path, bool]:
    """The calibration array for INT8 of the float ``model``, building it from faces at hand if needed.

    Args:
        calib: ``--calib`` as given: an ``.npz`` (returned as is), a folder of annotated faces, or ``None``.
        model: the float ONNX artifact (its card sets the crops).
        output: the artifact to be written (the default array goes beside it).
        force: the command's ``--force``: an existing array made from ``--calib FACES/`` is replaced.

    Returns:
        The array's path, and whether it was built now (a new output to report).

    Raises:
        NoCalibration: no ``--calib``, no earlier ``<model>_calib.npz`` and no ``./pseudo`` frames; the
            line gives the command that makes them.
        EdgemarkError: ``python -m calib build`` failed (its error line is quoted).
    """
    if calib is not None and not Path(calib).is_dir():
        return Path(calib), False
    target = default_calibration_path(model, output)
    if calib is None:
        if target.is_file():
            logger.info("calibration: %s (built earlier; delete it to build it again)", target)
            return target, False
        if not _has_annotated_images(PSEUDO_DIR):
            raise NoCalibration(
                f"--int8 needs calibration images and none are at hand (no --calib, no {target}, no "
                f"pseudo-labelled frames in ./{PSEUDO_DIR}); make them with `{MAKE_PSEUDO}` "
                "(or `webcam` for VIDEO.mp4), then run this again"
            )
        calib = PSEUDO_DIR
    return build_style_proxies(model, Path(calib), target, force), True


def build_style_proxies(model: Path, faces: Path, output: Path, force: bool = False) -> Path:
    """Run ``python -m calib build --card MODEL --proxies FACES --out OUTPUT`` (all styles, its defaults;
    ``--force`` with ``force``).

    Returns:
        ``output``.

    Raises:
        EdgemarkError: the build failed; its one error line is quoted with the command to re-run.
    """
    command = ["python", "-m", "calib", "build", "--card", str(model), "--proxies", str(faces), "--out", str(output)]
    command += ["--force"] if force else []
    logger.info("calibration: style proxies of %s -> %s (%s)", faces, output, shlex.join(command))
    environment = dict(os.environ)
    # The calib package of this same tree, wherever the command runs from.
    root = str(Path(__file__).resolve().parents[1])
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, (root, environment.get("PYTHONPATH"))))
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, *command[1:]], env=environment, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        reason = errors[-1][len("error:") :].strip() if errors else (result.stderr.strip().splitlines() or ["?"])[-1]
        raise EdgemarkError(f"building the calibration set failed: {reason} (command: {shlex.join(command)})")
    logger.info("built %s in %.1f s", output, time.perf_counter() - started)
    return output


def _has_annotated_images(folder: Path) -> bool:
    return folder.is_dir() and any(
        path.suffix.lower() in IMAGE_SUFFIXES and path.with_suffix(".pts").is_file() for path in folder.iterdir()
    )
