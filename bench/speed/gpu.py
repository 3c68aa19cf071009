"""GPU benchmark of the train step (run it on a CUDA machine; ~5 min on one H200).

For every registered architecture (``--archs``, default Inception-v3) and every Table 1 size it
measures, side by side in one run:
  1. training images/s in fp32 against bf16 autocast + channels_last (protloc's default on CUDA),
     and bf16 + channels_last + torch.compile (with its compile time);
  2. the largest batch (powers of two, then bisection) whose training step fits in memory;
  3. whether the data loader keeps the GPU busy: training from the image cache with N loader
     workers, the share of wall time the GPU waits for the next batch (idle fraction).
Each step is the real one: protloc's model, soft-F1 loss, SGD, normalisation on the device.

    python -m bench.speed.gpu [--archs inception_v3,densenet121 | all]
        [--sizes 221,256,296,320,384,440,512] [--steps 20] [--workers 2,4,8] [--json results.json]
    python -m bench.speed.gpu --device cpu --sizes 80 --steps 2 --workers 0 --no-compile
        --no-max-batch
        # a smoke run of the same code paths without a GPU (what the test suite does)
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader

from protloc.architectures import ARCHITECTURES
from protloc.classes import NUM_CLASSES
from protloc.data.cache import build_cache
from protloc.data.dataset import CachedImages
from protloc.data.hpa import read_labels
from protloc.data.identity import DataListing
from protloc.data.transforms import normalize
from protloc.losses import soft_f1_loss
from protloc.model.inference import autocast
from protloc.model.network import create_model
from protloc.synthetic import SyntheticSpec, generate
from protloc.train.schedule import PAPER_TABLE_1

MEAN, STD = torch.full((4,), 0.08), torch.full((4,), 0.12)


@dataclass
class SizeFigures:
    arch: str
    size: int
    batch: int
    fp32_img_s: float = 0.0
    bf16_cl_img_s: float = 0.0
    compiled_img_s: float | None = None
    compile_s: float | None = None
    max_batch: int | None = None
    idle_fraction: dict[str, float] = field(default_factory=dict)  # workers -> share


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _step_fn(model, optimizer, device: torch.device, bf16_cl: bool):
    mean, std = MEAN.to(device), STD.to(device)

    def step(images: torch.Tensor, targets: torch.Tensor) -> None:
        x = normalize(images.to(device, non_blocking=True), mean, std)
        if bf16_cl:
            x = x.contiguous(memory_format=torch.channels_last)
        amp = autocast(device) if bf16_cl else nullcontext()  # bf16 on CUDA, off on the CPU
        with amp:
            logits = model(x)
        loss = soft_f1_loss(logits.float(), targets.to(device, non_blocking=True))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _model(arch: str, device: torch.device, bf16_cl: bool, compiled: bool = False):
    model = create_model(arch).to(device)
    if bf16_cl:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    net = torch.compile(model) if compiled else model
    return net, optimizer


def train_rate(arch, size, batch, steps, device, bf16_cl, compiled=False) -> tuple[float, float]:
    """(images/s over ``steps`` steps after warm-up, seconds of the warm-up steps)."""
    net, optimizer = _model(arch, device, bf16_cl, compiled)
    step = _step_fn(net, optimizer, device, bf16_cl)
    images = torch.randint(0, 256, (batch, 4, size, size), dtype=torch.uint8, device=device)
    targets = (torch.rand(batch, NUM_CLASSES, device=device) < 0.1).float()
    t0 = time.perf_counter()
    for _ in range(3):  # warm-up: cuDNN autotuning, allocator, compilation
        step(images, targets)
    _sync(device)
    warm = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        step(images, targets)
    _sync(device)
    return batch * steps / (time.perf_counter() - t0), warm


def max_batch(arch: str, size: int, device: torch.device, cap: int = 2048) -> int:
    """The largest batch whose bf16 + channels_last training step fits (doubling, then bisection)."""

    def fits(batch: int) -> bool:
        try:
            train_rate(arch, size, batch, 1, device, bf16_cl=True)
            return True
        except torch.OutOfMemoryError:
            return False
        finally:
            torch.cuda.empty_cache()

    lo, hi = 0, 8
    while hi <= cap and fits(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, cap + 1)
    while hi - lo > max(1, lo // 16):  # within ~6 %
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def idle_fraction(arch, cache, batch, steps, device, workers: int) -> float:
    """Share of wall time the training loop waits for the loader (GPU idle), from the cache."""
    net, optimizer = _model(arch, device, bf16_cl=device.type == "cuda")
    step = _step_fn(net, optimizer, device, bf16_cl=device.type == "cuda")
    n = len(cache)
    y = (np.random.default_rng(0).random((n, NUM_CLASSES)) < 0.1).astype(np.float32)
    rows = np.random.default_rng(1).integers(0, n, size=batch * (steps + 3))
    loader = DataLoader(
        CachedImages(cache, rows, y, augment=True),
        batch_size=batch,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=True,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )
    it = iter(loader)
    for _ in range(3):  # warm-up, and let the workers fill their queues
        step(*next(it))
    _sync(device)
    waited, t0 = 0.0, time.perf_counter()
    for _ in range(steps):
        w0 = time.perf_counter()
        images, targets = next(it)
        waited += time.perf_counter() - w0
        step(images, targets)
        _sync(device)  # so waiting for data is not hidden behind queued GPU work
    return waited / (time.perf_counter() - t0)


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "no CUDA device: bench.speed.gpu has not run (use --device cpu to smoke-test)"
        )
    torch.backends.cudnn.benchmark = True
    batches = dict(PAPER_TABLE_1)
    sizes = [int(s) for s in args.sizes.split(",")]
    archs = list(ARCHITECTURES) if args.archs == "all" else args.archs.split(",")
    for arch in archs:
        ARCHITECTURES.get(arch)  # an unknown name is refused before anything runs
    out: dict = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "steps": args.steps,
        "sizes": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        # The loader test reads a real image cache made from synthetic PNGs at 512 px.
        n = args.cache_samples
        generate(SyntheticSpec(n, 0, 512, seed=0, temper=0.5), f"{tmp}/data", workers=4)
        ids = list(read_labels(f"{tmp}/data/train.csv")["id"])
        caches = {}
        for arch in archs:
            for size in sizes:
                if size not in caches:
                    caches[size] = build_cache(
                        DataListing(f"{tmp}/data"), "train", ids, size, f"{tmp}/cache", workers=8
                    )
                f = measure(arch, size, args.batch or batches.get(size, 16), caches[size], args)
                out["sizes"].append(asdict(f))
                print(_row(f), flush=True)
    return out


def measure(arch: str, size: int, batch: int, cache, args: argparse.Namespace) -> SizeFigures:
    """Every figure of one architecture at one size."""
    device = torch.device(args.device)
    f = SizeFigures(arch, size, batch)
    f.fp32_img_s, _ = train_rate(arch, size, batch, args.steps, device, bf16_cl=False)
    f.bf16_cl_img_s, _ = train_rate(arch, size, batch, args.steps, device, bf16_cl=True)
    if args.compile:
        f.compiled_img_s, f.compile_s = train_rate(
            arch, size, batch, args.steps, device, bf16_cl=True, compiled=True
        )
    if args.max_batch and device.type == "cuda":
        f.max_batch = max_batch(arch, size, device)
    for w in (int(w) for w in args.workers.split(",")):
        f.idle_fraction[str(w)] = idle_fraction(arch, cache, batch, args.steps, device, w)
    return f


def _row(f: SizeFigures) -> str:
    compiled = f"{f.compiled_img_s:8.0f} ({f.compile_s:.0f} s)" if f.compiled_img_s else "     n/a"
    idle = " ".join(f"{w}w:{v:.0%}" for w, v in f.idle_fraction.items())
    return (
        f"{f.arch:>15} {f.size:>5} {f.batch:>5} {f.fp32_img_s:>9.1f} {f.bf16_cl_img_s:>12.1f} "
        f"{f.bf16_cl_img_s / f.fp32_img_s:>6.2f}x {compiled:>16} {f.max_batch or '-':>9}  {idle}"
    )


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--archs", default="inception_v3", help="registered names, or all")
    p.add_argument("--sizes", default=",".join(str(s) for s, _ in PAPER_TABLE_1))
    p.add_argument("--batch", type=int, default=0, help="default: Table 1's batch per size")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--workers", default="2,4,8")
    p.add_argument("--cache-samples", type=int, default=512)
    p.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--no-max-batch", dest="max_batch", action="store_false")
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    print(
        f"{'arch':>15} {'size':>5} {'batch':>5} {'fp32 img/s':>9} {'bf16+CL img/s':>12} {'ratio':>7} "
        f"{'compiled img/s':>16} {'max batch':>9}  loader idle share by workers"
    )
    out = run(args)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return out


if __name__ == "__main__":
    main()
