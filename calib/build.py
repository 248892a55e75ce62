"""Build a stratified calibration set from AVS styles, style proxies and plain real faces.

:func:`build_calibration_set` is the library behind ``python -m calib build``. It

1. reads the target model's card (crop rule, input size, normalisation);
2. reads the sources: AVS synthetic folders (one stratum per style folder), annotated real faces to
   degrade with each style proxy of :mod:`calib.styles` (one stratum per style), plain real faces
   (one stratum, ``real``);
3. drops every source image that is in an evaluation set, by resolved path and by content sha256;
4. picks ``size`` samples round robin over the strata (equal share per stratum while each has
   samples left), randomly within a stratum, using every source image once before any is reused;
   with proxies, each reuse is another variant: a fresh random parameter draw of the style;
5. styles and crops each sample exactly as the runtime crops a frame and writes the ``.npz``
   calibration array with its manifest (and optionally a contact-sheet preview).

Where the style is applied: to the frame, before cropping. A camera degrades the whole frame and the
runtime then cuts the input square out of it, zero-padding where the square leaves the frame; so
styling the frame keeps that padding black (styling the crop would blur, tint and compress the
padding, which the model never sees), and sizes blur kernels, noise grain and 8x8 JPEG blocks in
sensor pixels, shrunk by the crop's resize as in deployment. For speed, the style runs on the part of
the frame the crop can see plus a margin wider than any kernel, its origin aligned to JPEG's 16-pixel
grid, and is pasted back into the frame: for these local operations that equals styling the whole
frame (exactly for the deterministic styles, which the tests check; in distribution for noise), without
paying for a 1080p blur per sample.

The crop itself is the runtime's: :func:`export.evaluation.face_box`, :func:`runtime.crop.crop_matrix`,
:func:`runtime.crop.warp` and :func:`runtime.crop.normalise`, the calls
:func:`export.evaluation.crop_faces` makes (that function reads its images from disk; styled frames
live in memory). Unstyled samples are therefore bit-identical to ``crop_faces``' output, which the
tests check.
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from tqdm import tqdm

from calib.styles import STYLES, apply_style, get_style, style_seed
from export.calibration import CalibrationSet, read_calibration_array, write_calibration_array
from runtime.face_crops import face_box, read_image
from runtime.annotations import IMAGE_SUFFIXES, Sample, read_avs_root, read_dataset
from runtime.card import Card, file_sha256, read_card
from runtime.crop import apply, crop_matrix, invert, normalise, warp
from runtime.errors import EdgemarkError, UsageError

logger = logging.getLogger(__name__)

# Below this many samples INT8 activation ranges get noisy (the usual advice is a few hundred).
RECOMMENDED_MINIMUM = 300
SOURCE_KINDS = ("avs", "proxy", "real")
# JPEG's largest block (a 4:2:0 MCU): styling regions start on this grid so blocks fall as in the frame.
JPEG_GRID = 16


class CalibrationBuildError(EdgemarkError):
    """The sources cannot make the calibration set asked for."""


@dataclass(frozen=True)
class BuildConfig:
    """Everything :func:`build_calibration_set` needs, validated before any work starts.

    Attributes:
        card: artifact whose card (sidecar ``<artifact>.json`` or ONNX metadata) gives the preprocessing.
        output: the ``.npz`` calibration array to write.
        avs: AVS folders (``label.txt`` + ``Image/``, or one such folder per style).
        proxies: annotated real faces (any :func:`runtime.annotations.read_dataset` spec) to style.
        real: annotated real faces to use as they are.
        styles: the style proxies to apply to ``proxies`` (default: all registered).
        size: samples wanted.
        seed: seed of every random choice (selection and style parameters).
        batch_size: the calibrator's batch; fewer samples than this is an error.
        exclude: evaluation sets (folders of images, or annotation files) whose images must not be used.
        preview: optional contact-sheet PNG to write.
        preview_columns: crops per style in the preview.
        max_variants: most styled variants of one source image per style.
    """

    card: Path
    output: Path
    avs: tuple[Path, ...] = ()
    proxies: tuple[Path, ...] = ()
    real: tuple[Path, ...] = ()
    styles: tuple[str, ...] = tuple(STYLES)
    size: int = 400
    seed: int = 0
    batch_size: int = 8
    exclude: tuple[Path, ...] = ()
    preview: Path | None = None
    preview_columns: int = 6
    max_variants: int = 8

    def __post_init__(self):
        if not (self.avs or self.proxies or self.real):
            raise UsageError("no source given; pass at least one of --avs DIR, --proxies FACES, --real FACES")
        if not self.styles:
            raise UsageError(f"--styles is empty; name at least one of {', '.join(STYLES)}")
        for name in self.styles:
            get_style(name)
        if len(set(self.styles)) != len(self.styles):
            raise UsageError(f"--styles names a style twice ({', '.join(self.styles)}); list each once")
        for flag, value, least in (
            ("--size", self.size, 1),
            ("--batch-size", self.batch_size, 1),
            ("--max-variants", self.max_variants, 1),
            ("--preview-columns", self.preview_columns, 1),
        ):
            if value < least:
                raise UsageError(f"{flag} must be at least {least}, got {value}")
        if self.size < self.batch_size:
            raise UsageError(
                f"--size {self.size} is smaller than --batch-size {self.batch_size}; "
                "ask for at least one batch of samples"
            )
        if self.output.suffix != ".npz":
            raise UsageError(f"--out {self.output}: a calibration array is an .npz file; name it e.g. calib.npz")
        if self.preview is not None and self.preview.suffix.lower() != ".png":
            raise UsageError(f"--preview {self.preview}: the contact sheet is a PNG; name it e.g. calib.png")


# ---------------------------------------------------------------------------------------------------
# Sources and exclusion


@dataclass(frozen=True)
class Candidate:
    """One sample the set may contain.

    Attributes:
        sample: the annotated face (image path, landmarks, box, attributes).
        kind: ``avs``, ``proxy`` or ``real``.
        stratum: the style label the set is stratified by (``avs/<style>``, a proxy style name, ``real``).
        style: proxy style to apply, or ``None`` for images used as they are.
        variant: which random draw of the style (0, 1, ...).
    """

    sample: Sample
    kind: str
    stratum: str
    style: str | None = None
    variant: int = 0




class HashCache:
    """sha256 of files by resolved path, each file read once."""

    def __init__(self):
        self._hashes: dict[Path, str] = {}

    def __call__(self, path: Path) -> str:
        resolved = Path(path).resolve()
        if resolved not in self._hashes:
            self._hashes[resolved] = file_sha256(resolved)
        return self._hashes[resolved]


def evaluation_images(spec: Path) -> list[Path]:
    """Image files of one evaluation set: every image under a folder, or the images an annotation file names."""
    if not spec.exists():
        raise CalibrationBuildError(
            f"--exclude {spec}: not found; expected the evaluation set's folder of images or its annotation file"
        )
    if spec.is_dir():
        images = sorted(p for p in spec.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    else:
        images = [sample.image for sample in read_dataset(spec)]
    if not images:
        # An empty evaluation set would silently guard nothing.
        raise CalibrationBuildError(
            f"--exclude {spec}: no images found ({', '.join(IMAGE_SUFFIXES)}); "
            "expected the evaluation set's folder of images or its annotation file"
        )
    return images


@dataclass
class Exclusion:
    """Which source images are in the evaluation sets, by resolved path or by content.

    Only files whose byte size matches an evaluation image's are hashed: equal content needs equal size.
    """

    paths: set[Path] = field(default_factory=set)
    sizes: dict[int, list[Path]] = field(default_factory=dict)
    hashes: HashCache = field(default_factory=HashCache)

    @classmethod
    def from_specs(cls, specs: tuple[Path, ...], hashes: HashCache) -> "Exclusion":
        exclusion = cls(hashes=hashes)
        for spec in specs:
            images = evaluation_images(spec)
            logger.info("evaluation set %s: %d images to keep out", spec, len(images))
            for image in images:
                if image.is_file():
                    resolved = image.resolve()
                    exclusion.paths.add(resolved)
                    exclusion.sizes.setdefault(resolved.stat().st_size, []).append(resolved)
        return exclusion

    def reason(self, image: Path) -> str | None:
        """``"path"`` or ``"content"`` when ``image`` is an evaluation image, else ``None``."""
        resolved = Path(image).resolve()
        if resolved in self.paths:
            return "path"
        if not resolved.is_file():
            return None
        same_size = self.sizes.get(resolved.stat().st_size, [])
        if same_size:
            digest = self.hashes(resolved)
            if any(self.hashes(other) == digest for other in same_size):
                return "content"
        return None


def _read_sources(config: BuildConfig) -> list[tuple[str, Path, list[Sample]]]:
    """(kind, spec, samples) for every source flag; missing or empty sources raise one line."""
    sources = []
    for kind, specs in (("avs", config.avs), ("proxy", config.proxies), ("real", config.real)):
        for spec in specs:
            samples = read_avs_root(spec) if kind == "avs" else read_dataset(spec)
            if not samples:
                raise CalibrationBuildError(f"{spec}: no annotated faces found; expected a non-empty source")
            sources.append((kind, spec, samples))
            logger.info("source %s (%s): %d annotated faces", spec, kind, len(samples))
    return sources


def _avs_stratum(style: str) -> str:
    return "avs" if style == "avs" else f"avs/{style}"


def _candidate_pools(
    sources: list[tuple[str, Path, list[Sample]]], config: BuildConfig, exclusion: Exclusion
) -> tuple[dict[str, list[Sample]], list[Sample], list[tuple[str, str]]]:
    """Split kept samples into fixed strata (AVS styles, ``real``) and proxy source faces; list excluded ones.

    Returns:
        (fixed stratum -> samples, faces to style, [(excluded image, reason)]).
    """
    fixed: dict[str, list[Sample]] = {}
    proxy_faces: list[Sample] = []
    excluded: list[tuple[str, str]] = []
    for kind, _, samples in sources:
        for sample in samples:
            reason = exclusion.reason(sample.image)
            if reason is None and sample.source_image is not None and Path(sample.source_image).is_file():
                # An AVS face drawn on an evaluation face's landmarks would leak its geometry.
                reason = exclusion.reason(Path(sample.source_image))
                reason = f"source image {reason}" if reason else None
            if reason is not None:
                excluded.append((str(sample.image), reason))
            elif kind == "proxy":
                proxy_faces.append(sample)
            else:
                stratum = _avs_stratum(sample.source) if kind == "avs" else "real"
                fixed.setdefault(stratum, []).append(sample)
    return fixed, proxy_faces, excluded


# ---------------------------------------------------------------------------------------------------
# Stratified selection


def _fixed_stream(samples: list[Sample], kind: str, stratum: str, rng: np.random.Generator) -> Iterator[Candidate]:
    for index in rng.permutation(len(samples)):
        yield Candidate(samples[index], kind, stratum)


def _proxy_stream(faces: list[Sample], style: str, max_variants: int, rng: np.random.Generator) -> Iterator[Candidate]:
    # Every face once (in a fresh random order) before any face gets its next variant.
    for variant in range(max_variants):
        for index in rng.permutation(len(faces)):
            yield Candidate(faces[index], "proxy", style, style, variant)


def select_candidates(
    fixed: dict[str, list[Sample]], proxy_faces: list[Sample], config: BuildConfig
) -> list[Candidate]:
    """Round robin over strata, random within each, until ``config.size`` or every stratum runs dry.

    Strata come in a fixed order (AVS styles, proxy styles in ``config.styles`` order, ``real``), so the
    output interleaves styles and any chunk of it is style-diverse.
    """
    rng = np.random.default_rng(config.seed)
    streams: list[Iterator[Candidate]] = []
    for stratum in sorted(s for s in fixed if s != "real"):
        streams.append(_fixed_stream(fixed[stratum], "avs", stratum, rng))
    if proxy_faces:
        for style in config.styles:
            streams.append(_proxy_stream(proxy_faces, style, config.max_variants, rng))
    if "real" in fixed:
        streams.append(_fixed_stream(fixed["real"], "real", "real", rng))
    chosen: list[Candidate] = []
    while streams and len(chosen) < config.size:
        for stream in list(streams):
            if len(chosen) >= config.size:
                break
            candidate = next(stream, None)
            if candidate is None:
                streams.remove(stream)
            else:
                chosen.append(candidate)
    return chosen


# ---------------------------------------------------------------------------------------------------
# Styling and cropping


def styling_region(frame_shape: tuple[int, ...], matrix: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the frame the input square sees, plus a margin wider than any style's kernel.

    ``x0, y0`` sit on the :data:`JPEG_GRID`; the region is clipped to the frame.
    """
    height, width = frame_shape[:2]
    corners = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5]])
    in_frame = apply(invert(matrix), corners)
    low, high = in_frame.min(axis=0), in_frame.max(axis=0)
    margin = 0.15 * float(np.max(high - low)) + JPEG_GRID
    x0 = max(0, int(np.floor(low[0] - margin)) // JPEG_GRID * JPEG_GRID)
    y0 = max(0, int(np.floor(low[1] - margin)) // JPEG_GRID * JPEG_GRID)
    x1 = min(width, int(np.ceil(high[0] + margin)))
    y1 = min(height, int(np.ceil(high[1] + margin)))
    if x1 - x0 < 2 or y1 - y0 < 2:  # the square misses the frame entirely: style the whole frame
        return 0, 0, width, height
    return x0, y0, x1, y1


def styled_crop(
    frame: np.ndarray, candidate: Candidate, card: Card, rng: np.random.Generator | None
) -> tuple[np.ndarray, dict[str, Any]]:
    """The (S, S, 3) uint8 BGR input crop of one candidate, styled in the frame first when it has a style.

    Returns:
        (crop, style parameters) — parameters empty for unstyled candidates.
    """
    size = card.input_size
    matrix = crop_matrix(face_box(candidate.sample, card), card.crop_rule, size)
    return styled_cut(frame, candidate.sample.points, candidate.style, matrix, size, rng)


def styled_cut(
    frame: np.ndarray, points: np.ndarray, style: str | None, matrix: np.ndarray, size: int,
    rng: np.random.Generator | None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The (size, size, 3) cut of ``frame`` by ``matrix``, styled in the frame first (the region the cut
    sees, plus a margin: kernels act at the photograph's resolution) when ``style`` is not ``None``.

    Returns:
        (cut, style parameters) — parameters empty without a style.
    """
    if style is None:
        return warp(frame, matrix, size), {}
    x0, y0, x1, y1 = styling_region(frame.shape, matrix, size)
    region_points = np.asarray(points, dtype=np.float64) - np.array([x0, y0], dtype=np.float64)
    styled = apply_style(style, frame[y0:y1, x0:x1], region_points, rng)
    styled_frame = frame.copy()
    styled_frame[y0:y1, x0:x1] = styled.image
    return warp(styled_frame, matrix, size), styled.parameters


def _attributes(candidate: Candidate) -> dict[str, int]:
    attributes = dict(candidate.sample.attributes)
    if candidate.style is not None:
        attribute = get_style(candidate.style).attribute
        if attribute is not None:
            attributes[attribute] = 1
    return attributes


def _manifest_entry(candidate: Candidate, sha256: str, parameters: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "image": str(candidate.sample.image),
        "sha256": sha256,
        "source": candidate.kind,
        "style": candidate.stratum,
        "parameters": parameters,
        "attributes": _attributes(candidate),
    }
    if candidate.kind == "proxy":
        entry["variant"] = candidate.variant
    if candidate.sample.source_image is not None:
        entry["source_image"] = str(candidate.sample.source_image)
    return entry


def make_crops(
    candidates: list[Candidate], card: Card, seed: int, hashes: HashCache
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Style and crop every candidate, reading each source image once.

    Returns:
        ((N, S, S, 3) uint8 BGR crops in ``candidates`` order, manifest entries in the same order).
    """
    by_image: dict[Path, list[int]] = collections.defaultdict(list)
    for index, candidate in enumerate(candidates):
        by_image[Path(candidate.sample.image)].append(index)
    size = card.input_size
    crops = np.zeros((len(candidates), size, size, 3), dtype=np.uint8)
    entries: list[dict[str, Any]] = [{} for _ in candidates]
    with tqdm(
        total=len(candidates), desc="styling and cropping", unit="sample", leave=False, dynamic_ncols=True
    ) as progress:
        for image, indices in by_image.items():
            frame = read_image(image)
            sha256 = hashes(image)
            for index in indices:
                candidate = candidates[index]
                rng = None
                if candidate.style is not None:
                    rng = np.random.default_rng(style_seed(seed, candidate.style, sha256, candidate.variant))
                crops[index], parameters = styled_crop(frame, candidate, card, rng)
                entries[index] = _manifest_entry(candidate, sha256, parameters)
                progress.update()
    return crops, entries


# ---------------------------------------------------------------------------------------------------
# The build


def _check_proxy_layouts(faces: list[Sample], config: BuildConfig) -> None:
    """Fail before any work when a style cannot read the faces' landmarks (make-up needs lips and eyes)."""
    if "make_up" not in config.styles:
        return
    counts = sorted({len(face.points) for face in faces} - {68, 98})
    if counts:
        raise UsageError(
            f"the make_up style places lips and eyes from 68- or 98-point landmarks, but --proxies faces have "
            f"{', '.join(map(str, counts))} points; leave make_up out with --styles"
        )


def _describe_sources(config: BuildConfig) -> str:
    flags = [
        f"--{kind} {spec}"
        for kind, specs in (("avs", config.avs), ("proxies", config.proxies), ("real", config.real))
        for spec in specs
    ]
    return ", ".join(flags)


def _available(fixed: dict[str, list[Sample]], proxy_faces: list[Sample], config: BuildConfig) -> int:
    return sum(len(samples) for samples in fixed.values()) + len(proxy_faces) * len(config.styles) * config.max_variants


def build_calibration_set(config: BuildConfig) -> CalibrationSet:
    """Build, check and write the calibration array (and preview) that ``config`` describes.

    Returns:
        The written set, read back (inputs, manifest, path, sha256).

    Raises:
        EdgemarkError: a missing card or source, an empty source, every image excluded, or fewer
            possible samples than ``config.batch_size``. Nothing is written then.
    """
    started = time.perf_counter()
    card = read_card(config.card)
    hashes = HashCache()
    exclusion = Exclusion.from_specs(config.exclude, hashes)
    sources = _read_sources(config)
    fixed, proxy_faces, excluded = _candidate_pools(sources, config, exclusion)
    _check_proxy_layouts(proxy_faces, config)
    total_sources = sum(len(samples) for _, _, samples in sources)
    if excluded:
        by_reason = collections.Counter(reason for _, reason in excluded)
        logger.info(
            "excluded %d of %d source images found in the evaluation set(s) (%s)",
            len(excluded),
            total_sources,
            ", ".join(f"{count} by {reason}" for reason, count in sorted(by_reason.items())),
        )
    if len(excluded) == total_sources:
        raise CalibrationBuildError(
            f"all {total_sources} source images ({_describe_sources(config)}) are in the evaluation set(s) "
            f"({', '.join(str(p) for p in config.exclude)}); calibrate on images the evaluation does not use"
        )
    available = _available(fixed, proxy_faces, config)
    if available < config.batch_size:
        raise CalibrationBuildError(
            f"only {available} calibration samples can be made from {_describe_sources(config)} "
            f"({len(excluded)} images excluded), fewer than --batch-size {config.batch_size}; "
            "add source images, add --proxies faces, raise --max-variants or lower --batch-size"
        )

    candidates = select_candidates(fixed, proxy_faces, config)
    if len(candidates) < RECOMMENDED_MINIMUM:
        logger.warning(
            "the calibration set has %d samples, fewer than the %d recommended for stable INT8 ranges; "
            "add source images (or --proxies faces) and raise --size",
            len(candidates),
            RECOMMENDED_MINIMUM,
        )
    if len(candidates) < config.size:
        logger.warning("asked for %d samples; the sources allow %d", config.size, len(candidates))

    crops, entries = make_crops(candidates, card, config.seed, hashes)
    inputs = normalise(crops, card.normalisation)  # (N, 3, S, S) float32
    manifest = _manifest(config, card, entries, excluded, len(candidates))
    write_calibration_array(config.output, inputs, manifest)
    if config.preview is not None:
        from calib.preview import write_contact_sheet

        write_contact_sheet(config.preview, crops, [entry["style"] for entry in entries], config.preview_columns)
    result = read_calibration_array(config.output)
    logger.info(
        "built %s: %d samples over %d styles from %d source images in %.1f s",
        config.output,
        len(result),
        len(manifest["styles"]),
        manifest["source_images"],
        time.perf_counter() - started,
    )
    return result


def _manifest(
    config: BuildConfig, card: Card, entries: list[dict[str, Any]], excluded: list[tuple[str, str]], count: int
) -> dict[str, Any]:
    styles = collections.Counter(entry["style"] for entry in entries)
    sources = collections.Counter(entry["source"] for entry in entries)
    return {
        "name": config.output.stem,
        "description": "stratified calibration set built by `python -m calib build`",
        "count": count,
        "size_requested": config.size,
        "seed": config.seed,
        "styles": dict(styles),
        "sources": dict(sorted(sources.items())),
        "source_images": len({entry["sha256"] for entry in entries}),
        "max_variants": config.max_variants,
        "excluded": len(excluded),
        "excluded_images": [{"image": image, "reason": reason} for image, reason in excluded],
        "evaluation_sets": [str(spec) for spec in config.exclude],
        "inputs": {
            "avs": [str(p) for p in config.avs],
            "proxies": [str(p) for p in config.proxies],
            "real": [str(p) for p in config.real],
        },
        "styling": "applied to the frame before the runtime's crop (see calib.build)",
        "preprocessing": {
            "card": str(config.card),
            "layout": card.layout,
            "input_size": card.input_size,
            "crop_rule": card.crop_rule.to_dict(),
            "normalisation": card.normalisation.to_dict(),
        },
        "samples": entries,
    }
