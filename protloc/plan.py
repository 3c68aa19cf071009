"""What a run of a schedule needs on a data set: tasks, disk and a projected wall time.

Disk is exact arithmetic on the store's and caches' layouts (4 uint8 channels of S x S per sample
and size; shards compressed with Zstandard at the ratio measured on real HPA channels). Time is a
projection: GPU work from the model's FLOPs per image (measured with torch's FlopCounterMode by
``bench.speed.projection``) at an *assumed* sustained share of a GPU's peak, and the prepare
step's decoding at the per-core rate ``make bench`` measures. No torch here: ``check-data`` runs
from a plain install.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from protloc.config import InferConfig, SplitConfig
from protloc.train.schedule import Cycle, format_schedule

# Forward GFLOPs per 4-channel image of the Inception-v3 network at the Table 1 sizes
# (bench.speed.projection; tests/test_plan.py checks them against FlopCounterMode).
FORWARD_GFLOPS: dict[int, float] = {
    221: 5.64,
    256: 7.70,
    296: 10.30,
    320: 12.69,
    384: 18.91,
    440: 25.08,
    512: 35.08,
}
TRAIN_FLOPS_PER_FORWARD = 3  # forward + backward (twice the forward)
# Zstandard level 1 on real HPA channels (docs/benchmarks.md, "Compressed shards").
STORE_CODEC_RATIO = 2.08
# Measured per core on the 2-vCPU development VM (docs/benchmarks.md): decoding a 512-px
# sample's four PNGs, resizing it to a smaller size (Pillow, reducing_gap), and Zstandard's
# compression and decompression (GB of raw arrays per second).
DECODE_PER_CORE = 92.0
RESIZE_PER_CORE = 260.0
COMPRESS_GB_S = 0.40
DECOMPRESS_GB_S = 0.78
# Assumed, not measured (no GPU was at hand): an H200's dense bf16 peak, the share of it a
# BatchNorm convnet sustains, a pod's rate from the object store, a GPU task's CPU cores.
PEAK_TFLOPS = 989.0
MFU = 0.10
FETCH_GB_S = 1.0
CORES_PER_GPU = 8
GB = 1e9


def forward_gflops(size: int) -> float:
    """GFLOPs of one forward pass at ``size`` px: the measured figure at a Table 1 size, else
    from a line through the square roots of the measured ones (within 5 % of each)."""
    if size in FORWARD_GFLOPS:
        return FORWARD_GFLOPS[size]
    xs = sorted(FORWARD_GFLOPS)
    ys = [math.sqrt(FORWARD_GFLOPS[x]) for x in xs]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    return max(my + slope * (size - mx), 0.0) ** 2


@dataclass(frozen=True)
class Plan:
    """One run of ``schedule`` on a data set of ``labelled`` + ``test`` samples."""

    schedule: list[Cycle]
    folds: int
    labelled: int
    test: int
    val: int  # held-out rows (one fold's with K folds)
    draws_per_epoch: int  # training draws of one chain's epoch (after resampling)
    tta: int

    @property
    def sizes(self) -> list[int]:
        return [c.size for c in self.schedule]

    def tasks(self) -> dict[str, int]:
        """Tasks of the DAG by step (the fingerprint task besides)."""
        out = {"split": 1, "prepare": 1, "train": len(self.schedule) * self.folds}
        out["infer"] = self.folds
        if self.folds > 1:
            out["collect"] = 1
        out.update(thresholds=1, submit=1, bundle=1)
        return out

    def store_bytes(self) -> tuple[float, float]:
        """(raw, compressed) bytes of the store: every sample at every size of the schedule."""
        raw = (self.labelled + self.test) * sum(4 * s * s for s in self.sizes)
        return raw, raw / STORE_CODEC_RATIO

    def train_cache_bytes(self) -> float:
        """The largest train task's image cache: every labelled sample at the largest size."""
        return self.labelled * 4 * max(self.sizes) ** 2

    def infer_cache_bytes(self) -> float:
        """An infer task's caches: its validation and the test samples at every size."""
        return (self.val + self.test) * sum(4 * s * s for s in self.sizes)

    def gpu_hours(self, mfu: float = MFU, peak_tflops: float = PEAK_TFLOPS) -> tuple[float, float]:
        """(train, infer) GPU hours on one GPU sustaining ``mfu`` of ``peak_tflops``."""
        rate = peak_tflops * 1e12 * mfu
        train = sum(
            c.epochs * self.draws_per_epoch * TRAIN_FLOPS_PER_FORWARD * forward_gflops(c.size)
            for c in self.schedule
        )
        infer = sum((self.val + self.test) * self.tta * forward_gflops(s) for s in self.sizes)
        return train * 1e9 * self.folds / rate / 3600, infer * 1e9 * self.folds / rate / 3600

    def prepare_hours(self, cores: int) -> float:
        """Decoding every sample once, resizing it to the smaller sizes and compressing the
        shards on ``cores`` cores, or writing them at :data:`FETCH_GB_S` if that is slower."""
        samples = self.labelled + self.test
        raw, packed = self.store_bytes()
        cpu = (
            samples / DECODE_PER_CORE
            + samples * (len(self.sizes) - 1) / RESIZE_PER_CORE
            + raw / (COMPRESS_GB_S * GB)
        ) / cores
        return max(cpu, packed / (FETCH_GB_S * GB)) / 3600

    def read_hours(self, gpus: int) -> float:
        """Every train and infer task fetching its samples at its size from the store and
        unpacking them on its ``CORES_PER_GPU * gpus`` cores (the slower of the two)."""

        def read(samples: int, size: int) -> float:
            raw = samples * 4 * size * size
            unpack = raw / (CORES_PER_GPU * gpus * DECOMPRESS_GB_S * GB)
            return max(raw / STORE_CODEC_RATIO / (FETCH_GB_S * GB), unpack)

        per_chain = sum(read(self.labelled, s) + read(self.val + self.test, s) for s in self.sizes)
        return per_chain * self.folds / 3600

    def wall_hours(self, gpus: int, prepare_cores: int = 16, mfu: float = MFU) -> float:
        """Prepare, reading, and the GPU work divided over ``gpus`` (ideal scaling: a lower
        bound), one task after another."""
        train, infer = self.gpu_hours(mfu)
        return self.prepare_hours(prepare_cores) + self.read_hours(gpus) + (train + infer) / gpus


