"""Threshold search: exact sort-based search against a 101-point grid with scikit-learn.

Prints, side by side in one run: the time of both on 10,000 x 28 structured random predictions
(and at 5k, 50k, 500k rows with --sizes), the ratio and the per-class objective difference;
``cli_walls`` times the whole thresholds command (start-up included) on 4,661 validation rows
(both are ``make bench`` rows). How the default alpha was chosen is an experiment of its own:
``python -m bench.decisions.threshold_alpha``.

    .venv/bin/python -m bench.speed.thresholds [--sizes 10000] [--alpha 0.1] [--grid-classes 28]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score, precision_score, recall_score

from bench import ROOT
from protloc.classes import NUM_CLASSES
from protloc.data.manifest import write_manifest
from protloc.evaluate import predictions
from protloc.synthetic.predictions import structured_predictions
from protloc.threshold_methods import fit_thresholds, grid_search_class

GRID = np.linspace(0.0, 1.0, 101)


def sklearn_grid(probs: np.ndarray, y: np.ndarray, alpha: float, classes) -> np.ndarray:
    """The yardstick: per class, every grid point scored with scikit-learn; best objective."""
    best = np.full(len(classes), -np.inf)
    for i, c in enumerate(classes):
        for t in GRID:
            pred = probs[:, c] > t
            f1 = f1_score(y[:, c], pred, zero_division=0)
            if alpha:
                p = precision_score(y[:, c], pred, zero_division=0)
                r = recall_score(y[:, c], pred, zero_division=0)
                f1 -= alpha * abs(p - r)
            best[i] = max(best[i], f1)
    return best


@dataclass
class ThresholdFigures:
    rows: int
    exact_s: float  # ours: all 28 classes
    grid_s: float  # yardstick, for all 28 classes (timed on `grid_classes` of them, scaled)
    grid_classes: int
    min_gain: float  # min over classes of exact - grid objective (>= 0: never worse)
    sklearn_agrees: bool  # scikit-learn's grid objective = protloc's vectorised grid objective


def speed(n: int, alpha: float, grid_classes: int = NUM_CLASSES) -> ThresholdFigures:
    """Exact search against the grid at ``n`` rows. scikit-learn's grid costs ~3 metric calls
    x 101 points x 28 classes (hours at 500k rows), so it is timed on the ``grid_classes``
    most frequent classes and scaled to 28; the objective gap is taken over all 28 classes
    with protloc's vectorised grid, which the timed classes check against scikit-learn."""
    probs, y = structured_predictions(n, seed=1)
    t0 = time.perf_counter()
    _, fits = fit_thresholds(probs, y, alpha)
    exact_s = time.perf_counter() - t0
    classes = list(np.argsort(-y.sum(axis=0))[:grid_classes])
    t0 = time.perf_counter()
    sk = sklearn_grid(probs, y, alpha, classes)
    grid_s = (time.perf_counter() - t0) * NUM_CLASSES / len(classes)
    fast = np.array(
        [grid_search_class(probs[:, c], y[:, c], alpha, GRID)[1] for c in range(NUM_CLASSES)]
    )
    exact_obj = np.array([f.objective for f in fits])
    has_pos = y.sum(axis=0) > 0
    return ThresholdFigures(
        rows=n,
        exact_s=exact_s,
        grid_s=grid_s,
        grid_classes=len(classes),
        min_gain=float((exact_obj - fast)[has_pos].min()),
        sklearn_agrees=bool(np.allclose(sk, fast[classes], atol=1e-9)),
    )


CLI_GOAL_S = 2.0  # the thresholds step is the one users rerun when tuning alpha


def cli_walls(runs: int = 3, n_val: int = 4661) -> list[float]:
    """Wall seconds of ``python -m components.thresholds`` on ``n_val`` validation rows, per run."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        probs, y = structured_predictions(n_val + 100, seed=4)
        ids = [f"id{i:05d}" for i in range(len(y))]
        labels = [list(np.flatnonzero(row)) or [0] for row in y]
        fold = ["val"] * n_val + ["train"] * 100
        frame = pd.DataFrame({"id": ids, "labels": labels, "fold": fold, "weight": np.float32(1)})
        write_manifest(frame, {}, str(folder / "manifest.parquet"))
        rows = predictions.frame(ids[:n_val], "val", "ensemble", probs[:n_val])
        predictions.write_predictions(rows, str(folder / "predictions.parquet"))
        (folder / "timing.json").write_text('{"step": "bench", "seconds": 0}\n')  # finished
        cmd = [sys.executable, "-m", "components.thresholds", "--split", tmp]
        cmd += ["--predictions", tmp, "--out", f"{tmp}/out"]
        walls = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
            walls.append(time.perf_counter() - t0)
        return walls


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="10000")
    p.add_argument("--alpha", type=float, default=0.1, help="alpha of the speed comparison")
    p.add_argument(
        "--grid-classes", type=int, default=NUM_CLASSES, help="classes to time sklearn on"
    )
    args = p.parse_args()
    print(
        f"{'rows':>8} {'exact s':>9} {'sklearn grid s':>15} {'ratio':>8} {'min(exact - grid) objective':>28}"
    )
    for n in map(int, args.sizes.split(",")):
        f = speed(n, args.alpha, args.grid_classes)
        print(
            f"{n:>8} {f.exact_s:>9.4f} {f.grid_s:>15.2f} {f.grid_s / f.exact_s:>7.0f}x "
            f"{f.min_gain:>28.5f}  (grid timed on {f.grid_classes} classes; sklearn agrees: {f.sklearn_agrees})",
            flush=True,
        )


if __name__ == "__main__":
    main()
