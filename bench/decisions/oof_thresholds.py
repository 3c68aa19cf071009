"""Thresholds fitted on a 15 % holdout against thresholds fitted on out-of-fold predictions of
(nearly) every labelled sample, judged on the same unseen rows.

From a K-fold run's collected predictions (every labelled sample predicted once, by the chain
that held it out): each of ``--draws`` random draws sets aside 15 % of the rows as the judge,
fits per-class thresholds (the step's own search, alpha as given) once on 15 % of all rows
taken from the rest (what a holdout run fits on) and once on all the rest (85 %, what an
out-of-fold run fits on), and scores both on the judge rows.

    .venv/bin/python -m bench.decisions.oof_thresholds --run runs/kfold/protloc-.../
        [--alpha 0.1] [--manifest M]  (M: when the split came from cache, it lives in an
        earlier run's folder)

Result (docs/benchmarks.md, "K folds"; 2 vCPUs, no GPU, 2026-12-01): on the demo data run with
--folds 5 (600 out-of-fold predictions), 50 draws of 90 judge rows, alpha 0.1 (the default):
macro F1 0.1289 at 0.5, 0.1136 +- 0.018 with thresholds fitted on 90 rows, 0.1109 +- 0.018
fitted on 510 rows (510 minus 90: -0.0026 +- 0.013, 510 better in 19 of 50 draws); alpha 0 and
0.3 differ by +0.0000 and +0.0014. Neither is better on the demo data (the difference is a
tenth of its spread; the demo's model is weak and 90 judge rows hold 0-10 positives of most
classes), and it measures nothing about HPA, which needs a GPU run. No default changed:
``folds`` stays 1 (the paper's 85/15 holdout; ``protloc.config.SplitConfig``), K folds opt-in.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from protloc.data.hpa import labels_to_matrix
from protloc.data.manifest import read_manifest
from protloc.evaluate.predictions import probabilities, read_predictions, select
from protloc.metrics import macro_f1
from protloc.threshold_methods import fit_thresholds


def compare(
    probs: np.ndarray, y: np.ndarray, alpha: float, draws: int, share: float = 0.15
) -> dict[str, float]:
    """Mean and sd over ``draws`` of the judge rows' macro F1 for both fitting sets."""
    n = len(y)
    judge_n, small_n = round(share * n), round(share * n)
    small, large, half = [], [], []
    for d in range(draws):
        order = np.random.default_rng(d).permutation(n)
        judge, rest = order[:judge_n], order[judge_n:]
        for rows, out in ((rest[:small_n], small), (rest, large)):
            thresholds = fit_thresholds(probs[rows], y[rows], alpha)[0]
            out.append(macro_f1(y[judge], probs[judge], thresholds))
        half.append(macro_f1(y[judge], probs[judge], 0.5))
    diff = np.array(large) - np.array(small)
    return {
        "rows": n,
        "judge_rows": judge_n,
        "fit_15pct_rows": small_n,
        "fit_rest_rows": n - judge_n,
        "f1_at_0.5": float(np.mean(half)),
        "f1_fit_15pct": float(np.mean(small)),
        "f1_fit_15pct_sd": float(np.std(small)),
        "f1_fit_rest": float(np.mean(large)),
        "f1_fit_rest_sd": float(np.std(large)),
        "gain": float(diff.mean()),
        "gain_sd": float(diff.std()),
        "draws_rest_better": int((diff > 0).sum()),
        "draws": draws,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a K-fold kfp.local run folder")
    parser.add_argument(
        "--manifest", default=None, help="the split's manifest (default: RUN/split/out/...)"
    )
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--draws", type=int, default=50)
    args = parser.parse_args()
    run = Path(args.run)
    rows = select(read_predictions(str(run / "collect" / "out" / "predictions.parquet")), "val")
    manifest = args.manifest or str(run / "split" / "out" / "manifest.parquet")
    held = read_manifest(manifest).held_out()
    y = labels_to_matrix(held.set_index("id").loc[rows["id"], "labels"])
    json.dump(compare(probabilities(rows), y, args.alpha, args.draws), sys.stdout, indent=1)


if __name__ == "__main__":
    main()
