"""Shared fixtures and the one place that probes hardware and optional packages for skips."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# ../shared beside the repository (CI clones main next to a copy of it); EDGEMARK_SHARED overrides.
SHARED = Path(os.environ.get("EDGEMARK_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"
FACES68 = DATA / "faces68"
FACES98 = DATA / "faces98"
PFLD_DIR = DATA / "models" / "pfld_ghostone"
VIDEO = DATA / "video" / "face_closeup.mp4"
YUNET = DATA / "models" / "yunet" / "face_detection_yunet_2023mar.onnx"


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _cuda() -> bool:
    if not _has("torch"):
        return False
    import torch

    return torch.cuda.is_available()


HAS_TORCH = _has("torch")
HAS_CUDA = _cuda()
HAS_TENSORRT = _has("tensorrt")
HAS_OPENVINO = _has("openvino")
HAS_NNCF = _has("nncf")


def pytest_collection_modifyitems(config, items):
    skips = {
        "gpu": (HAS_CUDA, "needs a CUDA GPU (torch.cuda.is_available() is False here)"),
        "trt": (HAS_TENSORRT, "needs the `tensorrt` package (pip install edgemark[trt]) and an NVIDIA GPU"),
    }
    for item in items:
        for marker, (available, reason) in skips.items():
            if marker in item.keywords and not available:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory) -> Path:
    """A models cache of the test run's own, holding the zoo's YuNet from ../shared/data when present.

    The default detector (``yunet``) then works offline as on a user's machine after its first
    download; without the file it falls back to Haar with a warning, as it would offline.
    """
    import shutil

    from runtime.zoo import CACHE_ENV, model_paths

    root = tmp_path_factory.mktemp("edgemark-cache")
    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(root)
    if YUNET.is_file():
        destination = model_paths("yunet")[0]
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(YUNET, destination)
    yield root
    if previous is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = previous


@pytest.fixture(scope="session", autouse=True)
def no_display():
    """No test opens a window by accident: the tracker opens one wherever a display exists, so the display
    variables are unset for the whole run (tests/test_window.py starts its own Xvfb and passes it on)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in ("DISPLAY", "WAYLAND_DISPLAY"):
            patch.delenv(name, raising=False)
        yield


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data not found at {path} (../shared/data beside the repo, or set EDGEMARK_SHARED)")
    return path


@pytest.fixture(scope="session")
def faces68_dir() -> Path:
    """The twelve real faces with 68-point annotations."""
    return _require(FACES68)


@pytest.fixture(scope="session")
def faces98_dir() -> Path:
    """Four real WFLW faces with 98-point annotations (crops of their photographs)."""
    return _require(FACES98)


@pytest.fixture(scope="session")
def pfld_onnx() -> Path:
    """The third-party PFLD-GhostOne WFLW-98 ONNX model (112x112, BGR, coords output)."""
    return _require(PFLD_DIR / "PFLD_GhostOne_112_1_opt_sim.onnx")


@pytest.fixture(scope="session")
def openseeface_onnx() -> Path:
    """OpenSeeFace's model 0 (BSD-2-Clause): 224x224 RGB, 66 heatmaps + 2 x 66 offset maps."""
    return _require(DATA / "models" / "openseeface" / "lm_model0_opt.onnx")


@pytest.fixture(scope="session")
def peppa_onnx() -> Path:
    """Peppa's slim-160 (Apache-2.0): 160x160 BGR, 143 outputs, the first 136 the 68 (x, y) pairs."""
    return _require(DATA / "models" / "peppa_slim160" / "slim_160_latest.onnx")


@pytest.fixture(scope="session")
def yunet_onnx() -> Path:
    """The YuNet 2023mar face detector (the default detector's file)."""
    return _require(YUNET)


@pytest.fixture(scope="session")
def face_video() -> Path:
    """The real close-up face video (275 frames, 450x680)."""
    return _require(VIDEO)


@pytest.fixture(scope="session")
def pfld_artifact(pfld_onnx, tmp_path_factory) -> Path:
    """The PFLD-GhostOne model imported once per test run with its card (the zoo's import flags)."""
    from export.onnx import main as export_onnx
    from runtime.zoo import PFLD_IMPORT_FLAGS

    output = tmp_path_factory.mktemp("pfld") / "pfld.onnx"
    assert export_onnx(["--import", str(pfld_onnx), "-o", str(output), *PFLD_IMPORT_FLAGS]) == 0
    return output


