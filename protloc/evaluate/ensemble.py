"""Which snapshots the ensemble averages (no torch): ``all``, ``last:K`` or ``cycles:I,J,...``
(with recipes, those cycles of every recipe).

Infer keeps every snapshot's predictions, so choosing the ensemble is a cheap last step: the
thresholds step averages the chosen snapshots' rows, fits on them and records the choice in
``thresholds.json``; the submit step and the model bundle use the same snapshots.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from protloc.errors import ArtifactError, ConfigError
from protloc.evaluate import predictions as P
from protloc.setting_lists import check_ensemble_spec

_NAME_RE = re.compile(r"^(?:[a-z][a-z0-9-]*\.)?(?:fold(\d+)_)?cycle(\d+)_(\d+)px$")


def snapshot_name(cycle: int, size: int, fold: int = -1, recipe: str = "") -> str:
    """'cycle{I}_{S}px' (a holdout run), 'fold{F}_cycle{I}_{S}px' (a chain of a K-fold run),
    each after '{recipe}.' in a ``--recipes`` run: unique within a run; ``cycle`` counts from 0
    as the train step's does."""
    fold_part = f"fold{fold}_" if fold >= 0 else ""
    return f"{f'{recipe}.' if recipe else ''}{fold_part}cycle{cycle}_{size}px"


def cycle_of(name: str) -> int:
    """The 1-based cycle number of a snapshot name ('dense.fold0_cycle2_128px' -> 3)."""
    found = _NAME_RE.match(name)
    if not found:
        raise ArtifactError(f"snapshot name {name!r} is not [<recipe>.][fold<k>_]cycle<i>_<size>px")
    return int(found.group(2)) + 1


def choose(names: list[str], spec: str) -> list[str]:
    """The snapshot names ``spec`` selects, in the given order; a choice that names a cycle
    the run does not have, or selects nothing, is refused."""
    check_ensemble_spec(spec)
    if spec == "all":
        return list(names)
    cycles = sorted({cycle_of(n) for n in names})
    if spec.startswith("last:"):
        k = int(spec.split(":")[1])
        if k > len(cycles):
            raise ConfigError(f"ensemble {spec}: the run has only {len(cycles)} cycles")
        wanted = set(cycles[-k:])
    else:
        wanted = {int(c) for c in spec.split(":")[1].split(",")}
        unknown = sorted(wanted - set(cycles))
        if unknown:
            raise ConfigError(
                f"ensemble {spec}: cycle(s) {unknown} not in this run (cycles {cycles})"
            )
    return [n for n in names if cycle_of(n) in wanted]


def snapshot_names(rows: pd.DataFrame) -> list[str]:
    """Every snapshot of a predictions frame (not the ensemble), in stored order."""
    names = rows.loc[rows["snapshot"] != P.ENSEMBLE, "snapshot"]
    return list(dict.fromkeys(names))


def ensemble_rows(rows: pd.DataFrame, split: str, chosen: list[str]) -> pd.DataFrame:
    """The ensemble of ``chosen`` snapshots on ``split``: the stored ensemble rows when every
    snapshot is chosen (what infer and collect averaged), else each id's mean over the chosen
    snapshots that predicted it (with K folds: its own chain's for 'val', all folds' for
    'test'), in the stored ensemble's id order."""
    stored = P.select(rows, split)
    if set(chosen) == set(snapshot_names(rows)):
        return stored
    return snapshot_mean(rows, split, chosen, stored)


def snapshot_mean(
    rows: pd.DataFrame, split: str, chosen: list[str], order: pd.DataFrame
) -> pd.DataFrame:
    """Ensemble rows on ``split``: each id's mean over the ``chosen`` snapshots' rows that
    predicted it, in the ids and folds of the ensemble rows ``order``."""
    part = rows[(rows["split"] == split) & rows["snapshot"].isin(chosen)]
    probs = part[list(P.PROB_COLUMNS)].astype(np.float64).groupby(part["id"], sort=False).mean()
    missing = sorted(set(order["id"]) - set(probs.index))
    if missing:
        raise ArtifactError(f"id {missing[0]!r} has no prediction from the chosen snapshots")
    probs = probs.loc[order["id"]]
    return P.frame(list(order["id"]), split, P.ENSEMBLE, probs.to_numpy(), -1).assign(
        fold=order["fold"].to_numpy()
    )
