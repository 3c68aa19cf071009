"""The infer step: every snapshot predicts the validation fold and the test ids at its own
training size, with test-time augmentation; the ensemble is the mean over snapshots."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import torch

from protloc.classes import NUM_CLASSES
from protloc.config import InferConfig
from protloc.data.cache import build_cache
from protloc.data.hpa import labels_uri, read_test_ids, sample_submission_uri
from protloc.data.identity import DataListing
from protloc.data.manifest import (
    Manifest,
    check_labels,
    read_manifest,
    require_store_for_external,
)
from protloc.data.store import Store
from protloc.distributed import Dist, device_for, init_distributed, teardown
from protloc.errors import ArtifactError, ConfigError
from protloc.evaluate import predictions
from protloc.evaluate.ensemble import snapshot_name
from protloc.folders import PREDICTIONS
from protloc.model.checkpoint import load_checkpoint, pooling
from protloc.model.inference import predict
from protloc.model.network import create_model, load_weights
from protloc.recipes import recipe_name
from protloc.storage import join

log = logging.getLogger(__name__)


def name_of(state: dict) -> str:
    """A checkpoint's snapshot name (see :func:`protloc.evaluate.ensemble.snapshot_name`)."""
    config = state["config"]
    return snapshot_name(
        state["cycle"], state["size"], config.get("fold", -1), recipe_name(config.get("recipe", ""))
    )


def gather(d: Dist, mine: dict) -> list[dict] | None:
    """Every rank's predictions on rank 0 (in rank order); None on the other ranks."""
    if d.world == 1:
        return [mine]
    import torch.distributed as dist

    parts: list = [None] * d.world
    dist.all_gather_object(parts, mine)
    return parts if d.main else None


def load_snapshots(snapshots: list[str]) -> tuple[list[str], list[dict]]:
    """Every snapshot's name and checkpoint, all checked before any work: complete, and no two
    of the same cycle and size."""
    if not snapshots:
        raise ConfigError("give at least one snapshot checkpoint")
    states = [load_checkpoint(uri) for uri in snapshots]
    for uri, state in zip(snapshots, states, strict=True):
        if not state["complete"]:
            raise ArtifactError(
                f"{uri}: cycle {state['cycle']} stopped after epoch {state['epochs_done']} "
                f"of {state['config']['epochs']}; finish it first"
            )
    names = [name_of(s) for s in states]
    if len(set(names)) != len(names):
        raise ArtifactError(f"two snapshots share a cycle and size: {names}")
    return names, states


def predict_share(
    d: Dist,
    names: list[str],
    states: list[dict],
    splits: dict[str, tuple[str, list[str]]],
    data: DataListing,
    cfg: InferConfig,
    store: Store | None = None,
) -> dict[tuple[str, str], np.ndarray]:
    """This rank's predictions: every ``d.world``-th id of each split (``split -> (folder,
    ids)``), from its own image cache of them, for every snapshot."""
    device = device_for(d)
    mine: dict[tuple[str, str], np.ndarray] = {}
    for name, state in zip(names, states, strict=True):
        model = create_model(state["arch"], pool=pooling(state))
        load_weights(model, state["model"], name)
        model.to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        for split, (folder, ids) in splits.items():
            share = ids[d.rank :: d.world]
            if not share:
                continue
            cache = build_cache(
                data,
                folder,
                share,
                state["size"],
                cfg.cache_dir,
                workers=max(cfg.workers, 2),
                store=store,
            )
            rank = f" (rank {d.rank} of {d.world})" if d.world > 1 else ""
            mine[name, split] = predict(
                model,
                cache,
                state["norm"],
                cfg.infer_batch_size,
                device,
                tta=cfg.tta,
                workers=cfg.workers,
                label=f"{name} {split}{rank}",
            )
    return mine


