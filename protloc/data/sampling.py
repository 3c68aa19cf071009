"""Turn the manifest's expected draws per epoch into a fresh sample list each epoch (numpy only)."""

from __future__ import annotations

import numpy as np


def epoch_indices(weights: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """Shuffled row indices for one epoch: row i appears floor(w_i) times, plus once more for a
    share frac(w_i) of the rows, chosen anew each epoch from (seed, epoch).

    Fractional draws use systematic sampling over a random permutation, so the number of extra
    draws is exactly round(sum of fractions) (a 0.5 weight keeps exactly half of those samples)
    and each row is picked with probability frac(w_i).
    """
    w = np.asarray(weights, dtype=np.float64)
    rng = np.random.default_rng([seed, epoch, 0x5EED])
    whole = np.floor(w).astype(np.int64)
    frac = w - whole
    order = rng.permutation(len(w))
    cum = np.cumsum(frac[order])
    u = rng.random()
    picks = np.floor(cum + u) - np.floor(np.concatenate([[0.0], cum[:-1]]) + u)
    extra = np.zeros(len(w), dtype=np.int64)
    extra[order] = picks.astype(np.int64)
    indices = np.repeat(np.arange(len(w)), whole + extra)
    return rng.permutation(indices)
