"""Backends: parity over the registry, input validation, registry errors, and a torch-free runtime.

Parity cases are generated from the registry's capability records: every backend x every artifact
kind it reads that this suite can make (ONNX, OpenVINO IR, TensorRT engine, torch checkpoint) x two
real models: the third-party PFLD-GhostOne (coords) imported with its card, and a seeded tiny heatmap
net saved as a checkpoint and exported. References are independent of the backend under test: the
original third-party ONNX file in a plain ONNX Runtime session for PFLD, torch eager for the tiny net.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from conftest import write_checkpoint
from runtime.zoo import PFLD_IMPORT_FLAGS
from runtime.annotations import read_pts_folder
from runtime.backends import (
    BACKENDS,
    Backend,
    BackendError,
    Capabilities,
    InputSpec,
    available_backends,
    backends_for_suffix,
    get_backend,
    load_backend,
    registry,
)
from runtime.card import CardError, read_card, write_card
from runtime.crop import landmark_box
from runtime.errors import EdgemarkError, UsageError
from runtime.landmarker import crop_inputs

REPO = Path(__file__).resolve().parents[1]
# Elementwise budgets by the card's precision (INT8 is judged by NME change elsewhere, not here).
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}
PFLD_FLAGS = list(PFLD_IMPORT_FLAGS)  # the card flags of the data README, kept once in runtime.zoo
TINY_SIZE = 64
PARITY_FACES = 4
# Suffixes this suite can make an artifact for; ".plan" and ".pth" are the same formats again.
MADE_SUFFIXES = (".onnx", ".xml", ".engine", ".pt")


def import_pfld(source: Path, output: Path, keep_batch: bool = False) -> Path:
    """``python -m export.onnx --import`` through its library function."""
    from export.onnx import build_parser, config_from_args
    from export.onnx_export import onnx_from_third_party

    flags = ["--import", str(source), "-o", str(output), *PFLD_FLAGS, *(["--keep-batch"] if keep_batch else [])]
    config = config_from_args(build_parser().parse_args(flags))
    onnx_from_third_party(config.model, config.output, config.card, config.dynamic_batch)
    return output


def write_tiny_checkpoint(path: Path) -> Path:
    """A seeded tiny heatmap net with non-trivial BatchNorm statistics, saved like train/engine.py does."""
    pytest.importorskip("torch", reason="the tiny heatmap checkpoint needs torch")
    write_checkpoint(path, "tiny_heatmap", TINY_SIZE)
    return path


def ir_from_onnx(onnx_path: Path, xml_path: Path) -> Path:
    """OpenVINO IR of an ONNX artifact, with its card (format openvino) beside it."""
    import openvino

    openvino.save_model(openvino.convert_model(str(onnx_path)), str(xml_path), compress_to_fp16=False)
    write_card(xml_path, read_card(onnx_path).with_changes(format="openvino"))
    return xml_path


def engine_from_onnx(onnx_path: Path, engine_path: Path) -> Path:
    """A TensorRT engine (strongly typed, batch 1-8) of an ONNX artifact, with its card beside it."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(0 if strongly_typed is None else 1 << int(strongly_typed))
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(onnx_path.read_bytes()), parser.get_error(0)
    card = read_card(onnx_path)
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    shape = (3, card.input_size, card.input_size)
    profile.set_shape(card.input_name, (1, *shape), (PARITY_FACES, *shape), (8, *shape))
    config.add_optimization_profile(profile)
    engine_path.write_bytes(bytes(builder.build_serialized_network(network, config)))
    write_card(engine_path, card.with_changes(format="tensorrt"))
    return engine_path


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("backends")


@pytest.fixture(scope="module")
def tiny_checkpoint(work) -> Path:
    return write_tiny_checkpoint(work / "tiny.pt")


@pytest.fixture(scope="module")
def tiny_onnx(work, tiny_checkpoint) -> Path:
    from export.onnx_export import onnx_from_checkpoint

    output = work / "tiny.onnx"
    onnx_from_checkpoint(tiny_checkpoint, output)
    return output


