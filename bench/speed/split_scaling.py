"""Split step on the real labels (31,072 rows) and on 5k to 124k rows (the real labels cut or
replicated under new Ids): protloc's whole step (parse, stratify, weights, manifest, stats, two
plots) against its core, a bare iterstrat MultilabelStratifiedShuffleSplit on the same matrix.
Plus the split CLI's wall time on the real file, Python start-up included.

    .venv/bin/python -m bench.speed.split_scaling [--rows 5000,31072,62144,124288]
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
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit

from bench import ROOT
from protloc.config import SplitConfig
from protloc.data.hpa import labels_to_matrix, parse_labels
from protloc.data.split import run_split

REAL = ROOT / "tests" / "data" / "hpa" / "train.csv"


@dataclass
class SplitFigures:
    rows: int
    iterstrat_s: float  # yardstick: the stratification alone
    step_s: float  # ours: the whole step


def labels_of(rows: int, real: bytes) -> bytes:
    """The real labels cut to ``rows``, or replicated with new Ids up to ``rows``."""
    header, *lines = real.decode().splitlines()
    out, k = [], 0
    while len(out) < rows:
        out += [line if k == 0 else f"r{k}-{line}" for line in lines]  # new Ids
        k += 1
    return ("\n".join([header, *out[:rows]]) + "\n").encode()


def measure(rows: int, real: bytes, tmp: str) -> SplitFigures:
    data = labels_of(rows, real)
    path = Path(tmp) / f"labels-{rows}.csv"
    path.write_bytes(data)
    y = labels_to_matrix(parse_labels(data)["labels"])
    t0 = time.perf_counter()
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=0.15, random_state=0)
    next(splitter.split(np.zeros(len(y)), y))
    bare = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_split(SplitConfig(), str(path), out=f"{tmp}/out-{rows}")
    return SplitFigures(rows, bare, time.perf_counter() - t0)


def cli_seconds(tmp: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "components.split",
            "--data-root",
            str(REAL.parent),
            "--out",
            f"{tmp}/cli",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - t0


def run(rows: list[int]) -> tuple[list[SplitFigures], float]:
    real = REAL.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        figures = [measure(n, real, tmp) for n in rows]
        return figures, cli_seconds(tmp)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", default="5000,31072,62144,124288")
    args = p.parse_args()
    figures, cli = run([int(r) for r in args.rows.split(",")])
    print(f"{'rows':>8} {'iterstrat s':>12} {'whole step s':>13} {'step/iterstrat':>15}")
    for f in figures:
        print(
            f"{f.rows:>8} {f.iterstrat_s:>12.2f} {f.step_s:>13.2f} {f.step_s / f.iterstrat_s:>14.2f}x"
        )
    print(f"split CLI on the real train.csv, start-up included: {cli:.2f} s")


if __name__ == "__main__":
    main()
