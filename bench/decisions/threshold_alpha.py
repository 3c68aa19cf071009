"""Which alpha for the thresholds' |precision - recall| penalty? 2-fold cross-fit macro F1.

On 4,661 rows of structured random predictions (the real validation size; labels from the real
HPA label-set distribution), averaged over ``--draws`` prediction sets: the macro F1 of
per-class thresholds fitted on all rows (fit) and fitted on one half and scored on the other
(cross-fit), and the mean |P - R| over classes, for each alpha; then the same for 0.5 everywhere
and the best global threshold. Split out of the threshold-search speed benchmark
(``python -m bench.speed.thresholds``), which it used to share a script with.

    .venv/bin/python -m bench.decisions.threshold_alpha [--alphas 0,0.05,0.1,0.2,0.3,0.5]
        [--draws 5]

Result (docs/benchmarks.md, "Choosing alpha"; 2 vCPUs, no GPU, 2026-12-01; mean of 5 prediction
sets): per-class thresholds with alpha 0 fit best on the rows they are fitted on (macro F1
0.5372) and worst on the other half (cross-fit 0.5005, mean |P - R| 0.1290): the overfitting the
paper's penalty addresses. alpha 0.1 gives the best cross-fit score, 0.5062, while halving
|P - R| (0.0625); on one prediction set (seed 0), 0.5 everywhere scores 0.3382 and the best
global threshold 0.413 cross-fit.
Default chosen: alpha = 0.1 (``protloc.config.ThresholdsConfig.alpha``).
"""

from __future__ import annotations

import argparse

import numpy as np

from protloc.evaluate.thresholds import compare
from protloc.synthetic.predictions import structured_predictions
from protloc.threshold_methods import Setting

VAL_ROWS = 4661  # the real split's validation fold


def _compare(seed: int, alpha: float) -> dict:
    """Every method's fit and cross-fit on prediction set ``seed``, per_class at ``alpha``."""
    probs, y = structured_predictions(VAL_ROWS, seed=seed)
    return compare(probs, y, Setting(alpha, y.mean(axis=0)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--alphas", default="0,0.05,0.1,0.2,0.3,0.5")
    p.add_argument(
        "--draws", type=int, default=5, help="random prediction sets for the alpha table"
    )
    args = p.parse_args()
    print(
        f"alpha choice: 2-fold cross-fit on {VAL_ROWS:,} validation rows, mean of {args.draws} prediction sets"
    )
    print(f"{'alpha':>6} {'fit macro F1':>13} {'cross-fit macro F1':>19} {'mean |P-R|':>11}")
    for alpha in map(float, args.alphas.split(",")):
        rows = [_compare(s, alpha)["per_class"] for s in range(args.draws)]
        print(
            f"{alpha:>6.2f} {np.mean([r['fit'] for r in rows]):>13.4f} {np.mean([r['crossfit'] for r in rows]):>19.4f} "
            f"{np.mean([r['mean_abs_p_minus_r'] for r in rows]):>11.4f}",
            flush=True,
        )
    base = [_compare(s, 0.0) for s in range(args.draws)]
    for name in ("0.5", "global"):
        print(
            f"{name:>6} {np.mean([b[name]['fit'] for b in base]):>13.4f} {np.mean([b[name]['crossfit'] for b in base]):>19.4f} "
            f"{np.mean([b[name]['mean_abs_p_minus_r'] for b in base]):>11.4f}"
        )


if __name__ == "__main__":
    main()
