"""Sensitivity-driven mixed precision: the fewest quantization points kept in float that meet a budget.

A Q/DQ model quantizes at *points*: each activation tensor with a QuantizeLinear -> DequantizeLinear
pair, and each weight read through a DequantizeLinear. Keeping a point in float removes its Q/DQ
(an activation is read in float by every consumer; a weight goes back to its float values), which
is exact graph surgery on the quantized model — no re-calibration, the other scales unchanged.

Points rather than nodes: excluding a node from ONNX Runtime's quantizer does not keep its input
activation in float when a neighbour is quantized, which is where PFLD-GhostOne's error sits (the
7x7 "fully connected" convolution's input and output maps; excluding that node and the Gemm left
the NME change at +4.1 points).

The search (as ONNX Runtime's QDQ debugging, Polygraphy's layer-wise comparison and NNCF's accuracy
control do it, here against a label-free error):

1. The error of a candidate is the label-free NME of its points against the float model's on a
   validation split (:func:`runtime.metrics.agreement_per_image`, inter-ocular of the float
   model's own points, percent) — inputs that are never the evaluation faces.
2. Every group of points is ranked by its harm: the error with only that group quantized.
3. The least harmful groups are quantized, as many as the budget allows (bisection), then pruned.

Points are grouped by layer (a weight with the activations its layer reads), and the activations a
fully-connected head reads element by element form one group (``head``): their ranges fail
together on faces unlike the calibration set's (PFLD-GhostOne: keeping those 14 tensors float took
the NME change on faces68 from +4.16 to +0.15 points).

The record (which points, the layers that read them, the error before and after, the latency of
float / all-INT8 / mixed) goes into the card.
"""
from __future__ import annotations

import copy
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import onnx

from export.artifact import ExportError
from runtime.card import Card
from runtime.layouts import get_layout
from runtime.metrics import agreement_per_image

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuantPoint:
    """One place a Q/DQ model quantizes.

    Attributes:
        name: the float tensor: the activation's name, or the weight initializer's float name.
        kind: ``activation`` or ``weight``.
        readers: names of the nodes that read it (the layers it feeds).
    """

    name: str
    kind: str
    readers: tuple[str, ...]


def quantization_points(model: onnx.ModelProto) -> list[QuantPoint]:
    """Every activation and weight ``model`` quantizes, in graph order."""
    graph = model.graph
    constants = {tensor.name for tensor in graph.initializer}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)

    def layers(dequantize_output: str) -> list[str]:
        return [node.name or node.output[0] for node in readers.get(dequantize_output, [])]

    points: list[QuantPoint] = []
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in constants:
            dequantizers = [user for user in readers.get(node.output[0], []) if user.op_type == "DequantizeLinear"]
            users = [layer for dq in dequantizers for layer in layers(dq.output[0])]
            points.append(QuantPoint(node.input[0], "activation", tuple(dict.fromkeys(users))))
        elif node.op_type == "DequantizeLinear" and node.input[0] in constants:
            # ONNX Runtime names a quantized weight ``<weight>_quantized``.
            points.append(QuantPoint(node.input[0].removesuffix("_quantized"), "weight", tuple(layers(node.output[0]))))
    return points


def with_float_points(qdq: onnx.ModelProto, float_model: onnx.ModelProto, names: Iterable[str]) -> onnx.ModelProto:
    """``qdq`` with the named points in float: their Q/DQ removed, weights back to their float values.

    Args:
        qdq: the quantized model.
        float_model: the float model it was made from (source of float weights).
        names: :attr:`QuantPoint.name` values.
    """
    wanted = set(names)
    model = onnx.ModelProto()
    model.CopyFrom(qdq)
    graph = model.graph
    if not wanted:
        return model
    constants = {tensor.name for tensor in graph.initializer}
    float_weights = {tensor.name: tensor for tensor in float_model.graph.initializer}
    rename: dict[str, str] = {}
    removed: set[int] = set()
    quantize_outputs: dict[str, str] = {}
    for index, node in enumerate(graph.node):
        if node.op_type == "QuantizeLinear" and node.input[0] in wanted and node.input[0] not in constants:
            quantize_outputs[node.output[0]] = node.input[0]
            removed.add(index)
    for index, node in enumerate(graph.node):
        if node.op_type != "DequantizeLinear":
            continue
        source = node.input[0]
        if source in quantize_outputs:
            rename[node.output[0]] = quantize_outputs[source]
            removed.add(index)
        elif source in constants and source.removesuffix("_quantized") in wanted:
            float_name = source.removesuffix("_quantized")
            if float_name not in float_weights:
                raise ExportError(f"weight '{float_name}' is not in the float model; cannot keep it in float")
            rename[node.output[0]] = float_name
            removed.add(index)
            if float_name not in constants:
                graph.initializer.append(float_weights[float_name])
                constants.add(float_name)
    kept = [node for index, node in enumerate(graph.node) if index not in removed]
    for node in kept:
        for position, name in enumerate(node.input):
            if name in rename:
                node.input[position] = rename[name]
    for output in graph.output:
        if output.name in rename:  # a graph output read through Q/DQ: put the float value back under its name
            source = rename[output.name]
            kept.append(onnx.helper.make_node("Identity", [source], [output.name], name=f"{output.name}_float"))
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in graph.node for name in node.input}
    unused = [tensor for tensor in graph.initializer if tensor.name not in used]
    for tensor in unused:
        graph.initializer.remove(tensor)
    return model


