"""Infer step: every snapshot listed by --last-cycle predicts validation and test ids (TTA);
the ensemble is the mean.

python -m components.infer --help lists every flag; they are derived, like the KFP component's
inputs, from protloc.config and protloc.steps.
"""

import sys

from components.factory import kfp_component as _kfp_component
from protloc import cli

main = cli.step_main("infer")


def kfp_component(image: str):
    """The infer step as a KFP component on ``image``."""
    return _kfp_component("infer", image)


if __name__ == "__main__":
    sys.exit(cli.run(main))
