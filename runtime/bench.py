"""``python -m runtime.bench``: load time, latency, throughput, size and peak memory of artifacts, interleaved.

Examples:
  python -m runtime.bench pfld.onnx pfld_int8.onnx pfld.xml --json bench.json
  python -m runtime.bench pfld.onnx pfld.onnx@openvino --threads 2 --runs 500   # the same file on two engines
  python -m runtime.bench model.xml --backend openvino --batch 16 --warmup 50

An artifact is ``PATH`` (backend chosen by its suffix, or by --backend) or ``PATH@BACKEND``.

How each figure is measured (what the numbers mean):

- **Isolation.** Each artifact lives in its own fresh process (``multiprocessing`` spawn): it imports
  its engine, loads the artifact and runs it there, so one engine's allocator, thread pools or
  caches never colour another's figures, and the peak memory is that artifact's alone.
- **Load time**: wall time of :func:`runtime.backends.load_backend` in that process (read the card,
  parse and compile the model), the engine package already imported.
- **Latency**: batch 1 (or the artifact's fixed batch), after ``--warmup`` untimed calls, with
  ``--threads`` intra-op threads, timed by the backend's own ``infer`` timing
  (:attr:`Backend.last_latency_s`, the one place time is taken). p50/p90/p99 over every timed call.
- **Interleaving.** The timed calls are split into ``--rounds`` blocks; each round runs one block of
  every artifact in turn (A B C, then B C A, ...), so drift in clock speed, a neighbour's load or
  thermal state falls on all artifacts alike. Only one process runs at a time; the others wait.
  Each block starts with one untimed call, because the previous block ran in another process and
  left the caches cold. ``round_medians_ms`` shows the spread between rounds.
- **Throughput**: images per second at batch ``--batch``: batch / median time of a batch call, over
  as many images as the latency phase timed (at least one call per round). An artifact whose batch
  is fixed reports its fixed batch and says so in ``note``.
- **File size**: the artifact's bytes; an OpenVINO IR counts its ``.xml`` and ``.bin``.
- **Peak memory**: the high-water mark of the artifact's process's resident memory (Linux: ``VmHWM``
  of ``/proc/self/status``; not ``ru_maxrss``, which the kernel carries over from the parent across
  the spawn's ``exec``; other systems: ``ru_maxrss``). ``peak_rss_mb`` is the whole process (Python, numpy, the
  engine, the model); ``peak_rss_delta_mb`` is the rise above the same process just before loading
  (Python and the engine package imported), i.e. what loading and running this artifact cost
  (batch-``--batch`` activations included); ``load_rss_delta_mb`` is the rise from loading alone.
  With ``--no-isolate`` everything runs in this process and memory is not reported.

An artifact that cannot be loaded or run becomes a row with ``status: failed`` and the ``reason``;
the others are still measured. The exit status is 1 only when every artifact failed.

Size: one module on purpose (~750 lines): the worker process that times an artifact and the parent
that interleaves the workers share one protocol and one result row, which change together.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.errors import EdgemarkError, UsageError, cli_main, unknown_name
from runtime.machine import describe_machine, machine_description, read_text  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)

# Seconds the parent waits for one reply of an artifact's process (loading a big model included).
DEFAULT_TIMEOUT_S = 600.0


class BenchError(EdgemarkError):
    """A benchmark that could not produce any row (e.g. the JSON could not be written)."""


# -------------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class ArtifactSpec:
    """One thing to measure: an artifact file and, optionally, the backend to run it on.

    Attributes:
        path: the artifact (``.onnx``, ``.xml``, ``.engine``, ``.pt``, ...).
        backend: registry name, or ``None`` to choose by suffix.
    """

    path: str
    backend: str | None = None

    @classmethod
    def parse(cls, text: str, backend: str | None = None) -> ArtifactSpec:
        """``PATH`` or ``PATH@BACKEND``; ``backend`` applies when the text names none.

        The part after the last ``@`` counts as a backend only when it is a registered name, so a
        path that merely contains ``@`` stays a path.
        """
        from runtime.backends.registry import BACKENDS

        path, separator, name = str(text).rpartition("@")
        if separator and name in BACKENDS and path:
            return cls(path, name)
        return cls(str(text), backend)

    @classmethod
    def parse_existing(cls, text: str, backend: str | None = None) -> ArtifactSpec:
        """:meth:`parse` for a command line: a file that does not exist, or a backend name that is not
        one, is a typo said in one line up front rather than a failed row after minutes of work."""
        from runtime.backends.registry import BACKENDS

        spec = cls.parse(text, backend)
        if not Path(spec.path).exists():
            path, separator, name = str(text).rpartition("@")
            if separator and path and Path(path).exists():
                raise unknown_name("backend", name, list(BACKENDS))
            raise UsageError(f"{text}: no such artifact file; pass PATH or PATH@BACKEND of an existing artifact")
        return spec

    @property
    def label(self) -> str:
        """``pfld.onnx`` or ``pfld.onnx@openvino``: short and unique enough for tables."""
        name = Path(self.path).name
        return f"{name}@{self.backend}" if self.backend else name


@dataclass(frozen=True)
class BenchConfig:
    """What ``python -m runtime.bench`` measures (see :func:`build_parser` for each flag).

    Attributes:
        artifacts: what to measure.
        device: backend device (``cpu``, ``cuda``, ``gpu``).
        threads: intra-op threads of every engine (fixed so engines compare fairly).
        batch: batch size of the throughput phase.
        warmup: untimed calls before timing (at batch 1 and at ``batch`` each).
        runs: timed batch-1 calls per artifact.
        rounds: blocks the timed calls are split into, interleaved across artifacts.
        isolate: one fresh process per artifact (needed for peak memory).
        timeout_s: longest wait for one step of an artifact's process before it counts as hung.
        seed: seeds the random input.
    """

    artifacts: tuple[ArtifactSpec, ...]
    device: str = "cpu"
    threads: int = 2
    batch: int = 8
    warmup: int = 20
    runs: int = 200
    rounds: int = 10
    isolate: bool = True
    timeout_s: float = DEFAULT_TIMEOUT_S
    seed: int = 0

    def __post_init__(self):
        from runtime.backends.registry import get_backend

        if not self.artifacts:
            raise UsageError("no artifacts given; pass one or more artifact files (PATH or PATH@BACKEND)")
        for spec in self.artifacts:
            if spec.backend is not None:
                get_backend(spec.backend)  # unknown names fail here, before any work
        problems = []
        if self.threads < 1:
            problems.append(f"--threads {self.threads} (need >= 1)")
        if self.batch < 1:
            problems.append(f"--batch {self.batch} (need >= 1)")
        if self.warmup < 0:
            problems.append(f"--warmup {self.warmup} (need >= 0)")
        if self.runs < 1:
            problems.append(f"--runs {self.runs} (need >= 1)")
        if self.rounds < 1:
            problems.append(f"--rounds {self.rounds} (need >= 1)")
        if not self.timeout_s > 0:
            problems.append(f"timeout {self.timeout_s} s (need > 0)")
        if problems:
            raise UsageError("invalid benchmark settings: " + "; ".join(problems))


# -------------------------------------------------------------------------------------------------
# one artifact, loaded in some process


def artifact_bytes(path: str | Path) -> int | None:
    """Size on disk: the file, plus the ``.bin`` of an OpenVINO ``.xml``; ``None`` when missing."""
    path = Path(path)
    if not path.is_file():
        return None
    size = path.stat().st_size
    if path.suffix.lower() == ".xml" and path.with_suffix(".bin").is_file():
        size += path.with_suffix(".bin").stat().st_size
    return size


def peak_rss_mb() -> float | None:
    """This process's resident-memory high-water mark in MB (``None`` where it cannot be read).

    Linux: ``VmHWM`` of ``/proc/self/status``, which belongs to the process's own address space.
    ``getrusage(RUSAGE_SELF).ru_maxrss`` is not used there: the kernel carries it across ``exec``, so
    a spawned child starts with its parent's peak (a report process holding two engines would make
    every artifact look 300 MB big). Elsewhere ``ru_maxrss`` is the best there is.
    """
    for line in read_text("/proc/self/status").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    try:
        import resource
    except ImportError:  # Windows
        return None
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value / 1024**2 if sys.platform == "darwin" else value / 1024  # bytes on macOS, KiB on Linux


def failure_reason(error: BaseException) -> str:
    """One line for a row's reason: our own errors as they are, anything else with its type."""
    text = str(error).strip()
    first = text.splitlines()[0][:400] if text else ""
    if isinstance(error, EdgemarkError):
        return first or type(error).__name__
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


