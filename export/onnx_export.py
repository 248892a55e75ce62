"""ONNX artifacts with a card: export an edgemark checkpoint, or import a third-party ONNX model.

Both paths check the model before anything is written (ONNX checker, output shape against the card,
a run in ONNX Runtime) and write the artifact and its sidecar atomically. The command-line front end
is :mod:`export.onnx`; this module is named ``onnx_export`` so that ``import onnx`` anywhere keeps
meaning the ``onnx`` package.
"""
from __future__ import annotations

import importlib.util
import io
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from export.artifact import (
    CardMismatch,
    ExportError,
    bytes_sha256,
    check_onnx,
    check_output_path,
    load_onnx,
    save_artifact,
    tool_versions,
)
from runtime.face_crops import crop_faces
from runtime.annotations import read_pts_folder
from runtime.backends import open_model
from runtime.card import Card, onnx_graph_sha256
from runtime.errors import UsageError, first_line

logger = logging.getLogger(__name__)

BATCH_DIM = "batch"
INPUT_NAME = "input"
HEATMAP_OUTPUT = "heatmaps"
# The legacy exporter's range; 13 is the first opset with per-channel Q/DQ (axis on DequantizeLinear).
OPSETS = range(13, 21)
PARITY_FACES = 8
# Int8 models are not bit-exact across engines: ONNX Runtime and torch sum a convolution in different
# orders, a value ~1e-6 apart can round to the next int8 step, and each such step spreads through
# every later layer. Measured on the faces68 mobilenetv3_edge QAT model (heatmaps peak ~1.05): max abs
# 0.064, mean 0.0045 on faces68. The limit catches a wrong scale, axis or fold, not those steps.
QAT_MAX_ABS = 0.2


# --------------------------------------------------------------------------------------------------
# checkpoint -> ONNX


def onnx_from_checkpoint(
    checkpoint: str | Path,
    output: str | Path,
    opset: int = 17,
    simplify: bool = False,
    parity_images: str | Path | None = None,
    max_abs: float | None = None,
) -> Card:
    """Export an edgemark checkpoint to ONNX with a dynamic batch and its card.

    A QAT checkpoint (``python -m train --qat``) exports as a symmetric int8 Q/DQ model of the kind
    :mod:`export.ort_quantize` writes (int8 weight initializers per output channel, per-tensor
    activations, float biases), checked with :func:`export.qdq.check_trt_ready`, with an int8 card.

    Args:
        checkpoint: ``.pt`` file written by ``python -m train``.
        output: the ``.onnx`` file to write (its card goes to ``output + ".json"`` too).
        opset: ONNX opset (13-20).
        simplify: run onnx-simplifier (needs the ``onnxsim`` package).
        parity_images: folder of annotated faces to compare torch and ONNX Runtime on; seeded
            random inputs when ``None``.
        max_abs: largest allowed absolute difference between torch and ONNX Runtime outputs
            (default: 1e-4, or :data:`QAT_MAX_ABS` for a QAT checkpoint).

    Returns:
        The card written with the artifact.

    Raises:
        ExportError: the export, the checker or the parity check failed (nothing is written).
        CardMismatch: the exported output does not have the checkpoint's heatmap shape.
    """
    output = check_output_path(output, checkpoint)
    if opset not in OPSETS:
        raise UsageError(f"--opset {opset} is not supported; use {OPSETS.start}-{OPSETS.stop - 1} (17 is the default)")
    if simplify:
        require_onnxsim()
    import torch

    from train.checkpoint import card_from_checkpoint, model_from_checkpoint

    started = time.perf_counter()
    model, state = model_from_checkpoint(checkpoint)
    card = card_from_checkpoint(
        state,
        checkpoint,
        input_name=INPUT_NAME,
        tools=tool_versions("torch", "onnx", "onnxruntime"),
    )
    inputs, described = parity_inputs(card, parity_images)
    onnx_model = onnx.load_from_string(torch_to_onnx(model, card.input_size, opset))
    check_onnx(onnx_model, f"{output} (exported from {checkpoint})")
    if simplify:
        onnx_model = simplified(onnx_model)
    quantization = qat_quantization(onnx_model, checkpoint) if state.get("qat") else None
    if max_abs is None:
        max_abs = QAT_MAX_ABS if quantization else 1e-4
    with open_model(onnx_model.SerializeToString()) as runner:
        exported = runner.run(inputs, batch_size=len(inputs))  # one batch: proves the dynamic batch too
        output_name = runner.output_names[0]
    check_heatmap_output(exported, card, f"{checkpoint}")
    with torch.no_grad():
        reference = model(torch.from_numpy(inputs))
    reference = (reference[0] if isinstance(reference, (tuple, list)) else reference).numpy()
    difference = float(np.max(np.abs(reference - exported)))
    if not (np.isfinite(reference).all() and np.isfinite(exported).all()):
        raise ExportError(
            f"{checkpoint}: the model outputs NaN or infinite values on {described} (torch: "
            f"{int((~np.isfinite(reference)).sum())}, ONNX Runtime: {int((~np.isfinite(exported)).sum())} values); "
            "nothing written. Check the checkpoint's weights (retrain, or take an earlier checkpoint)"
        )
    if not difference <= max_abs:
        raise ExportError(
            f"{checkpoint}: ONNX Runtime output differs from torch by {difference:.2e} (limit {max_abs:.0e}) "
            f"on {described}; nothing written. Try another --opset, or report the model"
        )
    card = card.with_changes(
        batch=None,
        output_name=output_name,
        extra={
            "model_name": state.get("model_name", ""),
            "opset": opset,
            "simplified": simplify,
            "parity": {"max_abs": difference, "inputs": described},
            **({"quantization": quantization} if quantization else {}),
        }
    )
    card = card.with_changes(model_sha256=onnx_graph_sha256(onnx_model))  # as save_artifact writes it
    save_artifact(onnx_model, card, output)
    logger.info(
        "exported %s -> %s in %.1f s (parity %.1e on %s)",
        checkpoint,
        output,
        time.perf_counter() - started,
        difference,
        described,
    )
    return card


