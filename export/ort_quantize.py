"""Static INT8 Q/DQ quantization with ONNX Runtime, ready for TensorRT's explicit quantization.

Symmetric int8 activations (per tensor) and weights (per output channel by default), float biases,
the heatmap decode left in float. The same Q/DQ model runs on ONNX Runtime (CPU), TensorRT and
OpenVINO.

Histogram calibration really uses ``num_bins``: ``quantize_static`` (ONNX Runtime 1.32) builds its
calibrator without passing a bin count, and Entropy's default of 128 bins equals the 128 quantized
bins, which makes it MinMax. So the calibrator is built here with :func:`create_calibrator` and the
bins, fed the calibration array chunk by chunk (bounded memory), and its tensor ranges are handed to
``quantize_static`` through its calibration cache.

Two rules keep histogram calibration (``entropy``, ``percentile``) from clipping what must not be
clipped. Measured (NME change in inter-ocular points on 6 held-out faces of faces68, calibrated on
the other 6; minmax: PFLD-GhostOne +0.61, the train/ mobilenetv3_edge heatmap model +0.75):

=================================================  ============  ==================
ranges                                             PFLD          mobilenetv3_edge
=================================================  ============  ==================
entropy, ONNX Runtime's search, no rule            +35.85        +5.88
entropy, ONNX Runtime's search, rule 1             +2.25         +6.10
entropy, rule 2 only                               +8.54         +114.31
entropy, rules 1 and 2 (default)                   +0.15         +0.85
percentile 99.9, no rule / rule 1 (default)        +5.98 / +0.71 +1.23 / +1.20
=================================================  ============  ==================

1. **Feature vectors and the regression head keep MinMax ranges** (:func:`tensors_kept_at_minmax`).
   Histogram methods clip the rare large values of a tensor to resolve its bulk; that suits a
   feature map, not a tensor whose every element is a feature of its own. Quantizing PFLD with
   MinMax everywhere except one tensor found three tensors doing all the damage, all read element
   by element by its fully-connected head: the 1x1 output of ``conv8`` (a 7x7 convolution over a
   7x7 map, i.e. a fully-connected layer; entropy kept 7.5 % of its range: +33.4 points alone), that
   layer's input map (6.5 %: +30.2) and the concatenated feature vector the final Gemm reads (53 %:
   +6.0); every other tensor alone cost under 1.4 points. In the mobilenetv3_edge model the same
   test blames the squeeze-excitation gates (per-channel gains: +60 points for one of them). The
   graph outputs belong to the set as well (a ``coords`` model regresses positions in [0, 1]:
   clipping its output range clips landmark positions); they leave the quantized graph in float
   anyway (:func:`export.qdq.float_tail`), and in this PFLD the colleagues' suspicion that the
   output's range was clipped did not hold (entropy left it at 0.998 of MinMax).
   ``Int8Config.histogram_everywhere`` turns the rule off, to measure what it prevents.
2. **Entropy thresholds are searched here**, TensorRT's way (:func:`entropy_threshold`), on the
   histograms ONNX Runtime's calibrator collected. ONNX Runtime's own search counts the spike of
   exact zeros that every ReLU output has (most of its mass), so the KL divergence favours bounds
   that resolve the spike and clips the rest (for PFLD's conv8 it picked nearly the smallest bound
   it tries, 1/16 of the range); it also spreads its 128 quantized bins over a two-sided window (a 7-bit
   grid) and floors the expanded candidate distribution to integers. TensorRT's calibrator (and
   NVIDIA's pytorch-quantization) searches the histogram of ``|x|`` with 128 levels per sign (int8),
   a float candidate distribution and the zero bin set to its neighbour's count.

Which tensors kept MinMax, and how entropy was searched, go into the card's calibration record.

Size: one module on purpose (~670 lines): it is ``python -m export.ort --int8``'s one library call,
calibration, range table, encoding, mixed precision and the checks before anything is written, in
the order they run.
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from export.artifact import (
    ExportError,
    check_onnx,
    check_output_path,
    load_onnx,
    save_artifact,
    tool_versions,
)
from export.calibration import CalibrationError, CalibrationSet, check_for_card, read_calibration_array
from export.encodings import ENCODINGS, ENCODING_TARGETS, encode, qdq_from_ranges
from runtime.backends import open_model
from export.qdq import DECODE_OPS, check_trt_ready, float_tail, qdq_summary
from export.ranges import RangeTable, RangeTableError, ranges_path
from runtime.card import Card, CardError, file_sha256, read_card
from runtime.errors import EdgemarkError, UsageError, first_line, unknown_name

logger = logging.getLogger(__name__)

METHODS = ("minmax", "entropy", "percentile")
KEEP_FLOAT = ("first_conv", "head", "depthwise")
# Per-channel Q/DQ (DequantizeLinear's axis) needs opset 13; older models are converted first.
MIN_OPSET = 13
# Magnitude levels of a symmetric int8 tensor (0..127 per sign): TensorRT's entropy search grid.
NUM_QUANTIZED_BINS = 128
# The entropy search needs more |x| bins than levels; the two-sided histogram folds to num_bins / 2.
MIN_HISTOGRAM_BINS = 4 * NUM_QUANTIZED_BINS
WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# Walking back from a graph output, ops through which a fully-connected head still reads each
# element of a tensor as a feature of its own: data movement, elementwise ops, fully-connected layers.
HEAD_DATA_MOVEMENT_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity", "Concat")
HEAD_ELEMENTWISE_OPS = (
    "Relu", "Clip", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu",
    "Softplus", "Add", "Sub", "Mul", "Div",
)  # fmt: skip
HEAD_FULLY_CONNECTED_OPS = ("Gemm", "MatMul")


@dataclass(frozen=True)
class Int8Config:
    """What to quantize and how.

    Attributes:
        model: float ONNX artifact with a card.
        calibration: calibration array (``.npz`` with ``inputs``).
        output: the INT8 ``.onnx`` to write.
        per_channel: weights per output channel (``False``: per tensor).
        method: activation range calibration: ``minmax``, ``entropy`` or ``percentile``.
        num_bins: histogram bins for ``entropy`` and ``percentile``.
        percentile: for ``percentile``, the share of |values| the range covers.
        keep_float: layers to leave unquantized: ``first_conv``, ``head`` (last Conv/Gemm/MatMul) and/or
            ``depthwise`` (every depthwise convolution: one input channel per group).
        batch_size: samples per calibration run (must fit the model's batch dimension).
        chunk_size: samples whose activations are held at once while calibrating.
        histogram_everywhere: let ``entropy``/``percentile`` set the ranges of feature vectors and of
            the regression head too (default: those keep MinMax ranges, see the module docstring).
            For measuring what the default prevents, not for deployment.
        encoding: ``u8s8`` (ONNX Runtime's fast x86 form) or ``s8s8`` (TensorRT's); the same
            range table and scales either way (:mod:`export.encodings`).
        ranges: a range table (``<artifact>.ranges.json`` of an earlier INT8 export of the same
            float model) to encode instead of calibrating again.
        max_nme_drop: keep the fewest quantization points in float that bring the label-free NME
            against the float model (inter-ocular %, mean) within this budget on the validation
            split (:mod:`export.mixed_precision`); ``None``: quantize everything quantizable.
        validation_fraction: share of the calibration array's source images held out (never
            calibrated on) to validate ``max_nme_drop`` on.
        validation_samples: at most this many of the held-out samples (evenly spaced) are run per
            candidate of the mixed-precision search.
        bias_correction: subtract each quantized layer's mean output shift, measured on calibration
            samples, from its float bias (:mod:`export.bias_correction`), after the mixed-precision
            search (which judges the uncorrected model), so no correction is left for an error that a
            float point no longer makes.
        bias_correction_samples: at most this many calibration samples (evenly spaced) measure the shifts.
    """

    model: Path
    calibration: Path
    output: Path
    per_channel: bool = True
    method: str = "minmax"
    num_bins: int = 2048
    percentile: float = 99.99
    keep_float: tuple[str, ...] = field(default_factory=tuple)
    batch_size: int = 1
    chunk_size: int = 32
    histogram_everywhere: bool = False
    encoding: str = "u8s8"
    ranges: Path | None = None
    max_nme_drop: float | None = None
    validation_fraction: float = 0.25
    validation_samples: int = 96
    bias_correction: bool = False
    bias_correction_samples: int = 64

    def __post_init__(self):
        if self.method not in METHODS:
            raise unknown_name("calibration method", self.method, METHODS)
        unknown = [name for name in self.keep_float if name not in KEEP_FLOAT]
        if unknown:
            raise UsageError(f"--keep-float got {', '.join(unknown)}; valid: {', '.join(KEEP_FLOAT)} (comma-separated)")
        if self.method in ("entropy", "percentile") and self.num_bins < MIN_HISTOGRAM_BINS:
            raise UsageError(
                f"--num-bins {self.num_bins} is too few for {self.method}; use at least "
                f"{MIN_HISTOGRAM_BINS} (2048 is usual): with {NUM_QUANTIZED_BINS} bins entropy equals minmax"
            )
        if not 0 < self.percentile <= 100:
            raise UsageError(f"--percentile must be in (0, 100], got {self.percentile}")
        if self.batch_size < 1 or self.chunk_size < self.batch_size:
            raise UsageError(f"need 1 <= --batch-size ({self.batch_size}) <= --chunk-size ({self.chunk_size})")
        if self.encoding not in ENCODINGS:
            raise unknown_name("encoding", self.encoding, ENCODINGS)
        if self.max_nme_drop is not None and not (np.isfinite(self.max_nme_drop) and self.max_nme_drop >= 0):
            raise UsageError(f"--max-nme-drop must be a number >= 0 (percent points of NME), got {self.max_nme_drop}")
        if self.validation_samples < 1:
            raise UsageError(f"validation_samples must be at least 1, got {self.validation_samples}")
        if not 0 < self.validation_fraction < 1:
            raise UsageError(f"--validation-fraction must be in (0, 1), got {self.validation_fraction}")
        if self.bias_correction_samples < 1:
            raise UsageError(f"bias_correction_samples must be at least 1, got {self.bias_correction_samples}")


class ArrayDataReader:
    """ONNX Runtime's ``CalibrationDataReader`` over an in-memory (N, 3, S, S) array, in batches."""

    def __init__(self, inputs: np.ndarray, input_name: str, batch_size: int):
        self._batches = iter(
            [{input_name: np.ascontiguousarray(inputs[i : i + batch_size])} for i in range(0, len(inputs), batch_size)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def int8_from_onnx(config: Int8Config) -> Card:
    """Quantize a float ONNX artifact to a static INT8 Q/DQ artifact with its card.

    Returns:
        The INT8 artifact's card.

    Raises:
        ExportError, CardError, CalibrationError, UsageError: one line, nothing written.
    """
    output = check_output_path(config.output, config.model)
    started = time.perf_counter()
    model = load_onnx(config.model)
    card = read_card(config.model)
    if card.precision != "fp32":
        raise CardError(f"{config.model}: card says precision {card.precision}; quantize the fp32 artifact instead")
    calibration = read_calibration_array(config.calibration)
    _check_calibration(model, card, calibration, config)
    excluded = nodes_kept_float(model, config.keep_float)
    float_model = prepared_for_quantization(model)
    model_sha256 = file_sha256(config.model)

    validation = None
    if config.max_nme_drop is not None:
        from export.mixed_precision import validation_split

        held_out = validation_split(calibration.manifest.get("samples", []), len(calibration), config.validation_fraction)
        validation = calibration.inputs[held_out]
        calibration = CalibrationSet(calibration.inputs[~held_out], calibration.manifest, calibration.path, calibration.sha256)
        if len(calibration) < config.batch_size or not len(validation):
            raise CalibrationError(
                f"{config.calibration}: too few samples to hold out a validation split for --max-nme-drop "
                f"({len(calibration)} calibration, {len(validation)} validation); build a larger calibration array"
            )
        logger.info("validation split: %d samples held out of calibration for --max-nme-drop", len(validation))

    if config.ranges is not None:
        table = RangeTable.load(config.ranges)
        if table.model_sha256 != model_sha256:
            raise RangeTableError(
                f"{config.ranges}: range table of another model (sha256 {table.model_sha256[:12]}…, "
                f"{config.model} is {model_sha256[:12]}…); calibrate this model instead of passing --ranges"
            )
    else:
        table = range_table(float_model, calibration, card.input_name, config, model_sha256)
    quantized = qdq_from_ranges(float_model, table, config.per_channel, excluded)

    mixed: dict = {}
    if config.max_nme_drop is not None:
        quantized, mixed = _mixed_precision(quantized, float_model, card, validation, config)
    corrected: dict = {}
    if config.bias_correction:  # after the search: a point it keeps float must not keep a correction for its error
        from export.bias_correction import bias_corrected

        count = min(len(calibration), config.bias_correction_samples)
        picked = calibration.inputs[np.linspace(0, len(calibration) - 1, count).astype(int)]
        quantized, corrected = bias_corrected(quantized, float_model, picked)
        if mixed:
            corrected["note"] = "applied after the mixed-precision search; its errors are of the uncorrected model"

    float_tensors = float_tail(quantized)
    check_onnx(quantized, f"{output} (quantized)")
    # Every encoding is checked in its s8s8 form, the one TensorRT builds (u8s8 is made from it and back losslessly).
    problems = check_trt_ready(quantized, per_channel=config.per_channel)
    if problems:
        raise ExportError(f"the quantized model is not TensorRT-ready ({len(problems)} problems, first: {problems[0]})")
    quantized = encode(quantized, config.encoding)
    _check_runs(quantized, calibration.inputs[: config.batch_size])

    quantization = {
        "format": "QDQ",
        "encoding": config.encoding,
        "encoding_for": ENCODING_TARGETS[config.encoding],
        "activations": (
            "int8 symmetric per-tensor"
            if config.encoding == "s8s8"
            else "uint8 per-tensor on the s8s8 scales: zero point 128, or 0 where a Relu is folded in; "
            "upsampling deconvolutions as sub-pixel convolutions"
        ),
        "weights": f"int8 symmetric {'per-channel' if config.per_channel else 'per-tensor'}",
        "bias": "float" + (", bias-corrected" if corrected.get("applied") else ""),
        **({"bias_correction": corrected} if corrected else {}),
        "float_tail": float_tensors,
        "keep_float": list(config.keep_float),
        "nodes_kept_float": excluded,
        **({"mixed_precision": mixed} if mixed else {}),
        **qdq_summary(quantized),
    }
    card = card.with_changes(
        precision="int8",
        calibration={
            **calibration.summary(),
            "method": table.method,
            "num_bins": config.num_bins if table.method != "minmax" else None,
            "percentile": config.percentile if table.method == "percentile" else None,
            "per_channel": config.per_channel,
            "symmetric": True,
            "batch_size": config.batch_size,
            **table.details,
            **table.summary(),
            **({"ranges_from": str(config.ranges)} if config.ranges is not None else {}),
        },
        tools={**card.tools, **tool_versions("onnx", "onnxruntime")},
        extra={
            **card.extra,
            "opset": _default_opset(quantized),
            "quantization": quantization,
            "parent": str(config.model),
            "parent_sha256": model_sha256,
        },
    )
    table.save(ranges_path(output))
    save_artifact(quantized, card, output)
    logger.info(
        "quantized %s -> %s in %.1f s (%s ranges %s, %s, %s, %d calibration samples%s)",
        config.model,
        output,
        time.perf_counter() - started,
        table.method,
        table.sha256()[:12],
        config.encoding,
        "per-channel" if config.per_channel else "per-tensor",
        len(calibration),
        f", {len(mixed.get('kept_float', []))} points float" if mixed else "",
    )
    return card


def range_table(
    float_model: onnx.ModelProto, calibration: CalibrationSet, input_name: str, config: Int8Config, model_sha256: str
) -> RangeTable:
    """Calibrate ``float_model`` with the configured method into a :class:`~export.ranges.RangeTable`."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    with tempfile.TemporaryDirectory(prefix="edgemark-int8-") as temporary:
        float_path = Path(temporary) / "float.onnx"
        onnx.save(float_model, str(float_path))
        cache = Path(temporary) / "ranges.json"
        try:
            details = calibrate_ranges(float_path, calibration, input_name, config, cache)
        except EdgemarkError:
            raise
        except Exception as error:  # ORT raises many types on models it cannot calibrate
            raise ExportError(
                f"{config.model}: ONNX Runtime could not calibrate it ({first_line(error)}); nothing written"
            ) from error
        data = load_tensors_data(cache).data
    ranges = {name: (float(np.min(value.range_value[0])), float(np.max(value.range_value[1]))) for name, value in data.items()}
    return RangeTable(
        ranges=ranges,
        model_sha256=model_sha256,
        method=config.method,
        samples=len(calibration),
        calibration_sha256=calibration.sha256,
        details=dict(details),
    )


def _mixed_precision(
    quantized: onnx.ModelProto, float_model: onnx.ModelProto, card: Card, validation: np.ndarray, config: Int8Config
) -> tuple[onnx.ModelProto, dict]:
    """Keep the fewest quantization points float that meet ``config.max_nme_drop``; time what that costs."""
    from export.mixed_precision import AgreementProbe, fewest_float_points, median_latency_ms

    # Evenly spaced and capped: every candidate of the search runs the whole split.
    count = min(len(validation), config.validation_samples)
    picked = validation[np.linspace(0, len(validation) - 1, count).astype(int)]
    probe = AgreementProbe(float_model, card, picked)
    try:
        result = fewest_float_points(
            quantized, float_model, probe, config.max_nme_drop, head_tensors=tensors_kept_at_minmax(float_model)
        )
        timing_inputs = validation[:1]
        record = dict(result.record)
        record["latency_ms_batch1"] = {
            "float": median_latency_ms(float_model, card, timing_inputs),
            "all_int8": median_latency_ms(encode(quantized, config.encoding), card, timing_inputs),
            "mixed": median_latency_ms(encode(result.model, config.encoding), card, timing_inputs),
            "note": "ONNX Runtime CPU, median of 50 calls, measured during export on this machine",
        }
    finally:
        probe.close()
    return result.model, record


def calibrate_ranges(
    model_path: Path, calibration: CalibrationSet, input_name: str, config: Int8Config, cache: Path
) -> dict:
    """Collect activation ranges chunk by chunk with the configured method and bins; save them to ``cache``.

    With ``entropy`` or ``percentile``, feature vectors and the regression head
    (:func:`tensors_kept_at_minmax`) get their MinMax range unless ``config.histogram_everywhere``,
    and entropy thresholds come from :func:`entropy_threshold`.

    Returns:
        What the card records about the ranges: the tensors kept at MinMax and the entropy search.
    """
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, create_calibrator, save_tensors_data
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    options = {
        "symmetric": True,
        "num_bins": config.num_bins,
        "num_quantized_bins": NUM_QUANTIZED_BINS,
        "percentile": config.percentile,
    }
    started = time.perf_counter()
    with _quiet():
        calibrator = create_calibrator(
            model_path,
            op_types_to_calibrate=sorted(set(QLinearOpsRegistry) | set(QDQRegistry)),
            augmented_model_path=str(model_path.with_name("augmented.onnx")),
            calibrate_method=_method_enum(config.method),
            extra_options=options,
        )
    record: dict = {}
    try:
        from tqdm import tqdm

        chunks = tqdm(
            list(calibration.chunks(config.chunk_size)),
            desc=f"calibrating ({config.method})",
            unit="chunk",
            disable=len(calibration) <= config.chunk_size,
            leave=False,
        )
        for chunk in chunks:
            with _quiet():
                calibrator.collect_data(ArrayDataReader(chunk, input_name, config.batch_size))
        if config.method == "minmax":
            with _quiet():
                ranges = calibrator.compute_data()
        else:
            # (hist, edges, min, max[, threshold]): entropy's histogram is two-sided, percentile's of |x|.
            histograms = calibrator.collector.histogram_dict
            if config.method == "entropy":
                thresholds = {name: entropy_threshold(*histogram[:2]) for name, histogram in histograms.items()}
                record["entropy_search"] = (
                    f"TensorRT-style KL on |x| ({NUM_QUANTIZED_BINS} levels per sign, zero bin excluded)"
                )
            else:
                with _quiet():
                    computed = calibrator.compute_data()
                thresholds = {name: float(np.max(np.abs(computed.data[name].range_value))) for name in histograms}
            # The collector records each tensor's extremes beside its histogram: MinMax without a second pass.
            extremes = {name: float(max(abs(hist[2]), abs(hist[3]))) for name, hist in histograms.items()}
            protected = set()
            if not config.histogram_everywhere:
                protected = set(tensors_kept_at_minmax(onnx.load(str(model_path))))
            kept = sorted(name for name in histograms if name in protected)
            data = {}
            for name, extreme in extremes.items():
                bound = extreme if name in protected else min(thresholds[name], extreme)
                data[name] = TensorData(lowest=np.float32(-bound), highest=np.float32(bound))
            ranges = TensorsData(_method_enum(config.method), data)
            record["minmax_tensors"] = kept
            logger.info("%d feature-vector and head tensors kept at MinMax ranges", len(kept))
    finally:
        calibrator.infer_session = None
    save_tensors_data(ranges, cache)
    logger.info(
        "calibrated %d tensors on %d samples with %s%s in %.1f s",
        len(ranges.data),
        len(calibration),
        config.method,
        f" ({config.num_bins} bins)" if config.method != "minmax" else "",
        time.perf_counter() - started,
    )
    return record


def entropy_threshold(histogram: np.ndarray, edges: np.ndarray, levels: int = NUM_QUANTIZED_BINS) -> float:
    """The |x| bound that minimises the KL divergence of int8 quantization (TensorRT's entropy calibration).

    For each candidate bound (from ``levels`` histogram bins of ``|x|`` up to all of them) the reference
    distribution ``p`` is the histogram below the bound with everything above it added to its last
    bin; the candidate ``q`` merges those bins into ``levels`` quantization levels and spreads each
    level's count evenly over its non-empty bins. The zero bin takes its neighbour's count first:
    a ReLU output is mostly exact zeros, which quantize without error at any bound, and letting that
    spike into the divergence makes it favour bounds that clip the values that carry information.
    Ties go to the larger bound.

    Args:
        histogram: counts of a two-sided histogram over ``[-T, T]`` (ONNX Runtime's entropy
            collector), or of ``|x|`` over ``[0, T]`` when ``edges[0] >= 0``.
        edges: its ``len(histogram) + 1`` bin edges.
        levels: magnitude levels of the integer grid (128 for symmetric int8).

    Returns:
        The bound, in the tensor's units.
    """
    counts = np.asarray(histogram, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    if edges[0] < 0:  # fold the two-sided histogram onto |x|
        middle = len(counts) // 2
        if len(counts) % 2 == 0:
            counts, edges = counts[middle:] + counts[:middle][::-1], edges[middle:]
        else:  # the middle bin straddles zero: it becomes a first, half-width bin
            counts = np.concatenate([[counts[middle]], counts[middle + 1 :] + counts[:middle][::-1]])
            edges = np.concatenate([[0.0], edges[middle + 1 :]])
    bins = len(counts)
    if bins <= levels or counts.sum() == 0:
        return float(edges[-1])
    counts = counts.copy()
    counts[0] = counts[1]
    occupied = counts > 0
    tail = np.concatenate([np.cumsum(counts[::-1])[::-1], [0.0]])  # tail[i]: counts at or above bin i
    best, best_end = np.inf, bins
    for end in range(levels, bins + 1):
        reference = counts[:end].copy()
        reference[-1] += tail[end]
        level = np.arange(end) * levels // end
        merged = np.bincount(level, weights=counts[:end], minlength=levels)
        support = np.bincount(level, weights=occupied[:end], minlength=levels)
        candidate = np.where(occupied[:end], merged[level] / np.maximum(support[level], 1.0), 0.0)
        if candidate.sum() == 0:
            continue
        reference /= reference.sum()
        candidate /= candidate.sum()
        present = reference > 0
        if np.any(candidate[present] == 0):
            continue  # an outlier bin the candidate cannot represent: infinite divergence
        divergence = float(np.sum(reference[present] * np.log(reference[present] / candidate[present])))
        if divergence <= best:
            best, best_end = divergence, end
    return float(edges[best_end])


def tensors_kept_at_minmax(model: onnx.ModelProto) -> list[str]:
    """Activations whose range a histogram method must not clip: feature vectors and the regression head.

    Histogram calibration (entropy, percentile) assumes a tensor's values are many samples of one
    distribution, so the rare large ones can be clipped to resolve the bulk better. That holds for a
    feature map (H x W values per channel). It does not hold where each element is a feature of its
    own and a large value is signal:

    - **feature vectors**: tensors without spatial extent (rank 2, or every spatial size 1): globally
      pooled features, squeeze-excitation gates (each a channel's gain: clipping one rescales the
      whole channel), fully-connected outputs;
    - **the regression head**: walking back from each graph output through data movement (Reshape,
      Flatten, Concat, ...), elementwise ops and fully-connected layers (Gemm, MatMul, a Conv whose
      output is 1x1), every tensor met, e.g. the map a Flatten or a whole-map convolution turns into
      features, and the graph outputs themselves (a ``coords`` model regresses positions in [0, 1]).
      The walk stops at any other producer (a spatial convolution, a pooling): what feeds those is a
      feature map again. A heatmap model's head is a spatial convolution, so only its outputs are met.

    The same walk runs from every feature vector, so what a fully-connected layer reads is kept too.

    Returns:
        Tensor names, sorted.
    """
    from onnx import shape_inference

    try:
        shaped = shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - without shapes only the graph outputs' walk remains
        shaped = model
    shapes: dict[str, list[int | None]] = {}
    for value in list(shaped.graph.value_info) + list(shaped.graph.output):
        if value.type.tensor_type.HasField("shape"):
            dims = value.type.tensor_type.shape.dim
            shapes[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    graph = model.graph
    constants = {tensor.name for tensor in graph.initializer}
    constants |= {output for node in graph.node if node.op_type == "Constant" for output in node.output}
    producers = {output: node for node in graph.node for output in node.output}

    def is_vector(name: str) -> bool:
        shape = shapes.get(name)
        return shape is not None and (len(shape) == 2 or (len(shape) > 2 and all(size == 1 for size in shape[2:])))

    def reads_elementwise(node: onnx.NodeProto) -> bool:
        if node.op_type in HEAD_DATA_MOVEMENT_OPS + HEAD_ELEMENTWISE_OPS + HEAD_FULLY_CONNECTED_OPS:
            return True
        return node.op_type == "Conv" and is_vector(node.output[0])

    found: set[str] = set()
    activations = [output for node in graph.node for output in node.output if output not in constants]
    stack = [value.name for value in graph.output] + [name for name in activations if is_vector(name)]
    while stack:
        name = stack.pop()
        if name in found or name in constants:
            continue
        found.add(name)
        producer = producers.get(name)
        if producer is not None and reads_elementwise(producer):
            stack += [source for source in producer.input if source and source not in constants]
    return sorted(found)


def prepared_for_quantization(model: onnx.ModelProto) -> onnx.ModelProto:
    """The float model at opset >= 13 (per-channel Q/DQ), without the card (it is re-embedded later)."""
    opset = _default_opset(model)
    if opset < MIN_OPSET:
        from onnx import version_converter

        logger.info("converting opset %d -> %d for per-channel Q/DQ", opset, MIN_OPSET)
        try:
            model = version_converter.convert_version(model, MIN_OPSET)
        except Exception as error:  # noqa: BLE001
            raise ExportError(
                f"cannot convert the model from opset {opset} to {MIN_OPSET} for Q/DQ ({error})"
            ) from None
        check_onnx(model, f"opset-{MIN_OPSET} conversion")
    return model


def nodes_kept_float(model: onnx.ModelProto, keep_float: tuple[str, ...]) -> list[str]:
    """Names of nodes to leave unquantized: decode ops always; first conv, head, depthwise convs on request."""
    nodes = list(model.graph.node)
    unnamed = [n for n in nodes if not n.name and (n.op_type in DECODE_OPS or n.op_type in WEIGHT_OPS)]
    if unnamed:
        raise ExportError(
            "some Conv/Gemm/decode nodes have no name, so they cannot be excluded from quantization; "
            "re-export the model (torch and onnx-simplifier name every node)"
        )
    excluded = [n.name for n in nodes if n.op_type in DECODE_OPS]
    if "first_conv" in keep_float:
        first = next((n for n in nodes if n.op_type == "Conv"), None)
        if first is None:
            raise UsageError("--keep-float first_conv: the model has no Conv node")
        excluded.append(first.name)
    if "head" in keep_float:
        last = next((n for n in reversed(nodes) if n.op_type in WEIGHT_OPS), None)
        if last is None:
            raise UsageError("--keep-float head: the model has no Conv/Gemm/MatMul node")
        if last.name not in excluded:
            excluded.append(last.name)
    if "depthwise" in keep_float:
        depthwise = [n.name for n in nodes if _is_depthwise(model, n) and n.name not in excluded]
        if not depthwise:
            raise UsageError("--keep-float depthwise: the model has no depthwise convolution")
        excluded.extend(depthwise)
    return excluded


def _is_depthwise(model: onnx.ModelProto, node) -> bool:
    """A Conv with more than one group and one input channel per group (weights (C_out, 1, kh, kw))."""
    if node.op_type != "Conv":
        return False
    group = next((attribute.i for attribute in node.attribute if attribute.name == "group"), 1)
    weights = next((tensor for tensor in model.graph.initializer if tensor.name == node.input[1]), None)
    return group > 1 and weights is not None and len(weights.dims) == 4 and weights.dims[1] == 1


def _check_calibration(model: onnx.ModelProto, card: Card, calibration: CalibrationSet, config: Int8Config) -> None:
    check_for_card(calibration, card, config.calibration)
    if len(calibration) < config.batch_size:
        raise CalibrationError(
            f"{config.calibration}: {len(calibration)} samples is fewer than --batch-size {config.batch_size}; "
            "use more samples or a smaller batch"
        )
    initializers = {tensor.name for tensor in model.graph.initializer}
    image_input = next(v for v in model.graph.input if v.name not in initializers)
    first = image_input.type.tensor_type.shape.dim[0]
    if first.HasField("dim_value") and config.batch_size != first.dim_value:
        raise UsageError(f"{config.model}: batch is fixed at {first.dim_value}; use --batch-size {first.dim_value}")


def _check_runs(model: onnx.ModelProto, inputs: np.ndarray) -> None:
    with open_model(model.SerializeToString()) as runner:
        output = runner.run(inputs, batch_size=len(inputs))
    if not np.all(np.isfinite(output)):
        raise ExportError("the quantized model produces NaN or infinity on calibration samples; nothing written")


def _method_enum(method: str):
    from onnxruntime.quantization import CalibrationMethod

    return {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[method]


def _default_opset(model: onnx.ModelProto) -> int:
    return next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 0)


@contextlib.contextmanager
def _quiet():
    """ONNX Runtime's calibrators print progress and warn about pre-processing; route that to debug logs."""
    quant_logger = logging.getLogger()
    buffer = io.StringIO()
    previous = quant_logger.level
    quant_logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        quant_logger.setLevel(previous)
        if buffer.getvalue().strip():
            logger.debug("onnxruntime.quantization: %s", buffer.getvalue().strip().replace("\n", " | "))