@pytest.fixture(scope="module")
def artifacts(request, work):
    """``make(model, suffix)``: the artifact of ``model`` in the format of ``suffix``, made once."""
    made: dict[tuple[str, str], Path] = {}

    def make(model: str, suffix: str) -> Path:
        if (model, suffix) not in made:
            onnx_path = request.getfixturevalue("pfld" if model == "pfld" else "tiny_onnx")
            if suffix == ".onnx":
                made[model, suffix] = onnx_path
            elif suffix == ".xml":
                made[model, suffix] = ir_from_onnx(onnx_path, work / f"{model}.xml")
            elif suffix == ".engine":
                made[model, suffix] = engine_from_onnx(onnx_path, work / f"{model}.engine")
            elif suffix == ".pt":
                made[model, suffix] = request.getfixturevalue("tiny_checkpoint")
        return made[model, suffix]

    return make


@pytest.fixture(scope="module")
def face_inputs(faces68_dir, request):
    """``inputs(card)``: (4, 3, S, S) real face crops cut and normalised per the card."""
    import cv2

    samples = read_pts_folder(faces68_dir)[:PARITY_FACES]

    def inputs(card) -> np.ndarray:
        crops = [crop_inputs(cv2.imread(str(s.image)), landmark_box(s.points), card, "landmarks")[0] for s in samples]
        return np.concatenate(crops)

    return inputs


@pytest.fixture(scope="module")
def references(request, pfld_onnx, face_inputs):
    """``reference(model)``: backend-independent outputs on the real face crops."""
    cache: dict[str, np.ndarray] = {}

    def reference(model: str) -> np.ndarray:
        if model in cache:
            return cache[model]
        if model == "pfld":
            import onnxruntime

            # The original third-party file (batch fixed at 1), not the imported artifact.
            session = onnxruntime.InferenceSession(str(pfld_onnx), providers=["CPUExecutionProvider"])
            inputs = face_inputs(read_card(request.getfixturevalue("pfld")))
            name = session.get_inputs()[0].name
            cache[model] = np.concatenate([session.run(None, {name: x[None]})[0] for x in inputs])
        else:
            import torch

            from train.checkpoint import model_from_checkpoint

            net, _ = model_from_checkpoint(request.getfixturevalue("tiny_checkpoint"))
            inputs = face_inputs(read_card(request.getfixturevalue("tiny_onnx")))
            with torch.no_grad():
                cache[model] = net(torch.from_numpy(inputs)).numpy()
        return cache[model]

    return reference


def parity_cases():
    cases = []
    for name, entry in BACKENDS.items():
        for suffix in entry.capabilities.suffixes:
            if suffix not in MADE_SUFFIXES:
                continue
            for model in ("pfld", "tiny"):
                if model == "pfld" and suffix == ".pt":
                    continue  # a third-party ONNX model has no checkpoint
                marks = [pytest.mark.trt] if name == "tensorrt" else []
                cases.append(pytest.param(name, model, suffix, id=f"{name}-{model}{suffix}", marks=marks))
    return cases


@pytest.mark.parametrize("backend_name, model, suffix", parity_cases())
def test_backend_parity(backend_name, model, suffix, artifacts, references, face_inputs):
    entry = get_backend(backend_name)
    if not entry.installed:
        pytest.skip(entry.missing_message())
    artifact = artifacts(model, suffix)
    device = entry.capabilities.devices[0]
    with load_backend(artifact, backend_name, device=device, threads=1) as backend:
        inputs = face_inputs(backend.card)
        outputs = backend.infer({backend.input_spec.name: inputs})
        assert backend.last_latency_s is not None and backend.last_latency_s > 0
    output = outputs.get(backend.card.output_name, next(iter(outputs.values())))
    expected = references(model)
    assert output.shape == expected.shape
    difference = float(np.max(np.abs(output.astype(np.float64) - expected)))
    budget = TOLERANCE[backend.card.precision]
    assert difference <= budget, f"{backend_name} on {artifact.name}: max abs {difference:.2e} > {budget:.0e}"


def test_registry_capabilities_are_complete_and_frozen():
    assert {"onnxruntime", "openvino", "tensorrt", "torch"} <= set(BACKENDS)
    for name, entry in BACKENDS.items():
        assert entry.name == name and isinstance(entry.capabilities, Capabilities)
        assert entry.capabilities.devices and entry.capabilities.precisions and entry.capabilities.suffixes
        with pytest.raises(AttributeError):
            entry.capabilities.devices = ("cpu",)  # type: ignore[misc]
        if entry.installed and name != "tensorrt":
            backend_class = entry.load_class()
            assert issubclass(backend_class, Backend) and backend_class.name == name
            assert set(backend_class.available_devices()) <= set(entry.capabilities.devices)
    assert backends_for_suffix(".onnx")[:2] == ["onnxruntime", "openvino"]  # ONNX Runtime first by suffix
    assert backends_for_suffix(".engine") == ["tensorrt"]
    assert "onnxruntime" in available_backends()
    assert get_backend("tensorrt").capabilities.needs_gpu


