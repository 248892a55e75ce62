"""Training the style translator by self-reconstruction: each face rebuilt from its own style and structure.

Loss per step: reconstruction (:mod:`train.style.losses`) + ``kl_weight * ramp(step) * KL``, the ramp 0
until ``kl_ramp_start`` of the steps and linear to 1 at ``kl_ramp_end`` (the paper raises the KL weight
late in training). Adam at ``lr``, batch ``batch_size``; AMP (float16) on CUDA. The data order and the
augmentation draws are functions of ``(seed, epoch, index)`` and the torch generator state is saved
with every checkpoint, so a resumed run takes the same steps as an uninterrupted one.

Outputs in ``out_dir``: ``last.pt`` (every ``save_every`` steps and at the end) and ``history.csv``
(per step: loss, reconstruction, KL, KL weight).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runtime.card import atomic_write_bytes
from runtime.errors import EdgemarkError, UsageError
from train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from train.engine import (
    Distributed,
    progress_bar,
    restore_rng_state,
    rng_state,
    seed_everything,
    select_device,
)
from train.style.data import face_dataset, layout_of, read_faces
from train.style.losses import describe, reconstruction_loss
from train.style.network import StyleTranslator, TranslatorShape, kl_unit_gaussians

logger = logging.getLogger(__name__)
# Below this many faces fit warns about the paper's latent (measured to fail at 12; the paper fit 7,500).
SMALL_SET = 1000

KIND = "style-translator"


@dataclass(frozen=True)
class FitConfig:
    """Everything a translator fit depends on; saved in its checkpoints."""

    data: str = ""
    image_root: str = ""
    layout: str = ""  # "": the registered layout with the data's point count
    out_dir: str = "runs/style"
    image_size: int = 256
    width: int = 32
    max_width: int = 256
    blocks: int = 2
    dropout: float = 0.1
    latent_channels: int = 0  # 0: the feature width of each latent scale
    latent_levels: int = 2  # 2: latents at 8x8 and 4x4; 1: at 4x4 only
    crop_scale: float = 1.4
    steps: int = 50_000
    batch_size: int = 4
    lr: float = 1e-3
    kl_weight: float = 0.1
    kl_ramp_start: float = 0.5  # fraction of the steps
    kl_ramp_end: float = 0.75
    perceptual_weights: str = ""
    gram_weight: float = 0.1
    augment: bool = True
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    workers: int = 2
    save_every: int = 1000
    resume: str = ""  # checkpoint, or "auto": <out_dir>/last.pt when it exists

    def __post_init__(self):
        if not self.data:
            raise UsageError("no training faces: pass --data (WFLW list .txt, HRNet .csv or a folder of images + .pts)")
        for flag, value in (("--steps", self.steps), ("--batch-size", self.batch_size), ("--save-every", self.save_every)):
            if value < 1:
                raise UsageError(f"{flag} must be at least 1, got {value}")
        if not 0 <= self.kl_ramp_start <= self.kl_ramp_end <= 1:
            raise UsageError(
                f"KL ramp must satisfy 0 <= --kl-ramp-start <= --kl-ramp-end <= 1 (fractions of the steps), "
                f"got {self.kl_ramp_start} and {self.kl_ramp_end}"
            )
        if self.lr <= 0 or self.kl_weight < 0 or self.gram_weight < 0 or self.crop_scale <= 0:
            raise UsageError("--lr and --crop-scale must be positive, --kl-weight and --gram-weight not negative")
        if self.workers < 0 or self.seed < 0:
            raise UsageError(f"--workers and --seed must be >= 0, got {self.workers} and {self.seed}")

    def shape(self, num_points: int) -> TranslatorShape:
        return TranslatorShape(
            self.image_size, num_points, self.width, self.max_width, self.blocks, self.dropout,
            self.latent_channels, self.latent_levels,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def kl_ramp(config: FitConfig, step: int) -> float:
    """KL weight multiplier at ``step`` (0-based): 0, then linear, then 1."""
    start, end = config.kl_ramp_start * config.steps, config.kl_ramp_end * config.steps
    if step < start:
        return 0.0
    if step >= end:
        return 1.0
    return (step - start) / max(end - start, 1e-9)


def epoch_batches(length: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The index batches of one epoch: a seeded permutation, last partial batch dropped when one full fits."""
    order = np.random.default_rng([seed, epoch, 1]).permutation(length).tolist()
    batches = [order[i : i + batch_size] for i in range(0, length, batch_size)]
    if len(batches) > 1 and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


def _batches_from(dataset, config: FitConfig, step: int):
    """Endless batches starting at global ``step``; the same sequence whatever step a run starts at."""
    from torch.utils.data import DataLoader

    per_epoch = len(epoch_batches(len(dataset), config.batch_size, config.seed, 0))
    epoch, offset = divmod(step, per_epoch)
    while True:
        dataset.set_epoch(epoch)
        batches = epoch_batches(len(dataset), config.batch_size, config.seed, epoch)[offset:]
        # Its own generator: a new loader iterator must not draw from the global torch RNG (dropout, latent noise).
        loader = DataLoader(dataset, batch_sampler=batches, num_workers=config.workers, generator=torch.Generator())
        yield from loader
        epoch, offset = epoch + 1, 0


