"""Help that teaches (issue 13): every command's ``--help`` shows at least one example command line."""
from __future__ import annotations

import importlib
import re

import pytest

# (what a person types after `python -m`, the module whose main() runs it, argv before --help)
COMMANDS = [
    ("train", "train.__main__", []),
    ("train.eval", "train.eval", []),
    ("train.bench", "train.bench", []),
    ("train.models", "train.models.__main__", []),
    ("train.style", "train.style.__main__", []),
    ("train.style score", "train.style.__main__", ["score"]),
    ("export.onnx", "export.onnx", []),
    ("export.ort", "export.ort", []),
    ("export.openvino", "export.openvino", []),
    ("export.trt", "export.trt", []),
    ("export.verify", "export.verify", []),
    ("calib", "calib.__main__", []),
    ("calib build", "calib.__main__", ["build"]),
    ("calib study", "calib.__main__", ["study"]),
    ("calib avs", "calib.__main__", ["avs"]),
    ("runtime.track", "runtime.track", []),
    ("runtime.bench", "runtime.bench", []),
    ("runtime.report", "runtime.report.command", []),
    ("runtime.tools.peer", "runtime.tools.peer", []),
    ("runtime.scenario", "runtime.scenario", []),
    ("runtime.jitter", "runtime.jitter", []),
]
TORCH_COMMANDS = {"train", "train.eval", "train.bench", "train.models", "train.style", "train.style score"}


def help_text(module: str, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(module).main([*argv, "--help"])
    assert exit_info.value.code in (0, None), f"--help exited with {exit_info.value.code}"
    return capsys.readouterr().out


@pytest.mark.parametrize("command, module, argv", COMMANDS, ids=[command for command, _, _ in COMMANDS])
def test_help_shows_an_example(command, module, argv, capsys):
    if command in TORCH_COMMANDS:
        pytest.importorskip("torch", reason="train commands need the train extra (torch)")
    text = help_text(module, argv, capsys)
    examples = [line.strip() for line in text.splitlines() if line.strip().startswith("python -m")]
    assert examples, f"`python -m {command} --help` shows no example (a line starting with 'python -m'):\n{text}"
    assert any(example.startswith(f"python -m {command.split()[0]}") for example in examples), examples


def test_the_list_holds_every_command():
    """Every module with a command-line main() is in COMMANDS (a new command gets its help checked)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    listed = {module for _, module, _ in COMMANDS} | {"calib.study"}  # calib study runs under `calib`
    found = set()
    for package in ("train", "export", "calib", "runtime"):
        for path in (root / package).rglob("*.py"):
            if re.search(r"^def main\(", path.read_text(), re.MULTILINE):
                module = ".".join(path.relative_to(root).with_suffix("").parts)
                found.add(module)
    assert found <= listed, f"commands without a help check: {sorted(found - listed)}"
