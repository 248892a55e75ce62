"""Bad input, command by command (issue 9): every case ends with a non-zero exit, one error line and no
traceback, and leaves no new or partial file behind. Cases run in-process through each command's main()."""
from __future__ import annotations

import importlib
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

PFLD_FLAGS = ["--layout", "wflw98", "--input-size", "112", "--channel-order", "BGR", "--mean", "0.5", "0.5", "0.5",
              "--std", "0.5", "0.5", "0.5", "--output-kind", "coords", "--crop-scale", "1.2", "--crop-box", "landmarks"]  # fmt: skip


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def bad(tmp_path_factory, pfld_artifact, faces68_dir):
    """A folder of bad inputs, made once: {name: path}."""
    import cv2

    folder = tmp_path_factory.mktemp("bad_inputs")
    files = {
        "blocker": folder / "blocker",  # a file: nothing can be written under it
        "truncated": folder / "truncated.onnx",
        "empty": folder / "empty.onnx",
        "text_pt": folder / "text.pt",
        "evil_pt": folder / "evil.pt",
        "garbage_video": folder / "garbage.mp4",
        "garbage_npz": folder / "garbage.npz",
        "nan_pts": folder / "nan_pts",
        "empty_dir": folder / "empty_dir",
        "marker": folder / "code_ran",
        "other_card_npz": folder / "other_card.npz",
    }
    files["blocker"].write_text("a file")
    files["truncated"].write_bytes(pfld_artifact.read_bytes()[:2000])
    files["empty"].write_bytes(b"")
    files["text_pt"].write_text("not a checkpoint")
    torch.save({"format": "edgemark-checkpoint", "payload": _RunsCode(str(files["marker"]))}, files["evil_pt"])
    files["garbage_video"].write_bytes(os.urandom(4096))
    files["garbage_npz"].write_bytes(b"PK not really")
    files["nan_pts"].mkdir()
    image = sorted(faces68_dir.glob("*.jpg"))[0]
    files["nan_pts"].joinpath(image.name).write_bytes(image.read_bytes())
    lines = ["version: 1", "n_points: 68", "{", *["nan 1e30"] * 68, "}"]
    files["nan_pts"].joinpath(image.with_suffix(".pts").name).write_text("\n".join(lines))
    files["empty_dir"].mkdir()
    from export.calibration import write_calibration_array
    from runtime.card import read_card

    card = read_card(pfld_artifact)  # the right size, but made for RGB ImageNet normalisation
    write_calibration_array(files["other_card_npz"], np.zeros((16, 3, 112, 112), np.float32), {"preprocessing": {
        "input_size": 112, "crop_rule": card.crop_rule.to_dict(),
        "normalisation": {"channel_order": "RGB", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}})  # fmt: skip
    cv2.imwrite(str(folder / "tiny.png"), np.zeros((4, 4, 3), np.uint8))
    return files


def _cases():
    """(id, command module, argv template). Templates name {out} (a fresh folder), {pfld} (an artifact),
    {raw} (the third-party ONNX), {video}, {faces}, {yunet} and the bad files by name."""
    return [
        # export.onnx
        ("onnx-missing-checkpoint", "export.onnx", ["{out}/missing.pt", "-o", "{out}/m.onnx"]),
        ("onnx-text-checkpoint", "export.onnx", ["{text_pt}", "-o", "{out}/m.onnx"]),
        ("onnx-crafted-checkpoint", "export.onnx", ["{evil_pt}", "-o", "{out}/m.onnx"]),
        ("onnx-output-under-a-file", "export.onnx", ["--import", "{raw}", "-o", "{blocker}/m.onnx", *PFLD_FLAGS]),
        ("onnx-output-not-onnx", "export.onnx", ["--import", "{raw}", "-o", "{out}/m.txt", *PFLD_FLAGS]),
        ("onnx-import-truncated", "export.onnx", ["--import", "{truncated}", "-o", "{out}/m.onnx", *PFLD_FLAGS]),
        ("onnx-import-empty", "export.onnx", ["--import", "{empty}", "-o", "{out}/m.onnx", *PFLD_FLAGS]),
        ("onnx-nan-mean", "export.onnx", ["--import", "{raw}", "-o", "{out}/m.onnx", *PFLD_FLAGS, "--mean", "nan", "0", "0"]),
        ("onnx-inf-std", "export.onnx", ["--import", "{raw}", "-o", "{out}/m.onnx", *PFLD_FLAGS, "--std", "inf", "1", "1"]),
        ("onnx-zero-crop", "export.onnx", ["--import", "{raw}", "-o", "{out}/m.onnx", *PFLD_FLAGS, "--crop-scale", "0"]),
        ("onnx-unknown-layout", "export.onnx", ["--import", "{raw}", "-o", "{out}/m.onnx", *PFLD_FLAGS, "--layout", "wflw99"]),
        # export.ort
        ("ort-truncated-model", "export.ort", ["--int8", "{truncated}", "--calib", "{garbage_npz}", "-o", "{out}/q.onnx"]),
        ("ort-missing-calib", "export.ort", ["--int8", "{pfld}", "--calib", "{out}/missing.npz", "-o", "{out}/q.onnx"]),
        ("ort-garbage-calib", "export.ort", ["--int8", "{pfld}", "--calib", "{garbage_npz}", "-o", "{out}/q.onnx"]),
        ("ort-calib-for-another-card", "export.ort", ["--int8", "{pfld}", "--calib", "{other_card_npz}", "-o", "{out}/q.onnx"]),
        ("ort-missing-model", "export.ort", ["--int8", "{out}/missing.onnx", "--calib", "{garbage_npz}", "-o", "{out}/q.onnx"]),
        # export.openvino
        ("openvino-truncated-model", "export.openvino", ["{truncated}", "-o", "{out}/m.xml"]),
        ("openvino-missing-model", "export.openvino", ["{out}/missing.onnx", "-o", "{out}/m.xml"]),
        ("openvino-missing-calib", "export.openvino", ["{pfld}", "-o", "{out}/m.xml", "--int8", "--calib", "{out}/no.npz"]),
        ("openvino-calib-for-another-card", "export.openvino", ["{pfld}", "-o", "{out}/m.xml", "--int8", "--calib", "{other_card_npz}"]),
        ("openvino-garbage-calib", "export.openvino", ["{pfld}", "-o", "{out}/m.xml", "--int8", "--calib", "{garbage_npz}"]),
        # export.verify
        ("verify-truncated-artifact", "export.verify", ["{truncated}", "--reference", "{pfld}", "--images", "{faces}"]),
        ("verify-missing-reference", "export.verify", ["{pfld}", "--reference", "{out}/missing.onnx", "--images", "{faces}"]),
        ("verify-missing-images", "export.verify", ["{pfld}", "--reference", "{pfld}", "--images", "{out}/nowhere"]),
        ("verify-empty-images", "export.verify", ["{pfld}", "--reference", "{pfld}", "--images", "{empty_dir}"]),
        # export.trt (everything before TensorRT itself)
        ("trt-truncated-model", "export.trt", ["{truncated}", "-o", "{out}/m.engine"]),
        ("trt-missing-model", "export.trt", ["{out}/missing.onnx", "-o", "{out}/m.engine"]),
        # calib
        ("calib-missing-card", "calib", ["build", "--card", "{out}/missing.onnx", "--proxies", "{faces}", "--out", "{out}/c.npz"]),
        ("calib-nan-annotations", "calib", ["build", "--card", "{pfld}", "--proxies", "{nan_pts}", "--out", "{out}/c.npz"]),
        ("calib-empty-proxies", "calib", ["build", "--card", "{pfld}", "--proxies", "{empty_dir}", "--out", "{out}/c.npz"]),
        ("calib-output-under-a-file", "calib", ["build", "--card", "{pfld}", "--proxies", "{faces}", "--out", "{blocker}/c.npz"]),
        # runtime.track
        ("track-missing-source", "runtime.track", ["{out}/missing.mp4", "--model", "{pfld}"]),
        ("track-garbage-video", "runtime.track", ["{garbage_video}", "--model", "{pfld}", "--csv", "{out}/t.csv"]),
        ("track-truncated-model", "runtime.track", ["{video}", "--model", "{truncated}", "--csv", "{out}/t.csv"]),
        ("track-crafted-checkpoint", "runtime.track", ["{video}", "--model", "{evil_pt}", "--csv", "{out}/t.csv"]),
        ("track-csv-under-a-file", "runtime.track", ["{video}", "--model", "{pfld}", "--csv", "{blocker}/t.csv", "--max-frames", "2"]),
        ("track-negative-max-frames", "runtime.track", ["{video}", "--model", "{pfld}", "--csv", "{out}/t.csv", "--max-frames", "-1"]),
        ("track-detector-scale", "runtime.track", ["{video}", "--model", "{pfld}", "--detector-scale", "2"]),
        ("track-min-face", "runtime.track", ["{video}", "--model", "{pfld}", "--min-face", "1.5"]),
        ("track-redetect", "runtime.track", ["{video}", "--model", "{pfld}", "--redetect-every", "-1"]),
        ("track-missing-yunet", "runtime.track", ["{video}", "--model", "{pfld}", "--detector", "yunet:{out}/no.onnx"]),
        ("track-unknown-detector", "runtime.track", ["{video}", "--model", "{pfld}", "--detector", "retina"]),
        ("track-unknown-smoother", "runtime.track", ["{video}", "--model", "{pfld}", "--smooth", "kalmann"]),
        ("track-unknown-backend", "runtime.track", ["{video}", "--model", "{pfld}", "--backend", "ort2"]),
        ("track-show-without-display", "runtime.track", ["{video}", "--model", "{pfld}", "--show"]),
        # runtime.bench
        ("bench-json-under-a-file", "runtime.bench", ["{pfld}", "--json", "{blocker}/b.json"]),
        ("bench-unknown-backend", "runtime.bench", ["{pfld}@nope", "--json", "{out}/b.json"]),
        ("bench-missing-artifact", "runtime.bench", ["{out}/missing.onnx", "--json", "{out}/b.json"]),
        # runtime.report
        ("report-missing-artifact", "runtime.report", ["--artifacts", "{out}/missing.onnx", "--faces", "{faces}", "--out", "{out}/r"]),
        ("report-missing-faces", "runtime.report", ["--artifacts", "{pfld}", "--faces", "{out}/nowhere", "--out", "{out}/r"]),
        # runtime.scenario
        ("scenario-unknown", "runtime.scenario", ["multishot_1080", "--out", "{out}/s.mp4"]),
        ("scenario-output-under-a-file", "runtime.scenario", ["one_face", "--out", "{blocker}/s.mp4"]),
        ("scenario-missing-data", "runtime.scenario", ["one_face", "--out", "{out}/s.mp4", "--data", "{out}/nowhere"]),
        ("scenario-nothing-to-write", "runtime.scenario", ["one_face"]),
        # runtime.tools.peer
        ("peer-missing-video", "runtime.tools.peer", ["--video", "{out}/missing.mp4", "--model", "{pfld}"]),
        ("peer-missing-model", "runtime.tools.peer", ["--video", "{video}", "--model", "{out}/missing.onnx"]),
        ("peer-unknown-scenario", "runtime.tools.peer", ["--video", "scenario:nope", "--model", "{pfld}"]),
        # train and train.eval
        ("train-missing-data", "train", ["--train-data", "{out}/missing.txt", "--out-dir", "{out}/run"]),
        ("train-missing-config", "train", ["--config", "{out}/missing.yaml", "--out-dir", "{out}/run"]),
        ("eval-crafted-checkpoint", "train.eval", ["{evil_pt}", "--data", "{faces}"]),
        ("eval-text-checkpoint", "train.eval", ["{text_pt}", "--data", "{faces}"]),
        ("eval-missing-data", "train.eval", ["{out}/missing.pt", "--data", "{out}/nowhere"]),
    ]  # fmt: skip


CASES = _cases()


@pytest.mark.parametrize("command, template", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_one_line_and_leaves_nothing(command, template, bad, pfld_artifact, pfld_onnx, face_video,
                                                  faces68_dir, tmp_path, capsys, monkeypatch):  # fmt: skip
    monkeypatch.delenv("DISPLAY", raising=False)
    out = tmp_path / "out"
    out.mkdir()
    names = {key: str(path) for key, path in bad.items()}
    names.update(out=str(out), pfld=str(pfld_artifact), raw=str(pfld_onnx), video=str(face_video), faces=str(faces68_dir))
    argv = [part.format(**names) for part in template]
    before = sorted(bad["blocker"].parent.rglob("*"))
    main = importlib.import_module(f"{command}.__main__" if command in ("calib", "train") else command).main
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse: usage line + one error line, exit 2
        code = exit.code
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code not in (0, None), err
    assert "Traceback" not in "\n".join(err)
    assert sum(1 for line in err if "error" in line.lower()) == 1, err
    assert not list(out.rglob("*")), sorted(out.rglob("*"))  # nothing new, nothing partial
    assert sorted(bad["blocker"].parent.rglob("*")) == before
    assert not bad["marker"].exists()  # no code from a file ran


@pytest.fixture(scope="module")
def read_only_run(pfld_artifact, tmp_path_factory):
    """A folder holding the PFLD artifact and a read-only ``ro/``, and a way to run a command there as a
    user the folder refuses. Root writes anywhere, so as root the command runs without the capabilities
    that override file permissions (CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH dropped from its bounding
    set before exec): it is then held to the folder's owner bits like anyone else."""
    import ctypes
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = tmp_path_factory.mktemp("read_only")
    for suffix in ("", ".json"):
        shutil.copy(str(pfld_artifact) + suffix, root / f"pfld.onnx{suffix}")
    (root / "ro").mkdir()
    (root / "ro").chmod(0o555)
    repo = Path(__file__).resolve().parents[1]
    libc = ctypes.CDLL(None, use_errno=True)
    capability_drop, dac_override, dac_read_search = 24, 1, 2  # PR_CAPBSET_DROP, CAP_DAC_*

    def drop():
        for capability in (dac_override, dac_read_search):
            if libc.prctl(capability_drop, capability, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")

    def run(*argv):
        environment = {**os.environ, "PYTHONPATH": str(repo)}
        environment.pop("DISPLAY", None)
        return subprocess.run([sys.executable, "-m", *argv], cwd=root, env=environment, capture_output=True, text=True,
                              timeout=300, preexec_fn=drop if os.geteuid() == 0 else None)  # fmt: skip

    probe = run("runtime.errors")
    if probe.returncode != 0:
        pytest.skip(f"cannot run a command held to file permissions here: {probe.stderr.strip()[-200:]}")
    yield root, run
    (root / "ro").chmod(0o755)


@pytest.mark.parametrize(
    "argv",
    [
        ["export.onnx", "--import", "{raw}", "-o", "ro/m.onnx", *PFLD_FLAGS],
        ["calib", "build", "--card", "pfld.onnx", "--proxies", "{faces}", "--out", "ro/c.npz", "--size", "8"],
        ["runtime.track", "{video}", "--model", "pfld.onnx", "--csv", "ro/t.csv", "--max-frames", "2", "--detector", "haar"],
        ["runtime.bench", "pfld.onnx", "--runs", "2", "--warmup", "1", "--json", "ro/b.json"],
    ],
    ids=["export.onnx", "calib-build", "runtime.track", "runtime.bench"],
)
def test_read_only_folder_is_one_line(argv, read_only_run, pfld_onnx, face_video, faces68_dir):
    root, run = read_only_run
    names = {"raw": str(pfld_onnx), "video": str(face_video), "faces": str(faces68_dir)}
    result = run(*[part.format(**names) for part in argv])
    err = [line for line in result.stderr.splitlines() if line.strip() and "warning" not in line.lower()]
    assert result.returncode not in (0, None), result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len([line for line in err if line.startswith("error:")]) == 1, err
    assert "Permission denied" in result.stderr, err
    assert not list((root / "ro").iterdir())
