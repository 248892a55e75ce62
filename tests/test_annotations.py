"""Annotation readers on fixtures written in the upstream formats (WFLW list, HRNet CSV, AVS label.txt)."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from runtime.annotations import (
    AVS_IMAGE_SIZE,
    AnnotationError,
    read_avs_list,
    read_avs_root,
    read_dataset,
    read_hrnet_csv,
    read_wflw_list,
)
from runtime.errors import EdgemarkError
from runtime.metrics import WFLW_ATTRIBUTES

FIXTURES = Path(__file__).resolve().parent / "fixtures"
WFLW_LIST = FIXTURES / "wflw" / "list_98pt_rect_attr_train.txt"
WFLW_IMAGES = FIXTURES / "wflw" / "WFLW_images"
HRNET = FIXTURES / "hrnet"
AVS = FIXTURES / "avs"


def _fields(path: Path, line: int) -> list[str]:
    return path.read_text().splitlines()[line - 1].split()


# --- WFLW list -------------------------------------------------------------------------------------


def test_wflw_list_reads_points_box_attributes_and_image():
    samples = read_wflw_list(WFLW_LIST, WFLW_IMAGES)
    assert len(samples) == 3
    fields = _fields(WFLW_LIST, 2)
    second = samples[1]
    assert second.points.shape == (98, 2) and second.points.dtype == np.float32
    np.testing.assert_allclose(second.points.ravel(), np.array(fields[:196], dtype=float), atol=1e-4)
    np.testing.assert_allclose(second.box, np.array(fields[196:200], dtype=float))
    assert tuple(second.attributes) == WFLW_ATTRIBUTES
    assert [second.attributes[name] for name in WFLW_ATTRIBUTES] == [int(v) for v in fields[200:206]]
    assert second.image == WFLW_IMAGES / fields[206] and second.image.is_file()
    assert second.source == "real"
    # Two faces of one photograph share the image.
    assert samples[0].image == samples[1].image != samples[2].image


def test_wflw_list_wrong_field_count_names_file_and_line():
    with pytest.raises(AnnotationError, match=r"list_bad_field_count\.txt:2: expected 207 .* got 206"):
        read_wflw_list(FIXTURES / "wflw" / "list_bad_field_count.txt", WFLW_IMAGES)


def test_wflw_list_non_numeric_value_names_file_line_and_value(tmp_path):
    lines = WFLW_LIST.read_text().splitlines()
    fields = lines[2].split()
    fields[7] = "3.5e"
    lines[2] = " ".join(fields)
    bad = tmp_path / "list.txt"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(AnnotationError, match=r"list\.txt:3: .*'3\.5e' is not a number"):
        read_wflw_list(bad, WFLW_IMAGES)


def test_missing_files_raise_a_clear_annotation_error(tmp_path):
    for reader in (read_wflw_list, read_hrnet_csv, read_avs_list):
        with pytest.raises(AnnotationError, match="not found"):
            reader(tmp_path / "absent.txt", tmp_path)
    assert issubclass(AnnotationError, EdgemarkError)


# --- HRNet CSV -------------------------------------------------------------------------------------


def test_hrnet_csv_matches_the_wflw_list_and_converts_centre_scale_to_a_box():
    csv_file = HRNET / "face_landmarks_wflw_test.csv"
    samples = read_hrnet_csv(csv_file, WFLW_IMAGES)
    reference = read_wflw_list(WFLW_LIST, WFLW_IMAGES)
    assert len(samples) == 2
    row = csv_file.read_text().splitlines()[1].split(",")
    scale, center_w, center_h = (float(v) for v in row[1:4])
    for sample, truth in zip(samples, reference):
        assert sample.image == truth.image
        np.testing.assert_allclose(sample.points, truth.points, atol=1e-4)
    box = samples[0].box
    # The equivalent box: a square of side 200 * scale centred on (center_w, center_h).
    np.testing.assert_allclose(box[2:] - box[:2], [200 * scale, 200 * scale])
    np.testing.assert_allclose((box[:2] + box[2:]) / 2, [center_w, center_h])


def test_hrnet_aflw_csv_with_box_size_column():
    samples = read_hrnet_csv(HRNET / "face_landmarks_aflw_test.csv", WFLW_IMAGES)
    assert len(samples) == 1 and samples[0].points.shape == (19, 2)
    row = (HRNET / "face_landmarks_aflw_test.csv").read_text().splitlines()[1].split(",")
    np.testing.assert_allclose(samples[0].points[0], [float(row[5]), float(row[6])], atol=1e-4)
    np.testing.assert_allclose((samples[0].box[:2] + samples[0].box[2:]) / 2, [48.0, 44.0])


def test_hrnet_csv_non_numeric_value_names_file_and_line():
    with pytest.raises(AnnotationError, match=r"face_landmarks_wflw_bad\.csv:3: .*'n/a' is not a number"):
        read_hrnet_csv(HRNET / "face_landmarks_wflw_bad.csv", WFLW_IMAGES)


def test_hrnet_csv_wrong_column_count_and_bad_header(tmp_path):
    lines = (HRNET / "face_landmarks_wflw_test.csv").read_text().splitlines()
    short = tmp_path / "short.csv"
    short.write_text("\n".join([lines[0], lines[1], lines[2].rsplit(",", 1)[0]]) + "\n")
    with pytest.raises(AnnotationError, match=r"short\.csv:3: expected 200 comma-separated columns .* got 199"):
        read_hrnet_csv(short, WFLW_IMAGES)
    headerless = tmp_path / "headerless.csv"
    headerless.write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(AnnotationError, match=r"headerless\.csv:1: header lacks"):
        read_hrnet_csv(headerless, WFLW_IMAGES)


# --- AVS -------------------------------------------------------------------------------------------


def test_avs_list_keeps_generated_frame_coordinates_and_source_attributes():
    label = AVS / "style_a" / "label.txt"
    samples = read_avs_list(label)
    assert [s.image for s in samples] == [AVS / "style_a" / "Image" / f"{i}.jpg" for i in range(3)]
    assert all(s.image.is_file() and s.source == "avs" for s in samples)
    fields = _fields(label, 1)
    # The label coordinates are already in the 384x384 generated image's pixels: unchanged.
    np.testing.assert_allclose(samples[0].points.ravel(), np.array(fields[:196], dtype=float), atol=1e-4)
    assert np.all((samples[0].points >= 0) & (samples[0].points < AVS_IMAGE_SIZE))
    assert [samples[0].attributes[name] for name in WFLW_ATTRIBUTES] == [int(v) for v in fields[200:206]]


def test_avs_list_pairs_with_source_list_for_image_and_attributes():
    source_lines = (AVS / "source_list.txt").read_text().splitlines()
    samples = read_avs_list(AVS / "style_b" / "label.txt", source_list=AVS / "source_list.txt", source="style_b")
    # style_b's images 0 and 1 carry sources 2 and 0; its lines have coordinates only.
    for sample, source_index in zip(samples, [2, 0]):
        fields = source_lines[source_index].split()
        assert sample.source_image == Path(fields[-1])
        assert [sample.attributes[name] for name in WFLW_ATTRIBUTES] == [int(v) for v in fields[200:206]]
        np.testing.assert_allclose(sample.box, np.array(fields[196:200], dtype=float))
        assert sample.source == "style_b"


def test_avs_list_unmatched_source_names_the_line(tmp_path):
    source = tmp_path / "source.txt"
    source.write_text((AVS / "source_list.txt").read_text().splitlines()[0] + "\n")
    with pytest.raises(AnnotationError, match=r"label\.txt:1: these landmarks appear in no line"):
        read_avs_list(AVS / "style_b" / "label.txt", source_list=source)


def test_avs_list_malformed_line_names_file_and_line():
    with pytest.raises(AnnotationError, match=r"label_bad\.txt:2: .*'12\.5x' is not a number"):
        read_avs_list(AVS / "label_bad.txt", AVS / "style_b" / "Image")


def test_avs_list_warns_when_points_leave_the_generated_frame(tmp_path, caplog):
    fields = _fields(AVS / "style_b" / "label.txt", 1)
    fields[0] = "1500.0"  # full-photograph coordinates would look like this
    label = tmp_path / "label.txt"
    label.write_text(" ".join(fields) + "\n")
    with caplog.at_level(logging.WARNING, logger="runtime.annotations"):
        read_avs_list(label)
    assert "full-photograph coordinates" in caplog.text


def test_avs_root_reads_one_folder_per_style():
    samples = read_avs_root(AVS)
    assert [s.source for s in samples] == ["style_a"] * 3 + ["style_b"] * 2
    assert all(s.points.shape == (98, 2) for s in samples)


def test_avs_root_single_output_folder(tmp_path):
    shutil.copytree(AVS / "style_b", tmp_path / "output")
    samples = read_avs_root(tmp_path)
    assert len(samples) == 2 and {s.source for s in samples} == {"avs"}
    assert samples[0].image == tmp_path / "output" / "Image" / "0.jpg"


def test_avs_root_without_labels_says_what_it_expected(tmp_path):
    with pytest.raises(AnnotationError, match="no AVS label files found"):
        read_avs_root(tmp_path)


# --- dispatch --------------------------------------------------------------------------------------


def test_read_dataset_dispatches_by_file_type(faces68_dir):
    wflw = read_dataset(WFLW_LIST)  # image root found: WFLW_images beside the list
    assert len(wflw) == 3 and wflw[0].image.is_file()
    csv_samples = read_dataset(HRNET / "face_landmarks_wflw_test.csv", WFLW_IMAGES)
    assert len(csv_samples) == 2 and csv_samples[0].image.is_file()
    assert len(read_dataset(AVS)) == 5
    assert len(read_dataset(AVS / "style_a" / "label.txt")) == 3
    faces = read_dataset(faces68_dir)
    assert len(faces) == 12 and faces[0].points.shape == (68, 2)


def test_read_dataset_rejects_unknown_inputs(tmp_path):
    with pytest.raises(AnnotationError, match="not found"):
        read_dataset(tmp_path / "nothing.txt")
    (tmp_path / "data.json").write_text("{}")
    with pytest.raises(AnnotationError, match="unsupported annotation file type '.json'"):
        read_dataset(tmp_path / "data.json")
    with pytest.raises(AnnotationError, match="no .pts files and no AVS label.txt"):
        read_dataset(tmp_path)
