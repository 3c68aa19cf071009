"""Augmentation and normalisation.

D4 (the 8 flips and 90-degree rotations; microscopy has no orientation) runs per sample on the
uint8 array in the data loader; intensity jitter and normalisation run per batch on the device.
"""

from __future__ import annotations

import numpy as np
import torch

D4_SIZE = 8


def d4(x: np.ndarray, k: int) -> np.ndarray:
    """The k-th of the 8 symmetries of the square (k in 0..7) of a (C, H, W) array."""
    y = np.rot90(x, k % 4, axes=(1, 2))
    if k >= 4:
        y = y[:, :, ::-1]
    return np.ascontiguousarray(y)


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
    x = batch.float().div_(255.0)
    if jitter > 0:
        n, c = x.shape[:2]
        gain = torch.rand((n, c, 1, 1), generator=generator, device="cpu") * (2 * jitter) + (
            1 - jitter
        )
        x = x * gain.to(x.device)
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
