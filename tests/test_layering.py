"""The layers (issue 10): runtime is the base and imports nothing of train, export or calib; train nothing
of export or calib; export nothing of calib; the runtime's commands start without torch or matplotlib."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# package -> the packages it must never import (statically, at any depth, lazily or not)
FORBIDDEN = {"runtime": ("train", "export", "calib"), "train": ("export", "calib"), "export": ("calib",)}


def imported_packages(path: Path) -> set[tuple[str, int]]:
    """Top-level package names a module imports, with the line (absolute imports only: edgemark uses no others)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module.split(".")[0], node.lineno))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_layer_imports_one_above_it(package):
    crossings = [
        f"{path.relative_to(REPO)}:{line} imports {name}"
        for path in sorted((REPO / package).rglob("*.py"))
        for name, line in sorted(imported_packages(path))
        if name in FORBIDDEN[package]
    ]
    assert not crossings, "\n".join(crossings)


def test_the_checker_sees_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from export.onnx_export import x\n    import calib.build\n")
    assert {name for name, _ in imported_packages(module)} == {"export", "calib"}


@pytest.mark.parametrize("module", ["runtime.track", "runtime.bench", "runtime.zoo", "runtime.backends"])
def test_runtime_commands_start_without_torch_or_matplotlib(module):
    code = (
        f"import importlib, sys; importlib.import_module('{module}'); "
        "from runtime.backends import backend_names; backend_names(); "
        "print(sorted(m for m in ('torch', 'matplotlib', 'train.torch_backend') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", f"{module} imports {result.stdout.strip()}"


MISSING = """
import importlib.abc, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {BLOCKED}:
            raise ModuleNotFoundError(f"No module named '{{name}}'", name=name)
        return None

sys.meta_path.insert(0, Block())
import importlib
sys.exit(importlib.import_module({module!r}).main({argv!r}))
"""


@pytest.mark.parametrize(
    "blocked, module, argv, extra",
    [
        (("torch", "yaml"), "train.__main__", ["--train-data", "faces", "--epochs", "1"], "train"),
        (("torch",), "export.onnx", ["run/last.pt", "-o", "out.onnx"], "train"),
        (("openvino", "nncf"), "export.openvino", ["m.onnx", "-o", "m.xml"], "openvino"),
    ],
    ids=["train", "export.onnx-checkpoint", "export.openvino"],
)
def test_a_missing_extra_is_one_line_naming_it(blocked, module, argv, extra, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "last.pt").write_bytes(b"not read")
    (tmp_path / "m.onnx").write_bytes(b"not read")
    code = MISSING.format(BLOCKED=set(blocked), module=module, argv=argv)
    environment = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=environment, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and len(lines) == 1, lines
    assert f"pip install 'edgemark[{extra}]'" in lines[0], lines[0]