def qat_quantization(onnx_model: onnx.ModelProto, checkpoint: str | Path) -> dict:
    """Turn an exported QAT model's float weights into int8 initializers and check it for TensorRT.

    Returns:
        The card's ``quantization`` record (the same fields the post-training path writes).
    """
    from export.qdq import check_trt_ready, qdq_summary, quantize_constant_weights

    weights = quantize_constant_weights(onnx_model)
    check_onnx(onnx_model, f"{checkpoint} (QAT, int8 weights)")
    problems = check_trt_ready(onnx_model, per_channel=True)
    if problems:
        raise ExportError(
            f"{checkpoint}: the QAT model is not TensorRT-ready ({len(problems)} problems, first: {problems[0]})"
        )
    logger.info("QAT: %d weights stored as int8", len(weights))
    return {
        "format": "QDQ",
        "activations": "int8 symmetric per-tensor",
        "weights": "int8 symmetric per-channel",
        "bias": "float",
        "float_tail": [],
        **qdq_summary(onnx_model),
    }


def torch_to_onnx(model, input_size: int, opset: int) -> bytes:
    """Serialized ONNX of ``model`` with input ``input`` and output ``heatmaps``, batch dynamic.

    The TorchScript-based exporter (``dynamo=False``) is tried first: it is fast, needs no
    onnxscript and folds BatchNorm into Conv. The dynamo exporter is the fallback.
    """
    import torch

    buffer = io.BytesIO()
    example = torch.zeros(2, 3, input_size, input_size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (example,),
                buffer,
                dynamo=False,
                opset_version=opset,
                do_constant_folding=True,
                input_names=[INPUT_NAME],
                output_names=[HEATMAP_OUTPUT],
                dynamic_axes={INPUT_NAME: {0: BATCH_DIM}, HEATMAP_OUTPUT: {0: BATCH_DIM}},
            )
        return buffer.getvalue()
    except Exception as legacy_error:  # noqa: BLE001 - fall back, then report both
        logger.info("TorchScript exporter failed (%s); trying the dynamo exporter", type(legacy_error).__name__)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                program = torch.onnx.export(
                    model,
                    (example,),
                    dynamo=True,
                    opset_version=opset,
                    input_names=[INPUT_NAME],
                    output_names=[HEATMAP_OUTPUT],
                    dynamic_shapes=({0: torch.export.Dim(BATCH_DIM, min=1)},),
                )
            return program.model_proto.SerializeToString()
        except Exception as dynamo_error:  # noqa: BLE001
            raise ExportError(
                f"torch.onnx.export failed with both exporters (TorchScript: {first_line(legacy_error)}; "
                f"dynamo: {first_line(dynamo_error)})"
            ) from None


