"""Render the report: one list of blocks (headings, paragraphs, lists, tables, images), written as
Markdown and as one self-contained HTML page, plus the PNG plots; :func:`write_report` writes them all."""
from __future__ import annotations

import base64
import html
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.bench import failure_reason, speed_cells, write_json
from runtime.report.config import THRESHOLD, ReportConfig, ReportError
from runtime.report.rows import Report

logger = logging.getLogger(__name__)

PLOTS = {
    "latency_vs_nme": "latency_vs_nme.png",
    "ced": "ced.png",
    "smoothing_jitter": "smoothing_jitter.png",
}
# Per-image NME tables longer than this go to the JSON only.
MAX_PER_IMAGE_ROWS = 60

Block = tuple[str, Any]  # ("h1"|"h2"|"h3"|"p", text), ("ul", [text]), ("img", (path, title)), ("table", Table)


@dataclass
class Table:
    """A table rendered the same way to Markdown and HTML; ``failed`` marks rows to highlight."""

    headers: list[str]
    rows: list[list[str]]
    align: str  # one of "l"/"r" per column
    failed: list[bool] = field(default_factory=list)
    caption: str = ""


def fmt(value, digits: int = 2, signed: bool = False) -> str:
    """A number for a table cell; ``—`` for none or not finite."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    value = round(float(value), digits) + 0.0  # no "-0.000"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


# -------------------------------------------------------------------------------------------------
# the blocks


def report_blocks(report: Report, plots: dict[str, Path]) -> list[Block]:
    """The whole report as blocks, failures first, then one section per stage, plots, notes and the machine."""
    video = report.video
    settings = report.config
    blocks: list[Block] = [("h1", report.title)]
    blocks.append(("p", f"Made {report.created} in {report.seconds:.0f} s on: {report.machine_summary}."))
    blocks.append(
        ("p", f"NME change is measured against {report.reference or 'no reference (none found)'} "
              "(models of another landmark layout: against the first FP32 artifact of their layout). "
              f"Faces: {report.faces['source'] or 'none'} ({report.faces['count']}). "
              f"Video: {settings['video'] or 'none'}"
              + (f" ({video['frames']} frames at {video['fps']:.0f} fps)." if video else "."))
    )  # fmt: skip

    # Failures first, so nobody misses them.
    failing = [row for row in report.artifacts if row.reasons]
    if failing:
        blocks.append(("h2", "Failures"))
        blocks.append(("ul", [f"{row.name} ({row.status}): {row.reason_text()}" for row in failing]))
    blocks += _accuracy_blocks(report)
    blocks += _label_free_blocks(report)
    blocks += _speed_blocks(report)
    if video:
        blocks += _tracking_blocks(report)
    for key, title in (("latency_vs_nme", "Speed vs accuracy"), ("ced", "Cumulative error distribution"),
                       ("smoothing_jitter", "Jitter per smoothing method")):  # fmt: skip
        if key in plots:
            blocks.append(("h2", title))
            blocks.append(("img", (plots[key], title)))
    blocks += _wflw_blocks(report)
    blocks += _per_image_blocks(report)
    blocks += _synthetic_blocks(report)
    blocks.append(("h2", "Notes"))
    blocks.append(("ul", report.notes))
    blocks.append(("h2", "Machine"))
    machine = report.machine
    machine_rows = [[key, ", ".join(value) if isinstance(value, list) else str(value)]
                    for key, value in machine.items() if key != "libraries"]  # fmt: skip
    machine_rows += [[f"{name} version", version] for name, version in machine["libraries"].items()]
    blocks.append(("table", Table(["", ""], machine_rows, "ll")))
    return blocks


def _accuracy_blocks(report: Report) -> list[Block]:
    reference = report.reference
    table_rows, failed = [], []
    for row in report.artifacts:
        result = row.accuracy
        io, box = (result.inter_ocular, result.box) if result else ({}, {})
        change = (result.nme_change if result else None) or {}
        table_rows.append(
            [row.name, row.backend or "—", row.precision or "—", row.status, str(result.faces) if result else "—",
             fmt(io.get("nme")), fmt(box.get("nme")), fmt(change.get("inter_ocular"), 3, True),
             fmt(change.get("box"), 3, True), fmt(io.get("fr"), 1), fmt(io.get("auc"), 4),
             row.stage_reason("accuracy")]
        )  # fmt: skip
        failed.append(not result)
    return [
        ("h2", "Accuracy"),
        ("table", Table(
            ["artifact", "backend", "precision", "status", "faces", "NME io %", "NME box %", "Δ NME io (pts)",
             "Δ NME box (pts)", "FR@0.1 %", "AUC@0.1", "reason"],
            table_rows, "llllrrrrrrrl", failed,
            "NME in percent of the inter-ocular distance (io) and of sqrt(w·h) of the truth box (box); Δ against "
            f"{reference or 'the reference'} (another layout: its own FP32 artifact); FR/AUC on inter-ocular NME at 0.1.")),
    ]  # fmt: skip


def _label_free_blocks(report: Report) -> list[Block]:
    labelled = [row for row in report.artifacts if row.label_free or "label_free" in row.reasons]
    if not labelled:
        return []
    table_rows, failed = [], []
    for row in labelled:
        result = row.label_free or {}
        io, box = result.get("inter_ocular") or {}, result.get("box") or {}
        counts = result.get("counts") or {}
        worst = (io.get("worst") or [{}])[0]
        inputs = " + ".join(f"{counts[kind]} {kind}s" for kind in ("frame", "face", "style") if counts.get(kind))
        table_rows.append(
            [row.name, row.precision or "—", result.get("reference", "—"), inputs or "—",
             fmt(io.get("mean"), 3), fmt(io.get("p95"), 3), fmt(io.get("max"), 3), fmt(box.get("mean"), 3),
             fmt(box.get("p95"), 3),
             f"{worst['input']} ({fmt(worst['nme'])})" if worst else "—", row.stage_reason("label_free")]
        )  # fmt: skip
        failed.append(not result)
    return [
        ("h2", "Label-free error against FP32"),
        ("table", Table(
            ["artifact", "precision", "against", "inputs", "mean io %", "p95 io %", "max io %", "mean box %",
             "p95 box %", "worst input (io %)", "reason"],
            table_rows, "llllrrrrrll", failed,
            "NME of each artifact's points taking the FP32 artifact's points as the truth (no labels), in percent "
            "of the FP32 points' own inter-ocular distance (io) or sqrt(w·h) of their box; every video frame "
            "(cut from the FP32 model's own landmarks; frames where it finds no face are skipped) and every "
            "face, each cut once and fed to both models. Worst inputs: report.json.")),
    ]  # fmt: skip


def _speed_blocks(report: Report) -> list[Block]:
    settings = report.config
    table_rows, failed = [], []
    for row in report.artifacts:
        speed = row.speed or {}
        latency = speed.get("latency_ms") or {}
        throughput, memory, note = speed_cells(speed)
        table_rows.append(
            [row.name, row.backend or "—", row.precision or "—", fmt(speed.get("load_s")),
             fmt(latency.get("p50"), 3), fmt(latency.get("p90"), 3), fmt(latency.get("p99"), 3), throughput,
             fmt(speed.get("file_mb")), memory, note]
        )  # fmt: skip
        failed.append(not row.speed_ok)
    return [
        ("h2", "Speed"),
        ("table", Table(
            ["artifact", "backend", "precision", "load s", "p50 ms", "p90 ms", "p99 ms", "images/s (batch)",
             "size MB", "peak RSS MB (+artifact)", "note"],
            table_rows, "lllrrrrrrrl", failed,
            f"Latency at batch 1 with {settings['threads']} threads after {settings['warmup']} warm-up calls, "
            f"{settings['runs']} timed calls per artifact interleaved in {settings['rounds']} rounds, each artifact "
            "in its own process; peak RSS of that process (+ the rise from loading and running the artifact).")),
    ]  # fmt: skip


def _tracking_blocks(report: Report) -> list[Block]:
    table_rows, failed = [], []
    for row in report.artifacts:
        video = row.video.to_json() if row.video else {}
        table_rows.append(
            [row.name, row.backend or "—", row.precision or "—",
             f"{video['faces_found']}/{video['frames']}" if video else "—", fmt(video.get("fps"), 0),
             fmt(video.get("infer_ms_per_frame")), fmt(video.get("jitter_raw_percent"), 3),
             fmt(video.get("jitter_raw_px"), 2), fmt(video.get("jitter_smoothed_percent"), 3),
             fmt(video.get("jitter_smoothed_px"), 2), row.stage_reason("video")]
        )  # fmt: skip
        failed.append(not video or row.video_flagged)
    smoothing = report.config["smoothing"]
    return [
        ("h2", "Tracking the real video"),
        ("table", Table(
            ["artifact", "backend", "precision", "frames with a face", "tracker FPS", "inference ms/frame",
             "jitter raw %", "jitter raw px", f"jitter {smoothing} %", f"jitter {smoothing} px", "reason"],
            table_rows, "lllrrrrrrrl", failed,
            "End-to-end tracker FPS with smoothing on; jitter = RMS second difference of the tracked points "
            "(no ground truth) without smoothing and with it.")),
    ]  # fmt: skip


def _wflw_blocks(report: Report) -> list[Block]:
    subsets = [row for row in report.artifacts if row.accuracy and row.accuracy.wflw_subsets]
    blocks: list[Block] = [("h2", "WFLW subsets")] if subsets else []
    for row in subsets:
        table = row.accuracy.wflw_subsets
        blocks.append(
            ("table", Table(
                ["subset", "images", "NME %", "FR@0.1 %", "AUC@0.1"],
                [[name, str(v["count"]), fmt(v["nme"]), fmt(v["fr"]), fmt(v["auc"], 4)] for name, v in table.items()],
                "lrrrr", caption=row.name))
        )  # fmt: skip
    return blocks


def _per_image_blocks(report: Report) -> list[Block]:
    scored = [row for row in report.artifacts if row.accuracy]
    if not scored or len(scored[0].accuracy.per_image) > MAX_PER_IMAGE_ROWS:
        return []
    table_rows = []
    for position, entry in enumerate(scored[0].accuracy.per_image):
        cells = [entry["image"]]
        for row in scored:
            other = row.accuracy.per_image[position]
            cells.append(f"{other['inter_ocular']:.2f} / {other['box']:.2f}")
        table_rows.append(cells)
    return [
        ("h2", "NME per image (inter-ocular / box, %)"),
        ("table", Table(["image", *[row.name for row in scored]], table_rows, "l" + "r" * len(scored))),
    ]


def _synthetic_blocks(report: Report) -> list[Block]:
    synthetic = report.synthetic
    if not synthetic:
        return []
    blocks: list[Block] = [("h2", "Synthetic ground truth: smoothing and decoding")]
    if "error" in synthetic:
        blocks.append(("p", f"The synthetic study failed: {synthetic['error']}"))
        return blocks
    s = synthetic["settings"]
    blocks.append(
        ("p", (f"Each annotated face moves along a known {s['path']} path ({s['frames']} frames at "
               f"{s['fps']:g} fps, {s['face_size_px']:g} px faces), so every frame's true points are exact. "
               f"Smoothers get the true points plus {s['noise_px']} px Gaussian noise; decoders get noisy "
               f"Gaussian heatmaps (stride {s['stride']}, noise {s['map_noise']} of the peak). Jitter is the "
               "RMS frame-to-frame change of the error; lag in frames (positive: trails the truth)."))
    )  # fmt: skip
    for key, title in (("smoothers", "smoothing method"), ("decoders", "heatmap decoder")):
        blocks.append(
            ("table", Table(
                [title, "NME %", "jitter %", "lag (frames)"],
                [[r["method"], fmt(r["nme"], 3), fmt(r["jitter"], 3), str(r["lag"])] for r in synthetic[key]],
                "lrrr"))
        )  # fmt: skip
    return blocks


# -------------------------------------------------------------------------------------------------
# Markdown and HTML


def _markdown_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(blocks: list[Block], folder: Path) -> str:
    """The blocks as Markdown; images are linked relative to ``folder``."""
    lines: list[str] = []
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3"):
            lines += ["#" * int(kind[1]) + " " + content, ""]
        elif kind == "p":
            lines += [content, ""]
        elif kind == "ul":
            lines += [f"- {item}" for item in content] + [""]
        elif kind == "img":
            path, title = content
            lines += [f"![{title}]({os.path.relpath(path, folder)})", ""]
        elif kind == "table":
            if content.caption:
                lines += [f"*{content.caption}*", ""]
            lines.append("| " + " | ".join(_markdown_cell(h) for h in content.headers) + " |")
            lines.append("|" + "|".join("---:" if a == "r" else "---" for a in content.align) + "|")
            for row in content.rows:
                lines.append("| " + " | ".join(_markdown_cell(c) for c in row) + " |")
            lines.append("")
    return "\n".join(lines)


STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; margin: 24px auto;
       max-width: 1220px; padding: 0 16px; color: #1a1a1a; line-height: 1.45; font-size: 14px; }
h1 { font-size: 26px; border-bottom: 3px solid #1f4e79; padding-bottom: 6px; }
h2 { font-size: 19px; color: #1f4e79; margin-top: 30px; border-bottom: 1px solid #d0d7de; padding-bottom: 3px; }
table { border-collapse: collapse; margin: 8px 0 18px; font-size: 12.5px; }
th { background: #1f4e79; color: #ffffff; padding: 6px 9px; text-align: left; font-weight: 600; }
td { padding: 5px 9px; border-bottom: 1px solid #e1e4e8; vertical-align: top; }
td.r { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #f6f8fa; }
tr.failed td { background: #fde8e8; color: #8a1f1f; }
caption { caption-side: top; text-align: left; font-style: italic; color: #555; padding-bottom: 4px; max-width: 1100px; }
img { max-width: 100%; border: 1px solid #d0d7de; margin: 6px 0 12px; }
ul { padding-left: 22px; } li { margin-bottom: 4px; }
"""


