"""TensorRT engines from ONNX artifacts: a build plan computed anywhere, executed where TensorRT runs.

:func:`plan_from_onnx` turns (ONNX model, card, flags) into a :class:`TrtBuildPlan` with plain Python
and the ``onnx`` package only: network and builder flags, the optimization profile, workspace, timing
cache and the equivalent ``trtexec`` command line. Everything a user can get wrong is rejected there,
before any work. :func:`engine_from_onnx` executes a plan: it makes the Q/DQ ONNX first when INT8 is
asked for a float model (:mod:`export.ort_quantize`'s code path), then imports ``tensorrt`` lazily
and builds. Where TensorRT or an NVIDIA GPU is missing, the Q/DQ ONNX and a ``<engine>.trtexec.sh``
script are still written, so the engine can be built on the target (a Jetson, a GPU server).

Written against the documented TensorRT 10.x and 11.x Python API:

- networks are always explicit-batch (``EXPLICIT_BATCH`` is deprecated and ignored since 10.0);
- INT8 is explicit quantization: a Q/DQ ONNX built as a strongly typed network
  (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``; 11.x always types strongly and ignores the
  flag). Strongly typed networks take no precision builder flags, and 11.x removed
  ``BuilderFlag.INT8`` and the ``IInt8Calibrator`` API altogether, so neither is ever used;
- FP16 is ``BuilderFlag.FP16`` on a weakly typed network (10.x). 11.x removed it too: there the
  ONNX must be converted to mixed precision first (ModelOpt AutoCast), which this module says
  rather than silently building FP32.
"""

from __future__ import annotations

import hashlib

import ctypes
import importlib.util
import json
import logging
import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from export.artifact import CardMismatch, ExportError, bytes_sha256, load_onnx, save_artifact, tool_versions
from export.calibration import CalibrationError, read_calibration_array
from export.encodings import ENCODING_TARGETS, encoding_of, s8s8_from_u8s8
from export.qdq import qdq_summary
from runtime.card import Card, atomic_write_bytes, read_card, write_card
from runtime.errors import UsageError, first_line

logger = logging.getLogger(__name__)

ENGINE_SUFFIXES = (".engine", ".plan")
# min / opt / max batch of the optimization profile when a dynamic-batch model is built without flags.
DEFAULT_BATCHES = (1, 4, 16)
DEFAULT_WORKSPACE_MB = 1024
STRONGLY_TYPED = "STRONGLY_TYPED"
FP16 = "FP16"
INSTALL_HINT = "pip install edgemark[trt] on a CUDA machine"
AUTOCAST_HINT = "python -m modelopt.onnx.autocast --onnx_path MODEL.onnx --output_path MODEL_fp16.onnx"


class TensorRtUnavailable(ExportError):
    """TensorRT or an NVIDIA GPU is missing here; the inputs for building elsewhere were written."""


