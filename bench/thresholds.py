"""Threshold search: exact sort-based search against a 101-point grid with scikit-learn.

Prints, side by side in one run: the time of both on 10,000 x 28 structured random predictions
(and at 5k, 50k, 500k rows with --sizes), the ratio, the per-class objective difference, and the
2-fold cross-fit macro F1 and mean |P - R| for several alphas on 4,661 validation rows (the real
validation size), which is how DEFAULT_ALPHA was chosen.

    .venv/bin/python bench/thresholds.py [--sizes 10000] [--alphas 0,0.05,0.1,0.2,0.3,0.5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.metrics import f1_score, precision_score, recall_score

from protloc.synthetic.predictions import structured_predictions
from protloc.thresholds import compare, fit_thresholds

GRID = np.linspace(0.0, 1.0, 101)


def sklearn_grid(probs: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """The yardstick: per class, every grid point scored with scikit-learn; best objective."""
    best = np.full(y.shape[1], -np.inf)
    for c in range(y.shape[1]):
        for t in GRID:
            pred = probs[:, c] > t
            f1 = f1_score(y[:, c], pred, zero_division=0)
            if alpha:
                p = precision_score(y[:, c], pred, zero_division=0)
                r = recall_score(y[:, c], pred, zero_division=0)
                f1 -= alpha * abs(p - r)
            best[c] = max(best[c], f1)
    return best


def speed(n: int, alpha: float) -> tuple[float, float, float]:
    probs, y = structured_predictions(n, seed=1)
    t0 = time.perf_counter()
    _, fits = fit_thresholds(probs, y, alpha)
    exact_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    grid_obj = sklearn_grid(probs, y, alpha)
    grid_s = time.perf_counter() - t0
    exact_obj = np.array([f.objective for f in fits])
    has_pos = y.sum(axis=0) > 0
    diff = float((exact_obj - grid_obj)[has_pos].min())
    return exact_s, grid_s, diff


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="10000")
    p.add_argument("--alphas", default="0,0.05,0.1,0.2,0.3,0.5")
    p.add_argument("--alpha", type=float, default=0.1, help="alpha of the speed comparison")
    p.add_argument(
        "--draws", type=int, default=5, help="random prediction sets for the alpha table"
    )
    args = p.parse_args()
    print(
        f"{'rows':>8} {'exact s':>9} {'sklearn grid s':>15} {'ratio':>8} {'min(exact - grid) objective':>28}"
    )
    for n in map(int, args.sizes.split(",")):
        exact_s, grid_s, diff = speed(n, args.alpha)
        print(
            f"{n:>8} {exact_s:>9.4f} {grid_s:>15.2f} {grid_s / exact_s:>7.0f}x {diff:>28.5f}",
            flush=True,
        )
    print(
        f"\nalpha choice: 2-fold cross-fit on 4,661 validation rows, mean of {args.draws} prediction sets"
    )
    print(f"{'alpha':>6} {'fit macro F1':>13} {'cross-fit macro F1':>19} {'mean |P-R|':>11}")
    for alpha in map(float, args.alphas.split(",")):
        rows = [
            compare(*structured_predictions(4661, seed=s), alpha)["per_class_alpha"]
            for s in range(args.draws)
        ]
        print(
            f"{alpha:>6.2f} {np.mean([r['fit'] for r in rows]):>13.4f} {np.mean([r['crossfit'] for r in rows]):>19.4f} "
            f"{np.mean([r['mean_abs_p_minus_r'] for r in rows]):>11.4f}",
            flush=True,
        )
    base = [compare(*structured_predictions(4661, seed=s), 0.0) for s in range(args.draws)]
    for name in ("0.5", "global"):
        print(
            f"{name:>6} {np.mean([b[name]['fit'] for b in base]):>13.4f} {np.mean([b[name]['crossfit'] for b in base]):>19.4f} "
            f"{np.mean([b[name]['mean_abs_p_minus_r'] for b in base]):>11.4f}"
        )


if __name__ == "__main__":
    main()
