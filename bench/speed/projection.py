"""Projected wall time of the paper's full schedule on the real data set, from measured costs.

Measured here: the model's FLOPs per image at each Table 1 size (torch's FlopCounterMode on a
real forward pass; training = 3x forward), the real split's draws per epoch (the resampled train
fold of the real train.csv), and the per-core rate of building the image cache
(bench.speed.input_pipeline). Assumed, because no GPU was measured: the GPU's sustained bf16
throughput, given as a share of its peak (model FLOPs utilisation, MFU). Change the assumption
with --mfu / --peak.

    .venv/bin/python -m bench.speed.projection [--epochs 6] [--peak-tflops 989] [--mfu 0.10]
        [--cpus 8] [--decode-per-core 70] [--tta 8]   (defaults: an H200 at 10 % MFU)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench import ROOT
from protloc.config import SplitConfig
from protloc.data.hpa import read_labels
from protloc.data.split import make_manifest
from protloc.model.network import create_model
from protloc.plan import (
    COMPRESS_GB_S,
    CORES_PER_GPU,
    DECOMPRESS_GB_S,
    FETCH_GB_S,
    RESIZE_PER_CORE,
    STORE_CODEC_RATIO,
)
from protloc.train.schedule import PAPER_TABLE_1

REAL = ROOT / "tests" / "data" / "hpa" / "train.csv"
TEST_IDS = 11_702


@dataclass
class Projection:
    epochs: int
    draws_per_epoch: int
    val: int
    labelled: int
    gflops: dict[int, float]  # forward GFLOPs per image, by size
    train_h: float
    infer_h: float
    cache_h: float
    needed_img_s: dict[int, float]  # the GPU's training images/s at each size

    @property
    def total_h(self) -> float:
        return self.train_h + self.infer_h + self.cache_h


def forward_gflops(sizes: list[int]) -> dict[int, float]:
    model = create_model().eval()
    out = {}
    for size in sizes:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.zeros(1, 4, size, size))
        out[size] = counter.get_total_flops() / 1e9
    return out


def project(
    epochs: int = 6,
    peak_tflops: float = 989.0,
    mfu: float = 0.10,
    cpus: int = 8,
    decode_per_core: float = 70.0,
    tta: int = 8,
) -> Projection:
    manifest = make_manifest(read_labels(str(REAL)), SplitConfig())
    train = manifest[manifest["fold"] == "train"]
    draws = round(float(train["weight"].sum()))
    val = int((manifest["fold"] == "val").sum())
    sizes = [s for s, _ in PAPER_TABLE_1]
    gflops = forward_gflops(sizes)
    sustained = peak_tflops * 1e12 * mfu
    train_s = sum(epochs * draws * 3 * gflops[s] * 1e9 / sustained for s in sizes)
    infer_s = sum((val + TEST_IDS) * tta * gflops[s] * 1e9 / sustained for s in sizes)
    # Each size's cache: the labelled samples for its cycle, then validation + test for infer.
    cache_s = len(sizes) * (len(manifest) + val + TEST_IDS) / (cpus * decode_per_core)
    return Projection(
        epochs=epochs,
        draws_per_epoch=draws,
        val=val,
        labelled=len(manifest),
        gflops=gflops,
        train_h=train_s / 3600,
        infer_h=infer_s / 3600,
        cache_h=cache_s / 3600,
        needed_img_s={s: sustained / (3 * gflops[s] * 1e9) for s in sizes},
    )


@dataclass
class StoreProjection:
    """The same schedule with the prepare step's store, on ``gpus`` GPUs of one node."""

    gpus: int
    train_h: float
    infer_h: float
    prepare_h: float
    read_h: float  # every train and infer task fetching and resizing its samples

    @property
    def total_h(self) -> float:
        return self.train_h + self.infer_h + self.prepare_h + self.read_h