class _Session:
    """An artifact loaded into a backend, with the calls the benchmark times.

    Lives in the artifact's own process (or in this one with ``isolate=False``).
    """

    def __init__(self, spec: ArtifactSpec, device: str, threads: int, seed: int):
        from runtime.backends.registry import choose_backend, load_backend

        entry = choose_backend(spec.path, spec.backend)
        if entry.installed:
            entry.load_class()  # import the engine first: its import is not this artifact's load time or memory
        self.rss_before_load_mb = peak_rss_mb()
        started = time.perf_counter()
        self.backend = load_backend(spec.path, entry.name, device=device, threads=threads)
        self.load_s = time.perf_counter() - started
        self.rss_after_load_mb = peak_rss_mb()
        self.backend_name = entry.name
        self.rng = np.random.default_rng(seed)
        self.fixed_batch = self.backend.fixed_batch
        self._inputs: dict[int, np.ndarray] = {}

    def describe(self) -> dict[str, Any]:
        card = self.backend.card
        return {
            "backend": self.backend_name,
            "precision": card.precision,
            "format": card.format,
            "layout": card.layout,
            "input": self.backend.input_spec.describe(),
            "fixed_batch": self.fixed_batch,
            "load_s": self.load_s,
        }

    def _feeds(self, batch: int) -> dict[str, np.ndarray]:
        if batch not in self._inputs:
            spec, size = self.backend.input_spec, self.backend.card.input_size
            # (None, 3, 112, 112) -> (batch, 3, 112, 112); other dynamic dims: 3 channels, the card's size
            shape = [batch] + [d if d is not None else (3 if i == 1 else size) for i, d in enumerate(spec.shape)][1:]
            dtype = np.dtype(spec.dtype)
            if dtype.kind == "f":
                values = self.rng.standard_normal(shape).astype(dtype)
            else:
                values = self.rng.integers(0, 256, size=shape).astype(dtype)
            self._inputs[batch] = values
        return {self.backend.input_spec.name: self._inputs[batch]}

    def warm(self, batch: int, count: int) -> None:
        feeds = self._feeds(batch)
        for _ in range(count):
            self.backend.infer(feeds)

    def time(self, batch: int, count: int) -> list[float]:
        """Seconds of ``count`` timed calls at ``batch``, after one untimed call (cold caches)."""
        feeds = self._feeds(batch)
        self.backend.infer(feeds)
        latencies = []
        for _ in range(count):
            self.backend.infer(feeds)
            latencies.append(self.backend.last_latency_s)
        return latencies

    def close(self) -> dict[str, Any]:
        self.backend.close()
        peak = peak_rss_mb()
        before = self.rss_before_load_mb
        after_load = self.rss_after_load_mb
        return {
            "peak_rss_mb": peak,
            "peak_rss_delta_mb": (peak - before) if peak is not None and before is not None else None,
            "load_rss_delta_mb": (after_load - before) if after_load is not None and before is not None else None,
        }


