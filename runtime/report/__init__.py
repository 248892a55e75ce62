"""``python -m runtime.report``: accuracy, speed, tracking and jitter of artifacts in one report.

Examples:
  python -m runtime.report --artifacts pfld.onnx pfld_int8.onnx pfld.xml \\
      --faces ../shared/data/faces68 --video ../shared/data/video/face_closeup.mp4 --out report/
  python -m runtime.report --artifacts pfld.onnx pfld_int8.onnx --backends onnxruntime openvino \\
      --faces ../shared/data/faces68 --out report/ --screenshot report/report.png
  python -m runtime.report --artifacts model.onnx --checkpoint model.pt --reference model.pt@torch --out report/

An artifact is ``PATH`` (backend by suffix), ``PATH@BACKEND``, or expands to one row per backend of
``--backends`` that reads its suffix; ``--checkpoint X.pt`` adds a training checkpoint run by the
torch backend.

For each artifact (one row each; a failing one is a row with its reason, the rest still appears):

- **Accuracy** on annotated faces (``--faces``: a folder of images + ``.pts``, a WFLW list, an HRNet
  CSV). Each face is cropped from its annotation's landmark box with the card's crop rule (a
  detector-box rule uses the annotation's face box when there is one), as ``export.verify`` does,
  so the NME measures the model and not a face detector. 98-point predictions are scored against
  68-point truth through the standard WFLW-98 -> iBUG-68 map (:func:`runtime.layouts.to_68`). NME is
  given inter-ocular (outer eye corners) and box-normalised (sqrt of the truth box's w*h); FR@0.1 and
  AUC@0.1 on the inter-ocular NME; the NME change against the FP32 reference (``--reference``,
  default the first fp32 artifact) in percent points; the WFLW subset table when the annotations
  carry WFLW attributes.
- **Label-free error** (:mod:`runtime.agreement`): the NME of each artifact's points taking the
  points of the FP32 artifact of its layout (the NME change's reference) as the truth, on every video
  frame (cut from that FP32 artifact's own landmarks; frames where it finds no face are skipped) and
  every annotated face, each cut once and fed to every model: mean, p95 and max, the worst inputs
  named. It needs no labels, so it sees every frame, not only the annotated faces.
- **Speed** from :func:`runtime.bench.benchmark_artifacts` (every artifact in its own process,
  interleaved; see that module for what each figure means).
- **Tracking** on the pre-decoded video (``--video``, ``--max-frames``): end-to-end tracker FPS
  (:func:`runtime.tracker.track_frames`: detection, crop, inference, decode, smoothing; no decoding
  or drawing) and real-video jitter (:func:`runtime.jitter.video_jitter`) without smoothing and with
  ``--smoothing``. The two passes of every artifact are interleaved (all raw passes, then all
  smoothed ones); with ``--smoothing none`` the raw pass is the smoothed one.

Plus the synthetic ground-truth study of :mod:`runtime.jitter` on the same faces: smoothing methods
and heatmap decoders, each with NME, jitter and lag against exactly known points.

Outputs in ``--out``: ``report.md``, ``report.json``, a self-contained ``report.html`` (inline CSS,
plots embedded as base64 PNG, so the single file can be mailed), and ``latency_vs_nme.png``,
``ced.png``, ``smoothing_jitter.png``. ``--screenshot PNG`` renders the whole HTML page in headless
Chromium.
The exit status is 1 when no artifact produced any figure. A model that loses the face on the video or
jitters wildly there is flagged (status ``partial``, its reason given, its plot points marked).

Layout of the package: :mod:`~runtime.report.config` (what to measure), :mod:`~runtime.report.measure`
(the stages in this process), :mod:`~runtime.report.assemble` (rows, reference, statuses, notes),
:mod:`~runtime.report.rows` (the typed rows and report.json), :mod:`~runtime.report.render`
(Markdown, HTML, plots), :mod:`~runtime.report.screenshot` (headless Chromium),
:mod:`~runtime.report.command` (the command line).
"""
from __future__ import annotations

from runtime.report.assemble import build_report
from runtime.report.command import build_parser, main, make_report
from runtime.report.config import THRESHOLD, ReportConfig, ReportError, expand_artifacts
from runtime.report.render import write_report
from runtime.report.rows import Accuracy, ArtifactRow, Report, TrackerPass, Tracking
from runtime.report.screenshot import find_chromium, screenshot_html

__all__ = [
    "THRESHOLD",
    "Accuracy",
    "ArtifactRow",
    "Report",
    "ReportConfig",
    "ReportError",
    "TrackerPass",
    "Tracking",
    "build_parser",
    "build_report",
    "expand_artifacts",
    "find_chromium",
    "main",
    "make_report",
    "screenshot_html",
    "write_report",
]
