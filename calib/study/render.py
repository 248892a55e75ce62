"""The study's Markdown report."""
from __future__ import annotations

import logging
from typing import Any



logger = logging.getLogger("calib.study")


# ---------------------------------------------------------------------------------------------------
# Markdown


def _number(value: float | None, digits: int = 2, signed: bool = True) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _label_free_cell(label_free: dict[str, Any] | None) -> str:
    if not label_free or not label_free["inter_ocular"]["inputs"]:
        return "–"
    io = label_free["inter_ocular"]
    return " / ".join(_number(io[key], signed=False) for key in ("mean", "p95", "max"))


def _label_free_section(study: dict[str, Any]) -> list[str]:
    """Label-free error per quantizer and source: by input kind, and the worst inputs named."""
    entries = [e for e in study["table"] if e.get("label_free") and e["label_free"]["inter_ocular"]["inputs"]]
    if not entries:
        return []
    kinds = [kind for kind in ("face", "style", "frame") if any(kind in e["label_free"]["by_kind"] for e in entries)]
    titles = {"face": "faces", "style": "style variants", "frame": "video frames"}
    counts = {kind: entries[0]["label_free"]["by_kind"][kind]["inputs"] for kind in kinds}
    lines = [
        "",
        "## Label-free error: INT8 points against FP32 points, no labels",
        "",
        (
            "NME of the INT8 model's points taking the FP32 model's points as the truth, in percent of the FP32 "
            "points' inter-ocular distance, pooled over the folds: "
            + ", ".join(f"{counts[kind]} {titles[kind]}" for kind in kinds)
            + " (faces and style variants of the evaluation folds; one variant of every style proxy per face; "
            "video frames cut from the FP32 model's own landmarks, seen by every fold's model). Each input is "
            "cut once and fed to both models. Mean / p95 per kind; the worst inputs overall."
        ),
        "",
        "| quantizer | calibration | "
        + " | ".join(f"{titles[kind]} mean / p95" for kind in kinds)
        + " | worst inputs (io %) |",
        "| --- | --- | " + " | ".join("---" for _ in kinds) + " | --- |",
    ]
    for entry in entries:
        free = entry["label_free"]
        cells = []
        for kind in kinds:
            summary = free["by_kind"].get(kind)
            mean, p95 = (_number(summary[key], signed=False) for key in ("mean", "p95")) if summary else ("–", "–")
            cells.append(f"{mean} / {p95}")
        worst = ", ".join(f"{w['input']} {_number(w['nme'], signed=False)}" for w in free["inter_ocular"]["worst"][:3])
        seeded = len(study["config"]["proxy_seeds"]) > 1 and entry["source"] != "real"
        source = entry["source"] + (f" (seed {entry['seed']})" if seeded else "")
        lines.append(f"| {entry['quantizer']} | {source} | " + " | ".join(cells) + f" | {worst} |")
    return lines


