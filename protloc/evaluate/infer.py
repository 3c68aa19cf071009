"""The infer step: every snapshot predicts the validation fold and the test ids at its own
training size, with test-time augmentation; the ensemble is the mean over snapshots."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import torch

from protloc.config import InferConfig
from protloc.data.cache import build_cache
from protloc.data.hpa import read_test_ids
from protloc.data.manifest import check_labels, read_manifest
from protloc.errors import ArtifactError, ConfigError
from protloc.evaluate import predictions
from protloc.evaluate.predict import predict
from protloc.model.checkpoint import load_checkpoint
from protloc.model.network import create_model, load_weights
from protloc.storage import join

log = logging.getLogger(__name__)


def snapshot_name(state: dict) -> str:
    """'cycle{I}_{S}px': unique within one chain of cycles."""
    return f"cycle{state['cycle']}_{state['size']}px"


def run_infer(
    manifest_uri: str,
    data_root: str,
    snapshots: list[str],
    out: str,
    cfg: InferConfig,
    *,
    labels_uri: str,
    sample_submission_uri: str,
) -> pd.DataFrame:
    """Write ``{out}/predictions.parquet`` (per-snapshot and ensemble rows); returns the frame.

    Validation ids come from the manifest, test ids from ``sample_submission_uri``; images from
    ``data_root``'s ``train/`` and ``test/`` folders."""
    if not snapshots:
        raise ConfigError("give at least one snapshot checkpoint")
    states = [load_checkpoint(uri) for uri in snapshots]  # all checked before any work
    for uri, state in zip(snapshots, states, strict=True):
        if not state["complete"]:
            raise ArtifactError(
                f"{uri}: cycle {state['cycle']} stopped after epoch {state['epochs_done']} of {state['config']['epochs']}; finish it first"
            )
    names = [snapshot_name(s) for s in states]
    if len(set(names)) != len(names):
        raise ArtifactError(f"two snapshots share a cycle and size: {names}")
    manifest = read_manifest(manifest_uri)
    check_labels(manifest, labels_uri, manifest_uri)
    val_ids = list(manifest.fold("val")["id"])
    test_ids = read_test_ids(sample_submission_uri)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    frames, sums = [], {"val": 0.0, "test": 0.0}
    for name, state in zip(names, states, strict=True):
        model = create_model()
        load_weights(model, state["model"], name)
        model.to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        for split, folder, ids in (("val", "train", val_ids), ("test", "test", test_ids)):
            if not ids:
                continue
            cache = build_cache(
                data_root, folder, ids, state["size"], cfg.cache_dir, workers=max(cfg.workers, 2)
            )
            probs = predict(
                model,
                cache,
                state["norm"],
                cfg.infer_batch_size,
                device,
                tta=cfg.tta,
                workers=cfg.workers,
                label=f"{name} {split}",
            )
            frames.append(predictions.frame(ids, split, name, probs))
            sums[split] = sums[split] + probs.astype(np.float64)
    for split, ids in (("val", val_ids), ("test", test_ids)):
        if ids:
            frames.append(
                predictions.frame(ids, split, predictions.ENSEMBLE, sums[split] / len(states))
            )
    rows = pd.concat(frames, ignore_index=True)
    predictions.write_predictions(rows, join(out, "predictions.parquet"))
    log.info(
        "predicted %d val + %d test ids with %d snapshot(s) x %d TTA in %.1f s",
        len(val_ids),
        len(test_ids),
        len(states),
        cfg.tta,
        time.perf_counter() - t0,
    )
    return rows


def val_scores(rows: pd.DataFrame, manifest_uri: str) -> dict[str, float]:
    """Macro F1 at 0.5 on the validation fold of every snapshot and of the ensemble."""
    from protloc.data.hpa import labels_to_matrix
    from protloc.metrics import macro_f1

    val = read_manifest(manifest_uri).fold("val").set_index("id")
    part = rows[rows["split"] == "val"]
    out = {}
    for name, group in part.groupby("snapshot", sort=False):
        y = labels_to_matrix(val.loc[group["id"], "labels"])
        out[str(name)] = macro_f1(y, predictions.probabilities(group), 0.5)
    return out
