"""TensorRT engine builds: the plan (flags, profile, trtexec line) on the real PFLD-GhostOne model and
its Q/DQ INT8 version, validation before any work, the no-TensorRT path (Q/DQ ONNX + trtexec script,
no engine), the builder calls against a recording stand-in for the tensorrt module, and a real build
where TensorRT and a GPU exist (skipped here with the conftest reason).
"""

from __future__ import annotations

import enum
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pytest

from export import onnx as onnx_cli
from export import ort as ort_cli
from export import trt as trt_cli
from export import trt_build
from export.qdq import check_trt_ready
from export.trt_build import TrtConfig, engine_from_onnx, plan_from_onnx
from conftest import left_in, one_error_line
from runtime.zoo import PFLD_IMPORT_FLAGS
from runtime.annotations import read_pts_folder
from runtime.card import Card, read_card
from runtime.errors import UsageError

PFLD_CARD_FLAGS = list(PFLD_IMPORT_FLAGS)  # the card flags of the data README, kept once in runtime.zoo
SHAPE = (3, 112, 112)




@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("trt")


@pytest.fixture(scope="module")
def pfld(work, pfld_artifact) -> Path:
    """The shared PFLD artifact copied beside this module's outputs (trtexec lines name it relatively)."""
    import shutil

    for suffix in ("", ".json"):
        shutil.copy(f"{pfld_artifact}{suffix}", work / f"pfld.onnx{suffix}")
    return work / "pfld.onnx"


@pytest.fixture(scope="module")
def pfld_fixed(work, pfld_onnx) -> Path:
    """PFLD imported as published: batch fixed at 1."""
    output = work / "pfld_fixed.onnx"
    assert onnx_cli.main(["--import", str(pfld_onnx), "-o", str(output), "--keep-batch", *PFLD_CARD_FLAGS]) == 0
    return output


@pytest.fixture(scope="module")
def qdq(work, pfld, calib) -> Path:
    output = work / "pfld_qdq.onnx"
    assert ort_cli.main(["--int8", str(pfld), "--calib", str(calib), "--encoding", "s8s8", "-o", str(output)]) == 0
    return output


@pytest.fixture()
def no_tensorrt(monkeypatch):
    """Neither tensorrt nor a GPU, whatever this machine has (so the test means the same everywhere)."""
    monkeypatch.setattr(trt_build, "tensorrt_version", lambda: None)
    monkeypatch.setattr(trt_build, "cuda_gpu_name", lambda: None)


# --------------------------------------------------------------------------------------------------
# the plan, without TensorRT


def test_plan_fp32_dynamic_batch(work, pfld):
    plan = plan_from_onnx(TrtConfig(pfld, work / "engines" / "pfld.engine"))
    assert plan.onnx == pfld and plan.precision == "fp32" and plan.calibration is None
    assert plan.input_name == "input" and plan.input_shape == (None, *SHAPE)
    assert plan.profile == ((1, *SHAPE), (4, *SHAPE), (16, *SHAPE))
    assert plan.network_flags == () and plan.builder_flags == ()
    assert plan.workspace_bytes == 1024 << 20 and plan.timing_cache is None
    assert plan.trtexec_args == (
        "trtexec",
        "--onnx=../pfld.onnx",
        "--saveEngine=pfld.engine",
        "--minShapes=input:1x3x112x112",
        "--optShapes=input:4x3x112x112",
        "--maxShapes=input:16x3x112x112",
        "--memPoolSize=workspace:1024M",
    )
    assert plan.script == work / "engines" / "pfld.engine.trtexec.sh"
    assert json.loads(json.dumps(plan.to_dict()))["profile"]["max"] == [16, *SHAPE]
    assert not (work / "engines").exists()  # planning writes nothing


def test_plan_fp16_sets_the_fp16_builder_flag(work, pfld):
    plan = plan_from_onnx(TrtConfig(pfld, work / "pfld_fp16.engine", fp16=True))
    assert plan.builder_flags == ("FP16",) and plan.network_flags == ()
    assert plan.precision == "fp16"
    assert "--fp16" in plan.trtexec_args and "--stronglyTyped" not in plan.trtexec_args