def parity_inputs(card: Card, images: str | Path | None) -> tuple[np.ndarray, str]:
    """(N, 3, S, S) inputs to compare backends on, and a phrase saying what they are."""
    if images is not None:
        samples = read_pts_folder(images)[:PARITY_FACES]
        return crop_faces(samples, card).inputs, f"{len(samples)} real faces from {images}"
    rng = np.random.default_rng(0)
    inputs = rng.standard_normal((2, 3, card.input_size, card.input_size)).astype(np.float32)
    return inputs, "2 seeded random inputs"


def check_heatmap_output(output: np.ndarray, card: Card, name: str) -> None:
    """The output must be (N, K, S/stride, S/stride) heatmaps for a heatmap card."""
    size = card.input_size // (card.heatmap_stride or 1)
    expected = (card.num_points, size, size)
    if output.ndim != 4 or tuple(output.shape[1:]) != expected:
        raise CardMismatch(
            f"{name}: model output is {tuple(output.shape)} but the card expects (N, {expected[0]}, {size}, {size}) "
            f"heatmaps ({card.num_points} points, input {card.input_size}, stride {card.heatmap_stride})"
        )


def require_onnxsim() -> None:
    """Fail before any work when ``--simplify`` is asked for without onnxsim installed."""
    if importlib.util.find_spec("onnxsim") is None:
        raise UsageError(
            "--simplify needs the onnx-simplifier package (`pip install onnxsim`); it is not installed. "
            "Export without --simplify, or install it"
        )


