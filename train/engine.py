"""The training loop: data, model, optimiser, AMP, DDP, per-epoch evaluation, atomic checkpoints, exact resume.

Run through ``python -m train`` (one process) or ``python -m train --nproc-per-node N`` (DDP through torchrun: one
process per GPU, or gloo processes on the CPU). Rank 0 logs, evaluates and writes checkpoints.
"""
from __future__ import annotations

import csv
import hashlib
import itertools
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from runtime import crop as croplib
from runtime.annotations import Sample
from runtime.card import atomic_write_bytes
from runtime.errors import EdgemarkError, UsageError, unknown_name
from runtime.codecs import heatmap_to_input
from runtime.layouts import Layout, get_layout
from runtime.metrics import WFLW_ATTRIBUTES, nme_per_image, summarise, wflw_subset_table
from train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from train.config import DECODE_METHODS, OPTIMIZERS, SCHEDULES, TrainConfig
from train.decode import decode
from train.losses import heatmap_loss, normalised_distance_loss
from train.models import build_model, model_info

logger = logging.getLogger(__name__)

# Default preprocessing of models trained here (ImageNet statistics, RGB) and their crop rule.
DEFAULT_NORMALISATION = croplib.Normalisation()
DEFAULT_CROP_RULE = croplib.CropRule(box="landmarks", scale=1.25)


@dataclass
class Distributed:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed(device_kind: str) -> Distributed:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); NCCL on CUDA, gloo on CPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return Distributed(rank=rank, world_size=world_size, local_rank=local_rank)


def select_device(requested: str, distributed: Distributed) -> torch.device:
    if requested not in ("auto", "cpu", "cuda"):
        raise unknown_name("device", requested, ["auto", "cpu", "cuda"])
    if requested == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu or auto")
    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    torch.cuda.set_device(distributed.local_rank)
    return torch.device("cuda", distributed.local_rank)


def validate(config: TrainConfig) -> None:
    """Reject a bad configuration before any work starts."""
    get_layout(config.layout)
    model_info(config.model)
    heatmap_loss(config.loss)
    if config.optimizer not in OPTIMIZERS:
        raise unknown_name("optimizer", config.optimizer, OPTIMIZERS)
    if config.schedule not in SCHEDULES:
        raise unknown_name("schedule", config.schedule, SCHEDULES)
    if config.decode not in DECODE_METHODS:
        raise unknown_name("decode method", config.decode, DECODE_METHODS)
    if not config.train_data:
        raise UsageError("no training data: pass --train-data (WFLW list .txt, HRNet .csv or a folder of images + .pts)")
    if config.recipe is not None:
        name = config.recipe["name"]
        for flag, path in (("--train-data", config.train_data), ("--val-data", config.val_data),
                           ("--image-root", config.image_root), ("--avs-root", config.avs_root)):
            if path and not Path(path).exists():
                raise UsageError(
                    f"{flag} {path}: not found. Recipe {name} names it as a placeholder: pass {flag} with where "
                    "your copy is, or set it in a copy of the recipe file"
                )
    if config.threads < 0:
        raise UsageError(f"--threads must be >= 0 (0: torch's default), got {config.threads}")
    if config.epochs < 1 or config.batch_size < 1:
        raise UsageError(f"epochs and batch size must be >= 1, got {config.epochs} and {config.batch_size}")
    if config.avs_ratio < 0:
        raise UsageError(f"--avs-ratio must be >= 0 (synthetic samples per real one), got {config.avs_ratio}")
    if config.qat:
        from train.qat import QatSettings

        if not config.init:
            raise UsageError(
                "--qat fine-tunes a trained model: pass --init CHECKPOINT.pt (a float checkpoint from python -m train)"
            )
        QatSettings.from_config(config)


def load_samples(spec: str, image_root: str, layout: Layout, what: str) -> list[Sample]:
    """Read one annotated set and check its point count against the layout."""
    from runtime.annotations import read_dataset

    samples = read_dataset(spec, image_root or None)
    if samples and len(samples[0].points) != layout.num_points:
        raise UsageError(
            f"{what} '{spec}' has {len(samples[0].points)} points per face but layout '{layout.name}' has "
            f"{layout.num_points}; pass --layout for that data"
        )
    return samples


