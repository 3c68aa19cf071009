"""The compare step of a ``--recipes`` run (numpy and pandas only): the recipes ranked by the
cross-fit macro F1 of their held-out (or out-of-fold) predictions, and the ensemble of the best.

Each recipe's predictions folder (its infer's, or its folds' collect's) is scored as the
thresholds step would score it alone: its ensemble's validation rows, thresholds by the run's
method, fitted on one half and scored on the other (``macro_f1_crossfit``). The best ``cfg.best``
recipes' predictions become one predictions file: every snapshot's rows (named after their
recipe) and ensemble rows that are the mean of the recipes' ensembles, which the thresholds,
submit and bundle steps read as they read infer's.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from protloc import schemas, storage
from protloc.config import CompareConfig, ThresholdsConfig
from protloc.data.hpa import labels_to_matrix
from protloc.data.manifest import Manifest, read_manifest
from protloc.errors import ArtifactError, ConfigError
from protloc.evaluate import predictions as P
from protloc.evaluate.ensemble import snapshot_mean, snapshot_names
from protloc.evaluate.thresholds import fitting_rows, thresholds_report, training_prior
from protloc.folders import COMPARE, PREDICTIONS

log = logging.getLogger(__name__)


def score_recipe(
    rows: pd.DataFrame, uri: str, cfg: CompareConfig, manifest: Manifest, manifest_uri: str
) -> dict[str, Any]:
    """One recipe's predictions scored: macro F1 at 0.5, fitted in-sample, cross-fit, and the
    per-class F1 at its fitted thresholds."""
    val_rows, _, val = fitting_rows(rows, "all", uri, manifest, manifest_uri)
    y = labels_to_matrix(val.set_index("id").loc[val_rows["id"], "labels"])
    probs = P.probabilities(val_rows)
    thresholds = ThresholdsConfig(method=cfg.method, alpha=cfg.alpha)
    report = thresholds_report(probs, y, thresholds, training_prior(manifest), probs)
    return {
        "macro_f1_crossfit": report["macro_f1_crossfit"],
        "macro_f1": report["macro_f1"],
        "macro_f1_at_0.5": report["macro_f1_at_0.5"],
        "method": report["method"],
        "per_class_f1": [c["f1"] for c in report["classes"]],
    }


def mean_ensemble(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """Every snapshot row of ``parts`` and, per split, ensemble rows that are each id's mean
    over the snapshots that predicted it (as predict averages a bundle's snapshots; with the
    same schedule for every recipe, the mean of the recipes' ensembles), in the first part's
    id order and folds. Parts predicting other ids are refused."""
    snapshots = pd.concat([p[p["snapshot"] != P.ENSEMBLE] for p in parts], ignore_index=True)
    frames = [snapshots]
    for split in P.SPLITS:
        first = P.select(parts[0], split)
        if first.empty:
            continue
        if any(sorted(P.select(p, split)["id"]) != sorted(first["id"]) for p in parts[1:]):
            raise ArtifactError(f"the recipes predicted different {split} ids")
        frames.append(snapshot_mean(snapshots, split, snapshot_names(snapshots), first))
    return pd.concat(frames, ignore_index=True)


def run_compare(
    cfg: CompareConfig, recipes: dict[str, dict[str, Any]], manifest_uri: str, *, out: str
) -> dict[str, Any]:
    """The whole step: ``recipes`` maps each recipe's predictions folder to its snapshot list
    (``snapshots.json``, which names its recipe). Writes ``{out}/predictions.parquet`` (the
    best recipes' ensemble) and ``{out}/compare.json`` (the ranking); returns the snapshot list
    of the ensemble, with the ranking under ``compare``."""
    if cfg.best > len(recipes):
        raise ConfigError(f"best is {cfg.best}, but the run has {len(recipes)} recipes")
    manifest = read_manifest(manifest_uri)
    scored, frames = [], {}
    for folder, doc in recipes.items():
        recipe = doc.get("recipe")
        if not recipe:
            raise ArtifactError(f"{folder}: its snapshots.json names no recipe")
        name = recipe["name"]
        if name in frames:
            raise ArtifactError(f"two predictions folders are of recipe {name!r}")
        uri = storage.join(folder, PREDICTIONS)
        frames[name] = P.read_predictions(uri)
        score = score_recipe(frames[name], uri, cfg, manifest, manifest_uri)
        scored.append({"name": name, "settings": recipe["settings"], "folder": folder, **score})
        log.info("recipe %s: macro F1 %.4f cross-fit", name, score["macro_f1_crossfit"])
    scored.sort(key=lambda r: (-r["macro_f1_crossfit"], r["name"]))
    best = [r["name"] for r in scored[: cfg.best]]
    rows = mean_ensemble([frames[n] for n in best])
    P.write_predictions(rows, storage.join(out, PREDICTIONS))
    docs = {r["name"]: recipes[r["folder"]] for r in scored}
    ensemble = score_recipe(rows, storage.join(out, PREDICTIONS), cfg, manifest, manifest_uri)
    ranking = {
        "method": cfg.method,
        "alpha": cfg.alpha,
        "best": cfg.best,
        "recipes": [
            {"rank": i + 1, "chosen": r["name"] in best, **r} for i, r in enumerate(scored)
        ],
        "ensemble": {"recipes": best, **ensemble},
    }
    schemas.write(schemas.CompareDoc, storage.join(out, COMPARE), ranking)
    scores = {k: v for n in best for k, v in docs[n].get("val_macro_f1_at_0.5", {}).items()}
    scores[P.ENSEMBLE] = ensemble["macro_f1_at_0.5"]
    tta = {docs[n].get("tta") for n in best}
    log.info(
        "recipes ranked by cross-fit macro F1: %s; ensemble of %s: %.4f cross-fit",
        ", ".join(f"{r['name']} {r['macro_f1_crossfit']:.4f}" for r in scored),
        "+".join(best),
        ensemble["macro_f1_crossfit"],
    )
    return {
        "snapshots": [uri for n in best for uri in docs[n]["snapshots"]],
        "val_macro_f1_at_0.5": scores,
        "tta": tta.pop() if len(tta) == 1 else None,
        "compare": ranking,
    }
