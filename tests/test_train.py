"""Training end to end on real faces: resume exactness, DDP agreement, bad input, eval and bench commands."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from train import engine  # noqa: E402
from train.__main__ import main as train_main  # noqa: E402
from train.bench import main as bench_main  # noqa: E402
from train.checkpoint import load_checkpoint  # noqa: E402
from train.config import TrainConfig  # noqa: E402
from train.eval import main as eval_main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def tiny_args(faces68_dir: Path, out_dir: Path, *extra: str) -> list[str]:
    """A seconds-long run of the tiny model on the twelve real faces."""
    return [
        "--train-data", str(faces68_dir), "--val-data", str(faces68_dir), "--layout", "ibug68",
        "--model", "tiny_heatmap", "--input-size", "64", "--batch-size", "4", "--workers", "0",
        "--device", "cpu", "--out-dir", str(out_dir), "--tensorboard", "false", *extra,
    ]


def epoch_losses(out_dir: Path) -> dict[int, float]:
    with open(out_dir / "metrics.csv", newline="") as stream:
        return {int(row["epoch"]): float(row["train_loss"]) for row in csv.DictReader(stream)}


def test_resume_continues_exactly(faces68_dir, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    assert train_main(tiny_args(faces68_dir, straight, "--epochs", "3")) == 0

    # Interrupt after the checkpoint of epoch 2 is written, as a Ctrl-C would, then resume.
    resumed = tmp_path / "resumed"
    real_save = engine.save_checkpoint

    def save_then_interrupt(path, state):
        real_save(path, state)
        if state["epoch"] == 2 and Path(path).name == "last.pt":
            raise KeyboardInterrupt

    monkeypatch.setattr(engine, "save_checkpoint", save_then_interrupt)
    assert train_main(tiny_args(faces68_dir, resumed, "--epochs", "3")) == 130
    monkeypatch.setattr(engine, "save_checkpoint", real_save)
    assert epoch_losses(resumed).keys() == {1, 2}
    assert train_main(tiny_args(faces68_dir, resumed, "--epochs", "3", "--resume", "auto")) == 0

    expected, got = epoch_losses(straight), epoch_losses(resumed)
    assert got[3] == pytest.approx(expected[3], rel=1e-6, abs=1e-9)
    assert got[1] == pytest.approx(expected[1], rel=1e-6)
    final_straight = load_checkpoint(straight / "last.pt")["model"]
    final_resumed = load_checkpoint(resumed / "last.pt")["model"]
    assert all(torch.equal(final_straight[key], final_resumed[key]) for key in final_straight)


def test_ddp_two_cpu_processes_agree(faces68_dir, tmp_path):
    out_dir = tmp_path / "ddp"
    command = [sys.executable, "-m", "train", "--nproc-per-node", "2", *tiny_args(faces68_dir, out_dir, "--epochs", "2")]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert len(summary["weights_sha256"]) == 2 and summary["ranks_agree"], summary["weights_sha256"]
    # Each rank saw half of each epoch's batches: 12 faces, batch 4 split in 2 per rank -> 3 steps of 2.
    assert (out_dir / "last.pt").is_file() and (out_dir / "metrics.csv").is_file()


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--config", "missing.yaml"], "missing.yaml: config file not found"),  # caught before any worker starts
        (["--layout", "wflw98"], "has 68 points per face but layout 'wflw98' has 98"),  # met by every worker
    ],
)
def test_ddp_usage_error_is_one_line(faces68_dir, tmp_path, extra, expected):
    out_dir = tmp_path / "ddp"
    command = [sys.executable, "-m", "train", "--nproc-per-node", "2", *tiny_args(faces68_dir, out_dir), *extra]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], result.stderr[-3000:]
    assert not out_dir.exists()


def test_eval_command_and_num_points_mismatch(faces68_dir, tmp_path, capsys):
    out_dir = tmp_path / "run"
    assert train_main(tiny_args(faces68_dir, out_dir, "--epochs", "1")) == 0
    report = tmp_path / "scores.json"
    assert eval_main([str(out_dir / "last.pt"), "--data", str(faces68_dir), "--json", str(report)]) == 0
    scores = json.loads(report.read_text())
    assert scores["count"] == 12 and scores["layout"] == "ibug68" and scores["nme"] > 0
    # A 68-point checkpoint resumed into a 98-point run: one clear line, non-zero exit.
    code = train_main(tiny_args(faces68_dir, out_dir, "--epochs", "2", "--resume", "auto", "--layout", "wflw98"))
    assert code != 0
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("error: ") and "68 points" in message


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--model", "resnet19"], "Unknown model 'resnet19'"),
        (["--layout", "wflw98"], "has 68 points per face but layout 'wflw98' has 98"),
        (["--epochs", "many"], "expects int"),
        (["--optimizer", "adagrad"], "Unknown optimizer"),
    ],
)
def test_bad_configuration_is_one_line(faces68_dir, tmp_path, capsys, extra, expected):
    code = train_main(tiny_args(faces68_dir, tmp_path / "bad", "--epochs", "1", *extra))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 or code == 1
    assert err and err[-1].startswith("error: ") and expected in err[-1], err
    assert not (tmp_path / "bad" / "last.pt").exists()


def test_missing_image_and_malformed_line_are_named(tmp_path, faces68_dir, capsys):
    folder = tmp_path / "faces"
    folder.mkdir()
    (folder / "lonely.pts").write_text((faces68_dir / "einstein.pts").read_text())
    assert train_main(tiny_args(folder, tmp_path / "out", "--epochs", "1")) != 0
    assert "lonely.pts: no image beside it" in capsys.readouterr().err
    broken = (faces68_dir / "einstein.pts").read_text().replace("357.417253", "357.4x")
    (folder / "lonely.pts").write_text(broken)
    (folder / "lonely.jpg").write_bytes((faces68_dir / "einstein.jpg").read_bytes())
    assert train_main(tiny_args(folder, tmp_path / "out", "--epochs", "1")) != 0
    assert "lonely.pts:4: expected two numbers" in capsys.readouterr().err


def test_config_yaml_then_flags(tmp_path):
    from train.__main__ import build_parser
    from train.config import config_from_args

    settings = tmp_path / "run.yaml"
    settings.write_text("epochs: 7\nlr: 0.01\nmilestones: [3, 5]\n")
    config = config_from_args(build_parser().parse_args(["--config", str(settings), "--lr", "0.002"]))
    assert config == TrainConfig(epochs=7, lr=0.002, milestones=(3, 5))
    settings.write_text("epoch: 7\n")
    with pytest.raises(Exception, match="unknown setting 'epoch'. Did you mean 'epochs'"):
        config_from_args(build_parser().parse_args(["--config", str(settings)]))


def test_bench_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    assert bench_main(["--models", "tiny_heatmap", "--steps", "2", "--warmup", "1", "--batch-size", "2",
                       "--device", "cpu", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert results["device_type"] == "cpu" and results["rows"][0]["images_per_second"] > 0


def test_overfits_the_twelve_real_faces(faces68_dir, tmp_path):
    """Data, targets, decoding and metrics agree on real faces: the edge model memorises them (< 2 % NME)."""
    out_dir = tmp_path / "overfit"
    arguments = [
        "--train-data", str(faces68_dir), "--val-data", str(faces68_dir), "--layout", "ibug68",
        "--model", "mobilenetv3_edge", "--input-size", "128", "--batch-size", "4", "--workers", "0",
        "--device", "cpu", "--augment", "false", "--epochs", "90", "--lr", "3e-3", "--eval-every", "90",
        "--out-dir", str(out_dir), "--tensorboard", "false",
        # One thread: on a 2-core machine other processes share, 2 threads ran each epoch 6x slower.
        "--threads", "1",
    ]
    assert train_main(arguments) == 0
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["final_val"]["nme"] < 2.0, summary["final_val"]
    # The same checkpoint decoded by argmax is measurably worse: the centroid's sub-pixel gain is real.
    centroid_scores, argmax_scores = tmp_path / "centroid.json", tmp_path / "argmax.json"
    assert eval_main([str(out_dir / "last.pt"), "--data", str(faces68_dir), "--json", str(centroid_scores)]) == 0
    assert eval_main([str(out_dir / "last.pt"), "--data", str(faces68_dir), "--decode", "argmax",
                      "--json", str(argmax_scores)]) == 0
    centroid_nme = json.loads(centroid_scores.read_text())["nme"]
    argmax_nme = json.loads(argmax_scores.read_text())["nme"]
    assert centroid_nme == pytest.approx(summary["final_val"]["nme"], rel=1e-6)
    assert centroid_nme < argmax_nme, (centroid_nme, argmax_nme)
