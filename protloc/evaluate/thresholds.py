"""Per-class decision thresholds (numpy and pandas only: the step runs on the slim CPU image).

Macro F1 is a mean of per-class F1s, so each class is searched on its own. The search is exact:
sort the class's scores once, take cumulative true and false positives, and evaluate every cut
between two distinct scores, maximising F1 - alpha * |P - R| (the paper's penalty, which keeps
precision and recall close so the threshold generalises; its printed formula is garbled, this is
its stated intent). The chosen threshold is the midpoint between the last score kept and the
first score dropped; a sample is positive when its probability is above the threshold (so a
threshold just below 0 marks a class predicted for every image, one at the top score none).

A class with no positive in the fitting data cannot be fitted: it keeps FALLBACK_THRESHOLD (0.5,
the threshold the training loss aims at).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from protloc import schemas, storage
from protloc.classes import CLASS_NAMES, NUM_CLASSES
from protloc.config import ThresholdsConfig
from protloc.errors import ArtifactError, ConfigError
from protloc.folders import PER_CLASS_F1, THRESHOLD_CURVES, THRESHOLDS
from protloc.metrics import macro_f1, per_class_scores, threshold_curve
from protloc.schemas import ThresholdsDoc

log = logging.getLogger(__name__)

FALLBACK_THRESHOLD = 0.5
METHOD = "exact per-class search over distinct scores maximising F1 - alpha*|P-R|"


@dataclass(frozen=True)
class ClassFit:
    """The best cut for one class."""

    threshold: float
    objective: float
    precision: float
    recall: float
    f1: float
    fitted: bool  # False: no positive to fit on, the fallback threshold is used


def search_class(scores: np.ndarray, y: np.ndarray, alpha: float) -> ClassFit:
    """Exact search for one class: O(N log N) for the sort, O(N) for every cut."""
    scores = np.asarray(scores, dtype=np.float64)
    y = np.asarray(y, dtype=bool)
    n_pos = int(y.sum())
    if n_pos == 0:
        return ClassFit(FALLBACK_THRESHOLD, 0.0, 0.0, 0.0, 0.0, fitted=False)
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], y[order]
    tp = np.cumsum(t)
    fp = np.arange(1, len(s) + 1) - tp
    # A cut can only fall between two distinct scores: keep the last row of each group of ties.
    last = np.r_[s[:-1] != s[1:], True]
    tp, fp, kept = tp[last], fp[last], s[last]
    dropped = np.r_[kept[1:], -np.inf]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    f1 = 2 * tp / (tp + fp + n_pos)
    objective = f1 - alpha * np.abs(precision - recall)
    k = int(np.argmax(objective))
    if objective[k] < 0:  # predicting nothing (objective 0) beats every cut
        return ClassFit(float(s[0]), 0.0, 0.0, 0.0, 0.0, fitted=True)
    if np.isfinite(dropped[k]):
        threshold = 0.5 * (kept[k] + dropped[k])
    else:  # every sample positive: just below the lowest score
        threshold = float(np.nextafter(kept[k], -np.inf))
    return ClassFit(
        float(threshold),
        float(objective[k]),
        float(precision[k]),
        float(recall[k]),
        float(f1[k]),
        fitted=True,
    )


def fit_thresholds(
    probs: np.ndarray, y: np.ndarray, alpha: float
) -> tuple[np.ndarray, list[ClassFit]]:
    """Per-class thresholds for (N, C) probabilities and 0/1 targets."""
    if not (np.isfinite(alpha) and alpha >= 0):
        raise ConfigError(f"alpha must be a finite number >= 0, got {alpha}")
    fits = [search_class(probs[:, c], y[:, c], alpha) for c in range(probs.shape[1])]
    return np.array([f.threshold for f in fits]), fits


def grid_search_class(
    scores: np.ndarray, y: np.ndarray, alpha: float, grid: np.ndarray
) -> tuple[float, float]:
    """(threshold, objective) of the best grid point for one class (the yardstick)."""
    precision, recall, f1 = threshold_curve(scores, y, grid)
    objective = f1 - alpha * np.abs(precision - recall)
    k = int(np.argmax(objective))
    return float(grid[k]), float(objective[k])


def grid_macro_f1(probs: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Macro F1 of one threshold for all classes, at every grid point: (G,).

    Sorting each class once and counting with searchsorted costs O(N log N + G log N) per class,
    instead of a full pass over the (N, C) matrix per grid point.
    """
    yb = np.asarray(y, dtype=bool)
    f1 = np.zeros((len(grid), probs.shape[1]))
    for c in range(probs.shape[1]):
        pos = np.sort(probs[yb[:, c], c])
        neg = np.sort(probs[~yb[:, c], c])
        tp = len(pos) - np.searchsorted(pos, grid, side="right")  # scores above t
        fp = len(neg) - np.searchsorted(neg, grid, side="right")
        den = tp + fp + len(pos)
        f1[:, c] = np.divide(2 * tp, den, out=np.zeros(len(grid)), where=den > 0)
    return f1.mean(axis=1)


