"""Augmentation and normalisation.

D4 (the 8 flips and 90-degree rotations; microscopy has no orientation) runs per sample on the
uint8 array in the data loader; intensity jitter and normalisation run per batch on the device.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

D4_SIZE = 8


# rot90(x, k) for k in 0..3 as (transpose H and W first?, then flip rows?, flip columns?).
_D4_PLAN = {
    0: (False, False, False),
    1: (True, True, False),
    2: (False, True, True),
    3: (True, False, True),
}


def _transpose_hw(x: np.ndarray, strip: int = 64) -> np.ndarray:
    """(C, H, W) -> a new C-contiguous (C, W, H). In strips of 64 rows: a plain strided copy of
    a 512-px uint8 image thrashes the cache (1.5 ms per sample against 0.45 ms, measured)."""
    out = np.empty((x.shape[0], x.shape[2], x.shape[1]), dtype=x.dtype)
    for c in range(x.shape[0]):
        for i in range(0, x.shape[1], strip):
            out[c, :, i : i + strip] = x[c, i : i + strip].T
    return out


def d4(x: np.ndarray, k: int) -> np.ndarray:
    """The k-th of the 8 symmetries of the square (k in 0..7) of a (C, H, W) array: ``rot90``
    by k % 4 quarter turns, then for k >= 4 a left-right flip. Always a new C-contiguous array."""
    transpose, flip_rows, flip_cols = _D4_PLAN[k % 4]
    if k >= 4:
        flip_cols = not flip_cols
    base = _transpose_hw(x) if transpose else x
    dims = [d for d, flip in ((1, flip_rows), (2, flip_cols)) if flip]
    if not dims:
        return np.array(base) if base is x else base
    with warnings.catch_warnings():  # torch warns on read-only arrays (the cache); flip only reads
        warnings.simplefilter("ignore", UserWarning)
        source = torch.from_numpy(np.ascontiguousarray(base))
    return torch.flip(source, dims).numpy()  # 8x faster than numpy's strided copy


def d4_torch(x: torch.Tensor, k: int) -> torch.Tensor:
    """d4 for a (N, C, H, W) tensor batch (test-time augmentation)."""
    y = torch.rot90(x, k % 4, dims=(2, 3))
    return torch.flip(y, dims=(3,)) if k >= 4 else y


def channel_stats(
    images: np.ndarray, max_samples: int = 512, seed: int = 0
) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units from up to ``max_samples`` images (N, C, H, W)."""
    n = len(images)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(n, size=min(n, max_samples), replace=False))
    total = np.zeros(images.shape[1])
    total_sq = np.zeros(images.shape[1])
    count = 0
    for i in pick:
        x = images[i].reshape(images.shape[1], -1).astype(np.float64) / 255.0
        total += x.sum(axis=1)
        total_sq += (x * x).sum(axis=1)
        count += x.shape[1]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean * mean, 1e-12))
    return mean.tolist(), np.maximum(std, 1e-3).tolist()


def normalize(
    batch: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    jitter: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """uint8 (N, C, H, W) -> normalised float; ``jitter`` > 0 scales each image's channels by a
    random gain in [1 - jitter, 1 + jitter] first (staining intensity varies in HPA)."""
    x = batch.float()
    if jitter > 0:
        n, c = x.shape[:2]
        gain = torch.rand((n, c, 1, 1), generator=generator, device="cpu") * (2 * jitter) + (
            1 - jitter
        )
        x.mul_(gain.to(x.device))
    # (x / 255 - mean) / std as one scale and one shift, in place: one float tensor instead of
    # three (2.4 -> 0.3 ms per 512-px sample on one core, measured).
    scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1)
    return x.mul_(scale).sub_((mean / std).view(1, -1, 1, 1))
