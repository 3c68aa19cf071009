"""Which threshold method, and which alpha? Every method's 2-fold cross-fit macro F1, side by side.

For each prediction set: the macro F1 of thresholds fitted on one half of the held-out rows and
applied to the other, both ways (what the thresholds step reports as ``crossfit``), for 0.5
everywhere, one global threshold, ``proportion`` (the training prior),
``per_class`` at each alpha, ``per_class`` with alpha auto and the method auto (both nested:
the choice is remade inside each half). Reported: the mean and the standard deviation over the
prediction sets, and each method's mean difference from the default (per_class, alpha 0.1)
with its spread.

Prediction sets: ``--synthetic N`` structured random predictions of the real validation size
(4,661 rows, labels from the real HPA label-set distribution; seeds 0..N-1), and/or ``--runs``
the predictions and manifests of finished runs (e.g. ``make demo`` with three seeds).

    .venv/bin/python -m bench.decisions.threshold_methods [--synthetic 5]
        [--runs runs/seed0/protloc-... runs/seed1/protloc-...]

Result (docs/method.md, "Threshold method"; 2 vCPUs, no GPU, 2026-12-03): on 5 structured sets
the default per_class at alpha 0.1 scores 0.5062 +- 0.0456 by cross-fit; proportion +0.0047 +-
0.0089, auto +0.0033 +- 0.0093, alpha auto -0.0003 +- 0.0039 against it (none beyond its spread);
global -0.0545, 0.5 everywhere -0.1326. On the held-out rows of three `make demo` runs (seeds 0,
1, 2; 89 rows each) the default scores 0.1491 +- 0.0030; alpha auto and auto +0.0045 +- 0.0035
(3 of 3), proportion -0.0393 +- 0.0277. No default changed: method per_class, alpha 0.1.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from protloc.synthetic.predictions import structured_predictions
from protloc.threshold_methods import THRESHOLD_METHODS, Setting, cross_fit, method_fit

VAL_ROWS = 4661  # the real split's validation fold
TRAIN_ROWS = 26411  # and its training fold
ALPHAS = (0.0, 0.1, 0.3)
DEFAULT = "per_class alpha 0.1"


def candidates(prior: np.ndarray) -> dict[str, object]:
    """Row label -> fit, in the order printed."""
    out = {"0.5": lambda p, t, target: np.full(p.shape[1], 0.5)}
    for name in THRESHOLD_METHODS:
        if name == "per_class":
            for a in ALPHAS:
                out[f"per_class alpha {a:g}"] = method_fit(name, Setting(a, prior))
            out["per_class alpha auto"] = method_fit(name, Setting(None, prior))
        else:
            out[name] = method_fit(name, Setting(0.1, prior))
    out["auto (method and alpha)"] = method_fit("auto", Setting(None, prior))
    return out


def run_sets(folders: list[str]) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, held-out probabilities, labels, training prior) of each finished run."""
    from protloc.data.hpa import labels_to_matrix
    from protloc.data.manifest import COMPETITION, read_manifest
    from protloc.evaluate.ensemble import ensemble_rows, snapshot_names
    from protloc.evaluate.predictions import probabilities, read_predictions

    out = []
    for folder in folders:
        run = Path(folder)
        pred = next(run.glob("*/out/predictions.parquet"))
        manifest = read_manifest(str(next(run.glob("split/out/manifest.parquet"))))
        every = read_predictions(str(pred))
        rows = ensemble_rows(every, "val", snapshot_names(every))
        truth = manifest.held_out().set_index("id")["labels"]
        frame = manifest.frame  # the training rows' prior, as the thresholds step takes it
        training = (frame["source"] == COMPETITION) & (frame["fold"] == "train")
        prior = labels_to_matrix(frame.loc[training, "labels"]).mean(0)
        out.append((run.name, probabilities(rows), labels_to_matrix(truth.loc[rows["id"]]), prior))
    return out


def table(sets: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], title: str) -> None:
    scores: dict[str, list[float]] = {}
    for _, probs, y, prior in sets:
        for label, fit in candidates(prior).items():
            scores.setdefault(label, []).append(cross_fit(probs, y, fit))
    base = np.array(scores[DEFAULT])
    print(f"\n{title}: {len(sets)} prediction sets of {len(sets[0][2]):,} rows")
    print(
        f"| method | cross-fit macro F1 (mean +- sd) | minus {DEFAULT} (mean +- sd) | better in |"
    )
    print("|:---|---:|---:|---:|")
    for label, s in scores.items():
        d = np.array(s) - base
        print(
            f"| {label} | {np.mean(s):.4f} +- {np.std(s, ddof=1) if len(s) > 1 else 0:.4f} | "
            f"{d.mean():+.4f} +- {d.std(ddof=1) if len(d) > 1 else 0:.4f} | "
            f"{int((d > 0).sum())} of {len(d)} |",
            flush=True,
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--synthetic", type=int, default=5, help="structured prediction sets (0: none)")
    p.add_argument("--runs", nargs="*", default=[], help="folders of finished runs")
    args = p.parse_args()
    if args.synthetic:
        sets = []
        for seed in range(args.synthetic):
            probs, y = structured_predictions(VAL_ROWS, seed=seed)
            # the prior from another draw of the real size: what the training labels would give
            prior = structured_predictions(TRAIN_ROWS, seed=1000 + seed)[1].mean(axis=0)
            sets.append((f"seed{seed}", probs, y, prior))
        table(sets, "structured random predictions")
    if args.runs:
        table(run_sets(args.runs), "finished runs")


if __name__ == "__main__":
    main()