def _worker(connection, spec: ArtifactSpec, device: str, threads: int, seed: int) -> None:
    """Body of an artifact's process: load, then answer ``(method, args)`` requests until ``close``."""
    try:
        session = _Session(spec, device, threads, seed)
        connection.send(("ok", session.describe()))
    except BaseException as error:  # noqa: BLE001 - every failure must reach the parent as a row
        connection.send(("error", failure_reason(error), traceback.format_exc()))
        connection.close()
        return
    while True:
        try:
            method, arguments = connection.recv()
        except EOFError:  # the parent went away
            return
        try:
            connection.send(("ok", getattr(session, method)(*arguments)))
        except BaseException as error:  # noqa: BLE001
            connection.send(("error", failure_reason(error), traceback.format_exc()))
        if method == "close":
            connection.close()
            return


class _Failure(Exception):
    """An artifact's step failed; carries the one-line reason for its row."""


class _Runner:
    """Drives one artifact's session in its own process, or in this one."""

    def __init__(self, spec: ArtifactSpec, config: BenchConfig):
        self.spec = spec
        self.timeout_s = config.timeout_s
        self.process = None
        self.session = None
        if not config.isolate:
            try:
                self.session = _Session(spec, config.device, config.threads, config.seed)
            except Exception as error:  # noqa: BLE001
                logger.debug("%s failed to load", spec.label, exc_info=True)
                raise _Failure(failure_reason(error)) from None
            self.info = self.session.describe()
            return
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(
            target=_worker,
            args=(child, spec, config.device, config.threads, config.seed),
            name=f"bench:{spec.label}",
            daemon=True,
        )
        self.process.start()
        child.close()
        self.info = self._reply("load")

    def call(self, method: str, *arguments):
        if self.session is not None:
            try:
                return getattr(self.session, method)(*arguments)
            except Exception as error:  # noqa: BLE001
                logger.debug("%s failed in %s", self.spec.label, method, exc_info=True)
                raise _Failure(failure_reason(error)) from None
        try:
            self.connection.send((method, arguments))
        except (BrokenPipeError, OSError):
            raise _Failure(self._death("before " + method)) from None
        return self._reply(method)

    def _reply(self, step: str):
        try:
            if not self.connection.poll(self.timeout_s):
                self.kill()
                raise _Failure(f"no answer within {self.timeout_s:g} s while doing '{step}'; the process was stopped")
            answer = self.connection.recv()
        except (EOFError, ConnectionResetError, OSError):
            raise _Failure(self._death(step)) from None
        if answer[0] == "error":
            logger.debug("%s failed in %s:\n%s", self.spec.label, step, answer[2])
            raise _Failure(answer[1])
        return answer[1]

    def _death(self, step: str) -> str:
        self.process.join(5)
        code = self.process.exitcode
        return f"the artifact's process died during '{step}' (exit code {code}); the engine crashed"

    def kill(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.process.kill()
            self.process.join(5)

    def close(self) -> dict[str, Any]:
        try:
            memory = self.call("close")
        finally:
            if self.process is not None:
                self.process.join(10)
                self.kill()
        if self.process is None:  # this process's memory says nothing about the artifact
            return {"peak_rss_mb": None, "peak_rss_delta_mb": None, "load_rss_delta_mb": None}
        return memory


# -------------------------------------------------------------------------------------------------
# the benchmark


def _split(total: int, parts: int) -> list[int]:
    """``total`` calls over ``parts`` blocks as evenly as possible (earlier blocks get the remainder)."""
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def _latency_summary(seconds: list[float], block_sizes: list[int]) -> dict[str, Any]:
    milliseconds = np.asarray(seconds, dtype=np.float64) * 1000
    medians, start = [], 0
    for size in block_sizes:
        if size:
            medians.append(float(np.median(milliseconds[start : start + size])))
        start += size
    p50, p90, p99 = np.percentile(milliseconds, [50, 90, 99])
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": float(milliseconds.mean()),
        "min": float(milliseconds.min()),
        "max": float(milliseconds.max()),
        "round_medians": medians,
    }


