"""``python -m train.bench``: training throughput (images/s, forward + backward + step) per model.

Random inputs and targets at each model's input size; the figures depend only on the model and the
machine. Writes JSON with the device name (CPU model or GPU name) beside the numbers.

Examples:
  python -m train.bench --json train_bench_cpu.json
  python -m train.bench --models resnet18_deconv,hrnetv2_w18 --device cuda --batch-size 64 --amp
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

    from train.engine import Distributed, select_device
    from train.losses import heatmap_mse
    from train.models import build_model, model_info

    if config.threads:
        torch.set_num_threads(config.threads)
    device = select_device(config.device, Distributed())
    use_amp = config.amp and device.type == "cuda"
    rows = []
    for name in config.models:
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
            timings.sort()
            median = timings[len(timings) // 2]
            rows.append({"model": name, "status": "ok", "input_size": size, "batch_size": config.batch_size,
                         "median_step_s": round(median, 4), "images_per_second": round(config.batch_size / median, 2)})
            logger.info("%s: %.1f images/s (batch %d, %s)", name, config.batch_size / median, config.batch_size, device)
        except Exception as error:  # a model that fails is a row, not a crash
            rows.append({"model": name, "status": "failed", "reason": f"{type(error).__name__}: {error}"})
            logger.warning("%s failed: %s", name, error)
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "device_type": device.type,
        "threads": torch.get_num_threads(),
        "amp": use_amp,
        "torch": torch.__version__,
        "rows": rows,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train.bench", description="Training throughput per model.",
        epilog=__doc__.split("\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--models", default="", help="comma-separated (default: every registered model)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--amp", action="store_true", help="float16 autocast (CUDA only)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last memory format (CUDA only)")
    parser.add_argument("--num-points", type=int, default=98)
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
