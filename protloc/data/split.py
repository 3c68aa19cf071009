"""The split step: iterative multilabel stratification and per-sample resampling weights.

Validation gets ``val_fraction`` of the samples by ``iterstrat``'s
``MultilabelStratifiedShuffleSplit`` (Sechidis et al., the paper's reference [15]). In the train
fold, a sample that carries a *rare* class (fewer than ``rare_below`` training samples) is drawn
``rare_factor`` times per epoch. The *dominant* classes (present in at least ``dominant_share`` of
training samples: Nucleoplasm and Cytosol on the real data) are undersampled: with
``resampling="class"`` (the paper's "by a factor of two") each one's expected draws are scaled by
``dominant_factor``; with ``"sample"`` only a sample whose labels are all dominant is drawn
``dominant_factor`` times. Every other sample is drawn once. The weight is the expected number of draws
per epoch; the train step turns it into a fresh sample list each epoch (protloc.data.sampling).
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from protloc import __version__, storage
from protloc.classes import CLASS_NAMES, NUM_CLASSES
from protloc.config import SplitConfig
from protloc.data.hpa import labels_to_matrix, parse_labels
from protloc.data.manifest import COMPETITION, HOLDOUT, Manifest, write_manifest
from protloc.errors import ConfigError, DataError
from protloc.folders import CLASS_DISTRIBUTION, COOCCURRENCE, MANIFEST, SPLIT_STATS

log = logging.getLogger(__name__)


def stratified_split(y: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """A boolean mask of validation rows for the (N, C) indicator matrix ``y``."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

    n = len(y)
    if round(n * val_fraction) < 1 or round(n * (1 - val_fraction)) < 1:
        raise ConfigError(f"val_fraction {val_fraction} leaves an empty fold for {n} samples")
    splitter = MultilabelStratifiedShuffleSplit(
        n_splits=1, test_size=val_fraction, random_state=seed
    )
    _, val_idx = next(splitter.split(np.zeros(n), y))
    is_val = np.zeros(n, dtype=bool)
    is_val[val_idx] = True
    if not 0 < is_val.sum() < n:  # iterstrat can leave a fold empty on very small sets
        raise ConfigError(
            f"val_fraction {val_fraction} split {n} samples into {n - int(is_val.sum())} train "
            f"and {int(is_val.sum())} validation: both folds need samples (more data, or another "
            f"val_fraction)"
        )
    return is_val


def class_roles(y_train: np.ndarray, params: SplitConfig) -> tuple[np.ndarray, np.ndarray]:
    """(rare, dominant) boolean masks over classes, from training-fold counts."""
    counts = y_train.sum(axis=0)
    rare = (counts > 0) & (counts < params.rare_below)
    dominant = counts >= params.dominant_share * len(y_train)
    return rare, dominant & ~rare


def rare_upsampled_draws(y_train: np.ndarray, rare: np.ndarray, rare_factor: float) -> np.ndarray:
    """Each class's expected draws per epoch with the rare classes' upsampling alone (what the
    dominant classes' undersampling is measured against)."""
    has_rare = (y_train[:, rare] > 0).any(axis=1)
    return (y_train * np.where(has_rare, rare_factor, 1.0)[:, None]).sum(axis=0)


def resampling_weights(
    y_train: np.ndarray, rare: np.ndarray, dominant: np.ndarray, params: SplitConfig
) -> np.ndarray:
    """Expected draws per epoch for each training sample (float32): every sample with a rare class
    ``rare_factor`` times, the dominant classes undersampled by ``params.resampling``'s rule."""
    has_rare = (y_train[:, rare] > 0).any(axis=1)
    weights = np.ones(len(y_train), dtype=np.float64)
    weights[has_rare] = params.rare_factor
    if params.resampling == "sample":
        only_dominant = (y_train[:, ~dominant].sum(axis=1) == 0) & (y_train.sum(axis=1) > 0)
        weights[only_dominant & ~has_rare] = params.dominant_factor
    elif dominant.any():
        weights = _undersample_classes(
            y_train, weights, ~has_rare, dominant, params.dominant_factor
        )
    return weights.astype(np.float32)


