"""From per-fold rows to the study's summary: aggregates, pairs, the memorisation note."""
from __future__ import annotations

import datetime
import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from calib.study.config import NORMALISATIONS, QUANTIZERS, StudyConfig
from calib.study.folds import face_kind, paired_summary

if TYPE_CHECKING:
    from calib.study.run import StudyContext
from runtime.machine import machine_description

logger = logging.getLogger("calib.study")


# ---------------------------------------------------------------------------------------------------
# Aggregation


def summarise(context: StudyContext, rows: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    config = context.config
    names = [Path(image).name for image in context.crops.images]
    primary = config.proxy_seeds[0]
    table = []
    for quantizer in config.quantizers:
        for source in config.sources:
            for seed in config.proxy_seeds if source != "real" else (primary,):
                table.append(_aggregate(rows, quantizer, source, seed, config.folds))
    paired = []
    for quantizer in config.quantizers:
        for first, second, first_seed in _pairs(config):
            entry = {"quantizer": quantizer, "first": first, "second": second, "first_seed": first_seed}
            entry.update(_paired(rows, quantizer, (first, first_seed), (second, primary)))
            paired.append(entry)
    return {
        "title": "INT8 calibration study: synthetic style proxies vs real faces",
        "command": config.command,
        "config": {key: _jsonable(value) for key, value in asdict(config).items()},
        "model": {
            "path": str(context.model),
            "layout": context.card.layout,
            "output_kind": context.card.output_kind,
            "input_size": context.card.input_size,
            "source_sha256": context.card.source_sha256,
        },
        "memorised": _memorisation_note(context),
        "machine": machine_description(),  # runtime.machine
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": round(seconds, 1),
        "folds": [
            {"fold": fold, "evaluation_faces": [n for n, f in zip(names, context.folds) if f == fold]}
            for fold in range(config.folds)
        ],
        "fp32": {
            "faces": [
                {"image": name, **{norm: float(context.fp32[norm][i]) for norm in NORMALISATIONS}, "kind": face_kind(s)}
                for i, (name, s) in enumerate(zip(names, context.samples))
            ],
            **{f"mean_{norm}": float(context.fp32[norm].mean()) for norm in NORMALISATIONS},
        },
        "quantizers": {name: QUANTIZERS[name].description for name in config.quantizers},
        "table": table,
        "paired": paired,
        "rows": rows,
    }


def _pairs(config: StudyConfig) -> list[tuple[str, str, int]]:
    """(first source, second source, first's seed): proxies - real, mixed - real, proxies(seed) - proxies(seed 0)."""
    pairs = []
    primary = config.proxy_seeds[0]
    for source in ("proxies", "mixed", "translator"):
        if source in config.sources and "real" in config.sources:
            pairs.append((source, "real", primary))
    if "proxies" in config.sources:
        pairs += [("proxies", "proxies", seed) for seed in config.proxy_seeds[1:]]
    return pairs


def _select(rows, quantizer: str, source: str, seed: int) -> list[dict[str, Any]]:
    return [r for r in rows if r["quantizer"] == quantizer and r["source"] == source and r["seed"] == seed]


def _aggregate(rows, quantizer: str, source: str, seed: int, folds: int) -> dict[str, Any]:
    selected = _select(rows, quantizer, source, seed)
    failed = [r for r in selected if r["status"] != "ok"]
    entry: dict[str, Any] = {"quantizer": quantizer, "source": source, "seed": seed}
    if failed:
        entry["status"] = "failed"
        entry["reason"] = "; ".join(f"fold {r['fold']}: {r['reason']}" for r in failed)
    else:
        entry["status"] = "ok"
    faces = [face for r in selected if r["status"] == "ok" for face in r["faces"]]
    entry["faces"] = len(faces)
    for norm in NORMALISATIONS:
        values = np.array([face[f"change_{norm}"] for face in faces])
        entry[f"mean_change_{norm}"] = float(values.mean()) if len(values) else None
        entry[f"sd_change_{norm}"] = float(values.std(ddof=1)) if len(values) > 1 else None
    entry["per_fold_inter_ocular"] = {
        str(r["fold"]): r["mean_change_inter_ocular"]
        for r in sorted(selected, key=lambda r: r["fold"])
        if r["status"] == "ok"
    }
    entry["label_free"] = _pooled_label_free([r["label_free"] for r in selected if r["status"] == "ok"])
    return entry


def _pooled_label_free(per_fold: list[dict[str, list]]) -> dict[str, Any] | None:
    """Label-free summaries (mean, p95, max, worst inputs; percent) pooled over the folds, overall and per kind."""
    from runtime.metrics import summarise_agreement

    if not per_fold:
        return None
    names = [name for fold in per_fold for name in fold["inputs"]]
    kinds = np.array([kind for fold in per_fold for kind in fold["kinds"]])
    pooled: dict[str, Any] = {}
    for norm in NORMALISATIONS:
        # Stored in percent, None where not finite; summarise_agreement takes fractions.
        values = np.array([np.nan if v is None else v / 100 for fold in per_fold for v in fold[norm]], dtype=np.float64)
        pooled[norm] = summarise_agreement(values, names)
        if norm == "inter_ocular":
            pooled["by_kind"] = {
                kind: summarise_agreement(
                    values[kinds == kind], [name for name, k in zip(names, kinds) if k == kind], worst=1
                )
                for kind in ("face", "style", "frame")
                if np.any(kinds == kind)
            }
    return pooled


def _paired(rows, quantizer: str, first: tuple[str, int], second: tuple[str, int]) -> dict[str, Any]:
    """Per-face differences first - second of the INT8 NME change (FP32 cancels: it is INT8 NME first - second)."""

    def by_face(source: str, seed: int) -> dict[str, dict[str, float]]:
        return {
            face["image"]: face
            for r in _select(rows, quantizer, source, seed)
            if r["status"] == "ok"
            for face in r["faces"]
        }

    a, b = by_face(*first), by_face(*second)
    common = sorted(set(a) & set(b))
    result: dict[str, Any] = {"per_face": []}
    for norm in NORMALISATIONS:
        differences = np.array([a[name][f"change_{norm}"] - b[name][f"change_{norm}"] for name in common])
        result[norm] = paired_summary(differences)
    result["per_face"] = [
        {"image": name, **{norm: a[name][f"change_{norm}"] - b[name][f"change_{norm}"] for norm in NORMALISATIONS}}
        for name in common
    ]
    return result


def _memorisation_note(context: StudyContext) -> str | None:
    """Say so when the model was trained on the evaluation faces (a checkpoint's recorded training data)."""
    if context.config.checkpoint is None:
        return None
    from calib.build import file_sha256
    from runtime.annotations import read_dataset
    from train.checkpoint import load_checkpoint

    training = (load_checkpoint(context.config.checkpoint).get("config") or {}).get("train_data")
    if not training:
        return "the checkpoint does not record its training data; check it did not include these faces"
    candidates = [Path(training), Path(context.config.checkpoint).parent / training]
    folder = next((path for path in candidates if path.exists()), None)
    if folder is None:
        return f"the checkpoint was trained on {training} (not found from here); check it did not include these faces"
    trained = {file_sha256(sample.image) for sample in read_dataset(folder)}
    overlap = sum(file_sha256(sample.image) in trained for sample in context.samples)
    if not overlap:
        return None
    return (
        f"the model was trained on {overlap} of these {len(context.samples)} faces ({training}): it has memorised "
        "them, so its FP32 and INT8 NME are optimistic; the INT8 changes still compare calibration sources fairly"
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value
