"""`make bench`: every performance case against its yardstick, side by side in one run, printed
as one table (about 3.5 minutes on 2 cores). Each case's own module has more options and detail
(``python -m bench.speed.<case>``): input_pipeline, store_readiness, jpeg_draft, split_scaling,
thresholds, train_speed, gpu, projection.

    .venv/bin/python -m bench.speed.run [--json bench/last.json] [--demo-root runs/local]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from bench.speed import (
    input_pipeline,
    jpeg_draft,
    projection,
    split_scaling,
    store_readiness,
    thresholds,
    train_speed,
)

GOAL_INPUT = 20.0  # cache against decoding, samples/s per core (issue: at least 20x)
GOAL_READY = 10.0  # data readiness of a train task, store against decoding (issue: >= 10x)


@dataclass
class Row:
    case: str
    yardstick: str
    ours: str
    ratio: str
    note: str = ""


def _x(value: float) -> str:
    return f"{value:,.1f}x" if value < 100 else f"{value:,.0f}x"


def _goal(ratio: float) -> str:
    if ratio >= GOAL_INPUT:
        return f"goal >= {GOAL_INPUT:.0f}x met"
    return f"goal {GOAL_INPUT:.0f}x missed by {1 - ratio / GOAL_INPUT:.0%}"


def input_rows(seconds: float) -> tuple[list[Row], float]:
    """The rows, and the decode rate per core at 512 px (for the projection)."""
    rows = []
    figures = input_pipeline.run([221, 512], seconds)
    for f in figures:
        ratio = f.cache_per_s / f.decode_per_s
        delivered = f.cache_uint8_per_s / f.decode_per_s
        rows += [
            Row(
                f"input {f.size} px: augmented + normalised tensors, samples/s per core",
                f"{f.decode_per_s:,.1f} (decode 4 PNGs + resize)",
                f"{f.cache_per_s:,.1f} (image cache)",
                _x(ratio),
                _goal(ratio),
            ),
            Row(
                f"input {f.size} px: as the loader delivers (uint8; normalised on the GPU)",
                f"{f.decode_per_s:,.1f}",
                f"{f.cache_uint8_per_s:,.1f}",
                _x(delivered),
                _goal(delivered),
            ),
            Row(
                f"input {f.size} px: random crops of {round(f.size / input_pipeline.CROP)} px "
                f"(crop {input_pipeline.CROP:g}, jitter {input_pipeline.CROP_JITTER:g}), uint8",
                f"{f.cache_uint8_per_s:,.1f} (whole samples)",
                f"{f.crop_uint8_per_s:,.1f}",
                _x(f.crop_uint8_per_s / f.cache_uint8_per_s),
                "the crops' cost per core",
            ),
            Row(
                f"cache build {f.size} px, samples/s per core; disk for 31,072 samples",
                f"{f.decode_per_s:,.1f} (decoding alone)",
                f"{f.build_per_s:,.1f}; {f.bytes_per_sample * input_pipeline.LABELLED / 1e9:.2f} GB",
                _x(f.build_per_s / f.decode_per_s),
                "one-off per size",
            ),
        ]
    return rows, figures[-1].decode_per_s


def store_rows(samples: int) -> tuple[list[Row], float]:
    """Data readiness of one train task through S3 (moto): decode the PNGs vs read the store;
    the prepare step's rate against plain decoding. Also the shards' measured codec ratio."""
    cores = 2
    out = store_readiness.run(samples, [221, 512], cores, shard_samples=128)
    rows = []
    for size in (221, 512):
        old, new = out[f"old_{size}_s"], out[f"new_{size}_s"]
        ratio = old / new
        goal = "met" if ratio >= GOAL_READY else f"missed by {1 - ratio / GOAL_READY:.0%}"
        resized = out.get(f"new_resized_{size}_s")
        if resized:
            goal += f"; resizing the 512-px shards instead: {resized:.1f} s ({_x(old / resized)})"
        if f"new_mem_{size}_s" in out:
            old_m, new_m = out[f"old_mem_{size}_s"], out[f"new_mem_{size}_s"]
            goal += f"; cache in memory (tmpfs) {old_m:.1f} / {new_m:.1f} s ({_x(old_m / new_m)})"
        rows.append(
            Row(
                f"data readiness {size} px, {samples} real-size samples via S3, s ({cores} cores)",
                f"{old:.1f} (decode PNGs)",
                f"{new:.1f} (read the store)",
                _x(ratio),
                f"goal >= {GOAL_READY:.0f}x {goal}",
            )
        )
    prepare = samples / out["prepare_s"] / cores
    decode = samples / out["old_512_s"] / cores
    rows.append(
        Row(
            "prepare step, samples/s per core (512 px, to S3)",
            f"{decode:.1f} (plain decoding)",
            f"{prepare:.1f}",
            _x(prepare / decode),
            f"decoding is the floor; shards {out['raw_bytes'] / out['shard_bytes']:.2f}x "
            "smaller than the raw arrays (Zstandard)",
        )
    )
    return rows, out["raw_bytes"] / out["shard_bytes"]


def jpeg_rows() -> list[Row]:
    """HPAv18's 2048-px colour-coded JPEGs: reduced decoding against full decoding + resize."""
    return [
        Row(
            f"HPAv18 JPEG sample (4 x 2048 px) at {r['size']} px, samples/s per core",
            f"{r['full_per_s']:.1f} (full decode + resize)",
            f"{r['reduced_per_s']:.1f} (reduced decode, draft)",
            _x(r["ratio"]),
            "the external data's decoding floor",
        )
        for r in jpeg_draft.run(6, [512, 221], 3)
    ]