def test_suffix_picks_the_backend(pfld, artifacts):
    with load_backend(pfld) as backend:
        assert backend.name == "onnxruntime"
        assert backend.input_spec == InputSpec("input", (None, 3, 112, 112), "float32")
        assert backend.card == read_card(pfld)
    if get_backend("openvino").installed:
        with load_backend(artifacts("pfld", ".xml")) as backend:
            assert backend.name == "openvino" and backend.input_spec.shape == (None, 3, 112, 112)


def _one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text and isinstance(error.value, EdgemarkError)
    return text


def test_infer_checks_inputs_against_the_spec(pfld):
    backend = load_backend(pfld, threads=1)
    good = np.zeros((2, 3, 112, 112), np.float32)
    assert backend.last_latency_s is None
    assert backend.infer({"input": good})["output"].shape == (2, 196)
    first_latency = backend.last_latency_s
    assert first_latency > 0
    with pytest.raises(BackendError) as error:
        backend.infer({"image": good})
    assert "['input']" in _one_line(error)
    with pytest.raises(BackendError) as error:
        backend.infer({"input": good.astype(np.float64)})
    assert "float64" in _one_line(error) and "float32" in str(error.value)
    with pytest.raises(BackendError) as error:
        backend.infer({"input": np.zeros((2, 3, 64, 64), np.float32)})
    assert "2x3x64x64" in _one_line(error) and "?x3x112x112" in str(error.value)
    with pytest.raises(BackendError) as error:
        backend.infer({"input": np.zeros((3, 112, 112), np.float32)})
    _one_line(error)
    with pytest.raises(BackendError) as error:
        backend.infer({"input": np.zeros((0, 3, 112, 112), np.float32)})
    _one_line(error)
    with pytest.raises(BackendError) as error:
        backend.infer({"input": good.tolist()})
    _one_line(error)
    with pytest.raises(BackendError):
        backend.infer(good)
    assert backend.last_latency_s == first_latency  # rejected feeds are not timed
    # A non-contiguous view is accepted (the backend gets a contiguous copy).
    strided = np.zeros((2, 112, 112, 3), np.float32).transpose(0, 3, 1, 2)
    assert backend.infer({"input": strided})["output"].shape == (2, 196)
    with backend:
        pass
    with pytest.raises(BackendError) as error:
        backend.infer({"input": good})
    assert "closed" in _one_line(error)
    backend.close()  # twice is fine


def test_fixed_batch_spec(work, pfld_onnx):
    fixed = import_pfld(pfld_onnx, work / "pfld_batch1.onnx", keep_batch=True)
    with load_backend(fixed) as backend:
        assert backend.input_spec.shape == (1, 3, 112, 112) and backend.input_spec.fixed_batch == 1
        with pytest.raises(BackendError) as error:
            backend.infer({"input": np.zeros((2, 3, 112, 112), np.float32)})
        assert "1x3x112x112" in _one_line(error)


def test_unknown_backend_and_device_say_what_is_valid(pfld):
    with pytest.raises(UsageError) as error:
        load_backend(pfld, "ort2")
    assert _one_line(error) == (
        "Unknown backend 'ort2'. Valid: onnxruntime, openvino, tensorrt, torch. Did you mean 'onnxruntime'?"
    )
    with pytest.raises(UsageError) as error:
        load_backend(pfld, "openvno")
    assert "Did you mean 'openvino'?" in _one_line(error)
    with pytest.raises(UsageError) as error:
        load_backend(pfld, "onnxruntime", device="cdua")
    assert "Valid: cpu, cuda, tensorrt" in _one_line(error) and "Did you mean 'cuda'?" in str(error.value)
    with pytest.raises(UsageError) as error:
        load_backend(pfld, "tensorrt")
    assert "reads .engine, .plan" in _one_line(error) and "onnxruntime, openvino" in str(error.value)
    with pytest.raises(UsageError) as error:
        load_backend(pfld.with_suffix(".tflite"))
    assert "no backend reads '.tflite'" in _one_line(error)
    with pytest.raises(BackendError) as error:
        load_backend(pfld.with_name("missing.onnx"))
    assert "not found" in _one_line(error)
    with pytest.raises(BackendError) as error:
        load_backend(pfld, threads=0)
    _one_line(error)


