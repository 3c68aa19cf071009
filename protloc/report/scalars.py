"""The few numbers of each step a run is compared by (the KFP UI's metrics, a run summary).

Plain dicts of name -> float from what the steps return; the KFP components log them as
``Output[Metrics]`` and write them to the artifact's file, the library knows nothing of that.
"""

from __future__ import annotations

import math
from typing import Any

from protloc.classes import CLASS_NAMES


def train_scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """One cycle: validation macro F1 at 0.5 and loss, last epoch's loss and images/s."""
    last = metrics["history"][-1] if metrics.get("history") else {}
    out = {
        "cycle": float(metrics["cycle"] + 1),
        "fold": float(metrics.get("fold", -1)),
        "size_px": float(metrics["size"]),
        "epochs": float(metrics["epochs"]),
        "train_loss": float(last.get("loss", float("nan"))),
        "images_per_s": float(last.get("images_per_s", float("nan"))),
    }
    if "val" in metrics:
        out["val_macro_f1_at_0.5"] = float(metrics["val"]["macro_f1_at_0.5"])
        out["val_loss"] = float(metrics["val"]["loss"])
    return {k: v for k, v in out.items() if math.isfinite(v)}  # NaN: not measured, left out


def infer_scalars(scores: dict[str, float]) -> dict[str, float]:
    """Validation macro F1 at 0.5 of every snapshot and of the ensemble."""
    return {f"{name}_val_macro_f1_at_0.5": float(f1) for name, f1 in scores.items()}


def compare_scalars(ranking: dict[str, Any]) -> dict[str, float]:
    """Each recipe's and the best recipes' ensemble's cross-fit macro F1."""
    out = {f"{r['name']}_macro_f1_crossfit": r["macro_f1_crossfit"] for r in ranking["recipes"]}
    out["ensemble_macro_f1_crossfit"] = ranking["ensemble"]["macro_f1_crossfit"]
    return {k: float(v) for k, v in out.items()}


def thresholds_scalars(report: dict[str, Any]) -> dict[str, float]:
    """The run's macro F1 by 2-fold cross-fit (the honest figure), fitted in-sample and at 0.5,
    every method's cross-fit, the alpha used, and every class's F1 at its threshold."""
    out = {
        "macro_f1_crossfit": float(report["macro_f1_crossfit"]),
        "macro_f1_fitted": float(report["macro_f1"]),
        "macro_f1_at_0.5": float(report["macro_f1_at_0.5"]),
        "global_threshold": float(report["comparison"]["global"]["threshold"]),
        "alpha": float(report["alpha"]),
    }
    for name, scores in report["comparison"].items():
        out[f"crossfit_{_slug(name)}"] = float(scores["crossfit"])
    for c in report["classes"]:
        out[f"f1_{c['index']:02d}_{_slug(CLASS_NAMES[c['index']])}"] = float(c["f1"])
    return out


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_")
