"""TensorRT backend: serialized engines (``.engine`` / ``.plan``) on an NVIDIA GPU.

Written against the TensorRT 10/11 name-based Python API (``num_io_tensors``, ``get_tensor_name``,
``get_tensor_mode``, ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``); the
binding-index API removed in 10 is not used. Device buffers live in torch CUDA tensors when torch
with CUDA is installed, else in cuda-python allocations (``cuda.bindings.runtime``, or the older
``cuda.cudart``); pycuda is not needed. ``_infer`` synchronises the stream before it returns, so
:meth:`Backend.infer` times the whole round trip (upload, run, download).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import tensorrt

from runtime.backends.base import Backend, BackendError, InputSpec
from runtime.card import Card

# TensorRT DataType names -> numpy dtype names (bf16/fp8/int4 have no numpy type and are rejected).
TRT_TYPES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "INT8": "int8",
    "UINT8": "uint8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
}


def numpy_dtype(trt_dtype) -> np.dtype:
    """numpy dtype of a TensorRT ``DataType`` (``trt.nptype`` without relying on it staying public)."""
    name = getattr(trt_dtype, "name", str(trt_dtype).split(".")[-1])
    if name not in TRT_TYPES:
        raise BackendError(f"TensorRT tensor type {name} has no numpy equivalent; rebuild with float/half I/O")
    return np.dtype(TRT_TYPES[name])


class TorchCudaMemory:
    """Device buffers as torch CUDA tensors on the current stream."""

    def __init__(self):
        import torch

        self._torch = torch
        self._device = torch.device("cuda", torch.cuda.current_device())
        self._stream = torch.cuda.current_stream(self._device)
        self._kept: dict[str, object] = {}

    @property
    def stream_handle(self) -> int:
        return self._stream.cuda_stream

    def upload(self, name: str, array: np.ndarray) -> int:
        tensor = self._torch.from_numpy(array).to(self._device, non_blocking=False)
        self._kept[name] = tensor
        return tensor.data_ptr()

    def allocate(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> int:
        torch_dtype = self._torch.from_numpy(np.empty(0, dtype=dtype)).dtype
        tensor = self._torch.empty(shape, dtype=torch_dtype, device=self._device)
        self._kept[name] = tensor
        return tensor.data_ptr()

    def download(self, name: str) -> np.ndarray:
        return self._kept[name].cpu().numpy()

    def synchronize(self) -> None:
        self._stream.synchronize()

    def close(self) -> None:
        self._kept.clear()


class CudaPythonMemory:
    """Device buffers from cuda-python's runtime API on one stream; reused while they are big enough."""

    def __init__(self):
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # cuda-python < 12.6

        self._cudart = cudart
        self._stream = self._check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (address, bytes)
        self._host: dict[str, np.ndarray] = {}

    def _check(self, result, what: str):
        error, *values = result if isinstance(result, tuple) else (result,)
        if error != self._cudart.cudaError_t.cudaSuccess:
            raise BackendError(f"TensorRT backend: {what} failed ({error})")
        return values[0] if values else None

    @property
    def stream_handle(self) -> int:
        return int(self._stream)

    def _address(self, name: str, nbytes: int) -> int:
        address, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if address:
                self._check(self._cudart.cudaFree(address), "cudaFree")
            address = int(self._check(self._cudart.cudaMalloc(max(nbytes, 1)), "cudaMalloc"))
            self._buffers[name] = (address, nbytes)
        return address

    def upload(self, name: str, array: np.ndarray) -> int:
        address = self._address(name, array.nbytes)
        self._host[name] = array  # keep the host memory alive until the copy has run
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(
            self._cudart.cudaMemcpyAsync(address, array.ctypes.data, array.nbytes, kind, self._stream),
            "cudaMemcpyAsync",
        )
        return address

    def allocate(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> int:
        self._host[name] = np.empty(shape, dtype=dtype)
        return self._address(name, self._host[name].nbytes)

    def download(self, name: str) -> np.ndarray:
        host = self._host[name]
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        address = self._buffers[name][0]
        self._check(
            self._cudart.cudaMemcpyAsync(host.ctypes.data, address, host.nbytes, kind, self._stream), "cudaMemcpyAsync"
        )
        return host

    def synchronize(self) -> None:
        self._check(self._cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def close(self) -> None:
        for address, _ in self._buffers.values():
            self._cudart.cudaFree(address)
        self._buffers.clear()
        self._host.clear()
        self._cudart.cudaStreamDestroy(self._stream)


def device_memory() -> TorchCudaMemory | CudaPythonMemory:
    """torch CUDA tensors when torch sees a GPU, else cuda-python; neither raises the fix."""
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            return TorchCudaMemory()
    try:
        has_cuda_python = importlib.util.find_spec("cuda") is not None and (
            importlib.util.find_spec("cuda.bindings") is not None or importlib.util.find_spec("cuda.cudart") is not None
        )
    except (ImportError, ValueError):
        has_cuda_python = False
    if has_cuda_python:
        return CudaPythonMemory()
    raise BackendError(
        "TensorRT backend needs GPU buffers from torch with CUDA or from cuda-python; found neither "
        "(pip install edgemark[trt] installs cuda-python)"
    )


class TensorRtBackend(Backend):
    """A deserialized engine with one execution context; the engine's optimisation profile 0."""

    name = "tensorrt"

    def __init__(self, artifact: str | Path, card: Card, device: str = "cuda", threads: int | None = None):
        super().__init__(artifact, card, device, threads)
        self._memory = device_memory()
        logger = tensorrt.Logger(tensorrt.Logger.WARNING)
        self._runtime = tensorrt.Runtime(logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.artifact.read_bytes())
        if self._engine is None:
            self._memory.close()
            raise BackendError(
                f"{self.artifact}: TensorRT cannot deserialize it (built by another TensorRT version or GPU?); "
                "rebuild the engine on this machine with `python -m export.trt`"
            )
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(index) for index in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == tensorrt.TensorIOMode.INPUT]
        self._output_names = [n for n in names if n not in inputs]
        if len(inputs) != 1:
            raise BackendError(f"{self.artifact}: expected one image input, found {len(inputs)} ({inputs})")
        # -1 marks a dimension the optimisation profile leaves open.
        shape = tuple(d if d >= 0 else None for d in self._engine.get_tensor_shape(inputs[0]))
        self._spec = InputSpec(inputs[0], shape, numpy_dtype(self._engine.get_tensor_dtype(inputs[0])).name)

    @classmethod
    def available_devices(cls) -> tuple[str, ...]:
        try:
            device_memory().close()
        except BackendError:
            return ()
        return ("cuda",)

    @property
    def input_spec(self) -> InputSpec:
        return self._spec

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        name = self._spec.name
        array = feeds[name]
        if not self._context.set_input_shape(name, tuple(array.shape)):
            raise BackendError(
                f"{self.artifact.name}: input shape {tuple(array.shape)} is outside the engine's optimisation profile; "
                "rebuild the engine with a profile that covers it"
            )
        self._context.set_tensor_address(name, self._memory.upload(name, array))
        for output in self._output_names:
            shape = tuple(self._context.get_tensor_shape(output))
            dtype = numpy_dtype(self._engine.get_tensor_dtype(output))
            self._context.set_tensor_address(output, self._memory.allocate(output, shape, dtype))
        if not self._context.execute_async_v3(self._memory.stream_handle):
            raise BackendError(f"{self.artifact.name}: TensorRT execution failed (see the TensorRT log above)")
        results = {output: self._memory.download(output) for output in self._output_names}
        self._memory.synchronize()
        return results

    def _close(self) -> None:
        self._context = None
        self._engine = None
        self._runtime = None
        self._memory.close()