def _empty_row(spec: ArtifactSpec, config: BenchConfig) -> dict[str, Any]:
    from runtime.backends.registry import choose_backend

    size = artifact_bytes(spec.path)
    try:
        backend = choose_backend(spec.path, spec.backend).name
    except EdgemarkError:  # reported as the row's reason when loading fails
        backend = spec.backend
    return {
        "artifact": str(spec.path),
        "name": spec.label,
        "backend": backend,
        "device": config.device,
        "precision": None,
        "format": None,
        "status": "failed",
        "stage": None,
        "reason": "",
        "note": "",
        "threads": config.threads,
        "load_s": None,
        "latency_batch": None,
        "latency_ms": None,
        "runs": 0,
        "throughput_batch": None,
        "throughput_ips": None,
        "throughput_latency_ms": None,
        "file_bytes": size,
        "file_mb": size / 1e6 if size is not None else None,
        "peak_rss_mb": None,
        "peak_rss_delta_mb": None,
        "load_rss_delta_mb": None,
        "isolated": config.isolate,
    }


def benchmark_artifacts(config: BenchConfig, progress: bool = True) -> list[dict[str, Any]]:
    """Measure every artifact of ``config``, interleaved; one row per artifact, failures included.

    Returns:
        Rows in the order of ``config.artifacts``. Each has ``status`` (``ok`` or ``failed``),
        ``stage`` and ``reason`` when failed, ``note`` (e.g. a fixed batch), ``load_s``,
        ``latency_ms`` (``p50``, ``p90``, ``p99``, ``mean``, ``min``, ``max``, ``round_medians``)
        at ``latency_batch``, ``throughput_ips`` at ``throughput_batch``, ``file_bytes``/``file_mb``
        and ``peak_rss_mb``/``peak_rss_delta_mb`` (see the module docstring).
    """
    rows = [_empty_row(spec, config) for spec in config.artifacts]
    runners: dict[int, _Runner] = {}
    started = time.perf_counter()
    # Load one at a time, so no load competes with another for the CPU.
    for index, spec in enumerate(config.artifacts):
        row = rows[index]
        try:
            runner = _Runner(spec, config)
        except _Failure as failure:
            row.update(stage="load", reason=str(failure))
            logger.warning("%s: failed to load: %s", spec.label, failure)
            continue
        info = runner.info
        row.update(
            backend=info["backend"],
            precision=info["precision"],
            format=info["format"],
            input=info["input"],
            load_s=info["load_s"],
        )
        fixed = info["fixed_batch"]
        row["latency_batch"] = fixed or 1
        row["throughput_batch"] = fixed or config.batch
        if fixed and fixed != config.batch:
            row["note"] = f"fixed batch {fixed}: throughput measured at batch {fixed}, not {config.batch}"
        runners[index] = runner
        logger.info("loaded %s on %s in %.2f s (%s)", spec.label, info["backend"], info["load_s"], info["input"])

    latency_blocks = _split(config.runs, min(config.rounds, config.runs))
    throughput_calls = max(len(latency_blocks), math.ceil(config.runs / config.batch))
    throughput_blocks = _split(throughput_calls, len(latency_blocks))
    latencies: dict[int, list[float]] = {index: [] for index in runners}
    batch_latencies: dict[int, list[float]] = {index: [] for index in runners}
    throughput_failed: dict[int, str] = {}

    def fail(index: int, stage: str, reason: str) -> None:
        rows[index].update(status="failed", stage=stage, reason=reason)
        logger.warning("%s: failed while %s: %s", config.artifacts[index].label, stage, reason)
        runners.pop(index).kill()

    for index in list(runners):
        row = rows[index]
        try:
            runners[index].call("warm", row["latency_batch"], config.warmup)
        except _Failure as failure:
            fail(index, "warm-up", str(failure))
            continue
        if row["throughput_batch"] != row["latency_batch"]:
            try:
                runners[index].call("warm", row["throughput_batch"], config.warmup)
            except _Failure as failure:
                # A model that runs at batch 1 but not at batch N still has its latency row.
                throughput_failed[index] = str(failure)

    from tqdm import tqdm

    total = len(latency_blocks) * len(runners)
    with tqdm(total=total, desc="bench", unit="round", leave=False, disable=not progress or not total) as bar:
        for round_index, (block, batch_block) in enumerate(zip(latency_blocks, throughput_blocks)):
            order = list(runners)
            if order:
                shift = round_index % len(order)
                order = order[shift:] + order[:shift]  # A B C, B C A, C A B, ...
            for index in order:
                if index not in runners:
                    continue
                row = rows[index]
                try:
                    latencies[index] += runners[index].call("time", row["latency_batch"], block)
                except _Failure as failure:
                    fail(index, "timing", str(failure))
                    bar.update(1)
                    continue
                if index not in throughput_failed and batch_block:
                    try:
                        batch_latencies[index] += runners[index].call("time", row["throughput_batch"], batch_block)
                    except _Failure as failure:
                        throughput_failed[index] = str(failure)
                bar.update(1)

    for index, runner in list(runners.items()):
        row = rows[index]
        try:
            row.update(runner.close())
        except _Failure as failure:
            row["note"] = _join(row["note"], f"memory not read: {failure}")
        row["status"] = "ok"
        row["runs"] = len(latencies[index])
        row["latency_ms"] = _latency_summary(latencies[index], latency_blocks)
        if index in throughput_failed:
            row["note"] = _join(row["note"], f"batch {row['throughput_batch']} failed: {throughput_failed[index]}")
            row["throughput_batch"] = None
        elif batch_latencies[index]:
            batch_ms = _latency_summary(batch_latencies[index], throughput_blocks)
            row["throughput_latency_ms"] = batch_ms
            row["throughput_ips"] = row["throughput_batch"] / (batch_ms["p50"] / 1000)
        if not config.isolate:
            row["note"] = _join(row["note"], "not isolated: memory not measured")
        logger.info(
            "%s: p50 %.3f ms, p99 %.3f ms at batch %d; %s images/s at batch %s; peak RSS %s MB",
            row["name"],
            row["latency_ms"]["p50"],
            row["latency_ms"]["p99"],
            row["latency_batch"],
            f"{row['throughput_ips']:.0f}" if row["throughput_ips"] else "n/a",
            row["throughput_batch"],
            f"{row['peak_rss_mb']:.0f}" if row["peak_rss_mb"] else "n/a",
        )
    logger.info(
        "benchmarked %d artifacts (%d failed) in %.1f s",
        len(rows),
        sum(row["status"] != "ok" for row in rows),
        time.perf_counter() - started,
    )
    return rows


