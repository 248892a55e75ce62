"""PyTorch backend: an edgemark training checkpoint (``.pt``) run eagerly, the reference for parity.

train/'s plug-in to the runtime (registered through :mod:`train.plugin`).

This is the one backend that needs torch (and train/); it is imported only when loaded.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from runtime.backends.base import Backend, BackendError, InputSpec
from runtime.card import Card

# The names export/ gives the ONNX graph's input and output, so outputs compare by name across backends.
INPUT_NAME = "input"
OUTPUT_NAME = "heatmaps"


class TorchBackend(Backend):
    """A checkpoint's model in eval mode under ``torch.inference_mode``.

    Args:
        model: the already-built module (``open`` passes it so the checkpoint is read once).
    """

    name = "torch"

    @classmethod
    def open(cls, artifact: str | Path, device: str = "cpu", threads: int | None = None) -> TorchBackend:
        """Load a checkpoint; its card comes from :func:`train.checkpoint.card_from_checkpoint`."""
        from train.checkpoint import card_from_checkpoint, model_from_checkpoint

        model, state = model_from_checkpoint(artifact)
        card = card_from_checkpoint(
            state,
            artifact,
            input_name=INPUT_NAME,
            format="torch",
            model_sha256=state.get("model_sha256", ""),  # of the state dict, checked by model_from_checkpoint
            tools={"torch": torch.__version__},
            output_name=OUTPUT_NAME,
            extra={"model_name": state.get("model_name", "")},
        )
        return cls(artifact, card, device=device, threads=threads, model=model)

    def __init__(
        self,
        artifact: str | Path,
        card: Card,
        device: str = "cpu",
        threads: int | None = None,
        model: torch.nn.Module | None = None,
    ):
        super().__init__(artifact, card, device, threads)
        if device == "cuda" and not torch.cuda.is_available():
            raise BackendError("torch device 'cuda' needs a CUDA GPU and a CUDA build of torch; use device cpu")
        if threads:
            torch.set_num_threads(threads)  # process-wide in torch
        if model is None:
            from train.checkpoint import model_from_checkpoint

            model, _ = model_from_checkpoint(artifact)
        self._model = model.to(device).eval()
        size = card.input_size
        self._spec = InputSpec(card.input_name, (None, 3, size, size), "float32")
        self._output_names = [OUTPUT_NAME]

    @classmethod
    def available_devices(cls) -> tuple[str, ...]:
        return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)

    @property
    def input_spec(self) -> InputSpec:
        return self._spec

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            inputs = torch.from_numpy(feeds[self._spec.name]).to(self.device)
            output = self._model(inputs)
            output = output[0] if isinstance(output, (tuple, list)) else output
            # .cpu() waits for the GPU's work on this stream; the explicit sync keeps that obvious.
            if self.device == "cuda":
                torch.cuda.synchronize()
            return {OUTPUT_NAME: output.float().cpu().numpy()}

    def _close(self) -> None:
        self._model = None
