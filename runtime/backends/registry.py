"""Backend registry: lazy names with capability records, and :func:`load_backend`.

Each entry names the module and class that implement a backend, so importing this registry imports
no inference engine; the module is imported only when that backend is loaded. The capability
records (devices, precisions, file suffixes, required package) are what the CLI, the benchmark and
the tests read to decide what can run here.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from runtime.backends.base import Backend, BackendError
from runtime.card import Card
from runtime.errors import UsageError, did_you_mean, unknown_name


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, known without importing it.

    Attributes:
        devices: devices it can target when the hardware and engine build allow (``load_backend``
            checks the ones actually present at load time).
        precisions: artifact precisions (the card's ``precision``) it runs.
        suffixes: artifact file suffixes it reads, in preference order.
        package: import name of the engine package (probed with ``importlib.util.find_spec``).
        install: how to install that package.
        needs_gpu: it cannot run without an NVIDIA GPU.
    """

    devices: tuple[str, ...]
    precisions: tuple[str, ...]
    suffixes: tuple[str, ...]
    package: str
    install: str
    needs_gpu: bool = False


@dataclass(frozen=True)
class BackendEntry:
    """A registered backend: where its class lives and what it can do."""

    name: str
    title: str
    module: str
    class_name: str
    capabilities: Capabilities

    @property
    def installed(self) -> bool:
        """Whether the engine package is importable here (checked without importing it)."""
        return _importable(self.capabilities.package)

    def load_class(self) -> type[Backend]:
        """Import the backend module and return its class."""
        return getattr(importlib.import_module(self.module), self.class_name)

    def missing_message(self) -> str:
        """One line: what is missing, how to install it, and which backends do work here."""
        gpu = " and an NVIDIA GPU" if self.capabilities.needs_gpu else ""
        here = ", ".join(available_backends()) or "none"
        return (
            f"{self.title} backend needs the `{self.capabilities.package}` package{gpu} "
            f"({self.capabilities.install}); available here: {here}"
        )


BACKENDS: dict[str, BackendEntry] = {}


def register_backend(entry: BackendEntry) -> BackendEntry:
    """Add ``entry`` to the registry (names are unique)."""
    if entry.name in BACKENDS:
        raise ValueError(f"backend '{entry.name}' is already registered")
    BACKENDS[entry.name] = entry
    return entry


register_backend(
    BackendEntry(
        name="onnxruntime",
        title="ONNX Runtime",
        module="runtime.backends.onnxruntime_backend",
        class_name="OnnxRuntimeBackend",
        # "cuda" and "tensorrt" are ONNX Runtime execution providers, present in GPU builds only.
        capabilities=Capabilities(
            devices=("cpu", "cuda", "tensorrt"),
            precisions=("fp32", "fp16", "int8"),
            suffixes=(".onnx",),
            package="onnxruntime",
            install="pip install edgemark (or onnxruntime-gpu for CUDA)",
        ),
    )
)
register_backend(
    BackendEntry(
        name="openvino",
        title="OpenVINO",
        module="runtime.backends.openvino_backend",
        class_name="OpenVinoBackend",
        capabilities=Capabilities(
            devices=("cpu", "gpu"),
            precisions=("fp32", "fp16", "int8"),
            suffixes=(".xml", ".onnx"),
            package="openvino",
            install="pip install edgemark[openvino]",
        ),
    )
)
register_backend(
    BackendEntry(
        name="tensorrt",
        title="TensorRT",
        module="runtime.backends.tensorrt_backend",
        class_name="TensorRtBackend",
        capabilities=Capabilities(
            devices=("cuda",),
            precisions=("fp32", "fp16", "int8"),
            suffixes=(".engine", ".plan"),
            package="tensorrt",
            install="pip install edgemark[trt]",
            needs_gpu=True,
        ),
    )
)


def _register_plugins() -> None:
    """Add the backends other packages register (``train``: the PyTorch checkpoint backend)."""
    import logging

    from runtime.errors import EdgemarkError
    from runtime.plugins import BACKENDS_GROUP, load_plugin, plugin_names

    for name in plugin_names(BACKENDS_GROUP):
        if name in BACKENDS:
            continue
        try:
            register_backend(load_plugin(BACKENDS_GROUP, name))
        except EdgemarkError as error:  # a plug-in that cannot load is a backend that is not here, not a crash
            logging.getLogger(__name__).warning("backend plug-in skipped: %s", error)


