"""A run's summary: per-cycle and ensemble F1 and step times, as a dict and as Markdown.

Read from the folders a finished run left: the infer step's ``snapshots.json`` (a ``--recipes``
run: the compare step's, beside its ranking ``compare.json``) leads to every cycle's folder (``metrics.json``, ``timing.json``), the thresholds step's ``thresholds.json``
holds the ensemble's figures. The submit step writes the Markdown as ``summary.md`` (the KFP
UI's run summary); ``pipeline.py local`` adds the split and submit steps, which ran and which
came from cache, and the wall time, prints it and writes the dict to ``last_summary.json``.
"""

from __future__ import annotations

from typing import Any

from protloc import schemas, storage
from protloc.folders import (
    COMPARE,
    METRICS,
    THRESHOLDS,
    TIMING,
    cycle_folder,
    read_prediction_snapshots,
)
from protloc.recipes import recipe_name
from protloc.schemas import CompareDoc, ThresholdsDoc


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


def _cycles(snapshots: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each snapshot's cycle (its ``metrics.json``) and its train step's time."""
    cycles, steps = [], []
    for uri in snapshots:
        folder = cycle_folder(uri)
        metrics = _json(folder, METRICS)
        fold = metrics.get("fold", -1)
        recipe = recipe_name((metrics.get("config") or {}).get("recipe", ""))
        cycles.append(
            {
                "recipe": recipe,
                "fold": fold,
                "cycle": metrics["cycle"] + 1,
                "size": metrics["size"],
                "epochs": metrics["epochs"],
                "val_macro_f1_at_0.5": metrics["val"]["macro_f1_at_0.5"],
                "folder": folder,
            }
        )
        of = ([recipe] if recipe else []) + ([f"fold {fold}"] if fold >= 0 else [])
        where = f" ({', '.join(of)})" if of else ""
        steps.append(step_time(f"train cycle {metrics['cycle'] + 1}{where}", folder))
    return cycles, steps


def _gathering(folder: str, doc: dict[str, Any], recipe: str) -> list[dict[str, Any]]:
    """The times of the infer step (of each fold, then collect) behind a predictions folder."""
    of = f" ({recipe})" if recipe else ""
    if "infer_folders" not in doc:
        return [step_time(f"infer{of}", folder)]
    infers = [
        step_time(f"infer ({recipe + ', ' if recipe else ''}fold {k})", f)
        for k, f in enumerate(doc["infer_folders"])
    ]
    return [*infers, step_time(f"collect{of}", folder)]


def run_summary(predictions: str, thresholds: str) -> dict[str, Any]:
    """Per-cycle F1 (each snapshot's ``metrics.json``), the ensemble's F1 at 0.5, at the fitted
    thresholds and cross-fitted, and the times of the cycles, infer and thresholds."""
    doc = read_prediction_snapshots(predictions)
    cycles, steps = _cycles(doc["snapshots"])
    ranking = None
    if storage.exists(storage.join(predictions, COMPARE)):  # a --recipes run
        ranking = schemas.read(CompareDoc, storage.join(predictions, COMPARE)).model_dump(
            by_alias=True
        )
        steps = []  # every recipe's, the ones outside the ensemble too
        for r in ranking["recipes"]:
            own = read_prediction_snapshots(r["folder"])
            steps += _cycles(own["snapshots"])[1] + _gathering(r["folder"], own, r["name"])
        steps.append(step_time("compare", predictions))
    else:
        steps += _gathering(predictions, doc, "")
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
        **({"recipes": ranking["recipes"], "best": ranking["best"]} if ranking else {}),
    }


def _method(e: dict[str, Any]) -> str:
    """'per_class, alpha 0.1' or 'proportion' (alpha only counts for per_class)."""
    method = e.get("method", "per_class")
    return f"{method}, alpha {e['alpha']:g}" if method == "per_class" else method


def _recipes_table(s: dict[str, Any]) -> list[str]:
    """A --recipes run's ranking (none otherwise)."""
    if not s.get("recipes"):
        return []
    out = [
        f"Recipes ranked by cross-fit macro F1 of their held-out predictions; the ensemble of "
        f"the best {s['best']} is the run's:",
        "",
        "| rank | recipe | settings | cross-fit macro F1 | at 0.5 |",
        "|---:|:---|:---|---:|---:|",
    ]
    for r in s["recipes"]:
        settings = ", ".join(f"{k}={v}" for k, v in sorted(r["settings"].items())) or "the run's"
        mark = " (in the ensemble)" if r["chosen"] else ""
        out.append(
            f"| {r['rank']} | {r['name']}{mark} | {settings} | {r['macro_f1_crossfit']:.4f} | "
            f"{r['macro_f1_at_0.5']:.4f} |"
        )
    return [*out, ""]


def format_summary(s: dict[str, Any]) -> str:
    """The summary as Markdown (readable as plain text too): the cycles' and the ensemble's F1,
    the step times (and which ran, when known), the wall time and where the files are."""
    # the recipe column only in a --recipes run
    recipes = any(c.get("recipe") for c in s["cycles"])
    out = ["## protloc run summary", "", *_recipes_table(s)]
    out += [
        f"|{' recipe |' if recipes else ''} fold | cycle | size (px) | epochs | val macro F1 at 0.5 |",
        f"|{':---|' if recipes else ''}---:|---:|---:|---:|---:|",
    ]
    for c in s["cycles"]:
        cells = [c["recipe"]] if recipes else []
        cells += [c["fold"] if c.get("fold", -1) >= 0 else "-", c["cycle"], c["size"]]
        cells += [c["epochs"], f"{c['val_macro_f1_at_0.5']:.4f}"]
        out.append("| " + " | ".join(str(x) for x in cells) + " |")
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
