"""Apply a finished local run's model bundle to NEW synthetic images, and check its labels
against what infer + thresholds + submit give for the same images.

    .venv/bin/python tools/check_predict.py --run runs/local/protloc-... [--samples 40]

New images: the demo generator with another seed, at the run's data size. The yardstick runs
the infer command (the run's split and last cycle) on a copy of the data root whose test/
folder holds the new images, then the submit command with the run's thresholds; predict runs
on the folder of new images alone. Prints how many labels agree.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args[:2])} failed:\n{proc.stderr[-3000:]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a finished `pipeline.py local` run folder")
    p.add_argument("--data-root", default=str(ROOT / "runs" / "demo-data"))
    p.add_argument("--samples", type=int, default=40)
    p.add_argument("--seed", type=int, default=99)
    args = p.parse_args()
    from protloc.synthetic import SyntheticSpec, generate

    run_dir, data = Path(args.run), Path(args.data_root)
    trains = sorted(run_dir.glob("train*/out"), key=lambda d: json.loads(
        (d / "metrics.json").read_text())["cycle"])  # fmt: skip
    bundle = json.loads((run_dir / "bundle" / "out" / "bundle.json").read_text())
    size = max(s["size"] for s in bundle["snapshots"])
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        generate(
            SyntheticSpec(n_train=8, n_test=args.samples, size=size, seed=args.seed, temper=0.7),
            str(t / "new"),
        )
        root = t / "root"  # the run's data root, its test set replaced by the new images
        root.mkdir()
        for name in ("train.csv",):
            shutil.copy(data / name, root / name)
        (root / "train").symlink_to(data / "train")
        shutil.copytree(t / "new" / "test", root / "test")
        shutil.copy(t / "new" / "sample_submission.csv", root / "sample_submission.csv")
        run(["-m", "components.infer", "--data-root", str(root), "--split",
             str(run_dir / "split" / "out"), "--last-cycle", str(trains[-1]), "--out",
             str(t / "infer"), "--tta", str(bundle["tta"]), "--workers", "0"])  # fmt: skip
        run(["-m", "components.submit", "--data-root", str(root), "--predictions",
             str(t / "infer"), "--thresholds", str(run_dir / "thresholds" / "out"),
             "--out", str(t / "submit")])  # fmt: skip
        run(["-m", "components.predict", "--model", str(run_dir / "bundle" / "out"),
             "--images", str(t / "new" / "test"), "--out", str(t / "pred"),
             "--workers", "0"])  # fmt: skip
        want = pd.read_csv(t / "submit" / "submission.csv", dtype=str).set_index("Id")
        got = pd.read_csv(t / "pred" / "labels.csv", dtype=str).set_index("Id")
        same = int((got.loc[want.index, "Predicted"] == want["Predicted"]).sum())
        print(f"{same}/{len(want)} new images: predict's labels equal infer + thresholds'")
        if same != len(want):
            sys.exit(1)


if __name__ == "__main__":
    main()