def test_device_not_present_here(pfld):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(BackendError) as error:
        load_backend(pfld, "onnxruntime", device="cuda")
    assert "CUDAExecutionProvider" in _one_line(error) and "use device cpu" in str(error.value)


def test_missing_package_fails_early_with_the_fix(pfld, monkeypatch):
    real = registry._importable
    monkeypatch.setattr(registry, "_importable", lambda package: package != "openvino" and real(package))
    with pytest.raises(BackendError) as error:
        load_backend(pfld, "openvino")
    here = ", ".join(available_backends())
    assert _one_line(error) == (
        f"OpenVINO backend needs the `openvino` package (pip install edgemark[openvino]); available here: {here}"
    )
    monkeypatch.setattr(registry, "_importable", lambda package: package != "tensorrt" and real(package))
    with pytest.raises(BackendError) as error:
        load_backend("nowhere/model.engine")  # by suffix, before looking for the file
    assert _one_line(error).startswith(
        "TensorRT backend needs the `tensorrt` package and an NVIDIA GPU (pip install edgemark[trt]); available here: "
    )


def test_broken_artifact_is_one_line(work, pfld):
    broken = work / "broken.onnx"
    broken.write_bytes(b"not a model")
    write_card(broken, read_card(pfld))
    # The card reader parses the model first (its embedded card is the authority): one line, before any engine.
    for backend in ("onnxruntime", "openvino") if get_backend("openvino").installed else ("onnxruntime",):
        with pytest.raises(CardError) as error:
            load_backend(broken, backend)
        assert "not a readable ONNX model" in _one_line(error)


@pytest.mark.trt
def test_tensorrt_backend_runs_an_engine_and_synchronises(artifacts, references, face_inputs):
    engine = artifacts("pfld", ".engine")
    with load_backend(engine) as backend:
        assert backend.name == "tensorrt" and backend.input_spec.shape[1:] == (3, 112, 112)
        inputs = face_inputs(backend.card)
        for batch in (1, len(inputs)):  # the dynamic shape is set per call
            outputs = backend.infer({backend.input_spec.name: inputs[:batch]})
            output = next(iter(outputs.values()))
            assert np.max(np.abs(output - references("pfld")[:batch])) <= TOLERANCE["fp32"]


