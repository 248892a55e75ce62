"""ONNX Runtime backend: ``.onnx`` artifacts on the CPU, or on CUDA / TensorRT execution providers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime

from runtime.backends.base import Backend, BackendError, InputSpec
from runtime.card import Card
from runtime.errors import first_line

# device -> execution providers in priority order (ONNX Runtime falls back along the list per node).
PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
# ONNX type strings -> numpy dtype names.
ONNX_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
}


class OnnxRuntimeBackend(Backend):
    """An ONNX model in an ONNX Runtime session (graph optimisation level "all", sequential execution,
    intra-op threads that sleep rather than spin when idle)."""

    name = "onnxruntime"

    def __init__(self, artifact: str | Path | bytes, card: Card | None, device: str = "cpu", threads: int | None = None):
        super().__init__(artifact, card, device, threads)
        available = onnxruntime.get_available_providers()
        wanted = PROVIDERS[device]
        if wanted[0] not in available:
            raise BackendError(
                f"onnxruntime device '{device}' needs {wanted[0]}, which this onnxruntime build lacks "
                f"(it has {', '.join(available)}); install onnxruntime-gpu, or use device "
                f"{', '.join(self.available_devices())}"
            )
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        # Idle intra-op threads sleep instead of spinning. A spinning pool fights the detector, the
        # camera and other processes for the cores: on a shared 2-core Zen machine, 2 spinning threads
        # took 6.2 ms per 112-px PFLD inference, 2 sleeping threads 2.5 ms, 1 thread 2.0 ms.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self._session = onnxruntime.InferenceSession(
                self.source, options, providers=[p for p in wanted if p in available]
            )
        except Exception as error:  # noqa: BLE001 - ORT raises several types (Fail, InvalidGraph, NoSuchFile, ...)
            raise BackendError(f"{self.artifact}: ONNX Runtime cannot load it ({first_line(error)})") from None
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise BackendError(
                f"{self.artifact}: expected one image input, found {len(inputs)} ({[i.name for i in inputs]})"
            )
        dtype = ONNX_TYPES.get(inputs[0].type)
        if dtype is None:
            raise BackendError(f"{self.artifact}: input type {inputs[0].type} is not supported; expected tensor(float)")
        # ['batch', 3, 112, 112] -> (None, 3, 112, 112)
        shape = tuple(d if isinstance(d, int) and d > 0 else None for d in inputs[0].shape)
        self._spec = InputSpec(inputs[0].name, shape, dtype)
        self._output_names = [output.name for output in self._session.get_outputs()]

    @classmethod
    def available_devices(cls) -> tuple[str, ...]:
        available = onnxruntime.get_available_providers()
        return tuple(device for device, providers in PROVIDERS.items() if providers[0] in available)

    @property
    def input_spec(self) -> InputSpec:
        return self._spec

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # session.run copies results to the host, so it returns only after the device has finished.
        values = self._session.run(self._output_names, feeds)
        return dict(zip(self._output_names, values))

    def _close(self) -> None:
        self._session = None
