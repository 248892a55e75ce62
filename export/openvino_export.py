"""OpenVINO IR artifacts with a card: FP32, FP16 weights, INT8 through NNCF, or a Q/DQ ONNX read as is.

``ir_from_onnx`` converts an ONNX artifact with ``ov.convert_model`` and writes it with
``ov.save_model``. ``save_model`` compresses float weights to FP16 *by default*; here it does so only
when FP16 is asked for, so an FP32 IR really holds FP32 weights. INT8 comes from one of two places:

- NNCF post-training quantization (``nncf.quantize``) fed by the calibration array through a thin
  adapter (:func:`calibration_dataset`), optionally accuracy-controlled
  (``nncf.quantize_with_accuracy_control``) by the NME on held-out annotated faces;
- a Q/DQ ONNX from :mod:`export.ort`, which OpenVINO reads directly (Q/DQ pairs become
  FakeQuantize), so one calibration serves ONNX Runtime, TensorRT and OpenVINO.

The landmark decode stays outside the model, as everywhere: the validation function decodes with
:mod:`export.evaluation`, so its NME is the NME every other command reports.

``openvino`` and ``nncf`` are optional dependencies, imported only when needed; a missing one fails
before any work with the install command in the message.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from export.artifact import CardMismatch, ExportError, bytes_sha256, load_onnx, tool_versions
from export.calibration import CalibrationSet, check_for_card, read_calibration_array
from export.evaluation import nme
from runtime.face_crops import FaceCrops, crop_faces
from runtime.landmarker import frame_points
from runtime.backends import open_model
from export.qdq import qdq_summary
from runtime.annotations import read_pts_folder
from runtime.card import Card, file_sha256, read_card, sidecar_path, write_card
from runtime.errors import EdgemarkError, UsageError, first_line, unknown_name

logger = logging.getLogger(__name__)

PRESETS = ("performance", "mixed")
# NNCF's activation range estimators offered: its default (per-sample statistics aggregated, the
# preset's choice) or the global min and max over the calibration samples (ONNX Runtime's MinMax).
ACTIVATION_RANGES = ("default", "minmax")
# Where the card is embedded in the IR (``<rt_info><edgemark><card value="..."/>``); the sidecar is the reference.
RT_INFO_PATH = ("edgemark", "card")
# A Q/DQ ONNX computes its float layers (those mixed precision kept float, the arithmetic between a
# DequantizeLinear and the next QuantizeLinear) in FP32, and export.ort chose which layers stay float
# by measuring them in FP32. OpenVINO's default on a CPU with AVX-512 BF16 or AMX runs them in bf16,
# which moved OpenSeeFace's Q/DQ file by +0.10 NME points on faces68 (+0.008 -> +0.112; the exact Q/DQ
# computation +0.006) and its label-free distance to the exact Q/DQ points from 0.74 to 0.92 %. So an
# IR read from a Q/DQ file asks for FP32 float layers (``extra.openvino.inference_precision``).
QDQ_INFERENCE_PRECISION = "f32"
# NME budgets and results are in percent points of inter-ocular NME, as export.verify reports them.
NME_NORMALISATION = "inter_ocular"


def require_openvino(nncf: bool = False) -> None:
    """Fail before any work when ``openvino`` (or ``nncf`` for INT8) is not installed."""
    missing = [
        name for name in ("openvino", "nncf" if nncf else None) if name and importlib.util.find_spec(name) is None
    ]
    if missing:
        what = " and ".join(f"`{name}`" for name in missing)
        raise UsageError(
            f"OpenVINO export needs the {what} package{'s' if len(missing) > 1 else ''}; not installed. "
            "Install them with `pip install edgemark[openvino]` (openvino>=2024.0, nncf>=2.10)"
        )


@dataclass(frozen=True)
class IrConfig:
    """What :func:`ir_from_onnx` makes and how; bad combinations are rejected here, before any work.

    Attributes:
        model: ONNX artifact with a card (float, or Q/DQ INT8 from ``python -m export.ort``).
        output: the ``.xml`` to write (its ``.bin`` beside it, card in ``<output>.json``).
        fp16: store float weights as FP16 (``save_model(compress_to_fp16=True)``).
        int8: quantize with NNCF post-training quantization.
        calibration: calibration array for ``int8``.
        subset_size: calibration samples NNCF uses at most.
        preset: ``performance`` (symmetric activations) or ``mixed`` (asymmetric activations).
        ignore_first_conv_and_head: leave the first convolution and the last Conv/MatMul in float.
        keep_head_float: leave the regression head in float: every layer that produces or reads a
            tensor a fully-connected head reads element by element (the rule of
            :func:`export.ort_quantize.tensors_kept_at_minmax`, the ``head`` group of export.ort's
            mixed precision).
        float_types: OpenVINO operation types NNCF leaves in float (its ignored scope by type, e.g.
            ``GroupConvolution`` for depthwise convolutions); each must occur in the model.
        activation_ranges: ``default`` (NNCF's estimator for the preset) or ``minmax`` (global min and
            max over the calibration samples, as ONNX Runtime's MinMax).
        max_nme_drop: accuracy-controlled INT8: NNCF reverts layers to float until the inter-ocular
            NME on ``val_faces`` is at most this many percent points worse than the float model's.
        val_faces: folder of annotated faces; with ``max_nme_drop`` it drives the accuracy control,
            and in every mode the IR is compared with the ONNX model on them (written to the card).
    """

    model: Path
    output: Path
    fp16: bool = False
    int8: bool = False
    calibration: Path | None = None
    subset_size: int = 300
    preset: str = "performance"
    ignore_first_conv_and_head: bool = False
    keep_head_float: bool = False
    float_types: tuple[str, ...] = ()
    activation_ranges: str = "default"
    max_nme_drop: float | None = None
    val_faces: Path | None = None

    def __post_init__(self):
        if self.int8 and self.calibration is None:
            raise UsageError("--int8 needs --calib CALIB.npz (a calibration array; see export.calibration)")
        if not self.int8:
            given = [
                flag
                for flag, value in (
                    ("--calib", self.calibration is not None),
                    ("--ignore-first-conv-and-head", self.ignore_first_conv_and_head),
                    ("--keep-head-float", self.keep_head_float),
                    ("--float-types", bool(self.float_types)),
                    ("--activation-ranges", self.activation_ranges != "default"),
                    ("--max-nme-drop", self.max_nme_drop is not None),
                )
                if value
            ]
            if given:
                raise UsageError(f"{', '.join(given)} only make sense with --int8; add --int8 or drop them")
        if self.int8 and self.fp16:
            raise UsageError(
                "--fp16 cannot be combined with --int8: OpenVINO keeps a quantized model's float parts as they are "
                "(save_model ignores compress_to_fp16 for it); drop --fp16"
            )
        if self.preset not in PRESETS:
            raise unknown_name("preset", self.preset, PRESETS)
        if self.activation_ranges not in ACTIVATION_RANGES:
            raise unknown_name("activation ranges", self.activation_ranges, ACTIVATION_RANGES)
        if self.subset_size < 1:
            raise UsageError(f"--subset-size must be at least 1, got {self.subset_size}")
        if self.max_nme_drop is not None:
            if self.max_nme_drop < 0:
                raise UsageError(f"--max-nme-drop must be >= 0 (percent points of NME), got {self.max_nme_drop}")
            if self.val_faces is None:
                raise UsageError("--max-nme-drop needs --val-faces DIR (annotated faces held out from calibration)")


def calibration_dataset(calibration: CalibrationSet, input_name: str):
    """NNCF's view of a calibration array: one (1, 3, S, S) sample per item, fed by input name.

    One sample per item because NNCF's ``subset_size`` counts items and a model may fix its batch at 1.
    """
    import nncf

    return nncf.Dataset(list(calibration.chunks(1)), lambda sample: {input_name: sample})


def validation_items(crops: FaceCrops) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """One ``(input (1, 3, S, S), truth (1, K, 2), matrix (1, 2, 3))`` item per annotated face."""
    return [
        (crops.inputs[i : i + 1], crops.truth[i : i + 1], crops.matrices[i : i + 1]) for i in range(len(crops.inputs))
    ]


def nme_validation_fn(card: Card) -> Callable[[Any, Iterable], tuple[float, list[float]]]:
    """NNCF's ``validation_fn`` for landmarks: the negated NME in percent, overall and per face.

    NNCF's accuracy control assumes *higher is better* (``nncf.quantization.algorithms.
    accuracy_control.algorithm.calculate_accuracy_drop``: drop = initial - quantized), so the metric
    is ``-NME``; with ``DropType.ABSOLUTE`` its ``max_drop`` is then in NME percent points. Per-face
    values put NNCF in its metric mode, where it ranks layers by their effect on each face's NME.
    Decoding and scoring are export.evaluation's, so the NME is the one every command reports.
    """

    def validate(compiled_model, items: Iterable) -> tuple[float, list[float]]:
        items = list(items)
        output = compiled_model.output(0)
        input_name = compiled_model.input(0).get_any_name()
        raw = np.concatenate([compiled_model({input_name: inputs})[output] for inputs, _, _ in items])
        truth = np.concatenate([truth for _, truth, _ in items])
        matrices = np.concatenate([matrix for _, _, matrix in items])
        per_face = nme(frame_points(raw, card, matrices), truth, card, NME_NORMALISATION) * 100
        return -float(per_face.mean()), [-float(value) for value in per_face]

    return validate


def ir_from_onnx(config: IrConfig) -> Card:
    """Convert an ONNX artifact to an OpenVINO IR with its card (FP32, FP16 weights or INT8).

    Everything is checked before conversion (model, card, calibration array, faces); the IR is saved
    into a temporary folder beside the output and moved into place with its sidecar card, so a
    failure leaves no partial ``.xml``/``.bin``.

    Returns:
        The IR's card.

    Raises:
        UsageError: missing optional packages or a bad flag combination.
        ExportError, CardError, CardMismatch, CalibrationError: one line, nothing written.
    """
    require_openvino(nncf=config.int8)
    import openvino as ov

    started = time.perf_counter()
    output = check_ir_output_path(config.output, config.model)
    model = load_onnx(config.model)
    card = read_card(config.model)
    quantized_onnx = _check_precision(model, card, config.model)
    if config.int8 and quantized_onnx:
        raise UsageError(
            f"{config.model} is already INT8 Q/DQ; OpenVINO reads its Q/DQ directly: drop --int8 and --calib"
        )
    if quantized_onnx and config.fp16:
        raise UsageError(
            f"{config.model} is INT8 Q/DQ: save_model ignores compress_to_fp16 for quantized models; drop --fp16"
        )
    if config.int8 and card.precision != "fp32":
        raise CardMismatch(f"{config.model}: card says precision {card.precision}; quantize the fp32 artifact")
    calibration = read_calibration_array(config.calibration) if config.int8 else None
    if calibration is not None:
        check_for_card(calibration, card, config.calibration)
    crops = _validation_crops(config.val_faces, card, calibration) if config.val_faces else None

    try:
        # A Q/DQ ONNX is read by OpenVINO's ONNX frontend as the runtime reads it (core.read_model):
        # ov.convert_model's extra graph passes turned a mixed-precision PFLD Q/DQ graph into one the CPU
        # plugin rejects ("unexpected levels 163 for precision i8", OpenVINO 2026.4), while the same file
        # through read_model compiles and saves as an IR that runs bit-identically to it.
        ov_model = _read_qdq(model) if quantized_onnx else ov.convert_model(str(config.model))
    except Exception as error:  # noqa: BLE001 - OpenVINO's frontends raise several types with multi-line text
        raise ExportError(
            f"{config.model}: OpenVINO cannot convert it ({first_line(error)}); nothing written"
        ) from None
    logger.info("converted %s to OpenVINO in %.1f s", config.model, time.perf_counter() - started)

    quantization: dict[str, Any] = {}
    if config.int8:
        ov_model, quantization = _quantized(ov_model, config, card, calibration, crops)

    if quantized_onnx or config.int8:
        precision, weights = "int8", "int8"
    elif config.fp16 or card.precision == "fp16":
        precision, weights = "fp16", "fp16"
    else:
        precision, weights = "fp32", "fp32"
    new_card = card.with_changes(
        format="openvino",
        precision=precision,
        calibration=({**calibration.summary(), **quantization} if calibration is not None else dict(card.calibration)),
        tools={**card.tools, **tool_versions("openvino", *(("nncf",) if config.int8 else ()))},
        extra={
            **card.extra,
            "parent": str(config.model),
            "parent_sha256": bytes_sha256(Path(config.model).read_bytes()),
            "parent_precision": card.precision,
            "openvino": {
                "weights": weights,
                "compress_to_fp16": config.fp16,
                "int8_from": "nncf" if config.int8 else ("onnx_qdq" if quantized_onnx else None),
                # What the runtime backend asks OpenVINO to compute the float layers in (None: its default).
                **({"inference_precision": QDQ_INFERENCE_PRECISION} if quantized_onnx else {}),
            },
        },
    )
    new_card = save_ir(ov_model, new_card, output, config.fp16, config.model if crops is not None else None, crops)
    logger.info(
        "made %s (%s, %s weights) from %s in %.1f s",
        output,
        precision,
        weights,
        config.model,
        time.perf_counter() - started,
    )
    return new_card


def save_ir(
    ov_model,
    card: Card,
    output: Path,
    compress_to_fp16: bool,
    reference: Path | None = None,
    crops: FaceCrops | None = None,
) -> Card:
    """Write ``ov_model`` as ``output`` (+ ``.bin``) with its card, atomically.

    With ``reference`` and ``crops``, the saved IR (as written: compression included) is first run
    against the reference ONNX on those faces and the comparison goes into ``card.extra["evaluation"]``.

    Returns:
        The card as written.
    """
    import openvino as ov

    output.parent.mkdir(parents=True, exist_ok=True)
    binary = output.with_suffix(".bin")
    with tempfile.TemporaryDirectory(prefix=f".{output.name}.", dir=output.parent) as temporary:
        staged = Path(temporary) / output.name
        if reference is not None and crops is not None:
            probe = Path(temporary) / "probe.xml"
            ov.save_model(ov_model, str(probe), compress_to_fp16=compress_to_fp16)
            evaluation = ir_against_onnx(probe, reference, crops, card)
            card = card.with_changes(extra={**card.extra, "evaluation": evaluation})
        # The weights file does not depend on rt_info: save once to hash it, then again with the card.
        ov.save_model(ov_model, str(staged), compress_to_fp16=compress_to_fp16)
        card = card.with_changes(model_sha256=file_sha256(staged.with_suffix(".bin")))
        ov_model.set_rt_info(json.dumps(card.to_dict(), sort_keys=True), list(RT_INFO_PATH))
        ov.save_model(ov_model, str(staged), compress_to_fp16=compress_to_fp16)
        if file_sha256(staged.with_suffix(".bin")) != card.model_sha256:
            raise ExportError(f"{output}: OpenVINO wrote different weights on a second save; report this")
        try:
            os.replace(staged.with_suffix(".bin"), binary)
            os.replace(staged, output)
            write_card(output, card)
        except BaseException:
            output.unlink(missing_ok=True)
            binary.unlink(missing_ok=True)
            raise
    logger.info(
        "wrote %s + %s (%.1f MB, %s %s) and %s",
        output,
        binary.name,
        binary.stat().st_size / 1e6,
        card.precision,
        card.format,
        sidecar_path(output).name,
    )
    return card


def ir_against_onnx(ir: Path, reference: Path, crops: FaceCrops, card: Card) -> dict[str, Any]:
    """Run an IR (OpenVINO, FP32 compute) and its ONNX reference (ONNX Runtime) on face crops; compare.

    Returns:
        ``faces``, ``max_abs_output_diff``, inter-ocular NME (percent) of both and the change.
    """
    with open_model(ir, inference_precision="f32") as runner:  # f32: compare the artifact, not the CPU's bf16
        ir_output = runner.run(crops.inputs)
    with open_model(reference) as onnx_runner:
        reference_output = onnx_runner.run(crops.inputs)
    scores = {
        name: float(nme(frame_points(raw, card, crops.matrices), crops.truth, card, NME_NORMALISATION).mean() * 100)
        for name, raw in (("ir", ir_output), ("reference", reference_output))
    }
    report = {
        "faces": len(crops.inputs),
        "reference": str(reference),
        "max_abs_output_diff": float(np.max(np.abs(ir_output - reference_output))),
        "nme_inter_ocular": scores,
        "nme_change": scores["ir"] - scores["reference"],
    }
    logger.info(
        "IR vs ONNX on %d faces: max abs %.2e, NME %.3f %% vs %.3f %% (%+.3f)",
        report["faces"],
        report["max_abs_output_diff"],
        scores["ir"],
        scores["reference"],
        report["nme_change"],
    )
    return report


def check_ir_output_path(output: str | Path, source: str | Path) -> Path:
    """Refuse an output that is not an ``.xml`` file name or that would overwrite its input."""
    output = Path(output)
    if output.suffix != ".xml":
        raise UsageError(f"{output}: the output must be an .xml file name (its .bin and .xml.json go beside it)")
    if output.is_dir():
        raise UsageError(f"{output}: is a directory; pass a file name like model.xml")
    if Path(source).exists() and output.with_suffix(".bin").resolve() == Path(source).resolve():
        raise UsageError(f"{output}: its .bin would overwrite the input; choose another output name")
    return output


def _quantized(ov_model, config: IrConfig, card: Card, calibration: CalibrationSet, crops: FaceCrops | None):
    """NNCF INT8 of ``ov_model``, plain or accuracy-controlled; returns the model and the card's record."""
    import nncf

    started = time.perf_counter()
    ignored = first_conv_and_head(ov_model) if config.ignore_first_conv_and_head else []
    if config.keep_head_float:
        ignored = list(dict.fromkeys(ignored + head_region(ov_model, load_onnx(config.model))))
    float_types = _checked_float_types(ov_model, config.float_types)
    options: dict[str, Any] = {
        "preset": nncf.QuantizationPreset(config.preset),
        "subset_size": config.subset_size,
        "ignored_scope": (
            nncf.IgnoredScope(names=ignored, types=list(float_types)) if ignored or float_types else None
        ),
    }
    if config.activation_ranges == "minmax":
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet

        options["advanced_parameters"] = AdvancedQuantizationParameters(
            activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX
        )
    dataset = calibration_dataset(calibration, card.input_name)
    if len(calibration) < config.subset_size:
        logger.info("calibrating on all %d samples (fewer than --subset-size %d)", len(calibration), config.subset_size)
    record: dict[str, Any] = {
        "method": "nncf_ptq",
        "preset": config.preset,
        "subset_size": min(config.subset_size, len(calibration)),
        "ignored": ignored,
        "float_types": list(float_types),
        "activation_ranges": config.activation_ranges,
    }
    try:
        if config.max_nme_drop is None:
            quantized = nncf.quantize(ov_model, dataset, **options)
        else:
            validate = nme_validation_fn(card)
            items = validation_items(crops)
            quantized = nncf.quantize_with_accuracy_control(
                ov_model,
                dataset,
                nncf.Dataset(items, lambda item: {card.input_name: item[0]}),
                validate,
                max_drop=config.max_nme_drop,
                drop_type=nncf.DropType.ABSOLUTE,
                **options,
            )
    except EdgemarkError:
        raise
    except Exception as error:  # noqa: BLE001 - NNCF raises its own and backend errors
        raise ExportError(
            f"{config.model}: NNCF could not quantize it ({first_line(error)}); nothing written"
        ) from None
    if config.max_nme_drop is not None:
        record.update(_accuracy_control_record(ov_model, quantized, card, crops, config))
    logger.info(
        "quantized with NNCF (%s preset, %d samples%s) in %.1f s",
        config.preset,
        record["subset_size"],
        f", float: {', '.join(ignored)}" if ignored else "",
        time.perf_counter() - started,
    )
    return quantized, record


