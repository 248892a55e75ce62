"""Calibration arrays: the one calibration source every INT8 toolkit adapter reads.

A calibration array is an ``.npz`` file with

- ``inputs``: (N, 3, S, S) float32, preprocessed exactly as the runtime feeds the model (crop rule,
  channel order, mean/std from the card);
- ``manifest`` (optional): a JSON string, ``{"samples": [{"image": ..., "source": ...}, ...], ...}``,
  saying where each sample came from (``real`` or an AVS style name).

The ``calib`` package builds these from synthetic styles; :func:`calibration_array_from_faces` here
builds one from a folder of annotated real faces (the control set, and what the tests use).
"""
from __future__ import annotations

import collections
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from runtime.face_crops import crop_faces
from runtime.annotations import Sample, read_pts_folder
from runtime.card import Card, atomic_write_bytes, file_sha256
from runtime.errors import EdgemarkError

logger = logging.getLogger(__name__)


class CalibrationError(EdgemarkError):
    """A missing, unreadable or mismatched calibration array."""


@dataclass
class CalibrationSet:
    """A loaded calibration array.

    Attributes:
        inputs: (N, 3, S, S) float32 model inputs.
        manifest: the parsed manifest (empty when the file has none).
        path: the file it came from.
        sha256: hash of that file.
    """

    inputs: np.ndarray
    manifest: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    sha256: str = ""

    def __len__(self) -> int:
        return len(self.inputs)

    def chunks(self, size: int):
        """Consecutive (≤ size, 3, S, S) views, so a calibrator never holds more than ``size`` samples' activations."""
        for start in range(0, len(self.inputs), size):
            yield self.inputs[start : start + size]

    def summary(self) -> dict[str, Any]:
        """Count and where the samples came from, for the card."""
        samples = self.manifest.get("samples", []) if isinstance(self.manifest, dict) else []
        sources = collections.Counter(
            str(s.get("source", s.get("style", "unknown"))) for s in samples if isinstance(s, dict)
        )
        summary: dict[str, Any] = {"count": len(self.inputs)}
        if sources:
            summary["sources"] = dict(sorted(sources.items()))
        for key in ("name", "description", "styles"):
            if isinstance(self.manifest, dict) and key in self.manifest:
                summary[key] = self.manifest[key]
        if self.path is not None:
            summary["file"] = str(self.path)
            summary["sha256"] = self.sha256
        return summary


def read_calibration_array(path: str | Path) -> CalibrationSet:
    """Load and check a calibration ``.npz``; problems raise one line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(
            f"{path}: calibration array not found; build one with the calib package "
            "or export.calibration.calibration_array_from_faces"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "inputs" not in archive:
                raise CalibrationError(
                    f"{path}: no 'inputs' array (found {sorted(archive.files)}); "
                    "expected (N, 3, S, S) float32 under 'inputs'"
                )
            inputs = archive["inputs"]
            manifest_text = str(archive["manifest"]) if "manifest" in archive else ""
    except CalibrationError:
        raise
    except Exception as error:  # zipfile/pickle/value errors on a bad file
        raise CalibrationError(f"{path}: not a readable .npz calibration array ({type(error).__name__})") from None
    if inputs.ndim != 4 or inputs.shape[1] != 3 or inputs.shape[2] != inputs.shape[3]:
        raise CalibrationError(f"{path}: 'inputs' is {inputs.shape} but must be (N, 3, S, S)")
    if inputs.dtype != np.float32:
        raise CalibrationError(f"{path}: 'inputs' is {inputs.dtype} but must be float32 (preprocessed model input)")
    if not np.isfinite(inputs).all():
        raise CalibrationError(f"{path}: 'inputs' contains NaN or infinity")
    try:
        manifest = json.loads(manifest_text) if manifest_text else {}
    except json.JSONDecodeError as error:
        raise CalibrationError(f"{path}: 'manifest' is not valid JSON ({error})") from None
    return CalibrationSet(inputs, manifest, path, file_sha256(path))




def write_calibration_array(path: str | Path, inputs: np.ndarray, manifest: dict[str, Any] | None = None) -> Path:
    """Write ``inputs`` (and the manifest as JSON) to a calibration ``.npz`` atomically."""
    buffer = io.BytesIO()
    arrays = {"inputs": np.ascontiguousarray(inputs, dtype=np.float32)}
    if manifest is not None:
        arrays["manifest"] = np.array(json.dumps(manifest, sort_keys=True))
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
    logger.info("wrote calibration array %s (%d samples, %.1f MB)", path, len(inputs), len(buffer.getvalue()) / 1e6)
    return Path(path)


def calibration_array_from_faces(
    faces: str | Path | Sequence[Sample], card: Card, output: str | Path | None = None, source: str = "real"
) -> CalibrationSet:
    """Crop and normalise annotated faces with the card's crop rule, as a calibration set.

    Args:
        faces: a folder of images with ``.pts`` files, or the samples themselves.
        card: the card of the model to calibrate (crop rule, input size, normalisation).
        output: if given, the ``.npz`` to write.
        source: the samples' origin for the manifest when they do not say.

    Returns:
        The calibration set (also written to ``output`` when given).
    """
    samples = read_pts_folder(faces) if isinstance(faces, (str, Path)) else list(faces)
    crops = crop_faces(samples, card)
    manifest = {
        "samples": [{"image": str(s.image), "source": s.source or source} for s in samples],
        "preprocessing": {
            "input_size": card.input_size,
            "crop_rule": card.crop_rule.to_dict(),
            "normalisation": card.normalisation.to_dict(),
        },
    }
    if output is not None:
        write_calibration_array(output, crops.inputs, manifest)
        return read_calibration_array(output)
    return CalibrationSet(crops.inputs, manifest)


def check_for_card(calibration: CalibrationSet, card: Card, path: str | Path) -> None:
    """The samples must exist, be finite, have the model's input size and (when the manifest says) its
    preprocessing: a set built for another crop or normalisation would calibrate the wrong ranges silently.

    Raises:
        CalibrationError: one line naming what differs and how to rebuild.
    """
    size = card.input_size
    if len(calibration) < 1:
        raise CalibrationError(f"{path}: holds no samples; build it from at least one face (300 is NNCF's default)")
    if calibration.inputs.shape[1:] != (3, size, size):
        raise CalibrationError(
            f"{path}: samples are {calibration.inputs.shape[1:]} but the model takes (3, {size}, {size}); "
            "build the calibration array with this model's card"
        )
    if not np.isfinite(calibration.inputs).all():
        raise CalibrationError(
            f"{path}: {int((~np.isfinite(calibration.inputs)).sum())} sample values are NaN or infinite; rebuild it "
            "with python -m calib build"
        )
    preprocessing = calibration.manifest.get("preprocessing") if isinstance(calibration.manifest, dict) else None
    if preprocessing:
        expected = json.loads(
            json.dumps(
                {
                    "input_size": size,
                    "crop_rule": card.crop_rule.to_dict(),
                    "normalisation": card.normalisation.to_dict(),
                }
            )
        )
        differing = sorted(key for key in expected if key in preprocessing and preprocessing[key] != expected[key])
        if differing:
            raise CalibrationError(
                f"{path}: made with another {', '.join(differing)} than this model's card "
                f"({', '.join(f'{k}={preprocessing[k]}' for k in differing)}); rebuild it with this model's card"
            )
