"""The Kaggle submission (no torch): ``Id,Predicted`` with space-separated class indices, ids in
``sample_submission.csv`` order. An image with no class above its threshold gets its most
probable class (every HPA image has at least one location)."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from protloc import storage
from protloc.classes import NUM_CLASSES
from protloc.config import SubmitConfig
from protloc.data.hpa import read_test_ids
from protloc.errors import ArtifactError
from protloc.evaluate.ensemble import ensemble_rows, snapshot_names
from protloc.evaluate.predictions import probabilities, read_predictions
from protloc.evaluate.thresholds import read_ensemble, read_thresholds
from protloc.folders import SUBMISSION

log = logging.getLogger(__name__)


def decide(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """The predicted labels (N, 28) bool: above the class's threshold, or the most probable
    class for an image with none above (every HPA image has at least one location)."""
    positive = probs > thresholds[None, :]
    empty = ~positive.any(axis=1)
    positive[np.flatnonzero(empty), probs[empty].argmax(axis=1)] = True
    return positive


def make_submission(
    test_rows: pd.DataFrame,
    thresholds: np.ndarray,
    test_ids: list[str],
    source: str = "predictions",
) -> pd.DataFrame:
    """The submission frame for ``test_ids`` from ensemble test rows (id, p0..p27)."""
    if len(thresholds) != NUM_CLASSES:
        raise ArtifactError(f"got {len(thresholds)} thresholds, expected {NUM_CLASSES}")
    by_id = test_rows.set_index("id")
    missing = [i for i in test_ids if i not in by_id.index]
    if missing:
        raise ArtifactError(
            f"{source}: no test prediction for {len(missing)} id(s) of the sample submission, e.g. {missing[0]!r}"
        )
    extra = sorted(set(by_id.index) - set(test_ids))
    if extra:
        raise ArtifactError(
            f"{source}: {len(extra)} predicted test id(s) are absent from the sample submission, e.g. {extra[0]!r}"
        )
    probs = probabilities(by_id.loc[test_ids].reset_index())
    positive = decide(probs, thresholds)
    empty = ~(probs > thresholds[None, :]).any(axis=1)
    predicted = [" ".join(str(c) for c in np.flatnonzero(row)) for row in positive]
    log.info(
        "submission: %d images, %.2f labels per image, %d took their most probable class",
        len(test_ids),
        positive.sum() / max(len(test_ids), 1),
        int(empty.sum()),
    )
    return pd.DataFrame({"Id": test_ids, "Predicted": predicted})


def validate_submission(sub: pd.DataFrame, test_ids: list[str]) -> None:
    """Every id exactly once and in order, each with at least one label in 0..27."""
    if list(sub.columns) != ["Id", "Predicted"]:
        raise ArtifactError(
            f"submission columns are {list(sub.columns)}, expected ['Id', 'Predicted']"
        )
    if sub["Id"].duplicated().any():
        raise ArtifactError(f"submission repeats id {sub['Id'][sub['Id'].duplicated()].iloc[0]!r}")
    if list(sub["Id"]) != list(test_ids):
        raise ArtifactError("submission ids differ from the sample submission's (set or order)")
    for sample_id, text in zip(sub["Id"], sub["Predicted"], strict=True):
        tokens = str(text).split()
        if not tokens or not all(t.isdigit() and int(t) < NUM_CLASSES for t in tokens):
            raise ArtifactError(
                f"submission row for id {sample_id!r} has {text!r}; expected classes in 0..{NUM_CLASSES - 1}"
            )


def run_submit(
    cfg: SubmitConfig,
    predictions_uri: str,
    thresholds_uri: str,
    sample_submission_uri: str,
    *,
    out: str,
) -> pd.DataFrame:
    """The whole step: write ``{out}/submission.csv`` and check it."""
    thresholds = read_thresholds(thresholds_uri)
    chosen = read_ensemble(thresholds_uri)  # the snapshots the thresholds were fitted on
    test_ids = read_test_ids(sample_submission_uri)
    every = read_predictions(predictions_uri)
    rows = ensemble_rows(every, "test", chosen if chosen is not None else snapshot_names(every))
    if rows.empty:
        raise ArtifactError(f"{predictions_uri}: no ensemble rows for the test split")
    sub = make_submission(rows, thresholds, test_ids, source=str(predictions_uri))
    validate_submission(sub, test_ids)
    storage.write_text(storage.join(out, SUBMISSION), sub.to_csv(index=False, lineterminator="\n"))
    return sub
