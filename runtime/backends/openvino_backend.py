"""OpenVINO backend: IR (``.xml`` + ``.bin``) or ``.onnx`` artifacts on the CPU or an Intel GPU."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import openvino

from runtime.backends.base import Backend, BackendError, InputSpec
from runtime.card import Card
from runtime.errors import first_line

logger = logging.getLogger(__name__)

# registry device -> OpenVINO device name
DEVICES = {"cpu": "CPU", "gpu": "GPU"}


def card_precision_hint(card: Card) -> str | None:
    """The ``INFERENCE_PRECISION_HINT`` a card asks for (``extra.openvino.inference_precision``), or ``None``."""
    openvino_extra = card.extra.get("openvino") if isinstance(card.extra, dict) else None
    value = openvino_extra.get("inference_precision") if isinstance(openvino_extra, dict) else None
    return str(value) if value else None


class OpenVinoBackend(Backend):
    """A model compiled by OpenVINO with the latency performance hint and one infer request.

    An ``fp32`` card is compiled with ``INFERENCE_PRECISION_HINT=f32``: OpenVINO would otherwise pick
    bf16 (CPUs with AMX/AVX-512-BF16) or f16 (GPUs) and silently measure another precision than the
    card states. Other cards use the precision their card names (``extra.openvino.inference_precision``,
    written by ``export.openvino`` for an IR read from a Q/DQ ONNX: f32, as the file means), else
    OpenVINO's default execution precision.

    Args:
        inference_precision: ``INFERENCE_PRECISION_HINT`` to force (``"f32"``: a comparison measures
            the artifact, not the device's float format); ``None``: by the card as above (f32 when
            there is no card).
    """

    name = "openvino"

    def __init__(
        self,
        artifact: str | Path,
        card: Card | None,
        device: str = "cpu",
        threads: int | None = None,
        inference_precision: str | None = None,
    ):
        if isinstance(artifact, bytes):
            raise BackendError("the openvino backend loads models from files (.xml IR or .onnx), not from bytes")
        super().__init__(artifact, card, device, threads)
        core = openvino.Core()
        target = DEVICES[device]
        present = core.available_devices
        if not any(name.split(".")[0] == target for name in present):
            raise BackendError(
                f"openvino device '{device}' is not present here (OpenVINO sees {', '.join(present) or 'no device'}); "
                f"use device {', '.join(self.available_devices())}"
            )
        config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        if inference_precision:
            config["INFERENCE_PRECISION_HINT"] = inference_precision
        elif card is None or card.precision == "fp32":
            config["INFERENCE_PRECISION_HINT"] = "f32"
        elif card_precision_hint(card):
            config["INFERENCE_PRECISION_HINT"] = card_precision_hint(card)
        try:
            model = core.read_model(str(self.artifact))
        except Exception as error:  # noqa: BLE001 - OpenVINO raises RuntimeError with multi-line C++ traces
            raise BackendError(f"{self.artifact}: OpenVINO cannot load it on {target} ({first_line(error)})") from None
        try:
            self._compiled = core.compile_model(model, target, config)
        except Exception as error:  # noqa: BLE001
            if "INFERENCE_PRECISION_HINT" in config:
                raise BackendError(f"{self.artifact}: OpenVINO cannot load it on {target} ({first_line(error)})") from None
            # Seen with OpenVINO 2026.4 on an AMX CPU: an INT8 IR of a MobileNetV3 (fused HSwish) has "no
            # suitable implementations" in bf16 but compiles in f32. Run it in f32 rather than not at all.
            logger.warning(
                "%s: OpenVINO cannot compile it in its default precision on %s (%s); using f32",
                self.artifact.name,
                target,
                first_line(error),
            )
            config["INFERENCE_PRECISION_HINT"] = "f32"
            try:
                self._compiled = core.compile_model(model, target, config)
            except Exception as retry_error:  # noqa: BLE001
                raise BackendError(
                    f"{self.artifact}: OpenVINO cannot load it on {target} ({first_line(retry_error)})"
                ) from None
        inputs = self._compiled.inputs
        if len(inputs) != 1:
            raise BackendError(f"{self.artifact}: expected one image input, found {len(inputs)}")
        port = inputs[0]
        shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
        self._spec = InputSpec(port.get_any_name(), shape, np.dtype(port.get_element_type().to_dtype()).name)
        self._outputs = list(self._compiled.outputs)
        self._output_names = [_port_name(port, index) for index, port in enumerate(self._outputs)]
        self._request = self._compiled.create_infer_request()
        self._single_request = self._single_face_request(core, target, config)

    def _single_face_request(self, core, target: str, config: dict) -> object | None:
        """A request of the model compiled for batch 1, when its batch is dynamic (else ``None``).

        A tracker feeds one face per frame; static shapes let OpenVINO pick its kernels once instead
        of on every call: 1.02 instead of 1.11 ms per 112-px PFLD INT8 inference, 1.88 instead of
        1.99 ms in FP32, on one Zen 4 core. Batches of several faces use the dynamic model.
        """
        shape = self._spec.shape
        if not shape or shape[0] is not None or any(d is None for d in shape[1:]):
            return None
        try:
            model = core.read_model(str(self.artifact))
            model.reshape({model.inputs[0].get_any_name(): [1, *shape[1:]]})
            return core.compile_model(model, target, config).create_infer_request()
        except Exception as error:  # noqa: BLE001 - an optimisation only: the dynamic model still runs
            logger.debug("%s: no batch-1 compilation (%s)", self.artifact.name, str(error).strip()[:200])
            return None

    @classmethod
    def available_devices(cls) -> tuple[str, ...]:
        present = {name.split(".")[0] for name in openvino.Core().available_devices}
        return tuple(device for device, target in DEVICES.items() if target in present)

    @property
    def input_spec(self) -> InputSpec:
        return self._spec

    @property
    def inference_precision(self) -> str:
        """What OpenVINO computes the float layers in here (``f32``; ``bf16`` for an fp16 or int8 card
        on a CPU with AVX-512 BF16 or AMX): worth stating beside any timing."""
        value = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        return value.get_type_name() if hasattr(value, "get_type_name") else str(value)

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # infer() is synchronous, so the request may read the caller's (validated, C-contiguous) input in
        # place; output tensors are the request's buffers, reused on the next call: copy them once here.
        # (Setting tensors directly skips building infer()'s result dict: ~40 us less per call.)
        value = feeds[self._spec.name]
        request = self._single_request if self._single_request is not None and len(value) == 1 else self._request
        request.set_input_tensor(openvino.Tensor(value, shared_memory=True))
        request.infer()
        return {name: request.get_output_tensor(index).data.copy() for index, name in enumerate(self._output_names)}

    def _close(self) -> None:
        self._request = None
        self._single_request = None
        self._compiled = None


def _port_name(port, index: int) -> str:
    try:
        return port.get_any_name()
    except RuntimeError:  # an output without a tensor name
        return f"output_{index}"