def render_html(blocks: list[Block], title: str) -> str:
    """The blocks as one self-contained HTML page (inline CSS, images as base64 data URIs)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
    ]
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3"):
            parts.append(f"<{kind}>{html.escape(content)}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{html.escape(content)}</p>")
        elif kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in content) + "</ul>")
        elif kind == "img":
            path, alt = content
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            parts.append(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')
        elif kind == "table":
            parts.append("<table>")
            if content.caption:
                parts.append(f"<caption>{html.escape(content.caption)}</caption>")
            if any(content.headers):
                parts.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in content.headers) + "</tr>")
            for index, row in enumerate(content.rows):
                failed = index < len(content.failed) and content.failed[index]
                cells = "".join(
                    f'<td class="{align}">{html.escape(str(cell))}</td>' for cell, align in zip(row, content.align)
                )
                parts.append(f'<tr class="failed">{cells}</tr>' if failed else f"<tr>{cells}</tr>")
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


# -------------------------------------------------------------------------------------------------
# plots and the files


def draw_plots(report: Report, folder: Path) -> dict[str, Path]:
    """The report's PNGs in ``folder``; a plot that fails is noted and left out (the report still appears).

    An artifact flagged on the video is drawn as flagged (hollow marker, "flagged" in its label) in the
    speed/accuracy plot and in the real-video jitter bars.
    """
    from runtime import plots

    rows = report.artifacts
    made: dict[str, Path] = {}
    reference = report.row(report.reference)
    reference_nme = reference.accuracy.inter_ocular.get("nme") if reference and reference.accuracy else None
    scatter = [
        plots.Point(row.name, row.speed["latency_ms"]["p50"], row.accuracy.inter_ocular["nme"], index, row.video_flagged)
        for index, row in enumerate(rows)
        if row.accuracy and (row.speed or {}).get("latency_ms")
    ]
    curves = [(row.name, *row.accuracy.nme_per_image, index) for index, row in enumerate(rows) if row.accuracy]
    video = [
        plots.Point(row.name, row.video.raw.jitter_percent, row.video.smoothed.jitter_percent, index, row.video_flagged)
        for index, row in enumerate(rows)
        if row.video
    ]
    jobs = []
    if curves:
        jobs.append(("latency_vs_nme", lambda path: plots.latency_vs_nme(scatter, path, reference_nme)))
        jobs.append(("ced", lambda path: plots.ced_curves(curves, path, THRESHOLD)))
    synthetic = report.synthetic
    if synthetic and "smoothers" in synthetic:
        jobs.append(("smoothing_jitter", lambda path: plots.smoothing_jitter(synthetic["smoothers"], path, video)))
    for key, draw in jobs:
        try:
            made[key] = draw(folder / PLOTS[key])
        except Exception as error:  # noqa: BLE001
            report.notes.append(f"Plot {PLOTS[key]} could not be drawn: {failure_reason(error)}")
            logger.warning("plot %s failed: %s", key, failure_reason(error))
    return made


def write_report(report: Report, config: ReportConfig) -> dict[str, Path]:
    """Write report.md, report.json, report.html and the plots into ``config.out``; returns the paths."""
    from runtime.card import atomic_write_bytes

    folder = Path(config.out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ReportError(f"{folder}: cannot create the output folder ({error.strerror})") from None
    plots = draw_plots(report, folder) if config.plots else {}
    report.plots = {key: path.name for key, path in plots.items()}
    blocks = report_blocks(report, plots)
    paths = {"markdown": folder / "report.md", "html": folder / "report.html", "json": folder / "report.json"}
    atomic_write_bytes(paths["markdown"], render_markdown(blocks, folder).encode())
    atomic_write_bytes(paths["html"], render_html(blocks, report.title).encode())
    write_json(paths["json"], report.to_json())
    return {**paths, **plots}
