"""Reading, checking and writing ONNX artifacts with their card (shared by every export command)."""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
from pathlib import Path

import onnx

from runtime.card import METADATA_KEY, Card, atomic_write_bytes, onnx_graph_sha256, sidecar_path, write_card
from runtime.errors import EdgemarkError, first_line

logger = logging.getLogger(__name__)


class ExportError(EdgemarkError):
    """An artifact that could not be made, or that failed a check; nothing was written."""


class CardMismatch(EdgemarkError):
    """The card's facts (given by flags or read from a checkpoint) disagree with the model itself."""


def tool_versions(*packages: str) -> dict[str, str]:
    """Installed versions of ``packages`` (plus edgemark), for the card."""
    versions = {}
    for package in ("edgemark", *packages):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def bytes_sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def load_onnx(path: str | Path, what: str = "model") -> onnx.ModelProto:
    """Load and check an ONNX file; a missing, unparsable or invalid file raises one line.

    Args:
        path: the ``.onnx`` file.
        what: how to call it in messages ("model", "reference", ...).
    """
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: {what} not found; pass an existing .onnx file")
    try:
        model = onnx.load(str(path))
    except Exception as error:  # protobuf's DecodeError and friends
        raise ExportError(
            f"{path}: not a readable ONNX {what} ({type(error).__name__}); re-download or re-export it"
        ) from None
    check_onnx(model, f"{path}")
    return model


def check_onnx(model: onnx.ModelProto, name: str) -> None:
    """``onnx.checker.check_model`` with a one-line error."""
    if not model.graph.node:
        raise ExportError(f"{name}: not an ONNX model (the graph has no nodes); re-download or re-export it")
    try:
        onnx.checker.check_model(model)
    except Exception as error:  # ValidationError, or protobuf errors on garbage
        raise ExportError(f"{name}: ONNX checker rejects the model ({first_line(error)})") from None


def embed_card(model: onnx.ModelProto, card: Card) -> None:
    """Put ``card`` into the model's ``metadata_props`` under :data:`METADATA_KEY`, replacing any old one."""
    kept = [(prop.key, prop.value) for prop in model.metadata_props if prop.key != METADATA_KEY]
    del model.metadata_props[:]
    for key, value in kept:
        model.metadata_props.add(key=key, value=value)
    model.metadata_props.add(key=METADATA_KEY, value=json.dumps(card.to_dict(), sort_keys=True))


def save_artifact(model: onnx.ModelProto, card: Card, output: str | Path) -> Path:
    """Embed ``card`` and write the model and its sidecar, each atomically.

    If the sidecar cannot be written the model is removed again, so a failure leaves nothing behind.

    Returns:
        The path of the written model.
    """
    output = Path(output)
    card = card.with_changes(model_sha256=onnx_graph_sha256(model))
    embed_card(model, card)
    data = model.SerializeToString()
    atomic_write_bytes(output, data)
    try:
        write_card(output, card)
    except BaseException:
        output.unlink(missing_ok=True)
        raise
    logger.info(
        "wrote %s (%.1f MB, %s %s) and %s",
        output,
        len(data) / 1e6,
        card.precision,
        card.format,
        sidecar_path(output).name,
    )
    return output


def check_output_path(output: str | Path, *sources: str | Path) -> Path:
    """Refuse an output path that is not an ``.onnx`` file name or that would overwrite an input."""
    output = Path(output)
    if output.suffix != ".onnx":
        raise ExportError(f"{output}: the output must be an .onnx file name (the card goes beside it as .onnx.json)")
    if output.is_dir():
        raise ExportError(f"{output}: is a directory; pass a file name like model.onnx")
    for source in sources:
        if source is not None and Path(source).exists() and output.resolve() == Path(source).resolve():
            raise ExportError(f"{output}: would overwrite its own input; choose another output name")
    return output
