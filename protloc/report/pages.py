"""The result page of each step that has one: split, train (the chain's curves), thresholds.

Each builds tables from what its step computed and embeds the figures the step wrote, as one
self-contained ``report.html`` in the step's output folder (see :mod:`protloc.report.htmlpage`).
"""

from __future__ import annotations

from typing import Any

from protloc import storage
from protloc.folders import CLASS_DISTRIBUTION, COOCCURRENCE, PER_CLASS_F1, THRESHOLD_CURVES
from protloc.report.htmlpage import Figure, Table, figure, write_page


def split_page(stats: dict[str, Any], out: str) -> str:
    """Samples per class in each fold and drawn per epoch; the distribution and co-occurrence
    figures (``class_distribution.png``, ``cooccurrence.png`` in ``out``)."""
    n = stats["samples"]
    ratio = stats["commonest_to_rarest"]
    lead = (
        f"{n['train']} training and {n['val']} validation samples; "
        f"{len(stats['rare_classes'])} rare classes, {len(stats['dominant_classes'])} dominant; "
        f"commonest/rarest class {ratio['before']:.0f} before resampling, "
        f"{ratio['after']:.1f} after."
    )
    classes = Table(
        "Samples per class",
        ["class", "train", "validation", "draws per epoch"],
        [
            (f"{c['index']} {c['name']}", c["train"], c["val"], float(c["draws_per_epoch"]))
            for c in stats["classes"]
        ],
        digits=1,
    )
    return write_page(
        out,
        "protloc split",
        lead,
        [
            figure("Class distribution", storage.join(out, CLASS_DISTRIBUTION)),
            figure("Class co-occurrence", storage.join(out, COOCCURRENCE)),
            classes,
        ],
    )


def training_page(chain: list[dict[str, Any]], curves_png: bytes, out: str) -> str:
    """The snapshot chain so far (each cycle's ``metrics.json``, this cycle last): a table of
    cycles and the per-step curves (loss, learning rate, gradient norm, validation F1)."""
    rows = []
    for m in chain:
        last_epoch = (m.get("history") or [{}])[-1]
        val = m.get("val", {})
        rows.append(
            (
                m["cycle"] + 1,
                m["size"],
                m["epochs"],
                _fmt(last_epoch.get("loss"), 4),
                _fmt(val.get("loss"), 4),
                _fmt(val.get("macro_f1_at_0.5"), 4),
                _fmt(last_epoch.get("images_per_s"), 1),
                _fmt(m.get("seconds"), 1),
            )
        )
    last = chain[-1]
    epochs = f"{last['epochs']} epoch{'s' if last['epochs'] != 1 else ''}"
    before = len(chain) - 1
    lead = f"SGDR cycle {last['cycle'] + 1} ({last['size']} px, {epochs})" + (
        f", after {before} earlier cycle{'s' if before != 1 else ''} of its snapshot chain."
        if before
        else ", the first of its snapshot chain."
    )
    table = Table(
        "Cycles",
        [
            "cycle",
            "size (px)",
            "epochs",
            "train loss (last epoch)",
            "val loss",
            "val macro F1 at 0.5",
            "images/s",
            "seconds",
        ],
        rows,
    )
    return write_page(
        out,
        f"protloc training, cycle {last['cycle'] + 1}",
        lead,
        [Figure("Curves", curves_png), table],
    )


def _fmt(value: float | None, digits: int) -> str:
    """A number with ``digits`` decimals; '-' where it was not measured."""
    return "-" if value is None else f"{value:.{digits}f}"


def thresholds_page(report: dict[str, Any], out: str) -> str:
    """Macro F1 by threshold method (fit and 2-fold cross-fit), per-class thresholds and F1, and
    the figures (``threshold_curves.png``, ``per_class_f1.png`` in ``out``)."""
    lead = (
        f"{report['n_val']} held-out images; thresholds by {_used(report)}: macro F1 "
        f"{report['macro_f1_crossfit']:.4f} when fitted on one half and scored on the other "
        f"(the estimate for new images), {report['macro_f1']:.4f} fitted and scored on the same "
        f"rows, {report['macro_f1_at_0.5']:.4f} at 0.5."
    )
    curves = "Precision, recall and F1 against the threshold"
    return write_page(
        out,
        "protloc thresholds",
        lead,
        [
            _methods_table(report),
            _snapshots_table(report),
            figure(curves, storage.join(out, THRESHOLD_CURVES)),
            figure("Per-class F1", storage.join(out, PER_CLASS_F1)),
            _per_class_table(report),
        ],
    )


