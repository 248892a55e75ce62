"""The benchmark: real PFLD rows on ONNX Runtime and OpenVINO, failures as rows, fair interleaving."""
from __future__ import annotations

import json
import shutil
from typing import ClassVar

import pytest

from runtime import bench
from runtime.backends.registry import available_backends
from runtime.bench import (
    ArtifactSpec,
    BenchConfig,
    artifact_bytes,
    benchmark_artifacts,
    machine_description,
    main,
)
from runtime.card import sidecar_path
from runtime.errors import UsageError

ENGINES = [name for name in ("onnxruntime", "openvino") if name in available_backends()]
FAST = ["--runs", "12", "--warmup", "2", "--rounds", "3", "--batch", "4"]


@pytest.fixture(scope="module")
def corrupt_artifact(pfld_artifact, tmp_path_factory):
    """An .onnx with a valid card beside it but truncated bytes: loading fails inside the engine."""
    path = tmp_path_factory.mktemp("corrupt") / "corrupt.onnx"
    path.write_bytes(pfld_artifact.read_bytes()[:4096])
    shutil.copy(sidecar_path(pfld_artifact), sidecar_path(path))
    return path


def test_pfld_rows_on_every_engine_with_machine_in_the_json(pfld_artifact, tmp_path, capsys):
    output = tmp_path / "bench.json"
    artifacts = [f"{pfld_artifact}@{engine}" for engine in ENGINES]
    assert main([*artifacts, "--threads", "1", *FAST, "--json", str(output)]) == 0
    document = json.loads(output.read_text())
    machine = document["machine"]
    assert machine["cpu"] and machine["logical_cpus"] >= 1 and "numpy" in machine["libraries"]
    assert all(engine in machine["libraries"] for engine in ENGINES)
    assert document["config"]["threads"] == 1 and document["config"]["runs"] == 12
    rows = document["rows"]
    assert [row["backend"] for row in rows] == ENGINES
    for row in rows:
        assert row["status"] == "ok", row["reason"]
        assert row["precision"] == "fp32" and row["runs"] == 12 and row["latency_batch"] == 1
        latency = row["latency_ms"]
        assert 0 < latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
        assert len(latency["round_medians"]) == 3
        assert row["throughput_batch"] == 4 and row["throughput_ips"] > 0
        assert row["file_bytes"] == pfld_artifact.stat().st_size
        assert row["load_s"] > 0
        # Measured in the artifact's own process: a whole Python process, of which the model is a part.
        assert row["isolated"] and row["peak_rss_mb"] > row["peak_rss_delta_mb"] > 0
        assert row["peak_rss_delta_mb"] >= row["load_rss_delta_mb"] >= 0
        assert row["peak_rss_mb"] < 1000
    printed = capsys.readouterr().out
    assert "machine:" in printed and "| p50 ms |" in printed


def test_a_corrupt_artifact_is_a_failed_row_and_the_good_one_still_reports(pfld_artifact, corrupt_artifact, tmp_path):
    output = tmp_path / "bench.json"
    assert main([str(corrupt_artifact), str(pfld_artifact), *FAST, "--json", str(output)]) == 0
    corrupt, good = json.loads(output.read_text())["rows"]
    assert good["status"] == "ok" and good["latency_ms"]["p50"] > 0
    assert corrupt["status"] == "failed" and corrupt["stage"] == "load"
    assert "not a readable ONNX model" in corrupt["reason"] and corrupt["latency_ms"] is None
    # A path that names no file is a typo, said up front in one line (tests/test_bad_inputs.py), not a row.


def test_exit_status_is_1_only_when_every_artifact_fails(corrupt_artifact, capsys):
    assert main([str(corrupt_artifact), "--runs", "2", "--warmup", "0"]) == 1
    assert "failed" in capsys.readouterr().out


