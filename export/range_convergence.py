"""How many calibration samples do the ranges need? Ranges and INT8 error on growing subsets.

A calibration array is split as ``--max-nme-drop`` splits it (whole source images held out,
:func:`export.mixed_precision.validation_split`). The rest, the *pool*, is shuffled once (seeded) and
its first ``n`` samples calibrate a range table for each ``n`` of a growing list, so every subset
contains the smaller ones. Each table is compared with the whole pool's, tensor by tensor, by the
relative change of the symmetric bound every encoding derives its scale from, and is encoded and
run: the label-free NME of its INT8 model against the float model on the held-out samples
(:class:`export.mixed_precision.AgreementProbe`). Ranges have converged where more samples change
neither.

With MinMax, nested subsets only widen bounds, so the changes shrink to zero at the full pool by
construction; what the table shows is how fast, and whether the model's error has stopped moving
long before. Histogram methods (entropy, percentile) can move either way.
"""
from __future__ import annotations

import logging
import time
from typing import Sequence

import numpy as np

from export.artifact import load_onnx
from export.calibration import CalibrationError, CalibrationSet, read_calibration_array
from export.encodings import encode, qdq_from_ranges
from export.ort_quantize import Int8Config, _check_calibration, nodes_kept_float, prepared_for_quantization, range_table
from export.ranges import RangeTable
from runtime.card import file_sha256, read_card
from runtime.errors import UsageError

logger = logging.getLogger(__name__)

DEFAULT_SIZES = (25, 50, 100, 200, 400)
DEFAULT_REPEATS = 3


def parse_sizes(text: str) -> tuple[int, ...]:
    """``"25,50,100"`` -> (25, 50, 100); a usage error names what is wrong."""
    try:
        sizes = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise UsageError(f"--convergence takes comma-separated sample counts like 25,50,100,200,400; got '{text}'") from None
    if not sizes or sizes[0] < 1:
        raise UsageError(f"--convergence sample counts must be at least 1; got '{text}'")
    return sizes


def bound_changes(table: RangeTable, reference: RangeTable) -> dict[str, float]:
    """Per tensor of ``reference`` with a non-zero bound: ``|bound - reference bound| / reference bound``."""
    return {
        name: abs(table.bound(name) - reference.bound(name)) / reference.bound(name)
        for name in reference.ranges
        if name in table.ranges and reference.bound(name) > 0
    }


def range_convergence(
    config: Int8Config, sizes: Sequence[int] = DEFAULT_SIZES, repeats: int = DEFAULT_REPEATS, seed: int = 0
) -> dict:
    """Calibrate on nested random subsets of growing size; compare each range table and INT8 model with the whole pool's.

    Args:
        config: the export's settings (model, calibration array, method, bins, per-channel, layers
            kept float, validation fraction and samples); nothing is written.
        sizes: subset sizes; those not smaller than the pool are dropped, and the pool itself is the last row.
        repeats: independent shuffles (draws) per size: the rows average them, and give the range of
            the label-free NME, so a lucky or unlucky draw is visible as such.
        seed: the first shuffle's seed (the others follow it).

    Returns:
        JSON-ready report: the split, the method, and one row per size with the max and median
        relative bound change against the pool's table (mean over draws; the tensor that moved most)
        and the label-free NME (inter-ocular %, mean over the held-out samples) of its INT8 model
        (mean over draws, and their range).

    Raises:
        CalibrationError: too few samples to hold out a validation split.
    """
    from export.mixed_precision import AgreementProbe, validation_split

    started = time.perf_counter()
    model = load_onnx(config.model)
    card = read_card(config.model)
    calibration = read_calibration_array(config.calibration)
    _check_calibration(model, card, calibration, config)
    excluded = nodes_kept_float(model, config.keep_float)
    float_model = prepared_for_quantization(model)
    model_sha256 = file_sha256(config.model)

    held_out = validation_split(calibration.manifest.get("samples", []), len(calibration), config.validation_fraction)
    pool, validation = calibration.inputs[~held_out], calibration.inputs[held_out]
    if len(pool) < config.batch_size or not len(validation):
        raise CalibrationError(
            f"{config.calibration}: too few samples for a convergence check ({len(pool)} to calibrate, "
            f"{len(validation)} held out); build a larger calibration array"
        )
    count = min(len(validation), config.validation_samples)
    validation = validation[np.linspace(0, len(validation) - 1, count).astype(int)]
    sizes = sorted({size for size in sizes if config.batch_size <= size < len(pool)} | {len(pool)})
    # One shuffle per repeat; each repeat's subsets are nested, the first n samples of its shuffle.
    orders = [np.random.default_rng(seed + repeat).permutation(len(pool)) for repeat in range(repeats)]

    def table_of(indices: np.ndarray) -> RangeTable:
        subset = CalibrationSet(pool[np.sort(indices)], calibration.manifest, calibration.path, calibration.sha256)
        return range_table(float_model, subset, card.input_name, config, model_sha256)

    full = table_of(np.arange(len(pool)))
    probe = AgreementProbe(float_model, card, validation)
    rows = []
    try:
        for size in sizes:
            draws = []
            for order in orders if size < len(pool) else orders[:1]:
                table = full if size == len(pool) else table_of(order[:size])
                changes = bound_changes(table, full)
                worst = max(changes, key=changes.get)
                quantized = encode(qdq_from_ranges(float_model, table, config.per_channel, excluded), config.encoding)
                draws.append((changes[worst], float(np.median(list(changes.values()))), worst, probe.error(quantized)))
            errors = [draw[3] for draw in draws]
            rows.append(
                {
                    "samples": size,
                    "draws": len(draws),
                    "max_relative_change": float(np.mean([draw[0] for draw in draws])),
                    "median_relative_change": float(np.mean([draw[1] for draw in draws])),
                    "most_changed_tensor": max(draws)[2] if max(draws)[0] > 0 else "",
                    "label_free_nme": float(np.mean(errors)),
                    "label_free_nme_range": [float(min(errors)), float(max(errors))],
                }
            )
            logger.info("convergence: %d samples, label-free NME %.3f %%", size, rows[-1]["label_free_nme"])
    finally:
        probe.close()
    return {
        "model": str(config.model),
        "calibration": str(config.calibration),
        "method": config.method,
        "encoding": config.encoding,
        "pool": int(len(pool)),
        "validation_inputs": int(len(validation)),
        "seed": seed,
        "subsets": f"nested: the first n samples of a seeded shuffle of the pool, {repeats} shuffles",
        "relative_change": "|bound - bound of the whole pool| / bound of the whole pool, over tensors",
        "label_free_nme": "INT8 vs float model points, inter-ocular %, mean over the held-out samples",
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }


def format_convergence(report: dict) -> str:
    """The report as a small text table."""
    lines = [
        f"ranges ({report['method']}) on nested random subsets of {report['pool']} calibration samples "
        f"(mean of {max(row['draws'] for row in report['rows'])} draws); "
        f"label-free NME of the {report['encoding']} INT8 model against the float model on "
        f"{report['validation_inputs']} held-out samples",
        f"{'samples':>8}  {'max bound change %':>18}  {'median %':>8}  {'label-free NME % (range)':>24}  "
        "most changed tensor",
    ]
    for row in report["rows"]:
        low, high = row["label_free_nme_range"]
        lines.append(
            f"{row['samples']:>8}  {row['max_relative_change'] * 100:>18.2f}  {row['median_relative_change'] * 100:>8.2f}  "
            f"{row['label_free_nme']:>8.3f} ({low:.3f}-{high:.3f})  {row['most_changed_tensor']}"
        )
    return "\n".join(lines)
