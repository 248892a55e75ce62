"""OpenVINO backend: IR (``.xml`` + ``.bin``) or ``.onnx`` artifacts on the CPU or an Intel GPU."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import openvino

from runtime.backends.base import Backend, BackendError, InputSpec
from runtime.card import Card

# registry device -> OpenVINO device name
DEVICES = {"cpu": "CPU", "gpu": "GPU"}


class OpenVinoBackend(Backend):
    """A model compiled by OpenVINO with the latency performance hint and one infer request.

    An ``fp32`` card is compiled with ``INFERENCE_PRECISION_HINT=f32``: OpenVINO would otherwise pick
    bf16 (CPUs with AMX/AVX-512-BF16) or f16 (GPUs) and silently measure another precision than the
    card states. ``fp16`` and ``int8`` artifacts keep OpenVINO's default execution precision.
    """

    name = "openvino"

    def __init__(self, artifact: str | Path, card: Card, device: str = "cpu", threads: int | None = None):
        super().__init__(artifact, card, device, threads)
        core = openvino.Core()
        target = DEVICES[device]
        present = core.available_devices
        if not any(name.split(".")[0] == target for name in present):
            raise BackendError(
                f"openvino device '{device}' is not present here (OpenVINO sees {', '.join(present) or 'no device'}); "
                f"use device {', '.join(self.available_devices())}"
            )
        config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        if card.precision == "fp32":
            config["INFERENCE_PRECISION_HINT"] = "f32"
        try:
            model = core.read_model(str(self.artifact))
            self._compiled = core.compile_model(model, target, config)
        except Exception as error:  # noqa: BLE001 - OpenVINO raises RuntimeError with multi-line C++ traces
            text = str(error).strip()
            first = text.splitlines()[0][:300] if text else type(error).__name__
            raise BackendError(f"{self.artifact}: OpenVINO cannot load it on {target} ({first})") from None
        inputs = self._compiled.inputs
        if len(inputs) != 1:
            raise BackendError(f"{self.artifact}: expected one image input, found {len(inputs)}")
        port = inputs[0]
        shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
        self._spec = InputSpec(port.get_any_name(), shape, np.dtype(port.get_element_type().to_dtype()).name)
        self._outputs = list(self._compiled.outputs)
        self._output_names = [_port_name(port, index) for index, port in enumerate(self._outputs)]
        self._request = self._compiled.create_infer_request()

    @classmethod
    def available_devices(cls) -> tuple[str, ...]:
        present = {name.split(".")[0] for name in openvino.Core().available_devices}
        return tuple(device for device, target in DEVICES.items() if target in present)

    @property
    def input_spec(self) -> InputSpec:
        return self._spec

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # infer() is synchronous; copy because the request reuses its output buffers on the next call.
        results = self._request.infer(feeds)
        return {name: np.array(results[port], copy=True) for name, port in zip(self._output_names, self._outputs)}

    def _close(self) -> None:
        self._request = None
        self._compiled = None


def _port_name(port, index: int) -> str:
    try:
        return port.get_any_name()
    except RuntimeError:  # an output without a tensor name
        return f"output_{index}"
