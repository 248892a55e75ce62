"""``python -m train.bench``: training throughput (images/s, forward + backward + step) per model.

Random inputs and targets at each model's input size; the figures depend only on the model and the
machine. Writes JSON with the device name (CPU model or GPU name) beside the numbers.

A progress bar counts the steps of all models (a CPU run of every model takes minutes).

Examples:
  # every registered model on this machine's CPU, results also as JSON
  python -m train.bench --json train_bench_cpu.json
  # the recipe models on a GPU at batch 64 with float16 autocast and channels_last
  python -m train.bench --models resnet18_deconv,hrnetv2_w18,mobilenetv3_edge --device cuda --batch-size 64 \\
      --amp --channels-last
  # a quick CPU look at the edge model on 2 threads
  python -m train.bench --models mobilenetv3_edge --threads 2 --steps 3 --warmup 1
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any, Sequence

from runtime.errors import cli_main
from runtime.machine import cpu_name

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchConfig:
    models: tuple[str, ...]
    batch_size: int = 8
    steps: int = 5
    warmup: int = 2
    device: str = "auto"
    amp: bool = False
    channels_last: bool = False
    num_points: int = 98
    threads: int = 0
    json_path: str = ""


def benchmark(config: BenchConfig) -> dict[str, Any]:
    """Time ``steps`` optimiser steps per model after ``warmup``; one row per model, failures as rows."""
    import torch

    from train.engine import Distributed, logging_above_bars, progress_bar, select_device

    if config.threads:
        torch.set_num_threads(config.threads)
    device = select_device(config.device, Distributed())
    use_amp = config.amp and device.type == "cuda"
    rows = []
    steps_per_model = config.warmup + config.steps
    with logging_above_bars(), progress_bar(None, "train.bench", total=len(config.models) * steps_per_model) as bar:
        for index, name in enumerate(config.models):
            bar.set_description(name)
            rows.append(_benchmark_model(config, name, device, use_amp, bar))
            bar.n = (index + 1) * steps_per_model  # a failed model skips its remaining steps
            bar.refresh()
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "device_type": device.type,
        "threads": torch.get_num_threads(),
        "amp": use_amp,
        "torch": torch.__version__,
        "rows": rows,
    }


def _benchmark_model(config: BenchConfig, name: str, device, use_amp: bool, bar) -> dict[str, Any]:
    """One model's row: median step time after warm-up, or the failure."""
    import torch

    from train.losses import heatmap_mse
    from train.models import build_model, model_info

    try:
        info = model_info(name)
        model = build_model(name, config.num_points).to(device)
        if config.channels_last and device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
        size, maps = info.input_size, info.input_size // info.heatmap_stride
        images = torch.randn(config.batch_size, 3, size, size, device=device)
        targets = torch.rand(config.batch_size, config.num_points, maps, maps, device=device)
        weights = torch.ones(config.batch_size, config.num_points, device=device)
        model.train()
        timings = []
        for step in range(config.warmup + config.steps):
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                loss = heatmap_mse(model(images).float(), targets, weights)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if step >= config.warmup:
                timings.append(time.perf_counter() - started)
            bar.update(1)
        timings.sort()
        median = timings[len(timings) // 2]
        logger.info("%s: %.1f images/s (batch %d, %s)", name, config.batch_size / median, config.batch_size, device)
        return {"model": name, "status": "ok", "input_size": size, "batch_size": config.batch_size,
                "median_step_s": round(median, 4), "images_per_second": round(config.batch_size / median, 2)}
    except Exception as error:  # a model that fails is a row, not a crash
        logger.warning("%s failed: %s", name, error)
        return {"model": name, "status": "failed", "reason": f"{type(error).__name__}: {error}"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train.bench", description="Training throughput per model.",
        epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--models", default="", help="comma-separated (default: every registered model)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per step (default: 8)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model; the median is reported (default: 5)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first, per model (default: 2)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where to run (default: auto, CUDA when torch sees a GPU)")
    parser.add_argument("--amp", action="store_true", help="float16 autocast (CUDA only)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last memory format (CUDA only)")
    parser.add_argument("--num-points", type=int, default=98, help="heatmap channels (default: 98, WFLW)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", dest="json_path", default="", help="write the results here")
    return parser


@cli_main
def main(argv: Sequence[str] | None = None) -> int:
    from train.models import list_models

    args = build_parser().parse_args(argv)
    values = vars(args)
    values["models"] = tuple(m for m in args.models.split(",") if m) or tuple(list_models())
    config = BenchConfig(**values)
    results = benchmark(config)
    print(f"device: {results['device']} ({results['device_type']}, {results['threads']} threads, AMP {results['amp']})")
    print("| model | input | batch | images/s |\n|---|---:|---:|---:|")
    for row in results["rows"]:
        if row["status"] == "ok":
            print(f"| {row['model']} | {row['input_size']} | {row['batch_size']} | {row['images_per_second']} |")
        else:
            print(f"| {row['model']} | failed: {row['reason']} | | |")
    if config.json_path:
        from runtime.card import atomic_write_bytes

        atomic_write_bytes(config.json_path, json.dumps(results, indent=2).encode())
    return 0 if all(row["status"] == "ok" for row in results["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
