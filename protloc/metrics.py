"""F1 metrics from probabilities and thresholds (numpy only)."""

from __future__ import annotations

import numpy as np


def per_class_counts(
    y_true: np.ndarray, y_pred: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tp, fp, fn) per class for (N, C) 0/1 arrays."""
    t = np.asarray(y_true, dtype=bool)
    p = np.asarray(y_pred, dtype=bool)
    tp = (t & p).sum(axis=0)
    fp = (~t & p).sum(axis=0)
    fn = (t & ~p).sum(axis=0)
    return tp, fp, fn


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def per_class_scores(
    y_true: np.ndarray, probs: np.ndarray, thresholds: np.ndarray | float
) -> dict[str, np.ndarray]:
    """Per-class precision, recall and F1 of predicting ``probs > thresholds`` (0 where undefined,
    as scikit-learn's zero_division=0)."""
    y_pred = np.asarray(probs) > np.asarray(thresholds)
    tp, fp, fn = per_class_counts(y_true, y_pred)
    return {
        "precision": _safe_div(tp, tp + fp),
        "recall": _safe_div(tp, tp + fn),
        "f1": _safe_div(2 * tp, 2 * tp + fp + fn),
        "support": np.asarray(y_true, dtype=bool).sum(axis=0),
    }


def macro_f1(y_true: np.ndarray, probs: np.ndarray, thresholds: np.ndarray | float = 0.5) -> float:
    """Macro F1 over all classes (a class with no positives and none predicted scores 0)."""
    return float(per_class_scores(y_true, probs, thresholds)["f1"].mean())


def threshold_curve(
    scores: np.ndarray, y: np.ndarray, grid: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 of one class at every threshold of ``grid`` (predicting
    ``scores > t``; 0 where undefined, as scikit-learn's zero_division=0)."""
    pred = np.asarray(scores)[None, :] > np.asarray(grid)[:, None]
    truth = np.asarray(y, dtype=bool)
    tp = (pred & truth).sum(axis=1)
    fp = (pred & ~truth).sum(axis=1)
    n_pos = truth.sum()
    return (
        _safe_div(tp, tp + fp),
        _safe_div(tp, np.full_like(tp, n_pos)),
        _safe_div(2 * tp, tp + fp + n_pos),
    )
