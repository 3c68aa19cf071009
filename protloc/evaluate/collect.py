"""The collect step of a K-fold run: the folds' predictions as one predictions file (no torch).

Each chain of cycles predicted the fold it held out ('val' rows, fold k) and the test ids. The
collected file keeps every snapshot's rows; its 'val' ensemble rows are the out-of-fold
predictions, every labelled sample exactly once, and its 'test' ensemble rows are the mean over
folds x snapshots (fold -1). The thresholds and submit steps read it like a holdout run's.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pandas as pd

from protloc import storage
from protloc.config import CollectConfig
from protloc.data.hpa import labels_to_matrix
from protloc.data.manifest import Manifest, read_manifest
from protloc.errors import ArtifactError
from protloc.evaluate import predictions as P
from protloc.folders import PREDICTIONS
from protloc.metrics import macro_f1

log = logging.getLogger(__name__)


def _fold_of(rows: pd.DataFrame, source: str) -> int:
    folds = set(rows["fold"].tolist())
    if len(folds) != 1 or min(folds) < 0:
        raise ArtifactError(f"{source}: not one chain's predictions (folds {sorted(folds)})")
    return int(folds.pop())


def _by_fold(parts: dict[str, pd.DataFrame], folds: int) -> dict[int, tuple[str, pd.DataFrame]]:
    """Each fold's (source, frame): every fold of ``folds`` exactly once."""
    by_fold: dict[int, tuple[str, pd.DataFrame]] = {}
    for source, rows in parts.items():
        k = _fold_of(rows, source)
        if k in by_fold:
            raise ArtifactError(f"fold {k} predicted twice: {by_fold[k][0]} and {source}")
        by_fold[k] = (source, rows)
    missing = sorted(set(range(folds)) - set(by_fold))
    if missing:
        raise ArtifactError(
            f"the predictions of fold(s) {missing} of {folds} are missing "
            f"(got {len(parts)} chain(s))"
        )
    return by_fold


def _check_out_of_fold(oof: pd.DataFrame, held: pd.DataFrame) -> None:
    """Every held-out id predicted out of fold exactly once."""
    counts = oof["id"].value_counts()
    twice = counts[counts > 1]
    if len(twice):
        raise ArtifactError(f"id {twice.index[0]!r} was predicted out of fold more than once")
    never = sorted(set(held.index) - set(oof["id"]))
    if never:
        raise ArtifactError(f"id {never[0]!r} has no out-of-fold prediction ({len(never)} ids)")


def _check_fold_ids(
    source: str, rows: pd.DataFrame, manifest: Manifest, k: int, manifest_uri: str
) -> None:
    """Fold k's chain predicted exactly the rows the manifest puts in fold k (a chain of another
    split's fold would otherwise be scored on rows it trained on)."""
    predicted = set(rows.loc[rows["split"] == "val", "id"])
    own = set(manifest.frame.loc[manifest.frame["fold_index"] == k, "id"])
    if predicted != own:
        stray = sorted(predicted - own) or sorted(own - predicted)
        raise ArtifactError(
            f"{source}: its validation ids are not fold {k}'s of {manifest_uri} (e.g. "
            f"{stray[0]!r}): predictions of a chain of another split"
        )


def collect(
    parts: dict[str, pd.DataFrame], manifest_uri: str
) -> tuple[pd.DataFrame, float, list[str]]:
    """The folds' prediction frames (source -> frame) as one frame, the out-of-fold ensemble's
    macro F1 at 0.5, and the sources in fold order. Refuses a missing or repeated fold, an id
    predicted out of fold twice or never, and chains that predicted different test ids."""
    manifest = read_manifest(manifest_uri)
    if not manifest.kfold:
        raise ArtifactError(f"{manifest_uri}: a holdout manifest; collect gathers K-fold runs")
    by_fold = _by_fold(parts, manifest.folds)
    frames, test_snapshots = [], []
    test_ids: list[str] | None = None
    for k in sorted(by_fold):
        source, rows = by_fold[k]
        _check_fold_ids(source, rows, manifest, k, manifest_uri)
        frames.append(rows[rows["split"] == "val"])
        test = rows[(rows["split"] == "test") & (rows["snapshot"] != P.ENSEMBLE)]
        frames.append(test)
        for _, group in test.groupby("snapshot", sort=False):
            ids = list(group["id"])
            if test_ids is None:
                test_ids = ids
            elif ids != test_ids:
                raise ArtifactError(f"{source}: its test ids differ from the other folds'")
            test_snapshots.append(P.probabilities(group))
    oof = pd.concat([f[f["snapshot"] == P.ENSEMBLE] for f in frames if len(f)])
    oof = oof[oof["split"] == "val"]
    held = manifest.held_out().set_index("id")
    _check_out_of_fold(oof, held)
    if test_snapshots:
        mean = np.mean(test_snapshots, axis=0)
        frames.append(P.frame(test_ids or [], "test", P.ENSEMBLE, mean, -1))
    rows = pd.concat(frames, ignore_index=True)
    y = labels_to_matrix(held.loc[oof["id"], "labels"])
    f1 = macro_f1(y, P.probabilities(oof), 0.5)
    log.info(
        "collected %d folds: %d out-of-fold predictions (macro F1 %.4f at 0.5), %d test ids "
        "averaged over %d snapshots",
        len(by_fold),
        len(oof),
        f1,
        len(test_ids or []),
        len(test_snapshots),
    )
    return rows, f1, [by_fold[k][0] for k in sorted(by_fold)]


def run_collect(
    cfg: CollectConfig, chains: dict[str, dict[str, Any]], manifest_uri: str, *, out: str
) -> dict[str, Any]:
    """The whole step: ``chains`` maps each chain's predictions file to its snapshot list
    (``snapshots.json``: snapshots, each one's F1 on its fold, TTA). Writes
    ``{out}/predictions.parquet``; returns the collected snapshot list (every chain's
    snapshots, F1s and the out-of-fold ensemble's, the TTA, the chains' folds in order)."""
    parts = {uri: P.read_predictions(uri) for uri in chains}
    rows, f1, order = collect(parts, manifest_uri)
    P.write_predictions(rows, storage.join(out, PREDICTIONS))
    snapshots, scores = [], {}
    for uri in order:
        snapshots += chains[uri]["snapshots"]
        scores.update(
            {k: v for k, v in chains[uri].get("val_macro_f1_at_0.5", {}).items() if k != P.ENSEMBLE}
        )
    scores[P.ENSEMBLE] = f1
    tta = {doc.get("tta") for doc in chains.values()}
    recipes = {json.dumps(doc.get("recipe"), sort_keys=True) for doc in chains.values()}
    if len(recipes) > 1:
        raise ArtifactError(f"the folds' chains are of different recipes: {sorted(recipes)}")
    recipe = json.loads(recipes.pop())
    return {
        **({"recipe": recipe} if recipe else {}),
        "snapshots": snapshots,
        "val_macro_f1_at_0.5": scores,
        "tta": tta.pop() if len(tta) == 1 else None,
        "order": order,
    }