def simplified(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnx-simplifier's result, checked."""
    import onnxsim

    result, ok = onnxsim.simplify(model)
    if not ok:
        raise ExportError("onnx-simplifier could not validate the simplified model; export without --simplify")
    return result


# --------------------------------------------------------------------------------------------------
# third-party ONNX -> artifact with a card


def onnx_from_third_party(model_path: str | Path, output: str | Path, card: Card, dynamic_batch: bool = True) -> Card:
    """Import a third-party ONNX model: check it against the card given by flags, copy it with the card.

    The input must accept ``(N, 3, S, S)`` at the card's input size; the first output must hold
    ``2 * num_points`` values per image (``coords``; at least up to the card's ``coords_slice`` when
    it has one), ``(num_points, S/stride, S/stride)`` maps (``heatmap``) or ``(3 * num_points, G, G)``
    maps (``heatmap_offsets``). ONNX Runtime's FusedConv nodes are replaced by standard ops
    (:func:`with_standard_convolutions`, checked to give the same output) so that the quantizers and
    OpenVINO see ordinary convolutions. A batch dimension fixed at 1 is made dynamic when that provably gives the same
    results (batch of 4 versus 4 single runs); Reshape nodes that hard-code the batch as 1 are
    rewritten to copy it (shape value 0). When that fails the batch stays 1 and the card says so.

    Args:
        model_path: the third-party ``.onnx`` file.
        output: the ``.onnx`` file to write (card beside it as ``.onnx.json``).
        card: facts from the flags; input name, source, hash and tools are filled in here.
        dynamic_batch: try to make a fixed batch dimension dynamic.

    Returns:
        The card written with the artifact.

    Raises:
        ExportError: missing, unreadable or invalid model (nothing is written).
        CardMismatch: the model's input or output disagrees with the card.
    """
    model_path = Path(model_path)
    output = check_output_path(output, model_path)
    started = time.perf_counter()
    original = load_onnx(model_path)
    model, unfused = with_standard_convolutions(original)
    model, named = with_node_names(model)
    data = model.SerializeToString()
    image_input = check_input_against_card(model, card, model_path)
    sample = np.random.default_rng(0).standard_normal((1, 3, card.input_size, card.input_size)).astype(np.float32)
    runner = open_model(data)  # a model ONNX Runtime cannot load is that one line, not a card mismatch
    output_name = runner.output_names[0]
    try:
        first = runner.infer({image_input.name: sample})[output_name]
    except Exception as error:  # noqa: BLE001 - ORT raises its own types, the backend a BackendError
        raise CardMismatch(
            f"{model_path}: does not run on a 1x3x{card.input_size}x{card.input_size} input ({first_line(error)}); "
            "check --input-size"
        ) from None
    finally:
        runner.close()
    check_output_against_card(first, card, model_path)
    if unfused:  # the rewrite must compute what the original computed
        with open_model(original.SerializeToString()) as original_runner:
            reference = original_runner.infer({image_input.name: sample})[original_runner.output_names[0]]
        difference = float(np.max(np.abs(reference - first)))
        if difference > 1e-4:
            raise ExportError(
                f"{model_path}: replacing {unfused} FusedConv nodes changed the output by {difference:.1e}; "
                "nothing written. Report the model"
            )

    batch: dict = {"dynamic": input_batch(image_input) is None}
    if dynamic_batch and not batch["dynamic"]:
        model, batch = batch_made_dynamic(model, image_input.name, card.input_size)
    card = card.with_changes(
        input_name=image_input.name,
        source=str(model_path),
        source_sha256=bytes_sha256(model_path.read_bytes()),
        format="onnx",
        tools=tool_versions("onnx", "onnxruntime"),
        output_name=output_name,
        batch=None if batch["dynamic"] else 1,
        extra={
            **card.extra,
            "imported": True,
            "opset": _default_opset(model),
            "batch_rewrites": batch.get("rewrites", []),
            **({"unfused_convolutions": unfused} if unfused else {}),
            **({"named_nodes": named} if named else {}),
            **({"batch_note": batch["reason"]} if "reason" in batch else {}),
        },
    )
    save_artifact(model, card, output)
    logger.info(
        "imported %s -> %s in %.1f s (batch %s)", model_path, output, time.perf_counter() - started, card.batch or "dynamic"
    )
    return card


def check_input_against_card(model: onnx.ModelProto, card: Card, name: str | Path) -> onnx.ValueInfoProto:
    """The one image input, checked to be (N, 3, S, S)-compatible with the card's input size."""
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]
    if len(inputs) != 1:
        raise CardMismatch(f"{name}: expected one image input, found {len(inputs)} ({[v.name for v in inputs]})")
    dims = _dims(inputs[0])
    expected = (None, 3, card.input_size, card.input_size)
    compatible = len(dims) == 4 and all(d is None or e is None or d == e for d, e in zip(dims, expected))
    if not compatible:
        shown = "x".join("?" if d is None else str(d) for d in dims)
        raise CardMismatch(
            f"{name}: model input '{inputs[0].name}' is {shown} but the card says "
            f"Nx3x{card.input_size}x{card.input_size}; "
            f"fix --input-size (the model's is {dims[-1] if dims else '?'})"
        )
    return inputs[0]


def check_output_against_card(output: np.ndarray, card: Card, name: str | Path) -> None:
    """The first output of one image must fit the card's output kind and point count."""
    if card.output_kind == "coords":
        values = int(np.prod(output.shape[1:]))
        if card.coords_slice is not None:
            if output.shape[0] != 1 or values < card.coords_slice[1]:
                raise CardMismatch(
                    f"{name}: model output is {tuple(output.shape)} ({values} values per image) but --coords-slice "
                    f"{card.coords_slice[0]} {card.coords_slice[1]} reads up to value {card.coords_slice[1]}"
                )
            return
        if output.shape[0] != 1 or values != 2 * card.num_points:
            slice_hint = " (if the points are only part of the output, say where with --coords-slice START STOP)"
            raise CardMismatch(
                f"{name}: model output is {tuple(output.shape)} ({values} values per image) but --layout {card.layout} "
                f"--output-kind coords needs {2 * card.num_points} ({card.num_points} x, y pairs); "
                f"the model has {values // 2} points" + (slice_hint if values > 2 * card.num_points else "")
            )
        return
    if card.output_kind == "heatmap_offsets":
        grid = card.heatmap_offsets.grid_size
        expected = (3 * card.num_points, grid, grid)
        if output.ndim != 4 or tuple(output.shape[1:]) != expected:
            raise CardMismatch(
                f"{name}: model output is {tuple(output.shape)} but --layout {card.layout} --output-kind "
                f"heatmap_offsets --heatmap-size {grid} needs (1, {expected[0]}, {grid}, {grid}) "
                f"({card.num_points} heatmaps, then {card.num_points} maps per offset axis)"
            )
        return
    size = card.input_size // card.heatmap_stride
    if output.ndim != 4 or output.shape[1] != card.num_points or output.shape[2:] != (size, size):
        raise CardMismatch(
            f"{name}: model output is {tuple(output.shape)} but --layout {card.layout} --output-kind heatmap "
            f"--heatmap-stride {card.heatmap_stride} needs (1, {card.num_points}, {size}, {size})"
        )


