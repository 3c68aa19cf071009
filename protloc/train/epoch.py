"""One epoch of a cycle, and a validation: what a cycle's loop calls.

SGD with momentum, the learning rate annealed per optimizer step (cosine, ``lr_max`` ->
``lr_min`` over the whole cycle), gradient clipping by the configured norm, a fresh per-epoch
sample list from the manifest's weights, D4 augmentation (and random crops, ``crop`` > 1 or
``crop_jitter`` > 0) and intensity jitter. On CUDA: bf16 autocast and channels_last.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from protloc.classes import CLASS_NAMES
from protloc.config import NORM_TYPES, TrainConfig
from protloc.data.cache import ImageCache
from protloc.data.crops import Crop
from protloc.data.dataset import CachedImages
from protloc.data.hpa import labels_to_matrix
from protloc.data.sampling import epoch_indices
from protloc.data.transforms import normalize
from protloc.distributed import Dist, lr_scale
from protloc.errors import ConfigError, ProtlocError
from protloc.losses import logits_of, make_loss
from protloc.metrics import per_class_scores
from protloc.model.inference import autocast, predict
from protloc.progress import eta
from protloc.train.schedule import cosine_lr

log = logging.getLogger(__name__)


class TrainingError(ProtlocError):
    """Training diverged (a NaN or infinite loss)."""


@dataclass
class Run:
    """What one cycle's epochs work on (built by ``protloc.train.cycle.setup``)."""

    d: Dist
    device: torch.device
    model: torch.nn.Module
    net: torch.nn.Module  # the model, wrapped in DDP under torchrun
    optimizer: torch.optim.Optimizer
    norm: dict[str, list[float]]
    train_cache: ImageCache
    val_cache: ImageCache | None
    val_rows: Any  # the manifest's validation rows
    y_train: np.ndarray
    weights: np.ndarray
    history: list[dict] = field(default_factory=list)
    start_epoch: int = 0
    inputs: dict[str, Any] | None = None


def per_epoch(weights: np.ndarray, batch: int, world: int) -> tuple[int, int]:
    """(samples, steps) per epoch: the expected draws, in whole batches."""
    n = round(float(weights.sum()))
    steps = n // (batch * world)
    if steps < 1:
        raise ConfigError(
            f"batch_size {batch} x {world} process(es) is larger than an epoch ({n} draws)"
        )
    return n, steps


def epoch_rows(weights: np.ndarray, cfg: TrainConfig, epoch: int, n: int, d: Dist) -> np.ndarray:
    """This rank's share of the epoch's sample list (rows of the training cache)."""
    idx = epoch_indices(weights, cfg.seed, epoch)
    if len(idx) < n:  # systematic sampling can give one draw fewer than the rounded sum
        idx = np.concatenate([idx, idx[: n - len(idx)]])
    idx = idx[:n]
    per_rank = n // d.world
    return idx[d.rank :: d.world][:per_rank]


def _loader(run: Run, cfg: TrainConfig, epoch: int, n_epoch: int) -> DataLoader:
    rows = epoch_rows(run.weights, cfg, epoch, n_epoch, run.d)
    # Windows of the cycle's size wherever the cache holds larger samples (crop > 1) or the
    # window's scale is jittered; else whole samples, as the cache holds them.
    cropped = run.train_cache.size != cfg.size or cfg.crop_jitter > 0
    crop = Crop(cfg.size, cfg.crop_jitter) if cropped else None
    data = CachedImages(
        run.train_cache,
        rows,
        run.y_train,
        augment=True,
        seed=cfg.seed,
        epoch=epoch,
        crop=crop,
        rank=run.d.rank,
        world=run.d.world,
    )
    return DataLoader(
        data,
        batch_size=cfg.batch_size,
        shuffle=False,
        drop_last=True,
        num_workers=cfg.workers,
        pin_memory=run.device.type == "cuda",
        persistent_workers=False,
    )


def _optimizer_step(run: Run, cfg: TrainConfig, loss: torch.Tensor) -> float:
    """Backward, clip, step; returns the gradient norm before clipping."""
    max_norm = cfg.clip_norm if cfg.clip_norm > 0 else math.inf
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(
        run.model.parameters(), max_norm, NORM_TYPES[cfg.clip_norm_type]
    )
    run.optimizer.step()
    return float(grad_norm)


def train_one_epoch(
    run: Run, cfg: TrainConfig, epoch: int, n_epoch: int, steps: int, out: str
) -> dict[str, Any]:
    """One epoch over a fresh sample list; returns its history entry."""
    d, device = run.d, run.device
    loss_fn = make_loss(cfg.loss, cfg.focal_gamma)
    mean_t = torch.tensor(run.norm["mean"], device=device)
    std_t = torch.tensor(run.norm["std"], device=device)
    scale = lr_scale(cfg.lr_scaling, d.world)  # the global batch is d.world x batch_size
    jitter_gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    loader = _loader(run, cfg, epoch, n_epoch)
    # Dropout draws from the global generator: one seed per (epoch, rank), so resuming at an
    # epoch boundary replays exactly what an uninterrupted run would have drawn.
    torch.manual_seed((cfg.seed * 1000 + epoch) * 1000 + d.rank)
    run.net.train()
    t0, seen, lr = time.perf_counter(), 0, cfg.lr_max
    losses, norms, trace = [], [], []
    for i, (images, targets) in enumerate(loader):
        step = epoch * steps + i
        lr = cosine_lr(step, steps * cfg.epochs, cfg.lr_max * scale, cfg.lr_min * scale)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        x = normalize(images.to(device, non_blocking=True), mean_t, std_t, cfg.jitter, jitter_gen)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device):
            logits = run.net(x)
        loss = loss_fn(logits, targets.to(device))
        if not torch.isfinite(loss):
            raise TrainingError(
                f"cycle {cfg.cycle}: loss is {loss.item()} at epoch {epoch + 1} batch {i + 1} "
                f"(step {step + 1}, lr {lr:.4g}); the last good checkpoint "
                f"(after epoch {epoch}) is kept in {out}. Lower --lr-max or check the data."
            )
        norms.append(_optimizer_step(run, cfg, loss))
        losses.append(float(loss.detach()))
        trace.append({"step": step + 1, "loss": losses[-1], "lr": lr, "grad_norm": norms[-1]})
        seen += len(images) * d.world
        if d.main and ((i + 1) % cfg.log_every == 0 or i + 1 == steps):
            _log_step(cfg, epoch, i, steps, losses, lr, norms[-1], seen, t0)
    return {
        "epoch": epoch + 1,
        "steps": trace,  # per optimizer step: the training curves
        "loss": float(np.mean(losses)),
        "grad_norm_median": float(np.median(norms)),
        "clipped_share": float(np.mean(np.array(norms) > cfg.clip_norm))
        if cfg.clip_norm > 0
        else 0.0,
        "images_per_s": seen / (time.perf_counter() - t0),
        "lr_end": lr,
    }


def _log_step(
    cfg: TrainConfig,
    epoch: int,
    i: int,
    steps: int,
    losses: list[float],
    lr: float,
    grad_norm: float,
    seen: int,
    t0: float,
) -> None:
    elapsed = time.perf_counter() - t0
    steps_left = steps - (i + 1) + (cfg.epochs - epoch - 1) * steps  # in the cycle
    log.info(
        "cycle %d epoch %d/%d step %d/%d: loss %.4f lr %.4g grad-norm(%s) %.3g, "
        "%.1f images/s, cycle %s",
        cfg.cycle,
        epoch + 1,
        cfg.epochs,
        i + 1,
        steps,
        np.mean(losses[-cfg.log_every :]),
        lr,
        cfg.clip_norm_type,
        grad_norm,
        seen / elapsed,
        eta(i + 1, i + 1 + steps_left, elapsed),
    )


def evaluate(
    probs: np.ndarray, y: np.ndarray, loss_fn: Callable[[Any, Any], Any]
) -> dict[str, Any]:
    """Validation loss (the training loss, ``losses.make_loss``), BCE, macro F1 at 0.5 and
    per-class F1."""
    p = torch.from_numpy(probs.astype(np.float64)).clamp(1e-7, 1 - 1e-7)
    t = torch.from_numpy(y.astype(np.float64))
    bce = float(torch.nn.functional.binary_cross_entropy(p, t))
    scores = per_class_scores(y, probs, 0.5)
    return {
        "loss": float(loss_fn(logits_of(p), t)),
        "bce": bce,
        "macro_f1_at_0.5": float(scores["f1"].mean()),
        "per_class_f1": {
            name: round(float(f), 4) for name, f in zip(CLASS_NAMES, scores["f1"], strict=True)
        },
    }


def validate(run: Run, cfg: TrainConfig) -> dict[str, Any]:
    """Evaluate on the validation fold now (rank 0): loss, BCE, macro and per-class F1; the
    model goes back to training mode at the next epoch's start."""
    probs = predict(
        run.model,
        run.val_cache,
        run.norm,
        cfg.batch_size,
        run.device,
        workers=cfg.workers,
        label="validation",
    )
    y_val = labels_to_matrix(run.val_rows.set_index("id").loc[run.val_cache.ids]["labels"])
    scores = evaluate(probs, y_val, make_loss(cfg.loss, cfg.focal_gamma))
    log.info(
        "cycle %d validation: loss %.4f, macro F1 at 0.5 %.4f",
        cfg.cycle,
        scores["loss"],
        scores["macro_f1_at_0.5"],
    )
    return scores


def curve_point(scores: dict[str, Any]) -> dict[str, float]:
    """What an epoch's history entry keeps of a validation (the per-epoch curve)."""
    return {k: scores[k] for k in ("loss", "macro_f1_at_0.5")}