def _accuracy_control_record(float_model, quantized, card: Card, crops: FaceCrops, config: IrConfig) -> dict:
    """Measure what the accuracy control reached; refuse a result over budget rather than write it."""
    import openvino as ov

    validate = nme_validation_fn(card)
    items = validation_items(crops)
    core = ov.Core()
    nmes = {}
    for name, candidate in (("float", float_model), ("int8", quantized)):
        compiled = core.compile_model(candidate, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        nmes[name] = -validate(compiled, items)[0]
    drop = nmes["int8"] - nmes["float"]
    if drop > config.max_nme_drop + 1e-9:
        raise ExportError(
            f"accuracy-controlled INT8 is {drop:.3f} NME points worse than float on {config.val_faces} "
            f"(budget --max-nme-drop {config.max_nme_drop}); nothing written. Raise the budget, add calibration "
            "samples, or try --ignore-first-conv-and-head"
        )
    return {
        "accuracy_control": {
            "max_nme_drop": config.max_nme_drop,
            "metric": f"-NME {NME_NORMALISATION} % (higher is better, NNCF's convention)",
            "val_faces": str(config.val_faces),
            "faces": len(items),
            "nme_float": nmes["float"],
            "nme_int8": nmes["int8"],
            "nme_drop": drop,
            "fake_quantize_nodes": sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ordered_ops()),
        }
    }


