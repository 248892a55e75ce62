"""calib study: the K-fold calibration study (style proxies vs real faces) on real faces and PFLD.

The default tests run a tiny configuration (4 faces of faces68, 2 folds, ONNX Runtime MinMax, 16
samples per set) and check the protocol rather than the numbers: every face evaluated once, by
models calibrated without it; the real control repeated to the proxies' count; failures as rows;
the report's tables and command. The full study (12 faces, every quantizer) is ``-m slow``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from calib import __main__ as calib_cli
from calib import study as study_module
from calib.study import (
    QUANTIZERS,
    Quantizer,
    StudyConfig,
    assign_folds,
    paired_summary,
    run_study,
    sign_flip_p_value,
)
from export.calibration import read_calibration_array
from runtime.annotations import Sample, read_pts_folder
from runtime.errors import EdgemarkError

# Two 2-D annotated faces and two AFLW2000 faces (3-D-fit jaws): one of each kind per fold.
TINY_FACES = ("einstein", "takeo", "aflw2000_image00050", "aflw2000_image00251")
TINY_FLAGS = ["--folds", "2", "--quantizers", "ort-minmax", "--sources", "proxies,real", "--size", "16"]


def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def tiny_faces(faces68_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_faces")
    for name in TINY_FACES:
        for path in faces68_dir.glob(f"{name}.*"):
            (folder / path.name).symlink_to(path)
    return folder


@pytest.fixture(scope="module")
def tiny_study(pfld_artifact, tiny_faces, face_video, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("study")
    argv = ["study", "--model", str(pfld_artifact), "--faces", str(tiny_faces), "--out", str(out), *TINY_FLAGS]
    argv += ["--video", str(face_video), "--video-every", "25"]  # 11 frames join the label-free set
    assert calib_cli.main([*argv, "--keep-artifacts"]) == 0
    return out, json.loads((out / "study.json").read_text())


# --------------------------------------------------------------------------------------------------
# protocol


def test_every_face_is_evaluated_once_by_models_calibrated_without_it(tiny_study):
    out, study = tiny_study
    assert [r["status"] for r in study["rows"]] == ["ok"] * 4  # 2 folds x 2 sources x 1 quantizer
    for source in ("proxies", "real"):
        faces = [f["image"] for r in study["rows"] if r["source"] == source for f in r["faces"]]
        assert sorted(faces) == sorted(f["image"] for f in study["fp32"]["faces"])
    for fold in study["folds"]:
        evaluated = set(fold["evaluation_faces"])
        # Stratified: one face of each annotation kind per fold.
        assert {name.startswith("aflw2000_") for name in evaluated} == {True, False}
        for source in ("proxies", "real"):
            calibration = read_calibration_array(out / "work" / f"fold{fold['fold']}" / f"{source}_seed0.npz")
            used = {Path(sample["image"]).name for sample in calibration.manifest["samples"]}
            assert used and not used & evaluated
            assert calibration.manifest["excluded"] == 0  # training folder holds none of them to begin with


def test_real_control_is_the_training_faces_repeated_to_the_same_count(tiny_study):
    out, _ = tiny_study
    proxies = read_calibration_array(out / "work" / "fold0" / "proxies_seed0.npz")
    real = read_calibration_array(out / "work" / "fold0" / "real_seed0.npz")
    assert len(real) == len(proxies) == 16
    assert real.manifest["repeated"]["unique_samples"] == 2
    unique = np.unique(real.inputs.reshape(len(real), -1), axis=0)
    assert len(unique) == 2  # the two training faces, nothing augmented
    assert set(proxies.manifest["styles"]) - {"real"}  # the proxies really are styled


def test_report_tables_and_command(tiny_study, pfld_artifact):
    out, study = tiny_study
    markdown = (out / "study.md").read_text()
    assert study["command"].startswith("python -m calib study --model")
    assert study["command"] in markdown
    assert "| ort-minmax | proxies |" in markdown and "| ort-minmax | real |" in markdown
    assert "| ort-minmax | proxies − real |" in markdown
    assert study["machine"]["libraries"]["onnxruntime"]  # runtime.machine
    paired = study["paired"][0]
    assert (paired["first"], paired["second"], paired["inter_ocular"]["faces"]) == ("proxies", "real", 4)
    # The paired difference is the difference of the two rows' changes, face by face.
    by = {(r["source"], f["image"]): f["change_inter_ocular"] for r in study["rows"] for f in r["faces"]}
    for face in paired["per_face"]:
        assert face["inter_ocular"] == pytest.approx(by["proxies", face["image"]] - by["real", face["image"]])
    for entry in study["table"]:
        assert entry["faces"] == 4 and set(entry["per_fold_inter_ocular"]) == {"0", "1"}


def test_label_free_error_beside_the_nme_change(tiny_study):
    """Each INT8 model against FP32 without labels: its fold's faces, 9 style variants of each, 11 video frames."""
    out, study = tiny_study
    for row in study["rows"]:
        free = row["label_free"]
        faces = [name for name, kind in zip(free["inputs"], free["kinds"]) if kind == "face"]
        assert sorted(faces) == sorted(face["image"] for face in row["faces"])  # the evaluation fold's faces
        assert free["kinds"].count("style") == 9 * len(faces) and free["kinds"].count("frame") == 11
        assert f"face_closeup.mp4#25 (fold {row['fold']})" in free["inputs"]
        assert f"{faces[0]}@low_light" in free["inputs"]
    for entry in study["table"]:
        pooled = entry["label_free"]
        assert pooled["inter_ocular"]["inputs"] == 4 + 36 + 22  # folds pooled: every face once, frames per fold
        assert {kind: pooled["by_kind"][kind]["inputs"] for kind in ("face", "style", "frame")} == {
            "face": 4, "style": 36, "frame": 22,
        }  # fmt: skip
        io = pooled["inter_ocular"]
        assert 0 < io["mean"] <= io["max"] and io["p95"] <= io["max"] and io["non_finite"] == 0
        assert io["worst"][0]["nme"] == io["max"]
    markdown = (out / "study.md").read_text()
    assert "label-free io % mean / p95 / max" in markdown
    assert "## Label-free error: INT8 points against FP32 points, no labels" in markdown
    worst = study["table"][0]["label_free"]["inter_ocular"]["worst"][0]["input"]
    assert worst in markdown


