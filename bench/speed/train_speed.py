"""Training images/s on this machine at 96 and 221 px: from the image cache against decoding the
four PNGs (and resizing) for every sample, side by side in one run.

    .venv/bin/python -m bench.speed.train_speed [--sizes 96,221] [--steps 6] [--batch 8]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from protloc.data.cache import build_cache
from protloc.data.dataset import CachedImages
from protloc.data.hpa import load_sample, read_labels
from protloc.data.identity import DataListing
from protloc.data.transforms import d4, normalize
from protloc.losses import soft_f1_loss
from protloc.model.network import create_model
from protloc.synthetic import SyntheticSpec, generate


class DecodedImages(Dataset):
    """The yardstick: decode and resize the PNGs for every item."""

    def __init__(self, root, ids, size, targets):
        self.root, self.ids, self.size, self.targets = root, ids, size, targets

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        x = d4(load_sample(self.root, "train", self.ids[i], size=self.size), i % 8)
        return torch.from_numpy(x), torch.from_numpy(self.targets[i])


def images_per_s(model, dataset, batch, steps) -> float:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    mean, std = torch.full((4,), 0.1), torch.full((4,), 0.2)
    loader = DataLoader(dataset, batch_size=batch, shuffle=False, num_workers=0, drop_last=True)
    seen, t0 = 0, None
    for i, (x, y) in enumerate(loader):
        if i == 1:  # the first step warms up allocators
            t0, seen = time.perf_counter(), 0
        loss = soft_f1_loss(model(normalize(x, mean, std)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(x)
        if i == steps:
            break
    return seen / (time.perf_counter() - t0)


def measure(sizes: list[int], steps: int = 6, batch: int = 8) -> list[tuple[int, float, float]]:
    """(size, images/s decoding PNGs, images/s from the cache) for each size."""
    n = batch * (steps + 1)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        generate(SyntheticSpec(n, 0, 512, seed=0, temper=0.5), f"{tmp}/data", workers=2)
        labels = read_labels(f"{tmp}/data/train.csv")
        ids = list(labels["id"])
        y = np.zeros((n, 28), np.float32)
        for i, lab in enumerate(labels["labels"]):
            y[i, lab] = 1
        for size in sizes:
            model = create_model()
            cache = build_cache(DataListing(f"{tmp}/data"), "train", ids, size, f"{tmp}/cache")
            cached = images_per_s(
                model, CachedImages(cache, np.arange(n), y, augment=True), batch, steps
            )
            decoded = images_per_s(model, DecodedImages(f"{tmp}/data", ids, size, y), batch, steps)
            out.append((size, decoded, cached))
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="96,221")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(
        f"Inception-v3 training step, batch {args.batch}, {torch.get_num_threads()} threads, from 512-px PNGs"
    )
    print(f"{'size':>5} {'from PNGs img/s':>16} {'from cache img/s':>17} {'ratio':>6}")
    for size, decoded, cached in measure(
        [int(s) for s in args.sizes.split(",")], args.steps, args.batch
    ):
        print(f"{size:>5} {decoded:>16.1f} {cached:>17.1f} {cached / decoded:>5.2f}x", flush=True)


if __name__ == "__main__":
    main()