def _checked_float_types(ov_model, float_types: Iterable[str]) -> tuple[str, ...]:
    """``float_types`` as given, each checked to occur in the model (a typo would silently ignore nothing)."""
    present = {op.get_type_name() for op in ov_model.get_ordered_ops()}
    for name in float_types:
        if name not in present:
            raise unknown_name(
                "OpenVINO operation type in --float-types",
                name,
                tuple(sorted(present - {"Parameter", "Constant", "Result"})),
            )
    return tuple(dict.fromkeys(float_types))


def head_region(ov_model, onnx_model: onnx.ModelProto) -> list[str]:
    """OpenVINO names of the layers that produce or read the regression head's tensors.

    The head's tensors are those a fully-connected head reads element by element
    (:func:`export.ort_quantize.tensors_kept_at_minmax`); their calibrated ranges fail together on
    faces unlike the calibration set's. OpenVINO names a layer after its ONNX node (a bias split off
    becomes ``<node>/WithoutBiases``), which is how the ONNX nodes are found in the OpenVINO model.
    """
    from export.ort_quantize import tensors_kept_at_minmax

    head = set(tensors_kept_at_minmax(onnx_model))
    nodes = {
        node.name
        for node in onnx_model.graph.node
        if node.name and (set(node.output) & head or (node.op_type in ("Conv", "Gemm", "MatMul") and set(node.input) & head))
    }
    return [op.get_friendly_name() for op in ov_model.get_ordered_ops() if op.get_friendly_name().split("/")[0] in nodes]


