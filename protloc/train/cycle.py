"""The train step: exactly one SGDR cycle at one image size.

SGD with momentum, the learning rate annealed per iteration from lr_max to lr_min (cosine),
gradient clipping, a fresh per-epoch sample list from the manifest weights, D4 augmentation and
intensity jitter, optional warm start from the previous cycle (at another size). A checkpoint is
written after every epoch; rerunning the same command resumes from the last completed epoch, and
rerunning a finished cycle does nothing. On CUDA: bf16 autocast and channels_last; under torchrun
(WORLD_SIZE > 1): DistributedDataParallel, and only rank 0 writes.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from protloc import storage
from protloc.classes import CLASS_NAMES, NUM_CLASSES
from protloc.config import NORM_TYPES, TrainConfig
from protloc.data.cache import ImageCache, build_cache
from protloc.data.dataset import CachedImages
from protloc.data.hpa import labels_to_matrix
from protloc.data.manifest import Manifest, check_labels, read_manifest, require_store_for_external
from protloc.data.sampling import epoch_indices
from protloc.data.store import open_store
from protloc.data.transforms import channel_stats, normalize
from protloc.errors import ArtifactError, ConfigError, ProtlocError
from protloc.evaluate.predict import autocast, predict
from protloc.metrics import per_class_scores
from protloc.model.checkpoint import load_checkpoint, save_checkpoint
from protloc.model.loss import get_loss, soft_f1_from_probs
from protloc.model.network import ARCH, InceptionV3BN, create_model, init_head, load_weights
from protloc.progress import eta
from protloc.train.distributed import (
    Dist,
    barrier,
    check_in_sync,
    device_for,
    init_distributed,
    lr_scale,
    node_first,
    teardown,
)
from protloc.train.schedule import cosine_lr

log = logging.getLogger(__name__)


class TrainingError(ProtlocError):
    """Training diverged (a NaN or infinite loss)."""


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


def check_existing(
    ckpt_uri: str, cfg: TrainConfig, init: str, inputs: dict[str, Any] | None
) -> None:
    """Refuse a checkpoint at ``ckpt_uri`` made from other inputs (no checkpoint: nothing to do)."""
    if storage.exists(ckpt_uri):
        _check_resumable(load_checkpoint(ckpt_uri), cfg, init, inputs, ckpt_uri)


def _check_resumable(
    state: dict, cfg: TrainConfig, init: str, inputs: dict[str, Any] | None, uri: str
) -> None:
    saved_inputs = state.get("inputs")
    if inputs is not None and saved_inputs is not None:
        for key, value in inputs.items():
            if saved_inputs.get(key) != value:
                raise ArtifactError(
                    f"{uri} holds a cycle made from other inputs ({_differs(key, saved_inputs.get(key), value)}): "
                    f"use another --out, or delete it to start over"
                )
        return
    saved = {**state["config"], "init": state.get("init", state["config"].get("init") or "")}
    for key, value in {**cfg.result_fields(), "init": init}.items():
        if saved.get(key) != value:
            raise ArtifactError(
                f"{uri} holds a cycle with {key}={saved.get(key)!r}, this run asks {key}={value!r}: "
                f"use another --out, or delete it to start over"
            )


# ----------------------------------------------------------------------------- the cycle


@dataclass
class Run:
    """What one cycle's epochs work on (built by :func:`setup`)."""

    d: Dist
    device: torch.device
    model: InceptionV3BN
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


