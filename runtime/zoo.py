"""Model zoo: public third-party landmark models and face detectors, downloaded once, verified, landmark models given a card.

``fetch_model("pfld_ghostone")`` downloads the file on first use (progress bar, sha256 checked while
streaming, written atomically), imports it with its card (the same as ``python -m export.onnx
--import`` with :func:`import_flags`) and returns the ready artifact; later calls return the cached artifact without touching
the network. Nothing half-written is ever left in the cache.

Cache: ``$EDGEMARK_CACHE/models`` (default ``~/.cache/edgemark/models``), one folder per model holding
the downloaded file and the artifact ``<name>.onnx`` with its card ``<name>.onnx.json``. The download
base URL can be overridden with ``EDGEMARK_ZOO_URL`` (a mirror, or a local server in tests).

Face detectors (``yunet``) need no card: :func:`fetch_file` downloads and verifies them, and
``runtime.detect`` reads them from the cache (``--detector yunet`` with no path).

Offline: put the file named in the error message at the path it gives (the message also gives the
sha256) and call again; the import then runs locally.
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from runtime.card import Card, CardError, file_sha256, read_card, sidecar_path
from runtime.crop import CropRule, Normalisation
from runtime.errors import EdgemarkError, UsageError, unknown_name
from runtime.heatmap import OFFSET_DECODE, HeatmapOffsets

logger = logging.getLogger(__name__)

CACHE_ENV = "EDGEMARK_CACHE"
URL_ENV = "EDGEMARK_ZOO_URL"
DEFAULT_CACHE = Path("~/.cache/edgemark")
CHUNK_BYTES = 1 << 16


class ZooError(EdgemarkError):
    """A model that could not be fetched, verified or imported; says where to put the file by hand."""


@dataclass(frozen=True)
class ZooEntry:
    """One downloadable model and the facts needed to make it an artifact.

    Attributes:
        name: zoo name (``pfld_ghostone``).
        file_name: the file's name at the source.
        sha256: hex SHA-256 of that file.
        base_url: folder URL the file is downloaded from (``<base_url>/<file_name>``).
        licence: licence of the model weights.
        source: where it comes from (project and paper/repository).
        description: one line for listings.
        card: the card the model is imported with (``None`` for a face detector, which needs none);
            :func:`import_flags` gives the same as ``python -m export.onnx --import`` flags.
        kind: ``landmarks`` (imported into an artifact) or ``detector`` (used as downloaded).
    """

    name: str
    file_name: str
    sha256: str
    base_url: str
    licence: str
    source: str
    description: str
    card: Card | None = None
    kind: str = "landmarks"

    def url(self, base_url: str | None = None) -> str:
        return f"{(base_url or self.base_url).rstrip('/')}/{self.file_name}"


# The card of ../shared/data/README.md: 112x112 BGR input, (x/255 - 0.5) / 0.5, 98 (x, y) pairs in
# [0, 1] of the crop, crop = 1.2 x the longer side of the landmarks' box, WFLW-98 layout.
PFLD_CARD = Card(
    layout="wflw98", num_points=98, input_size=112, normalisation=Normalisation("BGR", (0.5,) * 3, (0.5,) * 3),
    output_kind="coords", decode="direct", crop_rule=CropRule("landmarks", 1.2),
)  # fmt: skip
# ../shared/data/README.md's OpenSeeFace card: 224x224 RGB ImageNet input; (N, 198, 28, 28) output =
# 66 heatmaps, 66 row (y) offset maps, 66 column (x) offset maps (the author's code calls rows x;
# checked on faces68: the first group correlates with the row residual), offsets sigmoid-squashed,
# recovered as logit(v) / 16 * 223 input px, cells 223/27 px apart; crop = the landmarks' box widened
# by 10 % of its width each side and 12.5 % of its height above and below (the author's tracker
# crops the previous frame's landmark box so), stretched to 224x224.
OPENSEEFACE_CARD = Card(
    layout="ibug66", num_points=66, input_size=224,
    normalisation=Normalisation("RGB", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    output_kind="heatmap_offsets", decode=OFFSET_DECODE,
    heatmap_offsets=HeatmapOffsets(
        grid_size=28, cell_spacing=223 / 27, offset_scale=223, channel_groups=("heatmap", "y_offset", "x_offset"),
        offset_transform="logit", offset_divisor=16,
    ),
    crop_rule=CropRule("landmarks", 1.2, scale_y=1.25),
)  # fmt: skip
# The Peppa card: 160x160 BGR, (x - 127) / 127; output (N, 143), the first 136 values the 68 (x, y) pairs
# in [0, 1] of the crop; crop = the box widened by 20 % of its width and height on each side, stretched.
PEPPA_CARD = Card(
    layout="ibug68", num_points=68, input_size=160, normalisation=Normalisation("BGR", (127 / 255,) * 3, (127 / 255,) * 3),
    output_kind="coords", decode="direct", coords_slice=(0, 136), crop_rule=CropRule("landmarks", 1.4, scale_y=1.4),
)  # fmt: skip


def import_flags(card: Card) -> tuple[str, ...]:
    """The ``python -m export.onnx --import`` flags that give a model ``card`` (for a person to type,
    and for tests that import through the command); ``tests/test_zoo.py`` checks the round trip."""
    rule, norm = card.crop_rule, card.normalisation
    flags = [
        "--layout", card.layout, "--input-size", str(card.input_size), "--channel-order", norm.channel_order,
        "--mean", *map(repr, norm.mean), "--std", *map(repr, norm.std), "--output-kind", card.output_kind,
    ]  # fmt: skip
    if card.output_kind == "heatmap":
        flags += ["--heatmap-stride", str(card.heatmap_stride), "--decode", card.decode]
    if card.heatmap_offsets is not None:
        offsets = card.heatmap_offsets
        flags += [
            "--heatmap-size", str(offsets.grid_size), "--cell-spacing", repr(offsets.cell_spacing),
            "--offset-scale", repr(float(offsets.offset_scale)), "--offset-channels", ",".join(offsets.channel_groups),
            "--offset-transform", offsets.offset_transform, "--offset-divisor", repr(float(offsets.offset_divisor)),
        ]  # fmt: skip
    if card.coords_slice is not None:
        flags += ["--coords-slice", *map(str, card.coords_slice)]
    flags += ["--crop-box", rule.box, "--crop-scale", repr(rule.scale)]
    if rule.scale_y is not None:
        flags += ["--crop-scale-y", repr(rule.scale_y)]
    if rule.shift_y:
        flags += ["--crop-shift-y", repr(rule.shift_y)]
    return tuple(flags)


PFLD_IMPORT_FLAGS = import_flags(PFLD_CARD)
OPENSEEFACE_IMPORT_FLAGS = import_flags(OPENSEEFACE_CARD)
PEPPA_IMPORT_FLAGS = import_flags(PEPPA_CARD)
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
PFLD_BASE_URL = "https://github.com/AnthonyF333/PFLD_GhostOne/raw/main/onnx_models"
PFLD_SOURCE = "AnthonyF333/PFLD_GhostOne (GitHub), onnx_models/"

ZOO: dict[str, ZooEntry] = {
    entry.name: entry
    for entry in (
        ZooEntry(
            name="pfld_ghostone",
            file_name="PFLD_GhostOne_112_1_opt_sim.onnx",
            sha256="74d1a83932af79c2689d9371b21f32d014552f089985f076e832e89cb18f41e8",
            base_url=PFLD_BASE_URL,
            licence="Apache-2.0",
            source=PFLD_SOURCE,
            description="PFLD-GhostOne, WFLW 98 points, 112x112 BGR, coords output (reported WFLW NME 5.21 %)",
            card=PFLD_CARD,
        ),
        ZooEntry(
            name="pfld_ghostnet",
            file_name="PFLD_GhostNet_112_1_opt_sim.onnx",
            sha256="81321e3246bb4cf87bf932f38bd8a146feb4ea5d45dbfcb5572b5a447f9d3b0a",
            base_url=PFLD_BASE_URL,
            licence="Apache-2.0",
            source=PFLD_SOURCE,
            description="PFLD-GhostNet, WFLW 98 points, 112x112 BGR, coords output (reported WFLW NME 5.35 %)",
            card=PFLD_CARD,
        ),
        ZooEntry(
            name="pfld_ghostnet_slim",
            file_name="PFLD_GhostNet_Slim_112_1_opt_sim.onnx",
            sha256="ff82819d3169b8e5b5c721fb7704a364dddcd3e9c4ae5e55ad161adcedb6265b",
            base_url=PFLD_BASE_URL,
            licence="Apache-2.0",
            source=PFLD_SOURCE,
            description="PFLD-GhostNet-Slim, WFLW 98 points, 112x112 BGR, coords output (reported WFLW NME 5.41 %)",
            card=PFLD_CARD,
        ),
        ZooEntry(
            name="openseeface_lm0",
            file_name="lm_model0_opt.onnx",
            sha256="43c9c58f03701cc15b8423c49b78af348a6397334d348887e0fda59013275c29",
            base_url="https://github.com/emilianavt/OpenSeeFace/raw/master/models",
            licence="BSD-2-Clause",
            source="emilianavt/OpenSeeFace (GitHub), models/",
            description="OpenSeeFace model 0, MobileNetV3, 66 points (iBUG-68 less 60, 64), 224x224 RGB, heatmaps + offsets",
            card=OPENSEEFACE_CARD,
        ),
        ZooEntry(
            name="peppa_slim160",
            file_name="slim_160_latest.onnx",
            sha256="2121aacea9169ac27227508238237376fe64b96e2f2cc57082f26e88d650fbd2",
            base_url="https://github.com/ainrichman/Peppa-Facial-Landmark-PyTorch/raw/master/pretrained_weights",
            licence="Apache-2.0",
            source="ainrichman/Peppa-Facial-Landmark-PyTorch (GitHub), pretrained_weights/",
            description="Peppa slim-160, 300W-LP, 68 points, 160x160 BGR, coords output (first 136 of 143 values)",
            card=PEPPA_CARD,
        ),
        ZooEntry(
            name="yunet",
            file_name="face_detection_yunet_2023mar.onnx",
            sha256=YUNET_SHA256,
            base_url="https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet",
            licence="Apache-2.0",
            source="opencv/opencv_zoo (GitHub), models/face_detection_yunet/ (= ShiqiYu/libfacedetection.train yunet_s)",
            description="YuNet 2023mar face detector (WIDER FACE), boxes + 5 keypoints, read by cv2.FaceDetectorYN",
            kind="detector",
        ),
    )
}


def zoo_entry(name: str) -> ZooEntry:
    """The zoo entry called ``name``; unknown names raise a UsageError with did-you-mean."""
    try:
        return ZOO[name]
    except KeyError:
        raise unknown_name("zoo model", name, list(ZOO)) from None


def cache_root() -> Path:
    """``$EDGEMARK_CACHE/models``, or ``~/.cache/edgemark/models``."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser() / "models"


