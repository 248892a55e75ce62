"""Checkpoints: atomic save, validated load, and the model + card facts export/ needs from them.

A checkpoint is a ``torch.save`` dict::

    format: "edgemark-checkpoint", version: 1
    model_name, num_points, layout, input_size, heatmap_stride, sigma, decode
    normalisation: runtime.crop.Normalisation.to_dict(), crop_rule: runtime.crop.CropRule.to_dict()
    model: state_dict
    epoch (completed epochs), optimizer, scheduler, scaler, rng, config, metrics  (training state)
    qat (only after ``--qat``): settings, init checkpoint and hash, fine-tuning settings; the model's
        state dict is then the fake-quantized one (train/qat.py), rebuilt from these settings
    model_sha256: SHA-256 of the model's tensors (names, dtypes, shapes, bytes), checked on load

Safety: a ``torch.save`` file is a pickle, and a crafted pickle runs code when it is loaded. Checkpoints
are therefore loaded with ``torch.load(weights_only=True)``, which admits only tensors and plain
values (a checkpoint written here holds nothing else). A file that needs more (an old or foreign
checkpoint) is refused with one line; to load one you trust, set ``EDGEMARK_TRUST_PICKLE=1`` for
that command. Corrupted weights are caught by ``model_sha256``.
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from runtime.card import Card, atomic_write_bytes, file_sha256
from runtime.crop import CropRule, Normalisation
from runtime.errors import EdgemarkError

FORMAT = "edgemark-checkpoint"
VERSION = 1
TRUST_ENV = "EDGEMARK_TRUST_PICKLE"
# What rebuilding the model and its card needs.
MODEL_KEYS = ("model_name", "num_points", "layout", "input_size", "heatmap_stride", "normalisation", "crop_rule", "model")

logger = logging.getLogger(__name__)


class CheckpointError(EdgemarkError):
    """A missing, corrupt or mismatched checkpoint."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Serialise ``state`` (plus format tags) to ``path`` atomically: never a half-written file."""
    buffer = io.BytesIO()
    tags = {"format": FORMAT, "version": VERSION}
    if isinstance(state.get("model"), dict):
        tags["model_sha256"] = state_dict_sha256(state["model"])
    torch.save({**tags, **state, **tags}, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint; problems raise one-line :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; pass a .pt file written by `python -m train`")
    trusted = os.environ.get(TRUST_ENV, "") == "1"
    try:
        state = torch.load(path, map_location=map_location, weights_only=not trusted)
    except pickle.UnpicklingError as error:
        if trusted:
            raise CheckpointError(f"{path}: not a readable checkpoint ({_reason(error)})") from None
        raise CheckpointError(
            f"{path}: holds Python objects beyond tensors and plain values ({_reason(error)}); such a file can run "
            f"code when loaded, so it was not. If you trust where it came from, run again with {TRUST_ENV}=1"
        ) from None
    except Exception as error:  # torch raises many types for a corrupt file
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(error).__name__}: {_reason(error)}); expected a file written by "
            "`python -m train`"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an edgemark checkpoint (no '{FORMAT}' tag); train one with `python -m train`")
    expected = state.get("model_sha256")
    if expected and isinstance(state.get("model"), dict):
        actual = state_dict_sha256(state["model"])
        if actual != expected:
            raise CheckpointError(
                f"{path}: the model's weights do not match the hash saved with them ({actual[:12]} != {expected[:12]}); "
                "the file is corrupted: use another copy or retrain"
            )
    elif isinstance(state.get("model"), dict):
        logger.warning("%s: no model_sha256 (written before weights were hashed); weights not verified", path)
    return state


def state_dict_sha256(state_dict: dict[str, Any]) -> str:
    """SHA-256 over a state dict's tensors in key order: names, dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        value = state_dict[name]
        digest.update(name.encode())
        if isinstance(value, torch.Tensor):
            tensor = value.detach().to("cpu").contiguous()
            digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
        else:
            digest.update(repr(value).encode())
    return digest.hexdigest()


def _reason(error: BaseException) -> str:
    """The first meaningful line of a loader error, short."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines if "Unsupported global" in line or "GLOBAL" in line]
    return (useful or lines or [type(error).__name__])[0][:200]




def model_from_checkpoint(path: str | Path, num_points: int | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint in eval mode and return it with the checkpoint dict.

    A QAT checkpoint gives its fake-quantized model (:func:`train.qat.frozen_for_export`).

    Args:
        path: checkpoint file.
        num_points: if given, must equal the checkpoint's (a mismatch raises CheckpointError).
    """
    from train.models import build_model

    state = load_checkpoint(path)
    missing = [key for key in MODEL_KEYS if key not in state]
    if missing:
        raise CheckpointError(
            f"{path}: checkpoint lacks {', '.join(missing)}; it was not written by `python -m train` or is damaged"
        )
    if num_points is not None and num_points != state["num_points"]:
        raise CheckpointError(
            f"{path}: checkpoint has {state['num_points']} points but {num_points} were asked for; "
            f"use --num-points {state['num_points']} or another checkpoint"
        )
    try:
        if state.get("qat"):  # fake-quantized convolutions, frozen into the form the exporter writes as Q/DQ
            from train.qat import qat_model_from_state

            model = qat_model_from_state(state)
        else:
            model = build_model(state["model_name"], state["num_points"], input_size=state["input_size"])
            model.load_state_dict(state["model"])
    except RuntimeError as error:
        first = str(error).splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit model '{state['model_name']}' ({first})") from None
    broken = [name for name, tensor in model.state_dict().items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if broken:
        raise CheckpointError(
            f"{path}: {len(broken)} weight tensor(s) hold NaN or infinite values (first: {broken[0]}); the training "
            "diverged or the file was damaged: take an earlier checkpoint or retrain with a lower --lr"
        )
    model.eval()
    return model, state


def card_from_checkpoint(state: dict[str, Any], source: str | Path, **changes) -> Card:
    """The card facts of a checkpoint (format onnx; fp32, or int8 with a QAT calibration record for a QAT one)."""
    quantized = {}
    if state.get("qat"):
        from train.qat import calibration_record

        quantized = {"precision": "int8", "calibration": calibration_record(state["qat"])}
    values = dict(
        layout=state["layout"],
        num_points=state["num_points"],
        input_size=state["input_size"],
        normalisation=Normalisation.from_dict(state["normalisation"]),
        output_kind="heatmap",
        heatmap_stride=state["heatmap_stride"],
        decode=state.get("decode", "centroid"),
        crop_rule=CropRule.from_dict(state["crop_rule"]),
        source=str(source),
        source_sha256=file_sha256(source) if Path(source).is_file() else "",
        **quantized,
    )
    values.update(changes)
    return Card(**values)