def _read_qdq(model: onnx.ModelProto):
    """A Q/DQ ONNX model in OpenVINO, in the form OpenVINO computes as the file means
    (:func:`export.encodings.openvino_form`), by the first of OpenVINO's two ONNX readers whose
    result the CPU plugin compiles.

    Neither reader takes every Q/DQ graph (OpenVINO 2026.4): ``convert_model``'s extra passes turned
    a mixed-precision PFLD graph into one the CPU plugin rejects ("unexpected levels 163 for precision
    i8") which ``Core.read_model`` reads fine, and ``read_model`` rejects the sub-pixel upsampling of
    a u8s8 resnet18_deconv ("argument shapes are inconsistent") which ``convert_model`` reads fine.
    """
    import openvino as ov

    from export.encodings import openvino_form

    core = ov.Core()
    problems = []
    with tempfile.TemporaryDirectory(prefix="edgemark-ov-") as temporary:
        path = Path(temporary) / "model.onnx"
        onnx.save(openvino_form(model), str(path))
        for name, reader in (("convert_model", ov.convert_model), ("read_model", core.read_model)):
            try:
                ov_model = reader(str(path))
                core.compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
                return ov_model
            except Exception as error:  # noqa: BLE001 - OpenVINO raises RuntimeError with multi-line C++ traces
                lines = [line for line in str(error).splitlines() if line.strip()]
                problems.append(f"{name}: {lines[-1][:200] if lines else type(error).__name__}")
    raise ExportError(f"OpenVINO cannot read this Q/DQ model ({'; '.join(problems)}); nothing written")