@dataclass(frozen=True)
class TrtConfig:
    """Flags of ``python -m export.trt``; combinations that cannot work are rejected here.

    Attributes:
        model: ONNX artifact with a card (float, or Q/DQ INT8 from ``python -m export.ort``).
        output: the engine to write (``.engine`` or ``.plan``); its card goes to ``<output>.json``.
        fp16: let TensorRT pick FP16 kernels (``BuilderFlag.FP16``, TensorRT 10.x).
        int8: explicit-quantization INT8 from a Q/DQ ONNX (made from ``calibration`` for a float model).
        calibration: calibration array, for ``int8`` on a float model.
        max_nme_drop: with ``calibration``, keep the fewest layers float that hold the label-free NME
            against the float model within this budget (``python -m export.ort --max-nme-drop``).
        min_batch, opt_batch, max_batch: the optimization profile's batch sizes (``None``: defaults
            1/4/16 for a dynamic batch, the fixed batch otherwise).
        timing_cache: timing cache file to read (if present) and update.
        workspace_mb: builder workspace memory pool limit in MiB.
    """

    model: Path
    output: Path
    fp16: bool = False
    int8: bool = False
    calibration: Path | None = None
    max_nme_drop: float | None = None
    min_batch: int | None = None
    opt_batch: int | None = None
    max_batch: int | None = None
    timing_cache: Path | None = None
    workspace_mb: int = DEFAULT_WORKSPACE_MB

    def __post_init__(self):
        if Path(self.output).suffix not in ENGINE_SUFFIXES:
            raise UsageError(
                f"{self.output}: the output must end in {' or '.join(ENGINE_SUFFIXES)} (its card goes beside it)"
            )
        if self.fp16 and self.int8:
            raise UsageError(
                "--fp16 cannot be combined with --int8: an INT8 engine is a strongly typed network that takes its "
                "types from the Q/DQ ONNX, and TensorRT rejects precision builder flags on it; drop --fp16"
            )
        if self.calibration is not None and not self.int8:
            raise UsageError("--calib is only used with --int8; add --int8 or drop --calib")
        if self.max_nme_drop is not None and self.calibration is None:
            raise UsageError(
                "--max-nme-drop chooses the float layers while quantizing with --calib; add --calib CALIB.npz "
                "(a Q/DQ model made by `python -m export.ort --max-nme-drop` already carries its choice)"
            )
        for flag, value in (
            ("--min-batch", self.min_batch),
            ("--opt-batch", self.opt_batch),
            ("--max-batch", self.max_batch),
        ):
            if value is not None and value < 1:
                raise UsageError(f"{flag} must be at least 1, got {value}")
        if self.workspace_mb < 1:
            raise UsageError(f"--workspace-mb must be at least 1, got {self.workspace_mb}")
        if self.timing_cache is not None and Path(self.timing_cache).is_dir():
            raise UsageError(f"--timing-cache {self.timing_cache} is a directory; pass a file name like trt.cache")


