"""The train step's work: exactly one SGDR cycle at one image size.

A checkpoint is written after every epoch; rerunning the same command resumes from the last
completed epoch, and rerunning a finished cycle does nothing. Optional warm start from the
previous cycle (at another size). Under torchrun (WORLD_SIZE > 1): DistributedDataParallel, and
only rank 0 writes. The epoch itself is ``protloc.train.epoch``; what a checkpoint holds and when
it may be resumed, ``protloc.train.resume``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch

from protloc import schemas, storage
from protloc.config import TrainConfig
from protloc.data.cache import ImageCache, build_cache
from protloc.data.crops import source_size
from protloc.data.hpa import labels_to_matrix, labels_uri
from protloc.data.identity import DataListing
from protloc.data.manifest import check_labels, read_manifest, require_store_for_external
from protloc.data.store import Store
from protloc.data.transforms import channel_stats
from protloc.distributed import (
    Dist,
    barrier,
    check_in_sync,
    device_for,
    init_distributed,
    lr_scale,
    node_first,
    teardown,
)
from protloc.errors import ConfigError
from protloc.folders import CHECKPOINT, METRICS
from protloc.model.checkpoint import load_checkpoint, pooling, save_checkpoint
from protloc.model.network import create_model, init_head, load_weights
from protloc.schemas import CycleMetrics
from protloc.train.epoch import (
    Run,
    TrainingError,
    curve_point,
    per_epoch,
    train_one_epoch,
    validate,
)
from protloc.train.resume import check_existing, check_resumable, checkpoint_state

__all__ = ["TrainingError", "check_existing", "train_cycle"]

log = logging.getLogger(__name__)


def train_cycle(
    cfg: TrainConfig,
    manifest_uri: str,
    data: DataListing,
    *,
    init: str = "",
    inputs: dict[str, Any] | None = None,
    store: Store | None = None,
    out: str,
) -> dict[str, Any]:
    """Run (or resume, or skip) one SGDR cycle; writes checkpoint.pt and metrics.json to ``out``.

    ``data``: the task's listing of its data root (its labels must match the manifest's).
    ``store``: the prepare step's store; the images then come from it, not from decoding.
    ``init``: the previous cycle's checkpoint to warm-start from (empty: a new model, from
    ``cfg.pretrained`` or from scratch). ``inputs``: what the result depends on, by content
    (``protloc.steps.train.cycle_inputs``); stored in the checkpoint, and a checkpoint already
    in ``out`` is resumed or reused only when they are the same, else refused naming what
    differs.
    """
    ckpt_uri, metrics_uri = storage.join(out, CHECKPOINT), storage.join(out, METRICS)
    d = init_distributed()
    state = _existing(cfg, ckpt_uri, init, inputs)
    if state is not None and state["complete"]:
        log.info(
            "cycle %d at %d px is already complete in %s: nothing to do", cfg.cycle, cfg.size, out
        )
        if d.main and not storage.exists(metrics_uri):
            schemas.write(CycleMetrics, metrics_uri, state["val_metrics"])
        return state["val_metrics"]
    t_start = time.perf_counter()
    run = setup(cfg, manifest_uri, data, d, state, init, ckpt_uri, store)
    run.inputs = inputs
    n_epoch, steps = per_epoch(run.weights, cfg.batch_size, d.world)
    _log_start(cfg, run, n_epoch, steps)
    for epoch in range(run.start_epoch, cfg.epochs):
        run.history.append(train_one_epoch(run, cfg, epoch, n_epoch, steps, out))
        last = epoch + 1 == cfg.epochs  # the last epoch is validated by finish()
        due = cfg.val_every and (epoch + 1) % cfg.val_every == 0 and run.val_cache is not None
        if d.main and not last and due:
            run.history[-1]["val"] = curve_point(validate(run, cfg))
        if d.main:
            save_checkpoint(_state(run, cfg, init, epoch + 1, None), ckpt_uri)
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


def _existing(
    cfg: TrainConfig, ckpt_uri: str, init: str, inputs: dict[str, Any] | None
) -> dict | None:
    """The checkpoint already in the output folder (made from the same inputs, else refused),
    or None."""
    if not storage.exists(ckpt_uri):
        return None
    state = load_checkpoint(ckpt_uri)
    check_resumable(state, cfg, init, inputs, ckpt_uri)
    if not state["complete"]:
        log.info(
            "resuming cycle %d from %s after epoch %d of %d",
            cfg.cycle,
            ckpt_uri,
            state["epochs_done"],
            cfg.epochs,
        )
    return state


def _log_start(cfg: TrainConfig, run: Run, n_epoch: int, steps: int) -> None:
    scale = lr_scale(cfg.lr_scaling, run.d.world)
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
        cfg.lr_max * scale,
        cfg.lr_min * scale,
        cfg.lr_scaling,
        cfg.clip_norm_type,
        cfg.clip_norm,
        run.device.type,
        run.d.world,
    )
    if run.train_cache.size != cfg.size or cfg.crop_jitter > 0:
        log.info(
            "training on random %d-px crops of %d-px samples, window side +- %g",
            cfg.size,
            run.train_cache.size,
            cfg.crop_jitter,
        )


def setup(
    cfg: TrainConfig,
    manifest_uri: str,
    data: DataListing,
    d: Dist,
    state: dict | None,
    init: str,
    ckpt_uri: str,
    store: Store | None,
) -> Run:
    """Read the manifest, build the image caches (from ``store`` if given), make the model and
    the optimizer."""
    manifest = read_manifest(manifest_uri)
    check_labels(manifest, labels_uri(data.root), manifest_uri)
    manifest = manifest.chain(cfg.fold)
    require_store_for_external(manifest, store)
    train_rows, val_rows = manifest.fold("train"), manifest.fold("val")
    # Training crops are cut from samples at crop x the cycle's size; validation sees whole ones.
    side = source_size(cfg.size, cfg.crop, store.size if store else None)
    train_cache = _cache(cfg, d, data, list(train_rows["id"]), store, side)
    val_ids = list(val_rows["id"])
    val_cache = _cache(cfg, d, data, val_ids, store, cfg.size) if val_ids else None
    # Rows of the caches (bad samples left out) and their targets and weights.
    kept = train_rows.set_index("id").loc[train_cache.ids]
    y_train = labels_to_matrix(kept["labels"])
    device = device_for(d)
    model, norm = _model(cfg, state, init, ckpt_uri, train_cache, y_train)
    model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    model, net = _parallel(cfg, d, device, model)
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


def _cache(
    cfg: TrainConfig,
    d: Dist,
    data: DataListing,
    ids: list[str],
    store: Store | None,
    size: int,
) -> ImageCache:
    """The image cache of ``ids`` at ``size`` px, built once per node: local rank 0 builds it,
    the other ranks then open what it built."""
    return node_first(
        d,
        lambda: build_cache(
            data,
            "train",
            ids,
            size,
            cfg.cache_dir,
            workers=max(cfg.workers, 2),
            skip_bad=cfg.skip_bad,
            store=store,
        ),
    )


def _model(
    cfg: TrainConfig,
    state: dict | None,
    init: str,
    ckpt_uri: str,
    train_cache: ImageCache,
    y_train: np.ndarray,
) -> tuple[torch.nn.Module, dict[str, list[float]]]:
    """The network and its input normalisation: resumed, warm-started, or new (the head at the
    classes' prior, the normalisation measured on the training images)."""
    # Seeded so a run is reproducible and a resumed run continues like an uninterrupted one.
    torch.manual_seed(cfg.seed)
    first = state is None and not init  # pretrained weights only start a chain
    model = create_model(
        cfg.arch, dropout=cfg.dropout, pretrained=cfg.pretrained if first else None, pool=cfg.pool
    )
    if state is not None:
        load_weights(model, state["model"], ckpt_uri)
        return model, state["norm"]
    if init:
        warm = load_checkpoint(init)
        if (warm["arch"], pooling(warm)) != (cfg.arch, cfg.pool):
            raise ConfigError(
                f"arch, pool: cycle {cfg.cycle} is a {cfg.arch} with {cfg.pool} pooling but "
                f"starts from {init}, a {warm['arch']} with {pooling(warm)} pooling: a chain "
                "keeps one network"
            )
        load_weights(model, warm["model"], init)
        log.info("warm start from %s (cycle %s at %s px)", init, warm.get("cycle"), warm["size"])
        return model, warm["norm"]
    mean, std = channel_stats(train_cache.array, seed=cfg.seed)
    init_head(model, torch.from_numpy(y_train.mean(axis=0)).float())
    return model, {"mean": mean, "std": std}


def _parallel(
    cfg: TrainConfig, d: Dist, device: torch.device, model: torch.nn.Module
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(the model, what the epochs call): SyncBatchNorm and DDP across ranks when asked."""
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
    return model, net


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
            run.history[-1]["val"] = curve_point(metrics["val"])
    metrics["seconds"] = time.perf_counter() - t_start
    if run.d.main:
        save_checkpoint(_state(run, cfg, init, cfg.epochs, metrics), ckpt_uri)
        schemas.write(CycleMetrics, metrics_uri, metrics)
    return metrics


def _state(run: Run, cfg: TrainConfig, init: str, epochs_done: int, metrics) -> dict:
    """The checkpoint now: resumable (with the optimizer) until the cycle is complete."""
    return checkpoint_state(
        {k: v.detach().cpu() for k, v in run.model.state_dict().items()},
        cfg,
        init=init,
        inputs=run.inputs,
        norm=run.norm,
        epochs_done=epochs_done,
        history=run.history,
        metrics=metrics,
        optimizer_state=run.optimizer.state_dict() if metrics is None else None,
    )