def test_settings_are_checked_before_any_work(pfld_artifact, capsys):
    assert main([str(pfld_artifact), "--threads", "0"]) == 2
    assert "--threads 0" in capsys.readouterr().err
    assert main([str(pfld_artifact), "--backend", "ort"]) == 2
    assert "Did you mean 'onnxruntime'?" in capsys.readouterr().err
    with pytest.raises(UsageError, match="no artifacts"):
        BenchConfig(())


def test_artifact_specs_and_sizes(tmp_path):
    assert ArtifactSpec.parse("a/model.onnx@openvino") == ArtifactSpec("a/model.onnx", "openvino")
    assert ArtifactSpec.parse("me@home/model.onnx", "onnxruntime") == ArtifactSpec("me@home/model.onnx", "onnxruntime")
    assert ArtifactSpec.parse("model.onnx@openvino").label == "model.onnx@openvino"
    xml, weights = tmp_path / "model.xml", tmp_path / "model.bin"
    xml.write_bytes(b"x" * 10)
    weights.write_bytes(b"w" * 90)
    assert artifact_bytes(xml) == 100 and artifact_bytes(tmp_path / "none.onnx") is None


def test_machine_description_names_cpu_cores_and_libraries():
    machine = machine_description()
    assert machine["cpu"] and machine["usable_cpus"] >= 1 and machine["libraries"]["python"]
    assert isinstance(machine["isa"], list)


# ---------------------------------------------------------------- scheduling, with a fake session
class _FakeSession:
    """Stands in for an artifact's session in this process: records the order of timed calls."""

    calls: ClassVar[list[tuple[str, str, int]]] = []

    def __init__(self, spec, device, threads, seed):
        self.name = spec.path
        if "broken" in self.name:
            raise UsageError("cannot load")
        self.fixed = 1 if "fixed" in self.name else None

    def describe(self):
        return {"backend": "fake", "precision": "fp32", "format": "onnx", "input": "?x3x8x8",
                "fixed_batch": self.fixed, "load_s": 0.01}  # fmt: skip

    def warm(self, batch, count):
        pass

    def time(self, batch, count):
        if "flaky" in self.name and len([c for c in self.calls if c[0] == self.name]) >= 2:
            raise RuntimeError("engine fell over")
        self.calls.append((self.name, "time", batch))
        return [0.001 * batch] * count

    def close(self):
        return {"peak_rss_mb": 1.0, "peak_rss_delta_mb": 0.5, "load_rss_delta_mb": 0.1}


@pytest.fixture
def fake_session(monkeypatch):
    _FakeSession.calls = []
    monkeypatch.setattr(bench, "_Session", _FakeSession)
    return _FakeSession


def test_rounds_interleave_the_artifacts_and_rotate_who_goes_first(fake_session):
    config = BenchConfig((ArtifactSpec("a"), ArtifactSpec("b")), runs=6, rounds=3, batch=2, isolate=False)
    rows = benchmark_artifacts(config, progress=False)
    batch_one = [name for name, _, batch in fake_session.calls if batch == 1]
    assert batch_one == ["a", "b", "b", "a", "a", "b"]  # A B, B A, A B
    assert all(row["status"] == "ok" and row["runs"] == 6 for row in rows)
    assert rows[0]["throughput_ips"] == pytest.approx(2 / 0.002)
    assert rows[0]["peak_rss_mb"] is None and "not isolated" in rows[0]["note"]


def test_fixed_batch_and_failures_while_timing_are_row_notes(fake_session):
    specs = (ArtifactSpec("fixed"), ArtifactSpec("broken"), ArtifactSpec("flaky"))
    rows = benchmark_artifacts(BenchConfig(specs, runs=6, rounds=3, batch=8, isolate=False), progress=False)
    fixed, broken, flaky = rows
    assert fixed["status"] == "ok" and fixed["throughput_batch"] == 1 and "fixed batch 1" in fixed["note"]
    assert broken["status"] == "failed" and broken["stage"] == "load" and broken["reason"] == "cannot load"
    assert flaky["status"] == "failed" and flaky["stage"] == "timing"
    assert flaky["reason"] == "RuntimeError: engine fell over"
