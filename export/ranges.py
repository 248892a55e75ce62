"""The range table: one calibration, encoded per engine.

Calibration measures a range per activation tensor of the float model; that table is the
calibration. Every INT8 encoding is made from it: signed symmetric Q/DQ for TensorRT (``s8s8``),
the same grid with unsigned activations for ONNX Runtime on x86 (``u8s8``, :mod:`export.encodings`),
and OpenVINO reading either Q/DQ file. Each encoding derives the activation scale the same way,
``max(|lowest|, |highest|) / 127``, so one table gives identical scales in every engine; the card of
each artifact names the table's hash (:meth:`RangeTable.sha256`), which is how "one calibration,
three engines" is checked.

The table is written beside the INT8 artifact as ``<artifact>.ranges.json`` and can be handed to
another export (``python -m export.ort --ranges``) instead of calibrating again.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runtime.card import atomic_write_bytes
from runtime.errors import EdgemarkError

RANGES_VERSION = 1
# Symmetric int8 magnitude levels per sign: scale = bound / 127 (TensorRT's and ONNX Runtime's grid).
INT8_LEVELS = 127


class RangeTableError(EdgemarkError):
    """A missing, unreadable or mismatched range table."""


@dataclass(frozen=True)
class RangeTable:
    """Activation ranges of one float model from one calibration.

    Attributes:
        ranges: float-model tensor name -> (lowest, highest) value seen (or kept, for histogram methods).
        model_sha256: hash of the float ONNX the ranges belong to (its tensor names).
        method: ``minmax``, ``entropy`` or ``percentile``.
        samples: calibration samples the ranges were measured on.
        calibration_sha256: hash of the calibration array file (empty for in-memory arrays).
        details: how the ranges were found (bins, percentile, tensors kept at MinMax, ...).
    """

    ranges: dict[str, tuple[float, float]]
    model_sha256: str
    method: str
    samples: int
    calibration_sha256: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        for name, (lowest, highest) in self.ranges.items():
            if not (np.isfinite(lowest) and np.isfinite(highest)) or lowest > highest:
                raise RangeTableError(
                    f"range of tensor '{name}' is ({lowest}, {highest}); a range table needs finite lowest <= highest"
                )

    def bound(self, name: str) -> float:
        """The symmetric bound ``max(|lowest|, |highest|)`` every encoding derives its scale from."""
        lowest, highest = self.ranges[name]
        return float(max(abs(lowest), abs(highest)))

    def scale(self, name: str) -> float:
        """The int8 activation scale of ``name`` (zero point 0, or 128 in the unsigned encoding)."""
        bound = self.bound(name)
        return float(np.float32(bound / INT8_LEVELS)) if bound > 0 else 1.0

    def sha256(self) -> str:
        """Hash of what an encoding reads: the model it belongs to and every range (float32-exact)."""
        content = {
            "model_sha256": self.model_sha256,
            "ranges": {name: [_float32_text(low), _float32_text(high)] for name, (low, high) in sorted(self.ranges.items())},
        }
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": RANGES_VERSION,
            "sha256": self.sha256(),
            "model_sha256": self.model_sha256,
            "method": self.method,
            "samples": self.samples,
            "calibration_sha256": self.calibration_sha256,
            "details": self.details,
            "ranges": {name: [float(low), float(high)] for name, (low, high) in sorted(self.ranges.items())},
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "range table") -> RangeTable:
        try:
            table = cls(
                ranges={name: (float(low), float(high)) for name, (low, high) in values["ranges"].items()},
                model_sha256=str(values["model_sha256"]),
                method=str(values["method"]),
                samples=int(values["samples"]),
                calibration_sha256=str(values.get("calibration_sha256", "")),
                details=dict(values.get("details", {})),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise RangeTableError(f"{source}: not a range table ({type(error).__name__}: {error}); re-export it") from None
        recorded = values.get("sha256")
        if recorded and recorded != table.sha256():
            raise RangeTableError(f"{source}: its ranges do not match its recorded hash (edited or damaged); re-export it")
        return table

    def save(self, path: str | Path) -> Path:
        """Write the table as JSON, atomically."""
        atomic_write_bytes(path, json.dumps(self.to_dict(), indent=1, sort_keys=True).encode())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> RangeTable:
        """Read a table written by :meth:`save`; problems raise one line naming the file."""
        path = Path(path)
        if not path.is_file():
            raise RangeTableError(f"{path}: range table not found; make one with `python -m export.ort --int8 ...`")
        try:
            values = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RangeTableError(f"{path}: range table is not valid JSON ({error})") from None
        if not isinstance(values, dict):
            raise RangeTableError(f"{path}: range table must be a JSON object")
        return cls.from_dict(values, str(path))

    def summary(self) -> dict[str, Any]:
        """What a card records about the table."""
        return {
            "range_table_sha256": self.sha256(),
            "range_method": self.method,
            "range_samples": self.samples,
            "range_tensors": len(self.ranges),
        }


def ranges_path(artifact: str | Path) -> Path:
    """``model_int8.onnx`` -> ``model_int8.onnx.ranges.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".ranges.json")


def _float32_text(value: float) -> str:
    return repr(float(np.float32(value)))