def split_rows() -> list[Row]:
    figures, cli = split_scaling.run([5000, 31072, 62144, 124288])
    rows = [
        Row(
            f"split {f.rows:,} rows{' (the real labels)' if f.rows == 31072 else ''}, s",
            f"{f.iterstrat_s:.2f} (bare iterstrat)",
            f"{f.step_s:.2f} (whole step)",
            f"{f.step_s / f.iterstrat_s:.1f}x the time",
            "step adds parse, weights, Parquet, stats, 2 plots",
        )
        for f in figures
    ]
    first, last = figures[0], figures[-1]
    rows.append(
        Row(
            f"split growth {first.rows:,} -> {last.rows:,} rows",
            f"{last.rows / first.rows:.1f}x (linear)",
            f"{last.step_s / first.step_s:.1f}x",
            f"{(last.step_s / first.step_s) / (last.rows / first.rows):.2f} of linear",
        )
    )
    rows.append(
        Row("split CLI on the real train.csv, s (start-up included)", "-", f"{cli:.2f}", "-")
    )
    return rows


def threshold_rows() -> list[Row]:
    rows = []
    for n, classes in ((5000, 4), (50000, 2), (500000, 1)):
        f = thresholds.speed(n, 0.1, classes)
        rows.append(
            Row(
                f"thresholds, {n:,} x 28, s",
                f"{f.grid_s:,.1f} (101-point grid, scikit-learn)",
                f"{f.exact_s:.3f} (exact search)",
                _x(f.grid_s / f.exact_s),
                f"objective gain >= {f.min_gain:.5f}; grid timed on {classes} class(es), x28",
            )
        )
    walls = thresholds.cli_walls()
    best = min(walls)
    rows.append(
        Row(
            "thresholds CLI on 4,661 val rows, s (start-up included)",
            f"{thresholds.CLI_GOAL_S:.1f} (goal)",
            f"{best:.2f} (fastest of {len(walls)}; all {', '.join(f'{w:.2f}' for w in walls)})",
            f"{best / thresholds.CLI_GOAL_S:.2f} of the goal",
            "met" if best < thresholds.CLI_GOAL_S else "missed",
        )
    )
    return rows


SYNTHETIC_GOAL_S = 10.0  # 200 samples at 256 px: the demo's data made in seconds


def synthetic_rows() -> list[Row]:
    """Synthetic HPA data (PNG writing included), one process."""
    import tempfile

    from protloc.synthetic import SyntheticSpec, generate

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        generate(SyntheticSpec(n_train=180, n_test=20, size=256, seed=5, temper=0.5), tmp)
        wall = time.perf_counter() - t0
    return [
        Row(
            "synthetic data, 200 samples at 256 px, s (one process)",
            f"{SYNTHETIC_GOAL_S:.0f} (goal)",
            f"{wall:.2f} ({200 / wall:.0f} samples/s)",
            f"{wall / SYNTHETIC_GOAL_S:.2f} of the goal",
            "met" if wall < SYNTHETIC_GOAL_S else "missed",
        )
    ]


def train_rows() -> list[Row]:
    torch.set_num_threads(2)  # the input benchmark ran on one thread
    return [
        Row(
            f"train step on this CPU {size} px, img/s (batch 8)",
            f"{decoded:.1f} (from PNGs)",
            f"{cached:.1f} (from cache)",
            _x(cached / decoded),
            "CPU-bound: informational",
        )
        for size, decoded, cached in train_speed.measure([96, 221], steps=4, batch=8)
    ]


