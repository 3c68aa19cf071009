"""Random crops with scale jitter: training on windows of a larger stored sample.

The 2018 winner trained on 1024-px random crops of 1536-px images; protloc's cycles do the same
at any ratio: a cycle at S px with ``crop`` r reads its training samples at round(r x S) px
(from the store, capped at the store's size) and cuts a random window from each. With
``crop_jitter`` j the window's side is S times a factor drawn uniformly in [1 - j, 1 + j]
(capped at the sample's side) and is resized back to S px, so the network sees the cells at
scales around the validation's. Validation and inference see whole samples at S px.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from protloc.data.hpa import resize_channel
from protloc.errors import ConfigError


@dataclass(frozen=True)
class Crop:
    """Random windows of ``size`` px (side jittered by +- ``jitter``), resized to ``size``."""

    size: int
    jitter: float = 0.0


def source_size(size: int, crop: float, store_size: int | None) -> int:
    """The side of the samples a cycle at ``size`` px with ``crop`` cuts its windows from:
    round(crop x size), capped at the store's size (never below ``size``: a store smaller than
    the cycle is refused where it is read, not upscaled here).

    Without a store, ``crop`` above 1 is refused: decoding the images at crop x size would
    upscale them past their own size where a store stops, so training would depend on
    whether a store is used."""
    if store_size is None:
        if crop > 1:
            raise ConfigError(
                f"crop {crop:g} cuts windows from samples larger than the cycle's {size} px, "
                "which come from a prepared store: pass a store, or set crop 1"
            )
        return size
    return min(round(crop * size), max(size, store_size))


def random_crop(x: np.ndarray, crop: Crop, rng: np.random.Generator) -> np.ndarray:
    """A random ``crop.size`` window of the (C, H, W) uint8 sample ``x``, a new array; the
    window's side is jittered, capped at the sample, and resized back to ``crop.size``."""
    side = min(x.shape[1], x.shape[2])
    factor = rng.uniform(1 - crop.jitter, 1 + crop.jitter) if crop.jitter else 1.0
    window = max(1, min(side, round(crop.size * factor)))
    top = int(rng.integers(x.shape[1] - window + 1))
    left = int(rng.integers(x.shape[2] - window + 1))
    patch = x[:, top : top + window, left : left + window]
    if window == crop.size:
        return np.array(patch)
    return np.stack([np.asarray(resize_channel(Image.fromarray(c), crop.size)) for c in patch])