def _undersample_classes(
    y: np.ndarray, weights: np.ndarray, free: np.ndarray, dominant: np.ndarray, factor: float
) -> np.ndarray:
    """Scale each dominant class's expected draws by ``factor`` by reweighting only the ``free``
    samples (those without a rare class, which keep their x rare_factor).

    A free sample's weight is the product of one multiplier per dominant class it carries, found
    by iterative proportional fitting (raking): with Nucleoplasm and Cytosol on one image, one
    multiplier per class cannot be set alone. If a class's fixed (rare) draws already exceed its
    target, its free samples go to 0 and the achieved factor (in the split's stats) says so.
    """
    yd = y[:, dominant].astype(bool)
    carriers = yd & free[:, None]
    fixed = ((yd & ~free[:, None]) * weights[:, None]).sum(axis=0)
    target = np.maximum(factor * (yd * weights[:, None]).sum(axis=0) - fixed, 0.0)
    free_weights = np.ones(len(y))
    for _ in range(1000):
        for c in range(yd.shape[1]):  # each class's carriers scaled to its target in turn
            current = free_weights[carriers[:, c]].sum()
            if current > 0:
                free_weights[carriers[:, c]] *= target[c] / current
        if np.allclose(free_weights @ carriers, target, rtol=1e-9, atol=1e-9):
            break
    out = weights.copy()
    rows = carriers.any(axis=1)
    out[rows] = free_weights[rows]
    return out


