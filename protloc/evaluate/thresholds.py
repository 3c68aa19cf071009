"""The thresholds step (numpy and pandas only: it runs on the slim CPU image).

It fits the decision thresholds on the held-out rows of the chosen ensemble with the configured
method (``protloc.threshold_methods``), and reports every method side by side: fitted on all the
held-out rows (in-sample, optimistic) and 2-fold cross-fit (the estimate for unseen images). The
headline figure, ``macro_f1_crossfit``, is the cross-fit of what the run uses; with ``auto`` it is
the nested estimate, the choice remade on each half.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from protloc import schemas, storage
from protloc.classes import CLASS_NAMES, NUM_CLASSES
from protloc.config import ThresholdsConfig
from protloc.errors import ArtifactError
from protloc.folders import PER_CLASS_F1, THRESHOLD_CURVES, THRESHOLDS
from protloc.metrics import macro_f1, per_class_scores
from protloc.schemas import ThresholdsDoc
from protloc.threshold_methods import (
    AUTO,
    FALLBACK_THRESHOLD,
    THRESHOLD_METHODS,
    Setting,
    best_global_threshold,
    choose_alpha,
    choose_method,
    cross_fit,
    fit_thresholds,
    method_fit,
    parse_alpha,
)

if TYPE_CHECKING:
    from protloc.data.manifest import Manifest

log = logging.getLogger(__name__)

FIXED = "0.5"  # the comparison's reference row: 0.5 for every class, nothing fitted


def compare(probs: np.ndarray, y: np.ndarray, setting: Setting) -> dict[str, dict[str, float]]:
    """Every method's macro F1 on the held-out rows: fitted on them (in-sample) and 2-fold
    cross-fit, with the mean |P - R| of the classes that have positives."""
    fits = {FIXED: lambda p, t, target: np.full(NUM_CLASSES, 0.5)}
    fits |= {name: method_fit(name, setting) for name in THRESHOLD_METHODS}
    out: dict[str, dict[str, float]] = {}
    for name, fit in fits.items():
        thresholds = fit(probs, y, probs)
        scores = per_class_scores(y, probs, thresholds)
        has_pos = scores["support"] > 0
        out[name] = {
            "fit": macro_f1(y, probs, thresholds),
            "crossfit": cross_fit(probs, y, fit),
            "mean_abs_p_minus_r": float(
                np.abs(scores["precision"] - scores["recall"])[has_pos].mean()
            ),
        }
    out["global"]["threshold"] = best_global_threshold(probs, y)
    return out


def thresholds_report(
    probs: np.ndarray, y: np.ndarray, cfg: ThresholdsConfig, prior: np.ndarray, target: np.ndarray
) -> dict[str, Any]:
    """The thresholds.json contract: the thresholds for the ``target`` rows, the method and
    alpha used, per-class P/R/F1 on the held-out rows, every method's macro F1s."""
    alpha = parse_alpha(cfg.alpha)
    setting = Setting(alpha, prior)
    method = choose_method(probs, y, setting) if cfg.method == AUTO else cfg.method
    used = alpha if alpha is not None else choose_alpha(probs, y)
    fit = method_fit(method, Setting(used, prior))
    thresholds = fit(probs, y, target)
    own = fit(probs, y, probs)  # the held-out rows' own: the same but for proportion
    scores = per_class_scores(y, probs, own)
    no_positive = [c for c in range(NUM_CLASSES) if scores["support"][c] == 0]
    return {
        "thresholds": [float(t) for t in thresholds],  # exact: rounding would move decisions
        "held_out_thresholds": [float(t) for t in own],  # where the P/R/F1 below were measured
        "method": method,
        "method_choice": cfg.method,
        "alpha": used,
        "alpha_choice": cfg.alpha if alpha is None else alpha,  # "0.0" and "0" record alike
        "prior": [float(p) for p in prior],
        "fallback_threshold": FALLBACK_THRESHOLD,
        "fallback_classes": no_positive if method == "per_class" else [],
        "n_val": len(y),
        "n_target": len(target),
        "macro_f1_at_0.5": macro_f1(y, probs, 0.5),
        "macro_f1": macro_f1(y, probs, own),
        # the honest figure: with auto, the choice is remade inside each half (nested)
        "macro_f1_crossfit": cross_fit(probs, y, method_fit(cfg.method, setting)),
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
        # with alpha auto, per_class's row is nested too (not the best of the grid's cross-fits)
        "comparison": compare(probs, y, setting),
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
    0.5, at per-class thresholds fitted on those rows, and 2-fold cross-fit."""
    from protloc.data.hpa import labels_to_matrix
    from protloc.evaluate.predictions import probabilities, select

    def fit(p: np.ndarray, t: np.ndarray, target: np.ndarray | None = None) -> np.ndarray:
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
        from protloc.data.manifest import read_manifest
        from protloc.evaluate.ensemble import ensemble_rows, snapshot_names
        from protloc.evaluate.predictions import probabilities, read_predictions

        t0 = time.perf_counter()
        every = read_predictions(predictions_uri)
        manifest = read_manifest(manifest_uri)
        rows, chosen, val = fitting_rows(
            every, cfg.ensemble, predictions_uri, manifest, manifest_uri
        )
        y = labels_to_matrix(val.set_index("id").loc[rows["id"], "labels"])
        probs = probabilities(rows)
        test = ensemble_rows(every, "test", chosen)
        target = probabilities(test) if len(test) else probs
        report = thresholds_report(probs, y, cfg, training_prior(manifest), target)
        report["ensemble"] = {"choice": cfg.ensemble, "snapshots": chosen}
        truth = val.set_index("id")["labels"]
        report["snapshots"] = snapshot_scores(every, truth, snapshot_names(every), report["alpha"])
        schemas.write(ThresholdsDoc, storage.join(out, THRESHOLDS), report)
        figures.render(
            "threshold_curves",
            storage.join(out, THRESHOLD_CURVES),
            probs,
            y,
            np.array(report["held_out_thresholds"]),
        )
        figures.render("per_class_f1", storage.join(out, PER_CLASS_F1), report)
        figures.close()
        thresholds_page(report, out)
    _log_comparison(report, len(y), time.perf_counter() - t0)
    return report


def training_prior(manifest: Manifest) -> np.ndarray:
    """Each class's share of positives among the competition's training images (external data,
    unlike the test images, may be drawn otherwise). With K folds every labelled image is held
    out by some fold, so the prior is that of all of them."""
    from protloc.data.hpa import labels_to_matrix
    from protloc.data.manifest import COMPETITION

    frame = manifest.frame
    rows = frame["source"] == COMPETITION
    if not manifest.kfold:
        rows &= frame["fold"] == "train"
    return labels_to_matrix(frame.loc[rows, "labels"]).mean(axis=0)


def fitting_rows(
    every: pd.DataFrame, ensemble: str, predictions_uri: str, manifest: Manifest, manifest_uri: str
) -> tuple[pd.DataFrame, list[str], pd.DataFrame]:
    """(the chosen ensemble's validation rows, the chosen snapshots, the manifest's held-out
    rows); predictions that do not cover exactly the held-out rows are refused."""
    from protloc.evaluate.ensemble import choose, ensemble_rows, snapshot_names

    names = snapshot_names(every)
    if not names:  # the ensemble's rows alone: which snapshots to bundle could not be told
        raise ArtifactError(
            f"{predictions_uri}: holds no per-snapshot rows (only the ensemble's); give the "
            "predictions folder infer or collect wrote"
        )
    chosen = choose(names, ensemble)
    rows = ensemble_rows(every, "val", chosen)
    val = manifest.held_out()
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
        "thresholds on %d held-out rows: method %s (alpha %g): macro F1 %.4f by 2-fold cross-fit "
        "(%.4f fitted in-sample, %.4f at 0.5); cross-fit by method: %s; %.2f s",
        n,
        report["method"],
        report["alpha"],
        report["macro_f1_crossfit"],
        report["macro_f1"],
        report["macro_f1_at_0.5"],
        ", ".join(f"{name} {c['crossfit']:.4f}" for name, c in cmp.items()),
        seconds,
    )
