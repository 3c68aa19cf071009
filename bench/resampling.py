"""Each class's expected draws per epoch under both undersampling rules, on a labels file (by
default the real HPA ``train.csv``): the table in bench/README.md.

    .venv/bin/python bench/resampling.py [--labels tests/data/hpa/train.csv]

Columns: training samples (the default 85 % split), draws with the rare classes' x5 alone, then
the draws and their change under ``resampling=sample`` (only all-dominant samples at 0.5) and
``resampling=class`` (the dominant classes' draws halved, the default).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from protloc.classes import CLASS_NAMES
from protloc.config import SplitConfig
from protloc.data.hpa import labels_to_matrix, read_labels
from protloc.data.split import class_roles, make_manifest, rare_upsampled_draws

ROOT = Path(__file__).resolve().parent.parent


def draws_table(labels_uri: str) -> list[dict[str, float]]:
    """Per class: train count, draws with upsampling alone, and draws under each rule."""
    labels = read_labels(labels_uri)
    draws: dict[str, np.ndarray] = {}
    for rule in ("sample", "class"):
        params = SplitConfig(resampling=rule)
        frame = make_manifest(labels, params)
        train = frame[frame["fold"] == "train"]
        y = labels_to_matrix(train["labels"]).astype(np.float64)
        draws[rule] = y.T @ train["weight"].to_numpy(dtype=np.float64)
        rare, _ = class_roles(y, params)
        upsampled = rare_upsampled_draws(y, rare, params.rare_factor)
        counts = y.sum(axis=0)
    return [
        {
            "class": c,
            "name": CLASS_NAMES[c],
            "train": int(counts[c]),
            "upsampled": float(upsampled[c]),
            "sample": float(draws["sample"][c]),
            "class_rule": float(draws["class"][c]),
        }
        for c in range(len(CLASS_NAMES))
    ]


def markdown(table: list[dict[str, float]]) -> str:
    """The table as Markdown, with the change against the upsampled draws."""
    lines = [
        "| class | train samples | draws, x5 rare only | rule `sample` | change | rule `class` "
        "| change |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table:
        up = r["upsampled"]
        lines.append(
            f"| {r['class']} {r['name']} | {r['train']:,} | {up:,.0f} | {r['sample']:,.0f} | "
            f"{r['sample'] / up - 1:+.0%} | {r['class_rule']:,.0f} | {r['class_rule'] / up - 1:+.0%} |"
        )
    total = {k: sum(r[k] for r in table) for k in ("upsampled", "sample", "class_rule")}
    lines.append(
        f"| all labels | | {total['upsampled']:,.0f} | {total['sample']:,.0f} | | "
        f"{total['class_rule']:,.0f} | |"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", default=str(ROOT / "tests/data/hpa/train.csv"))
    args = parser.parse_args()
    print(markdown(draws_table(args.labels)))


if __name__ == "__main__":
    main()
