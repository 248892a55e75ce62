"""Checkpoints hold no code: a crafted pickle is refused without running, corrupted weights are caught."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest

torch = pytest.importorskip("torch")

from train.checkpoint import TRUST_ENV, CheckpointError, load_checkpoint, save_checkpoint  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _RunsCode:
    """Unpickling this calls ``open(marker, "w")``: the smallest proof that loading ran code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _malicious(path, marker):
    torch.save({"format": "edgemark-checkpoint", "version": 1, "model": {}, "payload": _RunsCode(str(marker))}, path)


def test_a_crafted_checkpoint_is_refused_without_running_its_code(tmp_path):
    checkpoint, marker = tmp_path / "evil.pt", tmp_path / "code_ran"
    _malicious(checkpoint, marker)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(checkpoint)
    assert not marker.exists()
    message = str(error.value)
    assert "\n" not in message and "can run code" in message and TRUST_ENV in message


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "export.onnx", "{ckpt}", "-o", "{tmp}/model.onnx"],
        ["-m", "train.eval", "{ckpt}", "--data", "{tmp}"],
        ["-m", "runtime.track", "{tmp}/missing_video.mp4", "--model", "{ckpt}"],
    ],
    ids=["export.onnx", "train.eval", "runtime.track"],
)
def test_commands_refuse_a_crafted_checkpoint_in_one_line(tmp_path, command):
    checkpoint, marker = tmp_path / "evil.pt", tmp_path / "code_ran"
    _malicious(checkpoint, marker)
    argv = [part.format(ckpt=checkpoint, tmp=tmp_path) for part in command]
    done = subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": REPO})  # fmt: skip
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert not marker.exists()
    assert not (tmp_path / "model.onnx").exists()


def test_trusted_opt_in_loads_a_foreign_pickle(tmp_path, monkeypatch):
    import numpy as np

    checkpoint = tmp_path / "old.pt"
    torch.save({"format": "edgemark-checkpoint", "version": 1, "rng": np.random.get_state()}, checkpoint)
    with pytest.raises(CheckpointError, match="beyond tensors"):
        load_checkpoint(checkpoint)
    monkeypatch.setenv(TRUST_ENV, "1")
    assert load_checkpoint(checkpoint)["rng"][0] == "MT19937"


def test_corrupted_weights_are_caught_by_their_hash(tmp_path):
    checkpoint = tmp_path / "model.pt"
    weights = torch.arange(4096, dtype=torch.float32)
    save_checkpoint(checkpoint, {"model": {"layer.weight": weights}})
    assert torch.equal(load_checkpoint(checkpoint)["model"]["layer.weight"], weights)
    # Change bytes of the tensor's storage inside the zip, keeping the archive itself readable.
    corrupted = tmp_path / "corrupted.pt"
    with zipfile.ZipFile(checkpoint) as source, zipfile.ZipFile(corrupted, "w", zipfile.ZIP_STORED) as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if "/data/" in item.filename and len(data) == weights.numel() * 4:
                data = data[:100] + bytes(8) + data[108:]
            target.writestr(item, data)
    with pytest.raises(CheckpointError, match="do not match the hash"):
        load_checkpoint(corrupted)


def _tiny_checkpoint(path, **changes):
    from conftest import write_checkpoint

    return write_checkpoint(path, **changes)


def test_nan_weights_and_missing_keys_are_one_line_errors_and_export_writes_nothing(tmp_path):
    from export.onnx import main as export_main

    model = _tiny_checkpoint(tmp_path / "ok.pt")
    weights = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    first_float = next(name for name, tensor in weights.items() if tensor.is_floating_point())
    weights[first_float].view(-1)[0] = float("nan")
    _tiny_checkpoint(tmp_path / "nan.pt", model=weights)
    _tiny_checkpoint(tmp_path / "partial.pt")
    partial = load_checkpoint(tmp_path / "partial.pt")
    del partial["layout"]
    save_checkpoint(tmp_path / "partial.pt", {k: v for k, v in partial.items() if k not in ("format", "version")})
    for name, expected in (("nan.pt", "NaN or infinite"), ("partial.pt", "lacks layout")):
        output = tmp_path / f"{name}.onnx"
        done = subprocess.run([sys.executable, "-m", "export.onnx", str(tmp_path / name), "-o", str(output)], cwd=REPO,
                              capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": REPO})  # fmt: skip
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert done.returncode != 0 and "Traceback" not in done.stderr and expected in lines[-1], done.stderr
        assert not output.exists()
    assert export_main([str(tmp_path / "ok.pt"), "-o", str(tmp_path / "ok.onnx")]) == 0


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--mean", "nan", "0.5", "0.5"], "mean must be finite"),
        (["--std", "0.5", "inf", "0.5"], "std must be positive finite"),
        (["--std", "0", "0.5", "0.5"], "must be positive"),
        (["--crop-scale", "nan"], "crop scales must be positive finite"),
    ],
)
def test_non_finite_card_numbers_are_refused_at_import(pfld_onnx, tmp_path, flags, expected, capsys):
    from export.onnx import main as export_main

    output = tmp_path / "pfld.onnx"
    base = ["--import", str(pfld_onnx), "-o", str(output), "--layout", "wflw98", "--input-size", "112",
            "--channel-order", "BGR", "--mean", "0.5", "0.5", "0.5", "--std", "0.5", "0.5", "0.5",
            "--output-kind", "coords", "--crop-scale", "1.2", "--crop-box", "landmarks"]  # fmt: skip
    assert export_main(base + flags) == 2
    assert expected in capsys.readouterr().err.strip().splitlines()[-1]
    assert not output.exists() and not list(tmp_path.iterdir())


def test_a_checkpoints_card_carries_its_weights_hash(tmp_path):
    from runtime.backends import load_backend
    from train.checkpoint import state_dict_sha256

    checkpoint = tmp_path / "tiny.pt"
    model = _tiny_checkpoint(checkpoint)
    backend = load_backend(checkpoint)
    assert backend.card.model_sha256 == state_dict_sha256(model.state_dict())
    assert len(backend.card.model_sha256) == 64
