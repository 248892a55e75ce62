"""The report's PNG plots: latency vs NME, CED curves, jitter per smoothing method.

matplotlib is imported only here and only when a plot is drawn; :func:`require_matplotlib` says how
to install it. Figures are drawn with the object-oriented API on an Agg canvas (no pyplot state, no
display needed).
"""
from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from runtime.errors import EdgemarkError
from runtime.metrics import ced_curve

DPI = 110
# One colour per artifact, the same in every plot (matplotlib's tab10).
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


# Flagged artifacts (e.g. a model that does not track the video) are drawn in this colour, hollow.
FLAGGED_COLOUR = "#c00000"
# Bars above this multiple of the largest unflagged bar are clipped at it, their value printed.
CLIP_ABOVE = 1.5


class PlotError(EdgemarkError):
    """Plots were asked for but cannot be drawn here."""


class Point(NamedTuple):
    """One artifact in a plot: its label, two values, its colour index and whether it is flagged."""

    label: str
    x: float
    y: float
    index: int
    flagged: bool = False


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


def latency_vs_nme(points: Sequence[Point], path: str | Path, reference_nme: float | None = None) -> Path:
    """Scatter of p50 latency (x) against inter-ocular NME (y), one numbered point per artifact.

    A flagged point (a model that fails elsewhere, e.g. on the video) is drawn hollow in red with
    "flagged" in its legend entry, so a low NME on annotated faces does not read as the best model.
    The NME axis starts at 0 at the lowest.

    Args:
        points: ``Point(label, latency ms, NME %, colour index, flagged)`` per artifact that has both figures.
        path: the PNG to write.
        reference_nme: NME of the FP32 reference, drawn as a dashed line.
    """
    figure = _figure(7.5, 4.6)
    axes = figure.add_subplot()
    # Artifacts of one model often sit on top of each other: number the points, name them in the legend.
    for number, point in enumerate(points, start=1):
        if point.flagged:
            axes.scatter([point.x], [point.y], s=80, facecolor="none", edgecolor=FLAGGED_COLOUR, linewidth=1.8,
                         zorder=3, label=f"{number}  {point.label} (flagged on the video)")
        else:
            axes.scatter([point.x], [point.y], s=60, color=colour(point.index), zorder=3, edgecolor="black",
                         linewidth=0.5, label=f"{number}  {point.label}")
        # Offsets cycle through six positions so coinciding points keep readable numbers.
        offset = (5 + 8 * ((number - 1) // 3 % 2), -8 + 9 * ((number - 1) % 3))
        axes.annotate(str(number), (point.x, point.y), textcoords="offset points", xytext=offset, fontsize=8,
                      fontweight="bold", color=FLAGGED_COLOUR if point.flagged else "black")
    if reference_nme is not None:
        axes.axhline(reference_nme, color="grey", linestyle="--", linewidth=0.8, label="FP32 reference NME")
    if points or reference_nme is not None:
        axes.legend(loc="upper right", fontsize=7)
    if points:
        axes.set_xlim(0, max(point.x for point in points) * 1.6)  # room for the legend on the right
        axes.set_ylim(*nme_limits([point.y for point in points]))
    else:
        axes.text(0.5, 0.5, "no artifact has both a latency and an NME", ha="center", transform=axes.transAxes)
    axes.set_xlabel("latency p50 at batch 1 (ms)")
    axes.set_ylabel("NME, inter-ocular (%)")
    axes.set_title("Speed vs accuracy (lower left is better)")
    axes.grid(True, alpha=0.3)
    return _save(figure, path)


def nme_limits(nmes: Sequence[float]) -> tuple[float, float]:
    """The NME axis of :func:`latency_vs_nme`: half the spread (at least 0.1) beyond the extremes, never below 0."""
    spread = max(max(nmes) - min(nmes), 0.2)
    return max(0.0, min(nmes) - 0.5 * spread), max(nmes) + 0.5 * spread


def clip_limit(video: Sequence[Point]) -> float | None:
    """Where the real-video jitter bars are clipped: :data:`CLIP_ABOVE` times the largest bar of an
    unflagged artifact, when a flagged one reaches above it; ``None`` when nothing needs clipping."""
    normal = [v for point in video if not point.flagged for v in (point.x, point.y) if np.isfinite(v)]
    if not normal or max(normal) <= 0:
        return None
    limit = CLIP_ABOVE * max(normal)
    above = [v for point in video for v in (point.x, point.y) if np.isfinite(v) and v > limit]
    return limit if above else None


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
    smoothers: Sequence[dict], path: str | Path, video: Sequence[Point] = ()
) -> Path:
    """Jitter per smoothing method (synthetic truth), and raw vs smoothed jitter on the real video.

    Args:
        smoothers: rows of :func:`runtime.jitter.compare_smoothers` (``method``, ``nme``, ``jitter``, ``lag``).
        video: ``Point(label, raw jitter %, smoothed jitter %, colour index, flagged)`` per artifact on the
            real video; flagged artifacts' bars are clipped when they flatten the others (:func:`clip_limit`).
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
        _video_jitter_bars(figure.add_subplot(1, 2, 2), video, width)
    return _save(figure, path)


def _video_jitter_bars(axes, video: Sequence[Point], width: float) -> None:
    """Raw and smoothed jitter per artifact; bars of flagged artifacts above :func:`clip_limit` are
    clipped there, hatched, with their value printed, so they do not flatten the others."""
    limit = clip_limit(video)
    positions = np.arange(len(video))
    for offset, which, label in ((-width / 2, "x", "no smoothing"), (width / 2, "y", "smoothed")):
        values = np.array([getattr(point, which) for point in video], dtype=float)
        shown = np.minimum(values, limit) if limit is not None else values
        colours = ["#bbbbbb" if which == "x" else colour(point.index) for point in video]
        bars = axes.bar(positions + offset, shown, width, label=label, color=colours)
        for bar, value, point in zip(bars, values, video):
            if point.flagged:
                bar.set_edgecolor(FLAGGED_COLOUR)
                bar.set_linewidth(1.2)
            if not np.isfinite(value) and which == "x":  # no run of 3 frames with a face: no jitter to draw
                axes.text(bar.get_x() + bar.get_width(), 0, "no jitter\n(face not held)", ha="center",
                          va="bottom", fontsize=7, color=FLAGGED_COLOUR if point.flagged else "black")
            if limit is not None and np.isfinite(value) and value > limit:
                bar.set_hatch("//")
                axes.text(bar.get_x() + bar.get_width() / 2, limit, f"{value:.0f} %\u2191", ha="center",
                          va="bottom", fontsize=7, color=FLAGGED_COLOUR, fontweight="bold")
    names = [f"{point.label} (flagged)" if point.flagged else point.label for point in video]
    axes.set_xticks(positions, names, rotation=20, ha="right", fontsize=7)
    for tick, point in zip(axes.get_xticklabels(), video):
        if point.flagged:
            tick.set_color(FLAGGED_COLOUR)
    title = "Jitter on the real video"
    if limit is not None:
        axes.set_ylim(0, limit * 1.15)
        title += f" (bars over {limit:.2g} % clipped, value printed)"
    axes.set_ylabel("RMS 2nd difference, % of inter-ocular")
    axes.set_title(title, fontsize=10 if limit is not None else None)
    axes.legend(fontsize=8)
    axes.grid(True, axis="y", alpha=0.3)