class AgreementProbe:
    """Label-free error of candidate models against the float model on fixed validation inputs.

    Args:
        float_model: the float model.
        card: its card (decoding, layout).
        inputs: (N, 3, S, S) validation inputs, preprocessed as the runtime does.
        threads: ONNX Runtime intra-op threads.
    """

    def __init__(self, float_model: onnx.ModelProto, card: Card, inputs: np.ndarray, threads: int | None = None):
        self.card = card
        self.inputs = np.ascontiguousarray(inputs, dtype=np.float32)
        self.threads = threads
        self.layout = get_layout(card.layout)
        self._temporary = tempfile.TemporaryDirectory(prefix="edgemark-mixed-")
        self.reference = self._points(float_model)

    def _points(self, model: onnx.ModelProto) -> np.ndarray:
        """(N, K, 2) points of ``model`` in input-square pixels (identity crop matrices)."""
        from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
        from runtime.landmarker import Landmarker, decode_output

        path = Path(self._temporary.name) / "candidate.onnx"
        onnx.save(model, str(path))
        with OnnxRuntimeBackend(path, self.card.with_changes(precision="fp32"), threads=self.threads) as backend:
            output, _ = Landmarker(backend).run(self.inputs)
        identity = np.repeat(np.array([[[1.0, 0, 0], [0, 1.0, 0]]]), len(self.inputs), axis=0)
        return decode_output(output, self.card, identity)[0]

    def per_input(self, model: onnx.ModelProto) -> np.ndarray:
        """Per-input label-free NME (percent, inter-ocular of the float model's points); NaN -> inf."""
        values = agreement_per_image(self._points(model), self.reference, self.layout) * 100
        return np.where(np.isfinite(values), values, np.inf)

    def error(self, model: onnx.ModelProto) -> float:
        """Mean label-free NME in percent."""
        return float(np.mean(self.per_input(model)))

    def subset(self, count: int) -> AgreementProbe:
        """A probe on ``count`` evenly spaced inputs of this one (reference points reused, not recomputed)."""
        picked = np.linspace(0, len(self.inputs) - 1, min(count, len(self.inputs))).astype(int)
        smaller = copy.copy(self)  # shares the temporary folder; close this probe, not the subset
        smaller.inputs, smaller.reference = self.inputs[picked], self.reference[picked]
        return smaller

    def close(self) -> None:
        self._temporary.cleanup()


# Inputs each group is ranked on: ranking runs every group once, the prefix search re-checks on all.
RANKING_INPUTS = 24


@dataclass(frozen=True)
class FloatGroup:
    """Quantization points that are kept in float together.

    Attributes:
        name: the layer (node) the points feed, or ``head`` for the regression head.
        points: the points' names.
    """

    name: str
    points: tuple[str, ...]


