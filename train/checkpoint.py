"""Checkpoints: atomic save, validated load, and the model + card facts export/ needs from them.

A checkpoint is a ``torch.save`` dict::

    format: "edgemark-checkpoint", version: 1
    model_name, num_points, layout, input_size, heatmap_stride, sigma, decode
    normalisation: runtime.crop.Normalisation.to_dict(), crop_rule: runtime.crop.CropRule.to_dict()
    model: state_dict
    epoch (completed epochs), optimizer, scheduler, scaler, rng, config, metrics  (training state)
    qat (only after ``--qat``): settings, init checkpoint and hash, fine-tuning settings; the model's
        state dict is then the fake-quantized one (train/qat.py), rebuilt from these settings
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from runtime.card import Card, atomic_write_bytes, file_sha256
from runtime.crop import CropRule, Normalisation
from runtime.errors import EdgemarkError

FORMAT = "edgemark-checkpoint"
VERSION = 1


class CheckpointError(EdgemarkError):
    """A missing, corrupt or mismatched checkpoint."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Serialise ``state`` (plus format tags) to ``path`` atomically: never a half-written file."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **state}, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint; problems raise one-line :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; pass a .pt file written by `python -m train`")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # torch raises many types for a corrupt file
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(error).__name__}); expected a file written by `python -m train`"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an edgemark checkpoint (no '{FORMAT}' tag); train one with `python -m train`")
    return state




def model_from_checkpoint(path: str | Path, num_points: int | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint in eval mode and return it with the checkpoint dict.

    A QAT checkpoint gives its fake-quantized model (:func:`train.qat.frozen_for_export`).

    Args:
        path: checkpoint file.
        num_points: if given, must equal the checkpoint's (a mismatch raises CheckpointError).
    """
    from train.models import build_model

    state = load_checkpoint(path)
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
