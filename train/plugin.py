"""train/'s plug-in for the runtime: the PyTorch checkpoint backend's registry entry.

Registered in ``pyproject.toml`` (entry point group ``edgemark.backends``); importing this module
imports no torch: :mod:`train.torch_backend` is imported only when a checkpoint is loaded.
"""
from __future__ import annotations

from runtime.backends.registry import BackendEntry, Capabilities

TORCH_BACKEND = BackendEntry(
    name="torch",
    title="PyTorch",
    module="train.torch_backend",
    class_name="TorchBackend",
    capabilities=Capabilities(
        devices=("cpu", "cuda"),
        precisions=("fp32",),
        suffixes=(".pt", ".pth"),
        package="torch",
        install="pip install torch==2.13.0 -e '.[train]', see README",
    ),
)