def float_groups(model: onnx.ModelProto, head_tensors: Iterable[str] = ()) -> list[FloatGroup]:
    """The units the search keeps in float: the regression head as one group, then each weighted layer
    (its weight and the activations it reads), in graph order, then the activations that only
    unweighted layers read, grouped by their first reader.

    Args:
        model: the Q/DQ model.
        head_tensors: activations read element by element by a fully-connected head (feature vectors,
            the head's maps; :func:`export.ort_quantize.tensors_kept_at_minmax`): one group, because
            their ranges fail together on faces unlike the calibration set's.
    """
    points = quantization_points(model)
    head = tuple(p.name for p in points if p.kind == "activation" and p.name in set(head_tensors))
    groups = [FloatGroup("head", head)] if head else []
    taken = set(head)
    for point in points:
        if point.kind != "weight":
            continue
        layer = point.readers[0] if point.readers else point.name
        reads = [p.name for p in points if p.kind == "activation" and layer in p.readers and p.name not in taken]
        taken.update(reads)
        groups.append(FloatGroup(layer, (point.name, *reads)))
    # Activations only unweighted layers read (Add, Mul, Sigmoid, Concat, ...): one group per reader. A
    # quantized graph output has no reader and is a group of its own (Peppa: its 143 values share one
    # scale with pose angles of +-11, which alone cost 7.2 % label-free NME).
    for point in points:
        if point.kind == "activation" and point.name not in taken:
            layer = point.readers[0] if point.readers else point.name
            same = [p.name for p in points if p.kind == "activation" and p.name not in taken
                    and (p.readers[:1] or (p.name,)) == (layer,)]  # fmt: skip
            taken.update(same)
            groups.append(FloatGroup(layer, tuple(same)))
    return groups


@dataclass(frozen=True)
class MixedPrecisionResult:
    """What the search chose and what it measured.

    Attributes:
        model: the Q/DQ model with the chosen points in float.
        kept_float: the chosen groups, most useful first.
        record: JSON-ready summary for the card.
    """

    model: onnx.ModelProto
    kept_float: tuple[FloatGroup, ...]
    record: dict


def fewest_float_points(
    qdq: onnx.ModelProto,
    float_model: onnx.ModelProto,
    probe: AgreementProbe,
    budget: float,
    head_tensors: Iterable[str] = (),
    progress: bool = True,
) -> MixedPrecisionResult:
    """Keep the fewest groups of quantization points in float that bring the label-free error within ``budget``.

    Each group (:func:`float_groups`) is ranked by its harm: the error of the model with only that
    group quantized (on :data:`RANKING_INPUTS` of the validation inputs). The least harmful groups
    are quantized first; the largest count within the budget is found by bisection (the error grows
    as groups are quantized), then the float groups that can be quantized after all are.

    Args:
        qdq: the fully quantized model.
        float_model: its float source.
        probe: the validation inputs and the float model's points on them.
        budget: the largest mean label-free NME (percent points of inter-ocular distance) allowed.
        head_tensors: see :func:`float_groups`.
        progress: show a progress bar while ranking.

    Raises:
        ExportError: no candidate within the budget (only a budget of 0 or below float noise).
    """
    started = time.perf_counter()
    groups = float_groups(qdq, head_tensors)
    full_error = probe.error(qdq)
    record: dict = {
        "budget": budget,
        "metric": "label-free NME vs the float model, inter-ocular %, mean over the validation inputs",
        "validation_inputs": int(len(probe.inputs)),
        "error_all_int8": full_error,
        "points": len(quantization_points(qdq)),
        "groups": len(groups),
    }
    if full_error <= budget:
        record.update({"kept_float": [], "error": full_error, "seconds": time.perf_counter() - started})
        return MixedPrecisionResult(qdq, (), record)

    def error_with(chosen: Sequence[FloatGroup]) -> float:
        return probe.error(with_float_points(qdq, float_model, [name for group in chosen for name in group.points]))

    from tqdm import tqdm

    # Harm of a group: the error of the model with only that group quantized. Errors of many small
    # groups add up; ranking by what reverting one group alone gains misses them (OpenSeeFace: all 15
    # groups with a gain left 2.8 % of its 4.3 %).
    ranking = probe.subset(RANKING_INPUTS)
    all_points = [name for group in groups for name in group.points]

    def harm(group: FloatGroup) -> float:
        kept = set(group.points)
        return ranking.error(with_float_points(qdq, float_model, [name for name in all_points if name not in kept]))

    ranked = sorted(
        ((harm(group), group) for group in tqdm(
            groups, desc="ranking layers by sensitivity", unit="layer", disable=not progress, leave=False
        )),
        key=lambda item: item[0],
    )
    order = [group for _, group in ranked]  # least harmful first: quantized first

    def error_quantizing(count: int) -> float:
        return error_with(order[count:])

    # error(k) = error with the k least harmful groups quantized, the rest float; error(0) is the float
    # model's own (0), error(len) the all-INT8 error. Bisect for the largest k within the budget.
    errors: dict[int, float] = {0: 0.0, len(order): full_error}
    low, high = 0, len(order)  # error(low) <= budget < error(high)
    while high - low > 1:
        middle = (low + high) // 2
        errors[middle] = error_quantizing(middle)
        low, high = (middle, high) if errors[middle] <= budget else (low, middle)
    chosen = list(order[low:])
    error = errors[low] if low else error_with(chosen)
    if low == 0:  # nothing can be quantized within the budget: only the float model meets it
        fewest = min(count for count in errors if count > 0)
        raise ExportError(
            f"--max-nme-drop {budget}: quantizing even the least harmful layer exceeds the budget "
            f"(label-free NME {errors[fewest]:.3f} % with {fewest} of {len(order)} groups quantized on "
            f"{len(probe.inputs)} validation inputs; all-INT8: {full_error:.3f} %); nothing written. Raise the budget, "
            "or keep the FP32 model"
        )
    if error > budget:
        raise ExportError(
            f"--max-nme-drop {budget}: no mixed-precision model within the budget was found "
            f"(label-free NME {error:.3f} % on {len(probe.inputs)} validation inputs; all-INT8: {full_error:.3f} %); "
            "nothing written. Raise the budget, calibrate with more varied samples, or try another --method"
        )
    # Quantize after all the least harmful of the float groups that the budget still allows
    # (the bisection assumes the error grows with every group; it does not always).
    for group in list(chosen[:8]):
        trial = [g for g in chosen if g is not group]
        trial_error = error_with(trial)
        if trial_error <= budget:
            chosen, error = trial, trial_error
    for group in chosen:
        logger.info("kept %s in float (%d quantization points)", group.name, len(group.points))
    record.update(
        {
            "kept_float": [{"layer": g.name, "points": list(g.points)} for g in chosen],
            "ranking": "error with only this group quantized, on %d validation inputs" % len(ranking.inputs),
            "most_harmful": [{"layer": g.name, "error": value} for value, g in ranked[::-1][:10]],
            "prefix_errors": {str(k): v for k, v in sorted(errors.items())},
            "error": error,
            "seconds": time.perf_counter() - started,
        }
    )
    return MixedPrecisionResult(
        with_float_points(qdq, float_model, [name for g in chosen for name in g.points]), tuple(chosen), record
    )