@dataclass(frozen=True)
class TrtBuildPlan:
    """Everything a TensorRT build does, decided without TensorRT.

    Attributes:
        source: the ONNX artifact given.
        onnx: the ONNX TensorRT parses: ``source``, or the Q/DQ ONNX made from it for INT8.
        engine: the engine to write.
        precision: the engine card's precision (``fp32``, ``fp16``, ``int8``).
        calibration: calibration array to make ``onnx`` from ``source`` first (INT8 from float), else ``None``.
        reencode: ``source`` is ONNX Runtime's ``u8s8`` Q/DQ; ``onnx`` is its lossless ``s8s8`` form
            (:func:`export.encodings.s8s8_from_u8s8`), the one TensorRT accepts.
        input_name: the image input.
        input_shape: the ONNX input shape, ``None`` for a symbolic batch.
        network_flags: ``NetworkDefinitionCreationFlag`` member names for ``create_network``.
        builder_flags: ``BuilderFlag`` member names set on the builder config.
        profile: (min, opt, max) input shapes of the optimization profile; ``None`` for a fixed-shape model.
        workspace_bytes: ``MemoryPoolType.WORKSPACE`` limit.
        timing_cache: timing cache file, or ``None``.
        card: the source ONNX's card (the engine's card is made from it).
    """

    source: Path
    onnx: Path
    engine: Path
    precision: str
    calibration: Path | None
    input_name: str
    input_shape: tuple[int | None, ...]
    network_flags: tuple[str, ...]
    builder_flags: tuple[str, ...]
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None
    workspace_bytes: int
    timing_cache: Path | None
    card: Card = field(repr=False, compare=False)
    reencode: bool = False
    max_nme_drop: float | None = None

    @property
    def script(self) -> Path:
        """``<engine>.trtexec.sh``: the build as a shell script for the target."""
        return self.engine.with_name(self.engine.name + ".trtexec.sh")

    @property
    def trtexec_args(self) -> tuple[str, ...]:
        """The same build as ``trtexec`` arguments (TensorRT 10.x), paths relative to the engine's folder."""
        folder = self.engine.parent
        args = ["trtexec", f"--onnx={_relative(self.onnx, folder)}", f"--saveEngine={self.engine.name}"]
        if self.profile is not None:
            for name, shape in zip(("min", "opt", "max"), self.profile):
                args.append(f"--{name}Shapes={self.input_name}:{'x'.join(map(str, shape))}")
        args.append(f"--memPoolSize=workspace:{self.workspace_bytes >> 20}M")
        if STRONGLY_TYPED in self.network_flags:
            args.append("--stronglyTyped")
        if FP16 in self.builder_flags:
            args.append("--fp16")
        if self.timing_cache is not None:
            args.append(f"--timingCacheFile={_relative(self.timing_cache, folder)}")
        return tuple(args)

    @property
    def trtexec_command(self) -> str:
        """:attr:`trtexec_args` as one shell-quoted line, to run in the engine's folder."""
        return shlex.join(self.trtexec_args)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary for logs, ``--dry-run`` and the engine card."""
        return {
            "source": str(self.source),
            "onnx": str(self.onnx),
            "engine": str(self.engine),
            "precision": self.precision,
            "calibration": str(self.calibration) if self.calibration else None,
            "reencoded_from": "u8s8" if self.reencode else None,
            "input": {"name": self.input_name, "shape": list(self.input_shape)},
            "network_flags": list(self.network_flags),
            "builder_flags": list(self.builder_flags),
            "profile": (
                dict(zip(("min", "opt", "max"), (list(shape) for shape in self.profile))) if self.profile else None
            ),
            "workspace_mb": self.workspace_bytes >> 20,
            "timing_cache": str(self.timing_cache) if self.timing_cache else None,
            "trtexec": self.trtexec_command,
        }


def plan_from_onnx(config: TrtConfig) -> TrtBuildPlan:
    """Decide the whole build from the ONNX model, its card and the flags; no TensorRT needed.

    Raises:
        UsageError: flags that do not fit the model (batch range on a fixed batch, min > opt, INT8
            on a float model without calibration, ...).
        ExportError, CardError, CardMismatch, CalibrationError: unusable model, card or calibration.
    """
    model_path, engine = Path(config.model), Path(config.output)
    if engine.is_dir():
        raise UsageError(f"{engine}: is a directory; pass a file name like model.engine")
    model = load_onnx(model_path)
    card = read_card(model_path)
    quantized = qdq_summary(model)["dequantize_linear"] > 0
    if quantized and card.precision != "int8":
        raise CardMismatch(f"{model_path}: has Q/DQ nodes but its card says precision {card.precision}; re-export it")
    if card.precision == "int8" and not quantized:
        raise CardMismatch(f"{model_path}: card says int8 but the model has no Q/DQ nodes; re-export it")

    calibration = None
    if quantized and not config.int8:
        raise UsageError(f"{model_path} is an INT8 Q/DQ model; pass --int8 to build it as a strongly typed INT8 engine")
    if quantized and config.calibration is not None:
        raise UsageError(f"{model_path} is already INT8 Q/DQ (calibrated); drop --calib")
    if quantized and config.fp16:
        raise UsageError(f"{model_path} is INT8 Q/DQ: its types come from the model; drop --fp16")
    if config.int8 and not quantized:
        if card.precision != "fp32":
            raise CardMismatch(f"{model_path}: card says precision {card.precision}; quantize the fp32 artifact")
        if config.calibration is None:
            raise UsageError(
                f"--int8 on the float model {model_path} needs --calib CALIB.npz to make its Q/DQ ONNX "
                "(or pass a Q/DQ ONNX from `python -m export.ort --int8 ...`)"
            )
        calibration = Path(config.calibration)
        samples = read_calibration_array(calibration).inputs
        if samples.shape[1:] != (3, card.input_size, card.input_size) or len(samples) < 1:
            raise CalibrationError(
                f"{calibration}: holds {len(samples)} samples of {samples.shape[1:]}, but {model_path} takes "
                f"(3, {card.input_size}, {card.input_size}); build it with this model's card"
            )

    # ONNX Runtime's fast form (unsigned activations) is re-encoded losslessly to TensorRT's signed one.
    reencode = quantized and encoding_of(card.extra) == "u8s8"
    onnx_path = engine.with_suffix(".qdq.onnx") if calibration is not None or reencode else model_path
    written = [engine, engine.with_name(engine.name + ".json"), engine.with_name(engine.name + ".trtexec.sh")]
    if calibration is not None or reencode:
        written += [onnx_path, onnx_path.with_name(onnx_path.name + ".json")]
    for path in written:
        if path.exists() and path.resolve() in (model_path.resolve(), calibration.resolve() if calibration else None):
            raise UsageError(f"{path}: would overwrite the input model; choose another output name")

    input_name, shape = _image_input(model, card, model_path)
    profile = _profile(shape, config, model_path)
    plan = TrtBuildPlan(
        source=model_path,
        onnx=onnx_path,
        engine=engine,
        precision="int8" if config.int8 else ("fp16" if config.fp16 else card.precision),
        calibration=calibration,
        input_name=input_name,
        input_shape=shape,
        network_flags=(STRONGLY_TYPED,) if config.int8 else (),
        builder_flags=(FP16,) if config.fp16 else (),
        profile=profile,
        workspace_bytes=config.workspace_mb << 20,
        timing_cache=Path(config.timing_cache) if config.timing_cache is not None else None,
        card=card,
        reencode=reencode,
        max_nme_drop=config.max_nme_drop,
    )
    logger.info("TensorRT plan for %s: %s", engine, plan.trtexec_command)
    return plan


def engine_from_onnx(plan: TrtBuildPlan) -> Card:
    """Execute a build plan: Q/DQ ONNX if needed, then the engine and its card, each written atomically.

    The trtexec script (``<engine>.trtexec.sh``, with the card it writes beside the engine) is always
    written too. Where TensorRT or an NVIDIA GPU is missing, nothing else is attempted.

    Returns:
        The engine's card.

    Raises:
        TensorRtUnavailable: no ``tensorrt`` package or no NVIDIA GPU here (the Q/DQ ONNX and the
            script were written; no engine).
        ExportError: TensorRT could not parse or build the model (nothing written but the script).
    """
    started = time.perf_counter()
    card = plan.card
    if plan.calibration is not None:
        from export.ort_quantize import Int8Config, int8_from_onnx

        card = int8_from_onnx(
            Int8Config(plan.source, plan.calibration, plan.onnx, encoding="s8s8", max_nme_drop=plan.max_nme_drop)
        )
    elif plan.reencode:
        signed = s8s8_from_u8s8(load_onnx(plan.source))
        quantization = {**card.extra["quantization"], "encoding": "s8s8", "encoding_for": ENCODING_TARGETS["s8s8"]}
        card = card.with_changes(extra={**card.extra, "quantization": quantization, "reencoded_from": str(plan.source)})
        save_artifact(signed, card, plan.onnx)
    engine_card = _engine_card(plan, card)
    write_trtexec_script(plan, engine_card)

    version, gpu = tensorrt_version(), cuda_gpu_name()
    if version is None or gpu is None:
        found = (
            "found neither"
            if version is None and gpu is None
            else f"found an NVIDIA GPU ({gpu}) but no importable `tensorrt` package"
            if version is None
            else f"found tensorrt {version} but no NVIDIA GPU (the CUDA driver, libcuda, reports none)"
        )
        what = (
            "The Q/DQ ONNX and trtexec command are" if plan.precision == "int8" else "The ONNX and trtexec command are"
        )
        raise TensorRtUnavailable(
            f"TensorRT engine build needs the `tensorrt` package and an NVIDIA GPU; {found}. "
            f"{what} at {plan.onnx} and {plan.script} — build on the target with that command, or {INSTALL_HINT}."
        )

    import tensorrt as trt

    serialized, cache = _build(plan, trt)
    if plan.timing_cache is not None and cache is not None:
        atomic_write_bytes(plan.timing_cache, cache)
    engine_card = engine_card.with_changes(
        tools={**engine_card.tools, "tensorrt": trt.__version__},
        extra={**engine_card.extra, "built_by": "export.trt", "gpu": gpu},
        model_sha256=hashlib.sha256(bytes(serialized)).hexdigest(),
    )
    atomic_write_bytes(plan.engine, serialized)
    try:
        write_card(plan.engine, engine_card)
    except BaseException:
        plan.engine.unlink(missing_ok=True)
        raise
    logger.info(
        "built %s (%.1f MB, %s, TensorRT %s on %s) in %.1f s",
        plan.engine,
        len(serialized) / 1e6,
        plan.precision,
        trt.__version__,
        gpu,
        time.perf_counter() - started,
    )
    return engine_card


def write_trtexec_script(plan: TrtBuildPlan, card: Card) -> Path:
    """Write ``<engine>.trtexec.sh``: cd to its folder, run trtexec, put the engine's card beside it."""
    card_json = json.dumps({**card.to_dict(), "extra": {**card.extra, "built_by": "trtexec script"}}, indent=2)
    lines = [
        "#!/bin/sh",
        f"# Builds {plan.engine.name} from {plan.onnx.name} with TensorRT's trtexec; written by `python -m export.trt`.",
        "# Run it on the target, beside the files it names (paths are relative to this script's folder).",
        "# Flags are TensorRT 10.x. On 11.x networks are always strongly typed (--stronglyTyped is then implied),",
        f"# and --fp16 no longer exists: convert the ONNX first ({AUTOCAST_HINT}) and build that.",
        "set -e",
        'cd "$(dirname "$0")"',
        " \\\n    ".join(shlex.quote(arg) for arg in plan.trtexec_args),
        f"cat > {shlex.quote(plan.engine.name + '.json')} <<'EDGEMARK_CARD'",
        card_json,
        "EDGEMARK_CARD",
        f'echo "built {plan.engine.name} and its card {plan.engine.name}.json"',
        "",
    ]
    atomic_write_bytes(plan.script, "\n".join(lines).encode())
    plan.script.chmod(0o755 & ~_umask())
    logger.info("wrote %s", plan.script)
    return plan.script