def kfold_assignment(y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each row's fold (int8, 0..folds-1) by iterstrat's MultilabelStratifiedKFold, seeded."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    n = len(y)
    if n < folds:
        raise ConfigError(f"folds {folds} needs at least {folds} labelled samples, got {n}")
    splitter = MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    out = np.full(n, -1, dtype=np.int8)
    for k, (_, held) in enumerate(splitter.split(np.zeros(n), y)):
        out[held] = k
    empty = sorted(set(range(folds)) - set(out.tolist()))
    if empty:  # iterstrat can leave a fold empty on very small sets
        raise ConfigError(f"folds {folds} left fold {empty[0]} empty for {n} samples")
    return out


def make_manifest(labels: pd.DataFrame, params: SplitConfig) -> pd.DataFrame:
    """The manifest rows (id, labels, fold, weight, fold_index) for a labels frame (id, labels).

    Holdout (``folds`` 1): the train rows get weights, validation rows 0. K folds: every row is a
    training row of F-1 chains, so every row gets its weight, from class roles counted on all
    rows (a chain's training rows are (F-1)/F of them: the same roles, up to the margin).

    A ``source`` column (external data) is kept; with ``val_on_competition`` only the data
    root's rows (source '') are held out, external rows always train."""
    y = labels_to_matrix(labels["labels"])
    source = labels["source"].to_numpy() if "source" in labels else np.full(len(y), COMPETITION)
    eligible = (source == COMPETITION) if params.val_on_competition else np.ones(len(y), bool)
    is_val = np.zeros(len(y), dtype=bool)
    fold_index = np.full(len(y), HOLDOUT, dtype=np.int8)
    if params.folds == 1:
        is_val[eligible] = stratified_split(y[eligible], params.val_fraction, params.seed)
    else:
        fold_index[eligible] = kfold_assignment(y[eligible], params.folds, params.seed)
    rare, dominant = class_roles(y[~is_val], params)
    weights = np.zeros(len(y), dtype=np.float32)
    weights[~is_val] = resampling_weights(y[~is_val], rare, dominant, params)
    return pd.DataFrame(
        {
            "id": labels["id"].to_numpy(),
            "labels": labels["labels"].to_numpy(),
            "fold": np.where(is_val, "val", "train"),
            "weight": weights,
            "fold_index": fold_index,
            "source": source,
        }
    )


def split_stats(manifest: pd.DataFrame, params: SplitConfig) -> dict[str, Any]:
    """Per-class train/val counts and expected draws per epoch, plus the imbalance before/after."""
    y = labels_to_matrix(manifest["labels"])
    train = (manifest["fold"] == "train").to_numpy()
    w = manifest["weight"].to_numpy(dtype=np.float64)
    train_counts = y[train].sum(axis=0)
    val_counts = y[~train].sum(axis=0)
    draws = (y[train] * w[train, None]).sum(axis=0)
    rare, dominant = class_roles(y[train], params)
    present = train_counts > 0
    # What undersampling did: each dominant class's draws against its draws with the rare
    # classes' upsampling alone (params.dominant_factor when the rule reached its target).
    upsampled = rare_upsampled_draws(y[train], rare, params.rare_factor)

    def ratio(values: np.ndarray) -> float:
        return float(values[present].max() / values[present].min()) if present.any() else None

    folds = Manifest(manifest, {}).folds
    per_fold = (
        [y[(manifest["fold_index"] == k).to_numpy()].sum(axis=0) for k in range(folds)]
        if folds > 1
        else []
    )
    return {
        "folds": folds,
        "samples": {
            "train": int(train.sum()),
            "val": int((~train).sum()),
            **(
                {"per_fold": [int((manifest["fold_index"] == k).sum()) for k in range(folds)]}
                if folds > 1
                else {}
            ),
            "external": int((manifest["source"] != COMPETITION).sum()),
            "draws_per_epoch": float(w[train].sum()),
        },
        "rare_classes": [int(c) for c in np.flatnonzero(rare)],
        "dominant_classes": [int(c) for c in np.flatnonzero(dominant)],
        "resampling": params.resampling,
        "dominant_draws_factor": {
            str(c): round(float(draws[c] / upsampled[c]), 4) for c in np.flatnonzero(dominant)
        },
        "commonest_to_rarest": {"before": ratio(train_counts.astype(float)), "after": ratio(draws)},
        "classes": [
            {
                "index": c,
                "name": CLASS_NAMES[c],
                "train": int(train_counts[c]),
                "val": int(val_counts[c]),
                "draws_per_epoch": round(float(draws[c]), 3),
                **({"per_fold": [int(f[c]) for f in per_fold]} if per_fold else {}),
            }
            for c in range(NUM_CLASSES)
        ],
    }


def read_all_labels(labels_uri: str, params: SplitConfig) -> tuple[pd.DataFrame, bytes, list]:
    """The data root's labels and each external root's (``source``: '' or that root), the data
    root's raw bytes, and each external labels file's SHA-256. An Id in two sources is refused,
    naming both files."""
    from protloc.data.hpa import labels_uri as labels_of
    from protloc.setting_lists import external_roots

    raw = storage.read_bytes(labels_uri)
    frames = [parse_labels(raw, source=str(labels_uri)).assign(source=COMPETITION)]
    seen = dict.fromkeys(frames[0]["id"], str(labels_uri))
    recorded = []
    for root in external_roots(params.external):
        uri = labels_of(root)
        data = storage.read_bytes(uri)
        frame = parse_labels(data, source=uri).assign(source=root)
        for sample_id in frame["id"]:
            if sample_id in seen:
                raise DataError(f"{uri}: Id {sample_id!r} is also in {seen[sample_id]}")
            seen[sample_id] = uri
        frames.append(frame)
        recorded.append(
            {"root": root, "labels_sha256": hashlib.sha256(data).hexdigest(), "rows": len(frame)}
        )
        log.info("external data %s: %d labelled samples", root, len(frame))
    return pd.concat(frames, ignore_index=True), raw, recorded


def run_split(params: SplitConfig, labels_uri: str, *, out: str) -> dict[str, Any]:
    """The whole step: read labels (and the external roots'), split, write manifest.parquet,
    stats.json, two plots and report.html."""
    from protloc.report.pages import split_page
    from protloc.report.plot_worker import BackgroundPlots

    t0 = time.perf_counter()
    with BackgroundPlots() as figures:  # imports matplotlib in a helper while this splits
        labels, raw, external = read_all_labels(labels_uri, params)
        if len(labels) < 2:
            raise DataError(
                f"{labels_uri}: need at least 2 labelled samples to split, got {len(labels)}"
            )
        manifest = make_manifest(labels, params)
        meta = {
            "split": params.to_dict(),
            "labels_sha256": hashlib.sha256(raw).hexdigest(),
            "external": external,
            "protloc_version": __version__,
        }
        stats = split_stats(manifest, params)
        y_all = labels_to_matrix(manifest["labels"])
        write_manifest(manifest, meta, storage.join(out, MANIFEST))
        storage.write_json(storage.join(out, SPLIT_STATS), stats)
        figures.render("class_distribution", storage.join(out, CLASS_DISTRIBUTION), stats)
        figures.render("cooccurrence", storage.join(out, COOCCURRENCE), y_all)
        figures.close()
        split_page(stats, out)
    log.info(
        "split %d samples: %d train, %d val; %d rare classes x%g, %d dominant x%g (%s rule, "
        "achieved %s); commonest/rarest %.0f -> %.1f; %.2f s",
        len(manifest),
        stats["samples"]["train"],
        stats["samples"]["val"],
        len(stats["rare_classes"]),
        params.rare_factor,
        len(stats["dominant_classes"]),
        params.dominant_factor,
        params.resampling,
        stats["dominant_draws_factor"],
        stats["commonest_to_rarest"]["before"],
        stats["commonest_to_rarest"]["after"],
        time.perf_counter() - t0,
    )
    return stats
