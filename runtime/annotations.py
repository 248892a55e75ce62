"""Readers for landmark annotation files in their upstream formats (torch-free).

Every reader returns ``list[Sample]`` with points in the pixel frame of the image the sample names
(pixel centres at integers, as the files write them) and raises :class:`AnnotationError` naming the
file and line of a malformed entry. Readers do not open images; the dataset does, and names any it
cannot read.

Formats:

- **WFLW list** (``list_98pt_rect_attr_{train,test}.txt``): one face per line, 207 fields separated
  by spaces: ``x0 y0 ... x97 y97`` (196), the face box ``x_min y_min x_max y_max`` (4), six 0/1
  flags ``pose expression illumination make-up occlusion blur`` (6), then the image path relative to
  ``WFLW_images/``. See :func:`read_wflw_list`.
- **HRNet CSV** (HRNet-Facial-Landmark-Detection ``data/{wflw,300w,aflw}/face_landmarks_*.csv``, read
  there with ``pandas.read_csv`` in ``lib/datasets/{wflw,face300w,aflw}.py``): a header row
  ``image_name,scale,center_w,center_h,original_0_x,original_0_y,...``, then one face per row. The face
  box is the square of side ``200 * scale`` centred on ``(center_w, center_h)`` (the CSVs were made
  with ``scale = max(box w, box h) / 200``); HRNet crops ``1.25 * scale * 200`` around it. The AFLW
  files carry an extra ``box_size`` column after ``scale`` (HRNet's ``aflw.py`` reads points from
  column 5). COFW is distributed as ``.mat`` files there, not CSV. See :func:`read_hrnet_csv`.
- **iBUG .pts folder**: images with a ``.pts`` file of the same stem (:func:`read_pts_folder`).
- **AVS synthetic WFLW** (Qian et al., "Aggregation via Separation", ICCV 2019; generator
  github.com/TheSouthFrog/stylealign). See :func:`read_avs_list` and :func:`read_avs_root`.

AVS layout and coordinate frame, as determined from the generator (stylealign commit 9dc39a5):

- ``dataloader.py`` (``LandmarkLoader.__next__``) reads each source face with
  ``load_img(path, target_size=[256, 256, 3])`` (a PIL bilinear resize to 256x256) and multiplies that
  line's coordinates by ``2 / 3`` before drawing the landmark map. The list it trains and generates
  from is therefore in a **384x384 frame**: the pre-cropped WFLW faces the README calls "the original
  cropped WFLW dataset", not the full ``WFLW_images`` photographs.
- ``network.py`` (``V_UNet.log_result``) tiles a transfer grid of 256x256 cells: row ``n + 1`` takes its
  appearance (style) from batch image ``n``, column ``j + 1`` its landmarks from batch image ``j``.
- ``gen_annotation.py`` cuts cell (``n + 1``, ``j + 1``), resizes it to 384x384 (``cv2.INTER_CUBIC``),
  writes ``output/Image/<i*bs*bs + j*bs + n>.jpg`` and appends to ``output/label.txt`` the source line
  of image ``j`` with its last field (the source image path) cut off (``line[:line.rfind(' ')]``),
  followed by the generated file name.
- So the label coordinates are the source crop's, in its 384 frame, and the generated image is the
  256 cell scaled by 1.5 back to 384: the **same frame**. The two resizes cancel exactly, pixel-centre
  offsets included (PIL maps ``x -> (x + 0.5) / 1.5 - 0.5``, OpenCV ``u -> 1.5 (u + 0.5) - 0.5``), so
  the loader keeps the coordinates unchanged. It warns when points fall far outside 384x384, which
  would mean the list was made in full-photograph coordinates (then the generator itself drew wrong
  landmark maps and the set should not be used).
- Published as is, ``gen_annotation.py`` has a quoting typo (``'label.txt,'w'``) and would name the
  file ``<out_dir>/outputlabel.txt``; the layout read here is what the evident intent produces:
  ``<dir>/label.txt`` beside ``<dir>/Image/``. The generator has no style names (a "style" is another
  face of the same batch); styles are named by the directories of :func:`read_avs_root`.
- The detector scripts in ``landmark_detection/scripts/`` train on SAN-format lists converted from
  these (``san_all_98pt.txt``); that format is not read here.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runtime.errors import EdgemarkError
from runtime.metrics import WFLW_ATTRIBUTES

logger = logging.getLogger(__name__)


class AnnotationError(EdgemarkError):
    """A malformed or missing annotation file; the message names the file and line."""


@dataclass
class Sample:
    """One annotated face.

    Attributes:
        image: path of the image file.
        points: (K, 2) float32 pixel coordinates, pixel centres at integers as in the files.
        box: optional (x1, y1, x2, y2) face box from the annotation.
        attributes: optional flags (e.g. WFLW's pose/expression/... as 0/1).
        source: where the sample came from (``real`` or an AVS style name); calibration and
            training mixers read it.
        source_image: for a synthetic sample, the real image whose landmarks it carries (as named in
            the generator's source list), when known.
    """

    image: Path
    points: np.ndarray
    box: np.ndarray | None = None
    attributes: dict[str, int] = field(default_factory=dict)
    source: str = "real"
    source_image: Path | None = None


# Larger than any image: a coordinate beyond it (or NaN, inf) is a broken annotation, refused where it enters.
MAX_COORDINATE = 1e6


def read_pts(path: str | Path) -> np.ndarray:
    """Read an iBUG/300-W ``.pts`` file into (K, 2) float32.

    Format: ``version: 1``, ``n_points: K``, ``{``, K lines of ``x y``, ``}``.
    """
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: annotation file not found; expected an iBUG .pts file")
    lines = path.read_text(errors="replace").splitlines()
    count = None
    points: list[tuple[float, float]] = []
    inside = False
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("n_points"):
            try:
                count = int(line.split(":", 1)[1])
            except (IndexError, ValueError):
                raise AnnotationError(f"{path}:{number}: expected 'n_points: <int>', got '{line}'") from None
        elif line == "{":
            inside = True
        elif line == "}":
            inside = False
        elif inside:
            values = line.split()
            try:
                if len(values) != 2:
                    raise ValueError
                points.append((float(values[0]), float(values[1])))
            except ValueError:
                raise AnnotationError(f"{path}:{number}: expected two numbers 'x y', got '{line}'") from None
            _check_pixel_values(np.asarray(points[-1]), values, path, number, "coordinates")
    if count is None or len(points) != count:
        raise AnnotationError(
            f"{path}: n_points says {count} but {len(points)} points were read; fix or re-export the file"
        )
    return np.asarray(points, dtype=np.float32)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp")


def read_pts_folder(folder: str | Path) -> list[Sample]:
    """Every image in ``folder`` that has a ``.pts`` file of the same stem, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AnnotationError(f"{folder}: not a directory; expected a folder of images with .pts files beside them")
    samples = []
    for pts in sorted(folder.glob("*.pts")):
        images = [pts.with_suffix(s) for s in IMAGE_SUFFIXES if pts.with_suffix(s).is_file()]
        if not images:
            raise AnnotationError(f"{pts}: no image beside it (looked for {', '.join(IMAGE_SUFFIXES)})")
        samples.append(Sample(image=images[0], points=read_pts(pts)))
    if not samples:
        raise AnnotationError(f"{folder}: no .pts files found; expected images with iBUG .pts annotations")
    return samples


# ---------------------------------------------------------------------------------------------------
# Line-oriented lists (WFLW, AVS label.txt)

WFLW_POINTS = 98
# 196 coordinates + 4 box values + 6 attribute flags; the image path follows.
_WFLW_NUMBERS = 2 * WFLW_POINTS + 4 + len(WFLW_ATTRIBUTES)
WFLW_FIELDS = _WFLW_NUMBERS + 1
WFLW_LAYOUT_TEXT = "196 coordinates x0 y0 ... x97 y97, 4 box values, 6 attribute flags, image path"

# Side of the images the AVS generator writes (gen_annotation.py resizes each 256 cell to 384).
AVS_IMAGE_SIZE = 384


def _lines(path: Path, expected: str) -> list[tuple[int, str]]:
    """Non-blank lines of ``path`` with their 1-based numbers; a missing file names what was expected."""
    if not path.is_file():
        raise AnnotationError(f"{path}: annotation file not found; expected {expected}")
    text = path.read_text(errors="replace")
    return [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _numbers(values: list[str], path: Path, number: int, what: str) -> np.ndarray:
    """Parse ``values`` as float64; a bad or non-finite one raises naming the file, line and the value."""
    try:
        numbers = np.asarray([float(v) for v in values], dtype=np.float64)
    except ValueError:
        bad = next(v for v in values if not _is_number(v))
        raise AnnotationError(f"{path}:{number}: {what}: '{bad}' is not a number") from None
    _check_pixel_values(numbers, values, path, number, what)
    return numbers


def _check_pixel_values(numbers: np.ndarray, texts: list[str], path: Path, number: int, what: str) -> None:
    """Refuse NaN, infinite or absurd (|value| >= :data:`MAX_COORDINATE`) numbers, naming the first as written."""
    absurd = ~(np.abs(numbers) < MAX_COORDINATE)  # NaN fails the comparison too
    if absurd.any():
        raise AnnotationError(
            f"{path}:{number}: {what}: '{texts[int(np.argmax(absurd))]}' is not a finite pixel value (|value| < "
            f"{MAX_COORDINATE:.0e}); fix or remove this line"
        )


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _flags(values: np.ndarray, path: Path, number: int) -> dict[str, int]:
    """WFLW attribute flags as ints keyed by :data:`runtime.metrics.WFLW_ATTRIBUTES`."""
    if not np.all(values == np.round(values)):
        raise AnnotationError(
            f"{path}:{number}: attribute flags must be integers (0/1), got {values.tolist()}; "
            f"fields 201-206 are {', '.join(WFLW_ATTRIBUTES)}"
        )
    return {name: int(value) for name, value in zip(WFLW_ATTRIBUTES, values)}


@dataclass
class _ListEntry:
    """One parsed list line: points, optional box/attributes, and the last field (an image name)."""

    number: int
    points: np.ndarray
    box: np.ndarray | None
    attributes: dict[str, int]
    name: str


def _parse_list_line(line: str, path: Path, number: int, expected_fields: int | None) -> _ListEntry:
    """Parse ``<2K coordinates> [<4 box> <6 flags>] <image name>``.

    206 numbers are read as a WFLW line (98 points, box, flags); any other even count as points only.
    """
    fields = line.split()
    if expected_fields is not None and len(fields) != expected_fields:
        raise AnnotationError(
            f"{path}:{number}: expected {expected_fields} space-separated fields like the file's first line, "
            f"got {len(fields)}; fix or remove this line"
        )
    values = _numbers(fields[:-1], path, number, "coordinates and flags")
    if len(values) == _WFLW_NUMBERS:
        points = values[: 2 * WFLW_POINTS].reshape(-1, 2)
        box = values[2 * WFLW_POINTS : 2 * WFLW_POINTS + 4]
        if not (box[2] > box[0] and box[3] > box[1]):
            raise AnnotationError(
                f"{path}:{number}: face box {box.tolist()} has no area (x_max <= x_min or y_max <= y_min); "
                "fix or remove this line"
            )
        attributes = _flags(values[2 * WFLW_POINTS + 4 :], path, number)
    elif len(values) >= 2 and len(values) % 2 == 0:
        points, box, attributes = values.reshape(-1, 2), None, {}
    else:
        raise AnnotationError(
            f"{path}:{number}: expected x y pairs (or {WFLW_LAYOUT_TEXT}) then an image name, "
            f"got {len(values)} numbers; fix or remove this line"
        )
    return _ListEntry(number, points.astype(np.float32), box, attributes, fields[-1])


def _parse_list(path: Path, expected: str) -> list[_ListEntry]:
    """Every line of a space-separated list, all with the field count of the first line."""
    lines = _lines(path, expected)
    if not lines:
        raise AnnotationError(f"{path}: file is empty; expected {expected}")
    expected_fields = len(lines[0][1].split())
    return [_parse_list_line(line, path, number, expected_fields) for number, line in lines]


def read_wflw_list(list_file: str | Path, image_root: str | Path) -> list[Sample]:
    """Read a WFLW ``list_98pt_rect_attr_{train,test}.txt``.

    Args:
        list_file: the list; each line holds 207 space-separated fields: 196 coordinates
            ``x0 y0 ... x97 y97``, the box ``x_min y_min x_max y_max``, six 0/1 flags
            (pose, expression, illumination, make-up, occlusion, blur) and the image path.
        image_root: the folder image paths are relative to (``WFLW_images/``).

    Returns:
        One :class:`Sample` per line, with ``box`` and ``attributes`` (keys
        :data:`runtime.metrics.WFLW_ATTRIBUTES`) filled in and ``source="real"``.

    Raises:
        AnnotationError: missing file, or a line with the wrong field count or a non-numeric value
            (the message gives ``file:line``).
    """
    list_file, image_root = Path(list_file), Path(image_root)
    expected = f"a WFLW list with {WFLW_FIELDS} fields per line ({WFLW_LAYOUT_TEXT})"
    samples = []
    for number, line in _lines(list_file, expected):
        fields = line.split()
        if len(fields) != WFLW_FIELDS:
            raise AnnotationError(
                f"{list_file}:{number}: expected {WFLW_FIELDS} space-separated fields ({WFLW_LAYOUT_TEXT}), "
                f"got {len(fields)}; is this a WFLW list_98pt_rect_attr file?"
            )
        entry = _parse_list_line(line, list_file, number, WFLW_FIELDS)
        samples.append(
            Sample(image=image_root / entry.name, points=entry.points, box=entry.box, attributes=entry.attributes)
        )
    if not samples:
        raise AnnotationError(f"{list_file}: file is empty; expected {expected}")
    return samples


# ---------------------------------------------------------------------------------------------------
# HRNet CSV

HRNET_HEADER = "image_name,scale,center_w,center_h,original_0_x,original_0_y,..."
# HRNet's scale unit: the box side in pixels divided by 200 (lib/utils/transforms.py: scale * 200).
HRNET_SCALE_UNIT = 200.0


def hrnet_box(center_w: float, center_h: float, scale: float) -> np.ndarray:
    """(x1, y1, x2, y2) of the square HRNet's ``center``/``scale`` stand for: side ``200 * scale``."""
    half = HRNET_SCALE_UNIT * scale / 2.0
    return np.array([center_w - half, center_h - half, center_w + half, center_h + half], dtype=np.float64)


def read_hrnet_csv(csv_file: str | Path, image_root: str | Path) -> list[Sample]:
    """Read an HRNet-Facial-Landmark-Detection annotation CSV (WFLW, 300W, AFLW; any point count).

    Columns are found by header name: ``image_name``, ``scale``, ``center_w``, ``center_h`` (and
    ``box_size`` in the AFLW files); the landmark columns are all those after them, in ``x, y`` pairs.

    Args:
        csv_file: the CSV, header ``image_name,scale,center_w,center_h,original_0_x,original_0_y,...``.
        image_root: the folder ``image_name`` is relative to (HRNet's ``DATASET.ROOT``, e.g.
            ``data/wflw/images``).

    Returns:
        One :class:`Sample` per row. ``box`` is the equivalent face box of HRNet's centre/scale: the
        square of side ``200 * scale`` centred on ``(center_w, center_h)`` (see :func:`hrnet_box`).
        HRNet itself crops ``1.25`` times that square, i.e. ``CropRule(box="detector", scale=1.25)``.

    Raises:
        AnnotationError: missing file, a header without those columns, or a row with the wrong
            column count or a non-numeric value (the message gives ``file:line``).
    """
    csv_file, image_root = Path(csv_file), Path(image_root)
    if not csv_file.is_file():
        raise AnnotationError(f"{csv_file}: annotation file not found; expected an HRNet CSV with header {HRNET_HEADER}")
    samples = []
    with csv_file.open(newline="", errors="replace") as handle:
        reader = csv.reader(handle)
        header = [name.strip().lower() for name in next(reader, [])]
        required = ("image_name", "scale", "center_w", "center_h")
        missing = [name for name in required if name not in header]
        if missing:
            raise AnnotationError(
                f"{csv_file}:1: header lacks {', '.join(missing)}; expected an HRNet CSV header {HRNET_HEADER}"
            )
        meta = [header.index(name) for name in required[1:]] + ([header.index("box_size")] if "box_size" in header else [])
        first_point = max(meta) + 1
        point_columns = len(header) - first_point
        if point_columns < 2 or point_columns % 2:
            raise AnnotationError(
                f"{csv_file}:1: expected x, y column pairs after center_h, found {point_columns} columns; "
                f"expected an HRNet CSV header {HRNET_HEADER}"
            )
        image_column = header.index("image_name")
        scale_column, center_w_column, center_h_column = meta[:3]
        for row in reader:
            number = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise AnnotationError(
                    f"{csv_file}:{number}: expected {len(header)} comma-separated columns like the header, "
                    f"got {len(row)}; fix or remove this row"
                )
            scale, center_w, center_h = _numbers(
                [row[scale_column], row[center_w_column], row[center_h_column]], csv_file, number, "scale/center"
            )
            points = _numbers(row[first_point:], csv_file, number, "landmark coordinates").reshape(-1, 2)
            samples.append(
                Sample(
                    image=image_root / row[image_column].strip(),
                    points=points.astype(np.float32),
                    box=hrnet_box(center_w, center_h, scale),
                )
            )
    if not samples:
        raise AnnotationError(f"{csv_file}: no rows after the header; expected one face per row")
    return samples


# ---------------------------------------------------------------------------------------------------
# AVS synthetic WFLW

AVS_LABEL_FILE = "label.txt"
AVS_IMAGE_DIR = "Image"


def avs_label_line(sample: Sample, matrix: np.ndarray, name: str) -> str:
    """The AVS label line of ``sample`` in the frame ``matrix`` maps its image to (the 384 output):
    its points, then for a WFLW face (98 points with a box and flags) the box mapped the same way and
    the six attribute flags, then the image's file name, as the AVS generator writes them. The writer
    of ``train.style generate`` and ``calib avs``; :func:`read_avs_root` reads it back."""
    from runtime.crop import apply

    values = list(apply(matrix, sample.points).ravel())
    if len(sample.points) == WFLW_POINTS and sample.box is not None and sample.attributes:
        values += list(apply(matrix, np.asarray(sample.box, dtype=np.float64).reshape(2, 2)).ravel())
        values += [sample.attributes.get(attribute, 0) for attribute in WFLW_ATTRIBUTES]
    return " ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in values) + f" {name}"


def _point_key(points: np.ndarray) -> tuple[float, ...]:
    """Hashable landmark key; the generator copies coordinates verbatim, so rounding only absorbs text form."""
    return tuple(np.round(np.asarray(points, dtype=np.float64).ravel(), 3).tolist())


def _check_avs_frame(samples: list[Sample], label_file: Path) -> None:
    """Warn when landmarks leave the 384-pixel frame the generator works in (see the module docstring)."""
    if not samples:
        return
    points = np.stack([s.points for s in samples])  # (N, K, 2)
    # Faces in the crops reach slightly past the border; a quarter of the frame is far beyond that.
    margin = AVS_IMAGE_SIZE / 4
    outside = np.any((points < -margin) | (points > AVS_IMAGE_SIZE - 1 + margin), axis=(1, 2))
    if outside.any():
        logger.warning(
            "%s: %d of %d faces have landmarks far outside the %dx%d frame of AVS generated images; "
            "the label file looks like it was made from full-photograph coordinates, not the 384x384 crops",
            label_file,
            int(outside.sum()),
            len(samples),
            AVS_IMAGE_SIZE,
            AVS_IMAGE_SIZE,
        )


def read_avs_list(
    label_file: str | Path,
    image_root: str | Path | None = None,
    source_list: str | Path | None = None,
    source: str = "avs",
) -> list[Sample]:
    """Read an AVS generator ``label.txt`` (stylealign ``gen_annotation.py``): synthetic faces + landmarks.

    Each line is the generator's source line without its image path, then the generated file name:
    ``<x0 y0 ... x(K-1) y(K-1)> [<4 box values> <6 WFLW flags>] <n>.jpg``. 206 numbers are read as a
    WFLW line (98 points, box, attributes); any other even count as points only. Coordinates are used
    unchanged: they are in the 384x384 frame of both the source crops and the generated images (see
    the module docstring for how this was determined).

    Args:
        label_file: the ``label.txt``.
        image_root: folder the generated names are relative to; default ``<label_file dir>/Image``.
        source_list: optional: the list the generator was run on (its ``--label_file``: coordinates
            then the source image path, in the same 384 frame). Each synthetic line is paired with the
            source line that has the same landmarks, which supplies ``source_image`` and, when the
            label lines lack them, the box and attributes.
        source: the :attr:`Sample.source` to record (a style name, or ``avs``).

    Returns:
        One :class:`Sample` per line, ``source`` set, points in the generated image's pixels.

    Raises:
        AnnotationError: missing file, malformed line (``file:line``), or a line whose landmarks do
            not appear in ``source_list``.
    """
    label_file = Path(label_file)
    image_root = Path(image_root) if image_root is not None else label_file.parent / AVS_IMAGE_DIR
    expected = "an AVS label.txt: one line per generated image, landmark coordinates then its file name"
    entries = _parse_list(label_file, expected)
    sources: dict[tuple[float, ...], _ListEntry] = {}
    source_path = Path(source_list) if source_list is not None else None
    if source_path is not None:
        for entry in _parse_list(source_path, "the landmark list the AVS generator was run on"):
            sources.setdefault(_point_key(entry.points), entry)
    samples = []
    for entry in entries:
        sample = Sample(
            image=image_root / entry.name,
            points=entry.points,
            box=entry.box,
            attributes=entry.attributes,
            source=source,
        )
        if source_path is not None:
            match = sources.get(_point_key(entry.points))
            if match is None:
                raise AnnotationError(
                    f"{label_file}:{entry.number}: these landmarks appear in no line of {source_path}; "
                    "pass as source_list the list given to gen_annotation.py --label_file (same 384 frame)"
                )
            sample.source_image = Path(match.name)
            if sample.box is None:
                sample.box = match.box
            if not sample.attributes:
                sample.attributes = dict(match.attributes)
        samples.append(sample)
    _check_avs_frame(samples, label_file)
    return samples


def _avs_label_in(folder: Path) -> Path | None:
    """``label.txt`` of an AVS output folder (``<folder>/label.txt`` or ``<folder>/output/label.txt``)."""
    for candidate in (folder, folder / "output"):
        label = candidate / AVS_LABEL_FILE
        if label.is_file() and (candidate / AVS_IMAGE_DIR).is_dir():
            return label
    return None


def read_avs_root(root: str | Path, source_list: str | Path | None = None) -> list[Sample]:
    """Read a released/generated AVS set: one output folder, or one folder per style.

    Layouts accepted (``<dir>/output/label.txt`` + ``<dir>/output/Image/`` also works for each):

    - ``<root>/label.txt`` + ``<root>/Image/*.jpg``: one generator output; ``source="avs"``.
    - ``<root>/<style>/label.txt`` + ``<root>/<style>/Image/*.jpg`` for each style (sorted by name);
      ``source`` is the style folder's name.

    Args:
        root: the folder.
        source_list: passed to :func:`read_avs_list` for every label file.

    Raises:
        AnnotationError: the folder holds neither layout, or a label file is malformed.
    """
    root = Path(root)
    if not root.is_dir():
        raise AnnotationError(f"{root}: not a directory; expected an AVS folder with label.txt and Image/")
    label = _avs_label_in(root)
    if label is not None:
        return read_avs_list(label, source_list=source_list)
    samples = []
    styles = []
    for style_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        label = _avs_label_in(style_dir)
        if label is not None:
            samples += read_avs_list(label, source_list=source_list, source=style_dir.name)
            styles.append(style_dir.name)
    if not styles:
        raise AnnotationError(
            f"{root}: no AVS label files found; expected {root}/label.txt with {root}/Image/, "
            f"or {root}/<style>/label.txt with {root}/<style>/Image/ for each style"
        )
    logger.info("AVS %s: %d synthetic faces in %d styles (%s)", root, len(samples), len(styles), ", ".join(styles))
    return samples


# ---------------------------------------------------------------------------------------------------
# Dispatch

DATASET_KINDS = (
    "a WFLW list_98pt_rect_attr_*.txt",
    "an HRNet face_landmarks_*.csv",
    "a folder of images with iBUG .pts files",
    "an AVS folder (label.txt + Image/, or one such folder per style)",
)


def _default_wflw_root(list_file: Path) -> Path:
    """``WFLW_images`` beside the list or beside one of its parent folders (WFLW's own layout), else the list's folder."""
    for folder in list(list_file.parents)[:4]:
        candidate = folder / "WFLW_images"
        if candidate.is_dir():
            return candidate
    return list_file.parent


def _default_csv_root(csv_file: Path) -> Path:
    """``images/`` beside the CSV (HRNet's ``data/<set>/images``), else the CSV's folder."""
    candidate = csv_file.parent / "images"
    return candidate if candidate.is_dir() else csv_file.parent


def read_dataset(spec: str | Path, image_root: str | Path | None = None) -> list[Sample]:
    """Read any supported annotation set, chosen by what ``spec`` is.

    - ``*.csv``: :func:`read_hrnet_csv` (image root default: ``images/`` beside it, else its folder).
    - ``label.txt`` with ``Image/`` beside it: :func:`read_avs_list`.
    - other ``*.txt``: :func:`read_wflw_list` (image root default: a ``WFLW_images`` folder beside the
      list or one of its parents, else the list's folder).
    - a folder with ``.pts`` files: :func:`read_pts_folder`; a folder with AVS label files:
      :func:`read_avs_root`.

    Args:
        spec: file or folder.
        image_root: where list/CSV image paths are relative to; ``None`` for the defaults above.

    Raises:
        AnnotationError: ``spec`` does not exist or is none of the supported kinds.
    """
    path = Path(spec)
    if not path.exists():
        raise AnnotationError(f"{path}: not found; expected {', '.join(DATASET_KINDS)}")
    if path.is_dir():
        if any(path.glob("*.pts")):
            return read_pts_folder(path)
        if _avs_label_in(path) is not None or any(_avs_label_in(p) for p in path.iterdir() if p.is_dir()):
            return read_avs_root(path)
        raise AnnotationError(f"{path}: folder has no .pts files and no AVS label.txt; expected {', '.join(DATASET_KINDS)}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_hrnet_csv(path, image_root if image_root is not None else _default_csv_root(path))
    if suffix == ".txt":
        if path.name == AVS_LABEL_FILE and (path.parent / AVS_IMAGE_DIR).is_dir():
            return read_avs_list(path, image_root)
        return read_wflw_list(path, image_root if image_root is not None else _default_wflw_root(path))
    raise AnnotationError(f"{path}: unsupported annotation file type '{suffix}'; expected {', '.join(DATASET_KINDS)}")
