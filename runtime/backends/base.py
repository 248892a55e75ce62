"""The backend interface: load an artifact, describe its input, run ``infer(feeds) -> outputs``, close.

The one set of engines (Polygraphy's loader/runner split): the tracker, the benchmark, ``export``'s
checks (parity, import checks, verify, mixed precision), calibration and the study all run models
through these classes. An artifact is a file, or an ONNX model's serialized bytes held in memory (a
check before anything is written); the card is optional for such checks (``None``: engine facts only).

A backend knows nothing about faces. Cropping, normalisation, decoding and back-projection live in
:mod:`runtime.landmarker`, which takes any backend. Every latency figure comes from one place:
:meth:`Backend.infer` checks the feeds against the input spec, times the call with
``time.perf_counter`` and delegates to the backend's ``_infer``, which returns host arrays only after
the device has finished (GPU backends synchronise).
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from runtime.card import Card, read_card
from runtime.errors import EdgemarkError


#: the name an in-memory model goes by in messages
IN_MEMORY = "<in-memory model>"


class BackendError(EdgemarkError):
    """A backend that cannot load an artifact, is missing its package, or was fed the wrong input."""


@dataclass(frozen=True)
class InputSpec:
    """The model's one image input.

    Attributes:
        name: input tensor name (the key of the feed).
        shape: dimensions, ``None`` where the dimension is dynamic (usually the batch):
            ``(None, 3, 112, 112)`` or ``(1, 3, 112, 112)``.
        dtype: numpy dtype name the input must have (``float32``).
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the artifact insists on, or ``None`` when the batch is dynamic."""
        return self.shape[0] if self.shape else None

    def describe(self) -> str:
        """``input: ?x3x112x112 float32``."""
        dims = "x".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {dims} {self.dtype}"


class Backend(ABC):
    """One loaded artifact in one inference engine.

    Subclasses load in ``__init__`` (after calling ``super().__init__``), implement :attr:`input_spec`
    and :meth:`_infer`, and release engine objects in :meth:`_close`. Use as a context manager or call
    :meth:`close`.

    Args:
        artifact: the artifact file, or a serialized model in memory (backends that can load one).
        card: its card (the only source of facts about it); ``None`` for a model checked before it
            has one.
        device: a device of this backend's capability record (``cpu``, ``cuda``, ``gpu``, ...).
        threads: intra-op CPU threads; ``None`` leaves the engine's default.

    Attributes:
        last_latency_s: wall time of the last :meth:`infer` call in seconds (``None`` before the first).
    """

    #: registry name, set by each subclass
    name: ClassVar[str] = ""

    def __init__(self, artifact: str | Path | bytes, card: Card | None, device: str = "cpu", threads: int | None = None):
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise BackendError(f"threads must be a positive integer or None, got {threads!r}")
        #: what the engine loads: a path string, or the model's bytes
        self.source: str | bytes = artifact if isinstance(artifact, bytes) else str(artifact)
        self.artifact = Path(IN_MEMORY if isinstance(artifact, bytes) else artifact)
        self.card = card
        self.device = device
        self.threads = threads
        self.last_latency_s: float | None = None
        self._closed = False

    @classmethod
    def open(cls, artifact: str | Path, device: str = "cpu", threads: int | None = None) -> Backend:
        """Load ``artifact`` with the card found beside or inside it (:func:`runtime.card.read_card`)."""
        return cls(artifact, read_card(artifact), device=device, threads=threads)

    @classmethod
    def available_devices(cls) -> tuple[str, ...]:
        """Devices this backend can use on this machine (imports the engine package)."""
        return ("cpu",)

    # ---------------------------------------------------------------------------------------------
    # what subclasses provide

    @property
    @abstractmethod
    def input_spec(self) -> InputSpec:
        """The model's image input: name, shape (``None`` for dynamic dimensions), dtype."""

    @abstractmethod
    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run validated, C-contiguous feeds; return every output by name, in the model's order, on the host."""

    def _close(self) -> None:
        """Release engine objects (sessions, contexts, device buffers)."""

    # ---------------------------------------------------------------------------------------------
    # the public interface

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check ``feeds`` against :attr:`input_spec`, run the model and time the call.

        Args:
            feeds: ``{input name: array}`` with exactly the spec's input.

        Returns:
            ``{output name: array}`` for every model output.

        Raises:
            BackendError: closed backend, or a feed whose name, shape or dtype does not fit the spec.
        """
        if self._closed:
            raise BackendError(f"{self.name} backend for {self.artifact.name} is closed; load the artifact again")
        feeds = self._checked(feeds)
        started = time.perf_counter()
        outputs = self._infer(feeds)
        self.last_latency_s = time.perf_counter() - started
        return outputs

    @property
    def fixed_batch(self) -> int | None:
        """The batch size this artifact must be fed (the one home of that rule): its input's fixed batch
        dimension first, else the card's ``batch`` (an import's note); ``None`` when any batch runs."""
        return self.input_spec.fixed_batch or (self.card.batch if self.card is not None else None)

    @property
    def output_names(self) -> list[str]:
        """The model's outputs by name, in its order (the keys :meth:`infer` returns)."""
        return list(self._output_names)

    def run(self, inputs: np.ndarray, batch_size: int = 8) -> np.ndarray:
        """The first output for (N, ...) ``inputs``, run in batches of ``batch_size`` (of the model's own
        batch size when it fixes one)."""
        batch_size = self.fixed_batch or batch_size
        name, first = self.input_spec.name, self.output_names[0]
        dtype = np.dtype(self.input_spec.dtype)
        outputs = [
            self.infer({name: np.ascontiguousarray(inputs[start : start + batch_size], dtype=dtype)})[first]
            for start in range(0, len(inputs), batch_size)
        ]
        return np.concatenate(outputs, axis=0)

    def close(self) -> None:
        """Release the engine; further :meth:`infer` calls raise. Safe to call twice."""
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> Backend:  # noqa: PYI034 - typing.Self needs Python 3.11; edgemark supports 3.10
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else self.input_spec.describe()
        return f"<{type(self).__name__} {self.artifact.name} on {self.device} ({state})>"

    def _checked(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        spec = self.input_spec
        # Fast path, once per video frame: exactly the spec's one C-contiguous feed of its dtype and shape.
        if type(feeds) is dict and len(feeds) == 1:
            value = feeds.get(spec.name)
            if (
                type(value) is np.ndarray
                and value.dtype == spec.dtype
                and value.flags.c_contiguous
                and value.size
                and value.ndim == len(spec.shape)
                and all(d is None or d == v for d, v in zip(spec.shape, value.shape))
            ):
                return feeds
        if not isinstance(feeds, dict):
            raise BackendError(f"infer() takes a dict {{'{spec.name}': array}}, got {type(feeds).__name__}")
        if set(feeds) != {spec.name}:
            raise BackendError(
                f"{self.artifact.name}: feeds {sorted(feeds)} but the model takes exactly ['{spec.name}'] "
                f"({spec.describe()})"
            )
        value = feeds[spec.name]
        if not isinstance(value, np.ndarray):
            raise BackendError(
                f"{self.artifact.name}: feed '{spec.name}' is a {type(value).__name__}, not a numpy array"
            )
        if value.dtype != np.dtype(spec.dtype):
            raise BackendError(
                f"{self.artifact.name}: feed '{spec.name}' is {value.dtype} but the model takes {spec.dtype}; "
                f"convert with .astype(np.{spec.dtype})"
            )
        fits = value.ndim == len(spec.shape) and all(d is None or d == v for d, v in zip(spec.shape, value.shape))
        if not fits or value.size == 0:
            shown = "x".join(str(v) for v in value.shape) or "scalar"
            raise BackendError(
                f"{self.artifact.name}: feed '{spec.name}' is {shown} but the model takes {spec.describe()}"
            )
        return {spec.name: np.ascontiguousarray(value)}
