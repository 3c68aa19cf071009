"""Label sets for synthetic images, drawn from the real HPA label distribution.

``label_sets.json`` holds every distinct label set of the Kaggle ``train.csv`` (31,072 rows, 577
sets) with its count: a derived table, not a copy of the file, that keeps the real imbalance and
co-occurrence. A tempering exponent lets small synthetic sets still contain rare classes.
"""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pandas as pd

from protloc.classes import NUM_CLASSES
from protloc.errors import ConfigError


def label_set_table(labels: pd.DataFrame | None = None) -> tuple[list[list[int]], np.ndarray]:
    """(distinct label sets, their counts): from ``labels`` (id, labels) if given, else the
    embedded table of the real HPA train.csv."""
    if labels is not None:
        counts = labels["labels"].map(lambda x: " ".join(map(str, sorted(x)))).value_counts()
        items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    else:
        text = resources.files("protloc.synthetic").joinpath("label_sets.json").read_text()
        items = json.loads(text)["label_sets"]
    sets = [[int(c) for c in key.split()] for key, _ in items]
    return sets, np.array([n for _, n in items], dtype=np.float64)


def label_set_probabilities(sets: list[list[int]], counts: np.ndarray, temper: float) -> np.ndarray:
    """Probability of drawing each label set.

    ``temper`` = 0 keeps the real frequencies; 1 divides each set's count by the count of its
    rarest class, so every class is about equally likely to appear as a set's rarest class.
    """
    if not 0.0 <= temper <= 1.0:
        raise ConfigError(f"temper must be in [0, 1], got {temper}")
    class_counts = np.zeros(NUM_CLASSES)
    for labels, n in zip(sets, counts, strict=True):
        class_counts[labels] += n
    rarest = np.array([class_counts[labels].min() for labels in sets])
    weights = counts * rarest ** (-temper)
    return weights / weights.sum()


def draw_label_sets(
    n: int, rng: np.random.Generator, temper: float = 0.0, labels: pd.DataFrame | None = None
) -> list[list[int]]:
    """``n`` label sets drawn with replacement from the (tempered) real distribution."""
    sets, counts = label_set_table(labels)
    probs = label_set_probabilities(sets, counts, temper)
    picks = rng.choice(len(sets), size=n, p=probs)
    return [list(sets[i]) for i in picks]