def benchmark_artifact(
    artifact: str | Path,
    backend: str | None = None,
    *,
    device: str = "cpu",
    threads: int = 2,
    batch: int = 8,
    warmup: int = 20,
    runs: int = 200,
    rounds: int = 10,
    isolate: bool = True,
) -> dict[str, Any]:
    """Measure one artifact (see :func:`benchmark_artifacts` for the row and the module docstring for the method).

    A failure is a row with ``status: failed`` and its ``reason``, not an exception; unusable
    settings (e.g. ``threads=0``, an unknown backend) raise :class:`UsageError`.
    """
    spec = ArtifactSpec.parse(str(artifact), backend)
    config = BenchConfig(
        (spec,), device=device, threads=threads, batch=batch, warmup=warmup, runs=runs, rounds=rounds, isolate=isolate
    )
    return benchmark_artifacts(config, progress=False)[0]


def _join(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


# -------------------------------------------------------------------------------------------------
# output


def _number(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}"


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a Markdown table (the command prints this)."""
    lines = [
        (
            "| artifact | backend | precision | status | load s | p50 ms | p90 ms | p99 ms | images/s (batch) "
            "| size MB | peak RSS MB (+delta) | note |"
        ),
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        latency = row.get("latency_ms") or {}
        throughput, memory, note = speed_cells(row)
        lines.append(
            f"| {row['name']} | {row.get('backend') or '—'} | {row.get('precision') or '—'} | {row['status']} "
            f"| {_number(row.get('load_s'))} | {_number(latency.get('p50'), 3)} | {_number(latency.get('p90'), 3)} "
            f"| {_number(latency.get('p99'), 3)} | {throughput} | {_number(row.get('file_mb'))} | {memory} "
            f"| {note.replace('|', '/')} |"
        )
    return "\n".join(lines)


def speed_cells(row: dict) -> tuple[str, str, str]:
    """Throughput, peak-memory and note cells of one benchmark row, as the tables print them."""
    throughput = f"{row['throughput_ips']:.0f} (×{row['throughput_batch']})" if row.get("throughput_ips") else "—"
    memory = (
        f"{row['peak_rss_mb']:.0f} (+{row['peak_rss_delta_mb']:.0f})"
        if row.get("peak_rss_mb") is not None and row.get("peak_rss_delta_mb") is not None
        else "—"
    )
    note = (row.get("reason") or "") if row.get("status") != "ok" else row.get("note", "")
    return throughput, memory, note or ""


def json_ready(value):
    """``value`` with numpy scalars/arrays made plain and NaN/inf made ``None`` (strict JSON)."""
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: str | Path, document: dict[str, Any]) -> Path:
    """Write ``document`` as strict JSON (atomically)."""
    from runtime.card import atomic_write_bytes

    path = Path(path)
    try:
        atomic_write_bytes(path, json.dumps(json_ready(document), indent=2, allow_nan=False).encode())
    except OSError as error:
        raise BenchError(f"{path}: cannot write the JSON ({error.strerror}); pass a writable path") from None
    return path


def config_summary(config: BenchConfig) -> dict[str, Any]:
    """The settings as they go into the JSON."""
    values = asdict(config)
    values["artifacts"] = [spec.label for spec in config.artifacts]
    return values


# -------------------------------------------------------------------------------------------------
# command


def add_speed_flags(parser: argparse.ArgumentParser) -> None:
    """The speed flags of every command that benchmarks (this one, ``runtime.report``): device, threads,
    batch, warm-up, runs, rounds; :func:`speed_settings` reads them back for :class:`BenchConfig`."""
    parser.add_argument("--device", default="cpu", help="cpu, cuda, gpu (backend-specific; default cpu)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads of every engine (default 2)")
    parser.add_argument("--batch", type=int, default=8, help="batch size of the throughput phase (default 8)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls before timing (default 20)")
    parser.add_argument("--runs", type=int, default=200, help="timed batch-1 calls per artifact (default 200)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved blocks the runs are split into (default 10)")


def speed_settings(arguments: argparse.Namespace) -> dict[str, Any]:
    """:class:`BenchConfig` keyword arguments from the flags of :func:`add_speed_flags`."""
    return {name: getattr(arguments, name) for name in ("device", "threads", "batch", "warmup", "runs", "rounds")}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.bench",
        description="Latency, throughput, load time, size and peak memory of landmark artifacts, interleaved.",
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("artifacts", nargs="+", metavar="ARTIFACT", help="artifact files, PATH or PATH@BACKEND")
    parser.add_argument("--backend", default=None, help="backend for artifacts that name none (default: by suffix)")
    add_speed_flags(parser)
    parser.add_argument(
        "--no-isolate", action="store_true", help="run every artifact in this process (faster; no memory figure)"
    )
    parser.add_argument("--json", dest="json_path", default="", metavar="OUT.json", help="write rows and machine here")
    return parser


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    config = BenchConfig(
        artifacts=tuple(ArtifactSpec.parse_existing(text, arguments.backend) for text in arguments.artifacts),
        isolate=not arguments.no_isolate,
        **speed_settings(arguments),
    )
    machine = machine_description()
    rows = benchmark_artifacts(config)
    print(f"machine: {describe_machine(machine)}")
    print(format_table(rows))
    if arguments.json_path:
        write_json(arguments.json_path, {"machine": machine, "config": config_summary(config), "rows": rows})
        print(f"wrote {arguments.json_path}")
    return 0 if any(row["status"] == "ok" for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