def make_dataset(samples, config: TrainConfig, layout: Layout, input_size: int, stride: int, augment: bool):
    from train.augment import AugmentConfig
    from train.data import LandmarkDataset

    return LandmarkDataset(
        samples,
        layout=layout,
        input_size=input_size,
        heatmap_stride=stride,
        normalisation=DEFAULT_NORMALISATION,
        crop_rule=DEFAULT_CROP_RULE,
        sigma=config.sigma,
        augment=AugmentConfig() if augment else None,
        seed=config.seed,
    )


def epoch_factor(config: TrainConfig, epoch: int) -> float:
    """Learning-rate multiplier for ``epoch`` (0-based): linear warm-up, then the schedule."""
    if epoch < config.warmup_epochs:
        return (epoch + 1) / (config.warmup_epochs + 1)
    if config.schedule == "cosine":
        progress = (epoch - config.warmup_epochs) / max(1, config.epochs - config.warmup_epochs)
        return 0.5 * (1 + math.cos(math.pi * progress))
    if config.schedule == "step":
        return 0.1 ** sum(epoch >= milestone for milestone in config.milestones)
    return 1.0


def make_optimizer(config: TrainConfig, parameters) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(parameters, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay, nesterov=True)


def rng_state() -> dict[str, Any]:
    # numpy's state as plain values and a tensor: checkpoints load with torch.load(weights_only=True).
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    numpy_state = [name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached_gaussian)]
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def average_buffers(model: torch.nn.Module, world_size: int) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over the ranks.

    DDP keeps parameters equal, but each rank's last forward pass updates its running statistics
    from its own batch only; averaging makes every replica, and so every checkpoint, the same.
    """
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer /= world_size


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of all parameters and buffers, in key order (compares replicas across DDP ranks)."""
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class AllStacks(torch.nn.Module):
    """Training view of a model: every supervised output (``forward_all``) or just ``forward`` in a list."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        forward_all = getattr(self.model, "forward_all", None)
        return list(forward_all(images)) if forward_all is not None else [self.model(images)]


@torch.no_grad()
def predict(model: torch.nn.Module, loader: DataLoader, device: torch.device, method: str, stride: int,
            progress: bool = False):
    """Frame-pixel predictions and confidences for every item of ``loader`` (in index order).

    ``progress``: show a progress bar (it clears itself when done).
    """
    model.eval()
    points, confidences, indices = [], [], []
    for batch in progress_bar(loader, "evaluating", total=len(loader), enabled=progress):
        heatmaps = model(batch["image"].to(device, non_blocking=True)).float()
        coords = decode(heatmaps, method)
        confidence = heatmaps.flatten(2).amax(-1).clamp(0, 1)
        in_input = heatmap_to_input(coords.cpu().numpy().astype(np.float64), stride)
        for item, matrix in enumerate(batch["matrix"].numpy()):
            points.append(croplib.apply(croplib.invert(matrix), in_input[item]))
        confidences.append(confidence.cpu().numpy())
        indices.append(batch["index"].numpy())
    order = np.argsort(np.concatenate(indices))
    return np.stack(points)[order], np.concatenate(confidences)[order]


def evaluate_samples(
    model: torch.nn.Module,
    samples: list[Sample],
    dataset,
    layout: Layout,
    device: torch.device,
    method: str,
    stride: int,
    batch_size: int = 16,
    workers: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """NME (inter-ocular, inter-pupil, box), FR@0.1, AUC@0.1 and the WFLW subset table when attributes exist."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    predicted, _ = predict(model, loader, device, method, stride, progress=progress)
    truth = np.stack([sample.points for sample in samples]).astype(np.float64)
    inter_ocular = nme_per_image(predicted, truth, layout, "inter_ocular")
    metrics: dict[str, Any] = summarise(inter_ocular)
    metrics["nme_inter_pupil"] = float(nme_per_image(predicted, truth, layout, "inter_pupil").mean() * 100)
    metrics["nme_box"] = float(nme_per_image(predicted, truth, layout, "box").mean() * 100)
    if samples and all(sample.attributes for sample in samples):
        attributes = [{name: sample.attributes.get(name, 0) for name in WFLW_ATTRIBUTES} for sample in samples]
        metrics["subsets"] = wflw_subset_table(inter_ocular, attributes)
    return metrics