def train_cycle(
    manifest_uri: str,
    data_root: str,
    out: str,
    cfg: TrainConfig,
    *,
    init: str = "",
    labels_uri: str = "",
    inputs: dict[str, Any] | None = None,
    store: str = "",
) -> dict[str, Any]:
    """Run (or resume, or skip) one SGDR cycle; writes checkpoint.pt and metrics.json to ``out``.

    ``store``: the prepare step's folder; the images then come from it, not from decoding.

    ``init``: the previous cycle's checkpoint to warm-start from (empty: a new model, from
    ``cfg.pretrained`` or from scratch). ``labels_uri``: the labels file the manifest must match.
    ``inputs``: what the result depends on, by content (``protloc.steps.cycle_inputs``); stored
    in the checkpoint, and a checkpoint already in ``out`` is resumed or reused only when they
    are the same, else refused naming what differs.
    """
    ckpt_uri, metrics_uri = storage.join(out, "checkpoint.pt"), storage.join(out, "metrics.json")
    d = init_distributed()
    state = load_checkpoint(ckpt_uri) if storage.exists(ckpt_uri) else None
    if state is not None:
        _check_resumable(state, cfg, init, inputs, ckpt_uri)
        if state["complete"]:
            log.info(
                "cycle %d at %d px is already complete in %s: nothing to do",
                cfg.cycle,
                cfg.size,
                out,
            )
            metrics = state["val_metrics"]
            if d.main and not storage.exists(metrics_uri):
                storage.write_json(metrics_uri, metrics)
            return metrics
        log.info(
            "resuming cycle %d from %s after epoch %d of %d",
            cfg.cycle,
            ckpt_uri,
            state["epochs_done"],
            cfg.epochs,
        )

    t_start = time.perf_counter()
    run = setup(manifest_uri, data_root, cfg, d, state, init, labels_uri, ckpt_uri, store)
    run.inputs = inputs
    n_epoch, steps = _per_epoch(run.weights, cfg.batch_size, d.world)
    log.info(
        "cycle %d: %d px, batch %d, %d epochs x %d steps (%d draws/epoch from %d samples), %s, "
        "lr %.4g -> %.4g (%s scaling), clip %s %.3g, device %s x%d",
        cfg.cycle,
        cfg.size,
        cfg.batch_size,
        cfg.epochs,
        steps,
        n_epoch,
        len(run.weights),
        cfg.loss,
        cfg.lr_max * lr_scale(cfg.lr_scaling, d.world),
        cfg.lr_min * lr_scale(cfg.lr_scaling, d.world),
        cfg.lr_scaling,
        cfg.clip_norm_type,
        cfg.clip_norm,
        run.device.type,
        d.world,
    )
    for epoch in range(run.start_epoch, cfg.epochs):
        run.history.append(train_one_epoch(run, cfg, epoch, n_epoch, steps, out))
        last = epoch + 1 == cfg.epochs  # the last epoch is validated by finish()
        due = cfg.val_every and (epoch + 1) % cfg.val_every == 0 and run.val_cache is not None
        if d.main and not last and due:
            run.history[-1]["val"] = _curve_point(validate(run, cfg))
        if d.main:
            save_checkpoint(_state(run, cfg, init, epoch + 1, None, with_optimizer=True), ckpt_uri)
            log.info(
                "cycle %d epoch %d/%d done: loss %.4f, checkpoint written",
                cfg.cycle,
                epoch + 1,
                cfg.epochs,
                run.history[-1]["loss"],
            )
        barrier(d)
    metrics = finish(run, cfg, init, t_start, ckpt_uri, metrics_uri)
    barrier(d)
    teardown(d)
    return metrics


def setup(
    manifest_uri: str,
    data_root: str,
    cfg: TrainConfig,
    d: Dist,
    state: dict | None,
    init: str,
    labels_uri: str,
    ckpt_uri: str,
    store: str = "",
) -> Run:
    """Read the manifest, build the image caches (from ``store`` if given), make the model and
    the optimizer."""
    opened = open_store(store) if store else None
    manifest: Manifest = read_manifest(manifest_uri)
    if labels_uri:
        check_labels(manifest, labels_uri, manifest_uri)
    manifest = manifest.chain(cfg.fold)
    require_store_for_external(manifest, opened)
    train_rows, val_rows = manifest.fold("train"), manifest.fold("val")

    def cache_of(ids: list[str]) -> ImageCache:
        # Once per node: local rank 0 decodes, the other ranks then open what it built.
        return node_first(
            d,
            lambda: build_cache(
                data_root,
                "train",
                ids,
                cfg.size,
                cfg.cache_dir,
                workers=max(cfg.workers, 2),
                skip_bad=cfg.skip_bad,
                store=opened,
            ),
        )

    train_cache = cache_of(list(train_rows["id"]))
    val_cache = cache_of(list(val_rows["id"])) if len(val_rows) else None
    # Rows of the caches (bad samples left out) and their targets and weights.
    kept = train_rows.set_index("id").loc[train_cache.ids]
    y_train = labels_to_matrix(kept["labels"])
    device = device_for(d)

    # Seeded so a run is reproducible and a resumed run continues like an uninterrupted one.
    torch.manual_seed(cfg.seed)
    first = state is None and not init  # pretrained weights only start a chain
    model = create_model(dropout=cfg.dropout, pretrained=cfg.pretrained if first else None)
    if state is not None:
        load_weights(model, state["model"], ckpt_uri)
        norm = state["norm"]
    elif init:
        warm = load_checkpoint(init)
        load_weights(model, warm["model"], init)
        norm = warm["norm"]
        log.info("warm start from %s (cycle %s at %s px)", init, warm.get("cycle"), warm["size"])
    else:
        mean, std = channel_stats(train_cache.array, seed=cfg.seed)
        norm = {"mean": mean, "std": std}
        init_head(model, torch.from_numpy(y_train.mean(axis=0)).float())
    model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    net: torch.nn.Module = model
    if cfg.sync_bn and d.world > 1:
        if device.type != "cuda":
            raise ConfigError("sync_bn needs GPUs: SyncBatchNorm has no CPU (gloo) kernel")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
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
    return Run(
        d,
        device,
        model,
        net,
        optimizer,
        norm,
        train_cache,
        val_cache,
        val_rows,
        y_train,
        kept["weight"].to_numpy(dtype=np.float64),
        history=list(state.get("history", [])) if state is not None else [],
        start_epoch=state["epochs_done"] if state is not None else 0,
    )