def model_paths(name: str, cache_dir: str | Path | None = None) -> tuple[Path, Path]:
    """(downloaded file, artifact) paths of a zoo model in the cache."""
    entry = zoo_entry(name)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    folder = folder / entry.name
    return folder / entry.file_name, folder / f"{entry.name}.onnx"


def fetch_model(
    name: str = "pfld_ghostone",
    cache_dir: str | Path | None = None,
    base_url: str | None = None,
    progress: bool = True,
    timeout_s: float = 30.0,
) -> Path:
    """A ready artifact (``.onnx`` + card sidecar) of a zoo model, downloading it on first use.

    Args:
        name: zoo name (see :data:`ZOO`).
        cache_dir: models cache folder (default: ``$EDGEMARK_CACHE/models`` or ``~/.cache/edgemark/models``).
        base_url: download folder URL overriding the entry's (default: ``$EDGEMARK_ZOO_URL`` if set).
        progress: show a progress bar while downloading (on a terminal).
        timeout_s: network timeout per connection/read.

    Returns:
        Path of the artifact; load it with :func:`runtime.backends.load_backend`.

    Raises:
        UsageError: unknown model name.
        ZooError: network failure, HTTP error, checksum mismatch or a failed import; one line naming
            where to put the file by hand and its sha256. Nothing partial is left in the cache.
    """
    entry = zoo_entry(name)
    if entry.kind != "landmarks":
        raise UsageError(f"zoo entry '{name}' is a face detector, not a landmark model; pass it as --detector {name}")
    download, artifact = model_paths(name, cache_dir)
    if _artifact_ready(artifact, entry):
        return artifact
    _verified_download(entry, download, base_url, progress, timeout_s)
    return import_download(entry, download, artifact)


