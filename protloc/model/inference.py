"""Batch prediction over the image cache with test-time augmentation."""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from torch.utils.data import DataLoader

from protloc.classes import NUM_CLASSES
from protloc.data.cache import ImageCache
from protloc.data.dataset import CachedImages
from protloc.data.transforms import D4_SIZE, d4_torch, normalize
from protloc.errors import ConfigError
from protloc.progress import eta

log = logging.getLogger(__name__)


def autocast(device: torch.device):
    """bf16 autocast on CUDA, nothing on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def predict(
    model: torch.nn.Module,
    cache: ImageCache,
    norm: dict[str, list[float]],
    batch_size: int,
    device: torch.device,
    tta: int = 1,
    workers: int = 0,
    label: str = "predict",
) -> np.ndarray:
    """Sigmoid probabilities (N, 28) for every cached image, averaged over the first ``tta`` of the
    8 D4 transforms (1: the image as it is)."""
    if not 1 <= tta <= D4_SIZE:
        raise ConfigError(f"tta must be in 1..{D4_SIZE}, got {tta}")
    model.eval()
    mean = torch.tensor(norm["mean"], device=device)
    std = torch.tensor(norm["std"], device=device)
    loader = DataLoader(
        CachedImages(cache, np.arange(len(cache))),
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    out = []
    t0, done = time.perf_counter(), 0
    every = max(1, len(loader) // 5)
    for i, images in enumerate(loader):
        x = normalize(images.to(device, non_blocking=True), mean, std)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        probs = torch.zeros(x.shape[0], NUM_CLASSES, device=device)
        for k in range(tta):
            with autocast(device):
                probs += torch.sigmoid(model(d4_torch(x, k)).float())
        out.append((probs / tta).cpu().numpy())
        done += len(images)
        if (i + 1) % every == 0 or i + 1 == len(loader):
            elapsed = time.perf_counter() - t0
            log.info(
                "%s: %d/%d images x %d TTA (%.1f images/s, %s)",
                label,
                done,
                len(cache),
                tta,
                done * tta / max(elapsed, 1e-9),
                eta(done, len(cache), elapsed),
            )
    return np.concatenate(out).astype(np.float32)
