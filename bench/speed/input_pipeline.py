"""Input pipeline on the real HPA channel PNGs: samples/s per core delivering augmented,
normalised tensors, decoding the four PNGs (and resizing) every time against reading the image
cache; the cache's build rate and disk cost. One process, one thread: per core.

The 20 real channel files in tests/data/hpa/real_channels hold one channel per Id, so each
benchmark sample is assembled from four Ids (symbolic links in a temporary folder; nothing is
copied). Fine for decoding and throughput, which is all this measures.

    .venv/bin/python -m bench.speed.input_pipeline [--sizes 221,512] [--seconds 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench import ROOT
from bench.speed.train_speed import DecodedImages  # the decode-every-time dataset
from protloc.classes import CHANNELS, NUM_CLASSES
from protloc.data.cache import build_cache
from protloc.data.crops import Crop
from protloc.data.dataset import CachedImages
from protloc.data.identity import DataListing
from protloc.data.transforms import normalize

REAL = ROOT / "tests" / "data" / "hpa" / "real_channels"
LABELLED = 31_072  # samples in the Kaggle train.csv
MEAN, STD = torch.full((4,), 0.08), torch.full((4,), 0.12)
CROP, CROP_JITTER = 1.5, 0.1


def real_root(tmp: str) -> tuple[str, list[str]]:
    """A data root whose ``train/`` links four real channel files (of four Ids) per sample."""
    by_channel = {c: sorted(REAL.glob(f"*_{c}.png")) for c in CHANNELS}
    n = min(len(v) for v in by_channel.values())
    if n == 0:
        raise SystemExit(f"no real channel PNGs under {REAL}")
    root = Path(tmp) / "real"
    (root / "train").mkdir(parents=True)
    ids = []
    for k in range(n):
        sample_id = by_channel["red"][k].name.rsplit("_", 1)[0]
        for c in CHANNELS:
            (root / "train" / f"{sample_id}_{c}.png").symlink_to(by_channel[c][k])
        ids.append(sample_id)
    return str(root), ids


def rate(fn: Callable[[int], object], n: int, seconds: float) -> float:
    """Calls per second of ``fn(i)`` over i = 0, 1, ... (mod n), for at least ``seconds``."""
    fn(0)  # warm-up
    done, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds or done < n:
        fn(done % n)
        done += 1
    return done / elapsed


@dataclass
class InputFigures:
    size: int
    decode_per_s: float  # yardstick: decode + resize + D4 + normalise, per sample
    cache_per_s: float  # ours: cache row + D4 + normalise
    cache_uint8_per_s: float  # ours as the GPU loader delivers it (normalised on the GPU)
    crop_uint8_per_s: float  # random crops (crop 1.5, jitter 0.1) of the same cache, uint8
    build_per_s: float  # cache build, samples/s on one thread
    bytes_per_sample: int


def measure(root: str, ids: list[str], size: int, cache_dir: str, seconds: float) -> InputFigures:
    torch.set_num_threads(1)

    yardstick = DecodedImages(root, ids, size, np.zeros((len(ids), NUM_CLASSES), np.float32))

    def decoded(i: int) -> torch.Tensor:
        return normalize(yardstick[i][0][None], MEAN, STD)

    decode_per_s = rate(decoded, len(ids), seconds)  # also brings the files into the page cache
    t0 = time.perf_counter()
    cache = build_cache(DataListing(root), "train", ids, size, cache_dir, workers=1)
    build = len(ids) / (time.perf_counter() - t0)
    data = CachedImages(cache, np.arange(len(ids)), augment=True)

    def cached(i: int) -> torch.Tensor:
        return normalize(data[i][None], MEAN, STD)

    # The 2018 winner's ratio: 1024-px crops of 1536-px samples, each window resized (jitter).
    crops = CachedImages(
        cache, np.arange(len(ids)), augment=True, crop=Crop(round(size / CROP), CROP_JITTER)
    )

    return InputFigures(
        size=size,
        decode_per_s=decode_per_s,
        cache_per_s=rate(cached, len(ids), seconds),
        cache_uint8_per_s=rate(data.__getitem__, len(ids), seconds),
        crop_uint8_per_s=rate(crops.__getitem__, len(ids), seconds),
        build_per_s=build,
        bytes_per_sample=cache.path.stat().st_size // len(cache),
    )


def run(sizes: list[int], seconds: float) -> list[InputFigures]:
    with tempfile.TemporaryDirectory() as tmp:
        root, ids = real_root(tmp)
        return [measure(root, ids, s, f"{tmp}/cache", seconds) for s in sizes]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sizes", default="221,512")
    p.add_argument("--seconds", type=float, default=3.0)
    args = p.parse_args()
    print(
        f"{'size':>5} {'decode/s':>9} {'cache/s':>8} {'ratio':>7} {'cache uint8/s':>14} "
        f"{'build/s':>8} {'GB for 31,072':>14} {'crops uint8/s':>14}"
    )
    for f in run([int(s) for s in args.sizes.split(",")], args.seconds):
        print(
            f"{f.size:>5} {f.decode_per_s:>9.1f} {f.cache_per_s:>8.1f} "
            f"{f.cache_per_s / f.decode_per_s:>6.1f}x {f.cache_uint8_per_s:>14.1f} "
            f"{f.build_per_s:>8.1f} {f.bytes_per_sample * LABELLED / 1e9:>14.2f} "
            f"{f.crop_uint8_per_s:>14.1f}"
        )


if __name__ == "__main__":
    main()
