"""The layers (issue 10): runtime is the base and imports nothing of train, export or calib; export
imports nothing of calib; the runtime's commands start without torch or matplotlib."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# package -> the packages it must never import (statically, at any depth, lazily or not)
FORBIDDEN = {"runtime": ("train", "export", "calib"), "export": ("calib",)}


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
