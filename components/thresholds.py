"""Thresholds step: per-class thresholds on the ensemble's validation predictions.

python -m components.thresholds --predictions URI --manifest URI --out URI [--alpha A]
"""

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


def kfp_component(image: str):
    """The thresholds step as a KFP component on ``image`` (kfp is imported only here)."""
    from kfp import dsl
    from kfp.dsl import Artifact, Input, Output

    @dsl.component(base_image=image, install_kfp_package=False)
    def thresholds(
        split: Input[Artifact],
        predictions: Input[Artifact],
        alpha: float,
        code_version: str,
        out: Output[Artifact],
    ):
        """Per-class thresholds on the ensemble's validation predictions."""
        from protloc.cli import setup_logging
        from protloc.steps import thresholds_step

        setup_logging()
        thresholds_step(split.path, predictions.path, out.path, alpha, code_version)

    return thresholds


if __name__ == "__main__":
    sys.exit(cli.run(main))