def test_a_failing_quantizer_is_a_row_and_work_files_go(pfld_artifact, tiny_faces, tmp_path, monkeypatch):
    """A quantizer that fails becomes rows with the reason; the study and its report still appear."""

    def broken(model: Path, calibration: Path, output: Path) -> None:
        raise EdgemarkError("simulated toolkit failure")

    monkeypatch.setitem(QUANTIZERS, "broken", Quantizer("broken", "onnxruntime", "always fails", ".onnx", broken))
    config = StudyConfig(
        faces=tiny_faces,
        output=tmp_path,
        model=pfld_artifact,
        sources=("real",),
        quantizers=("broken",),
        size=4,
    )
    study = run_study(config)
    assert not (tmp_path / "work").exists()
    assert [r["status"] for r in study["rows"]] == ["failed", "failed"]
    assert study["rows"][0]["reason"] == "simulated toolkit failure"
    assert study["table"][0]["status"] == "failed"
    assert "failed: fold 0: simulated toolkit failure" in (tmp_path / "study.md").read_text()


# --------------------------------------------------------------------------------------------------
# folds and statistics


def test_folds_are_stratified_balanced_and_seeded():
    samples = [Sample(image=Path(f"aflw2000_{i}.jpg"), points=np.zeros((68, 2))) for i in range(8)]
    samples += [Sample(image=Path(f"face{i}.jpg"), points=np.zeros((68, 2))) for i in range(4)]
    folds = assign_folds(samples, 2, seed=0)
    assert folds == assign_folds(samples, 2, seed=0)
    assert folds != assign_folds(samples, 2, seed=1)
    for fold in (0, 1):
        members = [s for s, f in zip(samples, folds) if f == fold]
        assert len(members) == 6
        assert sum(Path(s.image).name.startswith("aflw2000_") for s in members) == 4
    three = assign_folds(samples, 3, seed=0)
    assert sorted(np.bincount(three)) == [4, 4, 4]


def test_sign_flip_test_and_paired_summary():
    # All four differences negative: only 2 of the 16 sign patterns are as extreme.
    assert sign_flip_p_value(np.array([-1.0, -2.0, -1.5, -0.5])) == pytest.approx(2 / 16)
    assert sign_flip_p_value(np.array([1.0, -1.0, 1.0, -1.0])) == pytest.approx(1.0)
    assert sign_flip_p_value(np.array([0.3])) is None
    summary = paired_summary(np.array([-1.0, -2.0, 0.5, -0.5]))
    assert summary["mean"] == pytest.approx(-0.75)
    assert (summary["first_lower"], summary["first_higher"], summary["faces"]) == (3, 1, 4)
    assert summary["se"] == pytest.approx(summary["sd"] / 2)


