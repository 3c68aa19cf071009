"""Split step: labels CSV -> manifest.parquet, stats.json and two plots.

python -m components.split --labels URI --out URI [--val-fraction 0.15] [--seed 0]
    [--rare-below 100] [--rare-factor 5] [--dominant-factor 0.5] [--dominant-share 0.2]
"""

import argparse
import sys
from collections.abc import Sequence

from protloc import cli
from protloc.split import SplitParams, run_split


def main(argv: Sequence[str] | None = None) -> dict:
    defaults = SplitParams()
    p = argparse.ArgumentParser(
        prog="python -m components.split",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--labels", required=True, help="train.csv (local path or s3:// URI)")
    p.add_argument("--out", required=True, help="output folder (local path or s3:// URI)")
    p.add_argument("--val-fraction", type=float, default=defaults.val_fraction)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument(
        "--rare-below",
        type=int,
        default=defaults.rare_below,
        help="a class with fewer training samples is rare",
    )
    p.add_argument(
        "--rare-factor",
        type=float,
        default=defaults.rare_factor,
        help="draws per epoch of a sample with a rare class",
    )
    p.add_argument(
        "--dominant-factor",
        type=float,
        default=defaults.dominant_factor,
        help="draws per epoch of a sample with only dominant classes",
    )
    p.add_argument(
        "--dominant-share",
        type=float,
        default=defaults.dominant_share,
        help="a class in at least this share of training samples is dominant",
    )
    a = p.parse_args(argv)
    params = SplitParams(
        a.val_fraction, a.seed, a.rare_below, a.rare_factor, a.dominant_factor, a.dominant_share
    )
    return run_split(a.labels, a.out, params)


def kfp_component(image: str):
    """The split step as a KFP component on ``image`` (kfp is imported only here)."""
    from kfp import dsl
    from kfp.dsl import Artifact, Output

    @dsl.component(base_image=image, install_kfp_package=False)
    def split(
        data_root: str,
        val_fraction: float,
        seed: int,
        rare_below: int,
        rare_factor: float,
        dominant_factor: float,
        code_version: str,
        out: Output[Artifact],
    ):
        """Stratified split and resampling weights: manifest.parquet, stats.json, plots."""
        from protloc.cli import setup_logging
        from protloc.split import SplitParams
        from protloc.steps import split_step

        setup_logging()
        params = SplitParams(val_fraction, seed, rare_below, rare_factor, dominant_factor)
        split_step(data_root, out.path, params, code_version)

    return split


if __name__ == "__main__":
    sys.exit(cli.run(main))