def validation_split(samples: Sequence[dict], count: int, fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean mask of validation samples: whole source images held out, so no image's style variants
    are on both sides.

    Args:
        samples: the calibration manifest's per-sample records (``image`` or ``sha256`` names the source).
        count: number of samples in the array (the manifest may be missing or shorter).
        fraction: share of source images held out for validation.
        seed: which images.
    """
    keys = [
        str(entry.get("image") or entry.get("source_sha256") or index) if isinstance(entry, dict) else str(index)
        for index, entry in enumerate(samples[:count])
    ] + [str(index) for index in range(len(samples), count)]
    unique = sorted(set(keys))
    rng = np.random.default_rng(seed)
    held = set(rng.permutation(unique)[: max(1, int(round(len(unique) * fraction)))].tolist())
    return np.array([key in held for key in keys])


def median_latency_ms(model: onnx.ModelProto, card: Card, inputs: np.ndarray, calls: int = 50) -> float:
    """Median batch-``len(inputs)`` latency of ``model`` in ONNX Runtime, in ms (after 5 warm-up calls).

    A quick figure recorded with the mixed-precision choice so its speed cost is visible where it was
    made; ``python -m runtime.bench`` measures artifacts properly (isolated, interleaved).
    """
    from runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    with tempfile.TemporaryDirectory(prefix="edgemark-latency-") as temporary:
        path = Path(temporary) / "model.onnx"
        onnx.save(model, str(path))
        with OnnxRuntimeBackend(path, card.with_changes(precision="fp32")) as backend:
            feeds = {backend.input_spec.name: np.ascontiguousarray(inputs, dtype=np.float32)}
            times = []
            for call in range(calls + 5):
                backend.infer(feeds)
                if call >= 5:
                    times.append(backend.last_latency_s)
    return float(np.median(times) * 1000)
