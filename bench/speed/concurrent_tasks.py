"""Two train tasks at once on one machine, as kfp.local runs two folds' chains: with their thread
pools sized to their share of the CPUs (``PROTLOC_TASKS_PER_MACHINE=2``, what ``pipeline.py
local --folds 2`` sets) against each taking every core (``=1``), and against one after another.

    python -m bench.speed.concurrent_tasks [--size 96] [--epochs 1] [--json out.json]

The goal: two at once within 1.3x of one after another. Each task is ``python -m
components.train`` for one cycle on a synthetic set (made once, 64 samples), its own cache.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import ROOT

GOAL = 1.3


def _data(tmp: Path) -> tuple[Path, Path]:
    from protloc.config import SplitConfig
    from protloc.data.split import run_split
    from protloc.synthetic import SyntheticSpec, generate

    data, split = tmp / "data", tmp / "split"
    generate(SyntheticSpec(n_train=96, n_test=8, size=96, seed=3, temper=0.8), str(data))
    run_split(SplitConfig(val_fraction=0.25, rare_below=0), str(data / "train.csv"), out=str(split))
    (split / "timing.json").write_text('{"step": "split", "seconds": 0, "code_version": "bench"}')
    return data, split


def _train(tmp: Path, data: Path, split: Path, name: str, args, tasks: int) -> subprocess.Popen:
    env = {**os.environ, "PROTLOC_TASKS_PER_MACHINE": str(tasks),
           "PROTLOC_CACHE_DIR": str(tmp / f"cache-{name}")}  # fmt: skip
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "components.train", "--split", str(split), "--data-root",
           str(data), "--out", str(tmp / f"out-{name}"), "--size", str(args.size),
           "--batch-size", "8", "--epochs", str(args.epochs), "--workers", "0",
           "--val-every", "0"]  # fmt: skip
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _wall(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            sys.exit(err.decode()[-2000:])


def run(args) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="protloc-bench-") as d:
        tmp = Path(d)
        data, split = _data(tmp)
        out: dict[str, float] = {}
        for label, tasks, names in (
            ("one_after_another", 1, [["a"], ["b"]]),
            ("two_at_once_shared", 2, [["c", "d"]]),
            ("two_at_once_every_core", 1, [["e", "f"]]),
        ):
            t0 = time.perf_counter()
            for group in names:
                _wall([_train(tmp, data, split, n, args, tasks) for n in group])
            out[label] = time.perf_counter() - t0
    out["shared_ratio"] = out["two_at_once_shared"] / out["one_after_another"]
    out["every_core_ratio"] = out["two_at_once_every_core"] / out["one_after_another"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--json", default="")
    args = p.parse_args()
    out = run(args)
    print(
        f"one after another {out['one_after_another']:.1f} s; two at once, shared CPUs "
        f"{out['two_at_once_shared']:.1f} s ({out['shared_ratio']:.2f}x, goal <= {GOAL}x); "
        f"two at once, every core each {out['two_at_once_every_core']:.1f} s "
        f"({out['every_core_ratio']:.2f}x)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