def project_with_store(
    base: Projection,
    gpus: int = 1,
    prepare_cpus: int = 16,
    decode_per_core: float = 70.0,
    read_gb_s: float = FETCH_GB_S,
    resize_per_core: float = RESIZE_PER_CORE,
    cpus_per_gpu: int = CORES_PER_GPU,
    per_size: bool = True,
    codec_ratio: float = 1.0,
    compress_gb_s: float = COMPRESS_GB_S,
    decompress_gb_s: float = DECOMPRESS_GB_S,
) -> StoreProjection:
    """Decoding once (prepare, ``prepare_cpus``), then each of the 8 tasks fetching its
    samples' uint8 arrays at ``read_gb_s``; GPU work divided by ``gpus`` (ideal data
    parallelism: an upper bound on the speed-up).

    ``per_size`` (what prepare does now): the store holds every scheduled size, so a task
    fetches 4 x S x S bytes per sample at its own size S and resizes nothing; prepare also
    resizes every sample to the 6 smaller sizes and writes 3.46x the 512-px bytes (bound by
    the larger of its CPU time and its writes at ``read_gb_s``). Else (before): every task
    fetches the 512-px arrays (1 MiB per sample) and resizes them on its
    ``cpus_per_gpu * gpus`` cores.

    ``codec_ratio`` > 1 (Zstandard on the shards, measured 2.08x on real HPA channels): the
    bytes written and fetched shrink by it; prepare compresses at ``compress_gb_s`` and a task
    decompresses at ``decompress_gb_s`` per core (GB of raw arrays per second), each
    overlapping the transfer (the larger of the two counts)."""
    everything = base.labelled + TEST_IDS
    sizes = list(base.gflops)
    largest = max(sizes)
    decode_s = everything / (prepare_cpus * decode_per_core)
    cpus = cpus_per_gpu * gpus
    if per_size:
        raw = everything * sum(4 * s * s for s in sizes)
        resize_s = everything * (len(sizes) - 1) / (prepare_cpus * resize_per_core)
        compress_s = raw / (prepare_cpus * compress_gb_s * 1e9) if codec_ratio > 1 else 0.0
        write_s = raw / codec_ratio / (read_gb_s * 1e9)
        prepare_s = max(decode_s + resize_s + compress_s, write_s)
    else:
        prepare_s = decode_s

    def read_s(samples: int, size: int) -> float:  # one task at one size
        if per_size:
            raw = samples * 4 * size * size
            unpack = raw / (cpus * decompress_gb_s * 1e9) if codec_ratio > 1 else 0.0
            return max(raw / codec_ratio / (read_gb_s * 1e9), unpack)
        return samples * 4 * largest * largest / (read_gb_s * 1e9) + samples / (
            cpus * resize_per_core
        )

    reads = sum(read_s(base.labelled, s) + read_s(base.val + TEST_IDS, s) for s in sizes)
    return StoreProjection(
        gpus=gpus,
        train_h=base.train_h / gpus,
        infer_h=base.infer_h / gpus,
        prepare_h=prepare_s / 3600,
        read_h=reads / 3600,
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--peak-tflops", type=float, default=989.0, help="H100/H200 dense bf16")
    p.add_argument("--mfu", type=float, default=0.10)
    p.add_argument("--cpus", type=int, default=8, help="CPU cores of a train pod")
    p.add_argument("--decode-per-core", type=float, default=70.0)
    p.add_argument("--tta", type=int, default=8)
    p.add_argument(
        "--read-gb-s", type=float, default=FETCH_GB_S, help="store fetch rate per pod, GB/s"
    )
    p.add_argument(
        "--resize-per-core", type=float, default=RESIZE_PER_CORE, help="512 -> S px, samples/s"
    )
    p.add_argument(
        "--codec-ratio", type=float, default=STORE_CODEC_RATIO, help="raw bytes per shard byte"
    )
    a = p.parse_args()
    r = project(a.epochs, a.peak_tflops, a.mfu, a.cpus, a.decode_per_core, a.tta)
    print(f"draws per epoch {r.draws_per_epoch}, validation {r.val}, test {TEST_IDS}")
    for size, g in r.gflops.items():
        print(
            f"{size:>4} px: {g:6.2f} GFLOPs forward, GPU trains {r.needed_img_s[size]:,.0f} img/s"
        )
    print(
        f"train {r.train_h:.2f} h + infer {r.infer_h:.2f} h + cache builds {r.cache_h:.2f} h "
        f"= {r.total_h:.2f} h"
    )
    ways = [("512-px shards only", False, 1.0), ("a shard per size", True, 1.0)]
    if a.codec_ratio > 1:
        ways.append((f"a shard per size, Zstandard {a.codec_ratio:.2f}x", True, a.codec_ratio))
    for kind, per_size, ratio in ways:
        for gpus in (1, 8):
            q = project_with_store(
                r, gpus, decode_per_core=a.decode_per_core, read_gb_s=a.read_gb_s,
                resize_per_core=a.resize_per_core, per_size=per_size, codec_ratio=ratio,
            )  # fmt: skip
            print(
                f"with the store ({kind}), {gpus} GPU(s): train {q.train_h * 60:.1f} min + "
                f"infer {q.infer_h * 60:.1f} + prepare {q.prepare_h * 60:.1f} + reading "
                f"{q.read_h * 60:.1f} = {q.total_h * 60:.1f} min"
            )


if __name__ == "__main__":
    main()