class MetricsLog:
    """Per-epoch CSV (always) and TensorBoard scalars (when installed and enabled)."""

    def __init__(self, out_dir: Path, tensorboard: bool):
        self.path = out_dir / "metrics.csv"
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out_dir / "tensorboard"))
            except ImportError:
                logger.info("tensorboard not installed: metrics go to %s only", self.path)

    def write(self, row: dict[str, Any]) -> None:
        rows = []
        if self.path.is_file():
            with open(self.path, newline="") as stream:
                # A resumed run replaces the epochs it redoes.
                rows = [r for r in csv.DictReader(stream) if int(r["epoch"]) < row["epoch"]]
        rows.append({key: value for key, value in row.items()})
        columns = list(dict.fromkeys(key for r in rows for key in r))
        temporary = self.path.with_suffix(".csv.tmp")
        with open(temporary, "w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(temporary, self.path)
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, row["epoch"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def progress_bar(iterable=None, description: str = "", total: int | None = None, enabled: bool = True):
    """A tqdm bar that clears itself when done; a no-op wrapper when ``enabled`` is false (other DDP ranks).

    Log lines written while it runs go above it when the caller is inside :func:`logging_above_bars`.
    """
    from tqdm import tqdm

    return tqdm(iterable, desc=description, total=total, leave=False, dynamic_ncols=True, disable=not enabled)


def logging_above_bars():
    """Context manager: route the root logger's console output through ``tqdm.write``.

    A log line (one per epoch) is then printed above the progress bar instead of through it.
    """
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm()


def train(config: TrainConfig) -> dict[str, Any]:
    """Train a landmark detector as ``config`` says; returns the final summary (also ``summary.json``)."""
    validate(config)
    distributed = setup_distributed("cuda" if config.device != "cpu" and torch.cuda.is_available() else "cpu")
    try:
        return _train(config, distributed)
    finally:
        if distributed.enabled and dist.is_initialized():
            dist.destroy_process_group()


def check_cpu_contention(threads: int) -> None:
    """Warn when other processes keep the CPU busy and torch runs several threads.

    torch's OpenMP threads wait for each other at every operator; when another process holds a core,
    each such wait stretches to a scheduler slice. Measured on a 2-core machine with other work running
    (load average 3-4): mobilenetv3_edge at batch 4 trained 8-12x faster on 1 thread than on 2.
    """
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        return
    cores = os.cpu_count() or 1
    if threads > 1 and load > cores:
        logger.warning(
            "load average %.1f on %d cores: other processes are busy and torch's %d threads will wait on each "
            "other; --threads 1 is often several times faster here", load, cores, threads,
        )


def _train(config: TrainConfig, distributed: Distributed) -> dict[str, Any]:
    device = select_device(config.device, distributed)
    if config.threads:
        torch.set_num_threads(config.threads)
    if device.type == "cpu" and distributed.is_main:
        check_cpu_contention(torch.get_num_threads())
    if not distributed.is_main:
        logging.getLogger("train").setLevel(logging.WARNING)
    use_amp = config.amp and device.type == "cuda"
    out_dir = Path(config.out_dir)  # made once the data and the model are known good: a failed start leaves no folder

    layout = get_layout(config.layout)
    info = model_info(config.model)
    input_size = config.input_size or info.input_size
    stride = info.heatmap_stride

    real = load_samples(config.train_data, config.image_root, layout, "training data")
    samples = real
    if config.avs_root:
        from runtime.annotations import read_avs_root
        from train.data import mix_avs

        synthetic = read_avs_root(config.avs_root)
        samples = mix_avs(real, synthetic, config.avs_ratio, config.seed)
        logger.info("AVS: %d real + %d synthetic samples (ratio %.2f)", len(real), len(samples) - len(real), config.avs_ratio)
    val_samples = load_samples(config.val_data, config.image_root, layout, "validation data") if config.val_data else []
    train_set = make_dataset(samples, config, layout, input_size, stride, augment=config.augment)
    val_set = make_dataset(val_samples, config, layout, input_size, stride, augment=False) if val_samples else None

    seed_everything(config.seed)
    model = build_model(config.model, layout.num_points, input_size=input_size)
    qat_state = None
    if config.init:
        from train.qat import load_init

        init_state = load_init(model, config.init, config.model, layout.num_points, input_size)
        logger.info("weights from %s (epoch %s)", config.init, init_state.get("epoch"))
    if config.qat:
        from train.qat import QatSettings, prepare_qat, qat_record

        settings = QatSettings.from_config(config)
        qat_state = qat_record(config, settings, init_state, prepare_qat(model, settings, input_size))
    model = model.to(device)
    if device.type == "cuda" and config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(config, model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: epoch_factor(config, epoch))
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)

    start_epoch, best_nme = 0, float("inf")
    resume = str(out_dir / "last.pt") if config.resume == "auto" else config.resume
    if config.resume == "auto" and not Path(resume).is_file():
        logger.info("--resume auto: no %s yet; starting afresh", resume)
        resume = ""
    if resume:
        state = load_checkpoint(resume, map_location=device)
        if state["model_name"] != config.model or state["num_points"] != layout.num_points:
            raise CheckpointError(
                f"{resume}: checkpoint is {state['model_name']} with {state['num_points']} points, "
                f"this run is {config.model} with {layout.num_points}; match --model/--layout or start afresh"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, best_nme = state["epoch"], state.get("best_nme", float("inf"))
        restore_rng_state(state["rng"][distributed.rank] if isinstance(state["rng"], list) else state["rng"])
        logger.info("resumed from %s after epoch %d", resume, start_epoch)

    wrapped: torch.nn.Module = AllStacks(model)
    if distributed.enabled:
        # DDP must wrap what the loop calls, so its gradient hooks see every supervised stack.
        wrapped = torch.nn.parallel.DistributedDataParallel(
            wrapped, device_ids=[device.index] if device.type == "cuda" else None
        )
    sampler = DistributedSampler(
        train_set, num_replicas=distributed.world_size, rank=distributed.rank, shuffle=True, seed=config.seed
    )
    per_rank_batch = max(1, config.batch_size // distributed.world_size)
    loader = DataLoader(
        train_set,
        batch_size=per_rank_batch,
        sampler=sampler,
        num_workers=config.workers,
        pin_memory=device.type == "cuda",
        drop_last=len(train_set) >= per_rank_batch * distributed.world_size * 2,
        persistent_workers=False,
    )
    if qat_state is not None and not resume:  # a resumed run has its ranges in the checkpoint
        from train.qat import calibrate_ranges

        seen = calibrate_ranges(model, itertools.islice(loader, config.qat_calibration_batches), device)
        logger.info("QAT: activation ranges calibrated (%s) on %d training images", config.qat_range, seen)
    criterion = heatmap_loss(config.loss)
    if distributed.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    log = MetricsLog(out_dir, config.tensorboard) if distributed.is_main else None
    logger.info(
        "training %s (%s, %d points, %dpx) on %s x%d: %d samples, %d epochs, AMP %s",
        config.model, layout.name, layout.num_points, input_size, device, distributed.world_size,
        len(train_set), config.epochs, "on" if use_amp else "off",
    )
    metrics: dict[str, Any] = {}
    with logging_above_bars():  # the per-epoch log line goes above the progress bar
        for epoch in range(start_epoch, config.epochs):
            sampler.set_epoch(epoch)
            train_set.set_epoch(epoch)
            wrapped.train()
            started = time.perf_counter()
            loss_sum = torch.zeros(2, dtype=torch.float64, device=device)  # (sum of losses, count)
            steps = len(loader) if not config.max_steps_per_epoch else min(len(loader), config.max_steps_per_epoch)
            images_seen = 0
            bar = progress_bar(None, f"epoch {epoch + 1}/{config.epochs}", total=steps, enabled=distributed.is_main)
            for step, batch in enumerate(loader):
                if step >= steps:
                    break
                images = batch["image"].to(device, non_blocking=True)
                if device.type == "cuda" and config.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                targets = batch["heatmaps"].to(device, non_blocking=True)
                weights = batch["weights"].to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                    outputs = wrapped(images)  # list of (N, K, H, W), one per supervised stack
                loss = sum(criterion(output.float(), targets, weights) for output in outputs)
                if config.distance_loss_weight > 0:
                    points = batch["points"].to(device, non_blocking=True)
                    loss = loss + config.distance_loss_weight * normalised_distance_loss(
                        outputs[-1].float(), points, weights, layout.outer_eye_corners, stride
                    )
                if not torch.isfinite(loss):
                    raise EdgemarkError(f"loss became {loss.item()} at epoch {epoch + 1} step {step}; lower --lr")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                loss_sum += torch.tensor([loss.item() * len(images), len(images)], dtype=torch.float64, device=device)
                images_seen += len(images)
                bar.set_postfix(loss=f"{loss.item():.4g}", refresh=False)
                bar.update(1)
            bar.close()
            scheduler.step()
            if distributed.enabled:
                dist.all_reduce(loss_sum)
                average_buffers(model, distributed.world_size)
            elapsed = time.perf_counter() - started
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "train_loss": float(loss_sum[0] / loss_sum[1].clamp(min=1)),
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": round(elapsed, 3),
                "images_per_second": round(images_seen * distributed.world_size / max(elapsed, 1e-9), 2),
            }
            is_eval_epoch = (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs
            if distributed.is_main:
                if val_set is not None and is_eval_epoch:
                    metrics = evaluate_samples(model, val_samples, val_set, layout, device, config.decode, stride,
                                               batch_size=config.batch_size, workers=config.workers, progress=True)
                    row.update({"val_nme": metrics["nme"], "val_fr": metrics["fr"], "val_auc": metrics["auc"],
                                "val_nme_box": metrics["nme_box"]})
                    improved = metrics["nme"] < best_nme
                    best_nme = min(best_nme, metrics["nme"])
                else:
                    improved = val_set is None
                log.write(row)
                logger.info("epoch %d: %s", epoch + 1, ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch"))
            rng = [None] * distributed.world_size
            if distributed.enabled:
                dist.all_gather_object(rng, rng_state())
            else:
                rng = [rng_state()]
            if distributed.is_main:
                state = {
                    "model_name": config.model,
                    "num_points": layout.num_points,
                    "layout": layout.name,
                    "input_size": input_size,
                    "heatmap_stride": stride,
                    "sigma": config.sigma,
                    "decode": config.decode,
                    "normalisation": DEFAULT_NORMALISATION.to_dict(),
                    "crop_rule": DEFAULT_CROP_RULE.to_dict(),
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "epoch": epoch + 1,
                    "best_nme": best_nme,
                    "rng": rng,
                    "config": config.to_dict(),
                    "metrics": row,
                    **({"qat": qat_state} if qat_state is not None else {}),
                }
                save_checkpoint(out_dir / "last.pt", state)
                if improved:  # the same bytes: copied, not serialised and hashed a second time
                    atomic_write_bytes(out_dir / "best.pt", (out_dir / "last.pt").read_bytes())
            model.train()
    if log is not None:
        log.close()
    return _finish(config, distributed, device, model, metrics, best_nme, out_dir)


def _finish(config, distributed, device, model, metrics, best_nme, out_dir) -> dict[str, Any]:
    """Compare the replicas, write ``summary.json`` and log the final lines; returns the summary."""
    digest = weights_digest(model)
    digests = [digest]
    if distributed.enabled:
        digests = [None] * distributed.world_size
        dist.all_gather_object(digests, digest)
    summary = {
        "config": config.to_dict(),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "world_size": distributed.world_size,
        "weights_sha256": digests,
        "ranks_agree": len(set(digests)) == 1,
        "final_val": {k: v for k, v in metrics.items() if k != "subsets"},
        "best_val_nme": best_nme if math.isfinite(best_nme) else None,
    }
    if distributed.is_main:
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        if "subsets" in metrics:
            from runtime.metrics import format_table

            logger.info("WFLW subsets:\n%s", format_table(metrics["subsets"]))
        logger.info("done: %s (last.pt, best.pt, metrics.csv, summary.json)", out_dir)
    return summary