def plan_run(
    schedule: list[Cycle], labels: pd.DataFrame, test: int, folds: int = 1, tta: int | None = None
) -> Plan:
    """The plan for ``labels`` (the data root's label frame) split by the split step's defaults
    with ``folds`` folds: draws per epoch after resampling, held-out rows per chain."""
    from protloc.data.split import make_manifest

    manifest = make_manifest(labels, SplitConfig(folds=folds))
    if folds == 1:
        val = int((manifest["fold"] == "val").sum())
        draws = float(manifest["weight"].sum())
    else:  # one chain trains on the other folds' rows: (F-1)/F of the weights
        val = math.ceil(len(manifest) / folds)
        draws = float(manifest["weight"].sum()) * (folds - 1) / folds
    tta = InferConfig().tta if tta is None else tta
    return Plan(schedule, folds, len(manifest), test, val, round(draws), tta)


def _gb(n: float) -> str:
    return f"{n / GB:,.1f} GB"


def format_plan(plan: Plan, node_gpus: int = 8, prepare_cores: int = 16) -> str:
    """The plan as ``check-data`` prints it."""
    tasks = plan.tasks()
    raw, packed = plan.store_bytes()
    train, infer = plan.gpu_hours()
    folds = f", {plan.folds} folds" if plan.folds > 1 else ""
    lines = [
        f"plan: {format_schedule(plan.schedule)} ({len(plan.schedule)} cycles{folds}, TTA "
        f"{plan.tta}); per epoch {plan.draws_per_epoch:,} draws (resampled), {plan.val:,} "
        "held out",
        f"  tasks: {sum(tasks.values())} ("
        + ", ".join(f"{n} {k}" for k, n in tasks.items())
        + ") and the fingerprint task",
        f"  disk: store {_gb(packed)} ({_gb(raw)} of arrays at {len(plan.sizes)} sizes, Zstandard "
        f"{STORE_CODEC_RATIO}x); a train task's image cache up to {_gb(plan.train_cache_bytes())} "
        f"({max(plan.sizes)} px); an infer task's caches {_gb(plan.infer_cache_bytes())}",
        f"  GPU work: train {train * 60:,.1f} min, infer {infer * 60:,.1f} min on one GPU at {MFU:.0%} of "
        f"{PEAK_TFLOPS:g} TFLOPS (assumed: an H200's bf16 peak; no GPU measured it)",
        f"  projected wall time: {plan.wall_hours(1, prepare_cores) * 60:,.0f} min on 1 GPU, "
        f"{plan.wall_hours(node_gpus, prepare_cores) * 60:,.0f} min on a node of {node_gpus} "
        f"(`--gpus {node_gpus}`; ideal scaling); prepare on {prepare_cores} cores, "
        f"{FETCH_GB_S:g} GB/s from the store (assumed)",
    ]
    return "\n".join(lines)