def tensorrt_version() -> str | None:
    """The importable ``tensorrt`` package's version, or ``None`` (absent, or PyPI's download stub)."""
    if importlib.util.find_spec("tensorrt") is None:
        return None
    try:
        import tensorrt
    except Exception as error:  # noqa: BLE001 - a stub or broken install raises anything on import
        logger.info("tensorrt is installed but does not import (%s)", first_line(error))
        return None
    return str(getattr(tensorrt, "__version__", "unknown"))


def cuda_gpu_name() -> str | None:
    """Name of the first NVIDIA GPU the CUDA driver reports, or ``None``; needs no Python CUDA package."""
    for library in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            cuda = ctypes.CDLL(library)
            break
        except OSError:
            continue
    else:
        return None
    try:
        count, device = ctypes.c_int(0), ctypes.c_int(0)
        if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
            return None
        name = ctypes.create_string_buffer(256)
        if cuda.cuDeviceGet(ctypes.byref(device), 0) != 0 or cuda.cuDeviceGetName(name, 256, device) != 0:
            return "NVIDIA GPU"
        return name.value.decode(errors="replace") or "NVIDIA GPU"
    except (AttributeError, OSError):
        return None


def _build(plan: TrtBuildPlan, trt) -> tuple[bytes, bytes | None]:
    """Run the plan through the TensorRT builder; returns the serialized engine and timing cache."""
    missing = [name for name in plan.builder_flags if not hasattr(trt.BuilderFlag, name)]
    if missing:
        raise ExportError(
            f"TensorRT {trt.__version__} has no BuilderFlag.{missing[0]} (11.x removed weak typing): convert the ONNX "
            f"to mixed precision first ({AUTOCAST_HINT}) and build that without --fp16"
        )
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    flags = 0
    for name in plan.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(plan.onnx)):
        errors = [str(parser.get_error(index)) for index in range(parser.num_errors)]
        raise ExportError(
            f"{plan.onnx}: TensorRT's ONNX parser rejects it ({first_line(errors[0]) if errors else 'no detail'}"
            f"{f'; {len(errors) - 1} more' if len(errors) > 1 else ''}); nothing built"
        )
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if plan.profile is not None:
        profile = builder.create_optimization_profile()
        profile.set_shape(plan.input_name, *plan.profile)
        config.add_optimization_profile(profile)
    if plan.timing_cache is not None:
        previous = plan.timing_cache.read_bytes() if plan.timing_cache.is_file() else b""
        cache = config.create_timing_cache(previous)
        # ignore_mismatch=False: a cache from another GPU or TensorRT version is refused, not mixed in.
        if not config.set_timing_cache(cache, False):
            logger.warning("TensorRT did not accept the timing cache %s; building without it", plan.timing_cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(
            f"TensorRT could not build {plan.onnx} (see its log above); nothing written but {plan.script.name}"
        )
    cache_bytes = None
    if plan.timing_cache is not None and config.get_timing_cache() is not None:
        cache_bytes = bytes(config.get_timing_cache().serialize())
    return bytes(serialized), cache_bytes


def _engine_card(plan: TrtBuildPlan, card: Card) -> Card:
    """The engine's card: the ONNX card (the Q/DQ one for INT8) with format, precision and the plan."""
    return card.with_changes(
        format="tensorrt",
        precision=plan.precision,
        tools={**card.tools, **tool_versions("onnx")},
        batch=None if plan.profile is not None else plan.input_shape[0],
        extra={
            **card.extra,
            "parent": str(plan.onnx),
            "parent_sha256": bytes_sha256(plan.onnx.read_bytes()),
            "tensorrt_plan": {key: value for key, value in plan.to_dict().items() if key != "trtexec"},
            "trtexec": plan.trtexec_command,
        },
    )


def _image_input(model: onnx.ModelProto, card: Card, path: Path) -> tuple[str, tuple[int | None, ...]]:
    """The one image input and its shape: batch ``None`` when symbolic, spatial dims from the card if symbolic."""
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    if len(inputs) != 1:
        raise CardMismatch(f"{path}: expected one image input, found {len(inputs)} ({[v.name for v in inputs]})")
    dims = [dim.dim_value if dim.HasField("dim_value") else None for dim in inputs[0].type.tensor_type.shape.dim]
    expected = (None, 3, card.input_size, card.input_size)
    if len(dims) != 4 or any(d is not None and e is not None and d != e for d, e in zip(dims, expected)):
        raise CardMismatch(
            f"{path}: input '{inputs[0].name}' is {'x'.join('?' if d is None else str(d) for d in dims)} but the card "
            f"says Nx3x{card.input_size}x{card.input_size}"
        )
    return inputs[0].name, (dims[0], 3, card.input_size, card.input_size)


def _profile(shape: tuple[int | None, ...], config: TrtConfig, path: Path):
    """(min, opt, max) shapes with the batch replaced; ``None`` for a fixed batch (no profile needed)."""
    given = {"--min-batch": config.min_batch, "--opt-batch": config.opt_batch, "--max-batch": config.max_batch}
    fixed = shape[0]
    if fixed is not None:
        wrong = [f"{flag} {value}" for flag, value in given.items() if value is not None and value != fixed]
        if wrong:
            raise UsageError(
                f"{path} has a fixed batch of {fixed}, so {', '.join(wrong)} cannot apply; omit the batch flags, "
                "or re-import the model with a dynamic batch (python -m export.onnx --import ... without --keep-batch)"
            )
        return None
    batches = [value if value is not None else default for value, default in zip(given.values(), DEFAULT_BATCHES)]
    if not batches[0] <= batches[1] <= batches[2]:
        shown = ", ".join(
            f"{flag.lstrip('-').split('-')[0]} {value}{' (default)' if given[flag] is None else ''}"
            for flag, value in zip(given, batches)
        )
        raise UsageError(f"the batch profile needs min <= opt <= max; got {shown}. Adjust --min/--opt/--max-batch")
    return tuple((batch, *shape[1:]) for batch in batches)


def _relative(path: Path, folder: Path) -> str:
    return os.path.relpath(Path(path).resolve(), Path(folder).resolve())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

