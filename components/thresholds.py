"""Thresholds step: per-class thresholds on the ensemble's validation predictions.

python -m components.thresholds --predictions URI --manifest URI --out URI [--alpha A]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from protloc import cli
from protloc.thresholds import DEFAULT_ALPHA, run_thresholds


def main(argv: Sequence[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m components.thresholds", description=__doc__)
    p.add_argument("--predictions", required=True, help="predictions.parquet from the infer step")
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", required=True)
    p.add_argument(
        "--alpha",
        type=float,
        default=DEFAULT_ALPHA,
        help="penalty on |precision - recall| (0: plain F1)",
    )
    a = p.parse_args(argv)
    return run_thresholds(a.predictions, a.manifest, a.out, a.alpha)


if __name__ == "__main__":
    sys.exit(cli.run(main))