def test_plan_int8_from_qdq_is_strongly_typed_without_int8_flag(work, qdq):
    plan = plan_from_onnx(TrtConfig(qdq, work / "pfld_int8.engine", int8=True))
    assert plan.onnx == qdq and plan.calibration is None and plan.precision == "int8"
    assert plan.network_flags == ("STRONGLY_TYPED",)
    assert plan.builder_flags == ()  # no INT8 (removed in 11) and no FP16 (not allowed when strongly typed)
    assert "--stronglyTyped" in plan.trtexec_args
    assert not any(arg in ("--int8", "--fp16", "--best") or arg.startswith("--calib") for arg in plan.trtexec_args)
    assert plan.profile[1] == (4, *SHAPE)


def test_plan_int8_from_float_with_calibration(work, pfld, calib):
    engine = work / "out" / "pfld_int8.engine"
    plan = plan_from_onnx(TrtConfig(pfld, engine, int8=True, calibration=calib))
    assert plan.onnx == work / "out" / "pfld_int8.qdq.onnx" and plan.calibration == calib
    assert plan.network_flags == ("STRONGLY_TYPED",) and plan.builder_flags == ()
    assert "--onnx=pfld_int8.qdq.onnx" in plan.trtexec_args


def test_plan_custom_profile_cache_and_workspace(work, pfld):
    config = TrtConfig(
        pfld,
        work / "e" / "pfld.plan",
        min_batch=2,
        opt_batch=8,
        max_batch=32,
        timing_cache=work / "caches" / "trt.cache",
        workspace_mb=256,
    )
    plan = plan_from_onnx(config)
    assert plan.profile == ((2, *SHAPE), (8, *SHAPE), (32, *SHAPE))
    assert plan.workspace_bytes == 256 << 20
    args = plan.trtexec_args
    assert "--minShapes=input:2x3x112x112" in args and "--maxShapes=input:32x3x112x112" in args
    assert "--memPoolSize=workspace:256M" in args
    assert "--timingCacheFile=../caches/trt.cache" in args
    assert plan.trtexec_command.startswith("trtexec --onnx=../pfld.onnx --saveEngine=pfld.plan ")


def test_plan_fixed_batch_model_has_no_profile(work, pfld_fixed):
    plan = plan_from_onnx(TrtConfig(pfld_fixed, work / "fixed.engine"))
    assert plan.profile is None and plan.input_shape == (1, *SHAPE)
    assert not any("Shapes=" in arg for arg in plan.trtexec_args)  # trtexec refuses shapes for static models
    # Batch flags equal to the fixed batch are harmless.
    assert plan_from_onnx(TrtConfig(pfld_fixed, work / "fixed.engine", min_batch=1, max_batch=1)).profile is None


