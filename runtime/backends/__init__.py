"""Inference backends behind one small interface, chosen by name or artifact suffix.

Importing this package imports no inference engine: the registry holds module paths and imports a
backend's module only when :func:`load_backend` loads it.

    from runtime.backends import load_backend

    with load_backend("pfld.onnx") as backend:          # suffix -> onnxruntime
        outputs = backend.infer({backend.input_spec.name: batch})
        print(backend.last_latency_s)

    with open_model(onnx_model.SerializeToString()) as check:   # in memory, no card
        first_output = check.run(inputs)
"""
from runtime.backends.base import Backend, BackendError, InputSpec
from runtime.backends.registry import (
    BACKENDS,
    BackendEntry,
    Capabilities,
    available_backends,
    backend_names,
    backends_for_suffix,
    choose_backend,
    get_backend,
    load_backend,
    open_model,
    register_backend,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendEntry",
    "BackendError",
    "Capabilities",
    "InputSpec",
    "available_backends",
    "backend_names",
    "backends_for_suffix",
    "choose_backend",
    "get_backend",
    "load_backend",
    "open_model",
    "register_backend",
]