def _importable(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # a blocking import hook, or a half-imported module
        return False


def backend_names() -> list[str]:
    """Every registered backend, installed or not."""
    return list(BACKENDS)


# Common short names, used only to suggest the real name in an error (they are not accepted).
_NICKNAMES = {"ort": "onnxruntime", "onnx": "onnxruntime", "ov": "openvino", "trt": "tensorrt", "pytorch": "torch"}


def get_backend(name: str) -> BackendEntry:
    """The registry entry for ``name``; an unknown name raises a :class:`UsageError` with did-you-mean."""
    if name in BACKENDS:
        return BACKENDS[name]
    spellings = {**{key: key for key in BACKENDS}, **_NICKNAMES}
    close = difflib.get_close_matches(name.lower(), list(spellings), n=1, cutoff=0.5)
    hint = f" Did you mean '{spellings[close[0]]}'?" if close else ""
    raise UsageError(f"Unknown backend '{name}'. Valid: {', '.join(BACKENDS)}.{hint}")


def available_backends() -> list[str]:
    """Backends whose engine package is importable here (probed without importing any engine)."""
    return [name for name, entry in BACKENDS.items() if entry.installed]


def backends_for_suffix(suffix: str) -> list[str]:
    """Backends that read files ending in ``suffix``, in registry (preference) order."""
    return [name for name, entry in BACKENDS.items() if suffix.lower() in entry.capabilities.suffixes]


def choose_backend(artifact: str | Path, backend: str | None = None) -> BackendEntry:
    """The backend for ``artifact``: ``backend`` if given (checked against the suffix), else by suffix.

    By suffix, the first installed backend that reads the suffix wins (``.onnx``: ONNX Runtime, then
    OpenVINO).

    Raises:
        UsageError: unknown backend name, or a suffix no (or not this) backend reads.
        BackendError: no installed backend reads the suffix (names the package to install).
    """
    suffix = Path(artifact).suffix.lower()
    if backend is not None:
        entry = get_backend(backend)
        if suffix not in entry.capabilities.suffixes:
            readers = backends_for_suffix(suffix)
            hint = f"; '{suffix}' files are read by: {', '.join(readers)}" if readers else ""
            raise UsageError(
                f"{Path(artifact).name}: the {backend} backend reads {', '.join(entry.capabilities.suffixes)} "
                f"files, not '{suffix}'{hint}"
            )
        return entry
    candidates = backends_for_suffix(suffix)
    if not candidates:
        known = sorted({s for entry in BACKENDS.values() for s in entry.capabilities.suffixes})
        close = did_you_mean(suffix, known)
        raise UsageError(
            f"{Path(artifact).name}: no backend reads '{suffix or '(no suffix)'}' files. "
            f"Valid: {', '.join(known)}.{close} Pass --backend to choose one"
        )
    for name in candidates:
        if BACKENDS[name].installed:
            return BACKENDS[name]
    raise BackendError(BACKENDS[candidates[0]].missing_message())


def load_backend(
    artifact: str | Path, backend: str | None = None, device: str = "cpu", threads: int | None = None
) -> Backend:
    """Load an artifact into a backend chosen by name or by file suffix.

    The card comes from :func:`runtime.card.read_card` (sidecar or ONNX metadata); a backend may
    build it itself (``train``'s torch plug-in reads it from the checkpoint).

    Args:
        artifact: ``.onnx``, ``.xml`` (OpenVINO IR), ``.engine``/``.plan`` (TensorRT) or ``.pt`` file.
        backend: registry name; ``None`` picks by suffix.
        device: one of the backend's capability devices (``cpu``, ``cuda``, ``gpu``, ...).
        threads: intra-op CPU threads; ``None`` leaves the engine's default.

    Returns:
        The loaded backend (close it, or use it as a context manager).

    Raises:
        UsageError: unknown backend or device name (with did-you-mean), or a suffix it cannot read.
        BackendError: missing file or package, a device not present here, an unsupported precision,
            or an artifact the engine rejects.
    """
    entry = choose_backend(artifact, backend)
    capabilities = entry.capabilities
    if device not in capabilities.devices:
        raise unknown_name(f"device for the {entry.name} backend", device, list(capabilities.devices))
    artifact = Path(artifact)
    _check_ready(entry, artifact)
    loaded = entry.load_class().open(artifact, device=device, threads=threads)
    if loaded.card.precision not in capabilities.precisions:
        loaded.close()
        raise BackendError(
            f"{artifact.name}: the {entry.name} backend runs {', '.join(capabilities.precisions)} artifacts, "
            f"but its card says {loaded.card.precision}"
        )
    return loaded


def open_model(
    model: str | Path | bytes,
    backend: str | None = None,
    card: Card | None = None,
    device: str = "cpu",
    threads: int | None = None,
    **options,
) -> Backend:
    """Load a model for a check: from a file or from an ONNX model's bytes in memory, card optional.

    :func:`load_backend` is the runtime's door (a file and its card, precisions checked); this one
    serves export's and calibration's checks of models that have no card yet, or none on disk.

    Args:
        model: a file, or serialized ONNX bytes (ONNX Runtime unless ``backend`` says otherwise).
        backend: registry name; ``None`` picks by suffix (bytes: ``onnxruntime``).
        card: the model's card, or ``None`` (engine facts only).
        options: engine options of that backend (e.g. OpenVINO's ``inference_precision``).

    Raises:
        UsageError: unknown backend, or a suffix it cannot read.
        BackendError: missing package or file, or a model the engine rejects.
    """
    entry = get_backend(backend or "onnxruntime") if isinstance(model, bytes) else choose_backend(model, backend)
    _check_ready(entry, model)
    return entry.load_class()(model, card, device=device, threads=threads, **options)


def _check_ready(entry: BackendEntry, model: Path | str | bytes) -> None:
    """The engine package is installed and a model file exists (bytes in memory need no file)."""
    if not entry.installed:
        raise BackendError(entry.missing_message())
    if not isinstance(model, bytes) and not Path(model).is_file():
        raise BackendError(f"{model}: artifact not found; pass an existing {'/'.join(entry.capabilities.suffixes)} file")


_register_plugins()
