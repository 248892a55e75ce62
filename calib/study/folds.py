"""Folds of the faces and the paired statistics the study reports."""
from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

import numpy as np

from calib.study.config import EXACT_SIGN_FLIP_LIMIT, SIGN_FLIP_SAMPLES, THREE_D_FIT_PREFIX
from runtime.annotations import Sample

logger = logging.getLogger("calib.study")


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


def link_faces(samples: list[Sample], folder: Path) -> Path:
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