# ONNX Runtime's FusedConv activations -> (standard op, its float attributes in activation_params order).
_FUSED_ACTIVATIONS = {
    "Relu": ("Relu", ()),
    "Sigmoid": ("Sigmoid", ()),
    "Tanh": ("Tanh", ()),
    "LeakyRelu": ("LeakyRelu", ("alpha",)),
    "HardSigmoid": ("HardSigmoid", ("alpha", "beta")),
    "Clip": ("Clip", ()),  # min and max are inputs from opset 11
}


def with_standard_convolutions(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Replace ONNX Runtime's ``com.microsoft`` FusedConv nodes by Conv (+ Add) + activation.

    Models saved after ONNX Runtime's graph optimisation (OpenSeeFace's ``*_opt.onnx``) hold
    FusedConv, which only ONNX Runtime runs and which its quantizer leaves in float. The standard
    ops compute the same; unused ``com.microsoft*`` opset imports are dropped.

    Returns:
        The model (a rewritten copy when anything changed) and the number of nodes rewritten.

    Raises:
        ExportError: a FusedConv activation with no standard op here, or Clip bounds on an opset
            before 11.
    """
    if not any(node.op_type == "FusedConv" and node.domain == "com.microsoft" for node in model.graph.node):
        return model, 0
    opset = _default_opset(model)
    model = _copy(model)
    nodes, count = [], 0
    for node in model.graph.node:
        if node.op_type != "FusedConv" or node.domain != "com.microsoft":
            nodes.append(node)
            continue
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        activation = attributes.pop("activation", b"").decode() or None
        parameters = list(attributes.pop("activation_params", []))
        if activation is not None and activation not in _FUSED_ACTIVATIONS:
            raise ExportError(f"FusedConv '{node.name}' has activation {activation}, which the import cannot unfuse")
        name = node.name or node.output[0]
        result = f"{name}__conv" if activation or len(node.input) > 3 else node.output[0]
        nodes.append(onnx.helper.make_node("Conv", list(node.input[:3]), [result], name=f"{name}__conv", **attributes))
        if len(node.input) > 3 and node.input[3]:  # Z: a tensor added before the activation
            summed = f"{name}__sum" if activation else node.output[0]
            nodes.append(onnx.helper.make_node("Add", [result, node.input[3]], [summed], name=f"{name}__add"))
            result = summed
        if activation == "Clip":
            if opset < 11:
                raise ExportError(f"FusedConv '{name}' clips, which needs opset 11 or later (model: {opset})")
            bounds = [f"{name}__clip_min", f"{name}__clip_max"]
            for bound, value in zip(bounds, parameters):
                model.graph.initializer.append(numpy_helper.from_array(np.array(value, np.float32), bound))
            nodes.append(onnx.helper.make_node("Clip", [result, *bounds], [node.output[0]], name=f"{name}__clip"))
        elif activation:
            op_type, names = _FUSED_ACTIVATIONS[activation]
            options = dict(zip(names, parameters))
            nodes.append(onnx.helper.make_node(op_type, [result], [node.output[0]], name=f"{name}__act", **options))
        count += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {node.domain for node in model.graph.node}
    kept = [entry for entry in model.opset_import if entry.domain in ("", "ai.onnx") or entry.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    logger.info("replaced %d com.microsoft FusedConv nodes by standard Conv + activation", count)
    return model, count


def with_node_names(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Give every unnamed node a unique name (``<op>_<index>``): the INT8 tools exclude and report
    layers by node name. Returns the model (a copy when anything changed) and how many were named."""
    unnamed = [index for index, node in enumerate(model.graph.node) if not node.name]
    if not unnamed:
        return model, 0
    model = _copy(model)
    taken = {node.name for node in model.graph.node}
    for index in unnamed:
        node = model.graph.node[index]
        name = f"{node.op_type}_{index}"
        while name in taken:
            name += "_"
        node.name = name
        taken.add(name)
    return model, len(unnamed)