# The runtime must import and run with numpy, OpenCV and one engine only (DESIGN.md).
TORCH_FREE = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = {"torch", "openvino", "tensorrt", "train", "export"}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ImportError(f"blocked import of {name}")
            return None

    sys.meta_path.insert(0, Block())

    import numpy as np
    import runtime
    import runtime.backends
    import runtime.landmarker
    import runtime.zoo
    from runtime.backends import BackendError, available_backends, load_backend

    assert available_backends() == ["onnxruntime"], available_backends()
    with load_backend(sys.argv[1]) as backend:
        frame = np.zeros((200, 160, 3), np.uint8)
        landmarks = runtime.landmarker.Landmarker(backend).predict(frame, [[30, 40, 130, 150]])
        assert landmarks.points.shape == (1, 98, 2), landmarks.points.shape
    try:
        load_backend(sys.argv[1], "openvino")
    except BackendError as error:
        print(error)
    loaded = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
    assert not loaded, loaded
    print("torch-free ok")
    """
)


def test_runtime_runs_without_torch_openvino_tensorrt(pfld):
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "-c", TORCH_FREE, str(pfld)],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "torch-free ok" in result.stdout
    assert "OpenVINO backend needs the `openvino` package" in result.stdout
    assert "available here: onnxruntime" in result.stdout


def test_importing_runtime_backends_imports_no_engine():
    # train.plugin (the torch backend's registry entry, no torch) is the one module of train it reads.
    code = (
        "import sys, runtime.backends, runtime.landmarker, runtime.zoo; "
        "print(sorted(m for m in sys.modules if m.partition('.')[0] in "
        "('torch', 'openvino', 'tensorrt', 'onnxruntime', 'train', 'export') and m not in ('train', 'train.plugin')))"
    )
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=environment, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_torch_backend_builds_the_card_from_the_checkpoint(tiny_checkpoint):
    if importlib.util.find_spec("torch") is None:
        pytest.skip("needs torch")
    from train.checkpoint import file_sha256

    with load_backend(tiny_checkpoint) as backend:
        card = backend.card
        assert backend.name == "torch" and card.format == "torch" and card.output_kind == "heatmap"
        assert (card.layout, card.input_size, card.heatmap_stride) == ("ibug68", TINY_SIZE, 4)
        assert card.source_sha256 == file_sha256(tiny_checkpoint)
        outputs = backend.infer({"input": np.zeros((3, 3, TINY_SIZE, TINY_SIZE), np.float32)})
        assert outputs["heatmaps"].shape == (3, 68, TINY_SIZE // 4, TINY_SIZE // 4)


# --------------------------------------------------------------------------------------------------
# TensorRT backend logic against a stand-in for the TensorRT 10/11 runtime API (runs everywhere;
# the real engine is covered by the `trt` tests above on a machine that has TensorRT).


class _FakeMemory:
    """Host arrays standing in for device buffers; addresses index a shared table."""

    table: ClassVar[dict[int, np.ndarray]] = {}

    def __init__(self):
        self.stream_handle, self.synchronised, self.closed = 7, 0, False

    def _keep(self, array: np.ndarray) -> int:
        address = len(self.table) + 1
        self.table[address] = array
        return address

    def upload(self, name, array):
        self.current = getattr(self, "current", {})
        self.current[name] = array.copy()
        return self._keep(self.current[name])

    def allocate(self, name, shape, dtype):
        self.current[name] = np.empty(shape, dtype)
        return self._keep(self.current[name])

    def download(self, name):
        return self.current[name]

    def synchronize(self):
        self.synchronised += 1

    def close(self):
        self.closed = True


def _fake_tensorrt():
    import types

    trt = types.ModuleType("tensorrt")
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    float_type = types.SimpleNamespace(name="FLOAT")

    class Context:
        def __init__(self):
            self.addresses, self.shape = {}, None

        def set_input_shape(self, name, shape):
            self.shape = shape
            return 1 <= shape[0] <= 4  # the optimisation profile: batch 1-4

        def get_tensor_shape(self, name):
            return (self.shape[0], 6)

        def set_tensor_address(self, name, address):
            self.addresses[name] = address

        def execute_async_v3(self, stream_handle):
            assert stream_handle == 7
            source = _FakeMemory.table[self.addresses["images"]]
            _FakeMemory.table[self.addresses["coords"]][:] = source.reshape(len(source), -1)[:, :6] * 2
            return True

    class Engine:
        num_io_tensors = 2

        def get_tensor_name(self, index):
            return ["images", "coords"][index]

        def get_tensor_mode(self, name):
            return "INPUT" if name == "images" else "OUTPUT"

        def get_tensor_shape(self, name):
            return (-1, 3, 8, 8)

        def get_tensor_dtype(self, name):
            return float_type

        def create_execution_context(self):
            return Context()

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return Engine() if data == b"engine" else None

    trt.Runtime = Runtime
    return trt


def test_tensorrt_backend_logic_on_a_stand_in_runtime(tmp_path, monkeypatch, pfld):
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_tensorrt())
    monkeypatch.delitem(sys.modules, "runtime.backends.tensorrt_backend", raising=False)
    from runtime.backends import tensorrt_backend

    monkeypatch.setattr(tensorrt_backend, "device_memory", _FakeMemory)
    card = read_card(pfld).with_changes(input_size=8, format="tensorrt")
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"engine")
    backend = tensorrt_backend.TensorRtBackend(engine, card, device="cuda")
    assert backend.input_spec == InputSpec("images", (None, 3, 8, 8), "float32")
    inputs = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    outputs = backend.infer({"images": inputs})
    np.testing.assert_array_equal(outputs["coords"], inputs.reshape(3, -1)[:, :6] * 2)
    assert backend._memory.synchronised == 1 and backend.last_latency_s > 0
    with pytest.raises(BackendError) as error:
        backend.infer({"images": np.zeros((5, 3, 8, 8), np.float32)})
    assert "optimisation profile" in _one_line(error)
    backend.close()
    assert backend._memory.closed
    engine.write_bytes(b"stale")
    with pytest.raises(BackendError) as error:
        tensorrt_backend.TensorRtBackend(engine, card, device="cuda")
    assert "cannot deserialize" in _one_line(error)
