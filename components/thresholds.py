"""Thresholds step: per-class thresholds on the ensemble's validation predictions.

python -m components.thresholds --help lists every flag; they are derived, like the KFP component's
inputs, from protloc.config and protloc.steps.
"""

import sys

from components.factory import kfp_component as _kfp_component
from protloc import cli

main = cli.step_main("thresholds")


def kfp_component(image: str):
    """The thresholds step as a KFP component on ``image``."""
    return _kfp_component("thresholds", image)


if __name__ == "__main__":
    sys.exit(cli.run(main))