@pytest.mark.parametrize(
    "flags, status, expected",
    [
        (["--min-batch", "8", "--opt-batch", "4"], 2, "min <= opt <= max"),
        (["--opt-batch", "32"], 2, "max 16 (default)"),
        (["--min-batch", "0"], 2, "--min-batch must be at least 1"),
        (["--int8"], 2, "--int8 needs calibration images and none are at hand"),
        (["--fp16", "--int8", "--calib", "c.npz"], 2, "--fp16 cannot be combined with --int8"),
        (["--calib", "c.npz"], 2, "--calib is only used with --int8"),
        (["--workspace-mb", "0"], 2, "--workspace-mb must be at least 1"),
        (["--int8", "--calib", "absent.npz"], 1, "calibration array not found"),
    ],
)
def test_bad_flags_fail_before_any_work(tmp_path, pfld, flags, status, expected, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./pseudo frames to calibrate on by default
    out = tmp_path / "out"
    assert trt_cli.main([str(pfld), "-o", str(out / "m.engine"), *flags]) == status
    assert expected in one_error_line(capsys.readouterr())
    assert left_in(out) == []


def test_batch_range_on_a_fixed_batch_model(tmp_path, pfld_fixed, capsys):
    out = tmp_path / "out"
    assert trt_cli.main([str(pfld_fixed), "-o", str(out / "m.engine"), "--max-batch", "8"]) == 2
    assert "fixed batch of 1" in one_error_line(capsys.readouterr())
    assert left_in(out) == []


def test_qdq_model_flags(tmp_path, qdq, calib, capsys):
    out = tmp_path / "out"
    for flags, expected in (
        ([], "pass --int8"),
        (["--int8", "--calib", str(calib)], "drop --calib"),
    ):
        assert trt_cli.main([str(qdq), "-o", str(out / "m.engine"), *flags]) == 2
        assert expected in one_error_line(capsys.readouterr())
    assert left_in(out) == []


def test_missing_model_and_bad_output(tmp_path, pfld, capsys):
    assert trt_cli.main([str(tmp_path / "absent.onnx"), "-o", str(tmp_path / "m.engine")]) == 1
    assert "not found" in one_error_line(capsys.readouterr())
    assert trt_cli.main([str(pfld), "-o", str(tmp_path / "m.onnx")]) == 2
    assert ".engine or .plan" in one_error_line(capsys.readouterr())
    assert left_in(tmp_path) == []


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, pfld, capsys):
    out = tmp_path / "out"
    assert trt_cli.main([str(pfld), "-o", str(out / "m.engine"), "--fp16", "--dry-run"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["builder_flags"] == ["FP16"] and "--fp16" in printed["trtexec"]
    assert left_in(out) == []


# --------------------------------------------------------------------------------------------------
# no TensorRT here: Q/DQ ONNX and trtexec script, one line, no engine


def test_missing_tensorrt_writes_qdq_and_trtexec_script(tmp_path, pfld, calib, no_tensorrt, capsys):
    out = tmp_path / "out"
    engine = out / "pfld_int8.engine"
    assert trt_cli.main([str(pfld), "-o", str(engine), "--int8", "--calib", str(calib)]) == 1
    line = one_error_line(capsys.readouterr())
    assert "needs the `tensorrt` package and an NVIDIA GPU; found neither" in line
    assert "pip install edgemark[trt]" in line
    qdq_path, script = out / "pfld_int8.qdq.onnx", out / "pfld_int8.engine.trtexec.sh"
    assert str(qdq_path) in line and str(script) in line
    assert left_in(out) == [
        "pfld_int8.engine.trtexec.sh",
        "pfld_int8.qdq.onnx",
        "pfld_int8.qdq.onnx.json",
        "pfld_int8.qdq.onnx.ranges.json",  # the calibration (range table) the Q/DQ file encodes
    ]
    assert check_trt_ready(onnx.load(str(qdq_path))) == []
    assert read_card(qdq_path).precision == "int8"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert 'cd "$(dirname "$0")"' in text and "--onnx=pfld_int8.qdq.onnx" in text and "--stronglyTyped" in text


def test_trtexec_script_builds_engine_and_card_on_the_target(tmp_path, pfld, calib, no_tensorrt, capsys):
    """Run the script with a stand-in trtexec that writes --saveEngine: the engine gets its card."""
    out = tmp_path / "target"
    engine = out / "pfld_int8.engine"
    assert trt_cli.main([str(pfld), "-o", str(engine), "--int8", "--calib", str(calib)]) == 1
    capsys.readouterr()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "trtexec"
    fake.write_text(
        '#!/bin/sh\nfor a in "$@"; do case "$a" in --saveEngine=*) printf engine > "${a#--saveEngine=}";; esac; done\n'
        'printf "%s\\n" "$@" > trtexec.args\n'
    )
    fake.chmod(0o755)
    environment = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(["sh", str(out / "pfld_int8.engine.trtexec.sh")], check=True, env=environment, cwd=tmp_path)
    assert engine.read_bytes() == b"engine"
    card = read_card(engine)
    assert (card.format, card.precision, card.layout) == ("tensorrt", "int8", "wflw98")
    assert card.extra["built_by"] == "trtexec script"
    assert card.calibration["count"] == 6
    arguments = (out / "trtexec.args").read_text().split()
    assert arguments == card.extra["trtexec"].split()[1:]


def test_missing_tensorrt_with_a_gpu_and_a_float_model(tmp_path, pfld, monkeypatch, capsys):
    monkeypatch.setattr(trt_build, "tensorrt_version", lambda: None)
    monkeypatch.setattr(trt_build, "cuda_gpu_name", lambda: "Fake GPU")
    out = tmp_path / "out"
    assert trt_cli.main([str(pfld), "-o", str(out / "pfld.engine"), "--fp16"]) == 1
    line = one_error_line(capsys.readouterr())
    assert "found an NVIDIA GPU (Fake GPU) but no importable `tensorrt` package" in line
    assert "The ONNX and trtexec command are at" in line
    assert left_in(out) == ["pfld.engine.trtexec.sh"]


# --------------------------------------------------------------------------------------------------
# the builder calls, against a recording stand-in for the tensorrt module


def _fake_tensorrt(major: int = 10) -> tuple[types.ModuleType, dict]:
    calls: dict = {"flags": [], "profiles": []}
    module = types.ModuleType("tensorrt")
    module.__version__ = f"{major}.9.0"
    builder_flags = ["INT8", "FP16", "STRICT_TYPES"] if major == 10 else ["REFIT", "SPARSE_WEIGHTS"]
    module.BuilderFlag = enum.IntEnum("BuilderFlag", builder_flags, start=0)
    network_flags = ["EXPLICIT_BATCH", "STRONGLY_TYPED"] if major == 10 else ["STRONGLY_TYPED"]
    module.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", network_flags, start=0)
    module.MemoryPoolType = enum.IntEnum("MemoryPoolType", ["WORKSPACE"], start=0)

    class Logger:
        WARNING = 2

        def __init__(self, severity):
            pass

    class Cache:
        def serialize(self):
            return memoryview(b"timing-cache")

    class Config:
        cache = None

        def set_memory_pool_limit(self, pool, size):
            calls["workspace"] = (pool, size)

        def set_flag(self, flag):
            calls["flags"].append(flag)

        def add_optimization_profile(self, profile):
            calls["profiles"].append(profile.shapes)

        def create_timing_cache(self, data):
            calls["cache_in"] = bytes(data)
            return Cache()

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    class Profile:
        shapes = None

        def set_shape(self, name, minimum, optimum, maximum):
            self.shapes = (name, minimum, optimum, maximum)

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls["network_flags"] = flags
            return object()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            return memoryview(b"serialized-engine")

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            calls["parsed"] = path
            return Path(path).is_file()

    module.Logger, module.Builder, module.OnnxParser = Logger, Builder, OnnxParser
    return module, calls


@pytest.fixture()
def fake_tensorrt(monkeypatch):
    def install(major: int = 10):
        module, calls = _fake_tensorrt(major)
        monkeypatch.setitem(sys.modules, "tensorrt", module)
        monkeypatch.setattr(trt_build, "tensorrt_version", lambda: module.__version__)
        monkeypatch.setattr(trt_build, "cuda_gpu_name", lambda: "Fake GPU")
        return module, calls

    return install


def test_int8_build_calls(tmp_path, qdq, fake_tensorrt):
    trt, calls = fake_tensorrt()
    engine = tmp_path / "pfld_int8.engine"
    cache = tmp_path / "trt.cache"
    cache.write_bytes(b"old-cache")
    card = engine_from_onnx(plan_from_onnx(TrtConfig(qdq, engine, int8=True, timing_cache=cache, workspace_mb=512)))
    assert calls["network_flags"] == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert calls["flags"] == []  # strongly typed: no precision flags, never INT8
    assert calls["workspace"] == (trt.MemoryPoolType.WORKSPACE, 512 << 20)
    assert calls["profiles"] == [("input", (1, *SHAPE), (4, *SHAPE), (16, *SHAPE))]
    assert calls["parsed"] == str(qdq)
    assert calls["cache_in"] == b"old-cache" and cache.read_bytes() == b"timing-cache"
    assert engine.read_bytes() == b"serialized-engine"
    assert read_card(engine) == card
    assert (card.format, card.precision, card.tools["tensorrt"]) == ("tensorrt", "int8", "10.9.0")
    relative = os.path.relpath(qdq, tmp_path)
    assert card.extra["trtexec"].startswith(f"trtexec --onnx={relative} --saveEngine=pfld_int8.engine ")
    assert card.extra["gpu"] == "Fake GPU" and card.batch is None
    assert card.calibration == read_card(qdq).calibration


def test_fp16_build_calls_and_tensorrt_11(tmp_path, pfld, fake_tensorrt):
    trt, calls = fake_tensorrt(10)
    engine_from_onnx(plan_from_onnx(TrtConfig(pfld, tmp_path / "fp16.engine", fp16=True)))
    assert calls["flags"] == [trt.BuilderFlag.FP16] and calls["network_flags"] == 0

    fake_tensorrt(11)  # BuilderFlag.FP16 is gone in 11.x
    with pytest.raises(trt_build.ExportError, match="ModelOpt|modelopt"):
        engine_from_onnx(plan_from_onnx(TrtConfig(pfld, tmp_path / "fp16_11.engine", fp16=True)))
    assert not (tmp_path / "fp16_11.engine").exists()


def test_usage_errors_are_one_type(pfld, tmp_path):
    with pytest.raises(UsageError):
        TrtConfig(pfld, tmp_path / "m.engine", min_batch=0)


# --------------------------------------------------------------------------------------------------
# a real build (TensorRT and an NVIDIA GPU)


@pytest.mark.trt
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_real_engine_build(tmp_path, pfld, qdq, faces68_dir, precision):
    import tensorrt as trt

    from runtime.face_crops import crop_faces
    from runtime.backends import open_model

    if trt_build.cuda_gpu_name() is None:
        pytest.skip("needs an NVIDIA GPU visible to the CUDA driver")
    if precision == "fp16" and not hasattr(trt.BuilderFlag, "FP16"):
        pytest.skip(f"TensorRT {trt.__version__} has no FP16 builder flag (11.x: convert with ModelOpt AutoCast)")
    model = qdq if precision == "int8" else pfld
    engine = tmp_path / f"pfld_{precision}.engine"
    config = TrtConfig(
        model,
        engine,
        fp16=precision == "fp16",
        int8=precision == "int8",
        max_batch=8,
        timing_cache=tmp_path / "trt.cache",
    )
    card = engine_from_onnx(plan_from_onnx(config))
    assert engine.stat().st_size > 0 and (tmp_path / "trt.cache").stat().st_size > 0
    assert isinstance(read_card(engine), Card) and card.precision == precision

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    loaded = runtime.deserialize_cuda_engine(engine.read_bytes())
    assert loaded is not None
    shapes = [tuple(shape) for shape in loaded.get_tensor_profile_shape("input", 0)]
    assert shapes == [(1, *SHAPE), (4, *SHAPE), (8, *SHAPE)]

    torch = pytest.importorskip("torch")
    crops = crop_faces(read_pts_folder(faces68_dir)[:4], card)
    reference = open_model(model).run(crops.inputs)
    context = loaded.create_execution_context()
    inputs = torch.from_numpy(crops.inputs).cuda()
    outputs = torch.empty(reference.shape, dtype=torch.float32, device="cuda")
    context.set_input_shape("input", tuple(inputs.shape))
    context.set_tensor_address("input", inputs.data_ptr())
    output_name = next(
        loaded.get_tensor_name(i)
        for i in range(loaded.num_io_tensors)
        if loaded.get_tensor_mode(loaded.get_tensor_name(i)) == trt.TensorIOMode.OUTPUT
    )
    context.set_tensor_address(output_name, outputs.data_ptr())
    stream = torch.cuda.current_stream()
    assert context.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    difference = float(np.max(np.abs(outputs.cpu().numpy() - reference)))
    print(f"\nTensorRT {trt.__version__} {precision} vs ONNX Runtime on 4 faces: max abs {difference:.2e}")
    assert difference < {"fp32": 1e-3, "fp16": 1e-2, "int8": 0.1}[precision]


def test_onnx_runtime_u8s8_file_is_built_from_its_lossless_s8s8_form(tmp_path, pfld, calib, no_tensorrt, capsys):
    """export.ort's default (unsigned activations) is re-encoded to TensorRT's signed form, same scales."""
    from export.encodings import u8s8_from_s8s8

    unsigned = tmp_path / "pfld_u8s8.onnx"
    assert ort_cli.main(["--int8", str(pfld), "--calib", str(calib), "-o", str(unsigned)]) == 0
    engine = tmp_path / "pfld_u8s8.engine"
    plan = plan_from_onnx(TrtConfig(unsigned, engine, int8=True))
    assert plan.reencode and plan.onnx == tmp_path / "pfld_u8s8.qdq.onnx"
    assert trt_cli.main([str(unsigned), "-o", str(engine), "--int8"]) == 1  # no TensorRT here: Q/DQ + script only
    signed = onnx.load(str(plan.onnx))
    assert check_trt_ready(signed) == []
    assert u8s8_from_s8s8(signed).graph == onnx.load(str(unsigned)).graph  # lossless both ways
    assert read_card(plan.onnx).extra["quantization"]["encoding"] == "s8s8"


def test_max_nme_drop_reaches_the_quantizer_and_needs_calibration(tmp_path, pfld, calib, qdq, no_tensorrt, capsys):
    assert trt_cli.main([str(qdq), "-o", str(tmp_path / "a.engine"), "--int8", "--max-nme-drop", "1"]) == 2
    assert "--max-nme-drop chooses the float layers while quantizing with --calib" in one_error_line(capsys.readouterr())
    engine = tmp_path / "b.engine"
    # A budget the all-INT8 model meets: the search measures and keeps everything INT8.
    assert trt_cli.main([str(pfld), "-o", str(engine), "--int8", "--calib", str(calib), "--max-nme-drop", "100"]) == 1
    mixed = read_card(tmp_path / "b.qdq.onnx").extra["quantization"]["mixed_precision"]
    assert mixed["budget"] == 100 and mixed["kept_float"] == [] and mixed["error"] == mixed["error_all_int8"] > 0
