"""``python -m runtime.report``: flags -> :class:`ReportConfig` -> :func:`make_report`."""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from runtime.bench import ArtifactSpec, BenchConfig, add_speed_flags, speed_settings
from runtime.detect import DEFAULT_DETECTOR
from runtime.errors import UsageError, cli_main
from runtime.report.assemble import build_report
from runtime.report.config import ReportConfig, expand_artifacts
from runtime.report.render import write_report
from runtime.report.rows import FAILED, Report
from runtime.report.screenshot import screenshot_html


def make_report(config: ReportConfig) -> tuple[Report, dict[str, Path]]:
    """Measure, write every output and (with ``config.screenshot``) render the page; returns the report and paths."""
    report = build_report(config)
    paths = write_report(report, config)
    if config.screenshot:
        paths["screenshot"] = screenshot_html(paths["html"], config.screenshot)
    return report, paths


def build_parser() -> argparse.ArgumentParser:
    import runtime.report

    parser = argparse.ArgumentParser(
        prog="python -m runtime.report",
        description="Accuracy, speed, tracking and jitter of landmark artifacts in one report (md, html, json, png).",
        epilog=runtime.report.__doc__.split("\n", 2)[2].split("\nLayout of the package")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--artifacts", nargs="+", action="extend", default=[], metavar="ARTIFACT",
                        help="PATH or PATH@BACKEND each (repeatable)")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="X.pt",
                        help="a training checkpoint, run with the torch backend (repeatable)")
    parser.add_argument("--backends", nargs="+", action="extend", default=[], metavar="NAME",
                        help="run each artifact on every one of these backends that reads its suffix")
    parser.add_argument("--reference", default="", help="the FP32 artifact NME changes are measured against "
                                                        "(default: the first fp32 artifact)")
    parser.add_argument("--faces", default="", help="annotated faces: folder of images + .pts, WFLW list, HRNet CSV")
    parser.add_argument("--video", default="", help="a video of a face for tracker FPS and jitter")
    parser.add_argument("--max-frames", type=int, default=0, help="use at most N video frames (0: all)")
    parser.add_argument("--out", required=True, help="folder to write report.md/html/json and the plots to")
    add_speed_flags(parser)  # --device --threads --batch --warmup --runs --rounds, as runtime.bench has them
    parser.add_argument("--detector", default=DEFAULT_DETECTOR, help="face detector of the tracker (yunet, haar, yunet:PATH)")
    parser.add_argument("--smoothing", default="one_euro", help="tracker smoothing for FPS and smoothed jitter "
                                                                "(one_euro, ema, kalman, none)")
    parser.add_argument("--synthetic-frames", type=int, default=150,
                        help="frames per synthetic sequence (0: leave the synthetic study out)")
    parser.add_argument("--no-plots", action="store_true", help="write no PNG plots (no matplotlib needed)")
    parser.add_argument("--screenshot", default="", metavar="PNG",
                        help="render report.html in headless Chromium to this PNG (the whole page)")
    parser.add_argument("--title", default="edgemark report")
    return parser  # fmt: skip


def config_from_arguments(arguments: argparse.Namespace) -> ReportConfig:
    """The :class:`ReportConfig` the parsed flags describe (validated: a bad flag is one :class:`UsageError`)."""
    for text in arguments.artifacts or ():
        ArtifactSpec.parse_existing(text)  # a typo'd path is one line now, not a failed row at the end
    artifacts = expand_artifacts(arguments.artifacts, arguments.backends, arguments.checkpoint)
    if not artifacts:
        raise UsageError("no artifacts: pass --artifacts PATH[@BACKEND] ... and/or --checkpoint X.pt")
    return ReportConfig(
        bench=BenchConfig(artifacts, **speed_settings(arguments)),
        out=arguments.out,
        faces=arguments.faces,
        video=arguments.video,
        reference=ArtifactSpec.parse(arguments.reference) if arguments.reference else None,
        max_frames=arguments.max_frames,
        detector=arguments.detector,
        smoothing=arguments.smoothing,
        synthetic_frames=arguments.synthetic_frames,
        plots=not arguments.no_plots,
        screenshot=arguments.screenshot,
        title=arguments.title,
    )


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    config = config_from_arguments(build_parser().parse_args(argv))
    report, paths = make_report(config)
    for row in report.artifacts:
        reasons = f" ({row.reason_text()})" if row.reasons else ""
        print(f"{row.name}: {row.status}{reasons}")
    for path in paths.values():
        print(f"wrote {path}")
    return 0 if any(row.status != FAILED for row in report.artifacts) else 1