def markdown_report(study: dict[str, Any]) -> str:
    """``study.md``: the protocol, the exact command and machine, the tables, the notes."""
    config, machine, fp32 = study["config"], study["machine"], study["fp32"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["libraries"].items())
    kinds = {face["kind"] for face in fp32["faces"]}
    lines = [
        f"# {study['title']}",
        "",
        (
            f"Model `{study['model']['path']}` ({study['model']['layout']}, {study['model']['output_kind']}, "
            f"{study['model']['input_size']} px), {len(fp32['faces'])} faces from `{config['faces']}`. "
            f"FP32 NME: inter-ocular {fp32['mean_inter_ocular']:.2f} %, box {fp32['mean_box']:.2f} %."
        ),
        "",
        "```",
        study["command"] or "(library call)",
        "```",
        "",
        (
            f"Machine: {machine['cpu']}, {machine['usable_cpus']} usable CPUs ({' '.join(machine['isa'])}); {versions}. "
            f"{study['date']}, {study['seconds']:.0f} s."
        ),
        "",
        (
            f"Protocol: {config['folds']}-fold split (seed {config['seed']}, stratified by annotation kind); "
            "for each fold every calibration set is built only from the other folds' faces (the evaluation "
            "fold is `--exclude`d), each INT8 model is scored on the evaluation fold, and the folds are pooled, "
            f"so each face counts once. Calibration sets of {config['size']} samples: `proxies` = style proxies "
            "of the training faces (all styles), `real` = the training faces as they are, repeated to the same "
            "count (repetition changes no calibration statistic: it equals the unique crops), `mixed` = proxies "
            "plus each training face once. Values are NME changes INT8 − FP32 in percent points (lower is better); "
            "FP32 is ONNX Runtime's for every toolkit."
        ),
        "",
    ]
    if study.get("memorised"):
        lines += [f"**Note:** {study['memorised']}.", ""]
    lines += [
        "## NME change per quantizer and calibration source",
        "",
        "| quantizer | calibration | Δ NME inter-ocular (mean ± SD over faces) | per fold | Δ NME box "
        "| label-free io % mean / p95 / max | status |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for entry in study["table"]:
        source = entry["source"] + (
            f" (seed {entry['seed']})" if len(config["proxy_seeds"]) > 1 and entry["source"] != "real" else ""
        )
        folds = ", ".join(_number(v) for v in entry["per_fold_inter_ocular"].values()) or "–"
        io = (
            f"{_number(entry['mean_change_inter_ocular'])} ± {_number(entry['sd_change_inter_ocular'], signed=False)}"
            if entry["mean_change_inter_ocular"] is not None
            else "–"
        )
        status = "ok" if entry["status"] == "ok" else f"failed: {entry['reason']}"
        lines.append(
            f"| {entry['quantizer']} | {source} | {io} | {folds} | {_number(entry['mean_change_box'])} "
            f"| {_label_free_cell(entry.get('label_free'))} | {status} |"
        )
    lines += _label_free_section(study)
    if study["paired"]:
        lines += [
            "",
            "## Paired per face: does the source matter?",
            "",
            (
                "Difference of INT8 NME between two calibration sources on the same face (first − second; "
                "negative: the first calibrated better). SE = SD/√n; p = exact two-sided sign-flip permutation "
                "test of a zero mean. Rows `proxies (seed s) − proxies` compare two draws of the same proxies: "
                "their size is the noise floor of the calibration draw."
            ),
            "",
            "| quantizer | comparison | mean Δ inter-ocular ± SE | SD | range | faces lower / higher | p | mean Δ box ± SE | p box |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for entry in study["paired"]:
            io, box = entry["inter_ocular"], entry["box"]
            first = entry["first"] + (f" (seed {entry['first_seed']})" if entry["first"] == entry["second"] else "")
            if io["faces"] == 0:
                lines.append(
                    f"| {entry['quantizer']} | {first} − {entry['second']} | no faces in common (failed rows) | | | | | | |"
                )
                continue
            lines.append(
                f"| {entry['quantizer']} | {first} − {entry['second']} | {_number(io['mean'])} ± {_number(io['se'], signed=False)} "
                f"| {_number(io['sd'], signed=False)} | {_number(io['min'])} … {_number(io['max'])} "
                f"| {io['first_lower']} / {io['first_higher']} | {_p(io['sign_flip_p'])} "
                f"| {_number(box['mean'])} ± {_number(box['se'], signed=False)} | {_p(box['sign_flip_p'])} |"
            )
        main = [e for e in study["paired"] if e["first"] == "proxies" and e["second"] == "real"]
        if main:
            names = [face["image"] for face in main[0]["per_face"]]
            kinds_by_name = {face["image"]: face["kind"] for face in fp32["faces"]}
            lines += [
                "",
                "Per face, proxies − real (inter-ocular points):",
                "",
                "| face | kind | " + " | ".join(e["quantizer"] for e in main) + " |",
                "| --- | --- | " + " | ".join("---" for _ in main) + " |",
            ]
            for name in names:
                cells = []
                for entry in main:
                    value = next((f["inter_ocular"] for f in entry["per_face"] if f["image"] == name), None)
                    cells.append(_number(value))
                lines.append(f"| {name} | {kinds_by_name.get(name, '')} | " + " | ".join(cells) + " |")
    lines += ["", "## Notes", ""]
    if "3d_fit" in kinds:
        lines.append(
            "- AFLW2000 faces (`3d_fit`) have jaw contours from a 3-D fit, which a model trained on 2-D "
            "annotations does not follow, and which inflates their inter-ocular NME: read the box-normalised "
            "column beside it."
        )
    lines += [
        (
            f"- {len(fp32['faces'])} faces is a small sample: treat differences smaller than their SE, or with "
            "p above ~0.1, as noise. The claim about the hard WFLW subsets needs WFLW (not available here)."
        ),
        (
            "- p treats the faces as the random unit; it leaves out the randomness of the calibration draw, "
            "which the `proxies (seed s) − proxies` rows show. Over many comparisons about 1 in 20 reaches "
            f"p < 0.05 by chance ({len(study['paired'])} comparisons here)."
        ),
        "- Quantizers: " + "; ".join(f"`{k}`: {v}" for k, v in study["quantizers"].items()) + ".",
        "- Per-face values, fold membership and every failure reason are in `study.json`.",
        "",
    ]
    return "\n".join(lines)