def fetch_file(
    name: str,
    cache_dir: str | Path | None = None,
    base_url: str | None = None,
    progress: bool = True,
    timeout_s: float = 30.0,
) -> Path:
    """The verified downloaded file of a zoo entry (a face detector's ONNX), downloading it on first use.

    Raises:
        UsageError: unknown name.
        ZooError: as :func:`fetch_model`; a cached file whose sha256 does not match is refused.
    """
    entry = zoo_entry(name)
    download, _ = model_paths(name, cache_dir)
    _verified_download(entry, download, base_url, progress, timeout_s)
    return download


def _verified_download(entry: ZooEntry, download: Path, base_url: str | None, progress: bool, timeout_s: float) -> None:
    if download.is_file():
        actual = file_sha256(download)
        if actual != entry.sha256:
            raise ZooError(
                f"{download}: sha256 {actual} is not the expected {entry.sha256}; delete it (or replace it with "
                f"{entry.url()}) and run again"
            )
        logger.debug("using %s already in the cache", download)
    else:
        url = entry.url(base_url or os.environ.get(URL_ENV) or None)
        download_verified(url, download, entry, progress=progress, timeout_s=timeout_s)


def _artifact_ready(artifact: Path, entry: ZooEntry) -> bool:
    if not (artifact.is_file() and sidecar_path(artifact).is_file()):
        return False
    try:
        return read_card(artifact).source_sha256 == entry.sha256
    except CardError:
        return False