# --------------------------------------------------------------------------------------------------
# a train/ checkpoint, and bad input


def test_checkpoint_is_exported_and_memorised_faces_are_flagged(tiny_faces, tmp_path):
    torch = pytest.importorskip("torch")
    from runtime.crop import CropRule, Normalisation
    from train.checkpoint import save_checkpoint
    from train.models import build_model

    torch.manual_seed(0)
    model = build_model("tiny_heatmap", 68, input_size=64)
    checkpoint = save_checkpoint(
        tmp_path / "tiny.pt",
        {
            "model_name": "tiny_heatmap",
            "num_points": 68,
            "layout": "ibug68",
            "input_size": 64,
            "heatmap_stride": 4,
            "sigma": 1.5,
            "decode": "centroid",
            "normalisation": Normalisation().to_dict(),
            "crop_rule": CropRule().to_dict(),
            "model": model.state_dict(),
            "epoch": 1,
            "config": {"train_data": str(tiny_faces)},
        },
    )
    out = tmp_path / "study"
    argv = ["study", "--checkpoint", str(checkpoint), "--faces", str(tiny_faces), "--out", str(out)]
    assert (
        calib_cli.main([*argv, "--folds", "2", "--quantizers", "ort-minmax", "--sources", "real", "--size", "4"]) == 0
    )
    study = json.loads((out / "study.json").read_text())
    assert Path(study["model"]["path"]) == out / "tiny.onnx" and (out / "tiny.onnx").is_file()
    assert study["model"]["output_kind"] == "heatmap"
    assert "memorised" in study["memorised"] and "4 of these 4 faces" in study["memorised"]
    assert "memorised" in (out / "study.md").read_text()
    assert [r["status"] for r in study["rows"]] == ["ok", "ok"]


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--folds", "1"], "--folds must be at least 2"),
        (["--quantizers", "ort-minmux"], "Did you mean 'ort-minmax'"),
        (["--sources", "synthetic"], "Unknown calibration source 'synthetic'"),
        (["--proxy-seeds", "0,x"], "--proxy-seeds"),
    ],
)
def test_bad_flags_are_one_line(pfld_artifact, tiny_faces, tmp_path, capsys, flags, expected):
    argv = ["study", "--model", str(pfld_artifact), "--faces", str(tiny_faces), "--out", str(tmp_path / "s"), *flags]
    assert calib_cli.main(argv) == 2
    assert expected in _one_error(capsys)
    assert not (tmp_path / "s").exists()


def test_too_few_faces_for_the_folds(pfld_artifact, tiny_faces, tmp_path, capsys):
    argv = ["study", "--model", str(pfld_artifact), "--faces", str(tiny_faces), "--out", str(tmp_path / "s")]
    assert calib_cli.main([*argv, "--folds", "5"]) == 1
    assert "4 faces cannot make 5 folds" in _one_error(capsys)


# --------------------------------------------------------------------------------------------------
# the full study


@pytest.mark.slow
def test_full_study_on_pfld(pfld_artifact, faces68_dir, tmp_path, capsys):
    """Every quantizer, every source, 12 faces, 2 folds: no failures, and entropy within its NME budget."""
    out = tmp_path / "study"
    argv = ["study", "--model", str(pfld_artifact), "--faces", str(faces68_dir), "--out", str(out)]
    assert calib_cli.main(argv) == 0
    study = json.loads((out / "study.json").read_text())
    with capsys.disabled():
        print("\n" + (out / "study.md").read_text())
    assert not [r for r in study["rows"] if r["status"] != "ok"]
    assert len(study["rows"]) == 2 * len(study_module.SOURCES) * len(QUANTIZERS)
    for entry in study["table"]:
        assert entry["faces"] == len(read_pts_folder(faces68_dir))
        if entry["quantizer"] == "ort-entropy":
            assert entry["mean_change_box"] < 1.5


def test_refuses_to_delete_a_work_folder_it_did_not_make(pfld_artifact, tiny_faces, tmp_path, capsys):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "notes.txt").write_text("mine")
    argv = ["study", "--model", str(pfld_artifact), "--faces", str(tiny_faces), "--out", str(tmp_path)]
    assert calib_cli.main(argv) == 1
    assert "not made by calib study" in _one_error(capsys)
    assert (tmp_path / "work" / "notes.txt").read_text() == "mine"