@pytest.fixture(scope="session")
def pfld(pfld_artifact) -> Path:
    """The imported PFLD artifact, shared by every module: read it, never change it (copy it first)."""
    return pfld_artifact


@pytest.fixture(scope="session")
def split_faces(faces68_dir, tmp_path_factory) -> tuple[list, Path]:
    """The one split of faces68: even-indexed faces calibrate; a folder of the odd-indexed ones is held out."""
    from runtime.annotations import read_pts_folder

    samples = read_pts_folder(faces68_dir)
    held_out = tmp_path_factory.mktemp("split") / "held_out_faces"
    held_out.mkdir()
    for sample in samples[1::2]:
        os.symlink(sample.image, held_out / sample.image.name)
        os.symlink(sample.image.with_suffix(".pts"), held_out / f"{sample.image.stem}.pts")
    return samples[0::2], held_out


@pytest.fixture(scope="session")
def calib(pfld_artifact, split_faces, tmp_path_factory) -> Path:
    """A PFLD calibration array of the even-indexed faces (the held-out odd ones are never in it)."""
    from export.calibration import calibration_array_from_faces
    from runtime.card import read_card

    path = tmp_path_factory.mktemp("calib") / "calib_even.npz"
    calibration_array_from_faces(split_faces[0], read_card(pfld_artifact), path)
    return path


@pytest.fixture(scope="session")
def video_calib(pfld_artifact, face_video, faces68_dir, tmp_path_factory) -> Path:
    """A PFLD calibration array as the README builds one, smaller: style proxies of pseudo-labelled
    frames of the real video (every 10th of the first 200), faces68 excluded; 120 samples."""
    from calib.__main__ import main as calib_main
    from runtime.track import main as track_main

    work = tmp_path_factory.mktemp("video_calib")
    pseudo = work / "pseudo"
    assert track_main(
        [str(face_video), "--model", str(pfld_artifact), "--save-frames", str(pseudo), "--save-every", "10",
         "--max-frames", "200", "--csv", str(work / "track.csv")]
    ) == 0  # fmt: skip
    output = work / "calib.npz"
    assert calib_main(
        ["build", "--card", str(pfld_artifact), "--proxies", str(pseudo), "--exclude", str(faces68_dir),
         "--size", "120", "--out", str(output)]
    ) == 0  # fmt: skip
    return output


@pytest.fixture(scope="session")
def video_frames(face_video) -> list:
    """Every frame of the real close-up video, decoded once."""
    from runtime.frames import read_video

    return read_video(face_video)[0]


def randomise_batchnorm(model, weights: bool = False) -> None:
    """Give every BatchNorm2d non-trivial statistics (and scales), so folding them into convs is exercised."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            if weights:
                module.weight.data.uniform_(0.5, 1.5)


def one_error_line(captured) -> str:
    """The single ``error:`` line a command printed (and no traceback)."""
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, captured.err
    assert "Traceback" not in captured.err
    return errors[0]


def left_in(folder: Path) -> list[str]:
    """Everything in ``folder`` (hidden temporary files included); empty when it does not exist."""
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def write_checkpoint(path, model_name: str = "tiny_heatmap", input_size: int = 64, seed: int = 0, **overrides):
    """A seeded model with non-trivial BatchNorm statistics saved as train/engine.py saves one (68 iBUG
    points, stride 4); ``overrides`` replace entries of the checkpoint. Returns the model."""
    import torch

    from runtime.crop import CropRule, Normalisation
    from train.checkpoint import save_checkpoint
    from train.models import build_model

    torch.manual_seed(seed)
    model = build_model(model_name, 68, input_size=input_size)
    randomise_batchnorm(model)
    state = {
        "model_name": model_name, "num_points": 68, "layout": "ibug68", "input_size": input_size,
        "heatmap_stride": 4, "sigma": 1.5, "decode": "centroid", "normalisation": Normalisation().to_dict(),
        "crop_rule": CropRule().to_dict(), "model": model.state_dict(), "epoch": 1,
    }  # fmt: skip
    state.update(overrides)
    save_checkpoint(path, state)
    return model
