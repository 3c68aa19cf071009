"""Submit step: the Kaggle submission CSV.

python -m components.submit --predictions URI --thresholds URI --sample-submission URI --out URI
"""

import argparse
import sys
from collections.abc import Sequence

from protloc import cli
from protloc.submission import run_submit


def main(argv: Sequence[str] | None = None):
    p = argparse.ArgumentParser(prog="python -m components.submit", description=__doc__)
    p.add_argument("--predictions", required=True)
    p.add_argument("--thresholds", required=True, help="thresholds.json")
    p.add_argument("--sample-submission", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    return run_submit(a.predictions, a.thresholds, a.sample_submission, a.out)


def kfp_component(image: str):
    """The submit step as a KFP component on ``image`` (kfp is imported only here)."""
    from kfp import dsl
    from kfp.dsl import Artifact, Input, Output

    @dsl.component(base_image=image, install_kfp_package=False)
    def submit(
        predictions: Input[Artifact],
        thresholds: Input[Artifact],
        data_root: str,
        code_version: str,
        out: Output[Artifact],
    ):
        """The Kaggle submission CSV."""
        from protloc.cli import setup_logging
        from protloc.steps import submit_step

        setup_logging()
        submit_step(predictions.path, thresholds.path, data_root, out.path, code_version)

    return submit


if __name__ == "__main__":
    sys.exit(cli.run(main))
