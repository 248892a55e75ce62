"""The one home of what a figure was measured on: CPU model, cores, ISA flags, memory, OS, library versions.

Every benchmark writes :func:`machine_description` beside its figures (``runtime.bench``, the report,
``runtime.tools.peer``, ``calib study``, ``train.bench``); :func:`describe_machine` is its one-line form.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

# CPU flags that decide which kernels an engine can use (INT8 dot products, BF16, AMX).
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
# Distribution names whose versions describe the software side of a measurement.
LIBRARIES = {
    "numpy": ("numpy",),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python"),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "openvino": ("openvino",),
    "nncf": ("nncf",),
    "torch": ("torch",),
    "tensorrt": ("tensorrt",),
}


def machine_description() -> dict[str, Any]:
    """What the figures were measured on: CPU model, cores, ISA flags, memory, OS and library versions."""
    cpuinfo = read_text("/proc/cpuinfo")
    model = _first_value(cpuinfo, "model name") or platform.processor() or platform.machine()
    flags = set((_first_value(cpuinfo, "flags") or "").split())
    cores = {
        (block.get("physical id", "0"), block.get("core id"))
        for block in _cpu_blocks(cpuinfo)
        if block.get("core id") is not None
    }
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    memory_kb = _first_value(read_text("/proc/meminfo"), "MemTotal")
    versions = {"python": platform.python_version()}
    for name, distributions in LIBRARIES.items():
        for distribution in distributions:
            try:
                versions[name] = importlib.metadata.version(distribution)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return {
        "cpu": model,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "physical_cores": len(cores) or None,
        "isa": [flag for flag in ISA_FLAGS if flag in flags] if flags else [],
        "virtualised": "hypervisor" in flags,
        "memory_gb": round(int(memory_kb.split()[0]) / 1024**2, 1) if memory_kb else None,
        "os": platform.platform(),
        "libraries": versions,
    }


def describe_machine(machine: dict[str, Any]) -> str:
    """One line: ``AMD EPYC, 2 cores (2 usable), avx2 fma ..., 8 GB; onnxruntime 1.32, ...``."""
    isa = " ".join(machine.get("isa") or []) or "no ISA flags read"
    libraries = ", ".join(f"{k} {v}" for k, v in machine.get("libraries", {}).items())
    cores = machine.get("physical_cores") or machine.get("logical_cpus")
    memory = f", {machine['memory_gb']:g} GB" if machine.get("memory_gb") else ""
    virtual = ", virtual machine" if machine.get("virtualised") else ""
    return (
        f"{machine.get('cpu')}: {cores} cores ({machine.get('usable_cpus')} usable){memory}{virtual}; "
        f"{isa}; {machine.get('os')}; {libraries}"
    )


def read_text(path: str) -> str:
    """A system file's text (``/proc/...``), empty where it cannot be read."""
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _first_value(text: str, key: str) -> str | None:
    for line in text.splitlines():
        name, separator, value = line.partition(":")
        if separator and name.strip() == key:
            return value.strip()
    return None


def _cpu_blocks(cpuinfo: str) -> list[dict[str, str]]:
    blocks = []
    for chunk in cpuinfo.split("\n\n"):
        block = {}
        for line in chunk.splitlines():
            name, separator, value = line.partition(":")
            if separator:
                block[name.strip()] = value.strip()
        if block:
            blocks.append(block)
    return blocks


def cpu_name() -> str:
    """The CPU's model name."""
    return machine_description()["cpu"]
