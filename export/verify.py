"""``python -m export.verify``: compare an artifact with its reference on real annotated faces.

Example::

    python -m export.verify artifacts/pfld_int8.onnx --reference artifacts/pfld.onnx \\
        --images ../shared/data/faces68 --max-nme-change 0.5 --json verify.json

Both models run through ONNX Runtime on faces cropped by the card's rule; the command prints the max
abs output difference, the NME of both (inter-ocular and box, 98-point predictions scored on 68-point
annotations through the standard map), the NME change and the worst points, and exits 1 when a
budget is exceeded. ``--max-abs`` defaults by the artifact's precision (fp32 1e-4, fp16 1e-2; INT8
is judged by NME change only).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from export.evaluation import VerifyConfig, verify_artifact
from runtime.card import atomic_write_bytes
from runtime.errors import cli_main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m export.verify", description="Compare an ONNX artifact with its reference on annotated faces."
    )
    parser.add_argument("artifact", type=Path, help="the artifact to check (.onnx, OpenVINO .xml or TensorRT .engine, with a card)")
    parser.add_argument(
        "--reference", type=Path, required=True, help="the artifact it was made from (usually the FP32 .onnx)"
    )
    parser.add_argument("--images", type=Path, required=True, help="folder of images with .pts annotations")
    parser.add_argument(
        "--max-abs",
        type=float,
        default=None,
        help="budget on max abs output difference (default by precision: fp32 1e-4, fp16 1e-2, int8 none)",
    )
    parser.add_argument(
        "--max-nme-change", type=float, default=0.5, help="budget on the NME increase in percent points (default 0.5)"
    )
    parser.add_argument("--json", type=Path, help="write the full report here")
    return parser


def format_report(report: dict) -> str:
    """The report as a few human-readable lines."""
    nme = report["nme"]
    lines = [
        f"{report['artifact']} ({report['precision']['artifact']}) vs {report['reference']} "
        f"({report['precision']['reference']}) on {report['faces']} faces, scored as {report['scored_layout']}",
        f"max abs output difference: {report['max_abs_output_diff']:.3e}",
        f"NME inter-ocular %: artifact {nme['artifact']['inter_ocular']:.3f}, "
        f"reference {nme['reference']['inter_ocular']:.3f}, "
        f"change {report['nme_change']:+.3f}",
        f"NME box %:          artifact {nme['artifact']['box']:.3f}, reference {nme['reference']['box']:.3f}",
        "worst points (mean shift, % inter-ocular): "
        + ", ".join(f"#{p['index']} {p['mean_shift']:.2f}" for p in report["worst_points"]),
        "worst faces (NME change): "
        + ", ".join(f"{Path(f['image']).name} {f['nme_change']:+.2f}" for f in report["worst_faces"]),
    ]
    lines.append("PASS" if report["passed"] else "FAIL: " + "; ".join(report["failures"]))
    return "\n".join(lines)


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = VerifyConfig(args.artifact, args.reference, args.images, args.max_abs, args.max_nme_change)
    report = verify_artifact(config)
    print(format_report(report))
    if args.json:
        atomic_write_bytes(args.json, json.dumps(report, indent=2).encode())
    if not report["passed"]:
        print(f"error: {args.artifact} exceeds its budget: {'; '.join(report['failures'])}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
