"""Structured random predictions for testing and benchmarking the threshold search.

Labels follow the real HPA label-set distribution (so classes are imbalanced and co-occur as in
Kaggle); each class's scores separate positives from negatives with its own strength and sit at
its own calibration offset, as a real model's do (rare classes low and poorly separated).
"""

from __future__ import annotations

import numpy as np

from protloc.classes import NUM_CLASSES
from protloc.data.hpa import labels_to_matrix
from protloc.synthetic.labels import draw_label_sets


def structured_predictions(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (n, 28) float32, targets (n, 28) uint8)."""
    rng = np.random.default_rng(seed)
    y = labels_to_matrix(draw_label_sets(n, rng))
    prior = np.clip(y.mean(axis=0), 1e-4, None)
    separation = rng.uniform(0.8, 3.0, NUM_CLASSES) * (0.5 + 0.5 * np.sqrt(prior / prior.max()))
    offset = np.log(prior / (1 - prior)) * rng.uniform(0.3, 0.8, NUM_CLASSES)
    sign = 2.0 * y - 1.0  # y is uint8: do this in float, or 0 wraps to 255
    logits = offset + separation * sign + rng.normal(0, 1.0, y.shape)
    probs = 1 / (1 + np.exp(-logits))
    # Round like a float32 network output, which creates ties the search must handle.
    return np.round(probs, 4).astype(np.float32), y
