"""What a report measures: :class:`ReportConfig` (the benchmark's :class:`~runtime.bench.BenchConfig` plus the
report's own inputs), the command line's artifact list, and the report's error type."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from runtime.bench import ArtifactSpec, BenchConfig
from runtime.detect import DEFAULT_DETECTOR
from runtime.errors import EdgemarkError, UsageError

# FR and AUC threshold on the inter-ocular NME (a fraction).
THRESHOLD = 0.1


class ReportError(EdgemarkError):
    """The report as a whole could not be made (its inputs, its output folder, the screenshot)."""


@dataclass(frozen=True)
class ReportConfig:
    """What ``python -m runtime.report`` measures and writes (see its ``--help`` for each flag).

    Attributes:
        bench: the artifacts and the speed settings (device, threads, batch, warm-up, runs, rounds,
            isolation); the accuracy and tracking stages load the artifacts with the same device and threads.
        out: the folder the report is written to.
        faces: annotated faces (folder of images + ``.pts``, WFLW list, HRNet CSV); empty: no accuracy.
        video: a video of a face for tracker FPS and jitter; empty: no tracking.
        reference: the FP32 artifact NME changes are measured against (``None``: the first fp32 one).
        max_frames: at most this many video frames (0: all).
        detector: the tracker's face detector (:func:`runtime.detect.make_detector` spec).
        smoothing: the tracker's smoothing for FPS and the smoothed jitter.
        synthetic_frames: frames per synthetic sequence of the ground-truth study (0: no study).
        plots: draw the PNG plots (needs matplotlib).
        screenshot: render report.html to this PNG in headless Chromium (empty: no screenshot).
        title: the report's title.
    """

    bench: BenchConfig
    out: str
    faces: str = ""
    video: str = ""
    reference: ArtifactSpec | None = None
    max_frames: int = 0
    detector: str = DEFAULT_DETECTOR
    smoothing: str = "one_euro"
    synthetic_frames: int = 150
    plots: bool = True
    screenshot: str = ""
    title: str = "edgemark report"

    def __post_init__(self):
        from runtime.detect import parse_spec
        from runtime.smoothing import make_smoother

        if not self.out:
            raise UsageError("--out is required: the folder the report is written to")
        for flag, path in (("--faces", self.faces), ("--video", self.video)):
            if path and not Path(path).exists():
                raise UsageError(f"{flag} {path}: not found; pass an existing path or leave {flag} out")
        if self.max_frames < 0:
            raise UsageError(f"--max-frames {self.max_frames}: need >= 0 (0: every frame)")
        if self.synthetic_frames and self.synthetic_frames < 3:
            raise UsageError(f"--synthetic-frames {self.synthetic_frames}: need >= 3, or 0 to leave the study out")
        parse_spec(self.detector)
        make_smoother(self.smoothing)
        if self.reference is not None and match_reference(self.reference, self.artifacts) is None:
            listed = ", ".join(spec.label for spec in self.artifacts)
            raise UsageError(f"--reference {self.reference.label} is not one of the artifacts ({listed})")
        if self.plots:
            from runtime.plots import require_matplotlib

            require_matplotlib()
        if self.screenshot:
            from runtime.report.screenshot import find_chromium

            find_chromium()

    @property
    def artifacts(self) -> tuple[ArtifactSpec, ...]:
        return self.bench.artifacts

    def summary(self) -> dict[str, Any]:
        """The settings as report.json's ``config`` holds them."""
        bench = self.bench
        report = asdict(self)
        del report["bench"]
        return {
            "artifacts": [spec.label for spec in bench.artifacts],
            "out": self.out,
            "faces": self.faces,
            "video": self.video,
            "reference": self.reference.label if self.reference else None,
            "device": bench.device,
            "threads": bench.threads,
            "batch": bench.batch,
            "warmup": bench.warmup,
            "runs": bench.runs,
            "rounds": bench.rounds,
            "isolate": bench.isolate,
            **{key: value for key, value in report.items() if key not in ("out", "faces", "video", "reference")},
        }


def match_reference(reference: ArtifactSpec, artifacts: Sequence[ArtifactSpec]) -> int | None:
    """Index of the artifact ``reference`` names (same label, or same file and compatible backend)."""
    for index, spec in enumerate(artifacts):
        if spec.label == reference.label:
            return index
    for index, spec in enumerate(artifacts):
        same_file = Path(spec.path).resolve() == Path(reference.path).resolve()
        if same_file and reference.backend in (None, spec.backend):
            return index
    return None


def expand_artifacts(
    texts: Sequence[str], backends: Sequence[str] = (), checkpoints: Sequence[str] = ()
) -> tuple[ArtifactSpec, ...]:
    """Artifact specs from the command line: ``PATH[@BACKEND]`` each, times ``backends``, plus checkpoints.

    An artifact that names its backend keeps it; otherwise it gets one row per backend of
    ``backends`` that reads its suffix (by suffix alone when none does, or ``backends`` is empty).
    """
    from runtime.backends.registry import get_backend

    for name in backends:
        get_backend(name)
    specs: list[ArtifactSpec] = []
    for text in texts:
        spec = ArtifactSpec.parse(text)
        suffix = Path(spec.path).suffix.lower()
        readers = [name for name in backends if suffix in get_backend(name).capabilities.suffixes]
        if spec.backend is None and readers:
            specs.extend(ArtifactSpec(spec.path, name) for name in readers)
        else:
            specs.append(spec)
    specs.extend(ArtifactSpec(path, "torch") for path in checkpoints)
    return tuple(specs)