def load_translator_state(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """A translator checkpoint (safe load, hash checked); anything else is refused with one line."""
    state = load_checkpoint(path, map_location=device)
    if state.get("kind") != KIND:
        raise CheckpointError(
            f"{path}: not a style translator checkpoint (kind {state.get('kind', 'detector')!r}); "
            "pass a last.pt written by `python -m train.style fit`"
        )
    return state


def fit(config: FitConfig) -> dict[str, Any]:
    """Train (or continue training) a translator; returns a summary (steps/s, first and last losses)."""
    device = select_device(config.device, Distributed())
    use_amp = config.amp and device.type == "cuda"
    samples = read_faces(config.data, config.image_root)
    layout = layout_of(samples, config.layout)
    shape = config.shape(layout.num_points)
    dataset = face_dataset(samples, layout, config.image_size, config.crop_scale, config.augment, config.seed)
    criterion, perceptual = reconstruction_loss(config.perceptual_weights, config.gram_weight)
    criterion = criterion.to(device)
    logger.info("reconstruction loss: %s", describe(perceptual))
    if config.latent_channels == 0 and len(samples) < SMALL_SET:
        logger.warning(
            "%d faces with the paper's full-width latent: fit on 12 faces, that latent carried the whole face and "
            "outputs drew the style face's layout; --latent-channels 4 kept the structure (README: the AVS style "
            "translator). The paper's setting was made for thousands of faces.", len(samples),
        )  # fmt: skip

    seed_everything(config.seed)
    model = StyleTranslator(shape).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    out_dir = Path(config.out_dir)
    start, history = 0, []
    resume = str(out_dir / "last.pt") if config.resume == "auto" else config.resume
    if config.resume == "auto" and not Path(resume).is_file():
        logger.info("--resume auto: no %s yet; starting afresh", resume)
        resume = ""
    if resume:
        state = load_translator_state(resume, device)
        # Through TranslatorShape: a checkpoint from before a field existed reads as that field's default.
        if TranslatorShape(**state["shape"]).to_dict() != shape.to_dict() or state["perceptual"]["kind"] != perceptual["kind"]:
            raise CheckpointError(
                f"{resume}: checkpoint was trained with {state['shape']} and loss {state['perceptual']['kind']}, this "
                f"run asks for {shape.to_dict()} and {perceptual['kind']}; match the flags or start afresh"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start, history = state["step"], state["history"].tolist()
        restore_rng_state(state["rng"])
        logger.info("resumed from %s after step %d", resume, start)
    if start >= config.steps:
        raise UsageError(f"{resume}: already trained {start} steps; ask for more with --steps (now {config.steps})")

    logger.info(
        "fitting the style translator (%s, %d points, %dpx, width %d) on %s: %d faces, steps %d..%d, batch %d, AMP %s",
        layout.name, layout.num_points, config.image_size, config.width, device, len(dataset), start, config.steps,
        config.batch_size, "on" if use_amp else "off",
    )  # fmt: skip
    model.train()
    batches = _batches_from(dataset, config, start)
    started = time.perf_counter()
    bar = progress_bar(range(start, config.steps), "fit", config.steps - start)
    for step in bar:
        batch = next(batches)
        images = batch["image"].to(device, non_blocking=True)  # (N, 3, S, S) in [-1, 1]
        maps = batch["heatmaps"].to(device, non_blocking=True)  # (N, K, S, S) structure
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            output, posteriors, priors = model(images, maps)
            reconstruction = criterion(output, images)
        kl = kl_unit_gaussians(posteriors, priors)
        kl_scale = config.kl_weight * kl_ramp(config, step)
        loss = reconstruction + kl_scale * kl
        if not torch.isfinite(loss):
            raise EdgemarkError(f"loss became {loss.item()} at step {step}; lower --lr")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        history.append([loss.item(), reconstruction.item(), kl.item(), kl_scale])
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{history[-1][0]:.4f}", kl=f"{history[-1][2]:.3f}")
        done = step + 1
        if done % config.save_every == 0 or done == config.steps:
            state = {
                "kind": KIND,
                "shape": shape.to_dict(),
                "layout": layout.name,
                "crop_scale": config.crop_scale,
                "perceptual": perceptual,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "step": done,
                "rng": rng_state(),
                "history": torch.tensor(history, dtype=torch.float64),
                "config": config.to_dict(),
            }
            out_dir.mkdir(parents=True, exist_ok=True)
            save_checkpoint(out_dir / "last.pt", state)
            _write_history(out_dir / "history.csv", history)
    seconds = time.perf_counter() - started
    steps_run = config.steps - start
    window = max(1, min(10, len(history) // 4))
    summary = {
        "checkpoint": str(out_dir / "last.pt"),
        "steps": config.steps,
        "steps_run": steps_run,
        "steps_per_second": steps_run / max(seconds, 1e-9),
        "device": str(device),
        "amp": use_amp,
        "perceptual": perceptual,
        "loss_start": float(np.mean([row[1] for row in history[:window]])),
        "loss_end": float(np.mean([row[1] for row in history[-window:]])),
    }
    logger.info("done: %s (%d steps, %.3f steps/s)", summary["checkpoint"], steps_run, summary["steps_per_second"])
    return summary


def _write_history(path: Path, history: list[list[float]]) -> None:
    lines = ["step,loss,reconstruction,kl,kl_weight"]
    lines += [f"{step + 1},{row[0]:.6g},{row[1]:.6g},{row[2]:.6g},{row[3]:.6g}" for step, row in enumerate(history)]
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
