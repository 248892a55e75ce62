"""Reproduction recipes (train/configs/): every one loads, runs a few steps on real faces, and its
checkpoint's evaluation prints the WFLW subset table beside the recipe's expected numbers.

The four real WFLW faces in ../shared/data/faces98 are written out as a WFLW attribute list (so the
subset table appears) and as an AVS-style folder (label.txt + Image/) for the AVS recipes: the real
AVS release is not here, so that folder holds the same real faces in the generator's format.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from runtime.annotations import read_dataset  # noqa: E402
from runtime.errors import UsageError  # noqa: E402
from train.__main__ import build_parser  # noqa: E402
from train.__main__ import main as train_main  # noqa: E402
from train.config import TrainConfig, allowed_values, config_from_args, field_help  # noqa: E402
from train.eval import main as eval_main  # noqa: E402
from train.recipes import RECIPES_DIR, comparison_table, list_recipes, load_recipe  # noqa: E402

RECIPES = ["wflw_edge", "wflw_edge_avs", "wflw_hrnetv2_w18", "wflw_hrnetv2_w18_avs", "wflw_resnet18",
           "wflw_resnet18_avs"]
# The papers' WFLW test NME (inter-ocular %); None: no published number for that row.
EXPECTED_FULLSET = {"wflw_resnet18": 6.09, "wflw_resnet18_avs": 5.25, "wflw_hrnetv2_w18": 4.60,
                    "wflw_hrnetv2_w18_avs": None, "wflw_edge": None, "wflw_edge_avs": None}
# Smallest legal input per model, so a step takes well under a second on two cores.
SMOKE_INPUT = {"resnet18_deconv": 64, "hrnetv2_w18": 64, "mobilenetv3_edge": 112}
# One or two WFLW attribute flags per face (pose, expression, illumination, make_up, occlusion, blur),
# so every subset row of the table has a face.
ATTRIBUTES = [(1, 0, 0, 0, 0, 1), (0, 1, 0, 1, 0, 0), (0, 0, 1, 0, 1, 0), (0, 0, 0, 0, 0, 0)]


def _line(points: np.ndarray, attributes, name: str) -> str:
    low, high = points.min(axis=0), points.max(axis=0)
    numbers = [f"{value:.3f}" for value in points.reshape(-1)] + [f"{value:.0f}" for value in (*low, *high)]
    return " ".join(numbers + [str(flag) for flag in attributes] + [name])


@pytest.fixture(scope="module")
def wflw_faces(faces98_dir, tmp_path_factory) -> tuple[Path, Path]:
    """(WFLW list file with attributes whose image paths are relative to faces98, AVS-style folder)."""
    samples = read_dataset(str(faces98_dir))
    assert len(samples) == 4
    root = tmp_path_factory.mktemp("wflw_faces")
    list_file = root / "list_98pt_rect_attr_test.txt"
    list_file.write_text("\n".join(
        _line(np.asarray(sample.points), flags, Path(sample.image).name) for sample, flags in zip(samples, ATTRIBUTES)
    ) + "\n")
    avs = root / "avs"
    (avs / "Image").mkdir(parents=True)
    lines = []
    for index, (sample, flags) in enumerate(zip(samples, ATTRIBUTES)):
        assert cv2.imwrite(str(avs / "Image" / f"{index}.jpg"), cv2.imread(str(sample.image)))
        lines.append(_line(np.asarray(sample.points), flags, f"{index}.jpg"))
    (avs / "label.txt").write_text("\n".join(lines) + "\n")
    return list_file, avs


def _recipe_config(name: str, *flags: str) -> TrainConfig:
    return config_from_args(build_parser().parse_args(["--config", name, *flags]))


def test_every_recipe_file_is_listed_and_loads():
    assert list_recipes() == RECIPES
    for name in RECIPES:
        config = _recipe_config(name)
        assert config.recipe["name"] == name and config.recipe["overridden"] == []
        assert config.recipe["expected_nme"]["Fullset"] == EXPECTED_FULLSET[name]
        assert config.model in allowed_values()["model"] and config.layout == "wflw98"
        assert config.train_data.endswith("list_98pt_rect_attr_train.txt")
        assert bool(config.avs_root) == name.endswith("_avs")
        # The recipe file itself and the name resolve to the same record.
        assert load_recipe(RECIPES_DIR / f"{name}.yaml") == load_recipe(name)
    hrnet = _recipe_config("wflw_hrnetv2_w18")
    # HRNet's own WFLW settings (experiments/wflw/face_alignment_wflw_hrnet_w18.yaml).
    assert (hrnet.input_size, hrnet.sigma, hrnet.optimizer, hrnet.lr, hrnet.schedule, hrnet.milestones,
            hrnet.epochs, hrnet.batch_size, hrnet.loss) == (256, 1.5, "adam", 1e-4, "step", (30, 50), 60, 16, "mse")
    assert hrnet.recipe["expected_nme"] == {"Fullset": 4.60, "Pose": 7.86, "Expression": 4.78, "Illumination": 4.57,
                                            "Make-up": 4.26, "Occlusion": 5.42, "Blur": 5.36}


def test_flags_override_a_recipe_and_are_recorded():
    config = _recipe_config("wflw_resnet18", "--epochs", "3", "--train-data", "mine.txt", "--device", "cpu")
    assert config.epochs == 3 and config.train_data == "mine.txt"
    # Data paths and machine settings are not departures from the recipe; the schedule is.
    assert config.recipe["overridden"] == ["epochs"]


def test_unknown_recipe_or_recipe_key_is_one_clear_line(tmp_path):
    with pytest.raises(UsageError, match="Did you mean 'wflw_resnet18'"):
        _recipe_config("wflw_resnet19")
    bad = tmp_path / "bad.yaml"
    bad.write_text("recipe:\n  name: mine\n  expected_nme:\n    Fullset: 5.0\n    Posture: 8.0\n")
    with pytest.raises(UsageError, match="unknown WFLW subset 'Posture'.*Did you mean 'Pose'"):
        _recipe_config(str(bad))


def test_comparison_table_without_attributes_has_only_the_fullset_row():
    text = comparison_table({"nme": 5.5, "count": 2500}, load_recipe("wflw_hrnetv2_w18"))
    assert "| Fullset | 2500 | 5.50 | 4.60 | +0.90 |" in text and "Pose" not in text
    assert "has no published number" in comparison_table({"nme": 5.5, "count": 2500}, load_recipe("wflw_edge"))


@pytest.mark.parametrize("name", [
    # The default suite runs the edge rows and one ResNet-18 row (AVS, a paper number); the rest take
    # 5-10 s each on two shared cores (a ResNet-18 checkpoint with Adam state is 185 MB).
    "wflw_edge", "wflw_edge_avs", "wflw_resnet18_avs",
    pytest.param("wflw_resnet18", marks=pytest.mark.slow),
    pytest.param("wflw_hrnetv2_w18", marks=pytest.mark.slow),
    pytest.param("wflw_hrnetv2_w18_avs", marks=pytest.mark.slow),
])
def test_recipe_trains_a_few_steps_and_eval_prints_expected_numbers(name, wflw_faces, faces98_dir, tmp_path, capsys):
    list_file, avs = wflw_faces
    model = _recipe_config(name).model
    out_dir = tmp_path / name
    data = ["--train-data", str(list_file), "--val-data", str(list_file), "--image-root", str(faces98_dir)]
    if name.endswith("_avs"):
        data += ["--avs-root", str(avs)]
    assert train_main([
        "--config", name, *data, "--input-size", str(SMOKE_INPUT[model]), "--epochs", "1", "--batch-size", "2",
        "--max-steps-per-epoch", "2", "--workers", "0", "--threads", "1", "--device", "cpu", "--tensorboard", "false",
        "--out-dir", str(out_dir),
    ]) == 0
    summary = json.loads((out_dir / "summary.json").read_text())
    assert np.isfinite(summary["final_val"]["nme"])
    capsys.readouterr()
    scores = tmp_path / "scores.json"
    assert eval_main([str(out_dir / "last.pt"), "--data", str(list_file), "--image-root", str(faces98_dir),
                      "--json", str(scores)]) == 0
    printed = capsys.readouterr().out
    assert f"Recipe {name}" in printed and "| subset | images | NME % | expected NME % |" in printed
    expected = EXPECTED_FULLSET[name]
    assert (f"| {expected:.2f} |" in printed) if expected is not None else "none given" in printed
    assert "| Pose | 1 |" in printed  # the attribute subsets are in the table
    record = json.loads(scores.read_text())["recipe"]
    assert record["name"] == name
    assert record["overridden"] == ["batch_size", "epochs", "input_size", "max_steps_per_epoch"]


def test_train_help_describes_every_setting_with_its_allowed_values():
    text = build_parser().format_help()
    squeezed = "".join(text.split())  # argparse wraps lines anywhere, even inside --eval-every
    for field_ in TrainConfig.__dataclass_fields__.values():
        if field_.name == "recipe":
            continue
        assert "--" + field_.name.replace("_", "-") in text
        assert "".join(field_help(field_.name).split()) in squeezed, field_.name
    for name, values in allowed_values().items():
        assert "oneof:" + ",".join(values) in squeezed, name
    assert "Examples:" in text and "--config wflw_hrnetv2_w18" in text
    for recipe in RECIPES:
        assert recipe in text


@pytest.mark.parametrize("module", ["train", "train.models", "train.eval", "train.bench"])
def test_help_has_examples(module):
    import importlib

    parser = importlib.import_module(module + ".__main__" if module in ("train", "train.models") else module)
    text = parser.build_parser().format_help()
    examples = text.split("Examples:", 1)[1]
    commands = [line for line in examples.splitlines() if line.strip().startswith(f"python -m {module} ")
                or line.strip() == f"python -m {module}"]
    assert 2 <= len(commands) <= 4, commands


def test_a_recipe_placeholder_path_names_the_flag_to_pass(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # where no WFLW folder is
    assert train_main(["--config", "wflw_resnet18_avs", "--device", "cpu"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--train-data WFLW/list_98pt_rect_attr_train.txt: not found" in error[0]
    assert "placeholder: pass --train-data" in error[0]
    assert not (tmp_path / "runs").exists()  # nothing written