def input_batch(value: onnx.ValueInfoProto) -> int | None:
    """The fixed batch size of an input, or ``None`` when it is symbolic."""
    dims = _dims(value)
    return dims[0] if dims else None


def batch_made_dynamic(model: onnx.ModelProto, input_name: str, input_size: int) -> tuple[onnx.ModelProto, dict]:
    """Try :func:`make_batch_dynamic`; keep it only if a batch of 4 equals 4 single runs.

    Returns:
        The model to write (rewritten or the original) and a record for the card.
    """
    try:
        candidate, rewrites = make_batch_dynamic(model)
        check_onnx(candidate, "batch-dynamic model")
        difference = batch_difference(candidate.SerializeToString(), input_name, input_size)
    except Exception as error:  # noqa: BLE001 - any failure means: keep batch 1
        reason = f"batch kept at 1: the dynamic-batch rewrite does not run ({first_line(error)})"
        logger.warning(reason)
        return model, {"dynamic": False, "reason": reason}
    if difference > 1e-4:
        reason = f"batch kept at 1: a batch of 4 differs from 4 single runs by {difference:.1e}"
        logger.warning(reason)
        return model, {"dynamic": False, "reason": reason}
    logger.info("batch made dynamic (%d Reshape rewrites; batch-4 vs single max abs %.1e)", len(rewrites), difference)
    return candidate, {"dynamic": True, "rewrites": rewrites}


def make_batch_dynamic(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """A copy whose inputs and outputs have a symbolic first dimension ``batch``.

    Reshape nodes whose constant target shape starts with 1 while their data's first dimension is
    the batch are given a target starting with 0 (ONNX: copy that dimension from the data).

    Returns:
        The new model and one line per rewritten Reshape.
    """
    model = _copy(model)
    initializer_names = {tensor.name for tensor in model.graph.initializer}
    for value in [*(v for v in model.graph.input if v.name not in initializer_names), *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = BATCH_DIM
    # Stored intermediate shapes say batch 1; drop them and let shape inference propagate the symbol.
    del model.graph.value_info[:]
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: v for v in [*inferred.graph.value_info, *inferred.graph.input]}
    constants = {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}
    rewrites, replaced = [], set()
    for node in model.graph.node:
        if node.op_type != "Reshape" or any(a.name == "allowzero" and a.i for a in node.attribute):
            continue
        target = constants.get(node.input[1])
        data = shapes.get(node.input[0])
        if target is None or target.ndim != 1 or target.size == 0 or int(target[0]) != 1 or data is None:
            continue
        dims = data.type.tensor_type.shape.dim
        if not dims or dims[0].dim_param != BATCH_DIM:
            continue
        new_target = target.copy()
        new_target[0] = 0
        new_name = f"{node.input[1]}__keep_batch"
        if new_name not in constants:
            model.graph.initializer.append(numpy_helper.from_array(new_target, new_name))
            constants[new_name] = new_target
        replaced.add(node.input[1])
        node.input[1] = new_name
        rewrites.append(f"{node.name or node.output[0]}: Reshape to {target.tolist()} -> {new_target.tolist()}")
    used = {name for node in model.graph.node for name in node.input}
    kept = [tensor for tensor in model.graph.initializer if tensor.name not in replaced or tensor.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return model, rewrites


def batch_difference(model: bytes, input_name: str, input_size: int, batch: int = 4) -> float:
    """Max abs difference between one run on ``batch`` inputs and ``batch`` single runs."""
    inputs = np.random.default_rng(1).standard_normal((batch, 3, input_size, input_size)).astype(np.float32)
    with open_model(model) as runner:
        together = runner.infer({input_name: inputs})[runner.output_names[0]]
        single = np.concatenate(
            [runner.infer({input_name: inputs[i : i + 1]})[runner.output_names[0]] for i in range(batch)]
        )
    if together.shape != single.shape:
        return float("inf")
    return float(np.max(np.abs(together - single)))


def _dims(value: onnx.ValueInfoProto) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


def _default_opset(model: onnx.ModelProto) -> int:
    return next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 0)


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy

