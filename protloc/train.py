"""The train step: exactly one SGDR cycle at one image size.

SGD with momentum, the learning rate annealed per iteration from lr_max to lr_min (cosine),
gradient clipping, a fresh per-epoch sample list from the manifest weights, D4 augmentation and
intensity jitter, optional warm start from the previous cycle (at another size). A checkpoint is
written after every epoch; rerunning the same command resumes from the last completed epoch, and
rerunning a finished cycle does nothing. On CUDA: bf16 autocast and channels_last; under torchrun
(WORLD_SIZE > 1): DistributedDataParallel, and only rank 0 writes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from protloc import storage
from protloc.cache import build_cache
from protloc.checkpoint import load_checkpoint, save_checkpoint
from protloc.classes import CLASS_NAMES, NUM_CLASSES
from protloc.config import _OPERATIONAL, NORM_TYPES, TrainConfig
from protloc.data import labels_to_matrix, labels_uri
from protloc.dataset import CachedImages
from protloc.errors import ArtifactError, ConfigError, ProtlocError
from protloc.loss import get_loss, soft_f1_from_probs
from protloc.manifest import Manifest, check_labels, read_manifest
from protloc.metrics import per_class_scores
from protloc.model import ARCH, InceptionV3BN, create_model, init_head, load_weights
from protloc.predict import autocast, predict
from protloc.sampling import epoch_indices
from protloc.schedule import cosine_lr
from protloc.transforms import channel_stats, normalize

log = logging.getLogger(__name__)


class TrainingError(ProtlocError):
    """Training diverged (a NaN or infinite loss)."""


# ----------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed() -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank)


def _barrier(d: Dist) -> None:
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()


def device_for(d: Dist) -> torch.device:
    return (
        torch.device(f"cuda:{d.local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    )


# ----------------------------------------------------------------------------- pieces


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and BatchNorm parameters (standard practice)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _per_epoch(weights: np.ndarray, batch: int, world: int) -> tuple[int, int]:
    """(samples, steps) per epoch: the expected draws, in whole batches."""
    n = round(float(weights.sum()))
    steps = n // (batch * world)
    if steps < 1:
        raise ConfigError(
            f"batch_size {batch} x {world} process(es) is larger than an epoch ({n} draws)"
        )
    return n, steps


def _epoch_rows(weights: np.ndarray, cfg: TrainConfig, epoch: int, n: int, d: Dist) -> np.ndarray:
    idx = epoch_indices(weights, cfg.seed, epoch)
    if len(idx) < n:  # systematic sampling can give one draw fewer than the rounded sum
        idx = np.concatenate([idx, idx[: n - len(idx)]])
    idx = idx[:n]
    per_rank = n // d.world
    return idx[d.rank :: d.world][:per_rank]


def evaluate(probs: np.ndarray, y: np.ndarray, loss: str) -> dict[str, Any]:
    """Validation loss, BCE, macro F1 at 0.5 and per-class F1."""
    p = torch.from_numpy(probs.astype(np.float64)).clamp(1e-7, 1 - 1e-7)
    t = torch.from_numpy(y.astype(np.float64))
    bce = float(torch.nn.functional.binary_cross_entropy(p, t))
    scores = per_class_scores(y, probs, 0.5)
    return {
        "loss": float(soft_f1_from_probs(p, t)) if loss == "soft_f1" else bce,
        "bce": bce,
        "macro_f1_at_0.5": float(scores["f1"].mean()),
        "per_class_f1": {
            name: round(float(f), 4) for name, f in zip(CLASS_NAMES, scores["f1"], strict=True)
        },
    }


def _write_json(uri: str, obj: dict) -> None:
    storage.write_text(uri, json.dumps(obj, indent=2) + "\n")


def _check_resumable(state: dict, cfg: TrainConfig, uri: str) -> None:
    saved = {k: v for k, v in state["config"].items() if k not in _OPERATIONAL}
    for key, value in cfg.result_fields().items():
        if saved.get(key) != value:
            raise ArtifactError(
                f"{uri} holds a cycle with {key}={saved.get(key)!r}, this run asks {key}={value!r}: "
                f"use another --out, or delete it to start over"
            )


# ----------------------------------------------------------------------------- the cycle


def train_cycle(manifest_uri: str, data_root: str, out: str, cfg: TrainConfig) -> dict[str, Any]:
    """Run (or resume, or skip) one SGDR cycle; writes checkpoint.pt and metrics.json to ``out``."""
    cfg.validate()
    ckpt_uri, metrics_uri = storage.join(out, "checkpoint.pt"), storage.join(out, "metrics.json")
    d = _init_distributed()
    device = device_for(d)

    state = load_checkpoint(ckpt_uri) if storage.exists(ckpt_uri) else None
    if state is not None:
        _check_resumable(state, cfg, ckpt_uri)
        if state["complete"]:
            log.info(
                "cycle %d at %d px is already complete in %s: nothing to do",
                cfg.cycle,
                cfg.size,
                out,
            )
            metrics = state["val_metrics"]
            if d.main and not storage.exists(metrics_uri):
                _write_json(metrics_uri, metrics)
            return metrics
        log.info(
            "resuming cycle %d from %s after epoch %d of %d",
            cfg.cycle,
            ckpt_uri,
            state["epochs_done"],
            cfg.epochs,
        )

    manifest: Manifest = read_manifest(manifest_uri)
    check_labels(manifest, labels_uri(data_root), manifest_uri)
    train_rows, val_rows = manifest.fold("train"), manifest.fold("val")
    t_start = time.perf_counter()

    def cache_of(ids: list[str]):
        return build_cache(
            data_root,
            "train",
            ids,
            cfg.size,
            cfg.cache_dir,
            workers=max(cfg.workers, 2),
            skip_bad=cfg.skip_bad,
        )

    train_cache = cache_of(list(train_rows["id"]))
    val_cache = cache_of(list(val_rows["id"])) if len(val_rows) else None
    skipped = train_cache.skipped + (val_cache.skipped if val_cache else [])
    # Rows of the caches (bad samples left out) and their targets and weights.
    kept = train_rows.set_index("id").loc[train_cache.ids]
    y_train = labels_to_matrix(kept["labels"])
    weights = kept["weight"].to_numpy(dtype=np.float64)

    # Seeded so a run is reproducible and a resumed run continues like an uninterrupted one.
    torch.manual_seed(cfg.seed)
    model: InceptionV3BN = create_model(dropout=cfg.dropout, pretrained=cfg.pretrained)
    if state is not None:
        load_weights(model, state["model"], ckpt_uri)
        norm = state["norm"]
    elif cfg.init:
        init = load_checkpoint(cfg.init)
        load_weights(model, init["model"], cfg.init)
        norm = init["norm"]
        log.info(
            "warm start from %s (cycle %s at %s px)", cfg.init, init.get("cycle"), init["size"]
        )
    else:
        mean, std = channel_stats(train_cache.array, seed=cfg.seed)
        norm = {"mean": mean, "std": std}
        init_head(model, torch.from_numpy(y_train.mean(axis=0)).float())
    model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    net = model
    if d.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[d.local_rank] if device.type == "cuda" else None
        )

    optimizer = torch.optim.SGD(
        _param_groups(model, cfg.weight_decay), lr=cfg.lr_max, momentum=cfg.momentum
    )
    if state is not None and "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
    loss_fn = get_loss(cfg.loss)
    mean_t = torch.tensor(norm["mean"], device=device)
    std_t = torch.tensor(norm["std"], device=device)
    n_epoch, steps = _per_epoch(weights, cfg.batch_size, d.world)
    total_steps = steps * cfg.epochs
    start_epoch = state["epochs_done"] if state is not None else 0
    history: list[dict] = list(state.get("history", [])) if state is not None else []
    log.info(
        "cycle %d: %d px, batch %d, %d epochs x %d steps (%d draws/epoch from %d samples), %s, lr %.4g -> %.4g, clip %s %.3g, device %s x%d",
        cfg.cycle,
        cfg.size,
        cfg.batch_size,
        cfg.epochs,
        steps,
        n_epoch,
        len(weights),
        cfg.loss,
        cfg.lr_max,
        cfg.lr_min,
        cfg.clip_norm_type,
        cfg.clip_norm,
        device.type,
        d.world,
    )

    for epoch in range(start_epoch, cfg.epochs):
        rows = _epoch_rows(weights, cfg, epoch, n_epoch, d)
        data = CachedImages(train_cache, rows, y_train, augment=True, seed=cfg.seed, epoch=epoch)
        loader = DataLoader(
            data,
            batch_size=cfg.batch_size,
            shuffle=False,
            drop_last=True,
            num_workers=cfg.workers,
            pin_memory=device.type == "cuda",
            persistent_workers=False,
        )
        jitter_gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        # Dropout draws from the global generator: one seed per (epoch, rank), so resuming at an
        # epoch boundary replays exactly what an uninterrupted run would have drawn.
        torch.manual_seed((cfg.seed * 1000 + epoch) * 1000 + d.rank)
        net.train()
        t0, seen = time.perf_counter(), 0
        losses, norms = [], []
        for i, (images, targets) in enumerate(loader):
            step = epoch * steps + i
            lr = cosine_lr(step, total_steps, cfg.lr_max, cfg.lr_min)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x = normalize(
                images.to(device, non_blocking=True), mean_t, std_t, cfg.jitter, jitter_gen
            )
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device):
                logits = net(x)
            loss = loss_fn(logits, targets.to(device))
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"cycle {cfg.cycle}: loss is {loss.item()} at epoch {epoch + 1} batch {i + 1} "
                    f"(step {step + 1}, lr {lr:.4g}); the last good checkpoint "
                    f"(after epoch {epoch}) is kept in {out}. Lower --lr-max or check the data."
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            max_norm = cfg.clip_norm if cfg.clip_norm > 0 else math.inf
            grad_norm = float(
                torch.nn.utils.clip_grad_norm_(
                    model.parameters(), max_norm, NORM_TYPES[cfg.clip_norm_type]
                )
            )
            optimizer.step()
            losses.append(float(loss.detach()))
            norms.append(grad_norm)
            seen += len(images) * d.world
            if d.main and ((i + 1) % cfg.log_every == 0 or i + 1 == steps):
                rate = seen / (time.perf_counter() - t0)
                log.info(
                    "cycle %d epoch %d/%d step %d/%d: loss %.4f lr %.4g grad-norm(%s) %.3g, %.1f images/s",
                    cfg.cycle,
                    epoch + 1,
                    cfg.epochs,
                    i + 1,
                    steps,
                    np.mean(losses[-cfg.log_every :]),
                    lr,
                    cfg.clip_norm_type,
                    grad_norm,
                    rate,
                )
        history.append(
            {
                "epoch": epoch + 1,
                "loss": float(np.mean(losses)),
                "grad_norm_median": float(np.median(norms)),
                "clipped_share": float(np.mean(np.array(norms) > cfg.clip_norm))
                if cfg.clip_norm > 0
                else 0.0,
                "images_per_s": seen / (time.perf_counter() - t0),
                "lr_end": lr,
            }
        )
        if d.main:
            save_checkpoint(
                _state(model, optimizer, cfg, norm, epoch + 1, False, None, history), ckpt_uri
            )
            log.info(
                "cycle %d epoch %d/%d done: loss %.4f, checkpoint written",
                cfg.cycle,
                epoch + 1,
                cfg.epochs,
                history[-1]["loss"],
            )
        _barrier(d)

    metrics: dict[str, Any] = {
        "cycle": cfg.cycle,
        "size": cfg.size,
        "epochs": cfg.epochs,
        "history": history,
        "skipped_ids": skipped,
        "config": asdict(cfg),
    }
    if val_cache is not None and d.main:
        probs = predict(
            model, val_cache, norm, cfg.batch_size, device, workers=cfg.workers, label="validation"
        )
        y_val = labels_to_matrix(val_rows.set_index("id").loc[val_cache.ids]["labels"])
        metrics["val"] = evaluate(probs, y_val, cfg.loss)
        log.info(
            "cycle %d validation: loss %.4f, macro F1 at 0.5 %.4f",
            cfg.cycle,
            metrics["val"]["loss"],
            metrics["val"]["macro_f1_at_0.5"],
        )
    metrics["seconds"] = time.perf_counter() - t_start
    if d.main:
        save_checkpoint(
            _state(model, None, cfg, norm, cfg.epochs, True, metrics, history), ckpt_uri
        )
        _write_json(metrics_uri, metrics)
    _barrier(d)
    if d.world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()  # else gloo can keep the processes from exiting
    return metrics


def _state(
    model, optimizer, cfg: TrainConfig, norm, epochs_done: int, complete: bool, metrics, history
) -> dict:
    state = {
        "arch": ARCH,
        "num_classes": NUM_CLASSES,
        "class_names": list(CLASS_NAMES),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "cycle": cfg.cycle,
        "size": cfg.size,
        "config": asdict(cfg),
        "norm": norm,
        "epochs_done": epochs_done,
        "complete": complete,
        "val_metrics": metrics,
        "history": history,
    }
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    return state
