"""``python -m export.verify``: compare an artifact with its reference on real faces, with and without labels.

Examples::

    python -m export.verify artifacts/pfld_int8.onnx --reference artifacts/pfld.onnx --images ../shared/data/faces68
    python -m export.verify artifacts/pfld_int8.onnx --reference artifacts/pfld.onnx \\
        --images ../shared/data/faces68 --video ../shared/data/video/face_closeup.mp4 \\
        --max-nme-change 0.5 --max-label-free-p95 2 --json verify.json
    python -m export.verify artifacts/pfld_int8.xml --reference artifacts/pfld.onnx --images faces/ \\
        --video site.mp4 --video-every 5 --detector haar    # an OpenVINO IR, every 5th frame, offline detector

Both models run through the runtime backend their suffix names, on identical input tensors cut by
the reference card's rule. Two measures:

- against the annotations: the NME of both (inter-ocular and box; 98-point predictions scored on
  68-point annotations through the standard map), the NME changes, the worst points and faces;
- label-free (:mod:`runtime.agreement`): the NME of the artifact's points taking the reference's as
  the truth, on every face of ``--images`` and every ``--video-every``-th frame of ``--video`` (cut from
  the reference's own landmarks), as mean, p95 and max with the worst inputs named. It needs no
  labels, so it sees far more inputs than the few annotated faces.

PASS needs every budget: ``--max-nme-change`` on both NME changes, ``--max-label-free-p95`` on the
label-free p95 (inter-ocular), ``--max-abs`` (default by the artifact's precision: fp32 1e-4, fp16 1e-2;
INT8 is not judged elementwise). A NaN or infinite output or NME is always a FAIL. Exit status 1 on FAIL.

Style variants of the faces are not part of this command's label-free set: the style proxies live in
``calib``, which builds on ``export``; ``python -m calib study`` reports the label-free error with them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from export.evaluation import DEFAULT_MAX_LABEL_FREE_P95, VerifyConfig, verify_artifact
from runtime.detect import DEFAULT_DETECTOR
from runtime.agreement import format_summary
from runtime.card import atomic_write_bytes
from runtime.errors import cli_main
from runtime.outputs import add_force_flag, refuse_overwrite, report_written


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m export.verify",
        description="Compare an artifact with its reference on annotated faces and unlabelled video frames.",
        epilog="examples:" + __doc__.split("Examples::", 1)[1].split("Both models run", 1)[0]
        + "Exit status 0 on PASS, 1 on FAIL (every budget is checked), 2 on a usage error.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("artifact", type=Path, help="the artifact to check (.onnx, OpenVINO .xml or TensorRT .engine, with a card)")
    parser.add_argument(
        "--reference",
        type=Path,
        required=True,
        metavar="ARTIFACT",
        help="the artifact it was made from (usually the FP32 .onnx)",
    )
    parser.add_argument(
        "--images", type=Path, required=True, metavar="DIR", help="folder of images with .pts annotations (68 or 98 points)"
    )
    parser.add_argument(
        "--max-abs",
        type=float,
        default=None,
        metavar="VALUE",
        help="budget on max abs output difference, >= 0 (default by precision: fp32 1e-4, fp16 1e-2, int8 none)",
    )
    parser.add_argument(
        "--max-nme-change",
        type=float,
        default=0.5,
        metavar="POINTS",
        help="budget on the NME increase against the annotations, inter-ocular and box, in percent points, >= 0 "
        "(default 0.5)",
    )
    parser.add_argument(
        "--max-label-free-p95",
        type=float,
        default=DEFAULT_MAX_LABEL_FREE_P95,
        metavar="PERCENT",
        help="budget on the p95 of the label-free NME (artifact vs reference points, %% of inter-ocular, >= 0; "
        f"default {DEFAULT_MAX_LABEL_FREE_P95:g})",
    )
    parser.add_argument("--video", type=Path, metavar="VIDEO", help="a video file whose frames join the label-free set")
    parser.add_argument(
        "--video-every", type=int, default=1, metavar="N", help="use every N-th video frame, N >= 1 (default 1)"
    )
    parser.add_argument(
        "--detector",
        default=DEFAULT_DETECTOR,
        help="face detector that starts the reference's track on --video: yunet (the default, from the "
        "model zoo), yunet:FILE.onnx, haar or haar:FILE.xml",
    )
    parser.add_argument("--json", type=Path, metavar="REPORT.json", help="write the full report here")
    add_force_flag(parser)
    return parser


def format_report(report: dict) -> str:
    """The report as a few human-readable lines."""
    nme = report["nme"]
    free = report["label_free"]
    lines = [
        f"{report['artifact']} ({report['precision']['artifact']}) vs {report['reference']} "
        f"({report['precision']['reference']}) on {report['faces']} faces, scored as {report['scored_layout']}",
        f"max abs output difference: {report['max_abs_output_diff']:.3e}",
        f"NME inter-ocular %: artifact {nme['artifact']['inter_ocular']:.3f}, "
        f"reference {nme['reference']['inter_ocular']:.3f}, "
        f"change {report['nme_change']:+.3f}",
        f"NME box %:          artifact {nme['artifact']['box']:.3f}, reference {nme['reference']['box']:.3f}, "
        f"change {report['nme_change_box']:+.3f}",
        "worst points (mean shift, % inter-ocular): "
        + ", ".join(f"#{p['index']} {p['mean_shift']:.2f}" for p in report["worst_points"]),
        "worst faces (NME change): "
        + ", ".join(f"{Path(f['image']).name} {f['nme_change']:+.2f}" for f in report["worst_faces"]),
        *format_summary(free),
    ]
    if free["skipped"]:
        lines.append(f"  skipped: {'; '.join(free['skipped'][:3])}" + (" ..." if len(free["skipped"]) > 3 else ""))
    lines.append("PASS" if report["passed"] else "FAIL: " + "; ".join(report["failures"]))
    return "\n".join(lines)


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    refuse_overwrite([args.json], args.force)
    config = VerifyConfig(
        args.artifact,
        args.reference,
        args.images,
        max_abs=args.max_abs,
        max_nme_change=args.max_nme_change,
        max_label_free_p95=args.max_label_free_p95,
        video=args.video,
        video_every=args.video_every,
        detector=args.detector,
    )
    report = verify_artifact(config)
    print(format_report(report))
    if args.json:
        atomic_write_bytes(args.json, json.dumps(report, indent=2).encode())
        report_written([args.json])
    if not report["passed"]:
        print(f"error: {args.artifact} exceeds its budget: {'; '.join(report['failures'])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