def gpu_rows() -> list[Row]:
    if not torch.cuda.is_available():
        return [
            Row(
                "GPU: fp32 vs bf16+channels_last, max batch, loader idle",
                "-",
                "not run",
                "-",
                "no CUDA device here; run python -m bench.speed.gpu on one",
            )
        ]
    from bench.speed import gpu

    out = gpu.main(["--sizes", "221,512", "--steps", "10", "--workers", "4,8"])
    return [
        Row(
            f"GPU train {s['size']} px, img/s ({out['device']})",
            f"{s['fp32_img_s']:,.0f} (fp32)",
            f"{s['bf16_cl_img_s']:,.0f} (bf16 + channels_last)",
            _x(s["bf16_cl_img_s"] / s["fp32_img_s"]),
            f"max batch {s['max_batch']}; loader idle {s['idle_fraction']}",
        )
        for s in out["sizes"]
    ]


def e2e_rows(demo_root: Path, decode_per_core: float, codec_ratio: float) -> list[Row]:
    rows = []
    summary = demo_root / "last_summary.json"
    if summary.is_file():
        s = json.loads(summary.read_text())
        steps = ", ".join(f"{x['step']} {x['seconds']:.1f}" for x in s["steps"])
        rows.append(
            Row(
                "make demo pipeline wall time, s (its timing log)",
                "-",
                f"{s['wall_seconds']:.1f}",
                "-",
                steps,
            )
        )
    else:
        rows.append(
            Row("make demo breakdown", "-", "no run yet", "-", f"run make demo ({summary})")
        )
    p = projection.project(epochs=6, mfu=0.10, cpus=8, decode_per_core=decode_per_core)
    rows.append(
        Row(
            "projected full schedule, real data (7 cycles x 6 epochs, TTA 8), h",
            "-",
            f"{p.total_h:.2f}",
            "-",
            f"assumed: one H200 at 10 % of 989 bf16 TFLOPS; 8 cores at the measured 512-px decode rate; train {p.train_h:.2f} h, "
            f"infer {p.infer_h:.2f} h, cache builds {p.cache_h:.2f} h",
        )
    )
    for gpus in (1, 8):
        q = projection.project_with_store(
            p, gpus, decode_per_core=decode_per_core, codec_ratio=codec_ratio
        )
        rows.append(
            Row(
                f"projected with the store, {gpus} H200, min",
                "15 (goal, one H200)" if gpus == 1 else "-",
                f"{q.total_h * 60:.1f}",
                f"{q.total_h * 60 / 15:.2f} of the goal" if gpus == 1 else "-",
                f"a shard per size, Zstandard {codec_ratio:.2f}x, 1 GB/s per pod (assumed): "
                f"train {q.train_h * 60:.1f}, infer {q.infer_h * 60:.1f}, "
                f"prepare {q.prepare_h * 60:.1f}, fetch {q.read_h * 60:.1f} min",
            )
        )
    return rows


def print_table(rows: list[Row]) -> None:
    heads = Row("case", "yardstick", "ours", "ours vs yardstick", "note")
    widths = [
        max(len(getattr(r, k)) for r in [heads, *rows])
        for k in ("case", "yardstick", "ours", "ratio")
    ]
    for r in [heads, *rows]:
        cells = [
            getattr(r, k).ljust(w)
            for k, w in zip(("case", "yardstick", "ours", "ratio"), widths, strict=True)
        ]
        print("  ".join([*cells, r.note]).rstrip())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--json", default=None, help="also write the rows here")
    p.add_argument("--demo-root", default="runs/local")
    p.add_argument("--seconds", type=float, default=3.0, help="per input-pipeline measurement")
    p.add_argument("--store-samples", type=int, default=1000, help="samples of the store case")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    t = time.perf_counter()
    rows, decode_512 = input_rows(args.seconds)
    print(f"[bench] input pipeline: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    t = time.perf_counter()
    more, codec_ratio = store_rows(args.store_samples)
    rows += more
    print(f"[bench] store: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    for name, fn in (
        ("HPAv18 JPEG", jpeg_rows),
        ("split", split_rows),
        ("thresholds", threshold_rows),
        ("synthetic data", synthetic_rows),
        ("train step", train_rows),
        ("GPU", gpu_rows),
        ("end to end", lambda: e2e_rows(Path(args.demo_root), decode_512, codec_ratio)),
    ):
        t = time.perf_counter()
        rows += fn()
        print(f"[bench] {name}: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    print(
        f"\nprotloc bench on {platform.node() or 'this machine'}: {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {time.perf_counter() - t0:.0f} s\n"
    )
    print_table(rows)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")


if __name__ == "__main__":
    main()
