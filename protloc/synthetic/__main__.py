"""python -m protloc.synthetic --out DIR_OR_S3_URI --n-train N --n-test M --size S --seed K"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from protloc import process
from protloc.data.hpa import read_labels
from protloc.synthetic.dataset import SyntheticSpec, generate


def main(argv: Sequence[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m protloc.synthetic", description=__doc__)
    p.add_argument(
        "--out", required=True, help="a local folder or a bucket URI (s3://, gs://, az://)"
    )
    p.add_argument("--n-train", type=int, required=True)
    p.add_argument("--n-test", type=int, default=0)
    p.add_argument("--size", type=int, default=512, help="image side in px (Kaggle: 512)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--temper",
        type=float,
        default=0.0,
        help="0 keeps the real label frequencies; up to 1 makes rare classes common",
    )
    p.add_argument(
        "--labels-from",
        default=None,
        help="draw label sets from this train.csv instead of the embedded HPA table",
    )
    p.add_argument("--workers", type=int, default=1, help="processes (output is identical)")
    args = p.parse_args(argv)
    source = read_labels(args.labels_from) if args.labels_from else None
    spec = SyntheticSpec(args.n_train, args.n_test, args.size, args.seed, args.temper)
    return generate(spec, args.out, workers=args.workers, labels_source=source)


if __name__ == "__main__":
    sys.exit(process.run(main))