def first_conv_and_head(ov_model) -> list[str]:
    """Names of the first convolution and of the last Conv/MatMul (the head), for NNCF's ignored scope."""
    weighted = [
        op.get_friendly_name()
        for op in ov_model.get_ordered_ops()
        if op.get_type_name() in ("Convolution", "GroupConvolution", "MatMul")
    ]
    if not weighted:
        raise UsageError("--ignore-first-conv-and-head: the model has no Convolution or MatMul")
    return list(dict.fromkeys([weighted[0], weighted[-1]]))


def _check_precision(model: onnx.ModelProto, card: Card, path: Path) -> bool:
    """Whether the model is Q/DQ INT8; the card's precision must agree."""
    quantized = qdq_summary(model)["dequantize_linear"] > 0
    if quantized and card.precision != "int8":
        raise CardMismatch(f"{path}: has Q/DQ nodes but its card says precision {card.precision}; re-export it")
    if card.precision == "int8" and not quantized:
        raise CardMismatch(f"{path}: card says int8 but the model has no Q/DQ nodes; re-export it")
    return quantized


def _validation_crops(faces: Path, card: Card, calibration: CalibrationSet | None) -> FaceCrops:
    samples = read_pts_folder(faces)
    if calibration is not None:
        calibrated = {
            Path(str(entry.get("image", ""))).name
            for entry in calibration.manifest.get("samples", [])
            if isinstance(entry, dict)
        }
        overlap = sorted(sample.image.name for sample in samples if sample.image.name in calibrated)
        if overlap:
            logger.warning(
                "%d validation faces are also calibration samples (%s): the NME they give is optimistic",
                len(overlap),
                ", ".join(overlap[:3]),
            )
    return crop_faces(samples, card)

