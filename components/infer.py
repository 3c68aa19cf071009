"""Infer step: snapshot ensemble with test-time augmentation.

python -m components.infer --manifest URI --data URI --snapshots URI [URI ...] --out URI
    [--tta 8] [--batch-size 64] [--workers 2]
"""

import argparse
import sys
from collections.abc import Sequence

from protloc import cli
from protloc.infer import run_infer


def main(argv: Sequence[str] | None = None):
    p = argparse.ArgumentParser(
        prog="python -m components.infer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--manifest", required=True)
    p.add_argument(
        "--data", required=True, help="data root with train/, test/, sample_submission.csv"
    )
    p.add_argument("--snapshots", nargs="+", required=True, help="checkpoint.pt of every cycle")
    p.add_argument("--out", required=True)
    p.add_argument("--tta", type=int, default=8, help="D4 transforms averaged per image (1..8)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--cache-dir", default=None)
    a = p.parse_args(argv)
    return run_infer(
        a.manifest, a.data, a.snapshots, a.out, a.tta, a.batch_size, a.workers, a.cache_dir
    )


def kfp_component(image: str):
    """The infer step as a KFP component on ``image`` (kfp is imported only here)."""
    from kfp import dsl
    from kfp.dsl import Artifact, Input, Output

    @dsl.component(base_image=image, install_kfp_package=False)
    def infer(
        split: Input[Artifact],
        last_cycle: Input[Artifact],
        data_root: str,
        tta: int,
        batch_size: int,
        workers: int,
        code_version: str,
        out: Output[Artifact],
    ):
        """Every snapshot of the chain predicts validation and test ids; the ensemble is the mean."""
        from protloc.cli import setup_logging
        from protloc.steps import infer_step

        setup_logging()
        infer_step(
            split.path, data_root, last_cycle.path, out.path, tta, batch_size, workers, code_version
        )

    return infer


if __name__ == "__main__":
    sys.exit(cli.run(main))