def _merge(
    parts: list[dict],
    names: list[str],
    splits: dict[str, tuple[str, list[str]]],
    world: int,
    fold: int,
) -> pd.DataFrame:
    """The ranks' shares (rank r predicted every ``world``-th id from r) as one predictions
    frame: each snapshot's rows, then the ensemble's (their mean)."""
    frames = []
    for split, (_, ids) in splits.items():
        total = np.zeros((len(ids), NUM_CLASSES), dtype=np.float64)
        for name in names:
            probs = np.empty((len(ids), NUM_CLASSES), dtype=np.float32)
            for rank, part in enumerate(parts):
                if (name, split) in part:
                    probs[rank::world] = part[name, split]
            frames.append(predictions.frame(ids, split, name, probs, fold))
            total += probs
        frames.append(predictions.frame(ids, split, predictions.ENSEMBLE, total / len(names), fold))
    return pd.concat(frames, ignore_index=True)


def check_lineage(names: list[str], states: list[dict], manifest: Manifest, uri: str) -> None:
    """Refuse snapshots trained on a split that assigns samples to folds otherwise: their
    validation rows could include samples they trained on. Each checkpoint records its
    manifest's fold assignment (``Manifest.assignment_sha256``)."""
    want = manifest.assignment_sha256
    for name, state in zip(names, states, strict=True):
        had = (state.get("inputs") or {}).get("assignment_sha256")
        if had is not None and had != want:
            raise ArtifactError(
                f"snapshot {name} was trained on a split that assigns samples to folds "
                f"otherwise than {uri} ({had[:12]}... there, {want[:12]}... here): give infer "
                "the split its chain was trained on"
            )


def run_infer(
    cfg: InferConfig,
    manifest_uri: str,
    data: DataListing,
    snapshots: list[str],
    *,
    store: Store | None = None,
    out: str,
) -> pd.DataFrame:
    """Write ``{out}/predictions.parquet`` (per-snapshot and ensemble rows); returns the frame
    (empty on ranks other than 0, which only predict their share).

    Validation ids come from the manifest, test ids from the data root's sample submission;
    images from its ``train/`` and ``test/`` folders (``data``), or from ``store``."""
    names, states = load_snapshots(snapshots)
    manifest = read_manifest(manifest_uri)
    check_lineage(names, states, manifest, manifest_uri)
    check_labels(manifest, labels_uri(data.root), manifest_uri)
    manifest = manifest.chain(cfg.fold)
    trained = {s["config"].get("fold", -1) for s in states}
    if trained != {cfg.fold}:
        raise ArtifactError(
            f"infer for fold {cfg.fold} was given snapshots trained for fold(s) {sorted(trained)}: "
            "out-of-fold predictions need the chain that held this fold out"
        )
    splits = {
        "val": ("train", list(manifest.fold("val")["id"])),
        "test": ("test", read_test_ids(sample_submission_uri(data.root))),
    }
    splits = {k: v for k, v in splits.items() if v[1]}
    d = init_distributed()
    t0 = time.perf_counter()
    require_store_for_external(manifest, store)
    parts = gather(d, predict_share(d, names, states, splits, data, cfg, store))
    teardown(d)
    if parts is None:  # not rank 0
        return pd.DataFrame()
    rows = _merge(parts, names, splits, d.world, cfg.fold)
    predictions.write_predictions(rows, join(out, PREDICTIONS))
    log.info(
        "predicted %d val + %d test ids with %d snapshot(s) x %d TTA on %d rank(s) in %.1f s",
        len(splits.get("val", ("", []))[1]),
        len(splits.get("test", ("", []))[1]),
        len(states),
        cfg.tta,
        d.world,
        time.perf_counter() - t0,
    )
    return rows


def val_scores(rows: pd.DataFrame, manifest_uri: str, fold: int = -1) -> dict[str, float]:
    """Macro F1 at 0.5 on the validation rows (of chain ``fold``) of every snapshot and of the
    ensemble."""
    from protloc.data.hpa import labels_to_matrix
    from protloc.metrics import macro_f1

    val = read_manifest(manifest_uri).chain(fold).fold("val").set_index("id")
    part = rows[rows["split"] == "val"]
    out = {}
    for name, group in part.groupby("snapshot", sort=False):
        y = labels_to_matrix(val.loc[group["id"], "labels"])
        out[str(name)] = macro_f1(y, predictions.probabilities(group), 0.5)
    return out