def _manual(entry: ZooEntry, destination: Path) -> str:
    return f"download {entry.url()} by hand and put it at {destination} (sha256 {entry.sha256}), then run again"


def download_verified(
    url: str, destination: Path, entry: ZooEntry, progress: bool = True, timeout_s: float = 30.0
) -> Path:
    """Stream ``url`` into a temporary file beside ``destination``, check its sha256, rename it into place.

    Raises:
        ZooError: any network, HTTP, disk or checksum failure (the temporary file is removed).
    """
    from tqdm import tqdm

    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".part", dir=destination.parent)
    started = time.perf_counter()
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(handle, "wb") as stream:
            try:
                request = urllib.request.Request(url, headers={"User-Agent": "edgemark-zoo"})
                with urllib.request.urlopen(request, timeout=timeout_s) as response:
                    total = int(response.headers.get("Content-Length") or 0) or None
                    # disable=None: a bar on a terminal, silence in logs and CI.
                    with tqdm(
                        total=total, unit="B", unit_scale=True, desc=entry.name, disable=None if progress else True
                    ) as bar:
                        while chunk := response.read(CHUNK_BYTES):
                            stream.write(chunk)
                            digest.update(chunk)
                            size += len(chunk)
                            bar.update(len(chunk))
                    if total is not None and size != total:
                        raise ZooError(
                            f"download of {url} stopped after {size} of {total} bytes; run again, or "
                            f"{_manual(entry, destination)}"
                        )
            except urllib.error.HTTPError as error:
                raise ZooError(
                    f"{url} answered HTTP {error.code} {error.reason}; {_manual(entry, destination)}"
                ) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as error:
                reason = getattr(error, "reason", None) or error
                raise ZooError(f"could not download {url} ({reason}); offline? {_manual(entry, destination)}") from None
        actual = digest.hexdigest()
        if actual != entry.sha256:
            raise ZooError(
                f"{url} sent {size} bytes with sha256 {actual}, not the expected {entry.sha256}; nothing was kept. "
                f"Check the mirror, or {_manual(entry, destination)}"
            )
        os.chmod(temporary, 0o644)
        os.replace(temporary, destination)
    except OSError as error:  # disk full, permissions: not a network problem
        Path(temporary).unlink(missing_ok=True)
        raise ZooError(
            f"cannot write {destination} ({error.strerror or error}); set {CACHE_ENV} to a writable folder"
        ) from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    logger.info("downloaded %s (%.1f MB, sha256 ok) in %.1f s", destination, size / 1e6, time.perf_counter() - started)
    return destination


def import_download(entry: ZooEntry, download: Path, artifact: Path) -> Path:
    """Give a verified download its card: export's importer, found as the ``onnx`` plug-in of
    :data:`runtime.plugins.IMPORTERS_GROUP` (the runtime imports nothing from export/)."""
    from runtime.plugins import IMPORTERS_GROUP, load_plugin

    importer = load_plugin(IMPORTERS_GROUP, "onnx")
    try:
        importer(download, artifact, entry.card, True)
    except EdgemarkError as error:
        raise ZooError(f"{entry.name}: import of {download} failed ({error})") from None
    return artifact
