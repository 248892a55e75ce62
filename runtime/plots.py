"""The report's PNG plots: latency vs NME, CED curves, jitter per smoothing method.

matplotlib is imported only here and only when a plot is drawn; :func:`require_matplotlib` says how
to install it. Figures are drawn with the object-oriented API on an Agg canvas (no pyplot state, no
display needed).
"""
from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from runtime.errors import EdgemarkError
from runtime.metrics import ced_curve

DPI = 110
# One colour per artifact, the same in every plot (matplotlib's tab10).
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


class PlotError(EdgemarkError):
    """Plots were asked for but cannot be drawn here."""


def require_matplotlib() -> None:
    """Raise :class:`PlotError` with the fix when matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        raise PlotError("the report's plots need matplotlib, which is not installed: pip install matplotlib "
                        "(or pass --no-plots)")


def colour(index: int) -> str:
    return COLOURS[index % len(COLOURS)]


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=DPI)
    return path


def latency_vs_nme(points: Sequence[tuple[str, float, float, int]], path: str | Path, reference_nme: float | None = None) -> Path:
    """Scatter of p50 latency (x) against inter-ocular NME (y), one labelled point per artifact.

    Args:
        points: ``(label, latency ms, NME %, colour index)`` per artifact that has both figures.
        path: the PNG to write.
        reference_nme: NME of the FP32 reference, drawn as a dashed line.
    """
    figure = _figure(7.5, 4.6)
    axes = figure.add_subplot()
    # Artifacts of one model often sit on top of each other: number the points, name them in the legend.
    for number, (label, latency, nme, index) in enumerate(points, start=1):
        axes.scatter([latency], [nme], s=60, color=colour(index), zorder=3, edgecolor="black", linewidth=0.5,
                     label=f"{number}  {label}")
        # Offsets cycle through six positions so coinciding points keep readable numbers.
        offset = (5 + 8 * ((number - 1) // 3 % 2), -8 + 9 * ((number - 1) % 3))
        axes.annotate(str(number), (latency, nme), textcoords="offset points", xytext=offset,
                      fontsize=8, fontweight="bold")
    if reference_nme is not None:
        axes.axhline(reference_nme, color="grey", linestyle="--", linewidth=0.8, label="FP32 reference NME")
    if points or reference_nme is not None:
        axes.legend(loc="upper right", fontsize=7)
    if points:
        latencies = [p[1] for p in points]
        axes.set_xlim(0, max(latencies) * 1.6)  # room for the legend on the right
        nmes = [p[2] for p in points]
        spread = max(max(nmes) - min(nmes), 0.2)
        axes.set_ylim(min(nmes) - 0.5 * spread, max(nmes) + 0.5 * spread)
    else:
        axes.text(0.5, 0.5, "no artifact has both a latency and an NME", ha="center", transform=axes.transAxes)
    axes.set_xlabel("latency p50 at batch 1 (ms)")
    axes.set_ylabel("NME, inter-ocular (%)")
    axes.set_title("Speed vs accuracy (lower left is better)")
    axes.grid(True, alpha=0.3)
    return _save(figure, path)


def ced_curves(
    curves: Sequence[tuple[str, np.ndarray, np.ndarray, int]], path: str | Path, threshold: float = 0.1
) -> Path:
    """Cumulative error distributions of every artifact, inter-ocular and box NME side by side.

    Args:
        curves: ``(label, per-image inter-ocular NME, per-image box NME, colour index)``, NME as fractions.
    """
    figure = _figure(10, 4.2)
    for column, (title, which) in enumerate((("inter-ocular NME", 1), ("box NME", 2))):
        axes = figure.add_subplot(1, 2, column + 1)
        for curve in curves:
            thresholds, fractions = ced_curve(curve[which], threshold)
            axes.plot(thresholds * 100, fractions * 100, color=colour(curve[3]), label=curve[0], linewidth=1.5)
        axes.set_xlim(0, threshold * 100)
        axes.set_ylim(0, 101)
        axes.set_xlabel(f"{title} (%)")
        axes.set_ylabel("images with NME at most x (%)")
        axes.set_title(f"CED, {title}")
        axes.grid(True, alpha=0.3)
        if column == 0 and curves:
            axes.legend(fontsize=7, loc="upper left")
    return _save(figure, path)


def smoothing_jitter(
    smoothers: Sequence[dict], path: str | Path, video: Sequence[tuple[str, float, float, int]] = ()
) -> Path:
    """Jitter per smoothing method (synthetic truth), and raw vs smoothed jitter on the real video.

    Args:
        smoothers: rows of :func:`runtime.jitter.compare_smoothers` (``method``, ``nme``, ``jitter``, ``lag``).
        video: ``(label, raw jitter %, smoothed jitter %, colour index)`` per artifact on the real video.
    """
    figure = _figure(10 if video else 6, 4.2)
    axes = figure.add_subplot(1, 2 if video else 1, 1)
    methods = [row["method"] for row in smoothers]
    positions = np.arange(len(methods))
    width = 0.38
    jitters = [row["jitter"] for row in smoothers]
    nmes = [row["nme"] for row in smoothers]
    axes.bar(positions - width / 2, jitters, width, label="jitter %", color="#1f77b4")
    axes.bar(positions + width / 2, nmes, width, label="NME %", color="#bbbbbb")
    for position, row in zip(positions, smoothers):
        axes.text(position - width / 2, row["jitter"], f"lag {row['lag']}", ha="center", va="bottom", fontsize=7)
    axes.set_xticks(positions, methods)
    axes.set_ylabel("% of inter-ocular distance")
    axes.set_title("Smoothing on synthetic motion (true points known)")
    axes.legend(fontsize=8)
    axes.grid(True, axis="y", alpha=0.3)
    if video:
        axes = figure.add_subplot(1, 2, 2)
        positions = np.arange(len(video))
        axes.bar(positions - width / 2, [v[1] for v in video], width, label="no smoothing", color="#bbbbbb")
        axes.bar(positions + width / 2, [v[2] for v in video], width, label="smoothed",
                 color=[colour(v[3]) for v in video])
        axes.set_xticks(positions, [v[0] for v in video], rotation=20, ha="right", fontsize=7)
        axes.set_ylabel("RMS 2nd difference, % of inter-ocular")
        axes.set_title("Jitter on the real video")
        axes.legend(fontsize=8)
        axes.grid(True, axis="y", alpha=0.3)
    return _save(figure, path)
