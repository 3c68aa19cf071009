"""A torch Dataset over the image cache."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from protloc.data.cache import ImageCache
from protloc.data.crops import Crop, random_crop
from protloc.data.transforms import D4_SIZE, d4


class CachedImages(Dataset):
    """Samples ``rows`` of an image cache as (uint8 image, float target) pairs.

    With ``augment``, each item gets a random D4 transform drawn from (seed, epoch, draw), so
    an epoch's augmentations are reproducible whatever the number of workers; with ``crop``
    also a random window (``protloc.data.crops``), drawn from the same generator. A rank's
    ``rows`` are every ``world``-th draw of the epoch from ``rank`` on, so its i-th item is draw
    ``i * world + rank``: each draw gets its own transform, the one a single process gives it.
    """

    def __init__(
        self,
        cache: ImageCache,
        rows: np.ndarray,
        targets: np.ndarray | None = None,
        augment: bool = False,
        seed: int = 0,
        epoch: int = 0,
        crop: Crop | None = None,
        rank: int = 0,
        world: int = 1,
    ):
        self.cache = cache
        self.rows = np.asarray(rows, dtype=np.int64)
        self.targets = targets
        self.augment = augment
        self.seed = seed
        self.epoch = epoch
        self.crop = crop
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        row = int(self.rows[i])
        x = self.cache.array[row]
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, i * self.world + self.rank])
            k = int(rng.integers(D4_SIZE))  # drawn first: without a crop, the same as ever
            if self.crop is not None:
                x = random_crop(x, self.crop, rng)
            x = d4(x, k)  # a new array
        else:
            x = np.array(x)  # a writable copy out of the read-only memmap
        image = torch.from_numpy(x)
        if self.targets is None:
            return image
        return image, torch.from_numpy(self.targets[row].astype(np.float32))
