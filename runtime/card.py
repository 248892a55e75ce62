"""The artifact card: every fact needed to use a model artifact, carried beside it and inside it.

Written by export/ into the ONNX ``metadata_props`` (key ``edgemark.card``, JSON) or the OpenVINO IR's
``rt_info`` (``edgemark/card``) where the format allows, and always into the sidecar
``<artifact>.json``. runtime/, the benchmark, the report and the C++ demo read only the card; nothing
is guessed from file names.

A card cannot silently disagree with its model: the embedded card is the authority and a sidecar
that says otherwise is an error, and the card holds the SHA-256 of the model content it describes
(``model_sha256``: the ONNX graph without the metadata that carries the card, the IR's weights file,
the engine file), checked whenever the card is read. Cards written before the hash existed are read
without that check.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from runtime.crop import CropRule, Normalisation
from runtime.errors import EdgemarkError, UsageError
from runtime.heatmap import OFFSET_DECODE, HeatmapOffsets
from runtime.layouts import get_layout

CARD_VERSION = 1
METADATA_KEY = "edgemark.card"
OUTPUT_KINDS = ("heatmap", "coords", "heatmap_offsets")
# Fields left out of the serialized card while unset, so cards written before they existed stay byte-identical.
_OPTIONAL_FIELDS = ("heatmap_offsets", "coords_slice", "model_sha256", "output_name")
# Fields that were untyped entries of ``extra`` before they became fields; read from there in older cards.
_FORMERLY_EXTRA = ("batch", "output_name")
PRECISIONS = ("fp32", "fp16", "int8")


class CardError(EdgemarkError):
    """A missing, unreadable or inconsistent card."""


@dataclass(frozen=True)
class Card:
    """What a runtime must know to use an artifact.

    Attributes:
        layout: landmark layout name (``wflw98``, ``ibug68``, ...).
        num_points: number of landmarks; must match the layout.
        input_size: side of the square input in pixels.
        input_name: name of the model's image input.
        output_name: name of the output that holds the landmarks (``""``: the model's first output).
        batch: the batch size the artifact is fixed at, ``None`` when its batch dimension is dynamic
            (written as ``"dynamic"``).
        normalisation: channel order and mean/std.
        output_kind: ``heatmap`` (N, K, H, W), ``coords`` (N, 2K) normalised to [0, 1] of the crop, or
            ``heatmap_offsets`` (N, 3K, G, G) heatmaps with x and y offset maps.
        heatmap_stride: input pixels per heatmap pixel (heatmap outputs only).
        heatmap_offsets: channel layout and offset decoding (``heatmap_offsets`` outputs only).
        coords_slice: ``(start, stop)`` of the 2K point values in a flat ``coords`` output that holds
            more (Peppa's 143 values: ``(0, 136)``, pose and other heads after); ``None``: all of it.
        decode: heatmap decode method (``centroid``, ``argmax``, ``soft_argmax``); ``direct`` for coords;
            ``peak_offset`` for heatmap_offsets.
        crop_rule: how a face box becomes the input square.
        precision: ``fp32``, ``fp16`` or ``int8``.
        format: artifact format (``onnx``, ``openvino``, ``tensorrt``, ``torch``).
        source_sha256: hash of the checkpoint or model the artifact was made from.
        model_sha256: hash of this artifact's own model content (see the module docstring); empty for
            cards written before it existed.
        source: human-readable origin (checkpoint path, third-party model name).
        calibration: summary of the INT8 calibration (empty for float artifacts).
        tools: versions of the tools that built it.
        extra: anything else worth keeping (e.g. quantisation options).
    """

    layout: str
    num_points: int
    input_size: int
    normalisation: Normalisation
    output_kind: str
    crop_rule: CropRule
    decode: str = "centroid"
    heatmap_stride: int | None = None
    heatmap_offsets: HeatmapOffsets | None = None
    coords_slice: tuple[int, int] | None = None
    input_name: str = "input"
    output_name: str = ""
    batch: int | None = None
    precision: str = "fp32"
    format: str = "onnx"
    source_sha256: str = ""
    model_sha256: str = ""
    source: str = ""
    calibration: dict[str, Any] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = CARD_VERSION

    def __post_init__(self):
        layout = get_layout(self.layout)
        if layout.num_points != self.num_points:
            raise UsageError(
                f"card says layout '{self.layout}' ({layout.num_points} points) but num_points={self.num_points}"
            )
        if self.output_kind not in OUTPUT_KINDS:
            raise UsageError(f"output kind '{self.output_kind}' is not one of {', '.join(OUTPUT_KINDS)}")
        if self.output_kind == "heatmap" and not self.heatmap_stride:
            raise UsageError("a heatmap card needs heatmap_stride (input pixels per heatmap pixel)")
        if (self.output_kind == "heatmap_offsets") != (self.heatmap_offsets is not None):
            raise UsageError(
                "a heatmap_offsets card needs 'heatmap_offsets' (grid_size, cell_spacing, offset_scale, "
                "channel_groups, offset_transform, offset_divisor), and only such a card has it; "
                f"this one has output_kind '{self.output_kind}' and heatmap_offsets={self.heatmap_offsets}"
            )
        if self.output_kind == "heatmap_offsets" and self.decode != OFFSET_DECODE:
            raise UsageError(f"a heatmap_offsets card decodes with '{OFFSET_DECODE}', not '{self.decode}'")
        if self.coords_slice is not None:
            start, stop = self.coords_slice
            if self.output_kind != "coords" or start < 0 or stop - start != 2 * self.num_points:
                raise UsageError(
                    f"coords_slice {list(self.coords_slice)} must select the {2 * self.num_points} values of "
                    f"{self.num_points} (x, y) pairs in a coords output (output kind here: {self.output_kind})"
                )
        if self.batch is not None and (isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1):
            raise UsageError(f"card batch must be a positive integer or 'dynamic', got {self.batch!r}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"precision '{self.precision}' is not one of {', '.join(PRECISIONS)}")

    def with_changes(self, **changes) -> "Card":
        """A copy with some fields replaced (e.g. precision and calibration for an INT8 artifact).

        A changed card describes another artifact (another format, precision, model), so the copy
        keeps no ``model_sha256`` unless one is given: the writer of that artifact hashes it.
        """
        return replace(self, **{"model_sha256": "", **changes})

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["normalisation"] = self.normalisation.to_dict()
        values["crop_rule"] = self.crop_rule.to_dict()
        if self.heatmap_offsets is not None:
            values["heatmap_offsets"] = self.heatmap_offsets.to_dict()
        for name in _OPTIONAL_FIELDS:
            if values[name] in (None, ""):
                del values[name]
        values["batch"] = "dynamic" if self.batch is None else self.batch
        return values

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Card":
        try:
            values = dict(values)
            extra = dict(values.get("extra") or {})
            for name in _FORMERLY_EXTRA:
                if name in extra:
                    moved = extra.pop(name)
                    values.setdefault(name, moved)
            values["extra"] = extra
            if values.get("batch") == "dynamic":
                values["batch"] = None
            values["normalisation"] = Normalisation.from_dict(values["normalisation"])
            values["crop_rule"] = CropRule.from_dict(values["crop_rule"])
            if values.get("heatmap_offsets") is not None:
                values["heatmap_offsets"] = HeatmapOffsets.from_dict(values["heatmap_offsets"])
            if values.get("coords_slice") is not None:
                values["coords_slice"] = tuple(values["coords_slice"])
            return cls(**values)
        except (KeyError, TypeError) as error:
            raise CardError(f"card is incomplete or has unknown fields ({error}); re-export the artifact") from None


def sidecar_path(artifact: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        move_into_place(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def move_into_place(temporary: str | Path, path: str | Path) -> None:
    """Rename a finished temporary file to ``path``, with the permissions a plain ``open()`` would give
    (``mkstemp`` makes 0600 files)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)
    os.replace(temporary, path)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's content, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_card(artifact: str | Path, card: Card) -> Path:
    """Write the sidecar card of ``artifact`` atomically and return its path."""
    path = sidecar_path(artifact)
    atomic_write_bytes(path, card.to_json().encode())
    return path


def read_card(artifact: str | Path, verify: bool = True) -> Card:
    """An artifact's card: the one embedded in the model (ONNX metadata, IR ``rt_info``), else the sidecar.

    Args:
        artifact: the model file.
        verify: check the model's content against the card's ``model_sha256`` (when it has one).

    Raises:
        CardError: no card; an unreadable card or model; a sidecar that disagrees with the embedded
            card; model content that does not match the card's hash.
    """
    artifact = Path(artifact)
    sidecar = sidecar_path(artifact)
    model = _load_onnx(artifact) if artifact.suffix == ".onnx" and artifact.is_file() else None
    beside = None
    if sidecar.is_file():
        try:
            beside = Card.from_dict(json.loads(sidecar.read_text()))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CardError(f"{sidecar}: card is not valid JSON ({error}); re-export the artifact") from None
        except OSError as error:
            raise CardError(f"{sidecar}: cannot read the card ({error.strerror or error})") from None
    inside = onnx_card(model, artifact) if model is not None else ir_card(artifact)
    if inside is not None and beside is not None and inside.to_dict() != beside.to_dict():
        embedded, written = inside.to_dict(), beside.to_dict()
        differing = sorted(key for key in set(embedded) | set(written) if embedded.get(key) != written.get(key))
        raise CardError(
            f"{sidecar} disagrees with the card inside {artifact.name} (on {', '.join(differing)}); the embedded card "
            f"is the authority: delete {sidecar.name} (or re-export) and run again"
        )
    card = inside or beside
    if card is None:
        raise CardError(
            f"{artifact}: no card found (looked for {sidecar.name} and the card embedded in the model); "
            "export it with edgemark or import a third-party model with `python -m export.onnx --import ...`"
        )
    if verify and card.model_sha256 and artifact.is_file():
        actual = onnx_graph_sha256(model) if model is not None else content_sha256(artifact)
        if actual != card.model_sha256:
            raise CardError(
                f"{artifact}: the model's content does not match its card (sha256 {actual[:12]}, card says "
                f"{card.model_sha256[:12]}); the file was modified or damaged: re-export it or fetch it again"
            )
    return card


def onnx_card(model, source: str | Path = "the model") -> Card | None:
    """The card in an ONNX ``ModelProto``'s metadata (:data:`METADATA_KEY`), or None.

    Raises:
        CardError: the embedded card is not valid.
    """
    text = next((prop.value for prop in model.metadata_props if prop.key == METADATA_KEY), None)
    return None if text is None else _card_from_text(text, source)


def onnx_graph_sha256(model) -> str:
    """An ONNX model's ``model_sha256``: its graph, not the metadata that holds the card."""
    return hashlib.sha256(model.graph.SerializeToString(deterministic=True)).hexdigest()


def _load_onnx(artifact: Path):
    """The ``ModelProto`` of an ONNX file (weights in external files not loaded); one line when unreadable."""
    import onnx

    try:
        return onnx.load(str(artifact), load_external_data=False)
    except Exception as error:  # protobuf's DecodeError, OSError: all one line
        raise CardError(f"{artifact}: not a readable ONNX model ({type(error).__name__}); is the file complete?") from None


def ir_card(artifact: str | Path) -> Card | None:
    """The card in an OpenVINO IR's ``rt_info`` (read as XML, no OpenVINO needed), or None for other files."""
    artifact = Path(artifact)
    if artifact.suffix != ".xml" or not artifact.is_file():
        return None
    import xml.etree.ElementTree as ElementTree

    try:
        node = ElementTree.parse(artifact).getroot().find("./rt_info/edgemark/card")
    except Exception as error:  # XML ParseError, OSError: all one line
        raise CardError(f"{artifact}: not a readable OpenVINO IR ({type(error).__name__}); is the file complete?") from None
    return None if node is None or node.get("value") is None else _card_from_text(node.get("value"), artifact)


def _card_from_text(text: str, source: str | Path) -> Card:
    try:
        return Card.from_dict(json.loads(text))
    except json.JSONDecodeError as error:
        raise CardError(f"{source}: the embedded card is not valid JSON ({error}); re-export the artifact") from None


def content_sha256(artifact: str | Path) -> str:
    """SHA-256 of what a card's ``model_sha256`` covers: an ONNX model's graph (not its metadata, which
    holds the card), an IR's weights (``.bin``; its ``.xml`` holds the card), or the whole file otherwise."""
    artifact = Path(artifact)
    if artifact.suffix == ".onnx":
        return onnx_graph_sha256(_load_onnx(artifact))
    if artifact.suffix == ".xml" and artifact.with_suffix(".bin").is_file():
        return file_sha256(artifact.with_suffix(".bin"))
    return file_sha256(artifact)