def _methods_table(report: dict[str, Any]) -> Table:
    """Every threshold method's fitted and cross-fit macro F1; the one used marked."""
    cmp = report["comparison"]
    label = {
        "0.5": "0.5 for every class",
        "global": f"global: one threshold ({cmp['global']['threshold']:.2f})",
        "per_class": f"per_class, alpha {report['alpha']:g}"
        + (" (auto, chosen inside each half)" if report["alpha_choice"] == "auto" else ""),
    }
    return Table(
        "Macro F1 by threshold method (the run uses the one marked)",
        ["method", "fit on the held-out rows (in-sample)", "2-fold cross-fit", "mean |P - R|"],
        [
            (
                label.get(name, name) + (" (used)" if name == report["method"] else ""),
                c["fit"],
                c["crossfit"],
                c["mean_abs_p_minus_r"],
            )
            for name, c in cmp.items()
        ],
    )


def _per_class_table(report: dict[str, Any]) -> Table:
    """Per class: the applied and the held-out threshold, precision, recall, F1, support."""
    return Table(
        "Per class",
        [
            "class",
            "threshold applied",
            "threshold on the held-out rows",
            "precision",
            "recall",
            "F1",
            "validation positives",
        ],
        [
            (
                f"{c['index']} {c['name']}",
                float(c["threshold"]),
                float(report["held_out_thresholds"][c["index"]]),
                float(c["precision"]),
                float(c["recall"]),
                float(c["f1"]),
                c["support"],
            )
            for c in report["classes"]
        ],
    )


def _used(report: dict[str, Any]) -> str:
    """'per_class, alpha 0.1 (set to auto)': the method used, and what chose it."""
    used = report["method"] + (
        f", alpha {report['alpha']:g}" if report["method"] == "per_class" else ""
    )
    auto = [
        name
        for name, choice in (("method", report["method_choice"]), ("alpha", report["alpha_choice"]))
        if choice == "auto"
    ]
    return used + (f" ({' and '.join(auto)} chosen by cross-fit)" if auto else "")


def _snapshots_table(report: dict[str, Any]) -> Table:
    """Each snapshot alone beside the ensemble: F1 at 0.5, fitted, cross-fit."""
    chosen = report.get("ensemble", {}).get("snapshots")
    rows = [
        (
            name,
            "yes" if chosen is None or name in chosen else "no",
            s["rows"],
            s["macro_f1_at_0.5"],
            s["macro_f1_fitted"],
            s["macro_f1_crossfit"],
        )
        for name, s in report.get("snapshots", {}).items()
    ]
    rows.append(
        (
            "ensemble",
            "",
            report["n_val"],
            report["macro_f1_at_0.5"],
            report["macro_f1"],
            report["macro_f1_crossfit"],
        )
    )
    return Table(
        "Each snapshot alone, and the ensemble (choice "
        f"{report.get('ensemble', {}).get('choice', 'all')!r})",
        ["snapshot", "in the ensemble", "rows", "F1 at 0.5", "F1 fitted", "2-fold cross-fit"],
        rows,
    )


def compare_page(ranking: dict[str, Any], out: str) -> str:
    """The recipes ranked by cross-fit macro F1 with their settings, and each one's per-class
    F1 (at its own fitted thresholds), so a class one recipe learns and another misses shows."""
    from protloc.classes import CLASS_NAMES

    recipes = ranking["recipes"]
    ens = ranking["ensemble"]
    lead = (
        f"{len(recipes)} recipes ranked by macro F1 of their held-out predictions with "
        f"{ranking['method']} thresholds fitted on one half and scored on the other (cross-fit, "
        f"the estimate for new images). The ensemble of the best {ranking['best']} "
        f"({', '.join(ens['recipes'])}) scores {ens['macro_f1_crossfit']:.4f}; the thresholds, "
        "the submission and the bundle use it."
    )
    ranked = Table(
        "Recipes, best first",
        ["recipe", "settings", "cross-fit macro F1", "fitted (in-sample)", "at 0.5"],
        [
            (
                f"{r['rank']}. {r['name']}" + (" (in the ensemble)" if r["chosen"] else ""),
                ", ".join(f"{k}={v}" for k, v in sorted(r["settings"].items())) or "the run's",
                r["macro_f1_crossfit"],
                r["macro_f1"],
                r["macro_f1_at_0.5"],
            )
            for r in recipes
        ],
    )
    per_class = Table(
        "Per-class F1 at each recipe's fitted thresholds (in-sample)",
        ["class", *(r["name"] for r in recipes)],
        [
            (f"{c} {name}", *(r["per_class_f1"][c] for r in recipes))
            for c, name in enumerate(CLASS_NAMES)
        ],
        digits=3,
    )
    return write_page(out, "protloc recipes compared", lead, [ranked, per_class])
