"""HPAv18-format samples (four colour-coded 2048-px JPEGs, made from the real channel PNGs):
decoded reduced (Pillow's ``draft``, what protloc does) against decoded fully and then resized,
at a cycle's size, on one core.

    .venv/bin/python -m bench.speed.jpeg_draft [--samples 6] [--sizes 512,221] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench import ROOT
from protloc.classes import CHANNELS
from protloc.data.hpa import load_sample, resize_channel

REAL = ROOT / "tests" / "data" / "hpa" / "real_channels"
PLANES = {"red": (0,), "green": (1,), "blue": (2,), "yellow": (0, 1)}


def make_samples(folder: Path, n: int, size: int) -> list[str]:
    """``n`` samples in HPAv18's layout, each channel a different real image upscaled."""
    ids = []
    for k in range(n):
        for ch in CHANNELS:
            files = sorted(REAL.glob(f"*_{ch}.png"))
            gray = np.asarray(Image.open(files[k % len(files)]).resize((size, size)))
            rgb = np.zeros((size, size, 3), dtype=np.uint8)
            for p in PLANES[ch]:
                rgb[..., p] = gray
            Image.fromarray(rgb).save(folder / f"v{k}_{ch}.jpg", quality=90)
        ids.append(f"v{k}")
    return ids


def rate(fn, ids: list[str], repeats: int) -> float:
    """Best samples/s over ``repeats`` passes."""
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in ids:
            fn(i)
        best = max(best, len(ids) / (time.perf_counter() - t0))
    return best


def run(samples: int, sizes: list[int], repeats: int) -> list[dict]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "train").mkdir()
        ids = make_samples(root / "train", samples, 2048)
        for size in sizes:

            def full(i: str, size: int = size) -> np.ndarray:
                x = load_sample(str(root), "train", i, size=None, ext=".jpg")
                return np.stack([np.asarray(resize_channel(Image.fromarray(c), size)) for c in x])

            def reduced(i: str, size: int = size) -> np.ndarray:
                return load_sample(str(root), "train", i, size=size, ext=".jpg")

            f, r = rate(full, ids, repeats), rate(reduced, ids, repeats)
            out.append({"size": size, "full_per_s": f, "reduced_per_s": r, "ratio": r / f})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=6)
    parser.add_argument("--sizes", default="512,221")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = run(args.samples, [int(s) for s in args.sizes.split(",")], args.repeats)
    json.dump(rows, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