def best_global_threshold(
    probs: np.ndarray, y: np.ndarray, grid: np.ndarray | None = None
) -> float:
    """The single threshold for all classes with the best macro F1 (grid 0.01..0.99)."""
    grid = np.round(np.arange(0.01, 1.0, 0.01), 2) if grid is None else grid
    return float(grid[int(np.argmax(grid_macro_f1(probs, y, grid)))])


def cross_fit(probs: np.ndarray, y: np.ndarray, fit, seed: int = 0) -> float:
    """Macro F1 of thresholds fitted on one half of the rows and applied to the other, both ways,
    pooled: what tells whether thresholds generalise."""
    n = len(y)
    order = np.random.default_rng(seed).permutation(n)
    halves = (order[: n // 2], order[n // 2 :])
    predicted = np.zeros_like(y, dtype=bool)
    for a, b in (halves, halves[::-1]):
        thresholds = fit(probs[a], y[a])
        predicted[b] = probs[b] > thresholds
    return macro_f1(y, predicted.astype(float), 0.5)


def compare(probs: np.ndarray, y: np.ndarray, alpha: float) -> dict[str, Any]:
    """Macro F1 of the four threshold strategies, fitted and cross-fitted."""
    half = np.full(NUM_CLASSES, 0.5)
    strategies = {
        "0.5": lambda p, t: half,
        "global": lambda p, t: np.full(NUM_CLASSES, best_global_threshold(p, t)),
        "per_class_alpha_0": lambda p, t: fit_thresholds(p, t, 0.0)[0],
        "per_class_alpha": lambda p, t: fit_thresholds(p, t, alpha)[0],
    }
    out: dict[str, Any] = {}
    for name, fit in strategies.items():
        thresholds = fit(probs, y)
        out[name] = {"fit": macro_f1(y, probs, thresholds), "crossfit": cross_fit(probs, y, fit)}
        scores = per_class_scores(y, probs, thresholds)
        has_pos = scores["support"] > 0
        out[name]["mean_abs_p_minus_r"] = float(
            np.abs(scores["precision"] - scores["recall"])[has_pos].mean()
        )
    out["global"]["threshold"] = best_global_threshold(probs, y)
    out["per_class_alpha"]["alpha"] = alpha
    return out


def thresholds_report(probs: np.ndarray, y: np.ndarray, alpha: float) -> dict[str, Any]:
    """The thresholds.json contract: thresholds, alpha, method, per-class P/R/F1, macro F1s."""
    thresholds, fits = fit_thresholds(probs, y, alpha)
    scores = per_class_scores(y, probs, thresholds)
    return {
        "thresholds": [float(t) for t in thresholds],  # exact: rounding would move decisions
        "alpha": alpha,
        "method": METHOD,
        "fallback_threshold": FALLBACK_THRESHOLD,
        "fallback_classes": [c for c, f in enumerate(fits) if not f.fitted],
        "n_val": len(y),
        "macro_f1_at_0.5": macro_f1(y, probs, 0.5),
        "macro_f1": macro_f1(y, probs, thresholds),
        "classes": [
            {
                "index": c,
                "name": CLASS_NAMES[c],
                "threshold": float(thresholds[c]),
                "precision": round(float(scores["precision"][c]), 4),
                "recall": round(float(scores["recall"][c]), 4),
                "f1": round(float(scores["f1"][c]), 4),
                "support": int(scores["support"][c]),
            }
            for c in range(NUM_CLASSES)
        ],
        "comparison": compare(probs, y, alpha),
    }


def read_ensemble(uri: str) -> list[str] | None:
    """The snapshots a thresholds.json was fitted on (None: every one, a file written before
    the ensemble could be chosen)."""
    ensemble = schemas.read(ThresholdsDoc, uri).ensemble
    return list(ensemble.snapshots) if ensemble else None


def read_thresholds(uri: str) -> np.ndarray:
    """The 28 thresholds of a thresholds.json, validated."""
    return np.array(schemas.read(ThresholdsDoc, uri).thresholds, dtype=np.float64)


def snapshot_scores(
    rows: pd.DataFrame, truth: pd.Series, names: list[str], alpha: float
) -> dict[str, dict[str, float]]:
    """Each snapshot alone on the rows it predicted (with K folds: its own fold): macro F1 at
    0.5, at thresholds fitted on those rows, and 2-fold cross-fit."""
    from protloc.data.hpa import labels_to_matrix
    from protloc.evaluate.predictions import probabilities, select

    def fit(p: np.ndarray, t: np.ndarray) -> np.ndarray:
        return fit_thresholds(p, t, alpha)[0]

    out = {}
    for name in names:
        part = select(rows, "val", name)
        y = labels_to_matrix(truth.loc[part["id"]])
        probs = probabilities(part)
        out[name] = {
            "rows": len(part),
            "macro_f1_at_0.5": macro_f1(y, probs, 0.5),
            "macro_f1_fitted": macro_f1(y, probs, fit(probs, y)),
            "macro_f1_crossfit": cross_fit(probs, y, fit),
        }
    return out


def run_thresholds(
    cfg: ThresholdsConfig, predictions_uri: str, manifest_uri: str, *, out: str
) -> dict[str, Any]:
    """The whole step: fit on the validation rows of the ensemble of the snapshots
    ``cfg.ensemble`` chooses, write thresholds.json (with each snapshot's scores alone), plots
    and report.html."""
    from protloc.report.pages import thresholds_page
    from protloc.report.plot_worker import BackgroundPlots

    with BackgroundPlots() as figures:  # starts importing matplotlib now, in parallel
        from protloc.data.hpa import labels_to_matrix
        from protloc.evaluate.ensemble import snapshot_names
        from protloc.evaluate.predictions import probabilities, read_predictions

        t0 = time.perf_counter()
        every = read_predictions(predictions_uri)
        rows, chosen, val = _fitting_rows(every, cfg.ensemble, predictions_uri, manifest_uri)
        y = labels_to_matrix(val.set_index("id").loc[rows["id"], "labels"])
        probs = probabilities(rows)
        report = thresholds_report(probs, y, cfg.alpha)
        report["ensemble"] = {"choice": cfg.ensemble, "snapshots": chosen}
        truth = val.set_index("id")["labels"]
        report["snapshots"] = snapshot_scores(every, truth, snapshot_names(every), cfg.alpha)
        schemas.write(ThresholdsDoc, storage.join(out, THRESHOLDS), report)
        figures.render(
            "threshold_curves",
            storage.join(out, THRESHOLD_CURVES),
            probs,
            y,
            np.array(report["thresholds"]),
        )
        figures.render("per_class_f1", storage.join(out, PER_CLASS_F1), report)
        figures.close()
        thresholds_page(report, out)
    _log_comparison(report, len(y), time.perf_counter() - t0)
    return report


def _fitting_rows(
    every: pd.DataFrame, ensemble: str, predictions_uri: str, manifest_uri: str
) -> tuple[pd.DataFrame, list[str], pd.DataFrame]:
    """(the chosen ensemble's validation rows, the chosen snapshots, the manifest's held-out
    rows); predictions that do not cover exactly the held-out rows are refused."""
    from protloc.data.manifest import read_manifest
    from protloc.evaluate.ensemble import choose, ensemble_rows, snapshot_names

    names = snapshot_names(every)
    if not names:  # the ensemble's rows alone: which snapshots to bundle could not be told
        raise ArtifactError(
            f"{predictions_uri}: holds no per-snapshot rows (only the ensemble's); give the "
            "predictions folder infer or collect wrote"
        )
    chosen = choose(names, ensemble)
    rows = ensemble_rows(every, "val", chosen)
    val = read_manifest(manifest_uri).held_out()
    if rows.empty:
        raise ArtifactError(f"{predictions_uri}: no ensemble rows for the validation split")
    missing = set(val["id"]) - set(rows["id"])
    extra = set(rows["id"]) - set(val["id"])
    if missing or extra:
        example = sorted(missing or extra)[0]
        raise ArtifactError(
            f"{predictions_uri} does not match the held-out rows of {manifest_uri}: "
            f"{len(missing)} validation ids missing, {len(extra)} ids not in it (e.g. {example!r})"
        )
    return rows, chosen, val


def _log_comparison(report: dict[str, Any], n: int, seconds: float) -> None:
    cmp = report["comparison"]
    log.info(
        "thresholds on %d validation rows (alpha %g): macro F1 %.4f at 0.5, %.4f global (t=%.2f), "
        "%.4f per class alpha 0, %.4f per class alpha %g; cross-fit %.4f / %.4f / %.4f / %.4f; %.2f s",
        n,
        report["alpha"],
        cmp["0.5"]["fit"],
        cmp["global"]["fit"],
        cmp["global"]["threshold"],
        cmp["per_class_alpha_0"]["fit"],
        cmp["per_class_alpha"]["fit"],
        report["alpha"],
        cmp["0.5"]["crossfit"],
        cmp["global"]["crossfit"],
        cmp["per_class_alpha_0"]["crossfit"],
        cmp["per_class_alpha"]["crossfit"],
        seconds,
    )
