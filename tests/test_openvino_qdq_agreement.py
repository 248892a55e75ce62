"""One Q/DQ file, two engines: OpenVINO reading OpenSeeFace's Q/DQ ONNX agrees with ONNX Runtime
running it, on real faces and real video frames.

OpenSeeFace (MobileNetV3 heatmap + offsets, 224 px) amplifies one-step rounding differences: two
correct implementations of the same Q/DQ file differ by a large fraction of what INT8 costs against
FP32. The bound here is on the label-free distance between the engines' points, against the
distance of each to the FP32 model: the engines must agree better than INT8 agrees with FP32.
An IR read from a Q/DQ file runs its float layers in FP32 (its card says so), as the file means.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino", reason="needs the `openvino` package (pip install edgemark[openvino])")

from export import onnx as onnx_cli
from export import openvino as openvino_cli
from export import ort as ort_cli
from runtime.agreement import face_inputs, join, predict_points, video_inputs, agreement_from_points
from runtime.annotations import read_pts_folder
from runtime.backends.registry import load_backend
from runtime.card import read_card
from runtime.landmarker import Landmarker
from runtime.zoo import OPENSEEFACE_IMPORT_FLAGS

# The README's styles for OpenSeeFace (make_up needs 68 or 98 points).
OSF_STYLES = "illumination_gradient,low_light,colour_cast,motion_blur,defocus_blur,sensor_noise,jpeg_artefacts,occlusion"


@pytest.fixture(scope="module")
def osf_files(tmp_path_factory, openseeface_onnx, face_video, faces68_dir) -> tuple[Path, Path, Path]:
    """OpenSeeFace FP32, its u8s8 Q/DQ file made as the README makes it (smaller: style proxies of 20
    pseudo-labelled video frames, ``--max-nme-drop 1.0``) and the IR OpenVINO reads from that file."""
    from calib.__main__ import main as calib_main
    from runtime.track import main as track_main

    work = tmp_path_factory.mktemp("osf_qdq")
    fp32 = work / "osf.onnx"
    assert onnx_cli.main(["--import", str(openseeface_onnx), "-o", str(fp32), *OPENSEEFACE_IMPORT_FLAGS]) == 0
    pseudo = work / "pseudo"
    assert track_main(
        [str(face_video), "--model", str(fp32), "--save-frames", str(pseudo), "--save-every", "10",
         "--max-frames", "200", "--csv", str(work / "track.csv")]
    ) == 0  # fmt: skip
    calib = work / "calib.npz"
    assert calib_main(
        ["build", "--card", str(fp32), "--proxies", str(pseudo), "--exclude", str(faces68_dir), "--size", "80",
         "--styles", OSF_STYLES, "--out", str(calib)]
    ) == 0  # fmt: skip
    qdq = work / "osf_int8.onnx"
    assert ort_cli.main(["--int8", str(fp32), "--calib", str(calib), "--max-nme-drop", "1.0", "-o", str(qdq)]) == 0
    ir = work / "osf_int8_qdq.xml"
    assert openvino_cli.main([str(qdq), "-o", str(ir)]) == 0
    return fp32, qdq, ir


@pytest.mark.slow
def test_openvino_and_onnxruntime_agree_on_one_qdq_file(osf_files, faces68_dir, video_frames, capsys):
    fp32, qdq, ir = osf_files
    assert read_card(ir).extra["openvino"]["inference_precision"] == "f32"
    with load_backend(fp32) as reference_backend, load_backend(qdq) as ort_backend, load_backend(ir) as ov_backend:
        assert ov_backend.inference_precision == "f32"  # the card's hint, not the CPU's bf16 default
        reference = Landmarker(reference_backend)
        inputs = join(
            face_inputs(read_pts_folder(faces68_dir), reference.card),
            video_inputs(video_frames[::10], reference, "face_closeup.mp4"),
        )
        points = {
            name: predict_points(Landmarker(backend), inputs)
            for name, backend in (("fp32", reference_backend), ("ort", ort_backend), ("openvino", ov_backend))
        }
    layout = reference.card.layout
    between = agreement_from_points(points["openvino"], points["ort"], layout, inputs.names)["inter_ocular"]
    to_fp32 = {
        name: agreement_from_points(points[name], points["fp32"], layout, inputs.names)["inter_ocular"]
        for name in ("ort", "openvino")
    }
    with capsys.disabled():
        print(
            f"\nOpenSeeFace Q/DQ on {len(inputs)} real inputs, label-free inter-ocular % mean/p95: OpenVINO vs ONNX "
            f"Runtime {between['mean']:.2f}/{between['p95']:.2f}; vs FP32: ONNX Runtime "
            f"{to_fp32['ort']['mean']:.2f}/{to_fp32['ort']['p95']:.2f}, OpenVINO "
            f"{to_fp32['openvino']['mean']:.2f}/{to_fp32['openvino']['p95']:.2f}"
        )
    assert np.isfinite(between["max"])
    # The engines agree better than either agrees with FP32, and within a fixed bound.
    assert between["mean"] < min(to_fp32["ort"]["mean"], to_fp32["openvino"]["mean"])
    assert between["p95"] <= BOUND_P95


# Label-free p95 (inter-ocular %) between the engines on this file. Measured on the 2-vCPU Intel Xeon
# (AVX-512 VNNI and BF16), onnxruntime 1.32, openvino 2026.4, 2026-12-02: 2.44 (mean 1.10; vs FP32
# ONNX Runtime 1.28/3.15, OpenVINO 1.22/2.61) on these 40 inputs; the README's file (296 calibration
# samples) on all 275 frames and 16 faces: 0.79/1.14 with f32 float layers, 0.91/1.37 with bf16.
BOUND_P95 = 3.0
