"""A run's summary: per-cycle and ensemble F1 and step times, as a dict and as Markdown.

Read from the folders a finished run left: the infer step's ``snapshots.json`` leads to every
cycle's folder (``metrics.json``, ``timing.json``), the thresholds step's ``thresholds.json``
holds the ensemble's figures. The submit step writes the Markdown as ``summary.md`` (the KFP
UI's run summary); ``pipeline.py local`` adds the split and submit steps, which ran and which
came from cache, and the wall time, prints it and writes the dict to ``last_summary.json``.
"""

from __future__ import annotations

from typing import Any

from protloc import schemas, storage
from protloc.folders import METRICS, SNAPSHOTS, THRESHOLDS, TIMING, cycle_folder
from protloc.schemas import PredictionSnapshots, ThresholdsDoc


def _json(folder: str, name: str) -> dict[str, Any]:
    return storage.read_json(storage.join(folder, name))


def step_time(name: str, folder: str) -> dict[str, Any]:
    """One step's row: its seconds and code version from the folder's ``timing.json``."""
    timing = _json(folder, TIMING)
    return {
        "step": name,
        "seconds": timing["seconds"],
        "code_version": timing["code_version"],
        "folder": folder,
    }


def run_summary(predictions: str, thresholds: str) -> dict[str, Any]:
    """Per-cycle F1 (each snapshot's ``metrics.json``), the ensemble's F1 at 0.5, at the fitted
    thresholds and cross-fitted, and the times of the cycles, infer and thresholds."""
    doc = schemas.read(PredictionSnapshots, storage.join(predictions, SNAPSHOTS)).model_dump(
        by_alias=True, exclude_none=True
    )
    snapshots = doc["snapshots"]
    cycles, steps = [], []
    for uri in snapshots:
        folder = cycle_folder(uri)
        metrics = _json(folder, METRICS)
        fold = metrics.get("fold", -1)
        cycles.append(
            {
                "fold": fold,
                "cycle": metrics["cycle"] + 1,
                "size": metrics["size"],
                "epochs": metrics["epochs"],
                "val_macro_f1_at_0.5": metrics["val"]["macro_f1_at_0.5"],
                "folder": folder,
            }
        )
        where = f" (fold {fold})" if fold >= 0 else ""
        steps.append(step_time(f"train cycle {metrics['cycle'] + 1}{where}", folder))
    if "infer_folders" in doc:  # a K-fold run: each fold's infer, then collect
        steps += [
            step_time(f"infer (fold {k})", folder) for k, folder in enumerate(doc["infer_folders"])
        ]
        steps.append(step_time("collect", predictions))
    else:
        steps.append(step_time("infer", predictions))
    steps.append(step_time("thresholds", thresholds))
    thr = schemas.read(ThresholdsDoc, storage.join(thresholds, THRESHOLDS)).model_dump(
        by_alias=True
    )
    return {
        "cycles": cycles,
        "ensemble": {
            "macro_f1_at_0.5": thr["macro_f1_at_0.5"],
            "macro_f1_at_thresholds": thr["macro_f1"],
            "method": thr["method"],
            "alpha": thr["alpha"],
            "crossfit_macro_f1": thr["macro_f1_crossfit"],
        },
        "steps": steps,
    }


def _method(e: dict[str, Any]) -> str:
    """'per_class, alpha 0.1' or 'proportion' (alpha only counts for per_class)."""
    method = e.get("method", "per_class")
    return f"{method}, alpha {e['alpha']:g}" if method == "per_class" else method


def format_summary(s: dict[str, Any]) -> str:
    """The summary as Markdown (readable as plain text too): the cycles' and the ensemble's F1,
    the step times (and which ran, when known), the wall time and where the files are."""
    out = [
        "## protloc run summary",
        "",
        "| fold | cycle | size (px) | epochs | val macro F1 at 0.5 |",
        "|---:|---:|---:|---:|---:|",
    ]
    out += [
        f"| {c['fold'] if c.get('fold', -1) >= 0 else '-'} | {c['cycle']} | {c['size']} | "
        f"{c['epochs']} | {c['val_macro_f1_at_0.5']:.4f} |"
        for c in s["cycles"]
    ]
    e = s["ensemble"]
    folds = len({c.get("fold", -1) for c in s["cycles"]} - {-1})
    scored = f"out-of-fold over {folds} folds" if folds else "on the holdout"
    out += [
        "",
        f"Ensemble of {len(s['cycles'])} snapshots, scored {scored}: macro F1 "
        f"**{e['crossfit_macro_f1']:.4f}** with thresholds fitted on one half of these rows "
        f"and scored on the other (2-fold cross-fit; thresholds {_method(e)}); "
        f"{e['macro_f1_at_thresholds']:.4f} in-sample, fitted and scored on the same rows "
        f"(optimistic); {e['macro_f1_at_0.5']:.4f} at 0.5.",
        "",
    ]
    known = all("ran" in st for st in s["steps"])
    out += [
        "| step | seconds |" + (" ran or from cache |" if known else ""),
        "|:---|---:|" + (":---|" if known else ""),
    ]
    for st in s["steps"]:
        row = f"| {st['step']} | {st['seconds']:.1f} |"
        if known:
            row += f" {'ran' if st['ran'] else 'served from cache'} |"
        out.append(row)
    out.append("")
    if "wall_seconds" in s:
        out.append(f"Pipeline wall time {s['wall_seconds']:.1f} s.")
    if "submission" in s:
        out.append(f"Submission: `{s['submission']}`")
    if "model" in s:
        out.append(
            f"Model bundle: `{s['model']}` (apply it: `python -m components.predict --model "
            "DIR --images DIR --out DIR`)"
        )
    if s.get("pages"):
        out += ["", "Pages (self-contained HTML):"] + [f"- `{p}`" for p in s["pages"]]
    return "\n".join(out).rstrip() + "\n"