def train_one_epoch(
    run: Run, cfg: TrainConfig, epoch: int, n_epoch: int, steps: int, out: str
) -> dict[str, float]:
    """One epoch over a fresh sample list; returns its history entry."""
    d, device = run.d, run.device
    rows = _epoch_rows(run.weights, cfg, epoch, n_epoch, d)
    data = CachedImages(
        run.train_cache, rows, run.y_train, augment=True, seed=cfg.seed, epoch=epoch
    )
    loader = DataLoader(
        data,
        batch_size=cfg.batch_size,
        shuffle=False,
        drop_last=True,
        num_workers=cfg.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    loss_fn = get_loss(cfg.loss)
    mean_t = torch.tensor(run.norm["mean"], device=device)
    std_t = torch.tensor(run.norm["std"], device=device)
    total_steps = steps * cfg.epochs
    max_norm = cfg.clip_norm if cfg.clip_norm > 0 else math.inf
    scale = lr_scale(cfg.lr_scaling, d.world)  # the global batch is d.world x batch_size
    jitter_gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    # Dropout draws from the global generator: one seed per (epoch, rank), so resuming at an
    # epoch boundary replays exactly what an uninterrupted run would have drawn.
    torch.manual_seed((cfg.seed * 1000 + epoch) * 1000 + d.rank)
    run.net.train()
    t0, seen, lr = time.perf_counter(), 0, cfg.lr_max
    losses, norms, trace = [], [], []
    for i, (images, targets) in enumerate(loader):
        step = epoch * steps + i
        lr = cosine_lr(step, total_steps, cfg.lr_max * scale, cfg.lr_min * scale)
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
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = float(
            torch.nn.utils.clip_grad_norm_(
                run.model.parameters(), max_norm, NORM_TYPES[cfg.clip_norm_type]
            )
        )
        run.optimizer.step()
        losses.append(float(loss.detach()))
        norms.append(grad_norm)
        trace.append({"step": step + 1, "loss": losses[-1], "lr": lr, "grad_norm": grad_norm})
        seen += len(images) * d.world
        if d.main and ((i + 1) % cfg.log_every == 0 or i + 1 == steps):
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
    scores = evaluate(probs, y_val, cfg.loss)
    log.info(
        "cycle %d validation: loss %.4f, macro F1 at 0.5 %.4f",
        cfg.cycle,
        scores["loss"],
        scores["macro_f1_at_0.5"],
    )
    return scores


def _curve_point(scores: dict[str, Any]) -> dict[str, float]:
    """What an epoch's history entry keeps of a validation (the per-epoch curve)."""
    return {k: scores[k] for k in ("loss", "macro_f1_at_0.5")}


def finish(
    run: Run, cfg: TrainConfig, init: str, t_start: float, ckpt_uri: str, metrics_uri: str
) -> dict[str, Any]:
    """Validate (rank 0), then write the final checkpoint (marked complete) and metrics.json."""
    skipped = run.train_cache.skipped + (run.val_cache.skipped if run.val_cache else [])
    metrics: dict[str, Any] = {
        "cycle": cfg.cycle,
        "fold": cfg.fold,
        "size": cfg.size,
        "epochs": cfg.epochs,
        "history": run.history,
        "skipped_ids": skipped,
        "norm": run.norm,  # what a model bundle records beside the weights
        "train_samples": len(run.train_cache.ids),
        "config": cfg.to_dict(),
    }
    checksum = check_in_sync(run.d, run.model)
    if run.d.world > 1:
        log.info(
            "cycle %d: weights identical on %d ranks (checksum %.6f)",
            cfg.cycle,
            run.d.world,
            checksum,
        )
    if run.val_cache is not None and run.d.main:
        metrics["val"] = validate(run, cfg)
        if run.history:  # the curve's last point
            run.history[-1]["val"] = _curve_point(metrics["val"])
    metrics["seconds"] = time.perf_counter() - t_start
    if run.d.main:
        save_checkpoint(_state(run, cfg, init, cfg.epochs, metrics, with_optimizer=False), ckpt_uri)
        storage.write_json(metrics_uri, metrics)
    return metrics


def _differs(key: str, saved: Any, now: Any) -> str:
    """'settings lr_max 0.2 -> 0.1', 'manifest_sha256 3f2a... -> 9c1b...'."""
    if isinstance(saved, dict) and isinstance(now, dict):
        for k in sorted(set(saved) | set(now)):
            if saved.get(k) != now.get(k):
                return f"{key} {k}: {saved.get(k)!r} then, {now.get(k)!r} now"
    return f"{key}: {str(saved)[:16]}... then, {str(now)[:16]}... now"


def _state(
    run: Run, cfg: TrainConfig, init: str, epochs_done: int, metrics, with_optimizer: bool
) -> dict:
    state = {
        "arch": ARCH,
        "num_classes": NUM_CLASSES,
        "class_names": list(CLASS_NAMES),
        "model": {k: v.detach().cpu() for k, v in run.model.state_dict().items()},
        "cycle": cfg.cycle,
        "size": cfg.size,
        "config": cfg.to_dict(),
        "init": init,
        "inputs": run.inputs,
        "norm": run.norm,
        "epochs_done": epochs_done,
        "complete": metrics is not None,
        "val_metrics": metrics,
        "history": run.history,
    }
    if with_optimizer:
        state["optimizer"] = run.optimizer.state_dict()
    return state
